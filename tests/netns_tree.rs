//! Real processes pushing directory trees inside a private user + network namespace
//! (`unshare -rn`, IPv4 loopback multicast, `netns-scripts/ns-tree.sh`), so nothing reaches a
//! real network. One scenario, three pushes onto the same destinations:
//!
//! 1. a tree of 2,000 files (0 bytes to 4 MiB, 64 MiB in all, nested and empty directories,
//!    symlinks, modes) to 3 receivers with 2 % injected loss, into destinations that do not
//!    exist yet: every copy is identical (a recursive digest of paths, kinds, modes, link
//!    targets and contents);
//! 2. another tree with `mcast-recv --replace` onto the same destinations: swapped in;
//! 3. a third tree without `--replace`: every receiver fails with a clear message, the sender
//!    exits 3, and the second tree stays intact.
//!
//! Where user namespaces are unavailable the test prints "SKIPPED" and passes, unless
//! `MCAST_REQUIRE_NETNS=1`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const RECEIVERS: usize = 3;
/// Seconds each process may take (`--timeout`); the script adds a hard limit on top.
const TIMEOUT_SECS: u64 = 120;

/// File sizes of this test's trees: mostly small, every 20th 64 to 512 KiB, every 200th 2 to 4
/// MiB, some empty.
fn sizes(i: usize, rng: &mut common::TestRng) -> u64 {
    if i % 200 == 7 {
        (2 << 20) + rng.below(2 << 20)
    } else if i % 20 == 3 {
        (64 << 10) + rng.below(448 << 10)
    } else if i % 50 == 1 {
        0
    } else {
        rng.below(8 << 10)
    }
}

/// A tree of `files` files under `root` (see `common::make_tree_with`).
fn make_tree(root: &Path, seed: u64, files: usize) -> common::TreeCounts {
    common::make_tree_with(root, seed, files, sizes)
}

/// Every entry below `root` (not followed), with mtimes (`common::tree_digest`).
fn digest(root: &Path) -> BTreeMap<String, String> {
    common::tree_digest(root, true)
}

/// Panics naming the first difference between two digests.
fn assert_same_tree(expected: &BTreeMap<String, String>, got: &Path) {
    let actual = digest(got);
    for (path, what) in expected {
        assert_eq!(actual.get(path), Some(what), "{}: {path}", got.display());
    }
    let extra: Vec<_> = actual.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(extra.is_empty(), "{} has entries the source has not: {extra:?}", got.display());
}

fn json(path: &Path) -> Value {
    let text = common::read_text(path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} ({e}):\n{text}", path.display()))
}

/// Runs one push of `src` in a fresh private namespace (ns-tree.sh, tag `tag`, receivers'
/// outputs `work/dest-I`); returns whether the script said every process exited 0.
fn push(src: &Path, work: &Path, tag: &str, recv_args: &str) -> bool {
    let script: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "netns-scripts", "ns-tree.sh"].iter().collect();
    let run = Command::new("timeout")
        .args(["-k", "10", &(TIMEOUT_SECS * 2 + 60).to_string()])
        .args(["unshare", "-rn", "bash"])
        .arg(&script)
        .env("MCAST_SEND_BIN", env!("CARGO_BIN_EXE_mcast-send"))
        .env("MCAST_RECV_BIN", env!("CARGO_BIN_EXE_mcast-recv"))
        .env("SRC", src)
        .env("WORK", work)
        .env("TAG", tag)
        .env("RECV_ARGS", recv_args)
        .env("RECEIVERS", RECEIVERS.to_string())
        .env("GROUP", "239.255.42.7:7400")
        .env("RATE", "400M")
        .env("DROP", "0.02")
        .env("TIMEOUT", TIMEOUT_SECS.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    eprintln!("ns-tree.sh {tag}: {}\n{}", run.status, String::from_utf8_lossy(&run.stderr));
    for name in
        std::iter::once("send".to_string()).chain((1..=RECEIVERS).map(|i| format!("recv-{i}")))
    {
        let log = common::read_text(&work.join(format!("{tag}-{name}.log")));
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "==== {tag}-{name}.log (last 12)\n{}",
            lines[lines.len().saturating_sub(12)..].join("\n")
        );
    }
    assert!(
        matches!(run.status.code(), Some(0 | 1)),
        "ns-tree.sh {tag} could not run: {}",
        run.status
    );
    run.status.success()
}

/// The exit code a process of push `tag` wrote.
fn rc(work: &Path, tag: &str, name: &str) -> String {
    common::read_text(&work.join(format!("{tag}-{name}.rc"))).trim().to_string()
}

/// Nothing but the destinations and the scripts' files in `work`: no staging directory left.
fn assert_no_staging_left(work: &Path) {
    for ent in fs::read_dir(work).unwrap() {
        let name = ent.unwrap().file_name().into_string().unwrap();
        assert!(!name.contains("mcast-tmp"), "left behind in {}: {name}", work.display());
    }
}

#[test]
fn trees_arrive_identical_replace_swaps_and_an_existing_tree_is_refused() {
    if common::skip_without_netns() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let dest = |i: usize| work.join(format!("dest-{i}"));

    // 1. 2,000 files into destinations that do not exist yet.
    let first = tmp.path().join("release-1");
    let counts = make_tree(&first, 0x7472_6565_0001, 2000);
    eprintln!("first tree: {counts:?}");
    assert!((56 << 20..72 << 20).contains(&counts.bytes), "about 64 MiB: {counts:?}");
    let expected = digest(&first);
    assert!(push(&first, &work, "first", ""), "first push failed");
    let send = json(&work.join("first-send.json"));
    assert_eq!(send["status"], "complete", "{send}");
    assert_eq!(send["complete"], RECEIVERS, "{send}");
    let tree = &send["tree"];
    for (key, want) in [
        ("files", counts.files),
        ("dirs", counts.dirs),
        ("symlinks", counts.symlinks),
        ("bytes", counts.bytes),
    ] {
        assert_eq!(tree[key].as_u64(), Some(want), "sender report tree.{key}: {send}");
    }
    let summary =
        format!("({} files, {} dirs, {} symlinks, ", counts.files, counts.dirs, counts.symlinks);
    assert!(
        common::read_text(&work.join("first-send.log")).contains(&summary),
        "sender summary {summary}"
    );
    for i in 1..=RECEIVERS {
        let r = json(&work.join(format!("first-recv-{i}.json")));
        assert_eq!(r["status"], "complete", "receiver {i}: {r}");
        assert_eq!(r["path"].as_str(), dest(i).to_str(), "receiver {i} names the placed tree");
        assert_eq!(r["tree"]["files"].as_u64(), Some(counts.files), "receiver {i}: {r}");
        assert_eq!(r["tree"]["bytes"].as_u64(), Some(counts.bytes), "receiver {i}: {r}");
        assert!(r["dropped_on_purpose"].as_u64().unwrap() > 0, "2 % loss injected: {r}");
        assert_same_tree(&expected, &dest(i));
    }
    eprintln!(
        "first push: {} files, {} bytes to {RECEIVERS} receivers in {} s (sender {} s)",
        counts.files,
        counts.bytes,
        common::read_text(&work.join("first-elapsed")).trim(),
        send["seconds"]
    );
    assert_no_staging_left(&work);

    // 2. Another release with --replace onto the same destinations: swapped in whole.
    let second = tmp.path().join("release-2");
    make_tree(&second, 0x7472_6565_0002, 300);
    let expected = digest(&second);
    assert!(push(&second, &work, "second", "--replace"), "replacing push failed");
    for i in 1..=RECEIVERS {
        let r = json(&work.join(format!("second-recv-{i}.json")));
        assert_eq!(r["status"], "complete", "receiver {i}: {r}");
        assert_same_tree(&expected, &dest(i));
    }
    assert_no_staging_left(&work);

    // 3. Without --replace an existing tree is refused, clearly, and left as it was.
    let third = tmp.path().join("release-3");
    make_tree(&third, 0x7472_6565_0003, 40);
    assert!(!push(&third, &work, "third", ""), "a push onto an existing tree must fail");
    assert_eq!(rc(&work, "third", "send"), "3", "the sender hears the failures");
    for i in 1..=RECEIVERS {
        assert_eq!(rc(&work, "third", &format!("recv-{i}")), "1", "receiver {i} fails");
        let r = json(&work.join(format!("third-recv-{i}.json")));
        assert_eq!(r["status"], "failed", "receiver {i}: {r}");
        assert!(r["path"].is_null(), "nothing placed: {r}");
        let why = format!("{} already exists (replacing it was not asked for)", dest(i).display());
        assert!(r["error"].as_str().is_some_and(|e| e.contains(&why)), "receiver {i}: {r}");
        let log = common::read_text(&work.join(format!("third-recv-{i}.log")));
        assert!(log.lines().last().is_some_and(|l| l.starts_with("failed: ") && l.contains(&why)));
        assert_same_tree(&expected, &dest(i));
    }
    assert_no_staging_left(&work);
}
