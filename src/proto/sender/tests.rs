//! Sender unit tests: pacing, fresh repair ESIs, NAK validation, block cache, completion.

use super::*;
use crate::sim::{manifest_for, Datagram, FecModel, Harness, MemSource, Network, Node, Object};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::sync::Arc;

const T: u16 = 100;
const K: u16 = 10;

fn addr() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 2], 7001))
}

fn object(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn sender(len: usize, cfg: SenderConfig) -> (Sender, Vec<u8>) {
    let obj = object(len);
    let s = Sender::new(cfg, &manifest_for(&obj, T, K), Instant::ZERO).unwrap();
    (s, obj)
}

fn nak(block: u32, count: u16, seq: u32) -> Vec<u8> {
    let mut b = Vec::new();
    let needs = vec![Need { object: ObjectId::Payload, block, count }];
    wire::emit(
        &Header { flags: 0, session: 1, node: 9 },
        &Packet::Nak(NeedList { seq, loss_ppm: 0, needs }),
        &mut b,
    );
    b
}

/// The sender alone in the in-memory harness (no receivers), its blocks served from `object(len)`.
fn harness(len: usize, cfg: SenderConfig) -> Harness {
    let obj = Arc::new(Object::new(object(len), T, K).unwrap());
    let s = obj.sender(cfg, Instant::ZERO).unwrap();
    let rng = ChaCha8Rng::seed_from_u64(0);
    Harness::new(Network::default(), s, MemSource::new(obj), FecModel::Real, rng)
}

/// Run the harness for `dur` more of virtual time; returns every datagram the sender sent.
fn run_for(h: &mut Harness, dur: Duration) -> Vec<(Instant, Vec<u8>)> {
    let mut out = Vec::new();
    let until = h.now() + dur;
    h.run_until_with(until, &mut |d: &mut Datagram| {
        out.push((d.at, d.data.clone()));
        true
    });
    out
}

#[test]
fn pacing_holds_the_configured_rate() {
    // 8 Mbit/s = 1 MB/s; a 10 MB object cannot finish in 1 s, and about 1 MB goes out.
    let cfg = SenderConfig { rate_bps: 8_000_000, burst_bytes: 4000, ..SenderConfig::default() };
    let mut h = harness(10_000_000, cfg);
    let sent = run_for(&mut h, Duration::from_secs(1));
    let bytes: usize = sent.iter().map(|(_, d)| d.len()).sum();
    assert!((990_000..=1_010_000).contains(&bytes), "{bytes}");
    // No 10 ms window carries more than 10 ms of rate plus the burst.
    for (i, (t0, _)) in sent.iter().enumerate() {
        let window: usize = sent[i..]
            .iter()
            .take_while(|(t, _)| *t < *t0 + Duration::from_millis(10))
            .map(|(_, d)| d.len())
            .sum();
        assert!(window <= 10_000 + 4000 + 200, "{window} bytes in 10 ms");
    }
}

#[test]
fn repair_symbols_are_always_fresh() {
    let cfg = SenderConfig { fec_overhead: 0.2, ..SenderConfig::default() };
    let mut h = harness(5 * 1000, cfg);
    let mut seen = HashSet::new();
    for round in 0..5 {
        for (_, d) in run_for(&mut h, Duration::from_millis(200)) {
            if let Ok((_, Packet::Data(data))) = wire::parse(&d) {
                let key = (data.object, data.block, data.esi);
                assert!(seen.insert(key), "round {round}: {key:?} sent twice");
            }
        }
        let seq = h.sender().seq.wrapping_sub(1);
        h.deliver(Node::Sender, addr(), &nak(2, 4, seq));
    }
    let repairs_of_2 = seen
        .iter()
        .filter(|(o, b, e)| *o == ObjectId::Payload && *b == 2 && *e >= u32::from(K))
        .count();
    // 2 proactive, then 4 answered NAK rounds (the 5th arrives after the last run) of
    // need 4 + margin 1: each NAK quotes the latest sequence number, so nothing is in flight.
    assert_eq!(repairs_of_2, 2 + 5 * 4);
}

#[test]
fn naks_for_unknown_blocks_or_sessions_are_ignored() {
    let (mut s, _obj) = sender(5 * 1000, SenderConfig::default());
    s.handle_datagram(Instant::ZERO, addr(), &nak(5, 3, 0)); // 5 blocks: 0..=4
    assert_eq!(s.stats().needs_ignored, 1);
    let mut b = nak(1, 3, 0);
    b[8] ^= 1; // session byte; checksum now wrong
    s.handle_datagram(Instant::ZERO, addr(), &b);
    assert_eq!(s.stats().dropped_malformed, 1);
    assert!(!s.timers.is_set(Timer::Holdoff));
}

#[test]
fn evicted_blocks_are_requested_again() {
    let cfg = SenderConfig { cache_blocks: 2, read_ahead: 1, ..SenderConfig::default() };
    let mut h = harness(8 * 1000, cfg);
    run_for(&mut h, Duration::from_secs(1));
    assert!(h.sender().cache.len() <= 2);
    let requested = h.sender().stats().blocks_requested;
    let seq = h.sender().seq.wrapping_sub(1);
    h.deliver(Node::Sender, addr(), &nak(0, 2, seq));
    let sent = run_for(&mut h, Duration::from_millis(100));
    assert_eq!(h.sender().stats().blocks_requested, requested + 1, "block 0 read again");
    assert_eq!(h.sender_log().blocks_served, requested + 1, "and served");
    assert!(sent
        .iter()
        .any(|(_, d)| matches!(wire::parse(d), Ok((_, Packet::Data(x))) if x.block == 0)));
}

/// A receiver's report that it holds all `bytes`, verified.
fn complete_report(bytes: u64) -> Report {
    Report {
        status: ReportStatus::Complete,
        bytes,
        object_hash: [0; 32],
        naks_sent: 0,
        naks_suppressed: 0,
        elapsed_ms: 1,
        reason: String::new(),
    }
}

#[test]
fn finishes_when_expected_receivers_report() {
    let cfg = SenderConfig { expected_receivers: Some(2), ..SenderConfig::default() };
    let (mut s, _obj) = sender(1000, cfg);
    let report = complete_report(1000);
    for node in [10, 11] {
        // Reports count only from receivers heard before (roster.rs).
        let host = HostName::new(&format!("h{node}")).unwrap();
        let mut b = Vec::new();
        wire::emit(
            &Header { flags: 0, session: 1, node },
            &Packet::Hello(Hello::Join { host }),
            &mut b,
        );
        s.handle_datagram(Instant::ZERO, addr(), &b);
    }
    for node in [10, 10, 11] {
        let mut b = Vec::new();
        let packet = Packet::Report(report.clone());
        wire::emit(&Header { flags: 0, session: 1, node }, &packet, &mut b);
        assert!(!s.is_finished());
        s.handle_datagram(Instant::ZERO, addr(), &b);
    }
    assert!(s.is_finished());
    assert_eq!(s.receivers().len(), 2);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(events.iter().filter(|e| matches!(e, Event::ReceiverReport(_))).count(), 2);
    assert_eq!(events.last(), Some(&Event::Finished));
    let mut buf = Vec::new();
    while s.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
    let first_leave = s.leave_at().unwrap();
    // A receiver whose ack was lost repeats its report after the sender finished: it is
    // acknowledged again, and the sender stays longer.
    let later = Instant::ZERO + Duration::from_millis(50);
    let mut b = Vec::new();
    wire::emit(&Header { flags: 0, session: 1, node: 11 }, &Packet::Report(report.clone()), &mut b);
    s.handle_datagram(later, addr(), &b);
    let mut acked = false;
    while s.poll_transmit(later, &mut buf).is_some() {
        if let Ok((_, Packet::ReportAck(a))) = wire::parse(&buf) {
            acked |= a.nodes.contains(&11);
        }
    }
    assert!(acked);
    assert!(s.leave_at().unwrap() > first_leave);
}

/// Every datagram the sender has for `now`; the announcements, probes, flushes and data among
/// them, parsed. Its events are left queued.
fn transmit_all(s: &mut Sender, now: Instant) -> Vec<Packet<'static>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while s.poll_transmit(now, &mut buf).is_some() {
        let (_, p) = wire::parse(&buf).unwrap();
        out.push(match p {
            Packet::Data(d) => {
                let symbol: &'static [u8] = Box::leak(d.symbol.to_vec().into_boxed_slice());
                Packet::Data(Data { symbol, ..d })
            }
            Packet::Announce(a) => Packet::Announce(a),
            Packet::Probe(p) => Packet::Probe(p),
            Packet::Flush(f) => Packet::Flush(f),
            _ => continue,
        });
    }
    out
}

#[test]
fn the_first_datagrams_go_out_before_any_block_is_read_or_hashed() {
    let (mut s, obj) = sender(5000, SenderConfig::default()); // 5 blocks
                                                              // Nothing served yet: the sender asked for its read-ahead, and sends all it can without it.
    let sent = transmit_all(&mut s, Instant::ZERO);
    let first = sent.first().expect("a datagram before any block is served");
    assert!(matches!(first, Packet::Announce(a) if a.hashes_hash().is_none() && a.hashes_len == 0));
    let manifest_symbols = sent
        .iter()
        .filter(|p| matches!(p, Packet::Data(d) if d.object == ObjectId::Manifest))
        .count();
    assert!(manifest_symbols >= 1, "the whole manifest goes out: {sent:?}");
    assert!(!sent.iter().any(|p| matches!(p, Packet::Data(d) if d.object != ObjectId::Manifest)));
    assert_eq!(s.object_hash(), None, "no hash is known before the blocks are read");
    let asked: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(matches!(asked.first(), Some(Event::NeedBlock(r)) if r.block == 0), "{asked:?}");

    // Serve every block as asked: the pass ends with the hash list, announced first.
    let mut announced = None;
    let mut list_symbols = 0;
    let mut pending: VecDeque<Event> = asked.into();
    for _ in 0..10_000 {
        while let Some(ev) = pending.pop_front().or_else(|| s.poll_event()) {
            if let Event::NeedBlock(req) = ev {
                let data = obj[req.offset as usize..][..req.len].to_vec();
                s.handle_block(req.block, req.prepare(data).unwrap()).unwrap();
            }
        }
        let now = s.poll_timeout().unwrap_or(Instant::ZERO);
        s.handle_timeout(now);
        for p in transmit_all(&mut s, now) {
            match p {
                Packet::Announce(a) if a.hashes_hash().is_some() => {
                    announced.get_or_insert((a, list_symbols));
                }
                Packet::Data(d) if d.object == ObjectId::Hashes => list_symbols += 1,
                _ => {}
            }
        }
        if list_symbols > 0 && s.flushing {
            break;
        }
    }
    let (a, symbols_before) = announced.expect("the hash list was announced");
    assert_eq!(symbols_before, 0, "the announcement goes ahead of the list's symbols");
    let layout = Layout::new(5000, T, K).unwrap();
    let list = HashList::of_bytes(&obj, layout);
    assert_eq!((a.hashes_len, a.hashes_hash), (5 * 32, list.root()));
    assert_eq!(s.object_hash(), Some(list.root()));
}

#[test]
fn a_block_that_hashes_differently_when_read_again_is_unavailable() {
    let cfg = SenderConfig { cache_blocks: 1, read_ahead: 0, ..SenderConfig::default() };
    let (mut s, obj) = sender(3000, cfg); // 3 blocks, one cached at a time
    let mut now = Instant::ZERO;
    let mut served = Vec::new();
    let mut serve = |s: &mut Sender, changed: bool| {
        while let Some(ev) = s.poll_event() {
            if let Event::NeedBlock(req) = ev {
                let mut data = obj[req.offset as usize..][..req.len].to_vec();
                if changed {
                    data[7] ^= 1; // the file changed under the sender
                }
                served.push(req.block);
                s.handle_block(req.block, req.prepare(data).unwrap()).unwrap();
            } else if let Event::BlockUnavailable { block } = ev {
                return Some(block);
            }
        }
        None
    };
    while s.object_hash().is_none() {
        serve(&mut s, false);
        now = s.poll_timeout().unwrap().max(now);
        s.handle_timeout(now);
        transmit_all(&mut s, now);
    }
    let root = s.object_hash();
    // Block 0 was evicted; a NAK for it makes the sender read it again, and it changed.
    s.handle_datagram(now, addr(), &nak(0, 2, s.seq.wrapping_sub(1)));
    let mut gone = None;
    for _ in 0..100 {
        now = s.poll_timeout().unwrap().max(now);
        s.handle_timeout(now);
        transmit_all(&mut s, now);
        gone = gone.or(serve(&mut s, true));
        if gone.is_some() {
            break;
        }
    }
    assert_eq!(gone, Some(0), "the changed block is unavailable");
    assert!(served.iter().filter(|b| **b == 0).count() >= 2, "it was read again");
    assert_eq!(s.object_hash(), root, "the announced list never changes");
    // NAKs for it are now answered with a squelch.
    s.handle_datagram(now, addr(), &nak(0, 2, s.seq.wrapping_sub(1)));
    let mut buf = Vec::new();
    let mut squelched = false;
    while s.poll_transmit(now, &mut buf).is_some() {
        squelched |= matches!(wire::parse(&buf), Ok((_, Packet::Squelch(q))) if q.block == 0);
    }
    assert!(squelched);
}

#[test]
fn on_the_harness_the_session_starts_with_no_block_read() {
    // Every payload block is unreadable: nothing is ever hashed or encoded. The push still
    // starts, announces and delivers its manifest, so nothing before the first payload symbol
    // waits on the source's bytes.
    let obj = Arc::new(Object::new(object(5000), T, K).unwrap());
    let cfg = SenderConfig { session: 3, ..SenderConfig::default() };
    let s = obj.sender(cfg, Instant::ZERO).unwrap();
    let source = MemSource::new(Arc::clone(&obj)).with_unreadable((0..5).collect());
    let rng = ChaCha8Rng::seed_from_u64(0);
    let mut h = Harness::new(Network::default(), s, source, FecModel::Real, rng);
    let rx = crate::proto::receiver::Receiver::new(Default::default());
    h.add_receiver(rx, crate::sim::Link::default());
    let sent = run_for(&mut h, Duration::from_millis(50));
    let first = wire::parse(&sent.first().expect("the session started").1).unwrap().1;
    assert!(matches!(first, Packet::Announce(a) if a.hashes_hash().is_none()), "{first:?}");
    assert!(sent.iter().any(|(_, d)| {
        matches!(wire::parse(d), Ok((_, Packet::Data(x))) if x.object == ObjectId::Manifest)
    }));
    assert_eq!(h.sender_log().blocks_served, 0, "no block was ever read");
    assert_eq!(h.sink(0).manifest(), Some(obj.manifest()), "yet the receiver has the manifest");
}

#[test]
fn naks_are_believed_only_from_the_nodes_address_and_up_to_what_was_sent() {
    let cfg = SenderConfig { auto_parity: false, fec_overhead: 0.0, ..SenderConfig::default() };
    let mut h = harness(5 * 1000, cfg);
    run_for(&mut h, Duration::from_millis(200));
    let last = h.sender().seq.wrapping_sub(1);
    let elsewhere = SocketAddr::from(([198, 18, 0, 99], 7001));
    // Node 9 is bound to addr() by its first NAK; the same claim from elsewhere is ignored.
    h.deliver(Node::Sender, addr(), &nak(1, 2, last));
    h.deliver(Node::Sender, elsewhere, &nak(2, 2, last));
    // Boundary pair on the quoted sequence number: the last one sent is fine, one past it is
    // made up.
    h.deliver(Node::Sender, addr(), &nak(3, 2, last));
    h.deliver(Node::Sender, addr(), &nak(4, 2, last.wrapping_add(1)));
    let stats = h.sender().stats().clone();
    assert_eq!((stats.feedback_wrong_addr, stats.naks_seq_ahead), (1, 1));
    let sent = run_for(&mut h, Duration::from_millis(200));
    let repaired: HashSet<u32> = sent
        .iter()
        .filter_map(|(_, d)| match wire::parse(d) {
            Ok((_, Packet::Data(x))) if x.object == ObjectId::Payload => Some(x.block),
            _ => None,
        })
        .collect();
    assert_eq!(repaired, HashSet::from([1, 3]), "only the believed NAKs were answered");
    assert_eq!(h.sender().stats().repair_packets, 2 * 3);
}

#[test]
fn reports_arriving_together_are_acknowledged_together_after_the_ack_delay() {
    // Three expected receivers: two report at once, the sender is not finished, so their
    // acknowledgement waits for the ack delay and then goes out as one datagram.
    let cfg = SenderConfig { expected_receivers: Some(3), ..SenderConfig::default() };
    let (mut s, _obj) = sender(1000, cfg);
    let report = complete_report(1000);
    let emit = |node: u32, packet: &Packet<'_>| {
        let mut b = Vec::new();
        wire::emit(&Header { flags: 0, session: 1, node }, packet, &mut b);
        b
    };
    for node in [10, 11, 12] {
        let host = HostName::new(&format!("h{node}")).unwrap();
        s.handle_datagram(Instant::ZERO, addr(), &emit(node, &Packet::Hello(Hello::Join { host })));
    }
    let acks_in = |s: &mut Sender, now: Instant| {
        let mut buf = Vec::new();
        let mut acks = Vec::new();
        while s.poll_transmit(now, &mut buf).is_some() {
            if let Ok((_, Packet::ReportAck(a))) = wire::parse(&buf) {
                acks.push(a.nodes);
            }
        }
        acks
    };
    // The welcomes go out after their own delay; then the reports start a new wait.
    let delay = ack_delay(s.grtt());
    s.handle_timeout(Instant::ZERO + delay);
    acks_in(&mut s, Instant::ZERO + delay);
    let t0 = Instant::ZERO + delay * 2;
    for node in [10, 11] {
        s.handle_datagram(t0, addr(), &emit(node, &Packet::Report(report.clone())));
    }
    let just_before = t0 + (delay - Duration::from_micros(1));
    s.handle_timeout(just_before);
    assert!(acks_in(&mut s, just_before).is_empty(), "held for the ack delay");
    assert!(s.poll_timeout().is_some_and(|t| t <= t0 + delay));
    s.handle_timeout(t0 + delay);
    assert_eq!(acks_in(&mut s, t0 + delay), [vec![10, 11]], "one datagram for both");
    // The last expected report finishes the sender: acknowledged at once.
    let t1 = t0 + delay * 2;
    s.handle_datagram(t1, addr(), &emit(12, &Packet::Report(report.clone())));
    assert!(s.is_finished());
    assert_eq!(acks_in(&mut s, t1), [vec![12]]);
}

#[test]
fn a_full_datagram_of_acknowledgements_goes_out_without_waiting() {
    let n = MAX_ACK_NODES as u32 + 1;
    let cfg = SenderConfig { expected_receivers: Some(n + 1), ..SenderConfig::default() };
    let (mut s, _obj) = sender(1000, cfg);
    let report = complete_report(1000);
    let mut buf = Vec::new();
    for node in 10..10 + n {
        let host = HostName::new(&format!("h{node}")).unwrap();
        let mut b = Vec::new();
        wire::emit(
            &Header { flags: 0, session: 1, node },
            &Packet::Hello(Hello::Join { host }),
            &mut b,
        );
        s.handle_datagram(Instant::ZERO, addr(), &b);
    }
    while s.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
    let mut acked = Vec::new();
    for node in 10..10 + n {
        let mut b = Vec::new();
        wire::emit(&Header { flags: 0, session: 1, node }, &Packet::Report(report.clone()), &mut b);
        s.handle_datagram(Instant::ZERO, addr(), &b);
        while s.poll_transmit(Instant::ZERO, &mut buf).is_some() {
            if let Ok((_, Packet::ReportAck(a))) = wire::parse(&buf) {
                acked.push(a.nodes.len());
            }
        }
    }
    // The first MAX_ACK_NODES at once; the one past it waits for its delay.
    assert_eq!(acked, [MAX_ACK_NODES]);
}

#[test]
fn joins_arriving_together_are_welcomed_together_after_the_ack_delay() {
    let (mut s, _obj) = sender(1000, SenderConfig::default());
    let welcomes_in = |s: &mut Sender, now: Instant| {
        let mut buf = Vec::new();
        let mut welcomes = Vec::new();
        while s.poll_transmit(now, &mut buf).is_some() {
            if let Ok((_, Packet::Hello(Hello::Welcome { nodes }))) = wire::parse(&buf) {
                welcomes.push(nodes);
            }
        }
        welcomes
    };
    let t0 = Instant::ZERO;
    for node in [10, 11, 12] {
        let host = HostName::new(&format!("h{node}")).unwrap();
        let mut b = Vec::new();
        wire::emit(
            &Header { flags: 0, session: 1, node },
            &Packet::Hello(Hello::Join { host }),
            &mut b,
        );
        s.handle_datagram(t0, addr(), &b);
    }
    assert!(welcomes_in(&mut s, t0).is_empty(), "held for the ack delay");
    let delay = ack_delay(s.grtt());
    let (at, just_before) = (t0 + delay, t0 + (delay - Duration::from_micros(1)));
    s.handle_timeout(just_before);
    assert!(welcomes_in(&mut s, just_before).is_empty());
    s.handle_timeout(at);
    assert_eq!(welcomes_in(&mut s, at), [vec![10, 11, 12]], "one welcome for all three");
}

/// The end game (the blocks that no full window follows) is planned for
/// [`FINAL_WINDOW_SHARE`] of the short receivers: at the same reported loss, each of its blocks
/// gets more proactive repair than any block before it, and the window just before it none
/// more than the rest. One receiver losing 5 %; its NAKs are dropped, so every repair is
/// proactive.
#[test]
fn the_end_game_gets_more_parity_than_the_blocks_before_it() {
    let blocks = 41; // windows of 8: 0..8, ..., 32..40, and 40 alone; the end game is 32..=40
    let obj =
        Arc::new(Object::new(object(blocks * usize::from(K) * usize::from(T)), T, K).unwrap());
    let cfg = SenderConfig { rate_bps: 1_000_000, burst_bytes: 1500, ..SenderConfig::default() };
    let s = obj.sender(cfg, Instant::ZERO).unwrap();
    let net = Network {
        latency: Duration::from_micros(100),
        loss: crate::sim::LossModel::Independent(0.05),
        ..Network::default()
    };
    let rng = ChaCha8Rng::seed_from_u64(1);
    let mut h = Harness::new(net, s, MemSource::new(obj), FecModel::Real, rng);
    h.add_receiver(crate::proto::receiver::Receiver::new(Default::default()), Default::default());
    let mut parity = vec![0u32; blocks];
    h.run_until_with(Instant::ZERO + Duration::from_secs(20), &mut |d: &mut Datagram| {
        match wire::parse(&d.data) {
            Ok((_, Packet::Data(d))) if d.object == ObjectId::Payload && d.esi >= u32::from(K) => {
                parity[d.block as usize] += 1;
            }
            Ok((_, Packet::Nak(_))) => return false,
            _ => {}
        }
        true
    });
    let before = *parity[8..32].iter().max().unwrap();
    let end_game = *parity[32..].iter().min().unwrap();
    // Mid-push the quiet blocks (no NAK reaches the sender) lower the bias to none at all;
    // the end game is planned for 3 at 5 % loss and K = 10, less the same bias.
    assert!(end_game >= before + 2, "{parity:?}");
    assert!(parity[24..32].iter().all(|p| *p <= parity[23]), "{parity:?}");
}
