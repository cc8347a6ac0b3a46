//! What the sender knows about the group from its feedback: who is out there (the group size
//! estimate that scales echo rate limiting, NAK backoff and auto parity), each receiver's
//! reported loss rate, the repairs each receiver's NAKs called for, and the straggler policy.
//!
//! **Straggler policy.** Each NAK is charged to the receiver that sent it, for the repair symbols
//! it added beyond what was already queued or on its way. A receiver is dropped once both
//! - its charge exceeds `budget` times the object's source symbols (it alone made the sender
//!   send that share of the object again), and
//! - its loss rate exceeds `factor` times the group's median loss rate (and at least 1 %).
//!
//! The second test spares receivers that need many repairs for a good reason: a late joiner
//! (normal loss rate, but most of the object to fetch) and a whole group on a bad link (high
//! median). A dropped receiver's NAKs are answered with a squelch naming it, and it is reported
//! as failed while the rest complete. A drop also needs evidence over time: charges from at
//! least [`STRAGGLER_ROUNDS`] NAK rounds, each at least a GRTT after the last, never one
//! datagram.
//!
//! **Open mode.** Feedback can be forged, so: a node id is bound to the source address it was
//! first heard from, and NAKs or echoes claiming it from another address are ignored (a forger
//! elsewhere cannot get a healthy receiver dropped, nor spend its budget); at most
//! `max_members` node ids are tracked, and ids heard beyond that are counted but not tracked
//! (65,536 made-up ids neither grow memory nor the group size estimate past the bound); auto
//! parity and the median loss use at most [`LOSS_SAMPLE`] members, the first heard, so the cost
//! of a block's parity does not grow with the ids heard.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::proto::time::{Duration, Instant};

/// NAK rounds (at least a GRTT apart) a receiver's charges must span before it can be dropped.
pub const STRAGGLER_ROUNDS: u32 = 3;

/// Members whose loss rates auto parity and the median use at most (the first heard).
pub const LOSS_SAMPLE: usize = 1024;

/// When a receiver is dropped as a straggler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StragglerPolicy {
    /// Repairs a receiver may call for, as a share of the object's source symbols
    /// (`f64::INFINITY`: never drop).
    pub budget: f64,
    /// How many times the group's median loss rate a receiver must exceed to be dropped.
    pub factor: f64,
}

impl Default for StragglerPolicy {
    fn default() -> Self {
        StragglerPolicy { budget: 0.1, factor: 4.0 }
    }
}

/// One receiver as the sender sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    /// Last reported loss rate, parts per million.
    pub loss_ppm: Option<u32>,
    /// Repair symbols its NAKs added.
    pub charged: u64,
    /// Dropped as a straggler.
    pub dropped: bool,
    /// The address its NAKs and echoes come from (bound on the first one).
    pub addr: Option<SocketAddr>,
    /// NAK rounds it was charged in (each at least a GRTT after the last).
    pub rounds: u32,
    /// When the last counted round was.
    pub last_round: Option<Instant>,
}

/// Whether feedback claiming a node id may be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// A tracked member, from its address (bound now if this was its first word).
    Tracked,
    /// Beyond the tracking bound: not tracked individually.
    Untracked,
    /// A tracked member, from another address than it was first heard from: ignore.
    Mismatch,
}

/// The group as heard through feedback.
#[derive(Debug, Clone, Default)]
pub struct Group {
    members: HashMap<u32, Member>,
    /// Node ids in the order first heard (the loss sample's order).
    order: Vec<u32>,
    max_members: usize,
    expected: Option<u32>,
    untracked: u64,
}

impl Group {
    /// An empty group; `expected` receivers if the user said so; at most `max_members`
    /// tracked.
    pub fn new(expected: Option<u32>, max_members: usize) -> Self {
        Group { members: HashMap::new(), order: Vec::new(), max_members, expected, untracked: 0 }
    }

    /// Group size estimate: the receivers expected or tracked, at least 1 (so at most
    /// `max(expected, max_members)`).
    pub fn size(&self) -> u32 {
        let tracked = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        tracked.max(self.expected.unwrap_or(1)).max(1)
    }

    /// Members tracked.
    pub fn tracked(&self) -> usize {
        self.members.len()
    }

    /// NAKs and echoes ([`Group::bind`]) heard from node ids beyond the tracking bound.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// The member `node`, created on first hearing (`None` past the tracking bound).
    pub fn heard(&mut self, node: u32) -> Option<&mut Member> {
        if !self.members.contains_key(&node) {
            if self.members.len() >= self.max_members {
                return None;
            }
            self.order.push(node);
        }
        Some(self.members.entry(node).or_default())
    }

    /// Feedback claiming `node` arrived from `from`: bind the node to it on first hearing.
    pub fn bind(&mut self, node: u32, from: SocketAddr) -> Binding {
        let Some(m) = self.heard(node) else {
            self.untracked += 1;
            return Binding::Untracked;
        };
        match m.addr {
            None => {
                m.addr = Some(from);
                Binding::Tracked
            }
            Some(a) if a == from => Binding::Tracked,
            Some(_) => Binding::Mismatch,
        }
    }

    /// A member, if known.
    pub fn get(&self, node: u32) -> Option<&Member> {
        self.members.get(&node)
    }

    /// Whether `node` has been dropped.
    pub fn is_dropped(&self, node: u32) -> bool {
        self.members.get(&node).is_some_and(|m| m.dropped)
    }

    /// Record a loss report (`u32::MAX`: the receiver has not measured yet).
    pub fn report_loss(&mut self, node: u32, loss_ppm: u32) {
        if loss_ppm > 1_000_000 {
            return;
        }
        if let Some(m) = self.heard(node) {
            m.loss_ppm = Some(loss_ppm);
        }
    }

    /// Reported loss rates of the first [`LOSS_SAMPLE`] members heard that are still in,
    /// sorted ascending, as fractions.
    fn losses(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .order
            .iter()
            .take(LOSS_SAMPLE)
            .filter_map(|n| self.members.get(n))
            .filter(|m| !m.dropped)
            .filter_map(|m| m.loss_ppm)
            .map(|ppm| f64::from(ppm) / 1e6)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The loss rates up to the 90th percentile (what auto parity plans for), of at most
    /// [`LOSS_SAMPLE`] members.
    pub fn loss_sample(&self) -> Vec<f64> {
        let mut v = self.losses();
        let keep = (v.len() * 9).div_ceil(10);
        v.truncate(keep);
        v
    }

    /// Median reported loss rate of the sample (0 when nothing is known).
    pub fn median_loss(&self) -> f64 {
        let v = self.losses();
        if v.is_empty() {
            return 0.0;
        }
        v[v.len() / 2]
    }

    /// Charge `symbols` repair symbols to `node`'s NAK at `now`. Returns true when this drops
    /// it under `policy` (`object_symbols`: source symbols of the whole object; `grtt`: the
    /// least time between two rounds of evidence).
    pub fn charge(
        &mut self,
        now: Instant,
        grtt: Duration,
        node: u32,
        symbols: u32,
        object_symbols: u64,
        policy: &StragglerPolicy,
    ) -> bool {
        let Some(m) = self.heard(node) else { return false };
        m.charged += u64::from(symbols);
        if symbols > 0 && m.last_round.is_none_or(|t| now >= t + grtt) {
            m.rounds += 1;
            m.last_round = Some(now);
        }
        let over_budget = m.charged as f64 > policy.budget * object_symbols as f64;
        let loss = f64::from(m.loss_ppm.unwrap_or(0)) / 1e6;
        // Only a receiver over its budget is compared with the group (a sort per NAK otherwise).
        if m.dropped
            || !over_budget
            || m.rounds < STRAGGLER_ROUNDS
            || loss <= 0.01
            || loss <= policy.factor * self.median_loss()
        {
            return false;
        }
        if let Some(m) = self.members.get_mut(&node) {
            m.dropped = true;
        }
        true
    }

    /// Members dropped so far.
    pub fn dropped(&self) -> impl Iterator<Item = (u32, &Member)> + '_ {
        self.members.iter().filter(|(_, m)| m.dropped).map(|(n, m)| (*n, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRTT: Duration = Duration::from_millis(10);

    fn group(losses: &[u32]) -> Group {
        let mut g = Group::new(None, 4096);
        for (i, ppm) in losses.iter().enumerate() {
            g.report_loss(i as u32 + 10, *ppm);
        }
        g
    }

    fn ten_with_a_straggler() -> Group {
        group(&[10_000; 9].iter().copied().chain([300_000]).collect::<Vec<_>>())
    }

    fn round(r: u64) -> Instant {
        Instant::ZERO + GRTT * r as u32
    }

    #[test]
    fn sample_leaves_out_the_worst_tenth() {
        let g = ten_with_a_straggler();
        assert_eq!(g.loss_sample(), vec![0.01; 9]);
        assert_eq!(g.median_loss(), 0.01);
        assert_eq!(g.size(), 10);
        assert_eq!(Group::new(Some(1000), 4096).size(), 1000);
        let mut g = group(&[]);
        g.report_loss(1, u32::MAX);
        assert!(g.loss_sample().is_empty(), "unmeasured is not zero");
    }

    #[test]
    fn only_a_receiver_far_worse_than_the_group_and_over_budget_is_dropped() {
        let policy = StragglerPolicy { budget: 0.1, factor: 4.0 };
        let mut g = ten_with_a_straggler();
        let straggler = 19;
        // Three rounds a GRTT apart; boundary pair: exactly the budget keeps it, one symbol
        // more drops it.
        assert!(!g.charge(round(0), GRTT, straggler, 40, 1000, &policy));
        assert!(!g.charge(round(1), GRTT, straggler, 30, 1000, &policy));
        assert!(!g.charge(round(2), GRTT, straggler, 30, 1000, &policy));
        assert!(g.charge(round(2), GRTT, straggler, 1, 1000, &policy));
        assert!(g.is_dropped(straggler));
        // A late joiner: over budget but with the group's loss rate.
        for r in 0..5 {
            assert!(!g.charge(round(r), GRTT, 10, 900, 1000, &policy));
        }
        // A group that is all lossy drops nobody.
        let mut bad = group(&[300_000; 10]);
        for r in 0..5 {
            assert!(!bad.charge(round(r), GRTT, 10, 900, 1000, &policy));
        }
        // An infinite budget never drops.
        let never = StragglerPolicy { budget: f64::INFINITY, ..policy };
        let mut g = ten_with_a_straggler();
        for r in 0..5 {
            assert!(!g.charge(round(r), GRTT, straggler, 100_000, 1000, &never));
        }
    }

    #[test]
    fn one_nak_or_a_burst_within_a_grtt_is_not_evidence_enough() {
        let policy = StragglerPolicy::default();
        let mut g = ten_with_a_straggler();
        let straggler = 19;
        // Far over budget at once, and a hundred more NAKs within the same GRTT: one round.
        assert!(!g.charge(round(0), GRTT, straggler, 100_000, 1000, &policy));
        for _ in 0..100 {
            assert!(!g.charge(round(0) + GRTT / 2, GRTT, straggler, 10, 1000, &policy));
        }
        assert_eq!(g.get(straggler).unwrap().rounds, 1);
        // A NAK that adds nothing is no round either.
        assert!(!g.charge(round(5), GRTT, straggler, 0, 1000, &policy));
        assert!(!g.charge(round(6), GRTT, straggler, 1, 1000, &policy), "two rounds");
        assert!(g.charge(round(7), GRTT, straggler, 1, 1000, &policy), "the third drops it");
    }

    #[test]
    fn a_node_id_is_bound_to_its_first_address_and_the_tracked_set_is_bounded() {
        let a: SocketAddr = "198.18.0.2:7000".parse().unwrap();
        let b: SocketAddr = "198.18.0.3:7000".parse().unwrap();
        let mut g = Group::new(Some(2), 3);
        assert_eq!(g.bind(5, a), Binding::Tracked);
        assert_eq!(g.bind(5, a), Binding::Tracked);
        assert_eq!(g.bind(5, b), Binding::Mismatch);
        assert_eq!(g.get(5).unwrap().addr, Some(a), "the first address stays");
        // Boundary pair: the third id is tracked, the fourth is not (and counted).
        assert_eq!(g.bind(6, b), Binding::Tracked);
        assert_eq!(g.bind(7, b), Binding::Tracked);
        assert_eq!(g.bind(8, b), Binding::Untracked);
        g.report_loss(9, 500_000);
        assert_eq!((g.tracked(), g.untracked(), g.size()), (3, 1, 3));
        assert!(g.get(9).is_none());
    }

    #[test]
    fn the_loss_sample_is_bounded_and_takes_the_first_heard() {
        let mut g = Group::new(None, 1 << 16);
        for n in 0..LOSS_SAMPLE as u32 {
            g.report_loss(n, 10_000);
        }
        // Later ids with worse loss do not enter the sample.
        for n in 0..10_000u32 {
            g.report_loss(1 << 20 | n, 500_000);
        }
        assert_eq!(g.size(), LOSS_SAMPLE as u32 + 10_000);
        let sample = g.loss_sample();
        assert_eq!(sample.len(), (LOSS_SAMPLE * 9).div_ceil(10));
        assert!(sample.iter().all(|p| *p == 0.01));
        assert_eq!(g.median_loss(), 0.01);
    }
}
