use super::*;
use crate::proto::manifest::HashList;
use crate::proto::sender::{Sender, SenderConfig};
use crate::sim::{serve_sender_events, MemSource, Object, SenderLog};
use std::sync::Arc;

const SESSION: u32 = 0x77;
const SENDER_NODE: u32 = 1;
const ME: u32 = 9;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, i], 7000))
}

fn dgram(node: u32, p: &Packet<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    wire::emit(&Header { flags: 0, session: SESSION, node }, p, &mut buf);
    buf
}

fn nak(block: u32, count: u16) -> Packet<'static> {
    let needs = vec![Need { object: ObjectId::Payload, block, count }];
    Packet::Nak(NeedList { seq: 0, loss_ppm: 0, needs })
}

fn advert(block: u32, count: u16) -> Packet<'static> {
    let needs = vec![Need { object: ObjectId::Payload, block, count }];
    Packet::Repairer(RepairerPacket::Advert(NeedList { seq: 0, loss_ppm: 0, needs }))
}

// ---- the repairer ----

fn layout() -> Layout {
    Layout::new(4 * 640, 64, 10).unwrap() // 4 blocks of K = 10
}

fn repairer(window: usize) -> Repairer {
    let mut r = unverified_repairer(window, false);
    r.handle_hashes(Instant::ZERO, &hash_list());
    r
}

/// Block `b` of the fixture: `b` repeated.
fn block(b: u32) -> Vec<u8> {
    vec![b as u8; 640]
}

fn hash_list() -> HashList {
    let hashes = (0..4).map(|b| *blake3::hash(&block(b)).as_bytes()).collect();
    HashList::new(layout(), hashes).unwrap()
}

/// The fixture's repairer holding the 4 blocks, before the hash list arrived.
/// The session the tests' repairers serve: the sender at `addr(1)`, GRTT 4 ms.
fn view() -> RepairView {
    RepairView {
        session: SESSION,
        sender_node: SENDER_NODE,
        sender: addr(1),
        layout: layout(),
        grtt: Duration::from_millis(4),
    }
}

fn unverified_repairer(window: usize, serve_unverified: bool) -> Repairer {
    let cfg = RepairerConfig {
        serve_unverified,
        node: ME,
        window_blocks: window,
        rate_bps: 1_000_000,
        burst_bytes: 400,
        ..Default::default()
    };
    let mut r = Repairer::new(cfg, Instant::ZERO);
    r.set_view(Instant::ZERO, view());
    for b in 0..4u32 {
        r.handle_block(Instant::ZERO, b, block(b));
    }
    r
}

fn give_slot(r: &mut Repairer, slot: u8) {
    let slots = Packet::Hello(Hello::Slots { slots: vec![(3, 1), (ME, slot)] });
    r.handle_datagram(Instant::ZERO, addr(1), &dgram(SENDER_NODE, &slots));
}

/// Everything the repairer sends up to `until` (timeouts fired as it asks).
fn drain(r: &mut Repairer, until: Instant) -> Vec<(Dest, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..10_000 {
        let Some(at) = r.poll_timeout() else { break };
        if at > until {
            break;
        }
        r.handle_timeout(at);
        while let Some(t) = r.poll_transmit(at, &mut buf) {
            out.push((t.dest, buf.clone()));
        }
    }
    out
}

fn symbols(out: &[(Dest, Vec<u8>)]) -> Vec<(u32, u32)> {
    out.iter()
        .filter_map(|(_, d)| match wire::parse(d).ok()?.1 {
            Packet::Repairer(RepairerPacket::Symbol(s)) => Some((s.block, s.esi)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_nak_is_answered_from_the_slot_after_an_advert() {
    let mut r = repairer(8);
    let joins = drain(&mut r, Instant::ZERO);
    assert!(matches!(wire::parse(&joins[0].1).unwrap().1, Packet::Hello(Hello::RepairerJoin)));
    assert_eq!(joins[0].0, Dest::Sender);
    give_slot(&mut r, 3);
    r.handle_datagram(Instant::ZERO, addr(5), &dgram(50, &nak(2, 4)));
    let out = drain(&mut r, Instant::ZERO + Duration::from_secs(1));
    let Packet::Repairer(RepairerPacket::Advert(list)) = wire::parse(&out[0].1).unwrap().1 else {
        panic!("an advert first")
    };
    assert_eq!(list.needs[0].count, 5, "need + margin");
    let range = slot_esis(3).unwrap();
    let sent = symbols(&out);
    assert_eq!(sent, (0..5).map(|i| (2, range.start + i)).collect::<Vec<_>>());
    assert_eq!(r.stats().symbols_sent, 5);
    // Asked again: fresh ESIs, never the same symbol twice.
    r.handle_datagram(Instant::ZERO + Duration::from_secs(1), addr(5), &dgram(50, &nak(2, 1)));
    let again = symbols(&drain(&mut r, Instant::ZERO + Duration::from_secs(2)));
    assert_eq!(again, vec![(2, range.start + 5), (2, range.start + 6)]);
}

#[test]
fn a_covering_advert_heard_during_the_backoff_suppresses_the_answer() {
    let mut r = repairer(8);
    give_slot(&mut r, 1);
    drain(&mut r, Instant::ZERO);
    r.handle_datagram(Instant::ZERO, addr(5), &dgram(50, &nak(1, 4)));
    // Another repairer advertises as much: nothing to send.
    r.handle_datagram(Instant::ZERO, addr(6), &dgram(60, &advert(1, 4)));
    assert!(symbols(&drain(&mut r, Instant::ZERO + Duration::from_secs(1))).is_empty());
    assert_eq!(r.stats().suppressed, 1);
    // A smaller one only lowers it: 4 - 3 = 1, plus the margin.
    r.handle_datagram(Instant::ZERO + Duration::from_secs(1), addr(5), &dgram(50, &nak(1, 4)));
    r.handle_datagram(Instant::ZERO + Duration::from_secs(1), addr(6), &dgram(60, &advert(1, 3)));
    assert_eq!(symbols(&drain(&mut r, Instant::ZERO + Duration::from_secs(2))).len(), 2);
}

#[test]
fn without_a_slot_it_stays_silent() {
    let mut r = repairer(8);
    drain(&mut r, Instant::ZERO);
    // A slot from anyone but the sender's address is not believed.
    let slots = Packet::Hello(Hello::Slots { slots: vec![(ME, 2)] });
    r.handle_datagram(Instant::ZERO, addr(7), &dgram(SENDER_NODE, &slots));
    assert_eq!(r.slot(), None);
    r.handle_datagram(Instant::ZERO, addr(5), &dgram(50, &nak(0, 2)));
    assert!(symbols(&drain(&mut r, Instant::ZERO + Duration::from_millis(10))).is_empty());
    assert_eq!(r.stats().no_slot, 1);
}

#[test]
fn an_evicted_block_is_asked_back_and_symbols_keep_to_the_rate_cap() {
    let mut r = repairer(2); // holds blocks 2 and 3 in memory
    assert_eq!(r.in_memory(), 2);
    give_slot(&mut r, 1);
    drain(&mut r, Instant::ZERO);
    r.handle_datagram(Instant::ZERO, addr(5), &dgram(50, &nak(0, 9)));
    assert!(symbols(&drain(&mut r, Instant::ZERO + Duration::from_millis(2))).is_empty());
    let Some(RepairerEvent::NeedBlock { block: 0, offset: 0, len: 640 }) = r.poll_event() else {
        panic!("block 0 asked back")
    };
    let at = Instant::ZERO + Duration::from_millis(2);
    r.handle_block(at, 0, block(0));
    // 10 symbols in 93-byte datagrams at 1 Mbit/s (93 bytes take 744 µs) from a 400-byte
    // bucket: the bucket's worth (and one datagram of debt) at once, the rest at the rate.
    let mut times = Vec::new();
    let mut buf = Vec::new();
    let mut now = at;
    while let Some(next) = r.poll_timeout().filter(|t| *t < at + Duration::from_millis(50)) {
        now = now.max(next);
        r.handle_timeout(now);
        while let Some(t) = r.poll_transmit(now, &mut buf) {
            assert_eq!(t.size, 93);
            times.push(now);
        }
    }
    assert_eq!(times.len(), 10);
    let at_once = times.iter().filter(|t| **t == at).count();
    assert_eq!(at_once, 5, "400 bytes and one of debt");
    let spread = *times.last().unwrap() - at;
    // 5 × 93 - 400 = 65 bytes of debt (520 µs), then 744 µs for each of the other four.
    let paced = Duration::from_micros(520 + 4 * 744);
    assert!(spread >= paced && spread <= paced + Duration::from_micros(5), "{spread:?}");
}

#[test]
fn only_blocks_the_hash_list_verified_are_served() {
    let mut r = unverified_repairer(8, false);
    give_slot(&mut r, 1);
    drain(&mut r, Instant::ZERO);
    // Before the list: held, not served.
    r.handle_datagram(Instant::ZERO, addr(5), &dgram(50, &nak(1, 3)));
    assert!(symbols(&drain(&mut r, Instant::ZERO + Duration::from_secs(1))).is_empty());
    assert_eq!(r.stats().needs_unverified, 1);
    // A block rewritten with bytes the list will refute (a forged symbol decoded in).
    r.handle_block(Instant::ZERO, 2, vec![0xee; 640]);
    let t = Instant::ZERO + Duration::from_secs(1);
    r.handle_hashes(t, &hash_list());
    assert_eq!(r.stats().blocks_refuted, 1);
    r.handle_datagram(t, addr(5), &dgram(50, &nak(1, 3)));
    r.handle_datagram(t, addr(5), &dgram(50, &nak(2, 3)));
    let sent = symbols(&drain(&mut r, t + Duration::from_secs(1)));
    assert_eq!(sent.len(), 4, "block 1: need + margin; block 2 refuted: {sent:?}");
    assert!(sent.iter().all(|(b, _)| *b == 1));
    // Once the list is known, a bad copy handed over is refused at once; a good one is taken.
    r.handle_block(t, 2, vec![0xee; 640]);
    assert_eq!(r.stats().blocks_refuted, 2);
    r.handle_block(t, 2, block(2));
    let t2 = t + Duration::from_secs(1);
    r.handle_datagram(t2, addr(5), &dgram(50, &nak(2, 1)));
    assert_eq!(symbols(&drain(&mut r, t2 + Duration::from_secs(1))).len(), 2);
    // A list that does not fit the layout is ignored.
    let mut other = unverified_repairer(8, false);
    let short = HashList::new(Layout::new(640, 64, 10).unwrap(), vec![[0; 32]]).unwrap();
    other.handle_hashes(Instant::ZERO, &short);
    assert!(!other.has_hashes());
}

#[test]
fn keyed_mode_serves_decoded_blocks_before_the_list() {
    let mut r = unverified_repairer(8, true);
    give_slot(&mut r, 1);
    drain(&mut r, Instant::ZERO);
    r.handle_datagram(Instant::ZERO, addr(5), &dgram(50, &nak(1, 3)));
    assert_eq!(symbols(&drain(&mut r, Instant::ZERO + Duration::from_secs(1))).len(), 4);
    // The list still refutes a bad copy: it is not served again.
    r.handle_block(Instant::ZERO, 3, vec![0xee; 640]);
    let t = Instant::ZERO + Duration::from_secs(1);
    r.handle_hashes(t, &hash_list());
    r.handle_datagram(t, addr(5), &dgram(50, &nak(3, 3)));
    assert!(symbols(&drain(&mut r, t + Duration::from_secs(1))).is_empty());
    assert_eq!(r.stats().blocks_refuted, 1);
}

// ---- the sender's side ----

fn sender() -> (Sender, MemSource, SenderLog) {
    let bytes: Vec<u8> = (0..4 * 640u32).map(|i| (i % 251) as u8).collect();
    let object = Arc::new(Object::new(bytes, 64, 10).unwrap());
    let cfg = SenderConfig { session: SESSION, node: SENDER_NODE, ..SenderConfig::default() };
    let s = object.sender(cfg, Instant::ZERO).unwrap();
    (s, MemSource::new(object), SenderLog::default())
}

/// Let the sender send what it can at `now`; returns the datagrams.
fn pump(s: &mut Sender, src: &MemSource, log: &mut SenderLog, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..10_000 {
        serve_sender_events(s, now, src, log);
        s.handle_timeout(now);
        match s.poll_transmit(now, &mut buf) {
            Some(_) => out.push(buf.clone()),
            None => break,
        }
    }
    out
}

#[test]
fn the_sender_hands_out_distinct_slots_and_refuses_past_the_last() {
    let (mut s, src, mut log) = sender();
    let join = Packet::Hello(Hello::RepairerJoin);
    for i in 0..REPAIR_SLOTS {
        s.handle_datagram(Instant::ZERO, addr(10 + i), &dgram(100 + u32::from(i), &join));
    }
    let slots: BTreeSet<u8> =
        (0..REPAIR_SLOTS).filter_map(|i| s.repairer_slot(100 + u32::from(i))).collect();
    assert_eq!(slots, (1..=REPAIR_SLOTS).collect());
    s.handle_datagram(Instant::ZERO, addr(99), &dgram(199, &join));
    assert_eq!((s.repairer_slot(199), s.repairer_stats().slots_full), (None, 1));
    // A repeated join keeps its slot; the same node from elsewhere is refused.
    let first = s.repairer_slot(100);
    s.handle_datagram(Instant::ZERO, addr(10), &dgram(100, &join));
    s.handle_datagram(Instant::ZERO, addr(98), &dgram(100, &join));
    assert_eq!(s.repairer_slot(100), first);
    assert_eq!(s.repairer_stats().joins_refused, 1);
    let sent = pump(&mut s, &src, &mut log, Instant::ZERO);
    let assigned = sent.iter().find_map(|d| match wire::parse(d).ok()?.1 {
        Packet::Hello(Hello::Slots { slots }) => Some(slots.len()),
        _ => None,
    });
    assert_eq!(assigned, Some(usize::from(REPAIR_SLOTS)));
}

#[test]
fn a_repairer_advert_holds_the_sender_off_for_a_bounded_time_only() {
    let (mut s, src, mut log) = sender();
    let t0 = Instant::ZERO;
    // Send the whole first pass (blocks are started).
    let mut t = t0;
    for _ in 0..200 {
        pump(&mut s, &src, &mut log, t);
        t += Duration::from_millis(1);
    }
    // An advert from a node without a slot is ignored.
    s.handle_datagram(t, addr(20), &dgram(20, &advert(1, 5)));
    assert_eq!(s.repairer_stats().adverts_ignored, 1);
    s.handle_datagram(t, addr(20), &dgram(20, &Packet::Hello(Hello::RepairerJoin)));
    s.handle_datagram(t, addr(20), &dgram(20, &advert(1, 5)));
    assert_eq!(s.repairer_stats().adverts_heard, 1);
    // A NAK within the hold is covered...
    s.handle_datagram(t, addr(30), &dgram(30, &nak(1, 5)));
    assert_eq!(s.repairer_stats().needs_covered, 1);
    let repairs = s.stats().repair_packets;
    // ...one after it is answered in full, whatever the advert said (once the block's one
    // deferral to the repairers, opened by that NAK, is over).
    let later = t + COVER_HOLD_MAX + Duration::from_millis(1);
    s.handle_datagram(later, addr(30), &dgram(30, &nak(1, 5)));
    assert_eq!(s.repairer_stats().blocks_deferred, 1);
    let later = later + DEFER_MAX;
    s.handle_datagram(later, addr(30), &dgram(30, &nak(1, 5)));
    assert_eq!(s.repairer_stats().needs_covered, 1);
    let mut u = later;
    for _ in 0..100 {
        pump(&mut s, &src, &mut log, u);
        u += Duration::from_millis(1);
    }
    assert!(s.stats().repair_packets >= repairs + 5, "the sender repairs anyway");
    // A lying repairer advertising over and over covers at most two blocks' worth.
    for i in 0..10 {
        s.handle_datagram(u + Duration::from_secs(2 * i), addr(20), &dgram(20, &advert(2, 26)));
    }
    assert_eq!(s.repairer_stats().covers_over_limit, 8, "(10 + 16) × 2 = 2 adverts of 26");
}

#[test]
fn one_slot_per_address_and_silent_holders_lose_theirs() {
    let (mut s, _src, _log) = sender();
    let join = Packet::Hello(Hello::RepairerJoin);
    let at_port = |i: u8, port: u16| SocketAddr::from(([198, 18, 1, i], port));
    // A second node from the same IP (another port) gets no slot.
    s.handle_datagram(Instant::ZERO, at_port(0, 7000), &dgram(200, &join));
    s.handle_datagram(Instant::ZERO, at_port(0, 7001), &dgram(300, &join));
    assert_eq!((s.repairer_slot(200), s.repairer_slot(300)), (Some(1), None));
    assert_eq!(s.repairer_stats().joins_same_address, 1);
    for i in 1..REPAIR_SLOTS {
        s.handle_datagram(Instant::ZERO, at_port(i, 7000), &dgram(200 + u32::from(i), &join));
    }
    // Everyone but node 203 stays heard (a repeated join, as an echo would).
    let keep_heard = |s: &mut Sender, t: Instant| {
        for i in (0..REPAIR_SLOTS).filter(|i| *i != 3) {
            s.handle_datagram(t, at_port(i, 7000), &dgram(200 + u32::from(i), &join));
        }
    };
    let newcomer = |s: &mut Sender, t: Instant| {
        s.handle_datagram(t, at_port(50, 7000), &dgram(150, &join));
        s.repairer_slot(150)
    };
    let t = Instant::ZERO + SLOT_IDLE;
    keep_heard(&mut s, t);
    assert_eq!(newcomer(&mut s, t), None, "silent for exactly SLOT_IDLE: kept");
    assert_eq!(s.repairer_stats().slots_full, 1);
    let t = t + Duration::from_millis(1);
    keep_heard(&mut s, t);
    let held = s.repairer_slot(203);
    assert_eq!(newcomer(&mut s, t), held, "one past it: node 203's slot goes to the newcomer");
    assert_eq!(s.repairer_slot(203), None);
    assert_eq!(s.repairer_stats().slots_reclaimed, 1);
}

#[test]
fn a_repairer_left_out_of_the_slots_asks_again() {
    let mut r = repairer(8);
    give_slot(&mut r, 2);
    drain(&mut r, Instant::ZERO);
    assert_eq!(r.slot(), Some(2));
    let others = Packet::Hello(Hello::Slots { slots: vec![(3, 2)] });
    let t = Instant::ZERO + Duration::from_secs(1);
    r.handle_datagram(t, addr(1), &dgram(SENDER_NODE, &others));
    assert_eq!(r.slot(), None);
    let out = drain(&mut r, t);
    assert!(out
        .iter()
        .any(|(_, d)| matches!(wire::parse(d).unwrap().1, Packet::Hello(Hello::RepairerJoin))));
}

/// The sender after its first pass, repairer 20 holding a slot (heard at the returned time).
fn sender_with_repairer() -> (Sender, MemSource, SenderLog, Instant) {
    let (mut s, src, mut log) = sender();
    let mut t = Instant::ZERO;
    for _ in 0..200 {
        pump(&mut s, &src, &mut log, t);
        t += Duration::from_millis(1);
    }
    s.handle_datagram(t, addr(20), &dgram(20, &Packet::Hello(Hello::RepairerJoin)));
    assert!(s.repairer_slot(20).is_some());
    (s, src, log, t)
}

#[test]
fn a_blocks_naks_wait_for_the_repairers_once_and_for_a_bounded_time() {
    let (mut s, _src, _log, t) = sender_with_repairer();
    let deferred = |s: &Sender| s.repairer_stats().needs_deferred;
    // A receiver's NAK: deferred to the repairer.
    s.handle_datagram(t, addr(30), &dgram(30, &nak(1, 5)));
    assert_eq!((s.repairer_stats().blocks_deferred, deferred(&s)), (1, 1));
    // The repairer's own NAK of it is not.
    s.handle_datagram(t, addr(20), &dgram(20, &nak(1, 3)));
    assert_eq!(deferred(&s), 1);
    // Still deferred just before the shortest span, answered at the longest.
    let before = t + (DEFER_MIN - Duration::from_micros(1));
    s.handle_datagram(before, addr(30), &dgram(30, &nak(1, 5)));
    assert_eq!(deferred(&s), 2);
    s.handle_datagram(t + DEFER_MAX, addr(30), &dgram(30, &nak(1, 5)));
    assert_eq!(deferred(&s), 2);
    // Once only: a block whose deferral is over is never deferred again.
    s.handle_datagram(t + DEFER_MAX * 2, addr(31), &dgram(31, &nak(1, 5)));
    assert_eq!((s.repairer_stats().blocks_deferred, deferred(&s)), (1, 2));
    assert_eq!(s.repairer_stats().deferrals_futile, 1, "no repairer advertised block 1");
}

#[test]
fn the_second_repairer_waits_for_the_first() {
    let (mut s, _src, _log, t) = sender_with_repairer();
    s.handle_datagram(t, addr(21), &dgram(21, &Packet::Hello(Hello::RepairerJoin)));
    s.handle_datagram(t, addr(20), &dgram(20, &nak(2, 4)));
    s.handle_datagram(t, addr(20), &dgram(20, &nak(2, 4)));
    assert_eq!(s.repairer_stats().needs_deferred, 0, "the first repairer is served");
    s.handle_datagram(t, addr(21), &dgram(21, &nak(2, 6)));
    assert_eq!(s.repairer_stats().needs_deferred, 1, "the second is left to the first");
    s.handle_datagram(t + DEFER_MAX, addr(21), &dgram(21, &nak(2, 6)));
    assert_eq!(s.repairer_stats().needs_deferred, 1, "not past the span");
}

#[test]
fn futile_deferrals_stop_deferring_until_an_advert_is_believed() {
    let blocks = FUTILE_LIMIT + 2;
    let bytes: Vec<u8> = (0..blocks * 640).map(|i| (i % 251) as u8).collect();
    let object = Arc::new(Object::new(bytes, 64, 10).unwrap());
    let cfg = SenderConfig { session: SESSION, node: SENDER_NODE, ..SenderConfig::default() };
    let (mut s, src, mut log) =
        (object.sender(cfg, Instant::ZERO).unwrap(), MemSource::new(object), SenderLog::default());
    let mut u = Instant::ZERO;
    for _ in 0..400 {
        pump(&mut s, &src, &mut log, u);
        u += Duration::from_millis(1);
    }
    let join = Packet::Hello(Hello::RepairerJoin);
    let deferred = |s: &Sender| s.repairer_stats().blocks_deferred;
    for b in 0..FUTILE_LIMIT {
        s.handle_datagram(u, addr(20), &dgram(20, &join)); // the repairer stays active
        s.handle_datagram(u, addr(30), &dgram(30, &nak(b, 2)));
        u += DEFER_MAX;
        s.handle_datagram(u, addr(30), &dgram(30, &nak(b, 2))); // ends it: futile
    }
    let limit = u64::from(FUTILE_LIMIT);
    assert_eq!((deferred(&s), s.repairer_stats().deferrals_futile), (limit, limit));
    s.handle_datagram(u, addr(20), &dgram(20, &join));
    s.handle_datagram(u, addr(30), &dgram(30, &nak(FUTILE_LIMIT, 2)));
    assert_eq!(deferred(&s), limit, "the limit reached: not deferred");
    // An advert believed: repairers serve again, blocks are deferred again.
    s.handle_datagram(u, addr(20), &dgram(20, &advert(0, 1)));
    s.handle_datagram(u, addr(30), &dgram(30, &nak(FUTILE_LIMIT + 1, 2)));
    assert_eq!(deferred(&s), limit + 1);
}

#[test]
fn needs_heard_before_a_block_is_held_are_answered_once_it_is() {
    let cfg = RepairerConfig { node: ME, serve_unverified: true, ..Default::default() };
    let mut r = Repairer::new(cfg, Instant::ZERO);
    r.set_view(Instant::ZERO, view());
    give_slot(&mut r, 1);
    drain(&mut r, Instant::ZERO);
    r.handle_datagram(Instant::ZERO, addr(5), &dgram(50, &nak(2, 5)));
    assert_eq!((r.stats().needs_unheld, r.waiting()), (1, 1));
    assert!(symbols(&drain(&mut r, Instant::ZERO + Duration::from_secs(1))).is_empty());
    // Two repair symbols of block 2 heard meanwhile (the sender's, for this repairer).
    let mut sym = vec![0u8; 64];
    for esi in [10, 11] {
        let d = Data { object: ObjectId::Payload, block: 2, esi, seq: 0, symbol: &sym };
        r.handle_datagram(Instant::ZERO, addr(1), &dgram(SENDER_NODE, &Packet::Data(d)));
    }
    sym.clear();
    let t = Instant::ZERO + Duration::from_secs(1);
    r.handle_block(t, 2, block(2));
    assert_eq!((r.stats().needs_woken, r.waiting()), (1, 0));
    let sent = symbols(&drain(&mut r, t + Duration::from_secs(1)));
    assert_eq!(sent.len(), 5 - 2 + 1, "the need less what was heard, plus the margin");
    assert!(sent.iter().all(|(b, _)| *b == 2));
    // A block not held never wakes: its needs wait (bounded by the layout's blocks).
    r.handle_datagram(t, addr(5), &dgram(50, &nak(9, 5)));
    assert_eq!(r.waiting(), 0, "outside the layout");
}
