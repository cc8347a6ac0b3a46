//! Signed mode in the in-memory harness: a signed push completes at trusting receivers (and at
//! one that trusts nothing, which ignores the signatures); a forged data symbol (valid CRC) is
//! never handed out for writing, not even to the staging area, whether the hash list is already
//! there or still to come; unsigned pushes, another key's and a replayed or equal version are
//! refused, with the reason counted, and nothing is written. Then the real binaries in a
//! private namespace (`unshare -rn`): a signed push to `--trust` receivers completes, `--trust`
//! of another key and a held version complete nothing and say why; bad keys are usage errors.

use mcast::proto::receiver::{Outcome, Receiver, ReceiverConfig, TrustConfig};
use mcast::proto::sender::{Sender, SenderConfig};
use mcast::proto::sign::{Signer, TrustedKey};
use mcast::proto::time::{Duration, Instant};
use mcast::proto::wire::{self, ObjectId, Packet};
use mcast::sim::{Datagram, FecModel, Harness, Link, LossModel, MemSource, Network, Node, Object};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;
use std::sync::Arc;

const T: u16 = 128;
const K: u16 = 32;
/// Bytes of one block.
const BLOCK: usize = T as usize * K as usize;
const VERSION: u64 = 1_000;

fn object(blocks: usize, seed: u64) -> Arc<Object> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bytes: Vec<u8> = (0..blocks * BLOCK - 100).map(|_| rng.gen()).collect();
    Arc::new(Object::new(bytes, T, K).unwrap())
}

fn key(seed: u8) -> Signer {
    Signer::from_secret(&[seed; 32])
}

fn signed_sender(obj: &Object, signer: &Signer, version: u64, receivers: u32) -> Sender {
    let cfg =
        SenderConfig { session: 0x51, expected_receivers: Some(receivers), ..Default::default() };
    let hashes = obj.hash_list().as_slice().to_vec();
    Sender::new_signed(cfg, obj.manifest(), hashes, signer, version, Instant::ZERO).unwrap()
}

/// A receiver (node `node`) trusting `signer`, holding version `held` of it.
fn trusting(node: u32, signer: &Signer, held: Option<u64>, max_pending: usize) -> Receiver {
    let key = TrustedKey::from_bytes(&signer.public_key()).unwrap();
    let held = held.map(|v| (key.id(), v)).into_iter().collect();
    let trust = TrustConfig { keys: vec![key], held, allow_downgrade: false };
    let cfg = ReceiverConfig {
        node,
        trust: Some(trust),
        max_pending_blocks: max_pending,
        ..ReceiverConfig::default()
    };
    Receiver::new(cfg)
}

fn harness(obj: &Arc<Object>, sender: Sender, net: Network) -> Harness {
    let rng = ChaCha8Rng::seed_from_u64(3);
    Harness::new(net, sender, MemSource::new(Arc::clone(obj)), FecModel::Real, rng)
}

fn reseal(d: &mut Vec<u8>) {
    d.truncate(d.len() - wire::TRAILER_LEN);
    let crc = crc32fast::hash(d);
    d.extend_from_slice(&crc.to_be_bytes());
}

/// Nothing wrong was ever handed out for writing, and the copy is the object.
fn assert_clean_and_complete(h: &Harness, r: usize) {
    assert_eq!(h.sink(r).outcome(), Some(&Outcome::Complete), "receiver {r}");
    assert_eq!(h.sink(r).wrong_writes(), 0, "receiver {r} wrote wrong bytes");
    assert!(h.sink(r).is_exact(), "receiver {r}");
}

#[test]
fn a_signed_push_completes_at_trusting_receivers_and_at_one_that_trusts_nothing() {
    let obj = object(12, 1);
    let signer = key(1);
    let net = Network {
        latency: Duration::from_millis(1),
        loss: LossModel::Independent(0.02),
        ..Network::default()
    };
    let mut h = harness(&obj, signed_sender(&obj, &signer, VERSION, 3), net);
    for node in [10, 11] {
        h.add_receiver(trusting(node, &signer, Some(VERSION - 1), 32), Link::default());
    }
    let plain = ReceiverConfig { node: 12, ..ReceiverConfig::default() };
    h.add_receiver(Receiver::new(plain), Link::default());
    h.run(Instant::ZERO + Duration::from_secs(60));
    for r in 0..3 {
        assert_clean_and_complete(&h, r);
    }
    for r in 0..2 {
        let accepted = h.receiver(r).accepted().expect("locked through the gate");
        assert_eq!((accepted.version, accepted.key), (VERSION, signer.public_key()));
    }
    assert_eq!(h.sender_log().reports.len(), 3);
}

/// Run a signed push to one trusting receiver whose every datagram passes `tap`, which may
/// rewrite it; returns the harness.
fn forged_run(
    obj: &Arc<Object>,
    max_pending: usize,
    tap: &mut dyn FnMut(&mut Datagram) -> bool,
) -> Harness {
    let signer = key(2);
    let mut h = harness(obj, signed_sender(obj, &signer, VERSION, 1), Network::default());
    h.add_receiver(trusting(20, &signer, None, max_pending), Link::default());
    h.run_with(Instant::ZERO + Duration::from_secs(60), tap);
    h
}

/// Corrupts block `block`'s source symbol 3, once, keeping the CRC valid.
fn corrupt_once(block: u32) -> impl FnMut(&mut Datagram) -> bool {
    let mut done = false;
    move |d: &mut Datagram| {
        if let Ok((_, Packet::Data(data))) = wire::parse(&d.data) {
            if !done && data.object == ObjectId::Payload && data.block == block && data.esi == 3 {
                done = true;
                d.data[wire::HEADER_LEN + wire::DATA_FIELDS_LEN + 10] ^= 0xff;
                reseal(&mut d.data);
                assert!(wire::parse(&d.data).is_ok(), "a well-formed forgery");
            }
        }
        true
    }
}

#[test]
fn a_forged_data_symbol_is_never_written() {
    let obj = object(6, 2);
    let mut tap = corrupt_once(2);
    let h = forged_run(&obj, 32, &mut tap);
    assert_clean_and_complete(&h, 0);
    // Caught before it was handed out (the list was there already), fetched again, written
    // once: the true bytes.
    assert_eq!(h.receiver(0).stats().hash_failures, 1, "the forged block was caught");
    let block2 = 2 * BLOCK as u64;
    assert_eq!(h.sink(0).writes().iter().filter(|(off, _)| *off == block2).count(), 1);
}

#[test]
fn a_forged_symbol_decoded_before_the_hash_list_waits_in_memory_and_is_never_written() {
    // The hash list's first pass is lost: every payload block decodes before the receiver can
    // check it. At most 4 wait in memory; the rest are dropped and fetched again.
    let obj = object(10, 3);
    let mut corrupt = corrupt_once(2);
    let mut saw_flush = false;
    let mut list_at = None;
    let mut tap = |d: &mut Datagram| {
        match wire::parse(&d.data) {
            Ok((_, Packet::Flush(_))) => saw_flush = true,
            Ok((_, Packet::Data(data))) if data.object == ObjectId::Hashes && !saw_flush => {
                return false
            }
            Ok((_, Packet::Data(data))) if data.object == ObjectId::Hashes => {
                list_at.get_or_insert(d.at);
            }
            _ => {}
        }
        corrupt(d)
    };
    let h = forged_run(&obj, 4, &mut tap);
    assert!(saw_flush && list_at.is_some(), "the list came only after the pass");
    assert_clean_and_complete(&h, 0);
    let stats = h.receiver(0).stats();
    assert_eq!(stats.hash_failures, 1, "the forged block was refuted by the list");
    assert!(stats.dropped_memory > 0, "more blocks decoded than may wait: {stats:?}");
    // Every block was written once, all of them true bytes: nothing was written before the
    // list verified, and nothing had to be rewritten.
    assert_eq!(h.sink(0).writes().len(), 10);
}

/// Runs `sender` to a receiver for `secs` of virtual time; the receiver must lock onto
/// nothing and write nothing. Returns the harness.
fn refused(sender: Sender, rx: Receiver, obj: &Arc<Object>) -> Harness {
    let mut h = harness(obj, sender, Network::default());
    h.add_receiver(rx, Link::default());
    h.run(Instant::ZERO + Duration::from_secs(3));
    assert_eq!(h.receiver(0).session_id(), None, "locked onto a refused push");
    assert!(h.sink(0).writes().is_empty() && h.sink(0).manifest().is_none());
    assert!(h.receiver(0).accepted().is_none());
    h
}

#[test]
fn an_unsigned_push_is_refused() {
    let obj = object(3, 4);
    let cfg = SenderConfig { session: 0x52, ..Default::default() };
    let h = refused(obj.sender(cfg, Instant::ZERO).unwrap(), trusting(30, &key(1), None, 32), &obj);
    let r = h.receiver(0).refusals().unwrap();
    assert!(r.unsigned > 5, "{r:?}");
    assert_eq!((r.untrusted_key, r.bad_signature, r.old_version), (0, 0, 0));
    assert!(r.summary().contains("unsigned"), "{}", r.summary());
}

#[test]
fn a_push_signed_by_another_key_is_refused() {
    let obj = object(3, 5);
    let (ours, theirs) = (key(1), key(9));
    let h = refused(signed_sender(&obj, &theirs, VERSION, 1), trusting(31, &ours, None, 32), &obj);
    let r = h.receiver(0).refusals().unwrap();
    assert!(r.untrusted_key > 5, "{r:?}");
    assert_eq!(r.last_untrusted, Some(theirs.key_id()));
    assert_eq!(r.unsigned, 0, "signed, just not by us");
}

#[test]
fn a_version_already_held_is_refused_and_one_newer_completes() {
    let obj = object(3, 6);
    let signer = key(1);
    let h = refused(
        signed_sender(&obj, &signer, VERSION, 1),
        trusting(32, &signer, Some(VERSION), 32),
        &obj,
    );
    let r = h.receiver(0).refusals().unwrap();
    assert!(r.old_version > 5 && r.last_old == Some((VERSION, VERSION)), "{r:?}");
    // The boundary's other side: holding one less, the same push completes.
    let mut h = harness(&obj, signed_sender(&obj, &signer, VERSION, 1), Network::default());
    h.add_receiver(trusting(32, &signer, Some(VERSION - 1), 32), Link::default());
    h.run(Instant::ZERO + Duration::from_secs(30));
    assert_clean_and_complete(&h, 0);
}

#[test]
fn a_replayed_older_push_is_refused() {
    // Record a whole genuine push of version VERSION, then replay it to a receiver that has
    // since accepted VERSION + 1.
    let obj = object(3, 7);
    let signer = key(1);
    let mut h = harness(&obj, signed_sender(&obj, &signer, VERSION, 1), Network::default());
    h.add_receiver(trusting(33, &signer, None, 32), Link::default());
    let mut recorded = Vec::new();
    h.run_with(Instant::ZERO + Duration::from_secs(30), &mut |d: &mut Datagram| {
        if d.from == Node::Sender {
            recorded.push(d.data.clone());
        }
        true
    });
    assert_clean_and_complete(&h, 0);
    let mut rx = trusting(34, &signer, Some(VERSION + 1), 32);
    let from = SocketAddr::from(([198, 18, 0, 1], 7000));
    for d in &recorded {
        rx.handle_datagram(Instant::ZERO, from, d);
    }
    assert_eq!(rx.session_id(), None);
    assert!(rx.poll_event().is_none(), "nothing to write");
    let r = rx.refusals().unwrap();
    assert!(r.old_version > 0 && r.last_old == Some((VERSION, VERSION + 1)), "{r:?}");
}

/// The namespace script: keys A and B; two receivers trust A, one trusts B; a push signed with
/// A at version 5; then the same version again to a receiver that now holds it.
const NS_SCRIPT: &str = r#"
set -u
ip link set lo up; ip link set lo multicast on; ip route add 239.0.0.0/8 dev lo
G=239.255.44.1:7200
"$SEND" --gen-sign-key a.key > a.pub 2> gen.log
"$SEND" --gen-sign-key b.key > b.pub 2>> gen.log
"$SEND" --print-public-key --sign-key a.key > a.pub.again 2>> gen.log
mkdir out1 out2 out3
for r in 1 2; do
  "$RECV" --group $G --interface 127.0.0.1 --output out$r --once --timeout 60s --json \
      --trust a.pub --ready-file ready$r > recv$r.json 2> recv$r.log & eval pid$r=$!
done
"$RECV" --group $G --interface 127.0.0.1 --output out3 --once --timeout 8s \
    --trust "$(cat b.pub)" --ready-file ready3 > recv3.json 2> recv3.log & pid3=$!
for _ in $(seq 100); do [ -e ready1 ] && [ -e ready2 ] && [ -e ready3 ] && break; sleep 0.1; done
"$SEND" src.bin --group $G --interface 127.0.0.1 --rate 200M --receivers 2 --timeout 30s \
    --sign-key a.key --sign-version 5 --json > send.json 2> send.log; echo $? > send.rc
for r in 1 2 3; do eval wait \$pid$r; echo $? > recv$r.rc; done
# The same version again: out1 holds version 5 now.
"$RECV" --group $G --interface 127.0.0.1 --output out1 --once --timeout 4s --json \
    --trust a.pub --ready-file ready4 > replay.json 2> replay.log & pid4=$!
for _ in $(seq 100); do [ -e ready4 ] && break; sleep 0.1; done
"$SEND" src.bin --group $G --interface 127.0.0.1 --rate 200M --timeout 3s \
    --sign-key a.key --sign-version 5 > /dev/null 2> send2.log
wait $pid4; echo $? > replay.rc
"#;

#[test]
fn real_binaries_push_signed_and_refuse_another_key_and_a_held_version() {
    #[path = "common/mod.rs"]
    mod common;
    if common::skip_without_netns() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data: Vec<u8> =
        (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(d.join("src.bin"), &data).unwrap();
    let status = common::ns_bash(d, 120, NS_SCRIPT).status().unwrap();
    let read = |f: &str| common::read_text(&d.join(f));
    for f in ["gen.log", "send.log", "recv1.log", "recv3.log", "replay.log", "send2.log"] {
        println!("--- {f}:\n{}", read(f));
    }
    assert!(status.success(), "namespace script failed: {status}");
    assert_eq!(read("a.pub"), read("a.pub.again"), "the printed public key is the key's");
    assert_eq!(read("send.rc").trim(), "0", "both trusting receivers confirmed");
    for r in 1..=2 {
        assert_eq!(read(&format!("recv{r}.rc")).trim(), "0");
        let got = std::fs::read(d.join(format!("out{r}/src.bin"))).unwrap();
        assert!(got == data, "out{r}/src.bin differs from the source");
        let state = read(&format!(".out{r}.mcast-versions"));
        assert!(state.trim().ends_with(" 5"), "version 5 recorded: {state}");
    }
    // Trusting another key: nothing placed, exit 3 (timeout), and it says why.
    assert_eq!(read("recv3.rc").trim(), "3");
    assert!(std::fs::read_dir(d.join("out3")).unwrap().next().is_none(), "out3 stays empty");
    assert!(read("recv3.log").contains("untrusted key"), "{}", read("recv3.log"));
    // The held version again: refused, with the reason.
    assert_eq!(read("replay.rc").trim(), "3");
    assert!(read("replay.log").contains("not newer than version 5"), "{}", read("replay.log"));
    let send: serde_json::Value = serde_json::from_str(&read("send.json")).unwrap();
    assert!(send["hash_seconds"].as_f64().unwrap() > 0.0, "hashed before sending");
    assert_eq!(send["signed"]["version"], 5);
    let key_id = send["signed"]["key_id"].as_str().unwrap().to_string();
    assert!(read("recv3.log").contains(&key_id), "names the key it refused");
    let recv: serde_json::Value = serde_json::from_str(&read("recv1.json")).unwrap();
    assert_eq!(
        (recv["signed"]["key_id"].as_str(), &recv["signed"]["version"]),
        (Some(&*key_id), &5.into())
    );
    assert_eq!(recv["refused"], "");
    let replay: serde_json::Value = serde_json::from_str(&read("replay.json")).unwrap();
    assert!(replay["refused"].as_str().unwrap().contains("not newer"), "{replay}");
}

#[test]
fn bad_keys_are_usage_errors_before_any_socket_opens() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let recv = std::process::Command::new(env!("CARGO_BIN_EXE_mcast-recv"))
        .args(["--group", "239.255.46.1:7400", "--interface", "lo", "--output", out])
        .args(["--trust", "not-a-key", "--once", "--timeout", "1s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&recv.stderr);
    assert_eq!(recv.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not an ed25519 key"), "{stderr}");
    let send = std::process::Command::new(env!("CARGO_BIN_EXE_mcast-send"))
        .arg("--print-public-key")
        .output()
        .unwrap();
    assert_eq!(send.status.code(), Some(2), "{}", String::from_utf8_lossy(&send.stderr));
}
