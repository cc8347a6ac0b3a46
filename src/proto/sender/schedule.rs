//! What the sender sends next: the pass cursor over the objects (manifest, payload, then the
//! hash list, built when the first pass reaches it), queued repairs ahead of it, fresh repair
//! ESIs per block, and the payload blocks it asks the driver for (read-ahead, re-reads after
//! eviction).
//!
//! Each object goes out window by window (see [`wire::interleave`]): the symbols of a window of
//! `w` consecutive blocks interleaved round by round, every block's source symbols followed by
//! its proactive repair, so a burst of loss is spread over the window's blocks.

use super::*;
use crate::proto::wire::interleave::{window_width, INTERLEAVE};

/// Where the pass is: a window of blocks and the round (ESI) within it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    object: ObjectId,
    /// First block of the window.
    base: u32,
    /// Blocks in the window (a power of two, at most [`INTERLEAVE`]; fixed when it starts).
    width: u32,
    /// The ESI every block of the window sends in this round.
    esi: u32,
    /// The next slot of the window to consider in this round.
    slot: u32,
    /// Whether a symbol went out in this round (a round without any ends the window).
    sent: bool,
    /// Per slot, proactive repair symbols (fixed when the block's last source symbol is out).
    parity: [u32; INTERLEAVE as usize],
    /// Per slot (bit), a payload block skipped because every expected receiver holds it
    /// (`changed_only`, see `holdings`).
    skipped: u32,
}

impl Cursor {
    pub(super) fn start(object: ObjectId) -> Self {
        Cursor::window(object, 0, 0)
    }

    fn window(object: ObjectId, base: u32, width: u32) -> Self {
        Cursor {
            object,
            base,
            width,
            esi: 0,
            slot: 0,
            sent: false,
            parity: [0; INTERLEAVE as usize],
            skipped: 0,
        }
    }
}

impl Sender {
    /// Whether a symbol could go out now if the pacer allowed: the cursor's block or a block
    /// with queued repairs is at hand.
    pub(super) fn symbol_ready(&self) -> bool {
        self.cursor
            .is_some_and(|c| self.available((c.object, c.base + c.slot)) && !self.holding_back())
            || self.repairs.queued_blocks().any(|k| self.available(k))
    }

    fn available(&self, key: BlockKey) -> bool {
        match key.0 {
            ObjectId::Manifest => true,
            ObjectId::Payload => self.cache.contains_key(&key.1),
            ObjectId::Hashes => self.hash_list_root.is_some(),
        }
    }

    pub(super) fn request(&mut self, block: u32) {
        if block >= self.layout().block_count()
            || self.cache.contains_key(&block)
            || self.unavailable.contains_key(&block)
            || !self.requested.insert(block)
        {
            return;
        }
        self.stats.blocks_requested += 1;
        self.events.push_back(Event::NeedBlock(BlockRequest {
            block,
            offset: self.layout().block_offset(block).unwrap_or(0),
            len: self.layout().block_len(block).unwrap_or(0),
            symbols: self.layout().source_symbols(block).unwrap_or(0),
            symbol_size: self.layout().symbol_size(),
            codec: self.compression(),
        }));
    }

    fn encoder(&mut self, key: BlockKey) -> Option<Arc<BlockEncoder>> {
        match key.0 {
            ObjectId::Manifest | ObjectId::Hashes => None,
            ObjectId::Payload => {
                self.use_clock += 1;
                let clock = self.use_clock;
                self.cache.get_mut(&key.1).map(|(enc, used)| {
                    *used = clock;
                    Arc::clone(enc)
                })
            }
        }
    }

    /// Emit source symbol `esi`, or the next fresh repair of `key`, into `buf`; returns the
    /// datagram's sequence number.
    fn emit_symbol(&mut self, key: BlockKey, esi: Option<u32>, buf: &mut Vec<u8>) -> Option<u32> {
        let payload_enc = self.encoder(key);
        let enc = match key.0 {
            ObjectId::Manifest => self.manifest_blocks.get(key.1 as usize)?,
            ObjectId::Payload => payload_enc.as_deref()?,
            ObjectId::Hashes => self.hash_list_blocks.get(key.1 as usize)?,
        };
        let esi = match esi {
            Some(esi) => esi,
            None => {
                let next = self.next_repair_esi[key.0].get_mut(key.1 as usize)?;
                if *next >= wire::SENDER_ESI_END {
                    return None;
                }
                *next += 1;
                *next - 1
            }
        };
        let symbol = match enc.source_symbol(esi) {
            Some(s) if esi < u32::from(enc.source_symbols()) => s,
            _ => {
                enc.repair_symbol(esi, &mut self.scratch).ok()?;
                &self.scratch
            }
        };
        // The block counts as sent (NAKs may ask for it).
        self.started[key.0] = self.started[key.0].max(key.1.saturating_add(1));
        let seq = self.seq;
        let data = Data { object: key.0, block: key.1, esi, seq, symbol };
        wire::emit(&self.header, &Sender::data_packet(enc, data), buf);
        self.seq = self.seq.wrapping_add(1);
        Some(seq)
    }

    pub(super) fn next_repair(&mut self, buf: &mut Vec<u8>) -> bool {
        if !self.repairs.has_queued() {
            return false;
        }
        let Some(key) = self.repairs.queued_blocks().find(|k| self.available(*k)) else {
            // Payload blocks are read again; the hash list is there once the pass built it.
            let missing: Vec<u32> = self
                .repairs
                .queued_blocks()
                .filter(|k| k.0 == ObjectId::Payload)
                .take(self.cfg.read_ahead.max(1))
                .map(|k| k.1)
                .collect();
            for b in missing {
                self.request(b);
            }
            return false;
        };
        let seq = self.emit_symbol(key, None, buf);
        self.repairs.on_sent(key, seq, true);
        if seq.is_some() {
            self.stats.repair_packets += 1;
        }
        seq.is_some()
    }

    /// Proactive repair symbols for a block of `k` source symbols: fixed, or following the
    /// loss the group reports (the fixed share until anyone has), corrected by what the NAKs
    /// of earlier blocks showed. A block of the payload's end game (`last`: no full window follows
    /// its own) is planned for [`FINAL_WINDOW_SHARE`] of the usual short receivers: nothing
    /// follows it to overlap with its NAK round, which a receiver short of it waits for at the
    /// end of the push.
    fn proactive(&mut self, k: u16, last: bool) -> u32 {
        let fixed = (f64::from(k) * self.cfg.fec_overhead.max(0.0)).ceil() as u32;
        if !self.cfg.auto_parity {
            return fixed;
        }
        let max = (f64::from(k) * self.cfg.max_parity.max(0.0)).floor() as u32;
        let plan = self.parity_plan(); // the group, or what local repairers leave of it
        if plan.sample.is_empty() {
            return fixed.min(max);
        }
        let modelled = proactive_symbols(k, &plan.sample, plan.group, plan.target, max);
        self.modelled_parity = modelled;
        if last && !plan.local {
            // Not lowered by the bias: an end game short of parity costs the whole push a
            // round, one symbol too many costs one datagram. (With active repairers, what they
            // cover is repaired on its own segment: the end game is left to them too.)
            let target = plan.target * FINAL_WINDOW_SHARE;
            return proactive_symbols(k, &plan.sample, plan.group, target, max);
        }
        self.bias.apply(modelled, max)
    }

    /// When the NAKs for a block just sent should all have arrived: the receivers' longest
    /// backoff (RFC 5401's 4 GRTTs), a round trip, and a margin.
    fn nak_window(&self) -> Duration {
        self.grtt.get() * 6
    }

    /// Whether another carousel pass follows the one ending.
    fn another_pass(&self) -> bool {
        match self.cfg.repeat {
            None => false,
            Some(0) => true,
            Some(n) => self.pass <= n,
        }
    }

    /// The window width for `object`: payload blocks must fit in the cache with the
    /// read-ahead and the previous window; the manifest and the hash list are always held.
    fn width_for(&self, object: ObjectId) -> u32 {
        match object {
            ObjectId::Payload => window_width(self.cfg.cache_blocks, self.cfg.read_ahead),
            ObjectId::Manifest | ObjectId::Hashes => INTERLEAVE,
        }
    }

    /// The end of the pass over `object`: the next object, or the end of the pass.
    fn object_done(&mut self, now: Instant, object: ObjectId) -> Option<Cursor> {
        match self.pass_order(object) {
            Some(next) => {
                if next == ObjectId::Hashes && self.hash_list_root.is_none() {
                    // Every block of the pass has been prepared, hence hashed. Its
                    // announcements go ahead of the list's first symbol.
                    self.build_hash_list(now);
                }
                Some(Cursor::start(next))
            }
            None => {
                self.flushing = true;
                self.touch_quiet(now);
                self.queue_flush(now);
                if self.another_pass() {
                    // Announce the new pass at once: receivers that joined since lock on.
                    self.pass += 1;
                    self.queue_announce(now);
                    Some(Cursor::start(ObjectId::FIRST))
                } else {
                    None
                }
            }
        }
    }

    /// Move the cursor to the next symbol of the pass to send (past exhausted, unreadable and
    /// missing blocks, window and object ends), without sending it: the cursor then rests on
    /// a block [`Sender::symbol_ready`] can check. `false` when the pass is over or the hash
    /// list was just built (its announcements go ahead of its first symbol).
    fn settle(&mut self, now: Instant) -> bool {
        loop {
            let Some(mut cur) = self.cursor else {
                return false;
            };
            let layout = *self.layout_of(cur.object);
            if layout.source_symbols(cur.base).is_none() {
                // Past the end of this object.
                let building = self.pass_order(cur.object) == Some(ObjectId::Hashes)
                    && self.hash_list_root.is_none();
                self.cursor = self.object_done(now, cur.object);
                if building {
                    return false;
                }
                continue;
            }
            if cur.width == 0 {
                // A new window: its width, and the blocks it needs (with the read-ahead).
                cur.width = self.width_for(cur.object);
                if cur.object == ObjectId::Payload {
                    let ahead = cur.width.saturating_add(self.cfg.read_ahead as u32);
                    for b in cur.base..cur.base.saturating_add(ahead) {
                        self.request(b);
                    }
                }
            }
            if cur.slot == cur.width {
                if !cur.sent {
                    // Nothing left in the window.
                    // The end game's blocks are planned for another target: they do not
                    // teach the bias.
                    let learns = !end_game(&cur, &layout);
                    if cur.object == ObjectId::Payload && self.cfg.auto_parity && learns {
                        let closes = now + self.nak_window();
                        for b in cur.base..cur.base.saturating_add(cur.width) {
                            let skipped = cur.skipped & (1 << (b - cur.base)) != 0;
                            if layout.source_symbols(b).is_some() && !skipped {
                                self.bias.block_sent(b, closes);
                            }
                        }
                    }
                    let base = cur.base.saturating_add(cur.width);
                    self.cursor = Some(Cursor::window(cur.object, base, 0));
                    continue;
                }
                (cur.slot, cur.esi, cur.sent) = (0, cur.esi + 1, false);
            }
            let slot = cur.slot as usize;
            let block = cur.base + cur.slot;
            let skip = match layout.source_symbols(block) {
                // The object's last window is short.
                None => true,
                Some(_)
                    if cur.object == ObjectId::Payload && self.unavailable.contains_key(&block) =>
                {
                    true
                }
                Some(_) if cur.skipped & (1 << slot) != 0 => true,
                Some(_) if cur.object == ObjectId::Payload && cur.esi == 0 => {
                    // `changed_only`: wait for the holdings, skip what every receiver holds.
                    match self.payload_gate(now, block) {
                        holdings::Gate::Wait => {
                            self.cursor = Some(cur);
                            return false;
                        }
                        holdings::Gate::Skip => {
                            cur.skipped |= 1 << slot;
                            true
                        }
                        holdings::Gate::Send => false,
                    }
                }
                Some(k) => {
                    let k = self.block_k(cur.object, block, k);
                    if cur.esi == u32::from(k) {
                        // Decided when the source symbols are out, not before the first: the
                        // loss reports heard meanwhile count (at the start of a push, the
                        // first echoes arrive while the first blocks are going out).
                        let mut parity = self.proactive(k, end_game(&cur, &layout));
                        let proactive = self.cfg.auto_parity || self.cfg.fec_overhead > 0.0;
                        if cur.object == ObjectId::Hashes && proactive {
                            // The list is the last thing a receiver needs and tiny: as many
                            // repair symbols as source ones (unless proactive repair is off),
                            // so that a loss on it rarely costs a NAK round at the very end.
                            parity = parity.max(u32::from(k));
                        }
                        cur.parity[slot] = parity;
                    }
                    cur.esi >= u32::from(k) + cur.parity[slot]
                }
            };
            if skip {
                cur.slot += 1;
                self.cursor = Some(cur);
                continue;
            }
            self.cursor = Some(cur);
            return true;
        }
    }

    pub(super) fn next_data(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        loop {
            if !self.settle(now) {
                return false;
            }
            let Some(mut cur) = self.cursor else { return false };
            let block = cur.base + cur.slot;
            let key = (cur.object, block);
            if !self.available(key) {
                self.request(block);
                return false;
            }
            let k = self.layout_of(cur.object).source_symbols(block).unwrap_or(0);
            let k = self.block_k(cur.object, block, k);
            let source = cur.esi < u32::from(k);
            let esi = source.then_some(cur.esi);
            // The decision above stands: the cursor moves past this symbol before it is sent.
            cur.slot += 1;
            cur.sent = true;
            self.cursor = Some(cur);
            let Some(seq) = self.emit_symbol(key, esi, buf) else { continue };
            if source {
                self.stats.data_packets += 1;
            } else {
                self.repairs.on_sent(key, Some(seq), false);
                self.stats.repair_packets += 1;
                self.stats.proactive_repair_packets += 1;
            }
            // Rest on the next symbol to send, so that `symbol_ready` asks about its block.
            self.settle(now);
            return true;
        }
    }
}

/// Whether the window at `cur` is the payload's end game: no full window follows it, so the
/// NAK rounds of its blocks come after the pass (see [`FINAL_WINDOW_SHARE`]).
fn end_game(cur: &Cursor, layout: &Layout) -> bool {
    cur.object == ObjectId::Payload
        && u64::from(cur.base) + 2 * u64::from(cur.width) > u64::from(layout.block_count())
}
