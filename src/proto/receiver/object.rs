//! Per-object reception state: which blocks are done, which are collecting symbols, which are
//! being decoded, and which the sender has already passed without the block being done
//! (`outstanding`, the candidates for a NAK).

use crate::proto::fec::BlockSymbols;
use crate::proto::layout::Layout;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Reception state of one object.
#[derive(Debug)]
pub struct ObjectState {
    /// The object's layout.
    pub layout: Layout,
    done: Vec<bool>,
    done_count: u32,
    /// Blocks collecting symbols.
    pub pending: BTreeMap<u32, BlockSymbols>,
    /// Blocks handed out for decoding.
    pub decoding: HashSet<u32>,
    /// Blocks below this the sender has passed.
    frontier: u32,
    /// Passed and not done.
    pub outstanding: BTreeSet<u32>,
}

impl ObjectState {
    /// Nothing received yet.
    pub fn new(layout: Layout) -> Self {
        ObjectState {
            done: vec![false; layout.block_count() as usize],
            layout,
            done_count: 0,
            pending: BTreeMap::new(),
            decoding: HashSet::new(),
            frontier: 0,
            outstanding: BTreeSet::new(),
        }
    }

    /// Whether block `b` is done.
    pub fn is_done(&self, b: u32) -> bool {
        self.done.get(b as usize).copied().unwrap_or(false)
    }

    /// Blocks done.
    pub fn done_count(&self) -> u32 {
        self.done_count
    }

    /// Whether every block is done.
    pub fn complete(&self) -> bool {
        self.done_count == self.layout.block_count()
    }

    /// Mark `b` done.
    pub fn set_done(&mut self, b: u32) {
        if let Some(d) = self.done.get_mut(b as usize) {
            if !*d {
                *d = true;
                self.done_count += 1;
            }
        }
        self.pending.remove(&b);
        self.decoding.remove(&b);
        self.outstanding.remove(&b);
    }

    /// Forget `b`'s data and progress (a failed hash check).
    pub fn reset(&mut self, b: u32) {
        if let Some(d) = self.done.get_mut(b as usize) {
            if *d {
                *d = false;
                self.done_count -= 1;
            }
        }
        self.pending.remove(&b);
        self.decoding.remove(&b);
        if b < self.frontier {
            self.outstanding.insert(b);
        }
    }

    /// The sender has passed every block below `to`. Returns whether new blocks became
    /// outstanding.
    pub fn advance(&mut self, to: u32) -> bool {
        let to = to.min(self.layout.block_count());
        let mut grew = false;
        while self.frontier < to {
            if !self.is_done(self.frontier) {
                self.outstanding.insert(self.frontier);
                grew = true;
            }
            self.frontier += 1;
        }
        grew
    }

    /// Symbols block `b` still needs (0 when done or being decoded).
    pub fn need(&self, b: u32) -> u32 {
        if self.is_done(b) || self.decoding.contains(&b) {
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

    #[test]
    fn outstanding_tracks_passed_blocks() {
        let mut o = ObjectState::new(Layout::new(10 * 64, 16, 4).unwrap()); // 10 blocks
        o.set_done(1);
        assert!(o.advance(3));
        assert_eq!(o.outstanding.iter().copied().collect::<Vec<_>>(), vec![0, 2]);
        assert!(!o.advance(3));
        o.set_done(0);
        assert_eq!(o.need(2), 4);
        o.reset(1);
        assert_eq!(o.outstanding.iter().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert!(o.advance(u32::MAX));
        assert_eq!(o.outstanding.len(), 9);
        for b in 0..10 {
            o.set_done(b);
        }
        assert!(o.complete());
    }
}
