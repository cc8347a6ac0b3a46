//! An interrupted receive, with real processes in a private namespace (`unshare -rn`): the
//! receiver is stopped with SIGTERM mid-transfer, exits 130 with an "interrupted" report, keeps
//! its temp file and resume state for the next run (docs/resume.md), and the previous version
//! at the destination is untouched.

mod common;

use std::fs;
use std::process::Command;

const SCRIPT: &str = r#"
set -u
ip link set lo up; ip link set lo multicast on; ip route add 239.0.0.0/8 dev lo
G=239.255.43.1:7100
"$RECV" --group $G --interface 127.0.0.1 --output out --once --json --timeout 60s \
    --ready-file ready > recv.json 2> recv.log & rpid=$!
for _ in $(seq 100); do [ -e ready ] && break; sleep 0.1; done
# 16 MiB at 20 Mbit/s takes about 7 s: plenty of time to interrupt.
"$SEND" src.bin --group $G --interface 127.0.0.1 --rate 20M --timeout 30s > send.json 2> send.log & spid=$!
for _ in $(seq 200); do ls out/.src.bin.mcast-tmp-* > /dev/null 2>&1 && break; sleep 0.05; done
ls -a out > during.txt
kill -TERM $rpid; wait $rpid; echo $? > recv.rc
kill -TERM $spid; wait $spid; echo $? > send.rc
ls -a out > after.txt
"#;

#[test]
fn interrupted_receive_keeps_the_old_file_and_its_staging_for_a_resume() {
    if Command::new("unshare").args(["-rn", "true"]).status().map_or(true, |s| !s.success()) {
        assert!(std::env::var("MCAST_REQUIRE_NETNS").is_err(), "user namespaces required");
        eprintln!("SKIPPED: user namespaces unavailable");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("out")).unwrap();
    fs::write(d.join("out/src.bin"), b"old version\n").unwrap();
    let data: Vec<u8> =
        (0..16u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(d.join("src.bin"), &data).unwrap();
    let status = common::ns_bash(d, 90, SCRIPT).status().unwrap();
    let read = |f: &str| fs::read_to_string(d.join(f)).unwrap_or_default();
    println!("recv.log:\n{}\nsend.log:\n{}", read("recv.log"), read("send.log"));
    assert!(status.success(), "namespace script failed: {status}");
    assert!(read("during.txt").contains(".src.bin.mcast-tmp-"), "interrupted mid-transfer");
    assert_eq!(read("recv.rc").trim(), "130");
    assert_eq!(read("send.rc").trim(), "130");
    let report: serde_json::Value = serde_json::from_str(&read("recv.json")).unwrap();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(report["path"], serde_json::Value::Null);
    let after = read("after.txt");
    let mut left: Vec<_> = after.lines().collect();
    left.sort_unstable();
    assert_eq!(left.len(), 5, "the temp file and its resume state stay: {left:?}");
    assert_eq!(left[2], ".src.bin.mcast-resume");
    assert!(left[3].starts_with(".src.bin.mcast-tmp-") && left[4] == "src.bin", "{left:?}");
    assert_eq!(fs::read(d.join("out/src.bin")).unwrap(), b"old version\n");
}
