//! What the sender sends next: the pass cursor over the objects (manifest, payload block by
//! block, source symbols followed by the block's proactive repair, then the hash list, built
//! when the first pass reaches it), queued repairs ahead of
//! it, fresh repair ESIs per block, and the payload blocks it asks the driver for (read-ahead,
//! re-reads after eviction).

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    object: ObjectId,
    block: u32,
    esi: u32,
    /// Proactive repair symbols for this block (fixed when its last source symbol is out).
    parity: u32,
}

impl Cursor {
    pub(super) fn start(object: ObjectId) -> Self {
        Cursor { object, block: 0, esi: 0, parity: 0 }
    }
}

impl Sender {
    /// Whether a symbol could go out now if the pacer allowed: the cursor's block or a block
    /// with queued repairs is at hand.
    pub(super) fn symbol_ready(&self) -> bool {
        self.cursor.is_some_and(|c| self.available((c.object, c.block)) && !self.holding_back())
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
                if *next > MAX_ESI {
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
    /// of earlier blocks showed.
    fn proactive(&mut self, k: u16) -> u32 {
        let fixed = (f64::from(k) * self.cfg.fec_overhead.max(0.0)).ceil() as u32;
        if !self.cfg.auto_parity {
            return fixed;
        }
        let max = (f64::from(k) * self.cfg.max_parity.max(0.0)).floor() as u32;
        let sample = self.group.loss_sample();
        if sample.is_empty() {
            return fixed.min(max);
        }
        let modelled =
            proactive_symbols(k, &sample, self.group.size(), self.cfg.parity_target, max);
        self.modelled_parity = modelled;
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

    pub(super) fn next_data(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        loop {
            let Some(mut cur) = self.cursor else {
                return false;
            };
            let layout = *self.layout_of(cur.object);
            let Some(k) = layout.source_symbols(cur.block) else {
                // Past the end of this object.
                self.cursor = match self.pass_order(cur.object) {
                    Some(next) => {
                        if next == ObjectId::Hashes && self.hash_list_root.is_none() {
                            // Every block of the pass has been prepared, hence hashed. Its
                            // announcements go ahead of the list's first symbol.
                            self.build_hash_list(now);
                            self.cursor = Some(Cursor::start(next));
                            return false;
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
                };
                continue;
            };
            let k = self.block_k(cur.object, cur.block, k);
            if cur.object == ObjectId::Payload && self.unavailable.contains_key(&cur.block) {
                self.cursor = Some(Cursor { block: cur.block + 1, esi: 0, parity: 0, ..cur });
                continue;
            }
            if cur.esi == u32::from(k) {
                // Decided when the source symbols are out, not before the first: the loss
                // reports heard meanwhile count (at the start of a push, the first echoes
                // arrive while the first blocks are going out).
                cur.parity = self.proactive(k);
                let proactive = self.cfg.auto_parity || self.cfg.fec_overhead > 0.0;
                if cur.object == ObjectId::Hashes && proactive {
                    // The list is the last thing a receiver needs and tiny: as many repair
                    // symbols as source ones (unless proactive repair is off), so that a loss
                    // on it rarely costs a NAK round at the very end of the push.
                    cur.parity = cur.parity.max(u32::from(k));
                }
            }
            if cur.esi >= u32::from(k) + cur.parity {
                if cur.object == ObjectId::Payload && self.cfg.auto_parity {
                    self.bias.block_sent(cur.block, now + self.nak_window());
                }
                self.cursor = Some(Cursor { block: cur.block + 1, esi: 0, parity: 0, ..cur });
                continue;
            }
            if cur.esi == 0 && cur.object == ObjectId::Payload {
                // `changed_only`: wait for the holdings, skip what every receiver holds.
                match self.payload_gate(now, cur.block) {
                    holdings::Gate::Wait => return false,
                    holdings::Gate::Skip => {
                        self.cursor = Some(Cursor { block: cur.block + 1, ..cur });
                        continue;
                    }
                    holdings::Gate::Send => {}
                }
            }
            let key = (cur.object, cur.block);
            if cur.esi == 0 && cur.object == ObjectId::Payload {
                for b in cur.block..cur.block.saturating_add(1 + self.cfg.read_ahead as u32) {
                    self.request(b);
                }
            }
            if !self.available(key) {
                self.cursor = Some(cur);
                self.request(cur.block);
                return false;
            }
            let source = cur.esi < u32::from(k);
            let esi = source.then_some(cur.esi);
            cur.esi += 1;
            self.cursor = Some(cur);
            let Some(seq) = self.emit_symbol(key, esi, buf) else { continue };
            if source {
                self.stats.data_packets += 1;
            } else {
                self.repairs.on_sent(key, Some(seq), false);
                self.stats.repair_packets += 1;
                self.stats.proactive_repair_packets += 1;
            }
            return true;
        }
    }
}
