//! The harness on its own: a lossy run ends exact and repeatable, stepping is one event at a
//! time in time order, taps see and drop datagrams, injected datagrams meet the latency and
//! late joiners hear nothing before they join.

use super::*;
use crate::proto::receiver::{Outcome, ReceiverConfig};
use crate::proto::sender::SenderConfig;
use crate::sim::object::Object;
use rand::SeedableRng;

fn harness(net: Network, receivers: &[Link], seed: u64) -> Harness {
    let bytes: Vec<u8> = (0..40_000u32).map(|i| (i * 31 + i / 251) as u8).collect();
    let object = Arc::new(Object::new(bytes, 128, 32).unwrap());
    let cfg = SenderConfig {
        expected_receivers: Some(receivers.len() as u32),
        ..SenderConfig::default()
    };
    let sender = object.sender(cfg, Instant::ZERO).unwrap();
    let rng = ChaCha8Rng::seed_from_u64(seed);
    let mut h = Harness::new(net, sender, MemSource::new(object), FecModel::Real, rng);
    for (i, link) in receivers.iter().enumerate() {
        let rx = Receiver::new(ReceiverConfig { node: 10 + i as u32, ..ReceiverConfig::default() });
        assert_eq!(h.add_receiver(rx, *link), i);
    }
    h
}

fn lossy() -> Network {
    Network {
        latency: Duration::from_micros(100),
        loss: LossModel::Independent(0.05),
        ..Network::default()
    }
}

fn secs(s: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(s)
}

#[test]
fn a_lossy_run_ends_with_exact_copies_and_repeats_itself() {
    let links = [Link::default(); 3];
    let mut h = harness(lossy(), &links, 1);
    assert_eq!(h.run(secs(30)), Stop::Done);
    for r in 0..3 {
        assert_eq!(h.sink(r).outcome(), Some(&Outcome::Complete), "receiver {r}");
        assert!(h.sink(r).is_exact());
        assert!(h.sink(r).manifest().is_some());
    }
    assert_eq!(h.sender_log().reports.len(), 3);
    assert!(h.sender_log().finished_at.is_some());
    assert!(h.sender().stats().naks_received > 0, "5 % loss needed repairs");
    let (lossy_blocks, lacked) = h.lacked();
    assert!(lossy_blocks > 0 && lacked >= lossy_blocks);
    let mut again = harness(lossy(), &links, 1);
    again.run(secs(30));
    assert_eq!((again.trace(), again.events(), again.now()), (h.trace(), h.events(), h.now()));
    let mut other = harness(lossy(), &links, 2);
    other.run(secs(30));
    assert_ne!(other.trace(), h.trace(), "another loss seed, another run");
}

#[test]
fn stepping_is_one_event_at_a_time_in_time_order() {
    let mut h = harness(lossy(), &[Link::default()], 3);
    assert_eq!(h.next_event_at(), None, "not started");
    let mut last = h.step().unwrap();
    for n in 2..=300 {
        let due = h.next_event_at().expect("a push has events");
        let at = h.step().unwrap();
        assert_eq!(at, due);
        assert!(at >= last, "time order");
        assert_eq!((h.events(), h.now()), (n, at));
        last = at;
    }
    let t = h.now() + Duration::from_millis(3);
    assert_eq!(h.run_until(t), Stop::Deadline);
    assert_eq!(h.now(), t);
    assert!(h.next_event_at().unwrap() > t, "everything due by {t:?} was processed");
    h.set_event_limit(h.events() + 5);
    assert_eq!(h.run(secs(30)), Stop::EventLimit);
}

#[test]
fn a_tap_sees_every_datagram_and_dropped_ones_never_arrive() {
    let mut h = harness(lossy(), &[Link::default()], 4);
    let mut from_sender = 0;
    h.run_until_with(Instant::ZERO + Duration::from_millis(20), &mut |d: &mut Datagram| {
        assert_eq!(d.from, Node::Sender, "a receiver without a session is silent");
        from_sender += 1;
        false
    });
    assert!(from_sender > 10);
    assert_eq!(h.receiver(0).stats().datagrams, 0);
    let mut from_receiver = Vec::new();
    let stop = h.run_with(secs(30), &mut |d: &mut Datagram| {
        if d.from == Node::Receiver(0) {
            from_receiver.push(d.dest);
        }
        true
    });
    assert_eq!(stop, Stop::Done);
    assert!(from_receiver.contains(&Dest::Sender), "its report");
    assert!(from_receiver.contains(&Dest::All), "its NAKs");
    assert_eq!(h.sink(0).outcome(), Some(&Outcome::Complete));
}

#[test]
fn injected_datagrams_meet_the_latency_and_late_joiners_hear_nothing_before_joining() {
    let net = Network { latency: Duration::from_millis(1), ..Network::default() };
    let late = Link { joins_at: Instant::ZERO + Duration::from_millis(50), extra_loss: 0.0 };
    let mut h = harness(net, &[Link::default(), late], 5);
    h.inject(Node::Receiver(0), Dest::All, b"not a datagram");
    h.run_until(Instant::ZERO + Duration::from_micros(999));
    assert_eq!(h.sender().stats().dropped_malformed, 0, "still in flight");
    h.run_until(Instant::ZERO + Duration::from_millis(1));
    assert_eq!(h.sender().stats().dropped_malformed, 1);
    assert!(h.receiver(0).stats().datagrams > 0, "the sender's first burst arrived");
    assert_eq!(h.receiver(1).stats().datagrams, 0, "not joined yet");
    h.deliver(Node::Receiver(1), Node::Sender.addr(), b"handed over directly");
    assert_eq!(h.receiver(1).stats().dropped_malformed, 1);
    assert_eq!(h.run(secs(30)), Stop::Done);
    assert_eq!(h.sink(1).outcome(), Some(&Outcome::Complete), "it caught up once joined");
}

/// Per receiver: when it placed the object and its counters that depend on what it received.
fn outcomes(h: &Harness) -> Vec<(Option<Instant>, u64, u64, u64)> {
    (0..h.receiver_count())
        .map(|r| {
            let s = h.receiver(r).stats();
            (h.sink(r).stored().map(|(t, _)| t), s.datagrams, s.naks_sent, s.symbols_new)
        })
        .collect()
}

#[test]
fn windowed_stepping_gives_every_node_the_same_inputs_at_the_same_times() {
    // Losses are drawn at arrivals, which both modes fan out in the same order, ties included:
    // every node must fare the same, down to the trace. Four seeds of each loss model, lossy
    // enough for NAK rounds.
    let models = [
        LossModel::Independent(0.05),
        // Interleaved blocks spread bursts (and change the draws): twice the loss here and
        // below for NAK rounds at every seed.
        LossModel::Shared(0.1),
        LossModel::Burst { loss: 0.1, burst: 5.0 },
    ];
    for (seed, loss) in (10..14).flat_map(|s| models.iter().map(move |m| (s, m.clone()))) {
        let net = Network { loss, ..lossy() };
        let links = [Link::default(); 4];
        // Both run to the same deadline, past the end: `run` would stop at the first event
        // after the last outcome, which a windowed run only checks between windows.
        let mut plain = harness(net.clone(), &links, seed);
        assert_eq!(plain.run_until(secs(30)), Stop::Deadline);
        assert!(plain.is_done());
        let mut windowed = harness(net.clone(), &links, seed);
        windowed.set_windowed(true);
        // Odd seeds: windows end early after 2 copies (between two instants), as a window
        // where everyone multicasts at once does.
        if seed % 2 == 1 {
            windowed.window.cap = 2;
        }
        assert!(windowed.windowed());
        assert_eq!(windowed.run_until(secs(30)), Stop::Deadline);
        assert!(windowed.is_done());
        assert!(plain.sender().stats().naks_received > 0, "seed {seed} {net:?}: NAK rounds");
        assert_eq!(outcomes(&windowed), outcomes(&plain), "seed {seed}");
        assert_eq!(windowed.sender().stats(), plain.sender().stats(), "seed {seed}");
        assert_eq!(windowed.trace(), plain.trace(), "seed {seed}");
        for r in 0..links.len() {
            assert!(windowed.sink(r).is_exact());
        }
        // The receivers on 3 threads (one each at least: shares of 1, 1 and 2 when all are
        // touched, fewer threads when fewer are): the same again.
        let mut threaded = harness(net.clone(), &links, seed);
        threaded.set_windowed(true);
        threaded.set_threads(3);
        threaded.per_thread = 1;
        threaded.window.cap = windowed.window.cap;
        assert_eq!(threaded.run_until(secs(30)), Stop::Deadline);
        assert_eq!(outcomes(&threaded), outcomes(&plain), "seed {seed}");
        assert_eq!(threaded.sender().stats(), plain.sender().stats(), "seed {seed}");
        assert_eq!(threaded.trace(), plain.trace(), "seed {seed}");
    }
    // Without latency there is no lookahead: the flag is ignored.
    let mut h = harness(Network::default(), &[Link::default()], 1);
    h.set_windowed(true);
    assert!(!h.windowed());
    assert_eq!(h.run(secs(30)), Stop::Done);
}

#[test]
fn a_windowed_run_until_stops_at_its_deadline() {
    let mut h = harness(lossy(), &[Link::default(); 2], 6);
    h.set_windowed(true);
    let t = Instant::ZERO + Duration::from_millis(7);
    assert_eq!(h.run_until(t), Stop::Deadline);
    assert_eq!(h.now(), t);
    assert!(h.next_event_at().unwrap() > t, "everything due by {t:?} was processed");
    let mut plain = harness(lossy(), &[Link::default(); 2], 6);
    plain.run_until(t);
    assert_eq!(outcomes(&h), outcomes(&plain));
    assert_eq!(h.trace(), plain.trace());
}

#[test]
fn keyed_receivers_on_threads_fare_as_in_the_event_loop() {
    use crate::proto::auth::{Key, KeyConfig, KEY_LEN, PREFIX_LEN};
    let ring = |p: u8| {
        let cfg =
            KeyConfig { key: Key::from_bytes([9; KEY_LEN]), encrypt: true, max_skew_secs: 10 };
        Keyring::new(Some(&cfg), [p; PREFIX_LEN])
    };
    let links = [Link::default(); 5];
    let keyed = |windowed: bool| {
        let mut h = harness(lossy(), &links, 21);
        h.set_keyring(Node::Sender, ring(1));
        // Receiver 2 stays in open mode: it drops every sealed datagram and never completes.
        for r in [0, 1, 3, 4] {
            h.set_keyring(Node::Receiver(r), ring(10 + r as u8));
        }
        h.set_windowed(windowed);
        h.set_threads(2);
        h.per_thread = 1;
        assert_eq!(h.run_until(secs(30)), Stop::Deadline);
        h
    };
    let (plain, threaded) = (keyed(false), keyed(true));
    assert!(threaded.windowed());
    assert!(plain.sender().stats().naks_received > 0, "NAK rounds");
    assert_eq!(outcomes(&threaded), outcomes(&plain));
    assert_eq!(threaded.trace(), plain.trace());
    for r in [0, 1, 3, 4] {
        assert_eq!(threaded.sink(r).outcome(), Some(&Outcome::Complete), "receiver {r}");
        let (a, b) = (threaded.keyring(Node::Receiver(r)), plain.keyring(Node::Receiver(r)));
        assert_eq!(a.map(Keyring::counters), b.map(Keyring::counters), "receiver {r}");
    }
    assert_eq!(threaded.sink(2).outcome(), plain.sink(2).outcome());
    assert_ne!(threaded.sink(2).outcome(), Some(&Outcome::Complete), "open among keyed");
}

#[test]
fn threads_that_draw_their_receivers_copies_fare_as_the_event_loop() {
    // 140 receivers: three words of node bitmap, so 3 threads draw ranges [1, 64), [64, 128)
    // and [128, 141), each seeking the loss stream to its own receivers' words, NAKs from
    // receivers in every range among them. A late joiner's copies before it joins must stay
    // undelivered; a straggler (extra loss, drawn only for kept copies) makes phase 1 draw
    // everything instead, on the same threads.
    let late = Link { joins_at: Instant::ZERO + Duration::from_millis(3), extra_loss: 0.0 };
    let straggler = Link { extra_loss: 0.2, ..Link::default() };
    let cases = [
        (LossModel::Independent(0.05), false),
        (LossModel::Burst { loss: 0.1, burst: 5.0 }, false),
        (LossModel::Shared(0.1), true),
    ];
    for (variant, (loss, stragglers)) in cases.iter().enumerate() {
        let mut links = vec![Link::default(); 140];
        links[70] = late;
        if *stragglers {
            links[130] = straggler;
        }
        let net = Network { loss: loss.clone(), ..lossy() };
        let seed = 30 + variant as u64;
        let mut plain = harness(net.clone(), &links, seed);
        assert_eq!(plain.run_until(secs(30)), Stop::Deadline);
        let mut threaded = harness(net.clone(), &links, seed);
        threaded.set_windowed(true);
        threaded.set_threads(3);
        threaded.per_thread = 1;
        assert_eq!(threaded.links.fixed_draws(), !stragglers);
        assert_eq!(threaded.run_until(secs(30)), Stop::Deadline);
        assert!(plain.is_done() && threaded.is_done(), "{loss:?}");
        assert!(plain.sender().stats().naks_received > 0, "{loss:?}: NAK rounds");
        assert_eq!(outcomes(&threaded), outcomes(&plain), "{loss:?} variant {variant}");
        assert_eq!(threaded.sender().stats(), plain.sender().stats(), "{loss:?}");
        assert_eq!(threaded.trace(), plain.trace(), "{loss:?} variant {variant}");
        for r in 0..links.len() {
            assert!(threaded.sink(r).is_exact(), "receiver {r}");
        }
    }
}
