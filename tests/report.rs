//! What the two commands report when a push does not simply succeed, with real processes in a
//! private user + network namespace (`unshare -rn`, loopback multicast; nothing leaves it):
//!
//! * an interrupted push: both sides report what actually moved (bytes sent and held, a rate no
//!   higher than `--rate`), progress lines with percentage and ETA off a terminal, the final
//!   line on stderr, exit 130, and no buffer warning at a rate the buffer holds;
//! * a push nobody listens to ends `unconfirmed` with exit 3 and says so, with empty roster
//!   lists;
//! * a push at a rate the unprivileged receive buffer cannot hold warns once, with advice that
//!   works inside the namespace (no `sysctl`); its receiver reports its node id and host name;
//! * the sender's port taken by another program: one line naming the port, exit 1.

mod common;

use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Command;

const SIZE: usize = 16 << 20;
const RATE_BPS: f64 = 16e6;

fn namespaces_unavailable() -> bool {
    let ok = Command::new("unshare").args(["-rn", "true"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("MCAST_REQUIRE_NETNS").is_err(), "user namespaces required");
        eprintln!("SKIPPED: user namespaces unavailable");
    }
    !ok
}

fn read(dir: &Path, f: &str) -> String {
    fs::read_to_string(dir.join(f)).unwrap_or_default()
}

fn json(dir: &Path, f: &str) -> Value {
    let text = read(dir, f);
    assert_eq!(text.lines().count(), 1, "{f}: stdout holds one JSON line and nothing else");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}: {text}"))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The last non-empty line of a log.
fn last_line(log: &str) -> &str {
    log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

/// A progress line of `label` ("sending", "receiving") with a percentage strictly between 0
/// and 100, the amounts, a rate and an ETA.
fn assert_progress_line(log: &str, label: &str) {
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{label}: ")) && l.contains(" of 16.0 MiB), "))
        .unwrap_or_else(|| panic!("no {label} progress line in:\n{log}"));
    let after = &line[line.find(&format!("{label}: ")).unwrap() + label.len() + 2..];
    let percent: u64 = after.split(' ').next().unwrap().parse().expect(line);
    assert!((1..100).contains(&percent), "{line}");
    assert!(line.contains("Mbit/s, ETA ") && !line.contains("ETA unknown"), "{line}");
}

const INTERRUPT: &str = r#"
G=239.255.44.1:7300
"$RECV" --group $G --interface 127.0.0.1 --output out --once --json --timeout 60s \
    --ready-file ready > recv.json 2> recv.log & rpid=$!
for _ in $(seq 100); do [ -e ready ] && break; sleep 0.1; done
# 16 MiB at 16 Mbit/s takes about 8.4 s; the first progress line comes after 5 s.
"$SEND" src.bin --group $G --interface 127.0.0.1 --rate 16M --timeout 60s --json \
    > send.json 2> send.log & spid=$!
for _ in $(seq 300); do
    grep -q 'receiving: ' recv.log && grep -q 'sending: ' send.log && break; sleep 0.05
done
kill -TERM $rpid; wait $rpid; echo $? > recv.rc
kill -TERM $spid; wait $spid; echo $? > send.rc
"#;

#[test]
fn an_interrupted_push_reports_what_moved() {
    if namespaces_unavailable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("out")).unwrap();
    let data: Vec<u8> =
        (0..SIZE as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    fs::write(d.join("src.bin"), &data).unwrap();
    common::in_namespace(d, 90, INTERRUPT);
    let (send_log, recv_log) = (read(d, "send.log"), read(d, "recv.log"));
    println!("send.log:\n{send_log}\nrecv.log:\n{recv_log}");
    assert_eq!(read(d, "send.rc").trim(), "130");
    assert_eq!(read(d, "recv.rc").trim(), "130");

    let sent = json(d, "send.json");
    assert_eq!(sent["status"], "interrupted");
    assert_eq!(sent["bytes"], SIZE as u64, "bytes stays the file size");
    let sent_bytes = num(&sent, "payload_bytes_sent");
    assert!(sent_bytes > 0.0 && sent_bytes < SIZE as f64, "sent {sent_bytes} of {SIZE}");
    let goodput = num(&sent, "goodput_mbps");
    let seconds = num(&sent, "seconds");
    assert!((goodput - sent_bytes * 8.0 / seconds / 1e6).abs() < 0.01, "{goodput} from sent bytes");
    assert!(goodput > 0.0 && goodput <= RATE_BPS / 1e6 * 1.1, "{goodput} Mbit/s at --rate 16M");
    assert_progress_line(&send_log, "sending");
    let last = last_line(&send_log);
    assert!(last.starts_with("interrupted: sent ") && last.contains(" of 16.0 MiB in "), "{last}");
    assert!(last.contains(" Mbit/s); "), "rates in bit/s: {last}");

    let got = json(d, "recv.json");
    assert_eq!(got["status"], "interrupted");
    assert_eq!(got["path"], Value::Null);
    assert_eq!(got["size"], SIZE as u64);
    let held = num(&got, "bytes");
    assert!(held > 0.0 && held < SIZE as f64, "held {held} of {SIZE}");
    assert!(held <= sent_bytes, "holds no more than was sent: {held} > {sent_bytes}");
    let transfer = num(&got, "transfer_seconds");
    let first = num(&got, "first_datagram_seconds");
    assert!(transfer > 0.0 && transfer + first <= num(&got, "seconds") + 1e-6, "{got}");
    assert_progress_line(&recv_log, "receiving");
    let last = last_line(&recv_log);
    assert!(
        last.starts_with("interrupted: held ") && last.contains(" of 16.0 MiB after "),
        "{last}"
    );

    for log in [&send_log, &recv_log] {
        assert!(!log.contains("SO_RCVBUF"), "16 Mbit/s fits the buffer: no warning:\n{log}");
        assert!(!log.contains("WARN"), "no warning at all:\n{log}");
    }
}

const EDGES: &str = r#"
G=239.255.44.2:7310
# Nobody listens: the push ends unconfirmed.
"$SEND" small.bin --group $G --interface 127.0.0.1 --rate 10M --linger 200ms --json \
    > alone.json 2> alone.log; echo $? > alone.rc
# A rate no unprivileged buffer holds (1 ms of 100 Gbit/s is 12.5 MB): one warning.
"$RECV" --group $G --interface 127.0.0.1 --output out --once --json --timeout 30s \
    --ready-file ready > fast-recv.json 2> fast-recv.log & rpid=$!
for _ in $(seq 100); do [ -e ready ] && break; sleep 0.1; done
"$SEND" small.bin --group $G --interface 127.0.0.1 --rate 100G --receivers 1 --timeout 30s \
    > fast-send.json 2> fast-send.log; echo $? > fast-send.rc
wait $rpid; echo $? > fast-recv.rc
# The sender's port (group port + 1) taken by a program without SO_REUSEPORT.
python3 -c 'import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 7321)); open("bound", "w").close(); time.sleep(20)' & ppid=$!
for _ in $(seq 100); do [ -e bound ] && break; sleep 0.1; done
RUST_BACKTRACE=1 "$SEND" small.bin --group 239.255.44.2:7320 --interface 127.0.0.1 \
    > taken.out 2> taken.log; echo $? > taken.rc
kill $ppid
"#;

#[test]
fn nobody_listening_a_too_fast_rate_and_a_taken_port_say_so() {
    if namespaces_unavailable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("out")).unwrap();
    fs::write(d.join("small.bin"), vec![7u8; 64 << 10]).unwrap();
    common::in_namespace(d, 90, EDGES);
    for f in ["alone.log", "fast-send.log", "fast-recv.log", "taken.log"] {
        println!("{f}:\n{}", read(d, f));
    }

    assert_eq!(read(d, "alone.rc").trim(), "3", "unconfirmed is not a success");
    let alone_json = json(d, "alone.json");
    assert_eq!(alone_json["status"], "unconfirmed");
    // No --expect: no list, nobody heard, nothing completed, failed or missing.
    assert_eq!(alone_json["expected"], Value::Null);
    assert_eq!(alone_json["heard"], 0);
    for list in ["completed", "failed", "missing", "unexpected"] {
        assert_eq!(alone_json[list], serde_json::json!([]), "{list}");
    }
    let alone = read(d, "alone.log");
    let lines: Vec<&str> = alone.lines().collect();
    let at =
        lines.iter().position(|l| l.starts_with("unconfirmed: sent 64.0 KiB in ")).expect(&alone);
    assert!(lines[at].contains("; no receiver reported; "), "{}", lines[at]);
    assert!(lines[at + 1].contains("nobody is known to have this file"), "{}", lines[at + 1]);

    assert_eq!(read(d, "fast-send.rc").trim(), "0");
    assert_eq!(read(d, "fast-recv.rc").trim(), "0");
    // The receiver says who it is: a derived node id, the system's host name, welcomed.
    let fast_json = json(d, "fast-recv.json");
    assert!(num(&fast_json, "node") >= 2.0, "{fast_json}");
    assert!(fast_json["host"].as_str().is_some_and(|h| !h.is_empty()), "{fast_json}");
    assert_eq!(fast_json["welcomed"], true);
    assert!(!read(d, "fast-send.log").contains("SO_RCVBUF"), "the sender reads only feedback");
    let fast = read(d, "fast-recv.log");
    let warnings: Vec<&str> = fast.lines().filter(|l| l.contains("SO_RCVBUF")).collect();
    assert_eq!(warnings.len(), 1, "warned once: {warnings:#?}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("100.00 Gbit/s"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("inside a user namespace, where net.core.rmem_max cannot be raised")
    );
    assert!(warnings[0].contains("send with --rate "), "{}", warnings[0]);
    assert!(!warnings[0].contains("sysctl -w"), "no advice that cannot be followed here");

    assert_eq!(read(d, "taken.rc").trim(), "1");
    assert!(read(d, "taken.out").is_empty());
    let taken = read(d, "taken.log");
    assert_eq!(taken.lines().count(), 1, "one line, no backtrace: {taken}");
    assert!(
        taken.starts_with("mcast-send: error: listening for feedback on UDP port 7321 (the sender's port: group port + 1) on 127.0.0.1: cannot bind UDP port 7321: "),
        "{taken}"
    );
    assert!(taken.to_lowercase().contains("in use"), "{taken}");
}
