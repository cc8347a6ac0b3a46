//! Per-object reception state: which blocks are done (one bit a block), which are collecting
//! symbols, which are being decoded, and how far the sender has got (`frontier`). A block the
//! sender has passed without it being done is *outstanding*, a candidate for a NAK; that is
//! derived from the bits and the frontier, so nothing is sized by the block count but one bit
//! a block, and a few bytes for each outstanding or collecting block that a heard NAK covered
//! (`heard`, what the NAK logic remembers of those covers; dropped once the block is done).

use super::block_map::BlockMap;
use crate::proto::fec::BlockSymbols;
use crate::proto::layout::Layout;
use bitvec::vec::BitVec;
use std::collections::BTreeMap;

/// Reception state of one object.
#[derive(Debug)]
pub struct ObjectState {
    /// The object's layout.
    pub layout: Layout,
    done: BitVec,
    done_count: u32,
    /// Blocks collecting symbols.
    pub pending: BlockMap<BlockSymbols>,
    /// Blocks handed out for decoding.
    pub decoding: BlockMap<()>,
    /// Blocks below this the sender has passed.
    frontier: u32,
    /// Per block once a heard need covered it: what became of the heard covers
    /// (`receiver::nak`).
    pub heard: BTreeMap<u32, HeardCovers>,
}

/// What became of the heard covers of one block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeardCovers {
    /// Our need when the last heard cover was taken.
    pub need: u32,
    /// Heard covers that lapsed with our need unmet and no symbol of the block received under
    /// them.
    pub stalled: u8,
}

impl ObjectState {
    /// Nothing received yet.
    pub fn new(layout: Layout) -> Self {
        ObjectState {
            done: BitVec::repeat(false, layout.block_count() as usize),
            layout,
            done_count: 0,
            pending: BlockMap::new(),
            decoding: BlockMap::new(),
            frontier: 0,
            heard: BTreeMap::new(),
        }
    }

    /// Whether block `b` is done.
    pub fn is_done(&self, b: u32) -> bool {
        self.done.get(b as usize).is_some_and(|d| *d)
    }

    /// Blocks done.
    pub fn done_count(&self) -> u32 {
        self.done_count
    }

    /// Whether every block is done.
    pub fn complete(&self) -> bool {
        self.done_count == self.layout.block_count()
    }

    /// Whether the sender has passed `b` and it is not done.
    pub fn is_outstanding(&self, b: u32) -> bool {
        b < self.frontier && !self.is_done(b)
    }

    /// The outstanding blocks, in order.
    pub fn outstanding(&self) -> impl Iterator<Item = u32> + '_ {
        self.done[..self.frontier as usize].iter_zeros().map(|b| b as u32)
    }

    /// Mark `b` done.
    pub fn set_done(&mut self, b: u32) {
        if let Some(mut d) = self.done.get_mut(b as usize) {
            if !*d {
                *d = true;
                self.done_count += 1;
            }
        }
        self.pending.remove(&b);
        self.decoding.remove(&b);
        self.heard.remove(&b);
    }

    /// Forget `b`'s data and progress (a failed hash check): outstanding again if passed.
    pub fn reset(&mut self, b: u32) {
        if let Some(mut d) = self.done.get_mut(b as usize) {
            if *d {
                *d = false;
                self.done_count -= 1;
            }
        }
        self.pending.remove(&b);
        self.decoding.remove(&b);
    }

    /// The sender has passed every block below `to`. Returns whether new blocks became
    /// outstanding.
    #[inline]
    pub fn advance(&mut self, to: u32) -> bool {
        // Called for every data datagram; nearly always the frontier is there already.
        let to = to.min(self.layout.block_count());
        if to <= self.frontier {
            return false;
        }
        self.advance_past(to)
    }

    /// [`Self::advance`] to `to` (at most the block count) past the frontier.
    fn advance_past(&mut self, to: u32) -> bool {
        let grew = self.done[self.frontier as usize..to as usize].not_all();
        self.frontier = to;
        grew
    }

    /// Symbols block `b` still needs (0 when done or being decoded).
    pub fn need(&self, b: u32) -> u32 {
        if self.is_done(b) || self.decoding.contains_key(&b) {
            return 0;
        }
        match self.pending.get(&b) {
            Some(s) => s.need(),
            None => self.layout.source_symbols(b).map_or(0, u32::from),
        }
    }

    /// Blocks held in memory (collecting or decoding).
    pub fn in_memory(&self) -> usize {
        self.pending.len() + self.decoding.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outstanding(o: &ObjectState) -> Vec<u32> {
        o.outstanding().collect()
    }

    #[test]
    fn outstanding_tracks_passed_blocks() {
        let mut o = ObjectState::new(Layout::new(10 * 64, 16, 4).unwrap()); // 10 blocks
        o.set_done(1);
        assert!(o.advance(3));
        assert_eq!(outstanding(&o), vec![0, 2]);
        assert!(!o.advance(3));
        o.set_done(0);
        assert_eq!(o.need(2), 4);
        o.reset(1);
        assert_eq!(outstanding(&o), vec![1, 2]);
        assert!(o.is_outstanding(2) && !o.is_outstanding(3) && !o.is_outstanding(0));
        assert!(o.advance(u32::MAX));
        assert_eq!(outstanding(&o).len(), 9);
        for b in 0..10 {
            o.set_done(b);
        }
        assert!(o.complete());
        assert!(!o.is_outstanding(10) && !o.is_done(10), "past the end");
    }

    #[test]
    fn advancing_over_done_blocks_only_does_not_grow() {
        let mut o = ObjectState::new(Layout::new(10 * 64, 16, 4).unwrap());
        o.set_done(0);
        o.set_done(1);
        assert!(!o.advance(2), "both passed blocks are done");
        assert!(o.advance(3));
    }

    #[test]
    fn the_largest_layout_costs_a_bit_a_block() {
        // The announce bounds a payload to 512 Ki blocks: their state is 64 KiB of bits (and a
        // word of rounding), nothing per block in the maps until blocks arrive.
        let o = ObjectState::new(Layout::new(16 * (512 << 10), 16, 1).unwrap());
        assert!(o.done.capacity() <= (512 << 10) + 64, "{}", o.done.capacity());
        assert!(o.pending.is_empty() && o.decoding.is_empty());
    }
}
