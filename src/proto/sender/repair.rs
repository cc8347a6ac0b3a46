//! Repair aggregation (RFC 5740 style) with exact in-flight accounting.
//!
//! Every data datagram carries the sender's sequence number, and every NAK quotes the highest
//! one the receiver has seen. For each block the sender remembers the sequence numbers of the
//! repair symbols it sent, so for a NAK it knows exactly how many repairs of that block are
//! still on their way to that receiver (sent after its position, or queued). A NAK asks for
//! `need + margin` minus those; NAKs heard during a holdoff window are merged per block by the
//! largest remainder; when the window closes (the sender's holdoff timer) the remainder is queued. A receiver that lags far
//! behind its socket queue therefore never causes the same repairs to be sent twice, however
//! late its NAKs arrive. Queued repairs are sent round robin over the blocks, one symbol each
//! in block order: a block asked for (by a real receiver) is served within one round however
//! many repairs other blocks have queued (by forged NAKs, say).

use crate::proto::wire::{seq_after, Need, ObjectId};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A block of an object.
pub type BlockKey = (ObjectId, u32);

/// Repair sequence numbers remembered per block (older ones are forgotten, which can only make
/// the sender send more, never less).
const SENT_MEMORY: usize = 4096;

/// NAK aggregation and the repair queue.
#[derive(Debug, Default)]
pub struct Repairs {
    heard: BTreeMap<BlockKey, u32>,
    queue: BTreeMap<BlockKey, u32>,
    sent: HashMap<BlockKey, VecDeque<u32>>,
    adverts: Vec<Need>,
    /// The block of the last repair sent (the round robin goes on after it).
    last_served: Option<BlockKey>,
}

impl Repairs {
    /// Repairs of `key` a receiver that has seen up to `seen_seq` has yet to receive: queued,
    /// or sent after its position.
    pub fn in_flight(&self, key: BlockKey, seen_seq: u32) -> u32 {
        let queued = self.queue.get(&key).copied().unwrap_or(0);
        let sent = self.sent.get(&key).map_or(0, |seqs| {
            seqs.iter().rev().take_while(|s| seq_after(**s, seen_seq)).count() as u32
        });
        queued + sent
    }

    /// A NAK from a receiver at `seen_seq` asks for `need`; its budget allows `limit` more
    /// repair symbols. Returns the repair symbols this adds to the window (at most `limit`; 0
    /// when repairs on their way to it, or a larger need heard in the same window, already
    /// cover it) and those it wanted beyond `limit` (refused). The caller closes the window
    /// with [`Repairs::close_window`] when its holdoff ends.
    pub fn on_need(&mut self, need: Need, seen_seq: u32, margin: u16, limit: u32) -> (u32, u32) {
        let key = (need.object, need.block);
        let want = u32::from(need.count) + u32::from(margin);
        let extra = want.saturating_sub(self.in_flight(key, seen_seq));
        let heard = self.heard.get(&key).copied().unwrap_or(0);
        let wanted = extra.saturating_sub(heard);
        let added = wanted.min(limit);
        if added > 0 {
            self.heard.insert(key, heard + added);
        }
        (added, wanted - added)
    }

    /// Forget everything queued or heard for `key` (the block can no longer be sent).
    pub fn forget(&mut self, key: BlockKey) {
        self.heard.remove(&key);
        self.queue.remove(&key);
    }

    /// A local repairer covers `count` symbols of `key`: take them off the open window and
    /// then off the queue (what is not sent yet). Returns how many were taken.
    pub fn cover(&mut self, key: BlockKey, count: u32) -> u32 {
        let mut left = count;
        for map in [&mut self.heard, &mut self.queue] {
            if let Some(v) = map.get_mut(&key) {
                let t = (*v).min(left);
                *v -= t;
                left -= t;
                if *v == 0 {
                    map.remove(&key);
                }
            }
        }
        count - left
    }

    /// Whether NAKs heard are waiting for the window to close.
    pub fn is_collecting(&self) -> bool {
        !self.heard.is_empty()
    }

    /// Close the holdoff window: queue the repairs heard and their advertisements.
    pub fn close_window(&mut self) {
        for (key, extra) in std::mem::take(&mut self.heard) {
            let queued = self.queue.entry(key).or_insert(0);
            *queued += extra;
            let count = (*queued).min(u32::from(u16::MAX)) as u16;
            self.adverts.push(Need { object: key.0, block: key.1, count });
        }
    }

    /// Whether repair advertisements are waiting to be sent.
    pub fn has_adverts(&self) -> bool {
        !self.adverts.is_empty()
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

    /// Blocks with queued repairs, in the order they are served: round robin, starting after
    /// the block of the last repair sent.
    pub fn queued_blocks(&self) -> impl Iterator<Item = BlockKey> + '_ {
        use std::ops::Bound::{Excluded, Unbounded};
        let (after, upto) = match self.last_served {
            Some(last) => {
                (self.queue.range((Excluded(last), Unbounded)), self.queue.range(..=last))
            }
            None => (self.queue.range(..), self.queue.range(..(ObjectId::FIRST, 0))),
        };
        after.chain(upto).map(|(k, _)| *k)
    }

    /// A repair symbol of `key` went out with sequence number `seq` (`None`: it could not be
    /// made, e.g. the block's ESIs are used up). `queued` says whether it answered a NAK
    /// (rather than being proactive).
    pub fn on_sent(&mut self, key: BlockKey, seq: Option<u32>, queued: bool) {
        if queued {
            self.last_served = Some(key);
            if let Some(q) = self.queue.get_mut(&key) {
                *q -= 1;
                if *q == 0 {
                    self.queue.remove(&key);
                }
            }
        }
        let Some(seq) = seq else { return };
        let seqs = self.sent.entry(key).or_default();
        if seqs.len() == SENT_MEMORY {
            seqs.pop_front();
        }
        seqs.push_back(seq);
    }

    /// Forget repairs sent before `oldest` (no receiver can be that far behind).
    pub fn prune(&mut self, oldest: u32) {
        self.sent.retain(|_, seqs| {
            while seqs.front().is_some_and(|s| !seq_after(*s, oldest)) {
                seqs.pop_front();
            }
            !seqs.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(block: u32, count: u16) -> Need {
        Need { object: ObjectId::Payload, block, count }
    }

    const KEY: BlockKey = (ObjectId::Payload, 3);

    #[test]
    fn aggregates_the_largest_remainder() {
        let mut r = Repairs::default();
        assert!(!r.is_collecting());
        assert_eq!(r.on_need(need(3, 5), 100, 1, u32::MAX).0, 6);
        assert_eq!(r.on_need(need(3, 9), 100, 1, u32::MAX).0, 4, "only the increase is new");
        assert_eq!(r.on_need(need(3, 2), 100, 1, u32::MAX).0, 0);
        assert!(r.is_collecting() && !r.has_queued(), "window still open");
        r.close_window();
        assert!(!r.is_collecting());
        assert_eq!(r.queue.get(&KEY), Some(&10));
        assert!(r.has_adverts());
        assert_eq!(r.take_adverts(10), vec![need(3, 10)]);
        assert!(!r.has_adverts());
        // While queued, the same need from anyone is covered.
        assert_eq!(r.on_need(need(3, 9), 100, 1, u32::MAX).0, 0);
        assert!(!r.is_collecting(), "a covered need opens no window");
        // A larger one gets only the difference.
        assert_eq!(r.on_need(need(3, 12), 100, 1, u32::MAX).0, 3);
        r.close_window();
        assert_eq!(r.queue.get(&KEY), Some(&13));
    }

    #[test]
    fn a_lagging_receiver_counts_what_is_still_on_its_way() {
        let mut r = Repairs::default();
        r.on_need(need(3, 4), 100, 0, u32::MAX);
        r.close_window();
        for seq in 200..204 {
            r.on_sent(KEY, Some(seq), true);
        }
        assert!(!r.has_queued());
        // A receiver that has not yet seen seq 200 still has all four coming.
        assert_eq!(r.in_flight(KEY, 150), 4);
        assert_eq!(r.on_need(need(3, 4), 150, 0, u32::MAX).0, 0, "late NAK: nothing new");
        // Seen up to 201: two are still coming, it needs 3 → one more.
        assert_eq!(r.on_need(need(3, 3), 201, 0, u32::MAX).0, 1);
        r.close_window();
        assert_eq!(r.queue.get(&KEY), Some(&1));
        // Seen everything, still short: lost in transit → all of it again.
        assert_eq!(r.in_flight(KEY, 300), 1);
    }

    #[test]
    fn a_need_is_cut_to_the_limit_and_the_rest_is_refused() {
        let mut r = Repairs::default();
        assert_eq!(r.on_need(need(3, 9), 100, 1, 4), (4, 6));
        // The window holds 4: a repeat with room for more adds the rest.
        assert_eq!(r.on_need(need(3, 9), 100, 1, 100), (6, 0));
        assert_eq!(r.on_need(need(3, 9), 100, 1, 100), (0, 0));
        assert_eq!(r.on_need(need(4, 9), 100, 1, 0), (0, 10), "nothing left: all refused");
        assert!(!r.heard.contains_key(&(ObjectId::Payload, 4)));
        r.close_window();
        assert_eq!(r.queue.get(&KEY), Some(&10));
    }

    #[test]
    fn queued_blocks_are_served_round_robin() {
        let mut r = Repairs::default();
        for (b, n) in [(1, 3), (5, 1), (9, 2)] {
            r.on_need(need(b, n), 100, 0, u32::MAX);
        }
        r.close_window();
        let mut order = Vec::new();
        loop {
            let next = r.queued_blocks().next();
            let Some(key) = next else { break };
            r.on_sent(key, Some(200 + order.len() as u32), true);
            order.push(key.1);
        }
        assert_eq!(order, [1, 5, 9, 1, 9, 1]);
        // A block queued behind the one last served waits for its turn, not for the rest.
        r.on_need(need(0, 2), 300, 0, u32::MAX);
        r.on_need(need(7, 1), 300, 0, u32::MAX);
        r.close_window();
        let next: Vec<u32> = r.queued_blocks().map(|k| k.1).collect();
        assert_eq!(next, [7, 0]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        assert!(seq_after(1, u32::MAX));
        assert!(!seq_after(u32::MAX, 1));
        let mut r = Repairs::default();
        r.on_sent(KEY, Some(u32::MAX), false);
        r.on_sent(KEY, Some(0), false);
        assert_eq!(r.in_flight(KEY, u32::MAX - 1), 2);
        assert_eq!(r.in_flight(KEY, u32::MAX), 1);
        r.prune(u32::MAX);
        assert_eq!(r.sent.get(&KEY).map(|s| s.len()), Some(1));
    }
}
