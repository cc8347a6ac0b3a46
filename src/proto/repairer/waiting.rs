//! Needs heard for blocks a repairer does not hold yet. A repairer on a lossy link lacks as
//! much as its neighbours when a block's first NAKs come; the sender repairs it first (its
//! receiver NAKs at once, [`receiver_config`]) and holds the others off a while (see the
//! sender's side). What the others asked meanwhile is kept here, lowered by every repair
//! symbol of the block heard since (they heard those too), and answered, after the usual
//! backoff, as soon as the block is held.
//!
//! Hostile input: one entry per block of the layout, its count clamped to `K + NEED_SLACK` as
//! any need; a forged NAK can make a repairer answer once when the block arrives, as a NAK
//! heard then would.

use super::*;
use crate::proto::receiver::ReceiverConfig;

/// Longest NAK backoff of a repairer's own receiver, in GRTTs (others wait up to 4): it asks
/// first, so that the sender repairs the repairer before it answers anyone else.
pub const NAK_BACKOFF_GRTTS: f64 = 0.25;

/// The settings of the receiver a repairer runs beside: `cfg` with the short NAK backoff of
/// [`NAK_BACKOFF_GRTTS`].
pub fn receiver_config(cfg: ReceiverConfig) -> ReceiverConfig {
    let backoff_factor = cfg.backoff_factor.min(NAK_BACKOFF_GRTTS);
    ReceiverConfig { backoff_factor, ..cfg }
}

impl Repairer {
    /// A need of `count` symbols heard for `block`, which is not held (yet).
    pub(super) fn wait_for(&mut self, block: u32, count: u32) {
        let w = self.waiting.entry(block).or_insert(0);
        *w = (*w).max(count);
    }

    /// `by` symbols of `block` heard (or advertised) from someone else.
    pub(super) fn lower_waiting(&mut self, block: u32, by: u32) {
        if let Some(w) = self.waiting.get_mut(&block) {
            *w = w.saturating_sub(by);
            if *w == 0 {
                self.waiting.remove(&block);
            }
        }
    }

    /// `block` is held now: answer what was asked for it meanwhile, after a backoff.
    pub(super) fn wake_waiting(&mut self, now: Instant, block: u32) {
        let Some(count) = self.waiting.remove(&block) else { return };
        if !self.held.contains(&block)
            || self.queue.contains_key(&block)
            || self.fetching.contains_key(&block)
        {
            return;
        }
        self.stats.needs_woken += 1;
        let at = now + self.backoff_max().mul_f64(self.rng.gen::<f64>());
        let p = self.pending.entry(block).or_insert(Pending { count, at });
        p.count = p.count.max(count);
        self.arm_answer();
    }

    /// Blocks with needs waiting for them.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}
