//! Who got it: the sender's roster against an `--expect` list.
//!
//! In the in-memory harness (seeded, virtual clock): three receivers and a list of four end
//! with three completed and one missing, after the linger; the same three and a list of exactly
//! them end at the third report, before it; a receiver that fails reports its reason; a
//! receiver the sender never heard (its joins and echoes dropped) does not count however often
//! it reports.
//!
//! With the real binaries, in a private user + network namespace (`unshare -rn`, loopback
//! multicast; nothing leaves it): `--expect` with a host that never runs exits 3 and names it
//! on stderr and in the JSON `missing` list, while `--host-name a` and `b` are both completed;
//! the same push expecting exactly `a` and `b` exits 0.

mod common;

use mcast::proto::receiver::{Outcome, Receiver, ReceiverConfig};
use mcast::proto::sender::{Expected, NodeOutcome, Sender, SenderConfig};
use mcast::proto::time::{Duration, Instant};
use mcast::proto::wire::{self, Hello, HostName, Packet};
use mcast::sim::{
    Datagram, FecModel, Harness, Link, LossModel, MemSource, Network, Node, Object, Stop,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::sync::Arc;

const LINGER: Duration = Duration::from_millis(300);

fn sender(object: &Arc<Object>, expect: &[&str]) -> Sender {
    let cfg = SenderConfig { linger: LINGER, rate_bps: 50_000_000, ..SenderConfig::default() };
    let mut s = object.sender(cfg, Instant::ZERO).unwrap();
    s.expect(expect.iter().map(|e| Expected::new(e)).collect());
    s
}

/// A push of 64 KiB to receivers `hosts` (node ids 10, 11, ...) at `loss`, the sender
/// expecting `expect`, its storage failing `unreadable` blocks.
fn harness(hosts: &[&str], expect: &[&str], unreadable: Vec<u32>, loss: f64, seed: u64) -> Harness {
    let bytes: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + i / 509) as u8).collect();
    let object = Arc::new(Object::new(bytes, 256, 32).unwrap());
    let net = Network {
        latency: Duration::from_micros(200),
        loss: LossModel::Independent(loss),
        ..Network::default()
    };
    let source = MemSource::new(Arc::clone(&object)).with_unreadable(unreadable);
    let rng = ChaCha8Rng::seed_from_u64(seed);
    let mut h = Harness::new(net, sender(&object, expect), source, FecModel::Real, rng);
    for (i, host) in hosts.iter().enumerate() {
        let cfg = ReceiverConfig {
            node: 10 + i as u32,
            seed: seed + i as u64,
            host: Some(HostName::new(host).unwrap()),
            ..ReceiverConfig::default()
        };
        h.add_receiver(Receiver::new(cfg), Link::default());
    }
    h
}

fn until(s: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(s)
}

fn names<'a>(
    entries: impl IntoIterator<Item = &'a mcast::proto::sender::RosterEntry>,
) -> Vec<String> {
    entries.into_iter().map(|e| e.host.as_ref().map_or("?".into(), |h| h.to_string())).collect()
}

#[test]
fn three_receivers_and_four_expected_end_with_one_missing_after_the_linger() {
    let mut h = harness(&["r1", "r2", "r3"], &["r1", "r2", "r3", "r4"], vec![], 0.02, 1);
    assert_eq!(h.run(until(30)), Stop::Done);
    let last_report = h.sender_log().reports.iter().map(|r| r.at).max().unwrap();
    let finished = h.sender_log().finished_at.unwrap();
    assert!(finished > last_report, "waited for r4 until the linger ran out");
    let roster = h.sender().roster();
    assert_eq!(roster.expect_met(), Some(false));
    let t = roster.tally();
    assert_eq!(names(t.completed.iter().copied()), ["r1", "r2", "r3"]);
    assert!(t.failed.is_empty() && t.unexpected.is_empty());
    let missing: Vec<_> =
        t.missing.iter().map(|(x, heard)| (x.entry.as_str(), heard.is_some())).collect();
    assert_eq!(missing, [("r4", false)]);
    for r in 0..3 {
        assert_eq!(h.sink(r).outcome(), Some(&Outcome::Complete), "receiver {r}");
        assert_eq!(h.receiver(r).hello_state().map(|(welcomed, _)| welcomed), Some(true));
    }
    assert_eq!(roster.unsolicited_reports(), 0);
}

#[test]
fn exactly_the_expected_receivers_end_the_push_at_the_last_report() {
    // By name and by node id (r3 is node 12).
    let mut h = harness(&["r1", "r2", "r3"], &["r1", "R2", "12"], vec![], 0.02, 1);
    assert_eq!(h.run(until(30)), Stop::Done);
    let last_report = h.sender_log().reports.iter().map(|r| r.at).max().unwrap();
    assert_eq!(h.sender_log().finished_at, Some(last_report), "no linger once all answered");
    let t = h.sender().roster().tally();
    assert_eq!(names(t.completed.iter().copied()), ["r1", "r2", "r3"]);
    assert!(t.missing.is_empty());
}

#[test]
fn a_failing_receiver_reports_its_reason() {
    // Block 1 cannot be read: the sender squelches it and every receiver gives up.
    let mut h = harness(&["r1", "r2"], &["r1", "r2"], vec![1], 0.02, 2);
    assert_eq!(h.run(until(30)), Stop::Done);
    let t = h.sender().roster().tally();
    assert!(t.completed.is_empty() && t.missing.is_empty());
    let failed: Vec<_> = t.failed.iter().map(|(e, why)| (e.node, why.to_string())).collect();
    let why = "the sender no longer holds block 1 that this receiver lacks".to_string();
    assert_eq!(failed, [(10, why.clone()), (11, why.clone())]);
    for r in 0..2 {
        assert_eq!(h.sink(r).outcome(), Some(&Outcome::Failed(why.clone())));
    }
    let entry = h.sender().roster().get(10).unwrap();
    assert_eq!(entry.outcome, Some(NodeOutcome::Failed(why)));
}

#[test]
fn a_receiver_never_heard_does_not_count() {
    // No loss, so nobody NAKs; r2 (node 11) is never heard: its joins and echoes are lost (a
    // NAK would make it heard too, so the tap drops those as well).
    let mut h = harness(&["r1", "r2"], &["r1", "r2"], vec![], 0.0, 3);
    let mut tap = |d: &mut Datagram| {
        let silenced = d.from == Node::Receiver(1)
            && matches!(
                wire::parse(&d.data),
                Ok((_, Packet::Hello(Hello::Join { .. }) | Packet::Echo(_) | Packet::Nak(_)))
            );
        !silenced
    };
    assert_eq!(h.run_with(until(30), &mut tap), Stop::Done);
    let roster = h.sender().roster();
    assert!(roster.get(11).is_none(), "never heard");
    assert!(roster.unsolicited_reports() > 1, "its report came, again and again, and was ignored");
    assert_eq!(h.sink(1).outcome(), Some(&Outcome::Unacknowledged), "placed, never acknowledged");
    assert_eq!(h.sink(0).outcome(), Some(&Outcome::Complete));
    let t = roster.tally();
    assert_eq!(names(t.completed.iter().copied()), ["r1"]);
    assert_eq!(t.missing.iter().map(|(x, _)| x.entry.as_str()).collect::<Vec<_>>(), ["r2"]);
    assert!(h.sender().receivers().get(&11).is_none());
}

// ---- the real binaries ----

fn read(dir: &Path, f: &str) -> String {
    common::read_text(&dir.join(f))
}

fn json(dir: &Path, f: &str) -> Value {
    let text = read(dir, f);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{f}: {e}: {text}"))
}

/// Two receivers named `a` and `b` and one push to them expecting `hosts.<run>`; each run's
/// files are prefixed with its name.
const PUSH: &str = r#"
run=$1; G=$2
rm -f ready-a ready-b; rm -rf out-a/* out-b/*
for h in a b; do
    "$RECV" --group $G --interface 127.0.0.1 --output out-$h --once --json --timeout 40s \
        --host-name $h --ready-file ready-$h > $run-$h.json 2> $run-$h.log &
    echo $! > pid-$h
done
for _ in $(seq 100); do [ -e ready-a ] && [ -e ready-b ] && break; sleep 0.1; done
"$SEND" src.bin --group $G --interface 127.0.0.1 --rate 50M --expect hosts.$run --linger 500ms \
    --timeout 40s --json > $run-send.json 2> $run-send.log; echo $? > $run-send.rc
for h in a b; do wait $(cat pid-$h); echo $? > $run-$h.rc; done
"#;

#[test]
fn expect_names_the_host_that_never_ran_and_exits_3() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for out in ["out-a", "out-b"] {
        fs::create_dir(d.join(out)).unwrap();
    }
    let data: Vec<u8> =
        (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(d.join("src.bin"), &data).unwrap();
    fs::write(d.join("hosts.ghost"), "# the fleet\na\n\nb   # rack 2\nghost\n").unwrap();
    fs::write(d.join("hosts.exact"), "a\nb\n").unwrap();
    fs::write(d.join("push.sh"), PUSH).unwrap();
    common::in_namespace(
        d,
        120,
        "bash push.sh ghost 239.255.46.1:7400\nbash push.sh exact 239.255.46.2:7410\n",
    );
    for f in ["ghost-send.log", "ghost-a.log", "exact-send.log"] {
        println!("{f}:\n{}", read(d, f));
    }

    // One host never ran: exit 3, named on stderr and in `missing`.
    assert_eq!(read(d, "ghost-send.rc").trim(), "3");
    let log = read(d, "ghost-send.log");
    let line = |prefix: &str| {
        log.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{log}"))
            .trim()
            .to_string()
    };
    assert_eq!(line("never answered"), "never answered (1): ghost");
    assert_eq!(line("failed"), "failed (0): none");
    let completed = line("completed");
    assert!(
        completed.starts_with("completed (2): a (0x") && completed.contains(", b (0x"),
        "{completed}"
    );
    let summary = log.lines().find(|l| l.starts_with("incomplete: sent ")).expect(&log);
    let counts = "; 2 completed, 0 failed, 1 never answered of 3 expected; ";
    assert!(summary.contains(counts), "{summary}");
    let send = json(d, "ghost-send.json");
    assert_eq!(send["status"], "incomplete");
    assert_eq!(send["expected"], serde_json::json!(["a", "b", "ghost"]));
    assert_eq!(send["missing"], serde_json::json!([{"host": "ghost", "node": null}]));
    assert_eq!(send["failed"], serde_json::json!([]));
    assert_eq!(send["unexpected"], serde_json::json!([]));
    let mut hosts: Vec<(String, u64)> = send["completed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["host"].as_str().unwrap().to_string(), e["node"].as_u64().unwrap()))
        .collect();
    hosts.sort();
    let a = json(d, "ghost-a.json");
    let b = json(d, "ghost-b.json");
    assert_eq!(
        hosts,
        [
            ("a".to_string(), a["node"].as_u64().unwrap()),
            ("b".to_string(), b["node"].as_u64().unwrap())
        ],
        "the sender lists each receiver under the name and id it reported"
    );
    assert_ne!(a["node"], b["node"], "two receivers on one host: distinct ids (by --output)");
    for (r, name) in [(&a, "a"), (&b, "b")] {
        assert_eq!(r["status"], "complete", "{r}");
        assert_eq!(r["host"], name);
        assert_eq!(r["welcomed"], true);
    }
    assert_eq!((read(d, "ghost-a.rc").trim(), read(d, "ghost-b.rc").trim()), ("0", "0"));

    // Exactly the hosts that run: exit 0, the ids the same as in the first run (stable).
    assert_eq!(read(d, "exact-send.rc").trim(), "0");
    let exact = json(d, "exact-send.json");
    assert_eq!(exact["status"], "complete");
    assert_eq!(exact["missing"], serde_json::json!([]));
    assert_eq!(exact["completed"].as_array().unwrap().len(), 2);
    assert_eq!(json(d, "exact-a.json")["node"], a["node"], "the id is stable across runs");
    assert_eq!(fs::read(d.join("out-a/src.bin")).unwrap(), data);
    assert_eq!(fs::read(d.join("out-b/src.bin")).unwrap(), data);
}
