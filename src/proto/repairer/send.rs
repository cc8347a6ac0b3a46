//! Which repair symbol a repairer sends next: round robin over the blocks it is answering, one
//! symbol each, ESIs taken in order from its slot, encoders prepared from the window on demand.

use super::*;

impl Repairer {
    /// The block whose symbol goes next: the first queued after the last one served.
    pub(super) fn next_block(&self) -> Option<u32> {
        use std::ops::Bound::{Excluded, Unbounded};
        let after = self.last_served.map_or(Unbounded, Excluded);
        self.queue.range((after, Unbounded)).chain(self.queue.iter()).map(|(b, _)| *b).next()
    }

    /// Take one symbol of `block` off the queue and write it into the scratch buffer; returns
    /// its ESI, or `None` when none can be made (slot used up, data gone, no slot).
    pub(super) fn next_symbol(&mut self, block: u32) -> Option<u32> {
        let left = self.queue.get_mut(&block)?;
        *left -= 1;
        if *left == 0 {
            self.queue.remove(&block);
        }
        let range = self.slot.and_then(slot_esis)?;
        let offset = self.next_esi.get(&block).copied().unwrap_or(0);
        if offset >= range.end - range.start {
            self.stats.esis_exhausted += 1;
            self.queue.remove(&block);
            return None;
        }
        let esi = range.start + offset;
        let mut out = std::mem::take(&mut self.scratch);
        let made = self.encoder(block).map(|e| e.repair_symbol(esi, &mut out).is_ok());
        self.scratch = out;
        if made != Some(true) {
            return None;
        }
        self.next_esi.insert(block, offset + 1);
        Some(esi)
    }

    /// The prepared encoder of `block` (made from the window's copy if not kept).
    fn encoder(&mut self, block: u32) -> Option<&BlockEncoder> {
        if let Some(i) = self.encoders.iter().position(|(b, _)| *b == block) {
            return self.encoders.get(i).map(|(_, e)| e);
        }
        let view = self.view?;
        let k = view.layout.source_symbols(block)?;
        self.use_clock += 1;
        let (data, used) = self.window.get_mut(&block)?;
        *used = self.use_clock;
        let encoder = BlockEncoder::new(view.layout.symbol_size(), k, data.clone()).ok()?;
        if self.encoders.len() >= ENCODERS {
            self.encoders.pop_front();
        }
        self.encoders.push_back((block, encoder));
        self.encoders.back().map(|(_, e)| e)
    }
}
