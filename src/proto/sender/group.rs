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
//! as failed while the rest complete.

use std::collections::HashMap;

/// Feedback senders tracked at most (a bound against forged node ids).
const MAX_MEMBERS: usize = 1 << 16;

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
}

/// The group as heard through feedback.
#[derive(Debug, Clone, Default)]
pub struct Group {
    members: HashMap<u32, Member>,
    expected: Option<u32>,
}

impl Group {
    /// An empty group; `expected` receivers if the user said so.
    pub fn new(expected: Option<u32>) -> Self {
        Group { members: HashMap::new(), expected }
    }

    /// Group size estimate: the receivers expected or heard from, at least 1.
    pub fn size(&self) -> u32 {
        (self.members.len() as u32).max(self.expected.unwrap_or(1)).max(1)
    }

    /// The member `node`, created on first hearing (`None` past the tracking bound).
    pub fn heard(&mut self, node: u32) -> Option<&mut Member> {
        if self.members.len() >= MAX_MEMBERS && !self.members.contains_key(&node) {
            return None;
        }
        Some(self.members.entry(node).or_default())
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

    /// Reported loss rates of the members still in, sorted ascending, as fractions.
    fn losses(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .members
            .values()
            .filter(|m| !m.dropped)
            .filter_map(|m| m.loss_ppm)
            .map(|ppm| f64::from(ppm) / 1e6)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The loss rates up to the 90th percentile (what auto parity plans for).
    pub fn loss_sample(&self) -> Vec<f64> {
        let mut v = self.losses();
        let keep = (v.len() * 9).div_ceil(10);
        v.truncate(keep);
        v
    }

    /// Median reported loss rate (0 when nothing is known).
    pub fn median_loss(&self) -> f64 {
        let v = self.losses();
        if v.is_empty() {
            return 0.0;
        }
        v[v.len() / 2]
    }

    /// Charge `symbols` repair symbols to `node`. Returns true when this drops it under
    /// `policy` (`object_symbols`: source symbols of the whole object).
    pub fn charge(
        &mut self,
        node: u32,
        symbols: u32,
        object_symbols: u64,
        policy: &StragglerPolicy,
    ) -> bool {
        let Some(m) = self.heard(node) else { return false };
        m.charged += u64::from(symbols);
        let over_budget = m.charged as f64 > policy.budget * object_symbols as f64;
        let loss = f64::from(m.loss_ppm.unwrap_or(0)) / 1e6;
        // Only a receiver over its budget is compared with the group (a sort per NAK otherwise).
        if m.dropped || !over_budget || loss <= 0.01 || loss <= policy.factor * self.median_loss() {
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

    fn group(losses: &[u32]) -> Group {
        let mut g = Group::new(None);
        for (i, ppm) in losses.iter().enumerate() {
            g.report_loss(i as u32 + 10, *ppm);
        }
        g
    }

    #[test]
    fn sample_leaves_out_the_worst_tenth() {
        let g = group(&[10_000; 9].iter().copied().chain([300_000]).collect::<Vec<_>>());
        assert_eq!(g.loss_sample(), vec![0.01; 9]);
        assert_eq!(g.median_loss(), 0.01);
        assert_eq!(g.size(), 10);
        assert_eq!(Group::new(Some(1000)).size(), 1000);
        let mut g = group(&[]);
        g.report_loss(1, u32::MAX);
        assert!(g.loss_sample().is_empty(), "unmeasured is not zero");
    }

    #[test]
    fn only_a_receiver_far_worse_than_the_group_and_over_budget_is_dropped() {
        let policy = StragglerPolicy { budget: 0.1, factor: 4.0 };
        let mut g = group(&[10_000; 9].iter().copied().chain([300_000]).collect::<Vec<_>>());
        let straggler = 19;
        // Boundary pair: exactly the budget keeps it, one symbol more drops it.
        assert!(!g.charge(straggler, 100, 1000, &policy));
        assert!(g.charge(straggler, 1, 1000, &policy));
        assert!(g.is_dropped(straggler));
        // A late joiner: over budget but with the group's loss rate.
        assert!(!g.charge(10, 900, 1000, &policy));
        // A group that is all lossy drops nobody.
        let mut bad = group(&[300_000; 10]);
        assert!(!bad.charge(10, 900, 1000, &policy));
        // An infinite budget never drops.
        let never = StragglerPolicy { budget: f64::INFINITY, ..policy };
        let mut g = group(&[10_000; 9].iter().copied().chain([300_000]).collect::<Vec<_>>());
        assert!(!g.charge(straggler, 100_000, 1000, &never));
    }
}
