//! Tests of the version store on a temp directory.

use super::*;
use std::fs;

fn place(slot: &Slot, text: &str) {
    fs::create_dir_all(&slot.dest).unwrap();
    fs::write(slot.object(), text).unwrap();
}

fn numbers(store: &Store, name: &str) -> Vec<u64> {
    store.versions(name).unwrap().into_iter().map(|(n, _)| n).collect()
}

#[test]
fn versions_are_numbered_and_the_link_follows_each_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    assert_eq!(store.current("app").unwrap(), None);
    let one = store.prepare("app", true).unwrap();
    assert_eq!(one.version, 1);
    assert!(one.dest.is_dir(), "a single file's version directory is made");
    place(&one, "v1");
    store.commit(&one).unwrap();
    assert_eq!(store.current("app").unwrap(), Some(1));
    assert_eq!(fs::read_to_string(dir.path().join("app")).unwrap(), "v1");
    let two = store.prepare("app", true).unwrap();
    assert_eq!(two.version, 2);
    place(&two, "v2");
    store.commit(&two).unwrap();
    assert_eq!(fs::read_to_string(dir.path().join("app")).unwrap(), "v2");
    assert_eq!(fs::read_to_string(store.object_path("app", 1)).unwrap(), "v1");
    let link = fs::read_link(dir.path().join("app")).unwrap();
    assert_eq!(link, Path::new(".mcast-versions/app/2/app"), "relative, so the root may move");
}

#[test]
fn an_unfinished_version_is_reused_and_a_tree_slot_is_left_absent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let one = store.prepare("f", true).unwrap();
    place(&one, "v1");
    store.commit(&one).unwrap();
    let two = store.prepare("f", true).unwrap();
    fs::write(two.dest.join(".f.mcast-resume"), "staged").unwrap();
    fs::write(two.dest.join(".f.mcast-tmp-0a1b"), "a crashed run's, unclaimed").unwrap();
    // Nothing placed in 2: the next push of "f" resumes there.
    let again = store.prepare("f", true).unwrap();
    assert_eq!(again, two);
    assert!(two.dest.join(".f.mcast-resume").exists());
    assert!(!two.dest.join(".f.mcast-tmp-0a1b").exists(), "a stale temp is removed");
    // A tree of the same name replaces the unfinished directory whole and leaves it absent.
    let tree = store.prepare("f", false).unwrap();
    assert_eq!(tree.version, 2);
    assert!(!tree.dest.exists());
    // Once 2 is placed, the next is 3.
    place(&tree, "tree stand-in");
    assert_eq!(store.prepare("f", false).unwrap().version, 3);
}

#[test]
fn keep_n_leaves_exactly_n_old_versions() {
    for keep in [0, 1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        for n in 1..=4 {
            let s = store.prepare("app", true).unwrap();
            assert_eq!(s.version, n);
            place(&s, &format!("v{n}"));
            store.commit(&s).unwrap();
        }
        let removed = store.prune("app", 4, keep);
        let left = numbers(&store, "app");
        assert_eq!(left.len(), keep + 1, "keep {keep}: {left:?}");
        assert_eq!(*left.last().unwrap(), 4);
        assert_eq!(removed.len() + left.len(), 4, "keep {keep}");
        assert_eq!(removed, (1..=(3 - keep as u64)).collect::<Vec<_>>(), "oldest go first");
        assert_eq!(fs::read_to_string(dir.path().join("app")).unwrap(), "v4");
    }
}

#[test]
fn pruning_removes_unfinished_versions_older_than_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let one = store.prepare("app", true).unwrap();
    place(&one, "v1");
    store.commit(&one).unwrap();
    fs::create_dir_all(dir.path().join(".mcast-versions/app/2")).unwrap(); // unfinished
    let three = store.prepare("app", false).unwrap();
    assert_eq!(three.version, 2, "the unfinished one is taken");
    fs::create_dir(&three.dest).unwrap();
    fs::create_dir(three.object()).unwrap();
    store.commit(&three).unwrap();
    fs::create_dir_all(dir.path().join(".mcast-versions/app/0")).unwrap(); // unfinished, older
    fs::create_dir_all(dir.path().join(".mcast-versions/app/1x")).unwrap(); // not a version
    assert_eq!(store.prune("app", 2, 5), [0], "1 is placed and kept, 0 is not placed");
    assert_eq!(numbers(&store, "app"), [1, 2]);
    assert!(dir.path().join(".mcast-versions/app/1x").exists(), "only versions are touched");
}

#[test]
fn only_links_of_the_store_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    fs::create_dir(dir.path().join("mine")).unwrap();
    assert!(matches!(store.current("mine"), Err(VersionError::NotManaged(_))));
    assert!(matches!(store.prepare("mine", true), Err(VersionError::NotManaged(_))));
    std::os::unix::fs::symlink("/etc", dir.path().join("elsewhere")).unwrap();
    assert!(matches!(store.current("elsewhere"), Err(VersionError::NotManaged(_))));
    let other = Path::new(".mcast-versions/x/1/x");
    std::os::unix::fs::symlink(other, dir.path().join("y")).unwrap();
    assert!(matches!(store.current("y"), Err(VersionError::NotManaged(_))), "another name's");
    assert!(dir.path().join("mine").is_dir(), "left alone");
}

#[test]
fn state_round_trips_and_keeps_the_newest_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    assert_eq!(store.load_state("app"), None);
    store.prepare("app", false).unwrap();
    let mut st = NameState { version: 1, object_hash: "ab".into(), sessions: vec![] };
    for s in 0..SESSIONS_PER_NAME as u32 {
        st = st.with_session(s);
    }
    assert_eq!(st.sessions.len(), SESSIONS_PER_NAME);
    assert_eq!(st.sessions[0], 0, "exactly the limit: nothing dropped");
    st = st.with_session(99);
    assert_eq!(st.sessions.len(), SESSIONS_PER_NAME);
    assert_eq!((st.sessions[0], *st.sessions.last().unwrap()), (1, 99), "one past: oldest goes");
    st = st.with_session(5);
    assert_eq!(st.sessions.iter().filter(|s| **s == 5).count(), 1, "listed once");
    store.save_state("app", &st).unwrap();
    assert_eq!(store.load_state("app"), Some(st.clone()));
    assert_eq!(store.remembered_sessions(), st.sessions);
    fs::write(dir.path().join(".mcast-versions/app/state.json"), "{not json").unwrap();
    assert_eq!(store.load_state("app"), None, "a damaged state is ignored");
}
