//! Open mode against forgery: in open mode anyone on the link (or off it, by unicast) can send
//! a receiver anything, so no single forged datagram may make it give up or stall a push. A
//! forged announcement before the push does not lock the receiver (it keeps candidates until a
//! manifest verifies), `--sender` pins the source, and forged squelches, acknowledgements,
//! probes, peer NAKs and sequence jumps change nothing but counters. Absurd sizes are refused
//! before anything is sized by them, with bounded memory (measured by a per-thread counting
//! allocator).
//!
//! One sender and one receiver (node 77) run in the in-memory [`Harness`]; forged datagrams are
//! handed straight to the receiver with [`Harness::deliver`], from the sender's own address
//! (spoofed) or from a stranger's.

use mcast::proto::layout::{MAX_BLOCK_SYMBOLS, MIN_SYMBOL_SIZE};
use mcast::proto::manifest::{Manifest, ManifestError, MAX_ENTRIES};
use mcast::proto::receiver::seq::SEQ_SLACK;
use mcast::proto::receiver::{Outcome, Receiver, ReceiverConfig, SenderFilter, MAX_CANDIDATES};
use mcast::proto::sender::SenderConfig;
use mcast::proto::time::{Duration, Instant};
use mcast::proto::wire::{self, *};
use mcast::sim::{Datagram, FecModel, Harness, Link, MemSource, Network, Node, Object};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

/// Counts the bytes this thread allocates (tests run on threads of their own).
struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(bytes)));
}

// SAFETY: every call is passed on to the system allocator unchanged; only a thread-local
// counter (const-initialized, no destructor) is touched besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size.saturating_sub(layout.size()));
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated on this thread while `f` runs, and its result.
fn allocated<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCATED.with(Cell::get);
    let r = f();
    (ALLOCATED.with(Cell::get) - before, r)
}

const T: u16 = 128;
const K: u16 = 32;
const SESSION: u32 = 40;
const NODE: u32 = 77;
const LEN: usize = 100_000;

fn object() -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    (0..LEN).map(|_| rng.gen()).collect()
}

fn stranger() -> SocketAddr {
    SocketAddr::from(([198, 18, 200, 1], 7000))
}

/// The sender of [`object`] in session [`SESSION`] and one receiver with `cfg` (node 77).
fn harness(cfg: ReceiverConfig, net: Network) -> Harness {
    let object = Arc::new(Object::new(object(), T, K).unwrap());
    let sc = SenderConfig { session: SESSION, expected_receivers: Some(1), ..Default::default() };
    let sender = object.sender(sc, Instant::ZERO).unwrap();
    let rng = ChaCha8Rng::seed_from_u64(0);
    let mut h = Harness::new(net, sender, MemSource::new(object), FecModel::Real, rng);
    h.add_receiver(Receiver::new(ReceiverConfig { node: NODE, ..cfg }), Link::default());
    h
}

fn plain() -> Harness {
    harness(ReceiverConfig::default(), Network::default())
}

/// Run until both ends are done, or 60 s of virtual time; the outcome and when it came.
fn finish(h: &mut Harness) -> (Option<Outcome>, Instant) {
    h.run(Instant::ZERO + Duration::from_secs(60));
    let s = h.sink(0);
    if s.outcome() == Some(&Outcome::Complete) {
        assert!(s.is_exact(), "the copy equals the object");
    }
    (s.outcome().cloned(), s.stored().map_or(h.now(), |(at, _)| at))
}

/// Run until the receiver is locked and has some payload blocks, but not all.
fn midway(h: &mut Harness) {
    for _ in 0..1_000_000 {
        if h.receiver(0).progress().is_some_and(|(done, n)| done >= 3 && done < n) {
            return;
        }
        h.step().expect("the push runs");
    }
    panic!("never midway");
}

/// The real announcement and one manifest data datagram, as the sender sends them.
fn real_datagrams() -> (Header, Announce, Vec<u8>) {
    let mut h = plain();
    let (mut ann, mut data) = (None, None);
    let mut tap = |d: &mut Datagram| {
        match wire::parse(&d.data) {
            Ok((hd, Packet::Announce(a))) if ann.is_none() => ann = Some((hd, a)),
            Ok((_, Packet::Data(x))) if data.is_none() && x.object == ObjectId::Payload => {
                data = Some(d.data.clone())
            }
            _ => {}
        }
        true
    };
    h.run_with(Instant::ZERO + Duration::from_secs(60), &mut tap);
    let (hd, a) = ann.expect("announced");
    (hd, a, data.expect("data sent"))
}

fn emit(session: u32, node: u32, p: &Packet) -> Vec<u8> {
    let mut b = Vec::new();
    wire::emit(&Header { flags: 0, session, node }, p, &mut b);
    b
}

#[test]
fn a_forged_announce_before_the_push_does_not_lock_the_receiver() {
    let (real_h, real, _) = real_datagrams();
    // Another session from a stranger, and one spoofing the real session and sender node
    // from the sender's own address, with another manifest.
    let other =
        emit(SESSION + 1, 5, &Packet::Announce(Announce { manifest_hash: [9; 32], ..real }));
    let spoof =
        emit(SESSION, real_h.node, &Packet::Announce(Announce { manifest_hash: [8; 32], ..real }));
    for (forged, from) in [(other, stranger()), (spoof, Node::Sender.addr())] {
        let mut h = plain();
        h.deliver(Node::Receiver(0), from, &forged);
        assert_eq!((h.receiver(0).candidates(), h.receiver(0).session_id()), (1, None));
        assert_eq!(finish(&mut h).0, Some(Outcome::Complete));
        assert_eq!(h.receiver(0).session_id(), Some(SESSION));
    }
}

#[test]
fn candidates_are_bounded_and_the_least_heard_makes_room() {
    let (_, real, _) = real_datagrams();
    let mut h = plain();
    // As many forged candidates as are kept: the real announcement drops the oldest.
    for i in 0..MAX_CANDIDATES as u32 {
        let a = Announce { manifest_hash: [i as u8 + 1; 32], ..real };
        h.deliver(Node::Receiver(0), stranger(), &emit(1000 + i, 5, &Packet::Announce(a)));
    }
    assert_eq!(h.receiver(0).candidates(), MAX_CANDIDATES);
    assert_eq!(h.receiver(0).stats().candidates_evicted, 0, "at the bound, all kept");
    assert_eq!(finish(&mut h).0, Some(Outcome::Complete));
    assert_eq!(
        h.receiver(0).stats().candidates_evicted,
        MAX_CANDIDATES as u64,
        "one, then the rest on lock"
    );
}

#[test]
fn sender_pins_the_source_address_and_port() {
    let pinned = |s: &str| {
        let cfg = ReceiverConfig {
            sender: Some(s.parse::<SenderFilter>().unwrap()),
            ..Default::default()
        };
        harness(cfg, Network::default())
    };
    let (_, real, _) = real_datagrams();
    let forged = emit(SESSION + 1, 5, &Packet::Announce(real));
    let sender = Node::Sender.addr();
    // The sender's IP, and its IP and port: a stranger's announcement is not even a candidate.
    for pin in [sender.ip().to_string(), sender.to_string()] {
        let mut h = pinned(&pin);
        h.deliver(Node::Receiver(0), stranger(), &forged);
        assert_eq!(h.receiver(0).candidates(), 0);
        assert_eq!(h.receiver(0).stats().announces_refused, 1);
        assert_eq!(finish(&mut h).0, Some(Outcome::Complete), "pinned to {pin}");
    }
    // One port off: the real push is not taken.
    let mut h = pinned(&SocketAddr::new(sender.ip(), sender.port() + 1).to_string());
    h.run(Instant::ZERO + Duration::from_secs(2));
    assert_eq!((h.receiver(0).session_id(), h.sink(0).outcome()), (None, None));
    assert!(h.receiver(0).stats().announces_refused > 0);
}

#[test]
fn forged_squelches_and_acks_change_nothing() {
    let straggler = |nodes| Squelch {
        reason: SquelchReason::Straggler,
        object: ObjectId::Payload,
        block: 0,
        nodes,
    };
    let unavailable = |block| Squelch {
        reason: SquelchReason::Unavailable,
        object: ObjectId::Payload,
        block,
        nodes: vec![],
    };
    let last = (LEN as u32).div_ceil(u32::from(T) * u32::from(K)) - 1;
    let forged = [
        Packet::Squelch(straggler(vec![NODE])), // it never NAKed: it cannot be a straggler
        Packet::Squelch(unavailable(last)),     // not passed yet
        Packet::Squelch(unavailable(u32::MAX)), // past the end
        Packet::ReportAck(ReportAck { nodes: vec![NODE] }), // it never reported
    ];
    for p in &forged {
        for from in [Node::Sender.addr(), stranger()] {
            let mut h = plain();
            midway(&mut h);
            let before = h.receiver(0).stats().clone();
            h.deliver(Node::Receiver(0), from, &emit(SESSION, sender_node(), p));
            let after = h.receiver(0).stats().clone();
            let ignored = (after.squelches_ignored + after.acks_ignored + after.dropped_not_sender)
                - (before.squelches_ignored + before.acks_ignored + before.dropped_not_sender);
            assert_eq!(ignored, 1, "{p:?} from {from}: counted");
            assert_eq!(finish(&mut h).0, Some(Outcome::Complete), "{p:?} from {from}");
            assert_eq!(h.receiver(0).stats().squelched, 0);
        }
    }
}

/// The sender's node id.
fn sender_node() -> u32 {
    SenderConfig::default().node
}

/// Drops the first pass of payload block 2's source symbols: the receiver must NAK for it.
fn lose_block_2(d: &mut Datagram) -> bool {
    !matches!(wire::parse(&d.data), Ok((_, Packet::Data(x)))
        if d.from == Node::Sender && x.object == ObjectId::Payload && x.block == 2 && x.esi < u32::from(K))
}

/// Run with block 2 lost, delivering `forged` (if any) from `from` every millisecond; the
/// outcome and when it came.
fn lossy_run(forged: Option<(&[u8], SocketAddr)>) -> (Harness, Option<Outcome>, Instant) {
    let mut h = plain();
    let end = Instant::ZERO + Duration::from_secs(60);
    while !h.is_done() && h.now() < end {
        let next = h.now() + Duration::from_millis(1);
        h.run_until_with(next, &mut lose_block_2);
        if let Some((f, from)) = forged {
            h.deliver(Node::Receiver(0), from, f);
        }
    }
    let (outcome, at) = finish(&mut h);
    (h, outcome, at)
}

#[test]
fn forged_peer_naks_do_not_silence_a_receiver() {
    let (_, base_outcome, base) = lossy_run(None);
    assert_eq!(base_outcome, Some(Outcome::Complete));
    // Another "receiver" claims more than block 2 can need, and a block past the end, again
    // and again, to the group port only (the sender never hears it).
    let needs = vec![
        Need { object: ObjectId::Payload, block: 2, count: u16::MAX },
        Need { object: ObjectId::Payload, block: u32::MAX, count: 1 },
    ];
    let nak = emit(SESSION, 1234, &Packet::Nak(NeedList { seq: 0, loss_ppm: 0, needs }));
    let (h, outcome, at) = lossy_run(Some((&nak, stranger())));
    assert_eq!(outcome, Some(Outcome::Complete));
    let stats = h.receiver(0).stats();
    assert!(stats.naks_sent >= 1 && stats.needs_ignored > 0, "{stats:?}");
    // Held off by one heard cover at most (a few GRTTs plus the capped repair time).
    assert!(at - base <= Duration::from_millis(1100), "{:?} later", at - base);
}

#[test]
fn a_spoofed_probe_with_a_five_second_grtt_delays_the_push_boundedly() {
    let (_, _, base) = lossy_run(None);
    let probe = Probe { send_time_us: 0, grtt_us: 5_000_000, group_size: 1, echo_share: 0 };
    let forged = emit(SESSION, sender_node(), &Packet::Probe(probe));
    // From a stranger: not believed at all.
    let (h, outcome, at) = lossy_run(Some((&forged, stranger())));
    assert_eq!((outcome, at), (Some(Outcome::Complete), base));
    assert!(h.receiver(0).stats().dropped_not_sender > 0);
    // Spoofed from the sender's address once, as soon as the receiver is locked on: believed
    // until the sender's next probe (the pull-in of what was scheduled under it is checked in
    // the receiver's unit tests).
    let mut h = plain();
    while h.receiver(0).session_id().is_none() && h.now() < Instant::ZERO + Duration::from_millis(1)
    {
        h.run_until_with(h.now() + Duration::from_micros(10), &mut lose_block_2);
    }
    assert!(h.receiver(0).session_id().is_some());
    h.deliver(Node::Receiver(0), Node::Sender.addr(), &forged);
    let end = Instant::ZERO + Duration::from_secs(60);
    h.run_until_with(end, &mut lose_block_2);
    let (outcome, at) = finish(&mut h);
    assert_eq!(outcome, Some(Outcome::Complete));
    assert!(at - base <= Duration::from_secs(1), "{:?} later", at - base);
}

/// Run until midway (see [`midway`]), in steps of 100 µs; the last data datagram sent.
fn midway_last_data(h: &mut Harness) -> Vec<u8> {
    let mut last = None;
    for _ in 0..100_000 {
        if h.receiver(0).progress().is_some_and(|(done, n)| done >= 3 && done < n) {
            return last.expect("data was sent");
        }
        let next = h.now() + Duration::from_micros(100);
        h.run_until_with(next, &mut |d: &mut Datagram| {
            if let Ok((_, Packet::Data(_))) = wire::parse(&d.data) {
                last = Some(d.data.clone());
            }
            true
        });
    }
    panic!("never midway");
}

#[test]
fn a_forged_sequence_jump_is_not_loss() {
    // At the bound (nothing sent since the last datagram: the slack) a jump is believed and
    // counts as loss; far past it, it is ignored and counted apart.
    for (jump, counted) in [(SEQ_SLACK, true), (1 << 30, false)] {
        let mut h = plain();
        let last = midway_last_data(&mut h);
        assert_eq!(h.receiver(0).stats().first_pass_missing, 0, "a lossless network");
        let (hd, Packet::Data(d)) = wire::parse(&last).unwrap() else { panic!("data") };
        let mut b = Vec::new();
        wire::emit(&hd, &Packet::Data(Data { seq: d.seq.wrapping_add(jump), ..d }), &mut b);
        h.deliver(Node::Receiver(0), Node::Sender.addr(), &b);
        let s = h.receiver(0).stats();
        let missing = if counted { u64::from(jump - 1) } else { 0 };
        assert_eq!(s.first_pass_missing, missing, "jump {jump}");
        assert_eq!(s.seq_jumps_ignored, u64::from(!counted), "jump {jump}");
        assert_eq!(finish(&mut h).0, Some(Outcome::Complete));
    }
}

/// An announcement of `object_size` bytes in blocks of `k` symbols of `t` bytes.
fn announce(object_size: u64, t: u16, k: u16) -> Vec<u8> {
    let a = Announce {
        object_size,
        symbol_size: t,
        block_symbols: k,
        manifest_len: 100,
        manifest_hash: [3; 32],
        hashes_len: 0,
        hashes_hash: [0; 32],
        rate_bps: 1_000_000,
        grtt_us: 1000,
    };
    emit(SESSION, 9, &Packet::Announce(a))
}

#[test]
fn absurd_announces_are_refused_before_anything_is_sized() {
    // Payloads are bounded by the hash list: 512 Ki blocks.
    let blocks = u64::from(MAX_HASH_LIST_LEN) / BLOCK_HASH_LEN as u64;
    let (t, k) = (MIN_SYMBOL_SIZE, 1);
    let largest = blocks * u64::from(t);
    let refused = [
        (1 << 60, 1400, 748),                // 2^60 bytes
        (largest + 1, t, k),                 // one block more than a hash list covers
        (1000, 0, 10),                       // symbol size 0
        (1000, MIN_SYMBOL_SIZE - 1, 10),     // one byte too small
        (1000, 1400, MAX_BLOCK_SYMBOLS + 1), // K past the limit
        (1000, 1400, 0),                     // no symbols per block
    ];
    let taken = [(largest, t, k), (1000, MIN_SYMBOL_SIZE, 10), (1000, 1400, MAX_BLOCK_SYMBOLS)];
    let mut r = Receiver::new(ReceiverConfig::default());
    let from = stranger();
    for (i, (size, t, k)) in refused.into_iter().enumerate() {
        let (bytes, ()) =
            allocated(|| r.handle_datagram(Instant::ZERO, from, &announce(size, t, k)));
        assert_eq!(r.stats().dropped_malformed, i as u64 + 1, "{size} {t} {k}");
        assert!(bytes < 4096, "{bytes} bytes allocated for a refused announce");
    }
    assert_eq!(r.candidates(), 0);
    for (i, (size, t, k)) in taken.into_iter().enumerate() {
        let (bytes, ()) =
            allocated(|| r.handle_datagram(Instant::ZERO, from, &announce(size, t, k)));
        assert_eq!(r.candidates(), i + 1, "{size} {t} {k}");
        // The largest: 512 Ki blocks of state in 64 KiB of bits.
        assert!(bytes < 256 << 10, "{bytes} bytes for a candidate of {size} bytes");
    }
}

#[test]
fn max_size_refuses_a_larger_push_and_takes_one_at_the_limit() {
    let limited = |max| {
        harness(ReceiverConfig { max_size: Some(max), ..Default::default() }, Network::default())
    };
    let mut h = limited(LEN as u64);
    assert_eq!(finish(&mut h).0, Some(Outcome::Complete), "at the limit");
    let mut h = limited(LEN as u64 - 1);
    h.run(Instant::ZERO + Duration::from_secs(2));
    assert_eq!((h.receiver(0).session_id(), h.receiver(0).candidates()), (None, 0));
    assert!(h.receiver(0).stats().announces_refused > 0);
    assert_eq!(h.sink(0).outcome(), None);
}

/// Manifest bytes declaring `n` entries, followed by `rest` zero bytes.
fn declaring(n: u64, rest: usize) -> Vec<u8> {
    let mut bytes = postcard::to_allocvec(&n).unwrap();
    bytes.resize(bytes.len() + rest, 0);
    bytes
}

fn announce_for(bytes: &[u8]) -> Announce {
    Announce {
        object_size: 3000,
        symbol_size: 100,
        block_symbols: 10,
        manifest_len: bytes.len() as u32,
        manifest_hash: *blake3::hash(bytes).as_bytes(),
        hashes_len: 0,
        hashes_hash: [0; 32],
        rate_bps: 1_000_000,
        grtt_us: 1000,
    }
}

#[test]
fn a_declared_entry_count_is_checked_before_decoding() {
    let parse_error = |bytes: &[u8]| match Manifest::decode(bytes, &announce_for(bytes)) {
        Err(ManifestError::Parse(why)) => why,
        other => panic!("{other:?}"),
    };
    // A billion entries in 64 bytes: refused by the count, with next to nothing allocated.
    let billion = declaring(1_000_000_000, 64);
    let (bytes, why) = allocated(|| parse_error(&billion));
    assert!(why.contains("declared"), "{why}");
    assert!(bytes < 4096, "{bytes} bytes allocated");
    // One entry more than there are bytes is refused by the count; as many passes it (and
    // fails decoding, as zeros are no entries); MAX_ENTRIES + 1 is refused even with the bytes.
    assert!(parse_error(&declaring(65, 64)).contains("declared"));
    assert!(!parse_error(&declaring(64, 64)).contains("declared"));
    let n = MAX_ENTRIES as u64 + 1;
    assert!(parse_error(&declaring(n, MAX_ENTRIES + 1)).contains("declared"));
}

#[test]
fn a_candidate_with_a_billion_entry_manifest_is_dropped_with_bounded_memory() {
    let bytes = declaring(1_000_000_000, 64);
    let a = announce_for(&bytes);
    let mut r = Receiver::new(ReceiverConfig::default());
    let t = Instant::ZERO;
    r.handle_datagram(t, stranger(), &emit(SESSION, 9, &Packet::Announce(a)));
    let mut symbol = bytes.clone();
    symbol.resize(100, 0);
    let d = Data { object: ObjectId::Manifest, block: 0, esi: 0, seq: 0, symbol: &symbol };
    let datagram = emit(SESSION, 9, &Packet::Data(d));
    let (allocated, ()) = allocated(|| r.handle_datagram(t, stranger(), &datagram));
    assert!(allocated < 64 << 10, "{allocated} bytes");
    assert_eq!((r.stats().candidates_refused, r.candidates(), r.session_id()), (1, 0, None));
    assert!(r.poll_event().is_none());
}
