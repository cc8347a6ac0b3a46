//! The straggler rule's second half, "a fraction of the others" ([`AutoConfig::straggler_fraction`]):
//! a receiver that has held the group as its congested limiting receiver for `exclude_after`
//! is put on trial. For the next `exclude_after` its rate reports are set aside (counted as
//! ignored), the others answer the ticks again and the rate probes upwards in slow start.
//! At the end of the trial, if the rate stands at least at what the receiver held the group
//! to divided by the fraction (the others took that much more without congestion), the
//! receiver is excluded from rate decisions and left to the straggler policy; if not (the
//! others were congested near the same rate: a shared bottleneck, not one straggler's), it
//! steers again and is not tried again for [`RETRY_AFTER`] trials' lengths. Only a minority
//! is ever excluded, as with the floor rule.
//!
//! Without a floor (`--min-rate`) this is what keeps one slow host from setting the whole
//! group's rate for the rest of a push; the cost is a slow-start probe per trial, and, where
//! the bottleneck is shared, one such probe every [`RETRY_AFTER`] × `exclude_after`.
//!
//! [`AutoConfig::straggler_fraction`]: super::AutoConfig::straggler_fraction

use super::{AutoRate, MAX_RATE_NODES};
use crate::proto::time::Instant;

/// A trial that failed is not repeated for this many trial lengths (`exclude_after`).
pub const RETRY_AFTER: u32 = 10;

/// A receiver on trial (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Trial {
    /// Its node id.
    pub(super) node: u32,
    /// When the trial is judged.
    pub(super) until: Instant,
    /// The rate it held the group to when the trial began, bits per second.
    pub(super) limit_bps: f64,
}

impl AutoRate {
    /// Whether `node`'s reports are set aside (it is on trial).
    pub(super) fn on_trial(&self, node: u32) -> bool {
        self.trial.is_some_and(|t| t.node == node)
    }

    /// Start, judge or keep the trial, once per decision (before it).
    pub(super) fn trial_rule(&mut self, now: Instant) {
        let Some(fraction) = self.cfg.straggler_fraction.filter(|f| *f > 0.0 && *f < 1.0) else {
            return;
        };
        if let Some(t) = self.trial {
            if now < t.until {
                return;
            }
            self.trial = None;
            let target = t.limit_bps / fraction;
            if self.rate >= target && self.excluded.len() < MAX_RATE_NODES {
                tracing::info!(
                    "receiver {:08x} held the group to {} kbit/s; without it the others took {} \
                     kbit/s: excluded from rate decisions",
                    t.node,
                    t.limit_bps as u64 / 1000,
                    self.rate as u64 / 1000
                );
                self.excluded.insert(t.node);
                self.let_go(now, t.node);
            } else {
                tracing::info!(
                    "receiver {:08x} back in rate decisions: without it the rate reached {} \
                     kbit/s, short of {} (a shared limit)",
                    t.node,
                    self.rate as u64 / 1000,
                    target as u64 / 1000
                );
                if self.retry_at.len() < MAX_RATE_NODES || self.retry_at.contains_key(&t.node) {
                    self.retry_at.insert(t.node, now + self.cfg.exclude_after * RETRY_AFTER);
                }
            }
            return;
        }
        let Some(node) = self.clr else { return };
        let held = now.saturating_duration_since(self.clr_since) >= self.cfg.exclude_after;
        let congested = self
            .clr_congested
            .is_some_and(|(at, _)| now.saturating_duration_since(at) <= self.interval * 4);
        let minority = self.one_more_is_a_minority();
        let may = self.retry_at.get(&node).is_none_or(|at| now >= *at);
        if !(held && congested && minority && may) {
            return;
        }
        tracing::debug!(
            "receiver {node:08x} has limited the rate to {} kbit/s for {:?}: on trial",
            self.rate as u64 / 1000,
            self.cfg.exclude_after
        );
        self.trial =
            Some(Trial { node, until: now + self.cfg.exclude_after, limit_bps: self.rate });
        self.trials += 1;
        self.let_go(now, node);
        self.slow_start = true;
        self.hold_until = now;
    }
}
