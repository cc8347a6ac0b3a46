//! Keyed mode in the in-memory harness: every node seals what it sends and opens what it
//! receives ([`Harness::set_keyring`]). A keyed push completes; forged plain datagrams of every
//! type (the whole plain transcript of the same push, plus squelches, acks and reports made up
//! for it), tampered sealed datagrams and replays of the push itself change nothing (the run's
//! trace is bit for bit the one without them); a recorded old push replayed later than the age
//! bound is refused, at the bound it is not (the documented limit); a wrong key or an unkeyed
//! sender completes nothing and the receiver's diagnosis says why.

use mcast::proto::auth::{AuthCounters, Key, KeyConfig, Keyring, KEY_LEN, PREFIX_LEN};
use mcast::proto::receiver::{Outcome, Receiver, ReceiverConfig};
use mcast::proto::sender::SenderConfig;
use mcast::proto::time::{Duration, Instant};
use mcast::proto::wire::{
    self, Abort, AbortReason, Header, ObjectId, Packet, PacketType, Report, ReportAck,
    ReportStatus, Squelch, SquelchReason, FLAG_KEYED,
};
use mcast::sim::harness::DEFAULT_UNIX_BASE;
use mcast::sim::{Datagram, FecModel, Harness, Link, LossModel, MemSource, Network, Node, Object};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::sync::Arc;

const T: u16 = 128;
const K: u16 = 32;
const SKEW: u64 = 10;
const RECEIVERS: usize = 2;
const SENDER_NODE: u32 = 0x5e_5e;

fn object(len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    (0..len).map(|_| rng.gen()).collect()
}

fn lossy() -> Network {
    Network {
        latency: Duration::from_millis(2),
        loss: LossModel::Independent(0.05),
        ..Network::default()
    }
}

fn perfect() -> Network {
    Network { latency: Duration::from_millis(2), ..Network::default() }
}

/// A keyring with key `k` (all bytes `k`) and prefix `p`.
fn ring(k: u8, p: u8, encrypt: bool) -> Keyring {
    let cfg = KeyConfig { key: Key::from_bytes([k; KEY_LEN]), encrypt, max_skew_secs: SKEW };
    Keyring::new(Some(&cfg), [p; PREFIX_LEN])
}

/// Who holds which key (`None`: open mode).
#[derive(Clone, Copy)]
struct Keys {
    sender: Option<u8>,
    receivers: Option<u8>,
    encrypt: bool,
}

const KEYED: Keys = Keys { sender: Some(1), receivers: Some(1), encrypt: false };
const OPEN: Keys = Keys { sender: None, receivers: None, encrypt: false };

/// A sender of a 40 000-byte object in `session` and two receivers (nodes 100, 101).
fn harness(session: u32, net: Network, keys: Keys) -> Harness {
    let object = Arc::new(Object::new(object(40_000), T, K).unwrap());
    let cfg = SenderConfig {
        session,
        node: SENDER_NODE,
        expected_receivers: Some(RECEIVERS as u32),
        ..SenderConfig::default()
    };
    let sender = object.sender(cfg, Instant::ZERO).unwrap();
    let source = MemSource::new(object);
    let mut h = Harness::new(net, sender, source, FecModel::Real, ChaCha8Rng::seed_from_u64(7));
    for r in 0..RECEIVERS {
        let cfg = ReceiverConfig { node: 100 + r as u32, seed: r as u64, ..Default::default() };
        h.add_receiver(Receiver::new(cfg), Link::default());
        if let Some(k) = keys.receivers {
            h.set_keyring(Node::Receiver(r), ring(k, 10 + r as u8, keys.encrypt));
        }
    }
    if let Some(k) = keys.sender {
        h.set_keyring(Node::Sender, ring(k, 1, keys.encrypt));
    }
    h
}

fn nodes() -> impl Iterator<Item = Node> {
    std::iter::once(Node::Sender).chain((0..RECEIVERS).map(Node::Receiver))
}

fn counters(h: &Harness, n: Node) -> AuthCounters {
    *h.keyring(n).expect("a keyed node").counters()
}

fn all_complete(h: &Harness) -> bool {
    (0..RECEIVERS).all(|r| h.sink(r).outcome() == Some(&Outcome::Complete) && h.sink(r).is_exact())
}

fn end() -> Instant {
    Instant::ZERO + Duration::from_secs(60)
}

/// Every datagram of a run, as the tap sees it.
fn transcript(h: &mut Harness) -> Vec<Datagram> {
    let mut seen = Vec::new();
    h.run_with(end(), &mut |d: &mut Datagram| {
        seen.push(d.clone());
        true
    });
    seen
}

fn kinds(datagrams: &[Vec<u8>]) -> BTreeSet<u8> {
    datagrams.iter().filter_map(|d| wire::parse(d).ok()).map(|(_, p)| p.kind() as u8).collect()
}

#[test]
fn a_keyed_push_completes_with_every_datagram_sealed() {
    for encrypt in [false, true] {
        let mut h = harness(1, lossy(), Keys { encrypt, ..KEYED });
        let seen = transcript(&mut h);
        assert!(all_complete(&h), "encrypt {encrypt}");
        assert!(h.sender_log().finished_at.is_some());
        assert!(seen.iter().all(|d| wire::parse(&d.data).is_err()), "nothing is plain v1");
        assert!(seen.iter().all(|d| u16::from_be_bytes([d.data[6], d.data[7]]) & FLAG_KEYED != 0));
        // Lossy: NAKs and repairs went both ways, all authenticated.
        assert!(seen.iter().any(|d| d.from != Node::Sender && d.data[5] == PacketType::Nak as u8));
        let obj = object(40_000);
        let visible = seen.iter().any(|d| d.data.windows(64).any(|w| w == &obj[1024..1088]));
        assert_eq!(visible, !encrypt, "file bytes on the wire, encrypt {encrypt}");
        for n in nodes() {
            let c = counters(&h, n);
            assert!(c.accepted > 0, "{n:?}");
            assert_eq!(c.dropped(), 0, "{n:?}: {c:?}");
        }
    }
}

/// Plain (unauthenticated) datagrams of every type for session 1: the whole transcript of the
/// same push run in open mode, and squelches, an ack, reports and an abort an attacker would
/// make up.
fn plain_forgeries() -> Vec<Vec<u8>> {
    let mut open = harness(1, lossy(), OPEN);
    let mut forged: Vec<Vec<u8>> = transcript(&mut open).into_iter().map(|d| d.data).collect();
    assert!(all_complete(&open));
    let header = Header { flags: 0, session: 1, node: SENDER_NODE };
    let mut b = Vec::new();
    let receivers: Vec<u32> = (0..RECEIVERS as u32).map(|r| 100 + r).collect();
    for reason in [SquelchReason::Straggler, SquelchReason::Unavailable] {
        let s = Squelch { reason, object: ObjectId::Payload, block: 0, nodes: receivers.clone() };
        wire::emit(&header, &Packet::Squelch(s), &mut b);
        forged.push(b.clone());
    }
    wire::emit(&header, &Packet::ReportAck(ReportAck { nodes: receivers.clone() }), &mut b);
    forged.push(b.clone());
    for node in receivers {
        let report = Report {
            status: ReportStatus::Failed,
            bytes: 0,
            object_hash: [0; 32],
            naks_sent: 0,
            naks_suppressed: 0,
            elapsed_ms: 1,
            reason: "forged".into(),
        };
        wire::emit(&Header { node, ..header }, &Packet::Report(report), &mut b);
        forged.push(b.clone());
    }
    let abort = Abort { reason: AbortReason::Interrupted, text: "forged".into() };
    wire::emit(&header, &Packet::Abort(abort), &mut b);
    forged.push(b.clone());
    forged
}

/// Run `h` to `mid`, hand every datagram of `inject` to every node, then run to the end.
fn run_with_injection(h: &mut Harness, mid: Instant, inject: &[Vec<u8>]) -> Vec<Datagram> {
    let mut seen = Vec::new();
    h.run_until_with(mid, &mut |d: &mut Datagram| {
        seen.push(d.clone());
        true
    });
    for d in inject {
        for n in nodes() {
            h.deliver(n, Node::Receiver(RECEIVERS + 7).addr(), d);
        }
    }
    seen.extend(transcript(h));
    seen
}

#[test]
fn forged_plain_datagrams_of_every_type_change_nothing() {
    let forged = plain_forgeries();
    // Every type but Signature (11: signed mode, tests/signed.rs).
    let all: BTreeSet<u8> = (1..=13).filter(|&t| t != 11).collect();
    assert_eq!(kinds(&forged), all, "every packet type is forged");
    let mid = Instant::ZERO + Duration::from_millis(30);
    let mut clean = harness(1, lossy(), KEYED);
    run_with_injection(&mut clean, mid, &[]);
    assert!(all_complete(&clean));
    // Before anything was sent, and in the middle of the push.
    for at in [Instant::ZERO, mid] {
        let mut h = harness(1, lossy(), KEYED);
        run_with_injection(&mut h, at, &forged);
        assert!(all_complete(&h));
        assert_eq!(h.trace(), clean.trace(), "forged at {at:?}: the run is unchanged");
        for n in nodes() {
            let (c, c0) = (counters(&h, n), counters(&clean, n));
            assert_eq!(c.unkeyed, forged.len() as u64, "{n:?}");
            assert_eq!(c.since(&c0).dropped(), forged.len() as u64);
            assert_eq!(c.accepted, c0.accepted);
        }
        assert_eq!(h.receiver(0).stats(), clean.receiver(0).stats());
        assert_eq!(h.sender().stats(), clean.sender().stats());
    }
}

#[test]
fn tampered_and_replayed_sealed_datagrams_change_nothing() {
    // A perfect network: every node has received every datagram meant for it, so each replay
    // is one its window has seen.
    let mid = Instant::ZERO + Duration::from_millis(200);
    let mut clean = harness(1, perfect(), KEYED);
    let seen = run_with_injection(&mut clean, mid, &[]);
    assert!(all_complete(&clean));
    let mut h = harness(1, perfect(), KEYED);
    let mut before = Vec::new();
    h.run_until_with(mid, &mut |d: &mut Datagram| {
        before.push(d.clone());
        true
    });
    assert!(before.len() > 40_000 / usize::from(T), "the payload went out before {mid:?}");
    assert_eq!(before[..], seen[..before.len()], "the same run so far");
    let mut expected_replays = [0u64; RECEIVERS + 1];
    for d in &before {
        let mut tampered = d.data.clone();
        let i = d.data.len() / 2;
        tampered[i] ^= 0x20;
        for (idx, n) in nodes().enumerate() {
            let meant = match d.dest {
                mcast::proto::Dest::Receivers => n != Node::Sender,
                mcast::proto::Dest::Sender => n == Node::Sender,
                mcast::proto::Dest::All => true,
            };
            // Arrived before `mid` (those still in flight would only be delivered early).
            if meant && n != d.from && d.at + perfect().latency <= mid {
                h.deliver(n, d.from.addr(), &d.data);
                expected_replays[idx] += 1;
            }
            h.deliver(n, d.from.addr(), &tampered);
        }
    }
    let rest = transcript(&mut h);
    assert!(all_complete(&h));
    assert_eq!(h.trace(), clean.trace(), "the run is unchanged");
    assert_eq!(before.len() + rest.len(), seen.len());
    for (idx, n) in nodes().enumerate() {
        let (c, c0) = (counters(&h, n), counters(&clean, n));
        assert_eq!(c.replayed, expected_replays[idx], "{n:?}");
        assert_eq!(c.bad_tag, before.len() as u64, "{n:?}");
        assert_eq!(c.accepted, c0.accepted, "{n:?}");
    }
}

/// The sealed datagrams of a whole keyed push of session 1 (clock origin at Unix `base`).
fn recorded_push(base: u64) -> Vec<Datagram> {
    let mut old = harness(1, lossy(), KEYED);
    old.set_unix_base(base);
    let rec = transcript(&mut old);
    assert!(all_complete(&old));
    rec
}

#[test]
fn an_old_push_replayed_past_the_age_bound_is_refused_and_at_it_is_not() {
    let base = DEFAULT_UNIX_BASE - 3600;
    let rec = recorded_push(base);
    let last = rec.iter().map(|d| d.at.as_micros() / 1_000_000).max().unwrap();
    let first_announce: Vec<Vec<u8>> = rec.iter().take(1).map(|d| d.data.clone()).collect();
    // A new push (session 2) whose receivers hear the whole old one before anything else.
    let mut clean = harness(2, lossy(), KEYED);
    clean.set_unix_base(base + last + SKEW + 1);
    transcript(&mut clean);
    assert!(all_complete(&clean));
    let mut h = harness(2, lossy(), KEYED);
    h.set_unix_base(base + last + SKEW + 1);
    let old: Vec<Vec<u8>> = rec.iter().map(|d| d.data.clone()).collect();
    run_with_injection(&mut h, Instant::ZERO, &old);
    assert!(all_complete(&h));
    assert_eq!(h.trace(), clean.trace());
    for n in nodes() {
        assert_eq!(counters(&h, n).stale, old.len() as u64, "{n:?}");
    }
    assert_eq!(h.receiver(0).session_id(), Some(2));
    // The boundary pair on the first datagram of the old push (sealed at `base`): one second
    // past the bound it is refused; at the bound it is authentic and the receiver takes the
    // old session as a candidate (what a replay within --max-skew can do; see
    // docs/keyed-mode.md).
    for (age, refused) in [(SKEW + 1, true), (SKEW, false)] {
        let mut h = harness(2, lossy(), KEYED);
        h.set_unix_base(base + age);
        h.deliver(Node::Receiver(0), Node::Sender.addr(), &first_announce[0]);
        assert_eq!(counters(&h, Node::Receiver(0)).stale, u64::from(refused), "age {age}");
        let candidates = h.receiver(0).candidates();
        assert_eq!(candidates, if refused { 0 } else { 1 }, "age {age}");
    }
}

#[test]
fn a_wrong_key_completes_nothing_and_says_why() {
    let mut h = harness(1, lossy(), Keys { sender: Some(1), receivers: Some(2), encrypt: false });
    transcript(&mut h);
    for r in 0..RECEIVERS {
        assert_eq!(h.sink(r).outcome(), None);
        assert!(h.sink(r).writes().is_empty());
        assert_eq!(h.receiver(r).session_id(), None);
        let c = counters(&h, Node::Receiver(r));
        assert!(c.bad_tag > 40_000 / u64::from(T), "{c:?}");
        assert_eq!(c.accepted, 0);
        let why = h.keyring(Node::Receiver(r)).unwrap().diagnosis().unwrap();
        assert!(why.contains("failed authentication (wrong key?)"), "{why}");
    }
    assert!(h.sender_log().reports.is_empty());
}

#[test]
fn an_unkeyed_sender_is_ignored_by_keyed_receivers() {
    let mut h = harness(1, lossy(), Keys { sender: None, receivers: Some(1), encrypt: false });
    transcript(&mut h);
    for r in 0..RECEIVERS {
        assert_eq!(h.sink(r).outcome(), None);
        assert_eq!(h.receiver(r).session_id(), None);
        let c = counters(&h, Node::Receiver(r));
        assert!(c.unkeyed > 0 && c.accepted == 0, "{c:?}");
        let why = h.keyring(Node::Receiver(r)).unwrap().diagnosis().unwrap();
        assert!(why.contains("without authentication"), "{why}");
    }
}

// --- real processes in a private namespace -----------------------------------------------------

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Seconds a process of a push that cannot complete waits (`--timeout`).
const SHORT_TIMEOUT: u64 = 4;

/// Run `cmd` with `args` in a fresh private user + network namespace, bounded in time.
fn in_namespace(cmd: &Path, args: &[&str], envs: &[(&str, &Path)], limit: u64) -> Output {
    let mut c = Command::new("timeout");
    c.args(["-k", "10", &limit.to_string(), "unshare", "-rn"]).arg(cmd).args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.stdin(Stdio::null()).output().expect("run unshare")
}

/// `mcast-send --gen-key PATH` (no socket is opened; still run in a private namespace).
fn gen_key(path: &Path) -> Output {
    in_namespace(
        Path::new(env!("CARGO_BIN_EXE_mcast-send")),
        &["--gen-key", path.to_str().unwrap()],
        &[],
        30,
    )
}

/// An executable wrapper running `mcast-send` with `extra` arguments appended.
fn send_wrapper(work: &Path, name: &str, extra: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = work.join(name);
    let script = format!("#!/bin/sh\nexec '{}' \"$@\" {extra}\n", env!("CARGO_BIN_EXE_mcast-send"));
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// One push (netns-scripts/ns-tree.sh, two receivers, 2 % injected loss) under `tag`.
fn ns_push(work: &Path, src: &Path, tag: &str, send_bin: &Path, recv_args: &str, timeout: u64) {
    let script: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "netns-scripts", "ns-tree.sh"].iter().collect();
    let out = work.join(format!("{tag}-dest"));
    let mut c = Command::new("timeout");
    c.args(["-k", "10", &(timeout * 2 + 60).to_string(), "unshare", "-rn", "bash"])
        .arg(&script)
        .env("MCAST_SEND_BIN", send_bin)
        .env("MCAST_RECV_BIN", env!("CARGO_BIN_EXE_mcast-recv"))
        .env("SRC", src)
        .env("WORK", work)
        .env("TAG", tag)
        .env("OUTPUT", &out)
        .env("MKDIR_OUTPUT", "1")
        .env("RECV_ARGS", recv_args)
        .env("RECEIVERS", RECEIVERS.to_string())
        .env("GROUP", "239.255.42.11:7600")
        .env("RATE", "200M")
        .env("DROP", "0.02")
        .env("TIMEOUT", timeout.to_string());
    let run = c.stdin(Stdio::null()).output().expect("run unshare");
    eprintln!("ns-tree.sh {tag}: {}\n{}", run.status, String::from_utf8_lossy(&run.stderr));
}

fn json(path: &Path) -> Value {
    let text = common::read_text(path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} ({e}):\n{text}", path.display()))
}

fn rc(work: &Path, tag: &str, who: &str) -> String {
    common::read_text(&work.join(format!("{tag}-{who}.rc"))).trim().to_string()
}

fn auth(v: &Value, field: &str) -> u64 {
    v["auth"][field].as_u64().unwrap_or_else(|| panic!("no auth.{field} in {v}"))
}

#[test]
fn keyed_push_wrong_key_and_unkeyed_sender_with_real_processes() {
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let (k1, k2) = (work.join("k1.key"), work.join("k2.key"));
    for k in [&k1, &k2] {
        let o = gen_key(k);
        assert!(o.status.success(), "--gen-key: {}", String::from_utf8_lossy(&o.stderr));
    }
    let again = gen_key(&k1);
    assert_eq!(again.status.code(), Some(1), "never overwrites");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let src = work.join("payload.bin");
    std::fs::write(&src, object(3 << 20)).unwrap();
    let keyed_send = send_wrapper(work, "send-k1", &format!("--key-file '{}'", k1.display()));
    let k1_arg = format!("--key-file {}", k1.display());
    let k2_arg = format!("--key-file {}", k2.display());

    // A keyed push completes, every datagram authenticated.
    ns_push(work, &src, "keyed", &keyed_send, &k1_arg, 60);
    let send = json(&work.join("keyed-send.json"));
    assert_eq!(send["status"], "complete", "{send}");
    assert!(auth(&send, "accepted") > 0 && auth(&send, "bad_tag") == 0, "{send}");
    for i in 1..=RECEIVERS {
        assert_eq!(rc(work, "keyed", &format!("recv-{i}")), "0");
        let r = json(&work.join(format!("keyed-recv-{i}.json")));
        assert!(auth(&r, "accepted") > (3 << 20) / 1400, "{r}");
        assert_eq!(auth(&r, "bad_tag") + auth(&r, "unkeyed") + auth(&r, "stale"), 0, "{r}");
        let got = std::fs::read(work.join(format!("keyed-dest-{i}/payload.bin"))).unwrap();
        assert!(got == object(3 << 20), "receiver {i} has the file");
    }

    // Receivers with another key complete nothing, and say why.
    ns_push(work, &src, "wrongkey", &keyed_send, &k2_arg, SHORT_TIMEOUT);
    // A sender without a key is ignored by keyed receivers.
    let plain_send = Path::new(env!("CARGO_BIN_EXE_mcast-send"));
    ns_push(work, &src, "unkeyed", plain_send, &k1_arg, SHORT_TIMEOUT);
    for (tag, why) in [
        ("wrongkey", "failed authentication (wrong key?)"),
        ("unkeyed", "without authentication (a peer without --key-file?)"),
    ] {
        assert_eq!(rc(work, tag, "send"), "3", "{tag}: nobody confirmed");
        for i in 1..=RECEIVERS {
            assert_eq!(rc(work, tag, &format!("recv-{i}")), "3", "{tag}: timed out");
            let r = json(&work.join(format!("{tag}-recv-{i}.json")));
            assert_eq!(r["status"], "timeout");
            assert_eq!(auth(&r, "accepted"), 0, "{r}");
            let err = r["error"].as_str().unwrap_or_default();
            assert!(err.contains(why), "{tag}: {err}");
            let log = common::read_text(&work.join(format!("{tag}-recv-{i}.log")));
            assert!(log.contains(why), "{tag}: the summary says why:\n{log}");
            let warnings = log.lines().filter(|l| l.contains("WARN") && l.contains(why)).count();
            assert!((1..=3).contains(&warnings), "{tag}: one warning per 5 s, not per datagram");
            let dest = work.join(format!("{tag}-dest-{i}"));
            assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "{tag}: nothing placed");
        }
    }
}
