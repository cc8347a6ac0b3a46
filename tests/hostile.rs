//! Hostile input: garbage, truncated, forged (valid checksum, wrong fields), tampered and
//! replayed datagrams are dropped and counted; no panic, and no wrong byte is ever placed (a
//! forged symbol that decodes to wrong bytes reaches the staging area, is refuted by the hash
//! list and written again before anything is placed).
//!
//! One sender and one receiver run in the in-memory [`Harness`] on a perfect network; a tap
//! records, rewrites or drops each sender datagram, and forged datagrams are handed straight
//! to the receiver. The receiver's [`mcast::sim::MemSink`] compares every block it writes with
//! the object.

use mcast::proto::receiver::{Outcome, Receiver, ReceiverConfig};
use mcast::proto::sender::SenderConfig;
use mcast::proto::time::{Duration, Instant};
use mcast::proto::wire::{self, Data, Header, ObjectId, Packet};
use mcast::sim::{Datagram, FecModel, Harness, Link, MemSource, Network, Node, Object, Stop};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;
use std::sync::Arc;

const T: u16 = 128;
const K: u16 = 32;

fn addr() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1], 7000))
}

fn object(len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    (0..len).map(|_| rng.gen()).collect()
}

/// A sender of `object` in session `session` and one receiver (node 77).
fn pair(object: Vec<u8>, session: u32) -> Harness {
    let object = Arc::new(Object::new(object, T, K).unwrap());
    let cfg = SenderConfig { session, expected_receivers: Some(1), ..SenderConfig::default() };
    let sender = object.sender(cfg, Instant::ZERO).unwrap();
    let source = MemSource::new(object);
    let rng = ChaCha8Rng::seed_from_u64(0);
    let mut h = Harness::new(Network::default(), sender, source, FecModel::Real, rng);
    h.add_receiver(
        Receiver::new(ReceiverConfig { node: 77, ..ReceiverConfig::default() }),
        Link::default(),
    );
    h
}

/// Run until both ends are done or `limit` passes; `tamper` may rewrite or drop (return false)
/// each datagram from the sender.
fn drive(h: &mut Harness, limit: Duration, mut tamper: impl FnMut(&mut Vec<u8>) -> bool) {
    let until = h.now() + limit;
    let stop =
        h.run_with(until, &mut |d: &mut Datagram| d.from != Node::Sender || tamper(&mut d.data));
    assert_ne!(stop, Stop::EventLimit);
}

fn outcome(h: &Harness) -> Option<&Outcome> {
    h.sink(0).outcome()
}

/// Every block ever handed out was the object's true bytes, and there were some.
fn assert_no_wrong_byte_written(h: &Harness) {
    assert!(!h.sink(0).writes().is_empty());
    assert_eq!(h.sink(0).wrong_writes(), 0);
}

fn reseal(mut d: Vec<u8>) -> Vec<u8> {
    d.truncate(d.len() - wire::TRAILER_LEN);
    let crc = crc32fast::hash(&d);
    d.extend_from_slice(&crc.to_be_bytes());
    d
}

#[test]
fn garbage_and_truncation_are_counted_not_fatal() {
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for i in 0..20_000 {
        let len = rng.gen_range(0..1600);
        let mut d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if i % 2 == 0 && d.len() >= 4 {
            d[..4].copy_from_slice(&wire::MAGIC);
        }
        rx.handle_datagram(Instant::ZERO, addr(), &d);
    }
    assert_eq!(rx.stats().dropped_malformed, 20_000);
    assert!(rx.poll_event().is_none());
    assert!(rx.session_id().is_none());
}

/// Every data datagram of a clean run, re-forged three ways with valid checksums: block past
/// the end, symbol one byte short, and a node that is not the session's sender.
fn forgeries() -> Vec<Vec<u8>> {
    let mut pair = pair(object(20_000), 5);
    let mut forged = Vec::new();
    drive(&mut pair, Duration::from_secs(30), |d| {
        if let Ok((h, Packet::Data(data))) = wire::parse(d) {
            let mut b = Vec::new();
            wire::emit(&h, &Packet::Data(Data { block: 10_000, ..data }), &mut b);
            forged.push(b.clone());
            wire::emit(&h, &Packet::Data(Data { symbol: &data.symbol[1..], ..data }), &mut b);
            forged.push(b.clone());
            wire::emit(&Header { node: h.node ^ 1, ..h }, &Packet::Data(data), &mut b);
            forged.push(b);
        }
        true
    });
    assert_eq!(outcome(&pair), Some(&Outcome::Complete));
    assert!(forged.len() / 3 > 20_000 / usize::from(T), "every data datagram was forged");
    forged
}

#[test]
fn forged_fields_are_dropped_and_the_transfer_still_completes() {
    let forged = forgeries();
    let mut pair = pair(object(20_000), 5);
    pair.run_until(Instant::ZERO + Duration::from_millis(1)); // lock onto the session
    assert_eq!(pair.receiver(0).session_id(), Some(5));
    let before = pair.receiver(0).stats().clone();
    for f in &forged {
        pair.deliver(Node::Receiver(0), addr(), f);
    }
    let after = pair.receiver(0).stats().clone();
    let invalid = after.dropped_invalid - before.dropped_invalid;
    let foreign = after.dropped_foreign - before.dropped_foreign;
    assert_eq!(invalid, 2 * forged.len() as u64 / 3, "bad block and short symbol");
    assert_eq!(foreign, forged.len() as u64 / 3, "not from the session's sender");
    assert_eq!(after.symbols_new, before.symbols_new);
    drive(&mut pair, Duration::from_secs(30), |_| true);
    assert_eq!(outcome(&pair), Some(&Outcome::Complete));
    assert_no_wrong_byte_written(&pair);
}

#[test]
fn a_forged_symbol_that_decodes_wrong_is_caught_by_the_hash_list_and_fetched_again() {
    let mut pair = pair(object(30_000), 6);
    let mut tampered = 0;
    drive(&mut pair, Duration::from_secs(30), |d| {
        if let Ok((_, Packet::Data(data))) = wire::parse(d) {
            // Corrupt block 2's source symbol 3 once, keeping the checksum valid: the datagram
            // is well formed, and block 2 decodes (copies) to wrong bytes.
            if data.object == ObjectId::Payload && data.block == 2 && data.esi == 3 && tampered == 0
            {
                tampered += 1;
                d[wire::HEADER_LEN + wire::DATA_FIELDS_LEN + 10] ^= 0xff;
                *d = reseal(std::mem::take(d));
            }
        }
        true
    });
    assert_eq!(tampered, 1);
    assert_eq!(outcome(&pair), Some(&Outcome::Complete));
    let sink = pair.sink(0);
    // The wrong block went into staging before the hash list came (nothing could tell it
    // then), was refuted by the list, NAKed, served again and written again.
    assert_eq!(pair.receiver(0).stats().hash_failures, 1, "the bad block was caught");
    assert_eq!(sink.wrong_writes(), 1);
    let block2 = 2 * u64::from(T) * u64::from(K);
    assert_eq!(sink.writes().iter().filter(|(off, _)| *off == block2).count(), 2);
    assert!(pair.receiver(0).stats().naks_sent >= 1);
    // What was placed is right: exact when the receiver called it complete, and now.
    assert_eq!(sink.stored().map(|(_, exact)| exact), Some(true));
    assert_eq!(sink.wrong_now(), 0);
    assert!(sink.is_exact(), "the copy equals the object");
}

#[test]
fn a_forged_hash_list_is_refused_and_fetched_again() {
    let mut pair = pair(object(30_000), 7);
    let mut tampered = 0;
    drive(&mut pair, Duration::from_secs(30), |d| {
        if let Ok((_, Packet::Data(data))) = wire::parse(d) {
            // Corrupt the hash list's first source symbol once (checksum kept valid): it no
            // longer matches the hash in the announcement.
            if data.object == ObjectId::Hashes && data.esi == 0 && tampered == 0 {
                tampered += 1;
                d[wire::HEADER_LEN + wire::DATA_FIELDS_LEN] ^= 0x01;
                *d = reseal(std::mem::take(d));
            }
        }
        true
    });
    assert_eq!(tampered, 1);
    assert_eq!(outcome(&pair), Some(&Outcome::Complete));
    let stats = pair.receiver(0).stats();
    // Refused once; the list's own repair symbols (it is sent with as many as it has source
    // symbols) or a NAK bring a good copy, and no block was refuted by the forged one.
    assert_eq!(stats.hash_failures, 1, "the list was refused once");
    assert_no_wrong_byte_written(&pair);
    assert!(pair.sink(0).is_exact());
}

#[test]
fn replay_from_another_session_is_ignored() {
    let mut old = pair(object(5_000), 1);
    let mut captured = Vec::new();
    drive(&mut old, Duration::from_secs(10), |d| {
        captured.push(d.clone());
        true
    });
    assert_eq!(outcome(&old), Some(&Outcome::Complete));
    assert!(captured.len() > 5_000 / usize::from(T), "the whole old session was captured");
    let mut pair = pair(object(5_000), 2);
    pair.run_until(Instant::ZERO + Duration::from_millis(1));
    assert_eq!(pair.receiver(0).session_id(), Some(2));
    let before = pair.receiver(0).stats().dropped_foreign;
    for d in &captured {
        pair.deliver(Node::Receiver(0), addr(), d);
    }
    assert_eq!(pair.receiver(0).stats().dropped_foreign - before, captured.len() as u64);
    drive(&mut pair, Duration::from_secs(10), |_| true);
    assert_eq!(outcome(&pair), Some(&Outcome::Complete));
    assert_no_wrong_byte_written(&pair);
}
