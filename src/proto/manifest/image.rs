//! Disk-image manifests: an [`EntryKind::Image`](super::EntryKind::Image) entry describes a
//! target of [`Image::size`] bytes of which only the data [`Extent`]s travel; the payload is
//! their bytes back to back, and everything between them (holes, all-zero runs) reads as zero
//! at the target. [`Image::check`] is the one check of an image from the network (sorted,
//! non-empty, non-overlapping extents inside the size, at most [`MAX_EXTENTS`], tiling the
//! payload exactly); [`ExtentMap`] maps payload ranges to image offsets for sources and sinks.
//!
//! A *streamed* image ([`Image::streamed`], `mcast-send --image -`) is announced with an upper
//! bound as its size, and its payload ends with a [`STREAM_TRAILER_LEN`]-byte trailer after
//! the extents' bytes: the stream's real length, big-endian, at most the bound. The trailer is
//! payload like any other byte, so the hash list (which the announce authenticates) covers it;
//! receivers take the image to be that long ([`read_trailer`]). See
//! `docs/design-image-streaming.md`.

use serde::{Deserialize, Serialize};

/// Most extents one image may have. Each takes at most 20 bytes in the manifest (two
/// varints), so an image manifest stays within the announcement's 16 MiB manifest limit.
/// Sources merge small gaps until they fit.
pub const MAX_EXTENTS: usize = 1 << 19;

/// Largest image: 2^60 bytes (an exbibyte). Keeps every sum of offsets and lengths far from
/// `u64::MAX`.
pub const MAX_IMAGE_SIZE: u64 = 1 << 60;

/// Bytes of a streamed image's trailer (its real length, big-endian), after the extents' bytes.
pub const STREAM_TRAILER_LEN: u64 = 8;

/// The real length a streamed image's trailer says, if it is at most `bound` (the image's
/// announced size); `None` for a trailer claiming more.
pub fn read_trailer(trailer: &[u8; STREAM_TRAILER_LEN as usize], bound: u64) -> Option<u64> {
    Some(u64::from_be_bytes(*trailer)).filter(|&n| n <= bound)
}

/// One run of data in the image: `len` bytes at image offset `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// Where the run starts in the image.
    pub offset: u64,
    /// How long it is (never 0).
    pub len: u64,
}

impl Extent {
    /// End of the run (exclusive), saturating.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// A disk image: its size and where its data is. The payload is the extents' bytes in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Size of the image (and the least size of its target), in bytes.
    pub size: u64,
    /// The data runs, sorted by offset, disjoint, inside `0..size`.
    pub extents: Vec<Extent>,
    /// Read from a pipe: `size` is an upper bound, and the payload ends with a
    /// [`STREAM_TRAILER_LEN`]-byte trailer giving the real length (at most `size`).
    pub streamed: bool,
}

/// Why an image entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// More than [`MAX_EXTENTS`] extents.
    #[error("{0} extents, more than the {MAX_EXTENTS} allowed")]
    TooManyExtents(usize),
    /// The image is larger than [`MAX_IMAGE_SIZE`].
    #[error("image of {0} bytes is larger than the {MAX_IMAGE_SIZE} allowed")]
    TooLarge(u64),
    /// An extent of length zero.
    #[error("extent {0} is empty")]
    Empty(usize),
    /// An extent starts before the previous one ended.
    #[error("extent {0} overlaps the previous one or is out of order")]
    Overlap(usize),
    /// An extent reaches past the image's size.
    #[error("extent {0} reaches past the image's end")]
    PastEnd(usize),
    /// The extents' lengths (and a streamed image's trailer) do not add up to the payload.
    #[error("extents hold {data} bytes (and a stream's trailer), the payload is {payload}")]
    Payload {
        /// Sum of the extents' lengths.
        data: u64,
        /// The payload size of the manifest.
        payload: u64,
    },
    /// An image is the only entry of its manifest.
    #[error("an image must be the manifest's only entry")]
    NotAlone,
}

impl Image {
    /// Bytes of data: the sum of the extents' lengths (saturating).
    pub fn data_len(&self) -> u64 {
        self.extents.iter().fold(0u64, |a, e| a.saturating_add(e.len))
    }

    /// Accept the image only if it has at most [`MAX_EXTENTS`] extents, is at most
    /// [`MAX_IMAGE_SIZE`] bytes, every extent is non-empty, starts at or after the previous
    /// one's end and ends inside `size`, and the extents hold exactly `payload` bytes (a
    /// streamed image's: `payload` less the trailer).
    pub fn check(&self, payload: u64) -> Result<(), ImageError> {
        if self.extents.len() > MAX_EXTENTS {
            return Err(ImageError::TooManyExtents(self.extents.len()));
        }
        if self.size > MAX_IMAGE_SIZE {
            return Err(ImageError::TooLarge(self.size));
        }
        let mut prev_end = 0u64;
        let mut data = 0u64;
        for (i, e) in self.extents.iter().enumerate() {
            if e.len == 0 {
                return Err(ImageError::Empty(i));
            }
            if e.offset < prev_end {
                return Err(ImageError::Overlap(i));
            }
            match e.offset.checked_add(e.len) {
                Some(end) if end <= self.size => prev_end = end,
                _ => return Err(ImageError::PastEnd(i)),
            }
            // Disjoint extents inside `size` <= 2^60 cannot overflow.
            data += e.len;
        }
        if data.checked_add(self.trailer_len()) != Some(payload) {
            return Err(ImageError::Payload { data, payload });
        }
        Ok(())
    }

    /// Bytes of the payload after the extents' bytes: [`STREAM_TRAILER_LEN`] for a streamed
    /// image, else 0.
    pub fn trailer_len(&self) -> u64 {
        if self.streamed {
            STREAM_TRAILER_LEN
        } else {
            0
        }
    }

    /// The gaps between extents (and before the first, after the last): what reads as zero.
    pub fn holes(&self) -> impl Iterator<Item = Extent> + '_ {
        let ends = std::iter::once(0).chain(self.extents.iter().map(Extent::end));
        let starts = self.extents.iter().map(|e| e.offset).chain(std::iter::once(self.size));
        ends.zip(starts)
            .filter(|(a, b)| b > a)
            .map(|(offset, end)| Extent { offset, len: end - offset })
    }
}

impl super::Manifest {
    /// The name and the [`Image`] of a disk-image push; `None` for files and trees.
    pub fn image(&self) -> Option<(&super::RelPath, &Image)> {
        match self.entries.as_slice() {
            [super::Entry { path, kind: super::EntryKind::Image(img), .. }] => Some((path, img)),
            _ => None,
        }
    }

    /// Refuse a disk image whose size (what a receiver creates, or needs of a device) is above
    /// `max` (`mcast-recv --max-size`; a streamed image's size is its bound, so a receiver
    /// whose limit equals the sender's `--max-size` accepts it). Files and trees are refused
    /// when their payload is larger (the announcement's check leaves room for a stream's
    /// trailer, [`STREAM_TRAILER_LEN`], which a file does not have).
    pub fn check_max_size(self, max: Option<u64>) -> Result<Self, super::ManifestError> {
        let Some(max) = max else { return Ok(self) };
        let size = self.image().map_or(self.object_size, |(_, img)| img.size);
        if size > max {
            return Err(super::ManifestError::TooLarge { size, max });
        }
        Ok(self)
    }
}

/// Payload offsets to image offsets, for a checked [`Image`]: a binary search over where each
/// extent starts in the payload. A streamed image's trailer is payload but no image bytes:
/// [`pieces`](Self::pieces) leaves it out and [`trailer_part`](Self::trailer_part) finds it.
#[derive(Debug, Clone)]
pub struct ExtentMap {
    extents: Vec<Extent>,
    /// Payload offset of each extent's first byte.
    starts: Vec<u64>,
    /// Bytes of the extents together.
    data: u64,
    /// `data` plus the trailer.
    payload: u64,
}

/// Where a payload range meets a streamed image's trailer: bytes `at..at + len` of the range
/// are the trailer's bytes `trailer_at..trailer_at + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailerPart {
    /// Where the trailer's part starts within the range.
    pub at: usize,
    /// Where it starts within the trailer.
    pub trailer_at: usize,
    /// Its length.
    pub len: usize,
}

/// One piece of a payload range: `len` bytes at image offset `image`, which are the bytes at
/// `at` within the range asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Where the piece goes in the image.
    pub image: u64,
    /// Where the piece starts within the payload range asked for.
    pub at: usize,
    /// Its length.
    pub len: usize,
}

impl ExtentMap {
    /// The map of `image` (which should have passed [`Image::check`]).
    pub fn new(image: &Image) -> Self {
        let mut starts = Vec::with_capacity(image.extents.len());
        let mut payload = 0u64;
        for e in &image.extents {
            starts.push(payload);
            payload = payload.saturating_add(e.len);
        }
        let data = payload;
        let payload = payload.saturating_add(image.trailer_len());
        ExtentMap { extents: image.extents.clone(), starts, data, payload }
    }

    /// Payload size: the extents' bytes together, and a streamed image's trailer.
    pub fn payload_len(&self) -> u64 {
        self.payload
    }

    /// Payload bytes that are image bytes (the extents'; the trailer follows them).
    pub fn data_len(&self) -> u64 {
        self.data
    }

    /// The part of payload range `offset..offset + len` inside the trailer, if any.
    pub fn trailer_part(&self, offset: u64, len: usize) -> Option<TrailerPart> {
        let end = offset.checked_add(len as u64)?.min(self.payload);
        let start = offset.max(self.data);
        (start < end).then(|| TrailerPart {
            at: (start - offset) as usize,
            trailer_at: (start - self.data) as usize,
            len: (end - start) as usize,
        })
    }

    /// The image pieces of payload bytes `offset..offset + len`, in order (a trailer's bytes
    /// are not image bytes: see [`trailer_part`](Self::trailer_part)); `None` if the range
    /// reaches past the payload.
    pub fn pieces(&self, offset: u64, len: usize) -> Option<Vec<Piece>> {
        let end = offset.checked_add(len as u64).filter(|&e| e <= self.payload)?;
        let end = end.min(self.data);
        let mut out = Vec::new();
        if offset >= end {
            return Some(out);
        }
        // The extent holding `offset`: the last one starting at or before it.
        let mut i = self.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let mut pos = offset;
        while pos < end {
            let (e, start) = (self.extents[i], self.starts[i]);
            let within = pos - start;
            let n = (e.len - within).min(end - pos);
            out.push(Piece {
                image: e.offset + within,
                at: (pos - offset) as usize,
                len: n as usize,
            });
            pos += n;
            i += 1;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(size: u64, ext: &[(u64, u64)]) -> Image {
        Image {
            size,
            extents: ext.iter().map(|&(offset, len)| Extent { offset, len }).collect(),
            streamed: false,
        }
    }

    #[test]
    fn a_sparse_image_is_accepted_and_mapped() {
        let i = img(100, &[(0, 10), (10, 5), (40, 20), (99, 1)]);
        assert_eq!(i.check(36), Ok(()));
        assert_eq!(i.data_len(), 36);
        let holes: Vec<_> = i.holes().map(|h| (h.offset, h.len)).collect();
        assert_eq!(holes, [(15, 25), (60, 39)]);
        let m = ExtentMap::new(&i);
        assert_eq!(m.payload_len(), 36);
        let p = m.pieces(8, 10).unwrap();
        assert_eq!(
            p,
            [
                Piece { image: 8, at: 0, len: 2 },
                Piece { image: 10, at: 2, len: 5 },
                Piece { image: 40, at: 7, len: 3 }
            ]
        );
        assert_eq!(m.pieces(35, 1).unwrap(), [Piece { image: 99, at: 0, len: 1 }]);
        assert_eq!(m.pieces(36, 0).unwrap(), []);
        assert_eq!(m.pieces(35, 2), None, "one past the payload");
        assert_eq!(m.pieces(u64::MAX, 2), None);
        // No data at all: the whole image is one hole.
        let empty = img(50, &[]);
        assert_eq!(empty.check(0), Ok(()));
        assert_eq!(empty.holes().map(|h| (h.offset, h.len)).collect::<Vec<_>>(), [(0, 50)]);
        assert_eq!(img(0, &[]).holes().count(), 0);
    }

    #[test]
    fn each_check_refuses_its_case() {
        assert_eq!(img(100, &[(0, 10), (20, 0)]).check(10), Err(ImageError::Empty(1)));
        assert_eq!(img(100, &[(0, 10), (9, 5)]).check(15), Err(ImageError::Overlap(1)));
        assert_eq!(img(100, &[(50, 10), (0, 5)]).check(15), Err(ImageError::Overlap(1)));
        // Boundary pair: ending at the size passes, one past it fails.
        assert_eq!(img(100, &[(90, 10)]).check(10), Ok(()));
        assert_eq!(img(100, &[(90, 11)]).check(11), Err(ImageError::PastEnd(0)));
        assert_eq!(img(100, &[(1, u64::MAX)]).check(0), Err(ImageError::PastEnd(0)));
        assert_eq!(
            img(100, &[(0, 10)]).check(11),
            Err(ImageError::Payload { data: 10, payload: 11 })
        );
        assert_eq!(img(MAX_IMAGE_SIZE, &[]).check(0), Ok(()));
        assert_eq!(
            img(MAX_IMAGE_SIZE + 1, &[]).check(0),
            Err(ImageError::TooLarge(MAX_IMAGE_SIZE + 1))
        );
    }

    #[test]
    fn extent_count_is_bounded() {
        let ext: Vec<(u64, u64)> = (0..=MAX_EXTENTS as u64).map(|i| (2 * i, 1)).collect();
        let size = 2 * ext.len() as u64;
        let at_limit = img(size, &ext[..MAX_EXTENTS]);
        assert_eq!(at_limit.check(MAX_EXTENTS as u64), Ok(()));
        let over = img(size, &ext);
        assert_eq!(over.check(ext.len() as u64), Err(ImageError::TooManyExtents(MAX_EXTENTS + 1)));
        // The largest extent list still fits the manifest limit, with the largest varints.
        let per = postcard::to_allocvec(&Extent { offset: u64::MAX, len: u64::MAX }).unwrap();
        let worst = MAX_EXTENTS * per.len() + 64;
        assert!(worst <= crate::proto::wire::MAX_MANIFEST_LEN as usize, "{worst}");
    }

    #[test]
    fn a_streamed_image_has_a_trailer_after_its_data() {
        let s = Image { streamed: true, ..img(100, &[(0, 100)]) };
        // Boundary pair: the payload is the data and the trailer, not one byte less or more.
        assert_eq!(s.check(108), Ok(()));
        assert_eq!(s.check(107), Err(ImageError::Payload { data: 100, payload: 107 }));
        assert_eq!(s.check(100), Err(ImageError::Payload { data: 100, payload: 100 }));
        let m = ExtentMap::new(&s);
        assert_eq!((m.data_len(), m.payload_len()), (100, 108));
        // A range over the data's end and the trailer: one piece of image, then the trailer.
        assert_eq!(m.pieces(96, 12).unwrap(), [Piece { image: 96, at: 0, len: 4 }]);
        assert_eq!(m.trailer_part(96, 12), Some(TrailerPart { at: 4, trailer_at: 0, len: 8 }));
        assert_eq!(m.trailer_part(103, 3), Some(TrailerPart { at: 0, trailer_at: 3, len: 3 }));
        assert_eq!(m.trailer_part(0, 100), None);
        assert_eq!(m.pieces(100, 8).unwrap(), []);
        assert_eq!(m.pieces(100, 9), None, "one past the trailer");
        assert_eq!(ExtentMap::new(&img(100, &[(0, 100)])).trailer_part(0, 100), None);
        // The trailer's length: the bound passes, one more does not.
        assert_eq!(read_trailer(&100u64.to_be_bytes(), 100), Some(100));
        assert_eq!(read_trailer(&101u64.to_be_bytes(), 100), None);
        assert_eq!(read_trailer(&[0; 8], 100), Some(0));
    }

    #[test]
    fn pieces_agree_with_a_byte_by_byte_map() {
        let i = img(64, &[(3, 4), (7, 1), (20, 9), (40, 24)]);
        let m = ExtentMap::new(&i);
        let naive: Vec<u64> = i.extents.iter().flat_map(|e| e.offset..e.end()).collect();
        for off in 0..=naive.len() {
            for len in 0..=naive.len() - off {
                let mut got = Vec::new();
                for p in m.pieces(off as u64, len).unwrap() {
                    assert_eq!(p.at, got.len());
                    got.extend(p.image..p.image + p.len as u64);
                }
                assert_eq!(got, naive[off..off + len], "{off}+{len}");
            }
        }
    }
}

#[cfg(test)]
mod manifest_tests {
    use super::*;
    use crate::proto::manifest::{Entry, EntryError, EntryKind, Manifest, ManifestError, RelPath};
    use crate::proto::wire::Announce;

    fn entry(img: Image) -> Entry {
        Entry::new(RelPath::new("disk.img").unwrap(), EntryKind::Image(img))
    }

    fn decode(m_entries: Vec<Entry>, object_size: u64) -> Result<Manifest, ManifestError> {
        // Encoded without the checks `Manifest::new` applies, as a hostile sender would.
        let m = Manifest {
            entries: m_entries,
            object_size,
            symbol_size: 100,
            block_symbols: 10,
            compression: None,
        };
        let bytes = m.encode();
        let a = Announce {
            object_size,
            symbol_size: 100,
            block_symbols: 10,
            manifest_len: bytes.len() as u32,
            manifest_hash: *blake3::hash(&bytes).as_bytes(),
            hashes_len: 0,
            hashes_hash: [0; 32],
            rate_bps: 1,
            grtt_us: 1,
        };
        Manifest::decode(&bytes, &a)
    }

    fn refused(r: Result<Manifest, ManifestError>) -> ImageError {
        match r {
            Err(ManifestError::Entries(EntryError::Image(e))) => e,
            other => panic!("expected an image refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_image_manifest_round_trips() {
        let img = Image {
            size: 1 << 30,
            extents: vec![Extent { offset: 4096, len: 3000 }],
            streamed: false,
        };
        let m = decode(vec![entry(img.clone())], 3000).unwrap();
        assert_eq!(m.image().map(|(p, i)| (p.as_str(), i)), Some(("disk.img", &img)));
        assert_eq!(m.single_file_path(), None);
    }

    #[test]
    fn hostile_image_manifests_are_refused() {
        let ok =
            Image { size: 100, extents: vec![Extent { offset: 10, len: 50 }], streamed: false };
        let file = Entry::file(RelPath::new("f").unwrap(), 0, 0);
        assert_eq!(
            refused(decode(vec![entry(ok.clone()), file.clone()], 50)),
            ImageError::NotAlone
        );
        assert_eq!(refused(decode(vec![file, entry(ok.clone())], 50)), ImageError::NotAlone);
        let short = decode(vec![entry(ok.clone())], 51);
        assert_eq!(refused(short), ImageError::Payload { data: 50, payload: 51 });
        let past = Image { size: 59, ..ok.clone() };
        assert_eq!(refused(decode(vec![entry(past)], 50)), ImageError::PastEnd(0));
        let two = |a: u64, b: u64| Image {
            size: 100,
            extents: vec![Extent { offset: a, len: 10 }, Extent { offset: b, len: 10 }],
            streamed: false,
        };
        assert_eq!(refused(decode(vec![entry(two(20, 15))], 20)), ImageError::Overlap(1));
        assert!(decode(vec![entry(two(20, 30))], 20).is_ok(), "touching extents are fine");
        let empty =
            Image { size: 100, extents: vec![Extent { offset: 0, len: 0 }], streamed: false };
        assert_eq!(refused(decode(vec![entry(empty)], 0)), ImageError::Empty(0));
    }

    #[test]
    fn a_receiver_limit_equal_to_a_streams_bound_accepts_it() {
        let bound = 1000;
        let s =
            Image { size: bound, extents: vec![Extent { offset: 0, len: bound }], streamed: true };
        let m = decode(vec![entry(s)], bound + STREAM_TRAILER_LEN).unwrap();
        assert!(m.clone().check_max_size(Some(bound)).is_ok());
        assert_eq!(
            m.check_max_size(Some(bound - 1)).err(),
            Some(ManifestError::TooLarge { size: bound, max: bound - 1 })
        );
        // A file gets no trailer's slack: its payload is bounded exactly.
        let f = decode(vec![Entry::file(RelPath::new("f").unwrap(), 0, 50)], 50).unwrap();
        assert!(f.clone().check_max_size(Some(50)).is_ok());
        assert!(f.check_max_size(Some(49)).is_err());
    }
}
