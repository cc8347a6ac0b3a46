//! Integration tests of the storage layer: the `Source` and `Sink` traits through the file
//! implementations (source hashing, reads and manifests; sink publish/verify/cleanup
//! semantics), the names they place (`RelPath`, the one check for names from the network) and
//! stale temp cleanup.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path};
use std::sync::Arc;

use mcast::proto::layout::Layout;
use mcast::proto::manifest::{
    Entry, EntryKind, HashList, Manifest, Mtime, RelPath, MAX_COMPONENT_LEN, MAX_PATH_LEN,
};
use mcast::proto::wire::Announce;
use mcast::storage::{
    clean_stale_temps, open_sink, FileSink, FileSource, Sink, Source, SourceHashes, StorageError,
};
use proptest::prelude::*;

fn n(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

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
    assert_eq!(src.name().as_str(), "release-1.2.tar.gz");
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

    let mut sink = FileSink::create(out_dir.path(), src.name(), src.len()).unwrap();
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
    let mut sink = FileSink::create(dir.path(), &n("f"), 3).unwrap();
    sink.write_at(0, b"new").unwrap();
    sink.finish(blake3::hash(b"new").as_bytes()).unwrap();
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
    assert_eq!(dir_listing(dir.path()), vec!["f"]);
}

#[test]
fn finish_with_wrong_hash_keeps_old_destination() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "f", b"old content");
    let mut sink = FileSink::create(dir.path(), &n("f"), 3).unwrap();
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
    let mut sink = FileSink::create(dir.path(), &n("f"), 5).unwrap();
    let temp = sink.temp_path().to_path_buf();
    sink.write_at(0, b"hello").unwrap();
    drop(sink);
    assert!(!temp.exists());
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"old content");
    assert_eq!(dir_listing(dir.path()), vec!["f"]);

    // Without an old destination nothing at all is left behind.
    let sink = FileSink::create(dir.path(), &n("g"), 5).unwrap();
    sink.abort();
    assert_eq!(dir_listing(dir.path()), vec!["f"]);
}

#[test]
fn write_at_out_of_range_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = FileSink::create(dir.path(), &n("f"), 100).unwrap();
    sink.write_at(90, &[0; 10]).unwrap();
    assert!(matches!(sink.write_at(91, &[0; 10]), Err(StorageError::OutOfRange { .. })));
    assert!(matches!(sink.write_at(101, &[]), Err(StorageError::OutOfRange { .. })));
    assert!(matches!(sink.write_at(u64::MAX - 1, &[0; 4]), Err(StorageError::OutOfRange { .. })));
}

#[test]
fn name_boundaries() {
    let c = |len: usize| "c".repeat(len);
    assert_eq!(MAX_COMPONENT_LEN, 255);
    assert!(RelPath::new(c(255)).is_ok());
    assert!(RelPath::new(c(256)).is_err());
    assert!(RelPath::new(format!("d/{}", c(255))).is_ok());
    assert!(RelPath::new(format!("{}/d", c(256))).is_err());
    // 2048 one-byte components and 2047 slashes: 4095 bytes; one byte more is refused.
    let deep = vec!["x"; 2048].join("/");
    assert_eq!(deep.len(), MAX_PATH_LEN);
    assert_eq!(RelPath::new(deep.as_str()).unwrap().depth(), 2048);
    assert!(RelPath::new(format!("{deep}x")).is_err());
    for (good, bad) in [("a", "/a"), ("a", "a/"), ("a/b", "a//b"), ("..a", ".."), ("a.", ".")] {
        assert!(RelPath::new(good).is_ok(), "{good:?}");
        assert!(RelPath::new(bad).is_err(), "{bad:?}");
    }
    for bad in ["a/./b", "a/../b", "a\\b", "a\0b", ""] {
        assert!(RelPath::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn file_sink_places_plain_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let nested = FileSink::create(dir.path(), &n("a/b"), 10);
    assert!(matches!(nested, Err(StorageError::Unsupported(_))), "{nested:?}");
    // A name the stale temp cleanup would later remove is refused.
    let temp_like = FileSink::create(dir.path(), &n(".f.mcast-tmp-00ab"), 10);
    assert!(matches!(temp_like, Err(StorageError::BadName(_))), "{temp_like:?}");
    FileSink::create(dir.path(), &n(".f.mcast-tmp-x"), 0).unwrap().abort();
    assert!(dir_listing(dir.path()).is_empty());
}

#[test]
fn clean_stale_temps_removes_only_matching_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // The temp file of a receive still in progress: the sink is leaked, so Drop never runs
    // and its lock stays (a crashed run's lock goes with its process).
    let running = FileSink::create(p, &n("running.bin"), 10).unwrap();
    let running_temp = running.temp_path().to_path_buf();
    std::mem::forget(running);
    write_file(p, ".other.mcast-tmp-0123abcd", b"stale");
    write_file(p, ".crashed.bin.mcast-tmp-00000000deadbeef", b"stale");
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
    assert!(running_temp.exists(), "locked: in use, kept");
    let mut expected: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
    expected.push(".dir.mcast-tmp-00".into());
    expected.push(running_temp.file_name().unwrap().to_str().unwrap().into());
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

    /// Whatever string arrives: refused, or a path that joined under a base directory stays
    /// below it, component for component, and reads back unchanged.
    #[test]
    fn rel_path_stays_under_base(name in "\\PC{0,40}") {
        check_under_base(&name)?;
    }

    /// The same for strings made of the characters that matter.
    #[test]
    fn rel_path_tricky_strings(parts in prop::collection::vec(
        prop::sample::select(vec!["a", ".", "..", "/", "\\", "\0", "é", "~"]), 0..12)
    ) {
        check_under_base(&parts.concat())?;
    }
}

fn check_under_base(name: &str) -> Result<(), TestCaseError> {
    let Ok(p) = RelPath::new(name) else { return Ok(()) };
    prop_assert_eq!(p.as_str(), name);
    let base = Path::new("/srv/base");
    let joined = base.join(p.as_path());
    prop_assert!(joined.starts_with(base));
    let below: Vec<Component> = joined.strip_prefix(base).unwrap().components().collect();
    prop_assert_eq!(below.len(), p.depth());
    for (c, want) in below.iter().zip(p.components()) {
        prop_assert_eq!(*c, Component::Normal(want.as_ref()));
    }
    Ok(())
}

/// Symbol size and block symbols for the trait tests: 4 KiB blocks.
const T: u16 = 512;
const K: u16 = 8;

/// The hash list of `content` in the trait tests' layout.
fn list_of(content: &[u8]) -> HashList {
    HashList::of_bytes(content, Layout::new(content.len() as u64, T, K).unwrap())
}

/// Push `src` into `sink` through the traits only: every block of the manifest's layout,
/// last block first, then `finish` with the hash list (read back too with `readback`).
fn transfer(
    src: &dyn Source,
    manifest: &Manifest,
    mut sink: Box<dyn Sink>,
    readback: bool,
) -> [u8; 32] {
    let layout = manifest.layout().unwrap();
    assert_eq!(sink.len(), src.len());
    let mut hashes = Vec::new();
    for b in (0..layout.block_count()).rev() {
        let off = layout.block_offset(b).unwrap();
        let data = src.read_at(off, layout.block_len(b).unwrap()).unwrap();
        hashes.push(*blake3::hash(&data).as_bytes());
        sink.write_block(off, &data).unwrap();
    }
    hashes.reverse();
    let list = HashList::new(layout, hashes).unwrap();
    assert_eq!(
        list,
        src.hash_blocks(layout.block_bytes())
            .map(|h| { HashList::new(layout, h.block_hashes).unwrap() })
            .unwrap()
    );
    sink.finish(&list, readback).unwrap()
}

#[test]
fn source_builds_a_single_file_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let content = data(10_000, 4);
    let path = write_file(dir.path(), "img.raw", &content);
    let meta = std::fs::metadata(&path).unwrap();
    let mtime = Mtime { secs: meta.mtime(), nanos: meta.mtime_nsec() as u32 };
    let src = FileSource::open(&path).unwrap();
    assert_eq!(src.entries(), &[Entry::file(n("img.raw"), 0, 10_000).with_mtime(mtime)]);
    let m = src.manifest(T, K).unwrap();
    assert_eq!(m.single_file_path(), Some(&n("img.raw")));
    assert_eq!((m.object_size, m.symbol_size, m.block_symbols), (10_000, T, K));
    // What the receiver decodes from the wire is what the sender built.
    let bytes = m.encode();
    let announce = Announce {
        object_size: m.object_size,
        symbol_size: T,
        block_symbols: K,
        manifest_len: bytes.len() as u32,
        manifest_hash: *blake3::hash(&bytes).as_bytes(),
        hashes_len: 0,
        hashes_hash: [0; 32],
        rate_bps: 1,
        grtt_us: 1,
    };
    assert_eq!(Manifest::decode(&bytes, &announce).unwrap(), m);
    assert!(matches!(src.manifest(0, K), Err(StorageError::Layout(_))));
}

#[test]
fn traits_carry_a_file_end_to_end() {
    let (src_dir, out_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Zero blocks in the middle (left as holes by the sink) and a short last block.
    let mut content = data(5 * 4096 + 100, 8);
    content[4096..3 * 4096].fill(0);
    let src = FileSource::open(&write_file(src_dir.path(), "disk.img", &content)).unwrap();
    let m = src.manifest(T, K).unwrap();
    let sink = open_sink(out_dir.path(), &m).unwrap();
    assert_eq!(sink.destination(), out_dir.path().join("disk.img"));
    assert_eq!(transfer(&src, &m, sink, false), list_of(&content).root());
    assert_eq!(std::fs::read(out_dir.path().join("disk.img")).unwrap(), content);
    assert_eq!(dir_listing(out_dir.path()), vec!["disk.img"]);
    // Read back too: the same result.
    let sink = open_sink(out_dir.path(), &m).unwrap();
    assert_eq!(transfer(&src, &m, sink, true), list_of(&content).root());
    assert_eq!(std::fs::read(out_dir.path().join("disk.img")).unwrap(), content);

    // An empty file goes through the same path.
    let empty = FileSource::open(&write_file(src_dir.path(), "empty", b"")).unwrap();
    assert!(empty.is_empty());
    let m = empty.manifest(T, K).unwrap();
    let placed = transfer(&empty, &m, open_sink(out_dir.path(), &m).unwrap(), true);
    assert_eq!(placed, *blake3::hash(b"").as_bytes(), "an empty list's hash");
    assert_eq!(std::fs::read(out_dir.path().join("empty")).unwrap(), b"");
}

#[test]
fn verify_readback_detects_a_block_corrupted_on_disk_after_writing() {
    let dir = tempfile::tempdir().unwrap();
    let content = data(3 * 4096 + 7, 3);
    let list = list_of(&content);
    let m = Manifest::single_file(n("f"), content.len() as u64, T, K).unwrap();
    let write_all = |sink: &mut Box<dyn Sink>| {
        for (b, chunk) in content.chunks(4096).enumerate() {
            sink.write_block(b as u64 * 4096, chunk).unwrap();
        }
    };
    for readback in [false, true] {
        let mut sink = open_sink(dir.path(), &m).unwrap();
        write_all(&mut sink);
        // The disk loses a byte of block 2 after the write (the sink is none the wiser).
        let temp = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(".f."))
            .expect("the temp file");
        let mut bytes = std::fs::read(&temp).unwrap();
        bytes[2 * 4096 + 5] ^= 0x40;
        std::fs::write(&temp, &bytes).unwrap();
        let result = sink.finish(&list, readback);
        if readback {
            assert!(
                matches!(&result, Err(StorageError::HashMismatch { expected, .. }) if expected.contains("block 2")),
                "{result:?}"
            );
            assert!(dir_listing(dir.path()).is_empty(), "nothing placed, temp file removed");
        } else {
            // Without the check the copy is placed as written: this is what the flag is for.
            assert_eq!(result.unwrap(), list.root());
            assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), bytes);
            std::fs::remove_file(dir.path().join("f")).unwrap();
        }
    }
}

#[test]
fn rewrite_block_replaces_earlier_bytes_even_with_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manifest::single_file(n("z"), 4096 + 10, T, K).unwrap();
    let mut sink = open_sink(dir.path(), &m).unwrap();
    sink.write_block(0, &[9; 4096]).unwrap(); // a forged block, refuted later
    sink.write_block(4096, &[1; 10]).unwrap();
    sink.rewrite_block(0, &[0; 4096]).unwrap(); // the true block is all zero
    let mut want = vec![0u8; 4096];
    want.extend_from_slice(&[1; 10]);
    assert_eq!(sink.finish(&list_of(&want), true).unwrap(), list_of(&want).root());
    assert_eq!(std::fs::read(dir.path().join("z")).unwrap(), want);
}

#[test]
fn sink_write_block_reports_holes_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink: Box<dyn Sink> = Box::new(FileSink::create(dir.path(), &n("f"), 20).unwrap());
    assert!(!sink.write_block(0, &[0; 10]).unwrap(), "zero block written");
    assert!(sink.write_block(10, &[7; 10]).unwrap());
    assert!(matches!(sink.write_block(11, &[0; 10]), Err(StorageError::OutOfRange { .. })));
    let mut want = vec![0u8; 10];
    want.extend_from_slice(&[7; 10]);
    sink.finish(&list_of(&want), true).unwrap();
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), want);
}

#[test]
fn sink_through_trait_fails_and_aborts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "f", b"old content");
    let m = Manifest::single_file(n("f"), 3, T, K).unwrap();
    let mut sink = open_sink(dir.path(), &m).unwrap();
    sink.write_block(0, b"new").unwrap();
    let other = list_of(b"old");
    assert!(matches!(sink.finish(&other, true), Err(StorageError::HashMismatch { .. })));
    assert_eq!(dir_listing(dir.path()), vec!["f"]);
    // A list for another length is refused even without a read back.
    let mut sink = open_sink(dir.path(), &m).unwrap();
    sink.write_block(0, b"new").unwrap();
    assert!(matches!(sink.finish(&list_of(b"ne"), false), Err(StorageError::SizeMismatch { .. })));
    assert_eq!(dir_listing(dir.path()), vec!["f"]);
    let mut sink = open_sink(dir.path(), &m).unwrap();
    sink.write_block(0, b"new").unwrap();
    assert_eq!(dir_listing(dir.path()).len(), 2, "temp file beside the destination");
    sink.abort();
    assert_eq!(dir_listing(dir.path()), vec!["f"]);
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"old content");
}

#[test]
fn file_sink_applies_the_entry_mode() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o750, 0o600] {
        let kind = EntryKind::File { offset: 0, len: 10, mode: Some(mode) };
        let entries = vec![Entry::new(n("run.sh"), kind)];
        let m = Manifest::new(entries, 10, T, K).unwrap();
        let mut sink = open_sink(dir.path(), &m).unwrap();
        sink.write_block(0, b"#!/bin/sh\n").unwrap();
        sink.finish(&list_of(b"#!/bin/sh\n"), false).unwrap();
        let meta = std::fs::metadata(dir.path().join("run.sh")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode);
    }
}

#[test]
fn file_sink_applies_the_entry_mtime() {
    let dir = tempfile::tempdir().unwrap();
    for (secs, nanos) in [(1_000_000_000, 123_456_789), (-1, 999_999_999)] {
        let kind = EntryKind::File { offset: 0, len: 3, mode: None };
        let e = Entry::new(n("t.bin"), kind).with_mtime(Mtime { secs, nanos });
        let m = Manifest::new(vec![e], 3, T, K).unwrap();
        let mut sink = open_sink(dir.path(), &m).unwrap();
        sink.write_block(0, b"abc").unwrap();
        sink.finish(&list_of(b"abc"), false).unwrap();
        let meta = std::fs::symlink_metadata(dir.path().join("t.bin")).unwrap();
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (secs, i64::from(nanos)));
    }
}

#[test]
fn open_sink_gives_what_a_file_sink_cannot_place_to_a_tree_sink() {
    let dir = tempfile::tempdir().unwrap();
    let tree = vec![Entry::file(n("a"), 0, 5), Entry::file(n("b"), 5, 5)];
    let nested = vec![Entry::file(n("d/f"), 0, 10)];
    let dir_only = vec![Entry::new(n("d"), EntryKind::Dir { mode: None })];
    for (entries, size) in [(tree, 10), (nested, 10), (dir_only, 0)] {
        let m = Manifest::new(entries, size, T, K).unwrap();
        // A tree's destination is the output directory itself (here empty, so usable).
        let sink = open_sink(dir.path(), &m).unwrap();
        assert_eq!(sink.destination(), dir.path(), "{}", m.summary());
        sink.abort();
    }
    assert!(dir_listing(dir.path()).is_empty());
}

#[test]
fn source_name_must_be_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    std::fs::write(&path, b"x").unwrap();
    assert!(matches!(FileSource::open(&path), Err(StorageError::BadName(_))));
}
