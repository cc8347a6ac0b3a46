//! Integration tests of the storage layer: source hashing and reads, sink
//! publish/verify/cleanup semantics, name validation and stale temp cleanup.

use std::path::Path;
use std::sync::Arc;

use mcast::storage::{
    clean_stale_temps, validate_name, FileSink, FileSource, SourceHashes, StorageError,
};
use proptest::prelude::*;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

fn write_file(dir: &Path, name: &str, content: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn direct_hashes(content: &[u8], block: usize) -> SourceHashes {
    SourceHashes {
        block_hashes: content.chunks(block).map(|c| *blake3::hash(c).as_bytes()).collect(),
        object_hash: *blake3::hash(content).as_bytes(),
    }
}

#[test]
fn hash_blocks_matches_direct_blake3() {
    let dir = tempfile::tempdir().unwrap();
    let block = 4096usize;
    for len in [0, 1, block - 1, block, block + 1, 7 * block, 7 * block + 123] {
        let content = data(len, 3);
        let path = write_file(dir.path(), "f.bin", &content);
        let src = FileSource::open(&path).unwrap();
        assert_eq!(src.len(), len as u64);
        assert_eq!(src.is_empty(), len == 0);
        let h = src.hash_blocks(block as u64).unwrap();
        assert_eq!(h.block_hashes.len(), len.div_ceil(block), "len {len}");
        assert_eq!(h, direct_hashes(&content, block), "len {len}");
    }
}

#[test]
fn read_at_returns_slices_and_rejects_past_end() {
    let dir = tempfile::tempdir().unwrap();
    let content = data(1000, 9);
    let src = FileSource::open(&write_file(dir.path(), "f", &content)).unwrap();
    assert_eq!(src.read_at(0, 1000).unwrap(), content);
    assert_eq!(src.read_at(999, 1).unwrap(), &content[999..]);
    assert_eq!(src.read_at(500, 0).unwrap(), Vec::<u8>::new());
    assert!(matches!(src.read_at(999, 2), Err(StorageError::OutOfRange { .. })));
    assert!(matches!(src.read_at(1001, 0), Err(StorageError::OutOfRange { .. })));
    assert!(matches!(src.read_at(u64::MAX, 10), Err(StorageError::OutOfRange { .. })));
}

#[test]
fn source_is_shareable_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let content = Arc::new(data(64 * 1024, 1));
    let src = Arc::new(FileSource::open(&write_file(dir.path(), "f", &content)).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (src, content) = (Arc::clone(&src), Arc::clone(&content));
            std::thread::spawn(move || {
                for i in (t..64).step_by(4) {
                    let got = src.read_at(i as u64 * 1024, 1024).unwrap();
                    assert_eq!(got, &content[i * 1024..(i + 1) * 1024]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn source_name_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = FileSource::open(&write_file(dir.path(), "release-1.2.tar.gz", b"x")).unwrap();
    assert_eq!(src.name().unwrap(), "release-1.2.tar.gz");
    assert!(matches!(FileSource::open(dir.path()), Err(StorageError::NotRegularFile(_))));
    assert!(matches!(FileSource::open(&dir.path().join("missing")), Err(StorageError::Io { .. })));
    assert!(matches!(src.hash_blocks(0), Err(StorageError::InvalidArgument(_))));
}

#[test]
fn sink_roundtrip_from_source() {
    let src_dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let content = data(100_000, 42);
    let src = FileSource::open(&write_file(src_dir.path(), "payload", &content)).unwrap();
    let block = 8192u64;
    let hashes = src.hash_blocks(block).unwrap();

    let mut sink = FileSink::create(out_dir.path(), &src.name().unwrap(), src.len()).unwrap();
    let temp = sink.temp_path().to_path_buf();
    assert!(temp.exists());
    assert_eq!(sink.final_path(), out_dir.path().join("payload"));
    // Write blocks in reverse order, as a receiver might after repairs.
    for (i, _) in hashes.block_hashes.iter().enumerate().rev() {
        let off = i as u64 * block;
        let len = block.min(src.len() - off) as usize;
        sink.write_at(off, &src.read_at(off, len).unwrap()).unwrap();
    }
    let got = sink.finish(&hashes.object_hash).unwrap();
    assert_eq!(got, hashes.object_hash);
    assert!(!temp.exists());
    assert_eq!(std::fs::read(out_dir.path().join("payload")).unwrap(), content);
    assert_eq!(dir_listing(out_dir.path()), vec!["payload"]);
}

#[test]
fn finish_replaces_existing_destination() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "f", b"old content");
    let mut sink = FileSink::create(dir.path(), "f", 3).unwrap();
    sink.write_at(0, b"new").unwrap();
    sink.finish(blake3::hash(b"new").as_bytes()).unwrap();
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
    assert_eq!(dir_listing(dir.path()), vec!["f"]);
}

#[test]
fn finish_with_wrong_hash_keeps_old_destination() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "f", b"old content");
    let mut sink = FileSink::create(dir.path(), "f", 3).unwrap();
    let temp = sink.temp_path().to_path_buf();
    sink.write_at(0, b"new").unwrap();
    let wrong = *blake3::hash(b"other").as_bytes();
    let err = sink.finish(&wrong).unwrap_err();
    assert!(matches!(err, StorageError::HashMismatch { .. }), "{err:?}");
    assert!(!temp.exists());
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"old content");
    assert_eq!(dir_listing(dir.path()), vec!["f"]);
}

#[test]
fn dropped_sink_removes_temp_and_keeps_destination() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "f", b"old content");
    let mut sink = FileSink::create(dir.path(), "f", 5).unwrap();
    let temp = sink.temp_path().to_path_buf();
    sink.write_at(0, b"hello").unwrap();
    drop(sink);
    assert!(!temp.exists());
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"old content");
    assert_eq!(dir_listing(dir.path()), vec!["f"]);

    // Without an old destination nothing at all is left behind.
    let sink = FileSink::create(dir.path(), "g", 5).unwrap();
    sink.abort();
    assert_eq!(dir_listing(dir.path()), vec!["f"]);
}

#[test]
fn write_at_out_of_range_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = FileSink::create(dir.path(), "f", 100).unwrap();
    sink.write_at(90, &[0; 10]).unwrap();
    assert!(matches!(sink.write_at(91, &[0; 10]), Err(StorageError::OutOfRange { .. })));
    assert!(matches!(sink.write_at(101, &[]), Err(StorageError::OutOfRange { .. })));
    assert!(matches!(sink.write_at(u64::MAX - 1, &[0; 4]), Err(StorageError::OutOfRange { .. })));
}

#[test]
fn validate_name_rules() {
    let long = "a".repeat(256);
    for bad in ["..", "a/b", "", ".", "a\0b", "a\\b", "/etc", long.as_str()] {
        assert!(matches!(validate_name(bad), Err(StorageError::BadName(_))), "{bad:?} accepted");
    }
    for good in ["release-1.2.tar.gz", ".profile", "a".repeat(255).as_str()] {
        assert!(validate_name(good).is_ok(), "{good:?} rejected");
    }
}

#[test]
fn sink_rejects_bad_names_without_creating_files() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["..", "a/b", "", ".", "a\0b"] {
        assert!(matches!(FileSink::create(dir.path(), bad, 10), Err(StorageError::BadName(_))));
    }
    assert!(dir_listing(dir.path()).is_empty());
}

#[test]
fn clean_stale_temps_removes_only_matching_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // A temp file left by a "crashed" run: forget the sink so Drop never runs.
    let crashed = FileSink::create(p, "crashed.bin", 10).unwrap();
    let crashed_temp = crashed.temp_path().to_path_buf();
    std::mem::forget(crashed);
    write_file(p, ".other.mcast-tmp-0123abcd", b"stale");
    let keep = [
        "crashed.bin",
        "normal.txt",
        ".hidden",
        "x.mcast-tmp-00",
        ".mcast-tmp-00",
        ".y.mcast-tmp-notHex",
        ".z.mcast-tmp-",
    ];
    for k in keep {
        write_file(p, k, b"keep");
    }
    std::fs::create_dir(p.join(".dir.mcast-tmp-00")).unwrap();

    assert_eq!(clean_stale_temps(p).unwrap(), 2);
    assert!(!crashed_temp.exists());
    let mut expected: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
    expected.push(".dir.mcast-tmp-00".into());
    expected.sort();
    assert_eq!(dir_listing(p), expected);
    assert_eq!(clean_stale_temps(p).unwrap(), 0);
    assert!(matches!(clean_stale_temps(&p.join("missing")), Err(StorageError::Io { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn hash_blocks_matches_for_any_size(len in 0usize..20_000, block in 1u64..5_000) {
        let dir = tempfile::tempdir().unwrap();
        let content = data(len, 5);
        let src = FileSource::open(&write_file(dir.path(), "f", &content)).unwrap();
        prop_assert_eq!(src.hash_blocks(block).unwrap(), direct_hashes(&content, block as usize));
    }

    #[test]
    fn validate_name_never_accepts_separators(name in "\\PC{0,40}") {
        if validate_name(&name).is_ok() {
            prop_assert!(!name.is_empty() && name != "." && name != "..");
            prop_assert!(!name.contains(['/', '\\', '\0']));
        }
    }
}
