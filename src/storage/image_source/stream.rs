//! [`StreamSource`], the [`Source`] of `mcast-send --image - --max-size BOUND`: a disk image
//! read from a pipe as the push goes, never all at once.
//!
//! The manifest describes a *streamed* image ([`Image::streamed`]): size `BOUND`, one extent
//! `0..BOUND`, and the payload ends with the [`STREAM_TRAILER_LEN`]-byte trailer that gives the
//! real length. Nothing is read before the first datagram. Blocks are read from the pipe when
//! the sender's workers first ask for them (in order, [`SenderConfig::cache_blocks`] ahead of
//! the cursor), in granules of [`GRANULE`] bytes: a granule that is all zero is only noted
//! (it costs nothing here, one symbol per block on the wire in the compressed session every
//! stream is, and nothing at the receiver), the others are appended to an unlinked spool file,
//! so that a block that left the sender's cache can be read again for repairs. The spool
//! therefore holds the stream's non-zero granules and nothing else (600 MiB of data in a
//! 4 GiB stream spool 600 MiB at most); its index is 8 bytes per granule read.
//!
//! Past the end of the stream the payload reads as zeros; the trailer is known once the pipe
//! ended (asking for it reads the pipe to its end). A pipe longer than `BOUND` makes the
//! trailer unreadable ([`StorageError::StreamTooLong`], also [`Source::failed`]): the last
//! block is never sent, so no receiver completes, and the sender stops with that error.
//!
//! [`SenderConfig::cache_blocks`]: crate::proto::sender::SenderConfig

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Mutex, RwLock};

use super::is_zero;
use crate::proto::manifest::{Entry, EntryKind, Extent, Image, RelPath, STREAM_TRAILER_LEN};
use crate::storage::names::random_u64;
use crate::storage::{Source, StorageError};

/// Bytes read from the pipe at a time, and the unit of the zero test (64 KiB).
pub const GRANULE: u64 = 64 << 10;

/// Index value of an all-zero granule.
const ZERO: u64 = u64::MAX;

/// A disk image read from a pipe as it is sent.
pub struct StreamSource {
    bound: u64,
    entries: Vec<Entry>,
    /// The pipe; held while reading from it (in order).
    input: Mutex<Box<dyn Read + Send>>,
    index: RwLock<Index>,
    spool: File,
}

impl std::fmt::Debug for StreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource").field("bound", &self.bound).finish_non_exhaustive()
    }
}

/// What has been read from the pipe so far.
#[derive(Debug, Default)]
struct Index {
    /// Bytes of the stream read (a multiple of [`GRANULE`] until the end).
    read: u64,
    /// The stream's length, once its end was seen.
    end: Option<u64>,
    /// Per granule read: its offset in the spool, or [`ZERO`].
    granules: Vec<u64>,
    /// Bytes in the spool.
    spooled: u64,
    /// Why the stream cannot be sent (sticky).
    failure: Option<Failure>,
}

#[derive(Debug, Clone)]
enum Failure {
    TooLong,
    Read(std::io::ErrorKind, String),
}

impl StreamSource {
    /// A source reading `input` (at most `bound` bytes) as image `name`, spooling into an
    /// unlinked temp file in `spool_dir`.
    pub fn new(
        input: Box<dyn Read + Send>,
        bound: u64,
        name: &str,
        spool_dir: &Path,
    ) -> Result<Self, StorageError> {
        let image = Image { size: bound, extents: whole(bound), streamed: true };
        image.check(bound.saturating_add(STREAM_TRAILER_LEN)).map_err(|e| {
            StorageError::Manifest(crate::proto::manifest::EntryError::from(e).into())
        })?;
        let name = RelPath::new(name).or_else(|_| RelPath::new("image"))?;
        let path = spool_dir.join(format!(".mcast-image-spool-{:016x}", random_u64()));
        let spool = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| StorageError::io("create spool file", &path, e))?;
        // Unlinked at once: nothing to clean up whatever happens.
        std::fs::remove_file(&path).map_err(|e| StorageError::io("unlink spool file", &path, e))?;
        tracing::info!("streaming an image from standard input, at most {bound} bytes");
        Ok(StreamSource {
            bound,
            entries: vec![Entry::new(name, EntryKind::Image(image))],
            input: Mutex::new(input),
            index: RwLock::new(Index::default()),
            spool,
        })
    }

    /// The bound (`--max-size`): the announced image size.
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// The stream's length, once its end was read.
    pub fn stream_len(&self) -> Option<u64> {
        self.index.read().map_or(None, |i| i.end)
    }

    /// Bytes in the spool file (the non-zero granules read so far).
    pub fn spooled(&self) -> u64 {
        self.index.read().map_or(0, |i| i.spooled)
    }

    fn failure_error(&self, f: &Failure) -> StorageError {
        match f {
            Failure::TooLong => StorageError::StreamTooLong { bound: self.bound },
            Failure::Read(kind, msg) => {
                StorageError::io("read", "standard input", std::io::Error::new(*kind, msg.clone()))
            }
        }
    }

    /// Reads the pipe until `need` stream bytes are read or it ended; `need > bound` also
    /// makes sure the stream ends at the bound.
    fn fill(&self, need: u64) -> Result<(), StorageError> {
        let done = |i: &Index| i.end.is_some() || i.read >= need || i.failure.is_some();
        if self.index.read().map(|i| done(&i)).unwrap_or(true) {
            return self.check_failure();
        }
        let mut input = self.input.lock().map_err(|_| poisoned())?;
        let mut buf = vec![0u8; GRANULE as usize];
        loop {
            let (read, spooled) = {
                let i = self.index.read().map_err(|_| poisoned())?;
                if done(&i) {
                    break;
                }
                (i.read, i.spooled)
            };
            if read == self.bound {
                // At the bound: the stream must end here.
                let mut probe = [0u8; 1];
                let n = read_full(&mut **input, &mut probe);
                let mut i = self.index.write().map_err(|_| poisoned())?;
                match n {
                    Ok(0) => i.end = Some(read),
                    Ok(_) => i.failure = Some(Failure::TooLong),
                    Err(e) => i.failure = Some(Failure::Read(e.kind(), e.to_string())),
                }
                continue;
            }
            let want = GRANULE.min(self.bound - read) as usize;
            let n = match read_full(&mut **input, &mut buf[..want]) {
                Ok(n) => n,
                Err(e) => {
                    let mut i = self.index.write().map_err(|_| poisoned())?;
                    i.failure = Some(Failure::Read(e.kind(), e.to_string()));
                    continue;
                }
            };
            let data = &buf[..n];
            let at = if n == 0 || is_zero(data) {
                ZERO
            } else {
                self.spool
                    .write_all_at(data, spooled)
                    .map_err(|e| StorageError::io("write spool file", "(unlinked)", e))?;
                spooled
            };
            let mut i = self.index.write().map_err(|_| poisoned())?;
            if n > 0 {
                i.granules.push(at);
                i.read += n as u64;
                if at != ZERO {
                    i.spooled += n as u64;
                }
            }
            if n < want {
                i.end = Some(i.read);
                tracing::info!(
                    "standard input ended after {} bytes ({} spooled)",
                    i.read,
                    i.spooled
                );
            }
        }
        drop(input);
        self.check_failure()
    }

    fn check_failure(&self) -> Result<(), StorageError> {
        let i = self.index.read().map_err(|_| poisoned())?;
        match &i.failure {
            Some(f) => Err(self.failure_error(f)),
            None => Ok(()),
        }
    }
}

fn poisoned() -> StorageError {
    StorageError::Unsupported("the stream's state was poisoned by a panic".into())
}

fn whole(len: u64) -> Vec<Extent> {
    if len == 0 {
        Vec::new()
    } else {
        vec![Extent { offset: 0, len }]
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Source for StreamSource {
    fn len(&self) -> u64 {
        self.bound + STREAM_TRAILER_LEN
    }

    fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let size = self.len();
        let end = match offset.checked_add(buf.len() as u64) {
            Some(e) if e <= size => e,
            _ => return Err(StorageError::OutOfRange { offset, len: buf.len() as u64, size }),
        };
        let data_end = end.min(self.bound);
        // The trailer needs the stream's end (one byte past the bound proves it too long).
        self.fill(if end > self.bound { self.bound + 1 } else { data_end })?;
        let i = self.index.read().map_err(|_| poisoned())?;
        let mut pos = offset;
        while pos < data_end {
            let g = pos / GRANULE;
            let g_start = g * GRANULE;
            let n = ((g_start + GRANULE).min(data_end) - pos) as usize;
            let dst = &mut buf[(pos - offset) as usize..][..n];
            // Bytes of this granule the stream had (the last granule may be short).
            let have = i.read.saturating_sub(pos).min(n as u64) as usize;
            match i.granules.get(g as usize) {
                Some(&at) if at != ZERO && have > 0 => {
                    self.spool
                        .read_exact_at(&mut dst[..have], at + (pos - g_start))
                        .map_err(|e| StorageError::io("read spool file", "(unlinked)", e))?;
                    dst[have..].fill(0);
                }
                // A zero granule, or past the stream's end (filled above, so it ended).
                _ => dst.fill(0),
            }
            pos += n as u64;
        }
        if end > self.bound {
            let real = i.end.unwrap_or(self.bound).to_be_bytes();
            let from = offset.max(self.bound);
            let t = (from - self.bound) as usize;
            let at = (from - offset) as usize;
            let n = (end - from) as usize;
            buf[at..at + n].copy_from_slice(&real[t..t + n]);
        }
        Ok(())
    }

    fn failed(&self) -> Option<StorageError> {
        let i = self.index.read().ok()?;
        i.failure.as_ref().map(|f| self.failure_error(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(data: Vec<u8>, bound: u64) -> (tempfile::TempDir, StreamSource) {
        let dir = tempfile::tempdir().unwrap();
        let s = StreamSource::new(Box::new(std::io::Cursor::new(data)), bound, "d", dir.path());
        (dir, s.unwrap())
    }

    fn stream(len: usize) -> Vec<u8> {
        let g = GRANULE as usize;
        let mut v = vec![0u8; len];
        // Data in granule 0, 2 and the last (partial) one; 1 and 3.. zero.
        for (i, b) in v.iter_mut().enumerate() {
            let gi = i / g;
            if gi == 0 || gi == 2 || gi == (len - 1) / g {
                *b = (i % 251) as u8 + 1;
            }
        }
        v
    }

    #[test]
    fn reads_back_the_stream_zeros_past_its_end_and_the_trailer() {
        let len = 5 * GRANULE as usize + 100;
        let data = stream(len);
        let bound = 8 * GRANULE;
        let (_d, s) = source(data.clone(), bound);
        assert_eq!(s.len(), bound + 8);
        // Out of order: the end first reads the whole pipe.
        let tail = s.read_at(bound - 4, 12).unwrap();
        assert_eq!(&tail[..4], &[0; 4]);
        assert_eq!(&tail[4..], &(len as u64).to_be_bytes());
        assert_eq!(s.stream_len(), Some(len as u64));
        assert_eq!(s.read_at(0, len).unwrap(), data);
        assert_eq!(s.read_at(len as u64 - 3, 10).unwrap()[3..], [0; 7]);
        // Only the non-zero granules were spooled: 0, 2 and the last partial one.
        assert_eq!(s.spooled(), 2 * GRANULE + 100);
        assert!(s.failed().is_none());
        assert!(matches!(s.read_at(bound + 1, 8), Err(StorageError::OutOfRange { .. })));
    }

    #[test]
    fn a_stream_of_exactly_the_bound_passes_and_one_byte_more_fails() {
        let bound = 3 * GRANULE + 7;
        let data = stream(bound as usize);
        let (_d, s) = source(data.clone(), bound);
        assert_eq!(s.read_at(0, bound as usize + 8).unwrap()[..bound as usize], data[..]);
        assert_eq!(s.stream_len(), Some(bound));
        let mut longer = data.clone();
        longer.push(1);
        let (_d, s) = source(longer, bound);
        // The data reads, the trailer does not, and the source says why.
        assert_eq!(s.read_at(0, bound as usize).unwrap(), data);
        let e = s.read_at(bound, 8).unwrap_err();
        assert!(matches!(e, StorageError::StreamTooLong { bound: b } if b == bound), "{e}");
        assert!(matches!(s.failed(), Some(StorageError::StreamTooLong { .. })));
    }

    #[test]
    fn an_empty_stream_is_an_image_of_length_zero() {
        let (_d, s) = source(Vec::new(), GRANULE);
        assert_eq!(s.read_at(GRANULE, 8).unwrap(), 0u64.to_be_bytes());
        assert_eq!(s.read_at(0, GRANULE as usize).unwrap(), vec![0; GRANULE as usize]);
        assert_eq!(s.spooled(), 0);
        let m = s.manifest(1024, 64).unwrap();
        let (_, img) = m.image().unwrap();
        assert!(img.streamed);
        assert_eq!(img.size, GRANULE);
    }
}
