//! Automatic rate control in the rate simulator (`mcast::sim::rate`): issue 17's four cases
//! a host-limited receiver and the straggler rules (a slow receiver excluded at the floor, or
//! dropped while it limits the rate),
//! seeded and on a virtual clock, each asserting its target. `cargo run --example ratesim`
//! plots the same cases.

use mcast::sim::rate::{cases, run, RateRun};

const SEED: u64 = 1;

fn mbps(v: f64) -> f64 {
    v / 1e6
}

/// Mean sender rate over `[from, to)` seconds, Mbit/s.
fn rate(r: &RateRun, from: f64, to: f64) -> f64 {
    mbps(r.mean(from, to, |s| s.rate_bps as f64))
}

#[test]
fn the_group_follows_one_slow_receiver_link_and_the_report_names_it() {
    let r = run(&cases::one_slow_link(SEED));
    let cap = mbps(cases::LINK_BPS as f64 / 2.0);
    let settled = rate(&r, 3.0, 8.0);
    assert!(settled >= 0.85 * cap && settled <= 1.05 * cap, "{settled:.1} of {cap}");
    // Receiver 1 (node first + 1) limited the rate.
    assert_eq!(r.summary.limited_by, Some(r.first_node + 1), "{:?}", r.summary);
    assert!(r.summary.excluded.is_empty());
}

#[test]
fn a_link_that_halves_mid_push_is_followed_within_a_few_round_trips() {
    let r = run(&cases::halving_link(SEED));
    let full = mbps(cases::LINK_BPS as f64);
    let before = rate(&r, 2.0, 4.0);
    assert!(before >= 0.85 * full, "before the drop: {before:.1} of {full}");
    // At 4 s the link halves: within 300 ms the rate is at most 10 % above the new capacity.
    let answered = r
        .samples
        .iter()
        .find(|s| s.t > 4.0 && mbps(s.rate_bps as f64) <= 1.1 * full / 2.0)
        .map(|s| s.t);
    assert!(answered.is_some_and(|t| t <= 4.3), "answered at {answered:?}");
    let after = rate(&r, 5.0, 8.0);
    assert!(after >= 0.85 * full / 2.0 && after <= 1.05 * full / 2.0, "after: {after:.1}");
}

#[test]
fn random_loss_without_congestion_keeps_the_rate_near_capacity() {
    let r = run(&cases::random_loss(SEED));
    let full = mbps(cases::LINK_BPS as f64);
    let settled = rate(&r, 3.0, 8.0);
    assert!(settled >= 0.85 * full, "1 % random loss: {settled:.1} of {full}");
    // The loss was real: every receiver missed about 1 % (seen by the sender as no reason to
    // slow down), and no queue overflowed for long.
    assert!(r.queue_drops.iter().all(|d| *d < 200), "{:?}", r.queue_drops);
}

#[test]
fn a_competing_tcp_flow_keeps_at_least_a_third_of_the_link() {
    let r = run(&cases::competing_tcp(SEED));
    let full = mbps(cases::LINK_BPS as f64);
    // Before the TCP flow starts (2 s), mcast has the uplink to itself.
    let alone = rate(&r, 1.0, 2.0);
    assert!(alone >= 0.7 * full, "alone: {alone:.1} of {full}");
    let tcp = mbps(r.mean(3.0, 8.0, |s| s.tcp_bps as f64));
    assert!(tcp >= full / 3.0, "TCP got {tcp:.1} of {full}");
    // mcast keeps at least its floor and is not excluded: the bottleneck is the whole group's.
    let floor = mbps(cases::competing_tcp(SEED).auto.min_bps as f64);
    assert!(rate(&r, 3.0, 8.0) >= floor);
    assert!(r.summary.excluded.is_empty());
}

#[test]
fn a_host_that_drops_at_its_socket_caps_the_rate_without_decreases() {
    let r = run(&cases::host_limited(SEED));
    let host = mbps(cases::LINK_BPS as f64);
    // The links take twice the host: the rate settles just above what the host takes (its
    // socket overflow held within about 5 %, what FEC and repairs absorb), not below it.
    let settled = rate(&r, 3.0, 8.0);
    assert!(settled >= 0.9 * host && settled <= 1.15 * host, "{settled:.1} of {host}");
    // Socket overflow is not congestion: no train of multiplicative decreases (the 1 %
    // random loss does not cause any either), and the host is named as the limit.
    assert!(r.summary.decreases <= 3, "{:?}", r.summary);
    assert!(r.summary.host_holds > 0, "{:?}", r.summary);
    assert_eq!(r.summary.limited_by, Some(r.first_node + 2), "{:?}", r.summary);
    assert!(r.socket_drops[2] > 0 && r.socket_drops[..2] == [0, 0], "{:?}", r.socket_drops);
    assert!(r.summary.excluded.is_empty());
}

#[test]
fn a_straggler_congested_at_the_floor_is_excluded_and_the_others_set_the_rate() {
    let sc = cases::straggler_floor(SEED);
    let floor = mbps(sc.auto.min_bps as f64);
    let r = run(&sc);
    let full = mbps(cases::LINK_BPS as f64);
    let slow = r.first_node + 1;
    // Never below the floor, whatever the slow receiver says.
    assert!(r.samples.iter().all(|s| mbps(s.rate_bps as f64) >= floor * 0.999), "{:?}", r.summary);
    // Receiver 1 limited the rate at the floor, then was excluded; nobody was dropped.
    assert_eq!(r.summary.excluded, vec![slow], "{:?}", r.summary);
    assert!(r.summary.limiting.iter().any(|(n, _)| *n == slow), "{:?}", r.summary);
    assert!(r.summary.reports_ignored > 0, "{:?}", r.summary);
    assert!(r.dropped.is_empty(), "{:?}", r.dropped);
    // Afterwards the others set the rate: near their links, not at the straggler's floor.
    let after = rate(&r, 9.0, 12.0);
    assert!(after >= 0.8 * full, "after the exclusion: {after:.1} of {full}");
}

#[test]
fn a_limiting_straggler_the_sender_drops_no_longer_holds_the_rate() {
    let r = run(&cases::straggler_dropped(SEED));
    let full = mbps(cases::LINK_BPS as f64);
    let slow = r.first_node + 1;
    assert_eq!(r.dropped, vec![slow], "{:?}", r.summary);
    assert!(r.summary.limiting.iter().any(|(n, _)| *n == slow), "{:?}", r.summary);
    // The dropped receiver was the limiting one: the others speak again and the rate grows.
    let after = rate(&r, 6.0, 8.0);
    assert!(after >= 0.8 * full, "after the drop: {after:.1} of {full}");
}
