//! Automatic rate control in the rate simulator (`mcast::sim::rate`): issue 17's four cases,
//! a slow link that marks ECN instead of dropping, a host-limited receiver and the straggler
//! rules (a slow receiver excluded at the floor, or
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

/// Drops on receiver `i`'s link after `from` seconds.
fn drops_after(r: &RateRun, i: usize, from: f64) -> usize {
    r.queue_drop_times[i].iter().filter(|t| t.as_secs_f64() > from).count()
}

/// Highest queueing delay on receiver `i`'s link over the samples within `(from, to]`, ms.
fn queue_ms(r: &RateRun, i: usize, from: f64, to: f64) -> f64 {
    r.samples
        .iter()
        .filter(|s| s.t > from && s.t <= to)
        .map(|s| s.queue_delay[i].as_secs_f64() * 1e3)
        .fold(0.0, f64::max)
}

#[test]
fn ecn_marks_take_the_place_of_drops_and_keep_the_queue_short() {
    let plain = run(&cases::one_slow_link(SEED));
    let ecn = run(&cases::ecn_slow_link(SEED));
    let cap = mbps(cases::LINK_BPS as f64 / 2.0);
    let settled = rate(&ecn, 3.0, 8.0);
    eprintln!(
        "ECN: settled {settled:.1} of {cap} Mbit/s, {} marks, drops after 0.1 s {}, queue \
         after 1 s up to {:.1} ms; drop-tail: settled {:.1}, drops after 0.1 s {}, queue up to \
         {:.1} ms",
        ecn.queue_marks[1],
        drops_after(&ecn, 1, 0.1),
        queue_ms(&ecn, 1, 1.0, 8.0),
        rate(&plain, 3.0, 8.0),
        drops_after(&plain, 1, 0.1),
        queue_ms(&plain, 1, 1.0, 8.0),
    );
    // The group follows the slow link as well as on the drop-tail one...
    assert!(settled >= 0.85 * cap && settled <= 1.05 * cap, "{settled:.1} of {cap}");
    assert_eq!(ecn.summary.limited_by, Some(ecn.first_node + 1), "{:?}", ecn.summary);
    // ...told by marks: slow start's overshoot, which drop-tail answers with drops, is marked
    // instead (the drops at 0 s are the start's burst, before any feedback can exist).
    assert!(ecn.queue_marks[1] > 0, "the slow link marked");
    assert!(drops_after(&plain, 1, 0.1) > 0, "drop-tail dropped at slow start");
    assert_eq!(drops_after(&ecn, 1, 0.1), 0, "marked, not dropped");
    // And the marks come at a millisecond of queue, long before the 4 ms delay target: the
    // settled queue stays near the threshold, a fraction of what drop-tail holds.
    let (q_ecn, q_plain) = (queue_ms(&ecn, 1, 1.0, 8.0), queue_ms(&plain, 1, 1.0, 8.0));
    assert!(q_ecn <= 2.0 * cases::ECN_MARK_MS as f64, "queue {q_ecn:.1} ms with ECN");
    assert!(q_ecn < 0.5 * q_plain, "queue {q_ecn:.1} ms with ECN, {q_plain:.1} ms drop-tail");
}

#[test]
fn a_receiver_far_slower_than_the_others_is_tried_out_and_excluded_without_a_floor() {
    let r = run(&cases::straggler_fraction(SEED));
    let full = mbps(cases::LINK_BPS as f64);
    let settled = rate(&r, 9.0, 12.0);
    eprintln!(
        "fraction: trials {}, excluded {:?}, rate 2-3 s {:.1}, 9-12 s {settled:.1} of {full}",
        r.summary.trials,
        r.summary.excluded,
        rate(&r, 2.0, 3.0)
    );
    // First it holds the group at its quarter of the link...
    assert!(rate(&r, 2.0, 3.0) <= 0.35 * full, "{:.1}", rate(&r, 2.0, 3.0));
    // ...then, tried out, it is excluded and the others set the rate.
    assert_eq!(r.summary.excluded, vec![r.first_node + 1], "{:?}", r.summary);
    assert!(settled >= 0.8 * full, "after the trial: {settled:.1} of {full}");
}

#[test]
fn where_the_limit_is_shared_the_trial_gives_the_receiver_back_its_say() {
    let r = run(&cases::shared_limit_fraction(SEED));
    let full = mbps(cases::LINK_BPS as f64);
    eprintln!(
        "shared: trials {}, excluded {:?}, rate 3-12 s {:.1} of {full}",
        r.summary.trials,
        r.summary.excluded,
        rate(&r, 3.0, 12.0)
    );
    assert!(r.summary.trials >= 1, "somebody limited the rate and was tried: {:?}", r.summary);
    assert!(r.summary.excluded.is_empty(), "{:?}", r.summary);
    // The probe of a failed trial costs little: the group stays near the shared link.
    let kept = rate(&r, 3.0, 12.0);
    assert!(kept >= 0.75 * full && kept <= 1.1 * full, "{kept:.1} of {full}");
}
