//! Unit tests of [`ImageSource`]: holes and zero runs left out, payload reads through the
//! extents, `--no-sparse`, a pipe read as a stream, and the extent bound.

use super::*;
use std::io::{Read, Write};

const G: u64 = DEFAULT_GRANULARITY;

fn opts(sparse: bool, threads: usize) -> ImageOptions {
    ImageOptions { sparse, granularity: G, threads, stream_bound: None, stream_command: None }
}

/// A 64-granule image: data at granule 1 (random-ish), a written zero run at granules 2..4,
/// a hole at 4..40, data at 40..41.5 (a partial granule then zeros), a hole to the end.
fn sample(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("disk.img");
    let size = 64 * G;
    let mut content = vec![0u8; size as usize];
    for (i, b) in content[G as usize..2 * G as usize].iter_mut().enumerate() {
        *b = (i * 7 + 1) as u8 | 1;
    }
    let tail = 40 * G as usize;
    for (i, b) in content[tail..tail + (G as usize * 3 / 2)].iter_mut().enumerate() {
        *b = (i % 251) as u8 + 1;
    }
    let f = File::create(&path).unwrap();
    f.set_len(size).unwrap();
    f.write_all_at(&content[..4 * G as usize], 0).unwrap();
    f.write_all_at(&content[tail..tail + 2 * G as usize], tail as u64).unwrap();
    (path, content)
}

fn payload(src: &ImageSource) -> Vec<u8> {
    src.read_at(0, src.len() as usize).unwrap()
}

#[test]
fn holes_and_zero_runs_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let (path, content) = sample(dir.path());
    for threads in [1, 3] {
        let src = ImageSource::open(&path, &opts(true, threads)).unwrap();
        let ext: Vec<_> = src.image().extents.iter().map(|e| (e.offset / G, e.len)).collect();
        // Granule 0 is all zero too (written zeros): only granules 1, 40 and 41 hold data.
        assert_eq!(ext, [(1, G), (40, 2 * G)], "threads {threads}");
        assert_eq!(src.image_size(), 64 * G);
        assert_eq!(src.len(), 3 * G);
        let mut want = content[G as usize..2 * G as usize].to_vec();
        want.extend_from_slice(&content[40 * G as usize..42 * G as usize]);
        assert_eq!(payload(&src), want);
        // A read across the extent boundary.
        assert_eq!(src.read_at(G - 3, 6).unwrap(), want[G as usize - 3..G as usize + 3]);
        assert!(src.read_at(3 * G - 1, 2).is_err());
        let m = src.manifest(1400, 64).unwrap();
        assert_eq!(m.image().unwrap().0.as_str(), "disk.img");
    }
}

#[test]
fn no_sparse_sends_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (path, content) = sample(dir.path());
    let src = ImageSource::open(&path, &opts(false, 1)).unwrap();
    assert_eq!(src.image().extents, [Extent { offset: 0, len: 64 * G }]);
    assert_eq!(payload(&src), content);
}

#[test]
fn an_image_of_zeros_has_no_payload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zeros.img");
    std::fs::write(&path, vec![0u8; 3 * G as usize + 5]).unwrap();
    let src = ImageSource::open(&path, &opts(true, 2)).unwrap();
    assert_eq!((src.len(), src.image_size()), (0, 3 * G + 5));
    assert!(src.image().extents.is_empty());
    // One non-zero byte in the short last granule is found.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[9], 3 * G + 4).unwrap();
    let src = ImageSource::open(&path, &opts(true, 2)).unwrap();
    assert_eq!(src.image().extents, [Extent { offset: 3 * G, len: 5 }]);
}

#[test]
fn seek_data_finds_the_data_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let ranges = data_ranges(&File::open(&path).unwrap(), 64 * G);
    // The file system may round to its own blocks, but never reports the big hole as data.
    let covered: u64 = ranges.iter().map(|e| e.len).sum();
    assert!((6 * G..20 * G).contains(&covered), "{ranges:?}");
    assert!(ranges.iter().all(|e| e.end() <= 4 * G || e.offset >= 40 * G), "{ranges:?}");
}

#[test]
fn a_pipe_is_streamed_and_spools_only_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (_, content) = sample(dir.path());
    // A reader that hands over odd-sized pieces, as a pipe does.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (self.0.len() - self.1).min(buf.len()).min(12_345);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }
    let spool_dir = tempfile::tempdir().unwrap();
    let bound = 100 * G;
    let src =
        StreamSource::new(Box::new(Trickle(content.clone(), 0)), bound, "image", spool_dir.path())
            .unwrap();
    assert_eq!(std::fs::read_dir(spool_dir.path()).unwrap().count(), 0, "the spool is unlinked");
    assert_eq!(src.len(), bound + 8);
    let all = src.read_at(0, src.len() as usize).unwrap();
    assert_eq!(all[..content.len()], content[..]);
    assert!(all[content.len()..bound as usize].iter().all(|&b| b == 0));
    assert_eq!(all[bound as usize..], (content.len() as u64).to_be_bytes());
    // Granules 1, 40 and 41 hold data: only they were spooled.
    assert_eq!(src.spooled(), 3 * G);
}

#[test]
fn coalescing_bounds_the_extent_count() {
    let ext: Vec<Extent> = (0..100).map(|i| Extent { offset: i * 4 * G, len: G }).collect();
    assert_eq!(coalesce(ext.clone(), G, 100), ext, "within the bound: unchanged");
    let merged = coalesce(ext.clone(), G, 99);
    assert!(merged.len() <= 99);
    // Every data byte is still covered, and the result is sorted and disjoint.
    for e in &ext {
        assert!(merged.iter().any(|m| m.offset <= e.offset && e.end() <= m.end()));
    }
    assert!(merged.windows(2).all(|w| w[0].end() < w[1].offset));
    assert_eq!(coalesce(ext, G, 1), [Extent { offset: 0, len: 397 * G }]);
}

#[test]
fn not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ImageSource::open(dir.path(), &opts(true, 1)).is_err(), "a directory");
    assert!(ImageSource::open(&dir.path().join("absent"), &opts(true, 1)).is_err());
    // A pipe needs its bound.
    let e = open_image(Path::new("-"), &opts(true, 1)).err().unwrap();
    assert!(matches!(e, StorageError::InvalidArgument(m) if m.contains("--max-size")), "{e}");
    let bad = ImageOptions { granularity: 1000, ..opts(true, 1) };
    let mut f = File::create(dir.path().join("f")).unwrap();
    f.write_all(b"x").unwrap();
    assert!(ImageSource::open(&dir.path().join("f"), &bad).is_err());
}
