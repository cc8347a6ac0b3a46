//! Hostile input: garbage, truncated, forged (valid checksum, wrong fields), tampered and
//! replayed datagrams are dropped and counted; no panic, and no wrong byte is ever handed out.
//!
//! A small quinn-style `Pair` drives one sender and one receiver on a virtual clock, with a
//! hook that can tamper with each sender→receiver datagram.

use mcast::proto::receiver::{Event as REvent, Outcome, Receiver, ReceiverConfig};
use mcast::proto::sender::{Event as SEvent, Sender, SenderConfig};
use mcast::proto::time::{Duration, Instant};
use mcast::proto::wire::{self, Data, Header, ObjectId, Packet};
use mcast::proto::Dest;
use mcast::sim::manifest_for;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;

const T: u16 = 128;
const K: u16 = 32;

fn addr() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1], 7000))
}

fn object(len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    (0..len).map(|_| rng.gen()).collect()
}

struct Pair {
    now: Instant,
    sender: Sender,
    receiver: Receiver,
    object: Vec<u8>,
    sink: Vec<u8>,
    written: Vec<(u64, Vec<u8>)>,
    outcome: Option<Outcome>,
}

impl Pair {
    fn new(object: Vec<u8>, session: u32) -> Self {
        let manifest = manifest_for(&object, T, K);
        let cfg = SenderConfig { session, expected_receivers: Some(1), ..SenderConfig::default() };
        let sender = Sender::new(cfg, &manifest, Instant::ZERO).unwrap();
        let receiver = Receiver::new(ReceiverConfig { node: 77, ..ReceiverConfig::default() });
        Pair {
            now: Instant::ZERO,
            sender,
            receiver,
            sink: vec![0; object.len()],
            object,
            written: Vec::new(),
            outcome: None,
        }
    }

    /// Run until the receiver finishes or `limit` passes; `tamper` may rewrite or drop
    /// (return false) each datagram to the receiver.
    fn drive(&mut self, limit: Duration, mut tamper: impl FnMut(&mut Vec<u8>) -> bool) {
        let mut buf = Vec::new();
        let end = Instant::ZERO + limit;
        while self.outcome.is_none() && self.now < end {
            self.sender.handle_timeout(self.now);
            while let Some(t) = self.sender.poll_transmit(self.now, &mut buf) {
                assert_eq!(t.dest, Dest::Receivers);
                let mut d = buf.clone();
                if tamper(&mut d) {
                    self.receiver.handle_datagram(self.now, addr(), &d);
                }
            }
            while let Some(ev) = self.sender.poll_event() {
                if let SEvent::NeedBlock(req) = ev {
                    let data = self.object[req.offset as usize..][..req.len].to_vec();
                    self.sender.handle_block(req.block, req.prepare(data).unwrap()).unwrap();
                }
            }
            self.receiver.handle_timeout(self.now);
            self.receiver_events();
            while self.receiver.poll_transmit(self.now, &mut buf).is_some() {
                self.sender.handle_datagram(self.now, addr(), &buf);
            }
            let next = [self.sender.poll_timeout(), self.receiver.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(self.now + Duration::from_millis(1));
            self.now = next.max(self.now + Duration::from_micros(10));
        }
    }

    fn receiver_events(&mut self) {
        while let Some(ev) = self.receiver.poll_event() {
            match ev {
                REvent::Decode(job) => self.receiver.handle_decoded(self.now, job.run()),
                REvent::Block { offset, data, .. } => {
                    self.sink[offset as usize..][..data.len()].copy_from_slice(&data);
                    self.written.push((offset, data));
                }
                REvent::Complete { object_hash, .. } => {
                    let h = *blake3::hash(&self.sink).as_bytes();
                    let r = if h == object_hash { Ok(h) } else { Err("mismatch".into()) };
                    self.receiver.handle_stored(self.now, r);
                }
                REvent::Finished(o) => self.outcome = Some(o),
                REvent::Manifest(_) => {}
            }
        }
    }

    /// Every block ever handed out was the object's true bytes.
    fn assert_no_wrong_byte_written(&self) {
        for (off, data) in &self.written {
            assert_eq!(&self.object[*off as usize..][..data.len()], &data[..]);
        }
    }
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
    let mut pair = Pair::new(object(20_000), 5);
    let mut forged = Vec::new();
    pair.drive(Duration::from_secs(30), |d| {
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
    assert_eq!(pair.outcome, Some(Outcome::Complete));
    forged
}

#[test]
fn forged_fields_are_dropped_and_the_transfer_still_completes() {
    let forged = forgeries();
    let mut pair = Pair::new(object(20_000), 5);
    pair.drive(Duration::from_millis(1), |_| true); // lock onto the session
    assert_eq!(pair.receiver.session_id(), Some(5));
    let before = pair.receiver.stats().clone();
    for f in &forged {
        pair.receiver.handle_datagram(pair.now, addr(), f);
    }
    let after = pair.receiver.stats().clone();
    let invalid = after.dropped_invalid - before.dropped_invalid;
    let foreign = after.dropped_foreign - before.dropped_foreign;
    assert_eq!(invalid, 2 * forged.len() as u64 / 3, "bad block and short symbol");
    assert_eq!(foreign, forged.len() as u64 / 3, "not from the session's sender");
    assert_eq!(after.symbols_new, before.symbols_new);
    pair.drive(Duration::from_secs(30), |_| true);
    assert_eq!(pair.outcome, Some(Outcome::Complete));
    pair.assert_no_wrong_byte_written();
}

#[test]
fn tampered_symbol_with_valid_checksum_never_reaches_the_disk() {
    let mut pair = Pair::new(object(30_000), 6);
    let mut tampered = 0;
    pair.drive(Duration::from_secs(30), |d| {
        if let Ok((_, Packet::Data(data))) = wire::parse(d) {
            // Corrupt block 2's source symbol 3 once, keeping the checksum valid.
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
    assert_eq!(pair.outcome, Some(Outcome::Complete));
    assert!(pair.receiver.stats().hash_failures >= 1, "the bad block was caught");
    pair.assert_no_wrong_byte_written();
    assert_eq!(pair.sink, pair.object);
}

#[test]
fn replay_from_another_session_is_ignored() {
    let mut old = Pair::new(object(5_000), 1);
    let mut captured = Vec::new();
    old.drive(Duration::from_secs(10), |d| {
        captured.push(d.clone());
        true
    });
    let mut pair = Pair::new(object(5_000), 2);
    pair.drive(Duration::from_millis(1), |_| true);
    assert_eq!(pair.receiver.session_id(), Some(2));
    let before = pair.receiver.stats().dropped_foreign;
    for d in &captured {
        pair.receiver.handle_datagram(pair.now, addr(), d);
    }
    assert_eq!(pair.receiver.stats().dropped_foreign - before, captured.len() as u64);
    pair.drive(Duration::from_secs(10), |_| true);
    assert_eq!(pair.outcome, Some(Outcome::Complete));
    pair.assert_no_wrong_byte_written();
}
