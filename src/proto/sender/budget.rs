//! Repair budgets: whatever a NAK claims, the repairs it can queue are bounded.
//!
//! Every repair symbol a NAK adds (beyond what is already queued or on its way, see
//! [`Repairs`](super::Repairs)) is taken from two token buckets, counted in repair symbols:
//!
//! - the NAK's node's own bucket, `node_repair_bytes / T` deep, refilled at
//!   `node_repair_share` of the rate (node ids beyond `max_members` share one such bucket);
//! - the total bucket, `total_repair_bytes / T` deep, refilled at `1 - min_data_share` of the
//!   rate (the most repairs may use while there is new data, see
//!   [`DataShare`](super::DataShare)), of which one NAK may take at most half of what it holds:
//!   a stream of NAKs under made-up node ids cannot drain it before the real receivers' NAKs
//!   get their share (each of those still finds half of what is left).
//!
//! A need the buckets cannot cover is cut to what they hold (and counted in
//! `repairs_over_budget`); a receiver that is really short asks again once its repair wait
//! lapses. So, with `T` the symbol size, `K_b` the source symbols of block `b`, `m` the repair
//! margin, and at most [`MAX_NEEDS`](crate::proto::wire::MAX_NEEDS) needs per NAK:
//!
//! **One NAK costs at most
//! `N = min(⌊node_repair_bytes / T⌋, ⌊⌊total_repair_bytes / T⌋ / 2⌋, Σ_{its needs} (K_b + NEED_SLACK + m))`
//! repair symbols** (`NEED_SLACK` = 16, the clamp of a need's count; see `feedback`). With the
//! defaults (4 MiB, 16 MiB, T = 1400, K = 749) that is 2995 symbols, 4 MiB, whatever the object
//! size; a node's NAKs cost at most `N` plus `node_repair_share × rate` over any interval, and
//! all NAKs together at most `⌊total_repair_bytes / T⌋` plus `(1 - min_data_share) × rate`.

use crate::proto::time::Instant;
use std::collections::HashMap;

/// The share of the total bucket one NAK may take.
const TOTAL_PER_NAK: f64 = 0.5;

/// A token bucket in repair symbols.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(depth: f64, now: Instant) -> Self {
        Bucket { tokens: depth, last: now }
    }

    fn refill(&mut self, now: Instant, per_us: f64, depth: f64) {
        let dt = now.saturating_duration_since(self.last).as_micros() as f64;
        self.tokens = (self.tokens + dt * per_us).min(depth);
        if now > self.last {
            self.last = now;
        }
    }
}

/// The per-node and total repair budgets (see the module docs).
#[derive(Debug, Clone)]
pub struct RepairBudget {
    node_depth: f64,
    total_depth: f64,
    /// Symbols per microsecond refilling each node's bucket, and the total one.
    node_per_us: f64,
    total_per_us: f64,
    node_share: f64,
    total_share: f64,
    symbol_size: u16,
    nodes: HashMap<u32, Bucket>,
    /// Shared by the node ids not tracked individually.
    untracked: Bucket,
    total: Bucket,
}

impl RepairBudget {
    /// Budgets for symbols of `symbol_size` bytes at `rate_bps`, full at `now`.
    pub fn new(
        node_bytes: u64,
        node_share: f64,
        total_bytes: u64,
        min_data_share: f64,
        symbol_size: u16,
        rate_bps: u64,
        now: Instant,
    ) -> Self {
        let t = f64::from(symbol_size.max(1));
        let node_depth = (node_bytes as f64 / t).floor();
        let total_depth = (total_bytes as f64 / t).floor();
        let mut b = RepairBudget {
            node_depth,
            total_depth,
            node_per_us: 0.0,
            total_per_us: 0.0,
            node_share: node_share.clamp(0.0, 1.0),
            total_share: (1.0 - min_data_share).clamp(0.0, 1.0),
            symbol_size: symbol_size.max(1),
            nodes: HashMap::new(),
            untracked: Bucket::full(node_depth, now),
            total: Bucket::full(total_depth, now),
        };
        b.set_rate(now, rate_bps);
        b
    }

    /// Refill at `rate_bps` from `now` on.
    pub fn set_rate(&mut self, now: Instant, rate_bps: u64) {
        self.total.refill(now, self.total_per_us, self.total_depth);
        let symbols_per_us = rate_bps as f64 / 8.0 / f64::from(self.symbol_size) / 1e6;
        self.node_per_us = symbols_per_us * self.node_share;
        self.total_per_us = symbols_per_us * self.total_share;
    }

    /// The most repair symbols one NAK can add: a node's depth or half the total's.
    pub fn per_nak_max(&self) -> u32 {
        let most = self.node_depth.min((self.total_depth * TOTAL_PER_NAK).floor());
        most.min(f64::from(u32::MAX)) as u32
    }

    /// Repair symbols a NAK of `node` may add at `now` (`tracked`: the node has a bucket of
    /// its own, else it shares the untracked one).
    pub fn allowance(&mut self, now: Instant, node: u32, tracked: bool) -> u32 {
        self.total.refill(now, self.total_per_us, self.total_depth);
        let (per_us, depth) = (self.node_per_us, self.node_depth);
        let bucket = self.bucket(now, node, tracked);
        bucket.refill(now, per_us, depth);
        let tokens = bucket.tokens.min(self.total.tokens * TOTAL_PER_NAK).max(0.0);
        tokens.floor().min(f64::from(u32::MAX)) as u32
    }

    /// Take `symbols` (at most the last [`RepairBudget::allowance`]) from `node`'s bucket and
    /// the total.
    pub fn spend(&mut self, now: Instant, node: u32, tracked: bool, symbols: u32) {
        let s = f64::from(symbols);
        self.total.refill(now, self.total_per_us, self.total_depth);
        let (per_us, depth) = (self.node_per_us, self.node_depth);
        let bucket = self.bucket(now, node, tracked);
        bucket.refill(now, per_us, depth);
        bucket.tokens -= s;
        self.total.tokens -= s;
    }

    fn bucket(&mut self, now: Instant, node: u32, tracked: bool) -> &mut Bucket {
        if !tracked {
            return &mut self.untracked;
        }
        let depth = self.node_depth;
        self.nodes.entry(node).or_insert_with(|| Bucket::full(depth, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::time::Duration;

    #[test]
    fn a_node_gets_its_depth_then_its_share_of_the_rate() {
        // 8 Mbit/s of 1000-byte symbols = 1000 symbols/s; node share 0.5, total 0.75.
        let t0 = Instant::ZERO;
        let mut b = RepairBudget::new(100_000, 0.5, 1_000_000, 0.25, 1000, 8_000_000, t0);
        assert_eq!(b.per_nak_max(), 100);
        assert_eq!(b.allowance(t0, 7, true), 100);
        b.spend(t0, 7, true, 100);
        assert_eq!(b.allowance(t0, 7, true), 0, "used up");
        assert_eq!(b.allowance(t0, 8, true), 100, "another node has its own");
        // 100 ms later: 50 symbols back (500/s).
        let later = t0 + Duration::from_millis(100);
        assert_eq!(b.allowance(later, 7, true), 50);
        // Untracked ids share one bucket (full again after 200 ms).
        let later = later + Duration::from_millis(200);
        b.spend(later, 1, false, 100);
        assert_eq!(b.allowance(later, 2, false), 0);
    }

    #[test]
    fn the_total_bounds_all_nodes_together() {
        // Total depth 400 symbols, refilled at 750/s; each node 150 deep; a NAK takes at
        // most half of the total left.
        let t0 = Instant::ZERO;
        let mut b = RepairBudget::new(150_000, 0.5, 400_000, 0.25, 1000, 8_000_000, t0);
        assert_eq!(b.per_nak_max(), 150);
        let mut grants = Vec::new();
        for node in 0..5 {
            let a = b.allowance(t0, node, true);
            b.spend(t0, node, true, a);
            grants.push(a);
        }
        assert_eq!(grants, [150, 125, 62, 31, 16], "each NAK finds half of what is left");
        let later = t0 + Duration::from_millis(100);
        // 16 left + 75 back in 100 ms: half of it.
        assert_eq!(b.allowance(later, 99, true), 45);
        // A new rate refills faster from when it is set.
        b.set_rate(later, 16_000_000);
        assert_eq!(b.allowance(later + Duration::from_millis(100), 99, true), 120);
    }
}
