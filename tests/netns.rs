//! Real processes, real sockets: one `mcast-send` and three `mcast-recv` pushing 64 MiB with 5 %
//! injected loss, inside a private user + network namespace (`unshare -rn`), so nothing ever
//! reaches a real network: once over IPv4 loopback multicast, once over IPv6 multicast on a veth
//! pair created inside the namespace.
//!
//! The namespace part is `netns-scripts/ns-run.sh` (`FAMILY=4` or `6`); this test prepares the
//! input, runs the script and checks the results. Where user namespaces are unavailable the test prints "SKIPPED" and
//! passes, unless `MCAST_REQUIRE_NETNS=1` (set by `.ci/run` when `unshare -rn true` works).

mod common;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const SIZE: usize = 64 << 20;
const RECEIVERS: usize = 3;
const FILE_NAME: &str = "payload-64MiB.bin";
/// Seconds each process may take (`--timeout`); the script adds a hard limit on top.
const TIMEOUT_SECS: u64 = 120;

/// Writes `len` deterministic pseudo-random bytes (xorshift64*).
fn write_pseudo_random(path: &Path, len: usize, seed: u64) {
    let mut state = seed | 1;
    let mut out = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        for word in chunk[..n].chunks_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
        out.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    out.flush().unwrap();
}

/// Every JSON value in a file (one per line, or pretty-printed, or concatenated).
fn json_values(path: &Path) -> Vec<Value> {
    let text = common::read_text(path);
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("report has no unsigned {key:?}: {v}"))
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("report has no string {key:?}: {v}"))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

fn assert_same_contents(expected: &[u8], path: &Path) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(got.len(), expected.len(), "{} has the wrong length", path.display());
    if let Some(at) = got.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("{} differs from the source at byte {at}", path.display());
    }
}

#[test]
fn three_receivers_with_loss_in_private_namespace() {
    push_in_private_namespace("4", "239.255.42.1:7000", "127.0.0.1:");
}

#[test]
fn three_receivers_with_loss_over_ipv6() {
    // ns-run.sh's veth pair: the receivers sit on mc6r, 2001:2::2 (a global address, so source
    // address selection prefers it to the link-local one for a site-scope group).
    push_in_private_namespace("6", "[ff15::4d43]:7010", "[2001:2::2]:");
}

/// One push through ns-run.sh with `family`, to `group`; every receiver's entry in the
/// sender's report must come from an address starting with `receiver_addr_prefix` (and be of
/// the group's family).
fn push_in_private_namespace(family: &str, group: &str, receiver_addr_prefix: &str) {
    if common::skip_without_netns() {
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join(FILE_NAME);
    write_pseudo_random(&src, SIZE, 0x6d63_6173_745f_6e73);
    let work = tmp.path().join("run");
    fs::create_dir(&work).unwrap();

    let script: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "netns-scripts", "ns-run.sh"].iter().collect();
    // `timeout` is a last-resort bound on the whole namespace; the script bounds each process.
    let run = Command::new("timeout")
        .args(["-k", "10", &(TIMEOUT_SECS * 2 + 60).to_string()])
        .args(["unshare", "-rn", "bash"])
        .arg(&script)
        .env("MCAST_SEND_BIN", env!("CARGO_BIN_EXE_mcast-send"))
        .env("MCAST_RECV_BIN", env!("CARGO_BIN_EXE_mcast-recv"))
        .env("SRC", &src)
        .env("WORK", &work)
        .env("RECEIVERS", RECEIVERS.to_string())
        .env("FAMILY", family)
        .env("GROUP", group)
        .env("RATE", "400M")
        .env("DROP", "0.05")
        .env("SEED_BASE", "1")
        .env("TIMEOUT", TIMEOUT_SECS.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    eprintln!(
        "ns-run.sh: {}\n{}{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    // Logs (tails) always go to the captured output: shown with --nocapture or on failure.
    for name in
        std::iter::once("send".to_string()).chain((1..=RECEIVERS).map(|i| format!("recv-{i}")))
    {
        let log = common::read_text(&work.join(format!("{name}.log")));
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "==== {name}.log (last 40 of {} lines)\n{}",
            lines.len(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
        if !run.status.success() {
            eprintln!(
                "==== {name}.json\n{}",
                common::read_text(&work.join(format!("{name}.json")))
            );
        }
    }
    assert!(run.status.success(), "the namespace run failed: {}", run.status);

    // Exit codes.
    let rc = |name: &str| common::read_text(&work.join(format!("{name}.rc"))).trim().to_string();
    assert_eq!(rc("send"), "0", "mcast-send exit code");
    for i in 1..=RECEIVERS {
        assert_eq!(rc(&format!("recv-{i}")), "0", "mcast-recv {i} exit code");
    }

    // Sender report.
    let send_reports = json_values(&work.join("send.json"));
    assert_eq!(send_reports.len(), 1, "mcast-send --json must print exactly one object");
    let send = &send_reports[0];
    eprintln!("==== sender report\n{}", pretty(send));
    assert_eq!(u64_field(send, "bytes"), SIZE as u64, "sender bytes");
    let receivers = send
        .get("receivers")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("sender report has no receivers array: {send}"));
    assert_eq!(receivers.len(), RECEIVERS, "sender saw {receivers:?}");
    let v6 = group.starts_with('[');
    for r in receivers {
        assert_eq!(str_field(r, "status"), "complete", "receiver entry {r}");
        let addr: std::net::SocketAddr =
            str_field(r, "addr").parse().unwrap_or_else(|e| panic!("receiver address: {e}: {r}"));
        assert_eq!(addr.is_ipv6(), v6, "receiver {r} reported over the group's family");
        assert!(str_field(r, "addr").starts_with(receiver_addr_prefix), "receiver entry {r}");
    }

    // Receiver reports and the files themselves.
    let expected = fs::read(&src).unwrap();
    let mut naks_sent = 0;
    for i in 1..=RECEIVERS {
        let reports = json_values(&work.join(format!("recv-{i}.json")));
        assert!(!reports.is_empty(), "receiver {i} printed no report");
        for r in &reports {
            eprintln!("==== receiver {i} report\n{}", pretty(r));
            // "unacknowledged" means: verified and placed, but the sender's acknowledgement of
            // the completion report never arrived. The contract asks for "complete".
            assert_eq!(str_field(r, "status"), "complete", "receiver {i} report");
            naks_sent += u64_field(r, "naks_sent");
        }
        assert!(
            reports.iter().any(|r| u64_field(r, "bytes") == SIZE as u64),
            "receiver {i}: no report for a {SIZE}-byte object"
        );
        assert_same_contents(&expected, &work.join(format!("recv-{i}")).join(FILE_NAME));
    }

    let repair_packets = u64_field(send, "repair_packets");
    eprintln!(
        "summary: {} bytes to {RECEIVERS} receivers in {}s (sender {}s), repair_packets={repair_packets}, naks_sent={naks_sent}",
        SIZE,
        common::read_text(&work.join("elapsed")).trim(),
        send.get("seconds").map(Value::to_string).unwrap_or_default(),
    );
    assert!(
        naks_sent > 0 || repair_packets > 0,
        "5 % loss was injected, yet no receiver sent a NAK and the sender sent no repair"
    );
}
