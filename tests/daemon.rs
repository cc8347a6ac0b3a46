//! The receiver service with real processes in a private namespace (`unshare -rn`, IPv4
//! loopback multicast): one `mcast-recv --daemon --output-root drops --keep 1 --on-complete
//! CMD --json` takes seven pushes in a row from `mcast-send`:
//!
//! 1. tree `app` (v1) and 2. tree `app` (v2): placed as versions 1 and 2, `drops/app` flipped;
//! 3. tree `app` (v3) whose sender is stopped with SIGTERM mid-push: not placed, version 2
//!    stays current and intact, the staging is gone;
//! 4. tree `app` (v4): version 3, and `--keep 1` leaves exactly one old version (2);
//! 5. single file `release.bin`, whose `--on-complete` fails (exit 1): placed, the service
//!    goes on;
//! 6. v4 again (a new session, same content): `unchanged`, not placed again, command not run;
//! 7. a tree with two top-level entries: refused with a clear reason, nothing written;
//! 8. a carousel (`--repeat 3`): placed once, its repeated passes not received again;
//! 9. after a restart of the service, v4 once more: `unchanged` (remembered in state.json).
//!
//! The command writes a marker line per run with the environment it was given; systemd's
//! readiness protocol is checked on a Unix datagram socket the test binds (`NOTIFY_SOCKET`):
//! `READY=1` first, a `STATUS=` per push, `WATCHDOG=1` (with `WATCHDOG_USEC`), `STOPPING=1`
//! last. SIGTERM stops the service with exit 0.
//!
//! Where user namespaces are unavailable the test prints "SKIPPED" and passes, unless
//! `MCAST_REQUIRE_NETNS=1`.

mod common;

use serde_json::Value;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
ip link set lo up; ip link set lo multicast on; ip route add 239.0.0.0/8 dev lo
G=239.255.44.1:7300
mkdir drops
"$RECV" --daemon --output-root drops --keep 1 --on-complete "$HOOK" --json \
    --group $G --interface 127.0.0.1 --ready-file ready > daemon.json 2> daemon.log & d=$!
for _ in $(seq 100); do [ -e ready ] && break; sleep 0.1; done
# Waits (at most 30 s) until the service has printed line $1 (counting from push OFF + 1).
J=daemon.json; OFF=0
lines() { for _ in $(seq 300); do [ "$(wc -l < $J)" -ge $(($1 - OFF)) ] && return 0; sleep 0.1; done; echo "no line $1" >&2; }
push() { tag=$1; shift
  "$SEND" "$@" --group $G --interface 127.0.0.1 --rate 100M --receivers 1 --timeout 30s \
      > send-$tag.json 2> send-$tag.log; echo $? > send-$tag.rc; lines $tag; }
push 1 v1 app
push 2 v2 app
ls -a drops/.mcast-versions/app > versions-2.txt
# 3: 8 MiB at 10 Mbit/s takes about 7 s; stopped as soon as the service stages it.
"$SEND" v3 app --group $G --interface 127.0.0.1 --rate 10M --receivers 1 --timeout 60s \
    > send-3.json 2> send-3.log & s=$!
for _ in $(seq 200); do ls -d drops/.mcast-versions/app/.3.mcast-tmp-* > /dev/null 2>&1 && break; sleep 0.05; done
ls -a drops/.mcast-versions/app > during-3.txt
kill -TERM $s; wait $s; echo $? > send-3.rc
lines 3
push 4 v4 app
push 5 rel release.bin
push 6 v4 app
push 7 two
# 8: a carousel (the first pass and three more of the same session) is received once.
"$SEND" rel2 release.bin --group $G --interface 127.0.0.1 --rate 100M --repeat 3 --timeout 30s \
    --json > send-8.json 2> send-8.log; echo $? > send-8.rc
lines 8
kill -TERM $d; wait $d; echo $? > daemon.rc
# A restarted service remembers what it holds: v4 once more is unchanged.
"$RECV" --daemon --output-root drops --json --group $G --interface 127.0.0.1 \
    --ready-file ready2 > restarted.json 2> restarted.log & d=$!
for _ in $(seq 100); do [ -e ready2 ] && break; sleep 0.1; done
J=restarted.json; OFF=8
push 9 v4 app
kill -TERM $d; wait $d; echo $? > restarted.rc
"#;

/// The `--on-complete` command: one marker line per run, failing for `release.bin`.
const HOOK: &str = r#"printf '%s|%s|%s|%s|%s\n' "$MCAST_NAME" "$MCAST_PATH" "$MCAST_VERSION" "$MCAST_OBJECT_HASH" "${MCAST_PREVIOUS_PATH-none}" >> hook.log; test "$MCAST_NAME" != release.bin"#;

/// A small tree `root/app`: files of a few sizes (`big` bytes in one), a symlink, an empty
/// directory, a mode; `tag` changes the contents.
fn make_app(root: &Path, tag: &str, big: usize) {
    let app = root.join("app");
    fs::create_dir_all(app.join("bin")).unwrap();
    fs::create_dir_all(app.join("var/empty")).unwrap();
    fs::write(app.join("README"), format!("release {tag}\n")).unwrap();
    let data: Vec<u8> =
        (0..big as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    fs::write(app.join("bin/tool"), [tag.as_bytes(), &data].concat()).unwrap();
    fs::set_permissions(app.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("bin/tool", app.join("tool")).unwrap();
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> bool {
    fs::read(a).unwrap() == fs::read(b).unwrap()
}

/// Every datagram on `sock` until `child` exits (bounded by the script's own time limit).
fn collect_notifications(sock: &UnixDatagram, child: &mut std::process::Child) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut exited_at = None;
    while Instant::now() < deadline {
        if let Ok(len) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            continue;
        }
        match exited_at {
            Some(at) if Instant::now() > at + Duration::from_millis(500) => break,
            Some(_) => {}
            None if child.try_wait().unwrap().is_some() => exited_at = Some(Instant::now()),
            None => {}
        }
    }
    got
}

#[test]
fn a_service_takes_push_after_push_keeps_versions_and_survives_a_failed_one() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (tag, big) in [("v1", 3000), ("v2", 200_000), ("v4", 70_000)] {
        make_app(&d.join(tag), tag, big);
    }
    make_app(&d.join("v3"), "v3", 8 << 20);
    fs::create_dir_all(d.join("rel")).unwrap();
    fs::write(d.join("rel/release.bin"), vec![7u8; 1 << 20]).unwrap();
    fs::create_dir_all(d.join("rel2")).unwrap();
    fs::write(d.join("rel2/release.bin"), vec![8u8; 1 << 20]).unwrap();
    fs::create_dir_all(d.join("two/a")).unwrap();
    fs::write(d.join("two/b"), "b").unwrap();
    let notify_path = d.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();

    let mut child = common::ns_bash(d, 240, SCRIPT)
        .env("HOOK", HOOK)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .spawn()
        .unwrap();
    let notes = collect_notifications(&notify, &mut child);
    let status = child.wait().unwrap();
    let read = |f: &str| common::read_text(&d.join(f));
    println!("daemon.log:\n{}", read("daemon.log"));
    for t in 1..=9 {
        println!(
            "send-{t}.log (rc {}):\n{}",
            read(&format!("send-{t}.rc")),
            read(&format!("send-{t}.log"))
        );
    }
    assert!(status.success(), "namespace script failed: {status}");
    assert_eq!(read("daemon.rc").trim(), "0", "SIGTERM ends the service cleanly");

    let lines: Vec<Value> =
        read("daemon.json").lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    assert_eq!(lines.len(), 8, "one JSON line per push:\n{}", read("daemon.json"));
    let info = |i: usize| &lines[i]["daemon"];
    let rcs: Vec<String> =
        (1..=9).map(|t| read(&format!("send-{t}.rc")).trim().to_owned()).collect();
    assert_eq!(rcs, ["0", "0", "130", "0", "0", "0", "3", "0", "0"], "senders' exit codes");

    // 1 and 2: placed as versions 1 and 2; after 2 both are there.
    for (i, v) in [(0, 1), (1, 2)] {
        assert_eq!(lines[i]["status"], "complete", "push {}", i + 1);
        assert_eq!(
            (info(i)["result"].as_str(), info(i)["version"].as_u64()),
            (Some("placed"), Some(v))
        );
        assert_eq!(info(i)["name"], "app");
    }
    assert_eq!(info(1)["previous_version"], 1);
    let after2: Vec<_> = read("versions-2.txt").lines().map(str::to_owned).collect();
    assert_eq!(after2, [".", "..", "1", "2", "state.json"]);

    // 3: the sender stopped mid-push; nothing placed, version 2 untouched.
    assert!(
        read("during-3.txt").contains(".3.mcast-tmp-"),
        "stopped mid-push: {}",
        read("during-3.txt")
    );
    assert_eq!(lines[2]["status"], "failed");
    assert_eq!(info(2)["result"], "not_placed");
    assert!(lines[2]["error"].as_str().unwrap().contains("stopped"), "{}", lines[2]["error"]);

    // 4: the next push is taken, as version 3; --keep 1 removed version 1.
    assert_eq!(lines[3]["status"], "complete");
    assert_eq!(
        (info(3)["result"].as_str(), info(3)["version"].as_u64()),
        (Some("placed"), Some(3))
    );
    assert_eq!(info(3)["removed_versions"], serde_json::json!([1]));
    let mut left: Vec<_> = fs::read_dir(d.join("drops/.mcast-versions/app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["2", "3", "state.json"], "exactly one old version, no staging left");
    let link = fs::read_link(d.join("drops/app")).unwrap();
    assert_eq!(link, Path::new(".mcast-versions/app/3/app"));
    assert_eq!(
        common::tree_digest(&d.join("drops/app"), false),
        common::tree_digest(&d.join("v4/app"), false),
        "current is v4"
    );
    assert_eq!(
        common::tree_digest(&d.join("drops/.mcast-versions/app/2/app"), false),
        common::tree_digest(&d.join("v2/app"), false),
        "the old version is intact"
    );

    // 5: a single file, placed although its command failed.
    assert_eq!(
        (info(4)["result"].as_str(), info(4)["name"].as_str()),
        (Some("placed"), Some("release.bin"))
    );
    assert_eq!(info(4)["on_complete"]["status"], "failed");
    assert_eq!(info(4)["on_complete"]["code"], 1);
    let v1 = d.join("drops/.mcast-versions/release.bin/1/release.bin");
    assert!(same_bytes(&v1, &d.join("rel/release.bin")), "version 1 is rel's");

    // 6: the same content again: verified, not placed again, the command not run.
    assert_eq!(lines[5]["status"], "complete");
    assert_eq!(info(5)["result"], "unchanged");
    assert_eq!(info(5)["previous_version"], 3);
    assert_eq!(info(5)["object_hash"], info(3)["object_hash"]);
    assert_ne!(lines[5]["session"], lines[3]["session"], "a new session");
    assert!(!d.join("drops/.mcast-versions/app/4").exists());

    // 7: no single top-level name: refused, reported to the sender, nothing written.
    assert_eq!(lines[6]["status"], "failed");
    assert!(
        lines[6]["error"].as_str().unwrap().contains("one top-level name"),
        "{}",
        lines[6]["error"]
    );
    assert!(read("send-7.log").contains("one top-level name"), "the sender hears why");
    let mut top: Vec<_> = fs::read_dir(d.join("drops"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, [".mcast-versions", "app", "release.bin"]);

    // 8: the carousel's first pass placed release.bin version 2, its repeats were skipped.
    assert_eq!(
        (info(7)["result"].as_str(), info(7)["version"].as_u64()),
        (Some("placed"), Some(2))
    );
    assert!(same_bytes(&d.join("drops/release.bin"), &d.join("rel2/release.bin")), "now rel2's");
    let carousel: Value = serde_json::from_str(&read("send-8.json")).unwrap();
    assert_eq!(carousel["passes"], 4, "the sender ran its whole carousel");

    // 9: the restarted service found v4 already current (state.json) and kept version 3.
    let again: Value = serde_json::from_str(read("restarted.json").trim()).unwrap();
    assert_eq!(
        (again["status"].as_str(), again["daemon"]["result"].as_str()),
        (Some("complete"), Some("unchanged"))
    );
    assert_eq!(read("restarted.rc").trim(), "0");
    assert_eq!(fs::read_link(d.join("drops/app")).unwrap(), Path::new(".mcast-versions/app/3/app"));

    // The command ran after pushes 1, 2, 4, 5 and 8, with the push in its environment.
    let root = d.join("drops");
    let runs: Vec<Vec<String>> =
        read("hook.log").lines().map(|l| l.split('|').map(str::to_owned).collect()).collect();
    assert_eq!(runs.len(), 5, "{runs:?}");
    for (run, i) in runs.iter().zip([0, 1, 3, 4, 7]) {
        let name = info(i)["name"].as_str().unwrap();
        assert_eq!(run[0], name);
        assert_eq!(Path::new(&run[1]), root.join(name));
        assert_eq!(run[2], info(i)["version"].to_string());
        assert_eq!(run[3], info(i)["object_hash"].as_str().unwrap());
        assert_eq!(run[3].len(), 64);
    }
    assert_eq!(runs[0][4], "none", "no previous version");
    assert_eq!(Path::new(&runs[1][4]), root.join(".mcast-versions/app/1/app"));

    // systemd heard both services: each ready first, a status per push (8 and 1), the
    // watchdog, stopping last.
    assert!(notes.first().is_some_and(|n| n.starts_with("READY=1\nSTATUS=waiting")), "{notes:?}");
    assert_eq!(notes.last().map(String::as_str), Some("STOPPING=1"), "{notes:?}");
    let statuses: Vec<_> = notes.iter().filter(|n| n.starts_with("STATUS=")).collect();
    assert_eq!(statuses.len(), 9, "{statuses:?}");
    assert!(statuses[0].contains("placed app version 1"), "{statuses:?}");
    assert!(notes.iter().any(|n| n == "WATCHDOG=1"), "{notes:?}");
    let starts: Vec<_> = notes.iter().filter(|n| n.starts_with("READY=1")).collect();
    let stops = notes.iter().filter(|n| *n == "STOPPING=1").count();
    assert_eq!((starts.len(), stops), (2, 2), "{notes:?}");
    assert!(statuses[8].contains("unchanged: app is already version 3"), "{statuses:?}");
}
