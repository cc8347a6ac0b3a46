use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn n(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn file(path: &str, offset: u64, len: u64, mode: Option<u32>) -> Entry {
    Entry::new(n(path), EntryKind::File { offset, len, mode })
}

fn dir(path: &str, mode: Option<u32>) -> Entry {
    Entry::new(n(path), EntryKind::Dir { mode })
}

/// A checked manifest of `entries` over `data` (64 KiB blocks).
fn manifest(entries: Vec<Entry>, data: &[u8]) -> Manifest {
    Manifest::new(entries, data.len() as u64, 1024, 64).unwrap()
}

/// The hash list of `data` as `m` lays it out.
fn hashes(m: &Manifest, data: &[u8]) -> HashList {
    HashList::of_bytes(data, m.layout().unwrap())
}

#[test]
fn walk_creates_parents_and_reports_directories_after_their_contents() {
    let base = tempfile::tempdir().unwrap();
    let root = at::open_dir_path(base.path()).unwrap();
    let stage = Stage::new(root, base.path().to_path_buf());
    let mut entries = vec![
        file("h", 0, 0, None),
        dir("d", Some(0o750)),
        file("d/e/f", 0, 0, None),
        Entry::new(n("d/g"), EntryKind::Symlink { target: "e/f".into() }),
        dir("d/e/x/y", None),
    ];
    entries.sort_by(|a, b| component_order(&a.path, &b.path));
    let mut visited = Vec::new();
    let mut done = Vec::new();
    walk_sorted(
        &stage,
        &entries,
        true,
        |d, name, e| {
            visited.push(e.path.to_string());
            create_entry(d, name, e)
        },
        |d, mode, _| {
            done.push((File::from(d.try_clone_to_owned()?).metadata()?.ino(), mode));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(visited, ["d", "d/e/f", "d/e/x/y", "d/g", "h"]);
    let ino = |p: &str| std::fs::metadata(base.path().join(p)).unwrap().ino();
    // Post-order: every directory after everything below it; implied ones have no mode.
    let expected =
        [(ino("d/e/x/y"), None), (ino("d/e/x"), None), (ino("d/e"), None), (ino("d"), Some(0o750))];
    assert_eq!(done, expected);
    assert!(base.path().join("d/e/f").is_file());
    assert!(std::fs::symlink_metadata(base.path().join("d/g")).unwrap().is_symlink());
    // Without `create`, a missing directory is an error, not created.
    let missing = [file("m/f", 0, 0, None)];
    let err = walk_sorted(&stage, &missing, false, |_, _, _| Ok(()), |_, _, _| Ok(())).unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
    assert!(!base.path().join("m").exists());
}

#[test]
fn modes_apply_after_contents_and_implied_directories_get_the_default() {
    let base = tempfile::tempdir().unwrap();
    let data = b"0123456789";
    let m = manifest(
        vec![
            dir("ro", Some(0o555)),
            file("ro/sub/f", 0, 4, Some(0o400)),
            file("ro/x", 4, 6, Some(0o751)),
            dir("open", None),
        ],
        data,
    );
    let dest = base.path().join("t");
    let mut sink = TreeSink::create(&dest, &m, false).unwrap();
    assert!(sink.write_new_at(0, data).unwrap());
    sink.finish(&hashes(&m, data), true).unwrap();
    let mode = |p: &str| std::fs::symlink_metadata(dest.join(p)).unwrap().mode() & 0o7777;
    std::fs::create_dir(base.path().join("reference")).unwrap();
    let default_dir = std::fs::metadata(base.path().join("reference")).unwrap().mode() & 0o7777;
    assert_eq!(
        [mode("ro"), mode("ro/sub"), mode("ro/sub/f"), mode("ro/x"), mode("open")],
        [0o555, default_dir, 0o400, 0o751, default_dir]
    );
    assert_eq!(std::fs::read(dest.join("ro/sub/f")).unwrap(), b"0123");
    // A read-only tree can still be replaced (its old copy removed).
    std::fs::set_permissions(dest.join("ro"), std::fs::Permissions::from_mode(0o500)).unwrap();
    let mut sink = TreeSink::create(&dest, &m, true).unwrap();
    sink.write_new_at(0, data).unwrap();
    sink.finish(&hashes(&m, data), true).unwrap();
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 2);
}

#[test]
fn payload_order_need_not_be_path_order() {
    let base = tempfile::tempdir().unwrap();
    // `z` holds the first payload bytes, `a/b` the last: hashing follows the payload.
    let data = b"zzzzAABB";
    let m = manifest(vec![file("z", 0, 4, None), file("a/b", 4, 4, None)], data);
    let dest = base.path().join("t");
    let mut sink = TreeSink::create(&dest, &m, false).unwrap();
    sink.write_new_at(3, &data[3..]).unwrap();
    sink.write_new_at(0, &data[..3]).unwrap();
    sink.finish(&hashes(&m, data), true).unwrap();
    assert_eq!(std::fs::read(dest.join("z")).unwrap(), b"zzzz");
    assert_eq!(std::fs::read(dest.join("a/b")).unwrap(), b"AABB");
}

#[test]
fn trees_deeper_than_the_limit_are_refused_leaving_nothing() {
    let base = tempfile::tempdir().unwrap();
    let deep = |levels: usize| format!("{}f", "d/".repeat(levels));
    let ok = manifest(vec![file(&deep(MAX_TREE_DEPTH), 0, 1, None)], b"x");
    let dest = base.path().join("t");
    let mut sink = TreeSink::create(&dest, &ok, false).unwrap();
    sink.write_new_at(0, b"x").unwrap();
    sink.finish(&hashes(&ok, b"x"), true).unwrap();
    assert_eq!(std::fs::read(dest.join(deep(MAX_TREE_DEPTH))).unwrap(), b"x");
    let too_deep = manifest(vec![file(&deep(MAX_TREE_DEPTH + 1), 0, 1, None)], b"x");
    let dest2 = base.path().join("t2");
    let err = TreeSink::create(&dest2, &too_deep, false).unwrap_err();
    assert!(matches!(err, StorageError::Unsupported(_)), "{err:?}");
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 1);
}

#[test]
fn destination_names() {
    use std::os::unix::ffi::OsStrExt;
    let base = tempfile::tempdir().unwrap();
    let m = manifest(vec![dir("d", None)], b"");
    let bad = base.path().join(std::ffi::OsStr::from_bytes(b"\xff"));
    assert!(matches!(TreeSink::create(&bad, &m, false), Err(StorageError::BadName(_))));
    for no_name in ["/", ".", "a/.."] {
        let r = TreeSink::create(Path::new(no_name), &m, false);
        assert!(matches!(r, Err(StorageError::BadName(_))), "{no_name}");
    }
    let missing = base.path().join("no/such");
    assert!(matches!(TreeSink::create(&missing, &m, false), Err(StorageError::Io { .. })));
    // The longest name still gets a staging directory, which is kept while its sink lives
    // (leaked here, so its lock stays); one of a crashed run under that name is cleaned.
    let long = base.path().join("n".repeat(255));
    let sink = TreeSink::create(&long, &m, false).unwrap();
    let staging = sink.staging_path();
    assert!(staging.is_dir());
    std::mem::forget(sink);
    let crashed = base.path().join(crate::storage::names::temp_file_name(&"n".repeat(255), 0xab));
    std::fs::create_dir(&crashed).unwrap();
    assert_eq!(clean_stale_tree_temps(&long).unwrap(), 1);
    assert!(staging.exists() && !crashed.exists());
}

#[test]
fn a_second_receiver_into_the_same_tree_is_refused_and_the_first_is_unaffected() {
    let base = tempfile::tempdir().unwrap();
    let dest = base.path().join("v1");
    let data = b"0123456789";
    let m = manifest(vec![dir("d", None), file("d/f", 0, 10, None)], data);
    let mut first = TreeSink::create(&dest, &m, false).unwrap();
    let e = TreeSink::create(&dest, &m, false).unwrap_err();
    let pid = std::process::id();
    assert!(matches!(e, StorageError::Busy { pid: p, .. } if p == pid), "{e:?}");
    assert!(e.to_string().contains("another mcast-recv is receiving into"), "{e}");
    // Another receiver's cleanup keeps the staging directory in use.
    assert_eq!(clean_stale_tree_temps(&dest).unwrap(), 0);
    first.write_new_at(0, data).unwrap();
    first.finish(&hashes(&m, data), true).unwrap();
    assert_eq!(std::fs::read(dest.join("d/f")).unwrap(), data);
    let mut left: Vec<_> =
        std::fs::read_dir(base.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["v1"], "placed: no staging directory, no lock file");
    // Just past the first one's life, a second one gets in; aborted, it leaves nothing.
    let second = TreeSink::create(&dest, &m, true).unwrap();
    second.abort();
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 1);
}

#[test]
fn an_unlocked_crashed_staging_directory_is_removed() {
    let base = tempfile::tempdir().unwrap();
    let dest = base.path().join("v1");
    let stale = base.path().join(".v1.mcast-tmp-00000000000000ab");
    std::fs::create_dir_all(stale.join("sub")).unwrap();
    assert_eq!(clean_stale_tree_temps(&dest).unwrap(), 1);
    assert!(!stale.exists());
}
