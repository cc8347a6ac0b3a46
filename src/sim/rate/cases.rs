//! The cases of issue 17 (and a host-limited receiver, and the straggler rule's floor), shared by `tests/rate.rs` (which asserts their targets) and
//! `examples/ratesim.rs` (which plots them).

use super::{queue_bytes, Bottleneck, Scenario};
use crate::proto::time::Duration;

/// Capacity of the links in the cases, bits per second (kept modest so a case runs in about
/// a second of wall time).
pub const LINK_BPS: u64 = 40_000_000;

/// Three receivers; receiver 1's link is half as fast as the others' (a 20 ms queue).
pub fn one_slow_link(seed: u64) -> Scenario {
    let mut sc = Scenario::links(3, 2 * LINK_BPS, 20, seed);
    sc.receivers[1].link = Bottleneck::new(LINK_BPS / 2, queue_bytes(LINK_BPS / 2, 20));
    sc
}

/// Two receivers; at 4 s receiver 0's link drops to half its capacity.
pub fn halving_link(seed: u64) -> Scenario {
    let mut sc = Scenario::links(2, LINK_BPS, 20, seed);
    let halves = vec![(Duration::ZERO, LINK_BPS), (Duration::from_secs(4), LINK_BPS / 2)];
    sc.receivers[0].link = Bottleneck::scheduled(halves, queue_bytes(LINK_BPS, 20));
    sc
}

/// Three receivers, each link with 1 % random loss and no congestion.
pub fn random_loss(seed: u64) -> Scenario {
    let mut sc = Scenario::links(3, LINK_BPS, 20, seed);
    for r in &mut sc.receivers {
        r.loss = 0.01;
    }
    sc
}

/// Two receivers behind the sender's uplink, which a TCP-like flow shares from 2 s on.
pub fn competing_tcp(seed: u64) -> Scenario {
    let mut sc = Scenario::links(2, 4 * LINK_BPS, 20, seed);
    sc.uplink = Some(Bottleneck::new(LINK_BPS, queue_bytes(LINK_BPS, 20)));
    sc.tcp_from = Some(Duration::from_secs(2));
    sc
}

/// Three receivers on links twice [`LINK_BPS`], each with 1 % random loss; receiver 2's host
/// takes only [`LINK_BPS`] (beyond a 2 ms burst its socket drops, without a queue).
pub fn host_limited(seed: u64) -> Scenario {
    let mut sc = Scenario::links(3, 2 * LINK_BPS, 20, seed);
    for r in &mut sc.receivers {
        r.loss = 0.01;
    }
    sc.receivers[2].host = Some(Bottleneck::new(LINK_BPS, queue_bytes(LINK_BPS, 2)));
    sc
}

/// The straggler rule: three receivers on [`LINK_BPS`] links, receiver 1's at a quarter of it,
/// a floor (`--min-rate`) of half the link and a straggler policy that never drops: receiver
/// 1 is congested at the floor, so after `exclude_after` (3 s) it is excluded from rate
/// decisions and the others set the rate. 12 s.
pub fn straggler_floor(seed: u64) -> Scenario {
    let mut sc = straggler_dropped(seed);
    sc.straggler.budget = f64::INFINITY;
    sc.duration = Duration::from_secs(12);
    sc.object_bytes = (LINK_BPS as f64 / 8.0 * 12.0) as usize;
    sc
}

/// The same straggler under the default straggler policy: the sender drops it (it loses half
/// of what it is sent) before the floor rule's time is up, while it is the limiting receiver;
/// the others then set the rate.
pub fn straggler_dropped(seed: u64) -> Scenario {
    let mut sc = Scenario::links(3, LINK_BPS, 20, seed);
    sc.receivers[1].link = Bottleneck::new(LINK_BPS / 4, queue_bytes(LINK_BPS / 4, 20));
    sc.auto.min_bps = LINK_BPS / 2;
    sc
}

/// The "fraction of the others" rule: three receivers on [`LINK_BPS`] links, receiver 1's at
/// a quarter of it, no floor to speak of (2 Mbit/s), a straggler policy that never drops, and
/// `straggler_fraction` 0.5: receiver 1 limits the group, is tried out after 3 s, and is
/// excluded once the others have taken twice its rate without it. 12 s.
pub fn straggler_fraction(seed: u64) -> Scenario {
    let mut sc = Scenario::links(3, LINK_BPS, 20, seed);
    sc.receivers[1].link = Bottleneck::new(LINK_BPS / 4, queue_bytes(LINK_BPS / 4, 20));
    sc.straggler.budget = f64::INFINITY;
    sc.auto.straggler_fraction = Some(0.5);
    sc.duration = Duration::from_secs(12);
    sc.object_bytes = (LINK_BPS as f64 / 8.0 * 12.0) as usize;
    sc
}

/// The same rule where the limit is shared: three receivers behind one uplink of
/// [`LINK_BPS`] (their own links four times faster). Whoever limits is tried out, the others
/// are congested at the same rate, and nobody is excluded. 12 s.
pub fn shared_limit_fraction(seed: u64) -> Scenario {
    let mut sc = Scenario::links(3, 4 * LINK_BPS, 20, seed);
    sc.uplink = Some(Bottleneck::new(LINK_BPS, queue_bytes(LINK_BPS, 20)));
    sc.straggler.budget = f64::INFINITY;
    sc.auto.straggler_fraction = Some(0.5);
    sc.duration = Duration::from_secs(12);
    sc.object_bytes = (LINK_BPS as f64 / 8.0 * 12.0) as usize;
    sc
}

/// [`one_slow_link`] with an ECN-marking AQM on the slow link: what waits there longer than
/// [`ECN_MARK_MS`] is marked Congestion Experienced, not dropped.
pub fn ecn_slow_link(seed: u64) -> Scenario {
    let mut sc = one_slow_link(seed);
    let link = sc.receivers[1].link.clone();
    sc.receivers[1].link = link.marking(Duration::from_millis(ECN_MARK_MS));
    sc
}

/// The marking threshold of [`ecn_slow_link`], milliseconds (below the receivers' 4 ms delay
/// target, as fq_codel's 5 ms target is near it).
pub const ECN_MARK_MS: u64 = 1;

/// Every case with its name (the plots' file names).
pub fn all(seed: u64) -> Vec<(&'static str, Scenario)> {
    vec![
        ("one-slow-link", one_slow_link(seed)),
        ("ecn-slow-link", ecn_slow_link(seed)),
        ("halving-link", halving_link(seed)),
        ("random-loss", random_loss(seed)),
        ("competing-tcp", competing_tcp(seed)),
        ("host-limited", host_limited(seed)),
        ("straggler-floor", straggler_floor(seed)),
        ("straggler-dropped", straggler_dropped(seed)),
        ("straggler-fraction", straggler_fraction(seed)),
        ("shared-limit-fraction", shared_limit_fraction(seed)),
    ]
}
