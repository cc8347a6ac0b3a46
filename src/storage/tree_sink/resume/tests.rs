use super::*;
use crate::proto::manifest::HashList;
use crate::storage::{clean_stale_tree_temps, Sink, Source, TreeSource};
use std::path::Path;

/// A tree at `root`: files of several blocks, an empty one, a symlink and an empty directory.
fn make_tree(root: &Path, salt: u8) {
    std::fs::create_dir_all(root.join("sub/empty")).unwrap();
    std::fs::write(root.join("a"), vec![salt; 1000]).unwrap();
    std::fs::write(root.join("e"), b"").unwrap();
    let b: Vec<u8> = (0..12000u32).map(|i| (i * 7) as u8 ^ salt).collect();
    std::fs::write(root.join("sub/b"), b).unwrap();
    std::os::unix::fs::symlink("../a", root.join("sub/link")).unwrap();
}

/// The push of the tree at `root`: manifest (256-byte blocks), its hash, its blocks and list.
struct Push {
    m: Manifest,
    id: [u8; 32],
    blocks: Vec<(u64, Vec<u8>)>,
    list: HashList,
}

fn push(root: &Path) -> Push {
    let src = TreeSource::open(root).unwrap();
    let m = src.manifest(64, 4).unwrap();
    let whole = src.read_at(0, src.len() as usize).unwrap();
    let blocks = whole.chunks(256).enumerate().map(|(i, c)| (i as u64 * 256, c.to_vec())).collect();
    let list = HashList::of_bytes(&whole, m.layout().unwrap());
    Push { id: crate::storage::resume::push_id(&m), m, blocks, list }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn staging_names(dir: &Path) -> Vec<String> {
    names(dir).into_iter().filter(|n| n.starts_with(".dest.mcast-tmp-")).collect()
}

/// Opens a resumable sink for `p` at `dest`, writes and records `which` blocks.
fn write(dest: &Path, p: &Push, which: impl Iterator<Item = usize>) -> (TreeSink, HeldBlocks) {
    let (open, held) = TreeSink::resumable(dest, &p.m, &p.id, false).unwrap();
    let mut sink = open.open().unwrap();
    for b in which {
        let (off, data) = &p.blocks[b];
        sink.write_new_at(*off, data).unwrap();
        Sink::record_block(&mut sink, b as u32, *blake3::hash(data).as_bytes());
    }
    (sink, held)
}

#[test]
fn a_suspended_tree_resumes_with_the_blocks_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(&dir.path().join("src"), 1);
    let p = push(&dir.path().join("src"));
    let dest = dir.path().join("dest");
    let n = p.blocks.len();
    assert!(n > 40, "{n} blocks");
    let (sink, held) = write(&dest, &p, 0..n / 2);
    assert!(held.is_empty(), "nothing to resume the first time");
    sink.suspend();
    assert_eq!(staging_names(dir.path()).len(), 1, "the staging tree stays");
    assert!(!dest.exists());

    let (open, held) = TreeSink::resumable(&dest, &p.m, &p.id, false).unwrap();
    assert!(open.is_resumed());
    let want: Vec<(u32, [u8; 32])> =
        (0..n / 2).map(|b| (b as u32, *blake3::hash(&p.blocks[b].1).as_bytes())).collect();
    assert_eq!(held, want, "exactly the recorded blocks, with their hashes");
    let mut sink = open.open().unwrap();
    for (off, data) in &p.blocks[n / 2..] {
        sink.write_new_at(*off, data).unwrap();
    }
    assert_eq!(sink.finish(&p.list, true).unwrap(), p.list.root());
    assert_eq!(
        std::fs::read(dest.join("sub/b")).unwrap(),
        std::fs::read(dir.path().join("src/sub/b")).unwrap()
    );
    assert_eq!(std::fs::read_link(dest.join("sub/link")).unwrap(), Path::new("../a"));
    assert!(dest.join("sub/empty").is_dir());
    assert_eq!(names(dir.path()), ["dest", "src"], "no staging directory or sidecar left");
}

#[test]
fn a_block_written_but_not_recorded_is_not_held() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(&dir.path().join("src"), 1);
    let p = push(&dir.path().join("src"));
    let dest = dir.path().join("dest");
    let (mut sink, _) = write(&dest, &p, 0..3);
    sink.write_new_at(p.blocks[3].0, &p.blocks[3].1).unwrap();
    sink.suspend();
    let (_, held) = TreeSink::resumable(&dest, &p.m, &p.id, false).unwrap();
    assert_eq!(held.iter().map(|h| h.0).collect::<Vec<_>>(), [0, 1, 2]);
}

#[test]
fn another_push_discards_the_staged_tree() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(&dir.path().join("src"), 1);
    make_tree(&dir.path().join("src2"), 2);
    // The manifest has no contents (the hash list checks those): another push differs in its
    // entries.
    std::fs::write(dir.path().join("src2/new"), b"new").unwrap();
    let (p, p2) = (push(&dir.path().join("src")), push(&dir.path().join("src2")));
    assert_ne!(p.id, p2.id);
    let dest = dir.path().join("dest");
    let (sink, _) = write(&dest, &p, 0..10);
    sink.suspend();
    let old = staging_names(dir.path());
    let (open, held) = TreeSink::resumable(&dest, &p2.m, &p2.id, false).unwrap();
    assert!(!open.is_resumed() && held.is_empty());
    assert!(staging_names(dir.path()).is_empty(), "the stale staging tree is gone");
    let sink = open.open().unwrap();
    let now = staging_names(dir.path());
    assert_eq!(now.len(), 1);
    assert_ne!(now, old);
    drop(sink);
    assert_eq!(names(dir.path()), ["src", "src2"], "a dropped sink removes its state");
}

#[test]
fn a_changed_staging_tree_is_not_resumed() {
    type Change = fn(&Path);
    let changes: [(&str, Change); 4] = [
        ("a file resized", |s| {
            std::fs::File::options().write(true).open(s.join("a")).unwrap().set_len(999).unwrap()
        }),
        ("a symlink retargeted", |s| {
            std::fs::remove_file(s.join("sub/link")).unwrap();
            std::os::unix::fs::symlink("../e", s.join("sub/link")).unwrap();
        }),
        ("a directory replaced by a symlink", |s| {
            std::fs::remove_dir(s.join("sub/empty")).unwrap();
            std::os::unix::fs::symlink("/", s.join("sub/empty")).unwrap();
        }),
        ("a file removed", |s| std::fs::remove_file(s.join("e")).unwrap()),
    ];
    for (what, change) in changes {
        let dir = tempfile::tempdir().unwrap();
        make_tree(&dir.path().join("src"), 1);
        let p = push(&dir.path().join("src"));
        let dest = dir.path().join("dest");
        let (sink, _) = write(&dest, &p, 0..10);
        sink.suspend();
        let staged = dir.path().join(&staging_names(dir.path())[0]);
        change(&staged);
        let (open, held) = TreeSink::resumable(&dest, &p.m, &p.id, false).unwrap();
        assert!(!open.is_resumed() && held.is_empty(), "{what}: resumed");
        assert!(!staged.exists(), "{what}: the changed staging tree is removed");
    }
}

#[test]
fn a_second_receiver_into_the_same_tree_is_busy_and_cleanup_keeps_the_claimed_tree() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(&dir.path().join("src"), 1);
    let p = push(&dir.path().join("src"));
    let dest = dir.path().join("dest");
    let (sink, _) = write(&dest, &p, 0..5);
    let e = TreeSink::resumable(&dest, &p.m, &p.id, false).unwrap_err();
    assert!(matches!(e, StorageError::Busy { pid, .. } if pid == std::process::id()), "{e}");
    sink.suspend();
    // A crashed run's unclaimed staging directory goes; the claimed one stays.
    std::fs::create_dir(dir.path().join(".dest.mcast-tmp-0123456789abcdef")).unwrap();
    let claimed = staging_names(dir.path());
    assert_eq!(claimed.len(), 2);
    assert_eq!(clean_stale_tree_temps(&dest).unwrap(), 1);
    let kept = staging_names(dir.path());
    assert_eq!(kept.len(), 1);
    assert_ne!(kept[0], ".dest.mcast-tmp-0123456789abcdef");
    let (open, held) = TreeSink::resumable(&dest, &p.m, &p.id, false).unwrap();
    assert!(open.is_resumed());
    assert_eq!(held.len(), 5);
}
