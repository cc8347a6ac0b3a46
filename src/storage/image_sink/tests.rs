//! Unit tests of the image sinks: blocks land at their image offsets, a sparse file stays
//! sparse, a device is marked incomplete until the held first region is committed last, holes
//! are zeroed only when asked, and unfinished sinks leave the destination alone.

use super::*;
use crate::proto::layout::Layout;
use crate::proto::manifest::{Entry, EntryKind, Extent, HashList, Image, RelPath};
use std::os::unix::fs::MetadataExt;

const K: u64 = 1 << 10;

/// An image of 3 MiB: data at 4 KiB..12 KiB (inside the held first region), at 1 MiB + 100
/// (crossing nothing), and at the last 5 bytes.
fn image() -> (Image, Vec<u8>) {
    let ext = [(4 * K, 8 * K), (HOLD_BYTES + 100, 300 * K), (3 * HOLD_BYTES - 5, 5)];
    let img = Image {
        size: 3 * HOLD_BYTES,
        extents: ext.iter().map(|&(offset, len)| Extent { offset, len }).collect(),
        streamed: false,
    };
    let data: Vec<u8> = (0..img.data_len()).map(|i| (i % 253) as u8 + 1).collect();
    (img, data)
}

fn manifest(img: &Image) -> Manifest {
    let e = Entry::new(RelPath::new("disk.img").unwrap(), EntryKind::Image(img.clone()));
    Manifest::new(vec![e], img.data_len(), 1024, 16).unwrap()
}

/// The image as bytes, with `fill` in the holes.
fn expected(img: &Image, data: &[u8], fill: u8) -> Vec<u8> {
    let mut out = vec![fill; img.size as usize];
    let mut at = 0usize;
    for e in &img.extents {
        out[e.offset as usize..e.end() as usize].copy_from_slice(&data[at..at + e.len as usize]);
        at += e.len as usize;
    }
    out
}

/// Writes every block of `data` into `sink` in reverse order.
fn fill(sink: &mut dyn Sink, m: &Manifest, data: &[u8]) -> HashList {
    let layout: Layout = m.layout().unwrap();
    for b in (0..layout.block_count()).rev() {
        let (off, len) = (layout.block_offset(b).unwrap(), layout.block_len(b).unwrap());
        sink.write_block(off, &data[off as usize..off as usize + len]).unwrap();
    }
    HashList::of_bytes(data, layout)
}

#[test]
fn a_file_target_is_sparse_and_placed_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = image();
    let m = manifest(&img);
    let mut sink = open(dir.path(), &m, &ImageTarget::default()).unwrap().0;
    let dest = dir.path().join("disk.img");
    assert_eq!(sink.destination(), dest);
    let hashes = fill(sink.as_mut(), &m, &data);
    assert!(!dest.exists(), "nothing at the destination before finish");
    sink.finish(&hashes, true).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), expected(&img, &data, 0));
    // Sparse: far fewer blocks allocated than the image's 3 MiB.
    let blocks = std::fs::metadata(&dest).unwrap().blocks() * 512;
    assert!(blocks < HOLD_BYTES, "{blocks} bytes allocated");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    // --output naming the file itself.
    let other = dir.path().join("copy.raw");
    let mut sink = open(&other, &m, &ImageTarget::default()).unwrap().0;
    let hashes = fill(sink.as_mut(), &m, &data);
    sink.finish(&hashes, false).unwrap();
    assert_eq!(std::fs::read(&other).unwrap(), expected(&img, &data, 0));
}

#[test]
fn an_unfinished_file_target_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = image();
    let m = manifest(&img);
    let mut sink = open(dir.path(), &m, &ImageTarget::default()).unwrap().0;
    sink.write_block(0, &data[..100]).unwrap();
    sink.abort();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

fn device(dir: &Path, len: u64, byte: u8) -> PathBuf {
    let p = dir.join("dev");
    std::fs::write(&p, vec![byte; len as usize]).unwrap();
    p
}

const FORCE: ImageTarget = ImageTarget { device: true, force: true, zero_fill: false };

#[test]
fn a_device_is_marked_until_the_first_region_is_committed_last() {
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = image();
    let m = manifest(&img);
    let dev = device(dir.path(), img.size, 0xee);
    let mut sink = open(&dev, &m, &FORCE).unwrap().0;
    let id = to_hex(&crate::storage::resume::push_id(&m));
    assert_eq!(read_marker(&dev).unwrap(), Some((id.clone(), img.size)));
    let hashes = fill(sink.as_mut(), &m, &data);
    // Everything but the first region is written; the marker is still there.
    let mid = std::fs::read(&dev).unwrap();
    assert!(mid.starts_with(MARKER_MAGIC));
    let first_data = &expected(&img, &data, 0)[4 * K as usize..12 * K as usize];
    assert_ne!(&mid[4 * K as usize..12 * K as usize], first_data, "held in memory");
    let want = expected(&img, &data, 0xee);
    assert_eq!(mid[HOLD_BYTES as usize..], want[HOLD_BYTES as usize..]);
    sink.finish(&hashes, true).unwrap();
    let done = std::fs::read(&dev).unwrap();
    // The first region comes whole from the image (its holes as zeros); the rest keeps the old
    // bytes in holes without --zero-fill.
    let mut first = expected(&img, &data, 0)[..HOLD_BYTES as usize].to_vec();
    first.extend_from_slice(&want[HOLD_BYTES as usize..]);
    assert_eq!(done, first);
    assert_eq!(read_marker(&dev).unwrap(), None);
}

#[test]
fn zero_fill_clears_the_holes() {
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = image();
    let m = manifest(&img);
    // A larger "device": bytes past the image are not the image's and stay.
    let dev = device(dir.path(), img.size + 10, 0xee);
    let mut sink = open(&dev, &m, &ImageTarget { zero_fill: true, ..FORCE }).unwrap().0;
    let hashes = fill(sink.as_mut(), &m, &data);
    sink.finish(&hashes, false).unwrap();
    let done = std::fs::read(&dev).unwrap();
    assert_eq!(done[..img.size as usize], expected(&img, &data, 0)[..]);
    assert_eq!(done[img.size as usize..], [0xee; 10]);
}

#[test]
fn an_interrupted_device_keeps_its_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = image();
    let m = manifest(&img);
    let dev = device(dir.path(), img.size, 0xee);
    let mut sink = open(&dev, &m, &FORCE).unwrap().0;
    let layout = m.layout().unwrap();
    sink.write_block(0, &data[..layout.block_len(0).unwrap()]).unwrap();
    sink.abort();
    assert!(read_marker(&dev).unwrap().is_some());
    // A smaller regular file is grown to the image's size under --force.
    let small = device(dir.path(), 10, 1);
    drop(open(&small, &m, &FORCE).unwrap());
    assert_eq!(std::fs::metadata(&small).unwrap().len(), img.size);
}

#[test]
fn refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = image();
    let m = manifest(&img);
    let dev = device(dir.path(), img.size, 0);
    let e = open(&dev, &m, &ImageTarget { force: false, ..FORCE }).err().unwrap();
    assert!(e.to_string().contains("not a block device"), "{e}");
    assert_eq!(std::fs::read(&dev).unwrap(), vec![0; img.size as usize], "untouched");
    let file = Manifest::single_file(RelPath::new("f").unwrap(), 10, 1024, 16).unwrap();
    let e = open(&dev, &file, &FORCE).err().unwrap();
    assert!(e.to_string().contains("disk-image push"), "{e}");
}

/// Writes and records every block of `data` whose number `keep` admits; returns their hashes.
fn fill_recorded(sink: &mut dyn Sink, m: &Manifest, data: &[u8], keep: impl Fn(u32) -> bool) {
    let layout: Layout = m.layout().unwrap();
    for b in (0..layout.block_count()).filter(|&b| keep(b)) {
        let (off, len) = (layout.block_offset(b).unwrap(), layout.block_len(b).unwrap());
        let bytes = &data[off as usize..off as usize + len];
        sink.write_block(off, bytes).unwrap();
        sink.record_block(b, *blake3::hash(bytes).as_bytes());
    }
}

#[test]
fn an_interrupted_device_push_resumes_from_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = image();
    let m = manifest(&img);
    let layout = m.layout().unwrap();
    let hashes = HashList::of_bytes(&data, layout);
    let dev = device(dir.path(), img.size, 0xee);
    let (mut sink, held) = open(&dev, &m, &FORCE).unwrap();
    assert!(held.is_empty(), "a fresh device holds nothing");
    // The even blocks verify, then the receive is interrupted.
    fill_recorded(sink.as_mut(), &m, &data, |b| b % 2 == 0);
    sink.suspend();
    assert!(read_marker(&dev).unwrap().is_some(), "still marked incomplete");
    // Block 0 has bytes in the held first MiB (in memory, lost): not kept. Every other even
    // block is, with the hash of its bytes.
    let (mut sink, held) = open(&dev, &m, &FORCE).unwrap();
    let want: Vec<(u32, [u8; 32])> =
        (2..layout.block_count()).step_by(2).map(|b| (b, *hashes.get(b).unwrap())).collect();
    assert!(want.len() >= 5);
    assert_eq!(held, want);
    // The rest arrives; the commit overwrites the journal with the image's first MiB.
    fill_recorded(sink.as_mut(), &m, &data, |b| b % 2 == 1 || b == 0);
    sink.finish(&hashes, true).unwrap();
    let done = std::fs::read(&dev).unwrap();
    let mut first = expected(&img, &data, 0)[..HOLD_BYTES as usize].to_vec();
    first.extend_from_slice(&expected(&img, &data, 0xee)[HOLD_BYTES as usize..]);
    assert!(done == first, "the resumed device reads as the image");
    assert_eq!(read_marker(&dev).unwrap(), None);
    // Committed: the same push again starts over (no marker, so no journal is believed).
    let (sink, held) = open(&dev, &m, &FORCE).unwrap();
    assert!(held.is_empty());
    sink.abort();
}

#[test]
fn another_push_or_a_failure_starts_a_device_over() {
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = image();
    let m = manifest(&img);
    let dev = device(dir.path(), img.size, 0xee);
    let interrupted = |m: &Manifest, data: &[u8]| {
        let (mut sink, _) = open(&dev, m, &FORCE).unwrap();
        fill_recorded(sink.as_mut(), m, data, |_| true);
        sink.suspend();
    };
    interrupted(&m, &data);
    // Another image (another push id) on the same device: nothing of the first is believed,
    // and its journal is zeroed.
    let other = Image {
        size: img.size,
        extents: vec![Extent { offset: HOLD_BYTES, len: 200 * K }],
        streamed: false,
    };
    let other_data = vec![3u8; other.data_len() as usize];
    let (sink, held) = open(&dev, &manifest(&other), &FORCE).unwrap();
    assert!(held.is_empty(), "another push");
    sink.suspend();
    let (sink, held) = open(&dev, &m, &FORCE).unwrap();
    assert!(held.is_empty(), "the first push's journal is gone");
    sink.suspend();
    // A failed push (abort) forgets its journal; an interrupted one (suspend) keeps it.
    interrupted(&manifest(&other), &other_data);
    let (sink, held) = open(&dev, &manifest(&other), &FORCE).unwrap();
    assert!(!held.is_empty(), "interrupted: resumable");
    sink.abort();
    let (sink, held) = open(&dev, &manifest(&other), &FORCE).unwrap();
    assert!(held.is_empty(), "failed: starts over");
    sink.abort();
}

/// A streamed image of bound `bound` holding `stream`: its manifest and payload (the stream,
/// zeros to the bound, the trailer).
fn streamed(bound: u64, stream: &[u8]) -> (Manifest, Vec<u8>) {
    let img =
        Image { size: bound, extents: vec![Extent { offset: 0, len: bound }], streamed: true };
    let e = Entry::new(RelPath::new("disk.img").unwrap(), EntryKind::Image(img));
    let m = Manifest::new(vec![e], bound + 8, 1024, 64).unwrap();
    let mut payload = stream.to_vec();
    payload.resize(bound as usize, 0);
    payload.extend_from_slice(&(stream.len() as u64).to_be_bytes());
    (m, payload)
}

/// 1.5 MiB: data in the held region, a zero run, data after the held region ending inside a
/// granule.
fn stream_bytes() -> Vec<u8> {
    let mut s = vec![0u8; 3 * HOLD_BYTES as usize / 2 + 1000];
    s[..5000].fill(7);
    let tail = s.len() - 3000;
    s[HOLD_BYTES as usize + 64 * K as usize..tail].fill(9);
    s
}

#[test]
fn a_streamed_file_target_is_truncated_to_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let stream = stream_bytes();
    let (m, payload) = streamed(4 * HOLD_BYTES, &stream);
    let mut sink = open(dir.path(), &m, &ImageTarget::default()).unwrap().0;
    let hashes = fill(sink.as_mut(), &m, &payload);
    sink.finish(&hashes, true).unwrap();
    assert_eq!(std::fs::read(dir.path().join("disk.img")).unwrap(), stream);
    // A trailer claiming one byte more than the bound is refused, nothing placed.
    let (m, mut payload) = streamed(stream.len() as u64, &stream);
    let n = payload.len();
    payload[n - 8..].copy_from_slice(&(stream.len() as u64 + 1).to_be_bytes());
    let out = dir.path().join("bad.img");
    let mut sink = open(&out, &m, &ImageTarget::default()).unwrap().0;
    let hashes = fill(sink.as_mut(), &m, &payload);
    assert!(matches!(sink.finish(&hashes, false), Err(StorageError::SizeMismatch { .. })));
    assert!(!out.exists());
}

#[test]
fn a_streamed_device_is_written_only_up_to_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let stream = stream_bytes();
    let bound = 4 * HOLD_BYTES;
    let (m, payload) = streamed(bound, &stream);
    for zero_fill in [false, true] {
        let dev = device(dir.path(), bound, 0xee);
        let target = ImageTarget { zero_fill, ..FORCE };
        let mut sink = open(&dev, &m, &target).unwrap().0;
        let hashes = fill(sink.as_mut(), &m, &payload);
        sink.finish(&hashes, true).unwrap();
        let done = std::fs::read(&dev).unwrap();
        let n = stream.len();
        // Past the stream's end: the old bytes, untouched either way.
        assert!(done[n..].iter().all(|&b| b == 0xee), "zero_fill {zero_fill}");
        if zero_fill {
            assert_eq!(done[..n], stream[..]);
        } else {
            // The held region whole; after it, the zero run keeps the old bytes.
            assert_eq!(done[..HOLD_BYTES as usize], stream[..HOLD_BYTES as usize]);
            let run = HOLD_BYTES as usize..HOLD_BYTES as usize + 64 * K as usize;
            assert!(done[run].iter().all(|&b| b == 0xee));
            assert!(done[n - 3000..n].iter().all(|&b| b == 0xee), "trailing zeros not written");
        }
        assert_eq!(read_marker(&dev).unwrap(), None);
    }
}

#[test]
fn a_stream_shorter_than_the_marker_clears_the_marker_and_nothing_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let stream = vec![5u8; 100];
    let bound = 2 * HOLD_BYTES;
    let (m, payload) = streamed(bound, &stream);
    let dev = device(dir.path(), bound, 0xee);
    let mut sink = open(&dev, &m, &FORCE).unwrap().0;
    let hashes = fill(sink.as_mut(), &m, &payload);
    sink.finish(&hashes, true).unwrap();
    let done = std::fs::read(&dev).unwrap();
    assert_eq!(done[..100], stream[..]);
    // The marker's 4 KiB are overwritten (zeros after the stream), the rest is untouched.
    assert!(done[100..4096].iter().all(|&b| b == 0));
    assert!(done[4096..].iter().all(|&b| b == 0xee));
    assert_eq!(read_marker(&dev).unwrap(), None);
    // An empty stream to a file: an empty file.
    let (m, payload) = streamed(bound, &[]);
    let out = dir.path().join("empty.img");
    let mut sink = open(&out, &m, &ImageTarget::default()).unwrap().0;
    let hashes = fill(sink.as_mut(), &m, &payload);
    sink.finish(&hashes, false).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), b"");
}
