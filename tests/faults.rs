//! Faults end clearly and lose nothing. Real processes in a private user + mount + network
//! namespace (`unshare -rmn`: loopback multicast, a tiny tmpfs as the output), one test per
//! fault, each bounded by `timeout` and every wait inside bounded too:
//!
//! 1. ENOSPC mid-push (a 4 MiB tmpfs, 16 MiB pushed, as one file and as a tree): the receiver
//!    fails at once, says "no space left on device", leaves no temp file or staging directory,
//!    and the sender's report lists it as failed; without `--no-space-check` it refuses the
//!    push when the manifest arrives;
//! 2. a read-only output (EROFS): refused at start, nothing joined;
//! 3. no sender: `--idle-timeout 1s` exits 3 with the message;
//! 4. the sender interrupted (SIGINT) mid-push: its receivers stop at once, "sender stopped";
//! 5. the sender killed (SIGKILL) mid-push: its receivers stop after `--session-timeout`,
//!    "went silent".
//!
//! Plus the sans-IO parts: `Sender::abort` on a virtual clock, and its Abort reaching a
//! receiver.

mod common;

use mcast::proto::receiver::{Event as RxEvent, Outcome, Receiver, ReceiverConfig, ABORT_CONFIRM};
use mcast::proto::sender::{Event as TxEvent, Sender, SenderConfig, ABORT_REPEATS, ABORT_SPACING};
use mcast::proto::time::{Duration, Instant};
use mcast::proto::wire::{self, AbortReason, Packet};
use mcast::sim::manifest_for;
use serde_json::Value;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// Loopback multicast in the namespace, a clock, and bounded waits.
const PRELUDE: &str = r#"
set -u
ip link set lo up; ip link set lo multicast on; ip route add 239.0.0.0/8 dev lo
now() { date +%s.%N; }
# wait_for FILE-TEST...: up to 20 s for `test "$@"` to hold.
wait_for() { for _ in $(seq 400); do test "$@" && return 0; sleep 0.05; done; return 1; }
RX="--group 239.255.44.1:7200 --interface 127.0.0.1"
"#;

/// Runs `script` (after [`PRELUDE`]) in `dir` under `unshare -rmn`, at most `secs` seconds,
/// with `$RECV`, `$SEND` set; prints the logs it left.
fn run(dir: &Path, script: &str, secs: u32) {
    let status = Command::new("timeout")
        .args(["-k", "5", &secs.to_string(), "unshare", "-rmn", "bash", "-c"])
        .arg(format!("{PRELUDE}{script}"))
        .current_dir(dir)
        .env("RECV", env!("CARGO_BIN_EXE_mcast-recv"))
        .env("SEND", env!("CARGO_BIN_EXE_mcast-send"))
        .status()
        .unwrap();
    for log in ["recv.log", "recv2.log", "send.log"] {
        if dir.join(log).exists() {
            println!("{log}:\n{}", read(dir, log));
        }
    }
    assert!(status.success(), "namespace script failed: {status}");
}

fn read(dir: &Path, f: &str) -> String {
    common::read_text(&dir.join(f))
}

fn json(dir: &Path, f: &str) -> Value {
    let text = read(dir, f);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{f} is not JSON ({e}): {text}"))
}

fn seconds(dir: &Path, f: &str) -> f64 {
    read(dir, f).trim().parse().unwrap_or_else(|e| panic!("{f}: {e}"))
}

/// A 16 MiB source of pseudo-random bytes (no zero blocks: every block takes space).
fn source(dir: &Path) {
    let data: Vec<u8> =
        (0..16u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1).collect();
    fs::write(dir.join("src.bin"), data).unwrap();
    fs::create_dir(dir.join("out")).unwrap();
}

/// Receiver on a 4 MiB tmpfs, 16 MiB pushed at 10 Mbit/s (about 13 s): ENOSPC after a
/// quarter of it.
const ENOSPC: &str = r#"
mount -t tmpfs -o size=4m tmpfs out
"$RECV" $RX --output out --once --json --timeout 60s --no-space-check --ready-file ready \
    > recv.json 2> recv.log & rpid=$!
wait_for -e ready || exit 11
now > send.start
"$SEND" src.bin $RX --rate 10M --receivers 1 --timeout 40s --json > send.json 2> send.log & spid=$!
wait $rpid; echo $? > recv.rc; now > recv.end
wait $spid; echo $? > send.rc
ls -a out > after.txt
"#;

#[test]
fn a_full_disk_fails_the_receive_at_once_and_the_sender_hears_why() {
    if common::skip_without_mount_netns() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    source(d);
    run(d, ENOSPC, 90);
    assert_eq!(read(d, "recv.rc").trim(), "1", "failed");
    let took = seconds(d, "recv.end") - seconds(d, "send.start");
    assert!(took < 9.0, "the receive failed {took:.1} s into a 13 s push: not at once");
    let rx = json(d, "recv.json");
    assert_eq!(rx["status"], "failed");
    let why = rx["error"].as_str().unwrap_or_default();
    assert!(why.starts_with("no space left on device: write out/.src.bin.mcast-tmp-"), "{why}");
    assert!(why.ends_with("of 16.0 MiB written"), "{why}");
    assert!(read(d, "recv.log").contains("no space left on device"));
    let after = read(d, "after.txt");
    assert_eq!(after.lines().collect::<Vec<_>>(), [".", ".."], "temp data left: {after}");
    // The sender heard the failure (and did not wait for its --timeout).
    assert_eq!(read(d, "send.rc").trim(), "3");
    let tx = json(d, "send.json");
    assert_eq!(tx["status"], "incomplete");
    assert_eq!(tx["receivers"].as_array().map(Vec::len), Some(1), "{tx}");
    assert_eq!(tx["receivers"][0]["status"], "failed");
}

/// A tree (two 8 MiB files) into `out/tree` on the 4 MiB tmpfs: the tree is staged beside its
/// destination by its own writer thread, whose ENOSPC fails the receive at once, not at the
/// next block (blocks complete 8 at a time, a window of 8 MiB: at 10 Mbit/s the next block
/// after the failing window's comes 6.7 s later).
const TREE_ENOSPC: &str = r#"
mount -t tmpfs -o size=4m tmpfs out
"$RECV" $RX --output out/tree --once --json --timeout 60s --no-space-check --ready-file ready \
    > recv.json 2> recv.log & rpid=$!
wait_for -e ready || exit 11
now > send.start
"$SEND" srcdir $RX --rate 10M --receivers 1 --timeout 40s --json > send.json 2> send.log & spid=$!
wait $rpid; echo $? > recv.rc; now > recv.end
wait $spid; echo $? > send.rc
ls -a out > after.txt
"#;

#[test]
fn a_full_disk_fails_a_tree_receive_at_once_and_removes_its_staging() {
    if common::skip_without_mount_netns() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    source(d);
    let whole = fs::read(d.join("src.bin")).unwrap();
    fs::create_dir(d.join("srcdir")).unwrap();
    fs::write(d.join("srcdir/a.bin"), &whole[..8 << 20]).unwrap();
    fs::write(d.join("srcdir/b.bin"), &whole[8 << 20..]).unwrap();
    run(d, TREE_ENOSPC, 90);
    assert_eq!(read(d, "recv.rc").trim(), "1", "failed");
    let took = seconds(d, "recv.end") - seconds(d, "send.start");
    assert!(took < 9.0, "the receive failed {took:.1} s into a 13 s push: not at once");
    let why = json(d, "recv.json")["error"].as_str().unwrap_or_default().to_string();
    assert!(why.starts_with("no space left on device: write out/.tree.mcast-tmp-"), "{why}");
    let after = read(d, "after.txt");
    assert_eq!(after.lines().collect::<Vec<_>>(), [".", ".."], "staging left: {after}");
    assert_eq!(json(d, "send.json")["receivers"][0]["status"], "failed");
}

/// The same tmpfs, the space check on: refused when the manifest arrives.
const SHORT_OF_SPACE: &str = r#"
mount -t tmpfs -o size=4m tmpfs out
"$RECV" $RX --output out --once --json --timeout 60s --ready-file ready \
    > recv.json 2> recv.log & rpid=$!
wait_for -e ready || exit 11
"$SEND" src.bin $RX --rate 10M --receivers 1 --timeout 40s --json > send.json 2> send.log & spid=$!
wait $rpid; echo $? > recv.rc
wait $spid; echo $? > send.rc
ls -a out > after.txt
"#;

#[test]
fn too_little_free_space_is_refused_when_the_manifest_arrives() {
    if common::skip_without_mount_netns() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    source(d);
    run(d, SHORT_OF_SPACE, 90);
    assert_eq!(read(d, "recv.rc").trim(), "1");
    let rx = json(d, "recv.json");
    let why = rx["error"].as_str().unwrap_or_default();
    assert!(why.starts_with("no space for 16.0 MiB in out: 4.0 MiB free"), "{why}");
    assert_eq!(rx["bytes"], 0, "nothing was written: {rx}");
    assert_eq!(read(d, "after.txt").lines().collect::<Vec<_>>(), [".", ".."]);
    assert_eq!(json(d, "send.json")["receivers"][0]["status"], "failed");
}

/// A read-only tmpfs as the output: refused before joining.
const READ_ONLY: &str = r#"
mount -t tmpfs -o ro,size=1m tmpfs out
now > start
timeout 20 "$RECV" $RX --output out --once --ready-file ready > /dev/null 2> recv.log
echo $? > recv.rc; now > end
test -e ready && echo joined > joined.txt
exit 0
"#;

#[test]
fn a_read_only_output_is_refused_at_start() {
    if common::skip_without_mount_netns() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::create_dir(d.join("out")).unwrap();
    run(d, READ_ONLY, 40);
    assert_eq!(read(d, "recv.rc").trim(), "2", "refused as a bad argument");
    let log = read(d, "recv.log");
    assert!(log.contains("mcast-recv: error: --output out: cannot write in it"), "{log}");
    assert!(log.contains("Read-only file system"), "{log}");
    assert!(!d.join("joined.txt").exists(), "nothing is joined");
    assert!(seconds(d, "end") - seconds(d, "start") < 5.0);
}

/// No sender at all.
const IDLE: &str = r#"
now > start
"$RECV" $RX --output out --once --json --idle-timeout 1s > recv.json 2> recv.log
echo $? > recv.rc; now > end
"#;

#[test]
fn a_receiver_without_a_sender_gives_up_after_its_idle_timeout() {
    if common::skip_without_netns() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::create_dir(d.join("out")).unwrap();
    run(d, IDLE, 40);
    assert_eq!(read(d, "recv.rc").trim(), "3", "timed out");
    let took = seconds(d, "end") - seconds(d, "start");
    assert!((1.0..8.0).contains(&took), "gave up after {took:.1} s, not about 1 s");
    let log = read(d, "recv.log");
    let waiting =
        "waiting for a sender on 239.255.44.1:7200 via 127.0.0.1 (0 s; giving up after 1 s)";
    assert!(log.contains(waiting), "{log}");
    assert!(log.contains("no sender announced a session in 1.0 s"), "{log}");
    let rx = json(d, "recv.json");
    assert_eq!(rx["status"], "timeout");
    assert_eq!(rx["path"], Value::Null);
}

/// Two receivers, the sender stopped mid-push by `SIGNAL`; the receivers' session timeout is
/// `SESSION_TIMEOUT`.
const STOPPED: &str = r#"
for i in 1 2; do mkdir out$i; done
"$RECV" $RX --output out1 --once --json --timeout 60s --session-timeout $SESSION_TIMEOUT \
    --ready-file ready1 > recv.json 2> recv.log & r1=$!
"$RECV" $RX --output out2 --once --json --timeout 60s --session-timeout $SESSION_TIMEOUT \
    --ready-file ready2 > recv2.json 2> recv2.log & r2=$!
wait_for -e ready1 || exit 11
wait_for -e ready2 || exit 11
"$SEND" src.bin $RX --rate 10M --timeout 40s --json > send.json 2> send.log & spid=$!
# Mid-push: each receiver has written a block (~1 MiB; 1024 sectors of 512 B is half of one).
written() { f=$(ls out$1/.src.bin.mcast-tmp-* 2> /dev/null | head -1); [ -n "$f" ] && [ "$(stat -c %b "$f")" -ge 1024 ]; }
for i in 1 2; do
    for _ in $(seq 400); do written $i && break; sleep 0.05; done
done
ls -a out1 > during.txt
now > kill.at
kill -$SIGNAL $spid; wait $spid; echo $? > send.rc
wait $r1; echo $? > recv.rc; now > recv.end
wait $r2; echo $? > recv2.rc; now > recv2.end
ls -a out1 out2 > after.txt
"#;

fn stop_sender(signal: &str, session_timeout: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    source(d);
    let script = format!("SIGNAL={signal}; SESSION_TIMEOUT={session_timeout}\n{STOPPED}");
    run(d, &script, 120);
    assert!(read(d, "during.txt").contains(".src.bin.mcast-tmp-"), "stopped mid-push");
    for report in ["recv.json", "recv2.json"] {
        let held = json(d, report)["bytes"].as_u64().unwrap_or(0);
        assert!((1..16 << 20).contains(&held), "{report}: {held} B held, not mid-push");
    }
    let after = read(d, "after.txt");
    assert!(!after.contains("mcast-tmp"), "temp data left: {after}");
    assert!(!after.contains("src.bin"), "nothing placed: {after}");
    tmp
}

#[test]
fn an_interrupted_sender_stops_its_receivers_at_once() {
    if common::skip_without_netns() {
        return;
    }
    let tmp = stop_sender("INT", "20s");
    let d = tmp.path();
    assert_eq!(read(d, "send.rc").trim(), "130");
    assert_eq!(json(d, "send.json")["status"], "interrupted");
    assert!(read(d, "send.log").contains("stopping (interrupted): telling the receivers"));
    for (rc, end, report) in
        [("recv.rc", "recv.end", "recv.json"), ("recv2.rc", "recv2.end", "recv2.json")]
    {
        assert_eq!(read(d, rc).trim(), "1", "{rc}");
        let took = seconds(d, end) - seconds(d, "kill.at");
        assert!(took < 5.0, "{end}: {took:.1} s after the signal (session timeout 20 s)");
        let rx = json(d, report);
        assert_eq!(rx["status"], "failed");
        assert_eq!(rx["error"], "the sender stopped: interrupted", "{rx}");
    }
}

#[test]
fn a_killed_sender_is_noticed_by_the_session_timeout() {
    if common::skip_without_netns() {
        return;
    }
    let tmp = stop_sender("KILL", "2s");
    let d = tmp.path();
    assert_eq!(read(d, "send.rc").trim(), "137", "killed");
    for (rc, end, report) in
        [("recv.rc", "recv.end", "recv.json"), ("recv2.rc", "recv2.end", "recv2.json")]
    {
        assert_eq!(read(d, rc).trim(), "3", "{rc}: timed out");
        let took = seconds(d, end) - seconds(d, "kill.at");
        assert!((1.9..10.0).contains(&took), "{end}: {took:.1} s after SIGKILL (timeout 2 s)");
        let rx = json(d, report);
        assert_eq!(rx["status"], "timeout");
        let why = rx["error"].as_str().unwrap_or_default();
        assert!(why.starts_with("the sender went silent: nothing heard from it for 2."), "{why}");
    }
}

// --- The sans-IO parts, on a virtual clock. ---

fn us(n: u64) -> Instant {
    Instant::from_micros(n)
}

/// A sender of a 20-block object, everything it asks for served at once.
fn sender(obj: &[u8]) -> Sender {
    let cfg = SenderConfig { session: 5, node: 1, ..SenderConfig::default() };
    Sender::new(cfg, &manifest_for(obj, 100, 10), Instant::ZERO).unwrap()
}

/// Every datagram `s` sends at `now`, serving its block requests; and whether it finished.
fn drain(s: &mut Sender, obj: &[u8], now: Instant, limit: usize) -> (Vec<Vec<u8>>, bool) {
    let (mut out, mut finished, mut buf) = (Vec::new(), false, Vec::new());
    while out.len() < limit {
        while let Some(ev) = s.poll_event() {
            match ev {
                TxEvent::NeedBlock(req) => {
                    let data = obj[req.offset as usize..][..req.len].to_vec();
                    s.handle_block(req.block, req.prepare(data).unwrap()).unwrap();
                }
                TxEvent::Finished => finished = true,
                _ => {}
            }
        }
        if s.poll_transmit(now, &mut buf).is_none() {
            break;
        }
        out.push(buf.clone());
    }
    (out, finished)
}

fn is_abort(d: &[u8]) -> bool {
    matches!(wire::parse(d).unwrap().1, Packet::Abort(_))
}

#[test]
fn an_aborting_sender_sends_only_its_aborts_spaced_then_finishes() {
    let obj: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    let mut s = sender(&obj);
    let (first, _) = drain(&mut s, &obj, Instant::ZERO, 40);
    assert!(first.iter().all(|d| !is_abort(d)) && first.len() == 40, "mid-push");
    let t = us(1_000);
    s.abort(t, AbortReason::Interrupted, "");
    assert!(s.is_aborting() && !s.is_finished() && s.leave_at().is_none());
    let mut sent_at = Vec::new();
    let mut now = t;
    for _ in 0..10 {
        s.handle_timeout(now);
        let (out, finished) = drain(&mut s, &obj, now, 100);
        assert!(out.iter().all(|d| is_abort(d)), "nothing but Aborts at {now:?}");
        sent_at.extend(out.iter().map(|_| now));
        if finished {
            break;
        }
        now = s.poll_timeout().expect("the next Abort is timed");
    }
    let expected: Vec<Instant> =
        (0..u32::from(ABORT_REPEATS)).map(|i| t + ABORT_SPACING * i).collect();
    assert_eq!(sent_at, expected);
    assert!(s.is_finished());
    assert_eq!(s.leave_at(), expected.last().copied(), "leaves with the last one, no linger");
    assert_eq!(s.poll_timeout(), None);
    // Feedback after that is not answered, and a second abort changes nothing.
    s.abort(now, AbortReason::Timeout, "again");
    s.handle_timeout(now + Duration::from_secs(1));
    assert!(drain(&mut s, &obj, now + Duration::from_secs(1), 10).0.is_empty());
}

#[test]
fn the_abort_of_the_locked_sender_ends_a_receive_once_the_sender_stays_silent() {
    let obj: Vec<u8> = (0..20_000u32).map(|i| (i * 13) as u8).collect();
    let mut s = sender(&obj);
    let from: SocketAddr = "198.18.0.1:7201".parse().unwrap();
    let cfg = ReceiverConfig {
        session_timeout: Some(Duration::from_secs(30)),
        idle_timeout: Some(Duration::from_secs(600)),
        ..ReceiverConfig::default()
    };
    let mut r = Receiver::new(cfg);
    for d in drain(&mut s, &obj, Instant::ZERO, 30).0 {
        r.handle_datagram(Instant::ZERO, from, &d);
    }
    assert_eq!(r.session_id(), Some(5), "locked mid-push");
    let t = us(2_000);
    s.abort(t, AbortReason::Interrupted, "");
    let (aborts, _) = drain(&mut s, &obj, t, 10);
    assert_eq!(aborts.len(), 1);
    // The same datagram from elsewhere is not the sender's.
    r.handle_datagram(t, "198.18.0.9:7201".parse().unwrap(), &aborts[0]);
    let ended = |r: &mut Receiver| {
        std::iter::from_fn(|| r.poll_event()).find_map(|e| match e {
            RxEvent::Finished(o) => Some(o),
            _ => None,
        })
    };
    assert_eq!(ended(&mut r), None);
    r.handle_datagram(t, from, &aborts[0]);
    // Believed once the sender stays silent for ABORT_CONFIRM (a forged one is refuted by the
    // push going on): the receive ends then, not at its session timeout.
    assert_eq!(ended(&mut r), None);
    r.handle_timeout(t + ABORT_CONFIRM);
    assert_eq!(ended(&mut r), Some(Outcome::Failed("the sender stopped: interrupted".into())));
}
