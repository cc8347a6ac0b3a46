//! Integration tests of tree pushes at the storage layer: a [`TreeSource`] walked from disk,
//! its manifest through encode/decode, blocks written to a [`TreeSink`] in a seeded random
//! order, and the placed tree compared with the original by a recursive digest (paths, kinds,
//! modes, link targets, contents). Also: small files packing, every hostile case refused with
//! nothing written, failures keeping the old tree, and atomic replacement.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mcast::proto::manifest::{Entry, EntryKind, HashList, Manifest, RelPath};
use mcast::proto::wire::Announce;
use mcast::storage::{
    clean_stale_tree_temps, open_sink, open_sink_with, Sink, SinkOptions, Source, StorageError,
    TreeSink, TreeSource,
};
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const T: u16 = 1024;
/// 64 KiB blocks, so files of a few MiB span many blocks and small ones share them.
const K: u16 = 64;

fn n(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn put(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn random_bytes(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// A tree with files from 0 bytes to 3 MiB (one all zeros), nested and empty directories,
/// symlinks up and across, and assorted modes.
fn mixed_tree(root: &Path, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    put(root, "README", b"hello\n", 0o644);
    put(root, "empty", b"", 0o600);
    put(root, "bin/tool", &random_bytes(&mut rng, 70_000), 0o755);
    put(root, "lib/big.so", &random_bytes(&mut rng, 3 << 20), 0o644);
    put(root, "lib/zeros.img", &vec![0u8; (1 << 20) + 17], 0o640);
    put(root, "lib/deep/er/still/small", &random_bytes(&mut rng, 65_536), 0o444);
    for i in 0..30 {
        let len = (rng.next_u32() % 5000) as usize;
        put(root, &format!("share/doc/f{i:02}"), &random_bytes(&mut rng, len), 0o644);
    }
    std::fs::create_dir_all(root.join("var/empty/nested-empty")).unwrap();
    std::fs::create_dir_all(root.join("cache")).unwrap();
    std::fs::set_permissions(root.join("cache"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(root.join("share"), std::fs::Permissions::from_mode(0o555)).unwrap();
    symlink("big.so", root.join("lib/libbig.so")).unwrap();
    symlink("../../README", root.join("share/doc/README")).unwrap();
    symlink("../lib/deep/er", root.join("bin/er")).unwrap();
    symlink("missing-target", root.join("dangling")).unwrap();
    // Old times, whole and fractional, on a file, a symlink itself and directories (last:
    // creating entries in a directory changes its mtime).
    set_mtime(&root.join("bin/tool"), 1_000_000_000, 123_456_789);
    set_mtime(&root.join("lib/libbig.so"), 1_100_000_000, 1);
    set_mtime(&root.join("var/empty/nested-empty"), 1_200_000_000, 999_999_999);
    set_mtime(&root.join("lib"), 1, 0);
}

/// Sets the mtime of `path` itself (a symlink's own), leaving its access time.
fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let times = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        libc::timespec { tv_sec: secs, tv_nsec: nanos },
    ];
    // SAFETY: a valid C string and two timespecs.
    let rc = unsafe {
        libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// Recursive digest: relative path -> (kind, mode bits, link target or content hash, mtime).
fn digest(root: &Path) -> BTreeMap<String, (char, u32, String, (i64, i64))> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for ent in std::fs::read_dir(root.join(&rel)).unwrap() {
            let ent = ent.unwrap();
            let r = rel.join(ent.file_name());
            let m = std::fs::symlink_metadata(ent.path()).unwrap();
            let key = r.to_str().unwrap().to_owned();
            let mtime = (m.mtime(), m.mtime_nsec());
            let (kind, mode, what) = if m.file_type().is_symlink() {
                let t = std::fs::read_link(ent.path()).unwrap();
                ('l', 0, t.to_str().unwrap().to_owned())
            } else if m.is_dir() {
                stack.push(r);
                ('d', m.mode() & 0o7777, String::new())
            } else {
                let data = std::fs::read(ent.path()).unwrap();
                ('f', m.mode() & 0o7777, blake3::hash(&data).to_hex().to_string())
            };
            out.insert(key, (kind, mode, what, mtime));
        }
    }
    out
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The manifest as a receiver gets it: encoded, then decoded against its announcement.
fn over_the_wire(m: &Manifest) -> Manifest {
    let bytes = m.encode();
    let announce = Announce {
        object_size: m.object_size,
        symbol_size: m.symbol_size,
        block_symbols: m.block_symbols,
        manifest_len: bytes.len() as u32,
        manifest_hash: *blake3::hash(&bytes).as_bytes(),
        rate_bps: 1,
        grtt_us: 1,
        hashes_len: 0,
        hashes_hash: [0; 32],
    };
    Manifest::decode(&bytes, &announce).unwrap()
}

/// The hash list of what `src` holds, as `m` lays it out (what the sender builds as it goes).
fn hashes_of(src: &dyn Source, m: &Manifest) -> HashList {
    let layout = m.layout().unwrap();
    HashList::new(layout, src.hash_blocks(layout.block_bytes()).unwrap().block_hashes).unwrap()
}

/// Writes every block of `src` into `sink` in a seeded random order; returns how many
/// blocks were written (not left as holes).
fn write_blocks(src: &dyn Source, m: &Manifest, sink: &mut dyn Sink, seed: u64) -> usize {
    let layout = m.layout().unwrap();
    let hashes = hashes_of(src, m);
    let mut order: Vec<u32> = (0..layout.block_count()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut written = 0;
    for b in order {
        let off = layout.block_offset(b).unwrap();
        let data = src.read_at(off, layout.block_len(b).unwrap()).unwrap();
        assert_eq!(Some(blake3::hash(&data).as_bytes()), hashes.get(b));
        written += usize::from(sink.write_block(off, &data).unwrap());
    }
    written
}

/// Pushes the tree at `from` to `dest`: source, manifest over the wire, sink, random block
/// order, finish.
fn push(from: &Path, dest: &Path, opts: SinkOptions, seed: u64) -> Result<(), StorageError> {
    let src = TreeSource::open(from).unwrap();
    let m = over_the_wire(&src.manifest(T, K).unwrap());
    let mut sink = open_sink_with(dest, &m, opts)?;
    write_blocks(&src, &m, sink.as_mut(), seed);
    sink.finish(&hashes_of(&src, &m), false).map(drop)
}

#[test]
fn mixed_tree_arrives_identical() {
    let base = tempfile::tempdir().unwrap();
    let from = base.path().join("src");
    mixed_tree(&from, 1);
    let out = base.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("v42");
    let src = TreeSource::open(&from).unwrap();
    let m = over_the_wire(&src.manifest(T, K).unwrap());
    assert!(m.single_file_path().is_none());
    let mut sink = open_sink(&dest, &m).unwrap();
    assert_eq!(sink.destination(), dest);
    let blocks = m.layout().unwrap().block_count() as usize;
    let written = write_blocks(&src, &m, sink.as_mut(), 7);
    // The 1 MiB of zeros holds at least 15 whole 64 KiB blocks: holes, not writes.
    assert!(written + 15 <= blocks, "{written} of {blocks}");
    // Nothing at the destination before finish; only the staging directory beside it.
    assert!(!dest.exists());
    let staged = listing(&out);
    assert_eq!(staged.len(), 2, "{staged:?}");
    assert_eq!(staged[0], ".v42.mcast-resume", "the destination's lock");
    assert!(staged[1].starts_with(".v42.mcast-tmp-"), "{staged:?}");
    let hl = hashes_of(&src, &m);
    assert_eq!(sink.finish(&hl, true).unwrap(), hl.root());
    let want = digest(&from);
    assert_eq!(digest(&dest), want);
    assert_eq!(want["bin/tool"].3, (1_000_000_000, 123_456_789), "the times set above arrive");
    assert_eq!(want["lib/libbig.so"].3, (1_100_000_000, 1));
    assert_eq!(want["var/empty/nested-empty"].3, (1_200_000_000, 999_999_999));
    assert_eq!(want["lib"].3, (1, 0));
    assert_eq!(listing(&out), ["v42"]);
    // Holes stay holes: the zero file takes (almost) no disk space.
    let z = std::fs::metadata(dest.join("lib/zeros.img")).unwrap();
    assert!(z.blocks() * 512 < 64 * 1024, "{} blocks", z.blocks());
}

#[test]
fn two_thousand_small_files_pack_into_few_blocks() {
    let base = tempfile::tempdir().unwrap();
    let from = base.path().join("src");
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut total = 0;
    for i in 0..2000 {
        let len = (rng.next_u32() % 1000) as usize;
        total += len;
        put(&from, &format!("pkg{}/file{i}", i % 40), &random_bytes(&mut rng, len), 0o644);
    }
    let src = TreeSource::open(&from).unwrap();
    let m = src.manifest(T, 1024).unwrap();
    // About 1 MiB of content in 1 MiB blocks: at most two blocks (not 2000).
    assert_eq!(m.object_size, total as u64);
    let blocks = m.layout().unwrap().block_count();
    assert_eq!(u64::from(blocks), (total as u64).div_ceil(1 << 20));
    assert!(blocks <= 2);
    let dest = base.path().join("dest");
    push(&from, &dest, SinkOptions::default(), 3).unwrap();
    assert_eq!(digest(&dest), digest(&from));
}

#[test]
fn existing_destination_needs_replace_and_is_swapped_whole() {
    let base = tempfile::tempdir().unwrap();
    let (old, new) = (base.path().join("old"), base.path().join("new"));
    mixed_tree(&old, 10);
    mixed_tree(&new, 11);
    put(&new, "only-in-new", b"n", 0o644);
    let dest = base.path().join("out/current");
    std::fs::create_dir_all(base.path().join("out")).unwrap();
    push(&old, &dest, SinkOptions::default(), 1).unwrap();
    let before = digest(&dest);
    // Without replace: refused before anything is staged.
    let src = TreeSource::open(&new).unwrap();
    let m = src.manifest(T, K).unwrap();
    let err = open_sink(&dest, &m).err().unwrap();
    assert!(matches!(err, StorageError::DestinationExists(ref p) if p == &dest), "{err:?}");
    assert_eq!(listing(&base.path().join("out")), ["current"]);
    // With replace: a reader holding the old root sees the old tree throughout; the path
    // switches to the new tree in one step.
    let held = std::fs::File::open(&dest).unwrap();
    let ino = std::fs::metadata(&dest).unwrap().ino();
    push(&new, &dest, SinkOptions { replace: true }, 2).unwrap();
    assert_eq!(digest(&dest), digest(&new));
    assert_ne!(digest(&dest), before);
    assert_ne!(std::fs::metadata(&dest).unwrap().ino(), ino);
    assert_eq!(held.metadata().unwrap().ino(), ino);
    // The old tree (with its read-only directory) was removed, nothing is left beside it.
    assert_eq!(listing(&base.path().join("out")), ["current"]);
}

#[test]
fn empty_existing_directory_is_used_without_replace() {
    let base = tempfile::tempdir().unwrap();
    let from = base.path().join("src");
    mixed_tree(&from, 4);
    let dest = base.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    push(&from, &dest, SinkOptions::default(), 5).unwrap();
    assert_eq!(digest(&dest), digest(&from));
    assert_eq!(listing(base.path()), ["out", "src"]);
}

#[test]
fn failures_keep_the_old_tree_and_leave_no_staging() {
    let base = tempfile::tempdir().unwrap();
    let (old, new) = (base.path().join("old"), base.path().join("new"));
    mixed_tree(&old, 20);
    mixed_tree(&new, 21);
    let out = base.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("app");
    push(&old, &dest, SinkOptions::default(), 1).unwrap();
    let before = digest(&dest);
    let src = TreeSource::open(&new).unwrap();
    let m = src.manifest(T, K).unwrap();
    let replace = SinkOptions { replace: true };
    // Verification failure: one block corrupted (as if its check were skipped).
    let mut sink = open_sink_with(&dest, &m, replace).unwrap();
    write_blocks(&src, &m, sink.as_mut(), 9);
    sink.write_block(0, &[0xff; 3]).unwrap();
    // Blocks are checked against the hash list before they are written; what reaches the
    // disk differently is caught by the read back.
    let err = sink.finish(&hashes_of(&src, &m), true).unwrap_err();
    assert!(matches!(err, StorageError::HashMismatch { .. }), "{err:?}");
    // Missing blocks: the staged files are still holes where data should be.
    let mut sink = open_sink_with(&dest, &m, replace).unwrap();
    sink.write_block(0, &src.read_at(0, 1000).unwrap()).unwrap();
    let r = sink.finish(&hashes_of(&src, &m), true);
    assert!(matches!(r, Err(StorageError::HashMismatch { .. })), "{r:?}");
    // Abort, and drop half way.
    let mut sink = open_sink_with(&dest, &m, replace).unwrap();
    write_blocks(&src, &m, sink.as_mut(), 10);
    sink.abort();
    let mut sink = open_sink_with(&dest, &m, replace).unwrap();
    sink.write_block(0, &src.read_at(0, 4096).unwrap()).unwrap();
    drop(sink);
    assert_eq!(digest(&dest), before);
    assert_eq!(listing(&out), ["app"]);
}

#[test]
fn crashed_staging_is_cleaned_up_and_nothing_else() {
    let base = tempfile::tempdir().unwrap();
    let from = base.path().join("src");
    mixed_tree(&from, 30);
    let out = base.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("rel");
    let src = TreeSource::open(&from).unwrap();
    let m = src.manifest(T, K).unwrap();
    // A receive in progress: the sink is leaked, so it is never dropped and its lock stays.
    let mut sink = TreeSink::create(&dest, &m, false).unwrap();
    write_blocks(&src, &m, &mut sink, 1);
    let staging = sink.staging_path();
    std::mem::forget(sink);
    assert!(staging.is_dir());
    // A crashed run's staging directory (no lock: its process is gone), with contents.
    let crashed = out.join(".rel.mcast-tmp-00000000000000aa");
    std::fs::create_dir_all(crashed.join("sub")).unwrap();
    std::fs::write(crashed.join("sub/f"), b"stale").unwrap();
    // Lookalikes that are not this destination's staging directories stay.
    std::fs::write(out.join(".rel.mcast-tmp-00000000000000ff"), b"a file").unwrap();
    std::fs::create_dir(out.join(".other.mcast-tmp-00000000000000ff")).unwrap();
    std::fs::create_dir(out.join(".rel.mcast-tmp-ff")).unwrap();
    assert_eq!(clean_stale_tree_temps(&dest).unwrap(), 1);
    assert!(!crashed.exists());
    assert!(staging.is_dir(), "in use: kept");
    assert_eq!(listing(&out).len(), 5, "3 lookalikes, the staging directory and its lock");
    assert_eq!(clean_stale_tree_temps(&dest).unwrap(), 0);
}

/// A manifest that skips the checks of `Manifest::new` (its fields are public), as a buggy or
/// hostile caller could build one.
fn unchecked(entries: Vec<Entry>, object_size: u64) -> Manifest {
    Manifest { entries, object_size, symbol_size: T, block_symbols: K, compression: None }
}

fn link(path: &str, target: &str) -> Entry {
    Entry::new(n(path), EntryKind::Symlink { target: target.into() })
}

#[test]
fn hostile_manifests_are_refused_with_nothing_written() {
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("t");
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("symlink out of the tree", vec![link("l", "../etc"), Entry::file(n("f"), 0, 4)]),
        ("absolute symlink", vec![link("l", "/etc"), Entry::file(n("f"), 0, 4)]),
        ("entry under a symlink", vec![link("l", "d"), Entry::file(n("l/f"), 0, 4)]),
        ("entry under a file", vec![Entry::file(n("f"), 0, 4), Entry::file(n("f/g"), 4, 0)]),
        ("duplicate", vec![Entry::file(n("f"), 0, 4), Entry::file(n("f"), 4, 0)]),
        (
            "temp-like top-level name",
            vec![Entry::file(n(".t.mcast-tmp-0123456789abcdef"), 0, 4), link("l", "x")],
        ),
    ];
    for (what, entries) in cases {
        let m = unchecked(entries, 4);
        // Through the wire the receiver never gets such a manifest at all...
        let bytes = m.encode();
        let announce = Announce {
            object_size: 4,
            symbol_size: T,
            block_symbols: K,
            manifest_len: bytes.len() as u32,
            manifest_hash: *blake3::hash(&bytes).as_bytes(),
            rate_bps: 1,
            grtt_us: 1,
            hashes_len: 0,
            hashes_hash: [0; 32],
        };
        if what != "temp-like top-level name" {
            assert!(Manifest::decode(&bytes, &announce).is_err(), "{what}: decoded");
        }
        // ...and a sink given one directly refuses it too.
        let err = open_sink(&dest, &m).err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(
            matches!(err, StorageError::Manifest(_) | StorageError::BadName(_)),
            "{what}: {err:?}"
        );
        assert!(listing(&out).is_empty(), "{what}: wrote {:?}", listing(&out));
    }
}

/// A two-file tree `d/a`, `d/b` (4 bytes each) and its manifest.
fn small_tree(base: &Path) -> (PathBuf, TreeSource, Manifest) {
    let from = base.join("small");
    put(&from, "d/a", b"AAAA", 0o644);
    put(&from, "d/b", b"BBBB", 0o644);
    let src = TreeSource::open(&from).unwrap();
    let m = src.manifest(T, K).unwrap();
    (from, src, m)
}

#[test]
fn destination_parent_that_is_a_symlink_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let (_, _, m) = small_tree(base.path());
    let real = base.path().join("real");
    std::fs::create_dir(&real).unwrap();
    symlink(&real, base.path().join("via")).unwrap();
    let err = open_sink(&base.path().join("via/t"), &m).err().unwrap();
    assert!(matches!(err, StorageError::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(listing(&real).is_empty());
    // A destination that is itself a symlink exists: refused without replace, nothing
    // written through it.
    symlink(&real, base.path().join("cur")).unwrap();
    let err = open_sink(&base.path().join("cur"), &m).err().unwrap();
    assert!(matches!(err, StorageError::DestinationExists(_)), "{err:?}");
    assert!(listing(&real).is_empty());
}

#[test]
fn symlinks_planted_in_the_staging_directory_are_not_followed() {
    let base = tempfile::tempdir().unwrap();
    let (_, src, m) = small_tree(base.path());
    let outside = base.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    put(&outside, "a", b"keep", 0o644);
    let dest = base.path().join("t");
    // A directory of the tree replaced by a symlink to somewhere else.
    let mut sink = TreeSink::create(&dest, &m, false).unwrap();
    let staging = sink.staging_path();
    std::fs::remove_dir_all(staging.join("d")).unwrap();
    symlink(&outside, staging.join("d")).unwrap();
    let data = src.read_at(0, 8).unwrap();
    let err = sink.write_new_at(0, &data).unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
    assert!(sink.finish(&hashes_of(&src, &m), false).is_err());
    // A file of the tree replaced by a symlink to a file elsewhere.
    let mut sink = TreeSink::create(&dest, &m, false).unwrap();
    let staging2 = sink.staging_path();
    std::fs::remove_file(staging2.join("d/a")).unwrap();
    symlink(outside.join("a"), staging2.join("d/a")).unwrap();
    assert!(sink.write_new_at(0, &data).is_err());
    drop(sink);
    assert_eq!(listing(&outside), ["a"]);
    assert_eq!(std::fs::read(outside.join("a")).unwrap(), b"keep");
    assert!(!dest.exists() && !staging.exists() && !staging2.exists());
}

#[test]
fn tree_sink_bounds_and_reports() {
    let base = tempfile::tempdir().unwrap();
    let (from, src, m) = small_tree(base.path());
    let dest = base.path().join("t");
    let mut sink = TreeSink::create(&dest, &m, false).unwrap();
    assert_eq!(sink.final_path(), dest);
    assert_eq!(Sink::len(&sink), 8);
    assert!(matches!(sink.write_new_at(5, &[1; 4]), Err(StorageError::OutOfRange { .. })));
    assert!(matches!(sink.write_new_at(u64::MAX, &[1]), Err(StorageError::OutOfRange { .. })));
    assert!(!sink.write_new_at(0, &[0; 2]).unwrap());
    // One write spanning both files.
    assert!(sink.write_new_at(2, &src.read_at(2, 6).unwrap()).unwrap());
    assert!(sink.write_new_at(0, b"AA").unwrap());
    let hl = hashes_of(&src, &m);
    assert_eq!(sink.finish(&hl, true).unwrap(), hl.root());
    assert_eq!(digest(&dest), digest(&from));
}

#[test]
fn random_small_trees_with_tiny_blocks_round_trip() {
    // 64-byte blocks: most blocks span several files, many files span several blocks.
    let (t, k) = (16u16, 4u16);
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(100 + seed);
        let base = tempfile::tempdir().unwrap();
        let from = base.path().join("src");
        std::fs::create_dir(&from).unwrap();
        for i in 0..(rng.next_u32() % 30) {
            let dir = ["", "a/", "a/b/", "c/"][(rng.next_u32() % 4) as usize];
            match rng.next_u32() % 6 {
                0 => std::fs::create_dir_all(from.join(format!("{dir}e{i}"))).unwrap(),
                1 => {
                    std::fs::create_dir_all(from.join(dir)).unwrap();
                    symlink(format!("t{i}"), from.join(format!("{dir}l{i}"))).unwrap();
                }
                _ => {
                    let len = [0, 1, 63, 64, 65, 200][(rng.next_u32() % 6) as usize];
                    put(&from, &format!("{dir}f{i}"), &random_bytes(&mut rng, len), 0o640);
                }
            }
        }
        let src = TreeSource::open(&from).unwrap();
        let m = over_the_wire(&src.manifest(t, k).unwrap());
        let whole = src.read_at(0, src.len() as usize).unwrap();
        let hl = hashes_of(&src, &m);
        assert_eq!(hl, HashList::of_bytes(&whole, m.layout().unwrap()), "seed {seed}");
        let dest = base.path().join("dest");
        let mut sink = open_sink(&dest, &m).unwrap();
        write_blocks(&src, &m, sink.as_mut(), seed);
        sink.finish(&hl, true).unwrap();
        assert_eq!(digest(&dest), digest(&from), "seed {seed}");
    }
}
