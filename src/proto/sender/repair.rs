//! Repair aggregation (RFC 5740 style). NAKs heard during a holdoff window are merged per block
//! by their largest need; when the window closes each block gets `max(need) + margin` fresh
//! repair symbols, less what is already queued or was sent so recently that the NAK could not
//! have seen it yet (a repair "round"). Queued repairs are sent in block order.

use crate::proto::time::Instant;
use crate::proto::wire::{Need, ObjectId};
use std::collections::{BTreeMap, HashMap};

/// A block of an object.
pub type BlockKey = (ObjectId, u32);

#[derive(Debug, Clone, Copy)]
struct Round {
    /// Symbols queued or sent in this round.
    budget: u32,
    /// When the last symbol of the round has had time to reach every receiver.
    expires: Instant,
}

/// NAK aggregation and the repair queue.
#[derive(Debug, Default)]
pub struct Repairs {
    heard: BTreeMap<BlockKey, u16>,
    deadline: Option<Instant>,
    queue: BTreeMap<BlockKey, u32>,
    rounds: HashMap<BlockKey, Round>,
    adverts: Vec<Need>,
}

impl Repairs {
    /// Symbols of `key` queued, or sent recently enough to still be on their way.
    fn in_flight(&self, key: BlockKey, now: Instant) -> u32 {
        match self.rounds.get(&key) {
            Some(r) if self.queue.contains_key(&key) || r.expires > now => r.budget,
            _ => 0,
        }
    }

    /// A NAK asks for `need`; returns false when repairs in flight already cover it.
    pub fn on_need(&mut self, now: Instant, need: Need, margin: u16, holdoff_end: Instant) -> bool {
        let key = (need.object, need.block);
        if u32::from(need.count) + u32::from(margin) <= self.in_flight(key, now) {
            return false;
        }
        let e = self.heard.entry(key).or_insert(0);
        *e = (*e).max(need.count);
        self.deadline.get_or_insert(holdoff_end);
        true
    }

    /// When the holdoff window closes.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Close the holdoff window if due: queue repairs and advertisements.
    pub fn on_timeout(&mut self, now: Instant, margin: u16) {
        if self.deadline.is_none_or(|d| d > now) {
            return;
        }
        self.deadline = None;
        for (key, need) in std::mem::take(&mut self.heard) {
            let want = u32::from(need) + u32::from(margin);
            let in_flight = self.in_flight(key, now);
            let extra = want.saturating_sub(in_flight);
            if extra == 0 {
                continue;
            }
            let round = self.rounds.entry(key).or_insert(Round { budget: 0, expires: now });
            if in_flight == 0 {
                round.budget = 0;
            }
            round.budget += extra;
            *self.queue.entry(key).or_insert(0) += extra;
            self.adverts.push(Need {
                object: key.0,
                block: key.1,
                count: round.budget.min(u32::from(u16::MAX)) as u16,
            });
        }
    }

    /// Take the advertisements to send (at most `max`).
    pub fn take_adverts(&mut self, max: usize) -> Vec<Need> {
        let n = self.adverts.len().min(max);
        self.adverts.drain(..n).collect()
    }

    /// Whether repairs are queued.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Blocks with queued repairs, in order.
    pub fn queued_blocks(&self) -> impl Iterator<Item = BlockKey> + '_ {
        self.queue.keys().copied()
    }

    /// Record one repair symbol of `key` sent at `now`; it is in flight until `expires`.
    pub fn on_sent(&mut self, key: BlockKey, expires: Instant) {
        if let Some(q) = self.queue.get_mut(&key) {
            *q -= 1;
            if *q == 0 {
                self.queue.remove(&key);
            }
        }
        if let Some(r) = self.rounds.get_mut(&key) {
            r.expires = expires;
        }
    }

    /// Forget rounds that have expired (bounds memory).
    pub fn prune(&mut self, now: Instant) {
        let queue = &self.queue;
        self.rounds.retain(|k, r| queue.contains_key(k) || r.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::time::Duration;

    fn need(block: u32, count: u16) -> Need {
        Need { object: ObjectId::Payload, block, count }
    }

    #[test]
    fn aggregates_max_need_plus_margin() {
        let mut r = Repairs::default();
        let t0 = Instant::ZERO;
        let end = t0 + Duration::from_millis(1);
        assert!(r.on_need(t0, need(3, 5), 1, end));
        assert!(r.on_need(t0, need(3, 9), 1, end));
        assert!(r.on_need(t0, need(3, 2), 1, end));
        r.on_timeout(t0, 1);
        assert!(!r.has_queued(), "window still open");
        r.on_timeout(end, 1);
        assert_eq!(r.queue.get(&(ObjectId::Payload, 3)), Some(&10));
        assert_eq!(r.take_adverts(10), vec![need(3, 10)]);
        // A NAK sent before those repairs arrived is covered by them.
        assert!(!r.on_need(end, need(3, 9), 1, end));
        // A larger one gets only the difference.
        assert!(r.on_need(end, need(3, 12), 1, end + Duration::from_millis(1)));
        r.on_timeout(end + Duration::from_millis(1), 1);
        assert_eq!(r.queue.get(&(ObjectId::Payload, 3)), Some(&13));
    }

    #[test]
    fn round_expires_after_last_send() {
        let mut r = Repairs::default();
        let t0 = Instant::ZERO;
        r.on_need(t0, need(1, 1), 0, t0);
        r.on_timeout(t0, 0);
        let key = (ObjectId::Payload, 1);
        r.on_sent(key, t0 + Duration::from_millis(5));
        assert!(!r.has_queued());
        assert!(!r.on_need(t0 + Duration::from_millis(4), need(1, 1), 0, t0));
        assert!(r.on_need(t0 + Duration::from_millis(5), need(1, 1), 0, t0));
        r.prune(t0 + Duration::from_millis(6));
        assert!(r.rounds.is_empty());
    }
}
