//! Simulator scenarios: every receiver ends with the exact object under loss, the sender knows
//! who finished, and the same seed always gives the same trace.

use mcast::proto::receiver::Outcome;
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

#[test]
fn slow_receivers_converge_without_repair_storms() {
    // The sender sends 43k datagrams/s; these receivers handle 20k/s with a 50 ms queue, so
    // about half of every pass is dropped at their "socket buffer" and their NAKs run late.
    let mut cfg = SimConfig { object_size: 2 << 20, ..SimConfig::small(3, 0.0, 8) };
    cfg.receiver_service = mcast::proto::time::Duration::from_micros(50);
    let r = run(&cfg);
    let drops: u64 = r.receivers.iter().map(|x| x.queue_drops).sum();
    println!(
        "drops={drops} data={} repair={} naks={} end={:?}",
        r.sender.data_packets, r.sender.repair_packets, r.sender.naks_received, r.end
    );
    check(&r, 3, "slow receivers");
    assert!(drops > 1000, "the scenario really overloads them");
    // Every receiver needs about as much again as it got; sending more than twice that
    // means repairs were sent for losses already repaired.
    assert!(
        r.sender.repair_packets < 3 * r.sender.data_packets,
        "repair storm: {}",
        r.sender.repair_packets
    );
}

#[test]
fn a_full_receiver_asks_only_for_what_it_can_take() {
    // Few block slots and slow receivers: blocks beyond the slots must wait their turn rather
    // than be NAKed, repaired and dropped again.
    let mut cfg = SimConfig { object_size: 2 << 20, ..SimConfig::small(3, 0.05, 11) };
    cfg.receiver_service = mcast::proto::time::Duration::from_micros(50);
    cfg.receiver.max_pending_blocks = 3;
    let r = run(&cfg);
    let mem: u64 = r.receivers.iter().map(|x| x.stats.dropped_memory).sum();
    println!(
        "dropped_memory={mem} data={} repair={} naks={} end={:?}",
        r.sender.data_packets, r.sender.repair_packets, r.sender.naks_received, r.end
    );
    check(&r, 3, "small memory");
    assert!(
        r.sender.repair_packets < 3 * r.sender.data_packets,
        "repair storm: {}",
        r.sender.repair_packets
    );
}
