//! Simulator scenarios: every receiver ends with the exact object under loss, the sender knows
//! who finished, and the same seed always gives the same trace.

use mcast::proto::receiver::Outcome;
use mcast::proto::time::Duration;
use mcast::sim::{run, SimConfig, SimResult};

fn check(r: &SimResult, n: usize, what: &str) {
    assert_eq!(r.complete(), n, "{what}: receivers with a correct copy");
    for rx in &r.receivers {
        assert_eq!(rx.outcome, Some(Outcome::Complete), "{what}: receiver {}", rx.node);
        assert_eq!(rx.stats.hash_failures, 0, "{what}: no corrupt block ever decoded");
    }
    assert_eq!(r.reports, n, "{what}: the sender holds every report");
    assert!(r.sender_finished_at.is_some(), "{what}: the sender finished");
}

#[test]
fn scenario_matrix_every_receiver_gets_the_exact_object() {
    println!("receivers  loss  seconds  data  repair  naks  suppressed");
    for n in [1usize, 10, 100] {
        for loss in [0.0, 0.01, 0.05, 0.20] {
            let r = run(&SimConfig::small(n, loss, 42));
            check(&r, n, &format!("n={n} loss={loss}"));
            let suppressed: u64 = r.receivers.iter().map(|x| x.stats.naks_suppressed).sum();
            println!(
                "{n:>9} {loss:>5} {:>8.3} {:>5} {:>7} {:>5} {:>11}",
                r.last_completion().unwrap().as_secs_f64(),
                r.sender.data_packets,
                r.sender.repair_packets,
                r.sender.naks_received,
                suppressed
            );
            if loss == 0.0 {
                assert_eq!(r.sender.naks_received, 0, "no loss, no NAK");
                assert_eq!(r.sender.repair_packets, r.sender.proactive_repair_packets);
            }
        }
    }
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let a = run(&SimConfig::small(10, 0.05, 9));
    let b = run(&SimConfig::small(10, 0.05, 9));
    let c = run(&SimConfig::small(10, 0.05, 10));
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.end, b.end);
    assert_eq!(a.sender, b.sender);
    assert_ne!(a.trace, c.trace);
}

#[test]
fn odd_sizes_and_multi_block_manifest() {
    for size in [0usize, 1, 255, 257, 16 * 1024 - 1, 16 * 1024 + 1] {
        let cfg = SimConfig { object_size: size, ..SimConfig::small(3, 0.05, 3) };
        check(&run(&cfg), 3, &format!("size={size}"));
    }
    // 1 KiB blocks: 1024 block hashes make a manifest of several blocks.
    let cfg = SimConfig {
        object_size: 1 << 20,
        symbol_size: 64,
        block_symbols: 16,
        ..SimConfig::small(3, 0.05, 4)
    };
    check(&run(&cfg), 3, "multi-block manifest");
}

#[test]
fn no_proactive_repair_relies_on_naks() {
    let mut cfg = SimConfig::small(10, 0.05, 5);
    cfg.sender.fec_overhead = 0.0;
    cfg.sender.auto_parity = false;
    let r = run(&cfg);
    check(&r, 10, "overhead 0");
    assert_eq!(r.sender.proactive_repair_packets, 0);
    assert!(r.sender.naks_received > 0);
}

#[test]
fn lossy_feedback_still_completes() {
    // 20 % loss hits NAKs, echoes, reports and acks too (every copy is lossy).
    let r = run(&SimConfig::small(5, 0.2, 6));
    check(&r, 5, "lossy feedback");
}

/// Every receiver needs about as much again as it got; sending more than twice that means
/// repairs were sent for losses already repaired.
fn assert_no_repair_storm(r: &SimResult) {
    assert!(
        r.sender.repair_packets < 3 * r.sender.data_packets,
        "repair storm: {}",
        r.sender.repair_packets
    );
}

#[test]
fn slow_receivers_converge_without_repair_storms() {
    // The sender sends 43k datagrams/s; these receivers handle 20k/s with a 50 ms queue, so
    // about half of every pass is dropped at their "socket buffer" and their NAKs run late.
    let mut cfg = SimConfig { object_size: 2 << 20, ..SimConfig::small(3, 0.0, 8) };
    cfg.receiver_service = Duration::from_micros(50);
    let r = run(&cfg);
    let drops: u64 = r.receivers.iter().map(|x| x.queue_drops).sum();
    println!(
        "drops={drops} data={} repair={} naks={} end={:?}",
        r.sender.data_packets, r.sender.repair_packets, r.sender.naks_received, r.end
    );
    check(&r, 3, "slow receivers");
    assert!(drops > 1000, "the scenario really overloads them");
    assert_no_repair_storm(&r);
}

#[test]
fn a_full_receiver_asks_only_for_what_it_can_take() {
    // Few block slots and slow receivers: blocks beyond the slots must wait their turn rather
    // than be NAKed, repaired and dropped again.
    let mut cfg = SimConfig { object_size: 2 << 20, ..SimConfig::small(3, 0.05, 11) };
    cfg.receiver_service = Duration::from_micros(50);
    cfg.receiver.max_pending_blocks = 3;
    let r = run(&cfg);
    let mem: u64 = r.receivers.iter().map(|x| x.stats.dropped_memory).sum();
    println!(
        "dropped_memory={mem} data={} repair={} naks={} end={:?}",
        r.sender.data_packets, r.sender.repair_packets, r.sender.naks_received, r.end
    );
    check(&r, 3, "small memory");
    assert_no_repair_storm(&r);
}

#[test]
fn a_late_joiner_recovers_every_earlier_block_through_repairs() {
    // The push takes about 45 ms; receiver 1 starts listening at 25 ms, past half of it.
    let mut cfg = SimConfig::small(3, 0.01, 12);
    cfg.late_join = vec![(1, Duration::from_millis(25))];
    let r = run(&cfg);
    check(&r, 3, "late join");
    let late = &r.receivers[1];
    let early = r.receivers[0].completed_at.unwrap();
    assert!(late.completed_at.unwrap() > early, "it really joined late");
    assert!(late.stats.naks_sent > 0, "it asked for what it missed");
}

#[test]
fn carousel_serves_a_receiver_that_appears_after_the_first_pass() {
    // Receiver 2 appears at 60 ms, after the first pass (about 45 ms); the second pass and the
    // announcement that starts it let it complete.
    let mut cfg = SimConfig::small(3, 0.01, 13);
    cfg.sender.repeat = Some(2);
    cfg.late_join = vec![(2, Duration::from_millis(60))];
    let r = run(&cfg);
    check(&r, 3, "carousel");
    assert!(r.receivers[2].completed_at.unwrap() > Duration::from_millis(60));
    assert!(r.sender.data_packets > 2053, "a second pass went out: {}", r.sender.data_packets);
}

/// Ten receivers at 1 % loss, one of them (index 0, node 2) at 30 % more.
fn straggler_cfg() -> SimConfig {
    let mut cfg = SimConfig { object_size: 2 << 20, ..SimConfig::small(10, 0.01, 14) };
    cfg.extra_loss = vec![(0, 0.30)];
    cfg
}

#[test]
fn a_straggler_is_dropped_and_the_rest_complete() {
    let r = run(&straggler_cfg());
    assert_eq!(r.dropped, vec![2], "the lossy receiver is dropped");
    let straggler = &r.receivers[0];
    match &straggler.outcome {
        Some(Outcome::Failed(why)) => assert!(why.contains("straggler"), "{why}"),
        other => panic!("straggler outcome {other:?}"),
    }
    assert!(!straggler.correct);
    for rx in &r.receivers[1..] {
        assert!(rx.correct, "receiver {} completes", rx.node);
        assert_eq!(rx.outcome, Some(Outcome::Complete));
    }
    assert!(r.sender_finished_at.is_some(), "the sender does not wait for it forever");
    // Serving it to the end costs far more repair than dropping it.
    let mut cfg = straggler_cfg();
    cfg.sender.straggler.budget = f64::INFINITY;
    let served = run(&cfg);
    println!("repairs: dropped {} / served {}", r.payload_repairs, served.payload_repairs);
    assert!(r.payload_repairs * 3 < served.payload_repairs * 2);
}

#[test]
fn without_a_budget_the_straggler_is_served_to_the_end() {
    // The other side of the boundary: the same group with the policy off completes entirely.
    let mut cfg = straggler_cfg();
    cfg.sender.straggler.budget = f64::INFINITY;
    let r = run(&cfg);
    assert!(r.dropped.is_empty());
    check(&r, 10, "no straggler policy");
}

#[test]
fn a_block_the_sender_cannot_read_fails_receivers_clearly() {
    let mut cfg = SimConfig::small(3, 0.0, 15);
    cfg.unreadable_blocks = vec![5];
    let r = run(&cfg);
    assert!(r.sender.squelches_sent > 0);
    for rx in &r.receivers {
        assert!(!rx.correct);
        match &rx.outcome {
            Some(Outcome::Failed(why)) => assert!(why.contains("block 5"), "{why}"),
            other => panic!("receiver {} outcome {other:?}", rx.node),
        }
    }
    assert_eq!(r.reports, 3, "each reported its failure");
    assert!(r.sender_finished_at.is_some());
}
