use super::*;
use std::os::unix::fs::{symlink, PermissionsExt};

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn kinds(src: &TreeSource) -> Vec<(String, EntryKind)> {
    src.entries().iter().map(|e| (e.path.to_string(), e.kind.clone())).collect()
}

#[test]
fn entries_sorted_files_packed_modes_kept() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "b/x", b"xx");
    write(r, "a!", b"bang");
    write(r, "a/z", b"zzz");
    write(r, "a/empty", b"");
    std::fs::create_dir_all(r.join("a/hollow")).unwrap();
    symlink("../a!", r.join("a/link")).unwrap();
    std::fs::set_permissions(r.join("a/z"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    std::fs::set_permissions(r.join("b"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let src = TreeSource::open(r).unwrap();
    let mode = |path: &str| std::fs::symlink_metadata(r.join(path)).unwrap().mode() & 0o777;
    let file = |offset, len, path: &str| EntryKind::File { offset, len, mode: Some(mode(path)) };
    let dir = |path: &str| EntryKind::Dir { mode: Some(mode(path)) };
    assert_eq!(
        kinds(&src),
        vec![
            ("a".into(), dir("a")),
            ("a/empty".into(), file(0, 0, "a/empty")),
            ("a/hollow".into(), dir("a/hollow")),
            ("a/link".into(), EntryKind::Symlink { target: "../a!".into() }),
            ("a/z".into(), file(0, 3, "a/z")),
            ("a!".into(), file(3, 4, "a!")),
            ("b".into(), EntryKind::Dir { mode: Some(0o750) }),
            ("b/x".into(), file(7, 2, "b/x")),
        ]
    );
    // Set-id bits are not sent.
    assert_eq!(mode("a/z"), 0o751);
    assert_eq!(src.len(), 9);
    assert_eq!(src.file_count(), 4);
    assert_eq!(src.root(), r);
    // Reads span files, skipping the empty one.
    assert_eq!(src.read_at(0, 9).unwrap(), b"zzzbangxx");
    assert_eq!(src.read_at(2, 6).unwrap(), b"zbangx");
    assert_eq!(src.read_at(7, 0).unwrap(), b"");
    assert!(matches!(src.read_at(8, 2), Err(StorageError::OutOfRange { .. })));
    let m = src.manifest(1024, 4).unwrap();
    assert_eq!(m.object_size, 9);
    assert_eq!(m.entries, src.entries());
}

#[test]
fn reads_across_many_files_match_the_concatenation() {
    let dir = tempfile::tempdir().unwrap();
    let mut whole = Vec::new();
    // Sizes chosen so the sorted order (f00..f39) is the write order.
    for i in 0..40u8 {
        let data = pattern([0, 1, 7, 100, 4096, 5000][i as usize % 6], i);
        write(dir.path(), &format!("d{}/f{i:02}", i / 10), &data);
        whole.extend_from_slice(&data);
    }
    let src = TreeSource::open(dir.path()).unwrap();
    assert_eq!(src.len(), whole.len() as u64);
    for (off, len) in [(0, whole.len()), (1, 9000), (5000, 20_000), (whole.len() - 3, 3)] {
        assert_eq!(src.read_at(off as u64, len).unwrap(), &whole[off..off + len], "{off}");
    }
    let h = src.hash_blocks(3000).unwrap();
    let expected: Vec<[u8; 32]> = whole.chunks(3000).map(|c| *blake3::hash(c).as_bytes()).collect();
    assert_eq!(h.block_hashes, expected);
}

#[test]
fn chosen_paths_bring_parents_and_subtrees_once() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "bin/tool", b"t");
    write(r, "lib/x/a.so", b"a");
    write(r, "lib/x/b.so", b"b");
    write(r, "skip/me", b"s");
    let src = TreeSource::open_paths(r, &["lib/x", "./lib/x/a.so", "bin/tool"]).unwrap();
    let names: Vec<String> = src.entries().iter().map(|e| e.path.to_string()).collect();
    assert_eq!(names, ["bin", "bin/tool", "lib", "lib/x", "lib/x/a.so", "lib/x/b.so"]);
    assert_eq!(src.read_at(0, 3).unwrap(), b"tab");
    let whole = TreeSource::open_paths(r, &["."]).unwrap();
    assert_eq!(whole.entries(), TreeSource::open(r).unwrap().entries());
    for bad in ["../etc", "/etc", "lib/../skip"] {
        assert!(
            matches!(TreeSource::open_paths(r, &[bad]), Err(StorageError::BadName(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        TreeSource::open_paths(r, &["missing"]),
        Err(StorageError::Io { op: "stat", .. })
    ));
}

#[test]
fn paths_under_a_symlink_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret", b"s");
    symlink(outside.path(), dir.path().join("l")).unwrap();
    let err = TreeSource::open_paths(dir.path(), &["l/secret"]).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    // The link alone is recorded as a link, not followed... and refused, as it is absolute.
    let err = TreeSource::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("symlink") && err.to_string().contains("/l"), "{err}");
}

#[test]
fn escaping_symlinks_are_refused_naming_the_path() {
    for target in ["../x", "/etc/passwd", "a/../../x", "./x", "d/.."] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        symlink(target, dir.path().join("d/l")).unwrap();
        if target == "../x" {
            // From d/, one level up is still inside.
            assert!(TreeSource::open(dir.path()).is_ok());
            symlink("../../x", dir.path().join("d/l2")).unwrap();
        }
        let err = TreeSource::open(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Unsupported(_)), "{target}: {err:?}");
        assert!(err.to_string().contains("d/l"), "{err}");
    }
}

#[test]
fn special_files_are_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = TreeSource::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("pipe") && err.to_string().contains("FIFO"), "{err}");
    std::fs::remove_file(&fifo).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
    let err = TreeSource::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("sock") && err.to_string().contains("socket"), "{err}");
}

#[test]
fn bad_names_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
    std::fs::write(dir.path().join(bad), b"").unwrap();
    assert!(matches!(TreeSource::open(dir.path()), Err(StorageError::BadName(_))));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".x.mcast-tmp-00ff", b"");
    assert!(matches!(TreeSource::open(dir.path()), Err(StorageError::BadName(_))));
    // Below the top level the name is harmless.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "d/.x.mcast-tmp-00ff", b"");
    assert!(TreeSource::open(dir.path()).is_ok());
    let file = dir.path().join("d/.x.mcast-tmp-00ff");
    assert!(matches!(TreeSource::open(&file), Err(StorageError::Unsupported(_))));
}

#[test]
fn files_changed_after_the_walk_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a", &pattern(100, 1));
    write(dir.path(), "b", &pattern(100, 2));
    write(dir.path(), "c", &pattern(100, 3));
    let src = TreeSource::open(dir.path()).unwrap();
    assert!(src.hash_blocks(64).is_ok());
    // Grown.
    write(dir.path(), "a", &pattern(150, 1));
    assert!(matches!(
        src.read_at(0, 10),
        Err(StorageError::SizeMismatch { expected: 100, actual: 150, .. })
    ));
    assert!(matches!(src.hash_blocks(64), Err(StorageError::SizeMismatch { .. })));
    // Replaced by another file of the same size.
    write(dir.path(), "b.new", &pattern(100, 9));
    std::fs::rename(dir.path().join("b.new"), dir.path().join("b")).unwrap();
    assert!(matches!(src.read_at(150, 10), Err(StorageError::Changed { what: "replaced", .. })));
    // Rewritten in place with the same size, but a new mtime.
    let f = std::fs::OpenOptions::new().write(true).open(dir.path().join("c")).unwrap();
    f.write_all_at(b"zz", 0).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    let err = src.read_at(250, 10).unwrap_err();
    assert!(matches!(err, StorageError::Changed { what: "modified", .. }), "{err:?}");
    assert!(err.to_string().contains("/c"), "{err}");
    // Replaced by a symlink: not followed.
    std::fs::remove_file(dir.path().join("c")).unwrap();
    symlink("a", dir.path().join("c")).unwrap();
    assert!(matches!(src.read_at(250, 10), Err(StorageError::Io { op: "open", .. })));
}

#[test]
fn many_small_files_share_blocks() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        write(dir.path(), &format!("d{}/f{i}", i % 17), &pattern(100 + i % 300, i as u8));
    }
    let src = TreeSource::open(dir.path()).unwrap();
    let m = src.manifest(1024, 1024).unwrap();
    // 2000 files of 100..400 bytes are about 0.5 MiB: one block of 1 MiB, not 2000.
    assert_eq!(src.file_count(), 2000);
    assert_eq!(m.layout().unwrap().block_count(), 1);
    assert_eq!(m.entries.len(), 2017);
}

#[test]
fn not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f", b"x");
    assert!(matches!(TreeSource::open(&dir.path().join("f")), Err(StorageError::Unsupported(_))));
    assert!(matches!(
        TreeSource::open(&dir.path().join("nope")),
        Err(StorageError::Io { op: "stat", .. })
    ));
}

#[test]
fn component_order_puts_directories_before_their_subtrees() {
    let mut v = [p("a!"), p("a/b"), p("a"), p("a.b"), p("a/b/c"), p("b")];
    v.sort_by(component_order);
    let got: Vec<&str> = v.iter().map(|r| r.as_str()).collect();
    assert_eq!(got, ["a", "a/b", "a/b/c", "a!", "a.b", "b"]);
}

#[test]
fn shareable_across_threads_and_a_chosen_symlink_stays_a_symlink() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TreeSource>();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "lib/real.so", b"so");
    symlink("real.so", dir.path().join("lib/link.so")).unwrap();
    let src = TreeSource::open_paths(dir.path(), &["lib/link.so"]).unwrap();
    let got = kinds(&src);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], ("lib/link.so".into(), EntryKind::Symlink { target: "real.so".into() }));
    assert_eq!(src.len(), 0);
}
