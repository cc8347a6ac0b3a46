//! One session as a receiver sees it: its identity (what may never change during a push), the
//! parameters it follows (rate, GRTT, group size: whatever the sender announces last), the
//! reception state of every object, its timers, and its own queues of events and datagrams.
//! The [`Receiver`] dispatches each entry point to the session once, handing it a [`Ctx`] with
//! what lives outside it (configuration, RNG, counters).

use super::*;
use crate::proto::manifest::ManifestError;
use crate::proto::timer::{TimerKind, TimerTable};

/// The receiver's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The earliest heard or sent need stops covering its block: forget the lapsed covers and
    /// arm the NAK backoff if a block is now uncovered.
    CoverCheck,
    /// The NAK backoff expires.
    Nak,
    /// Repeat the completion report (or give up waiting for its acknowledgement).
    Report,
}

impl TimerKind for Timer {
    const ALL: &'static [Self] = &[Timer::CoverCheck, Timer::Nak, Timer::Report];
    fn index(self) -> usize {
        self as usize
    }
}

/// What makes a session this session. An announcement that differs in any of these is not
/// ours: it is refused and counted, never followed. The hash list's hash is part of it too,
/// checked apart ([`Session::on_packet`]): it may go from unknown to a value once, and never
/// change after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    session: u32,
    sender_node: u32,
    pub(super) object_size: u64,
    pub(super) symbol_size: u16,
    block_symbols: u16,
    pub(super) manifest_len: u32,
    manifest_hash: [u8; 32],
}

impl Identity {
    pub(super) fn of(header: &Header, a: &Announce) -> Self {
        Identity {
            session: header.session,
            sender_node: header.node,
            object_size: a.object_size,
            symbol_size: a.symbol_size,
            block_symbols: a.block_symbols,
            manifest_len: a.manifest_len,
            manifest_hash: a.manifest_hash,
        }
    }
}

/// What lives outside the session (configuration, backoff RNG, counters): lent to every
/// session method that needs it.
pub(super) struct Ctx<'a> {
    pub(super) cfg: &'a ReceiverConfig,
    pub(super) rng: &'a mut ChaCha8Rng,
    pub(super) stats: &'a mut ReceiverStats,
}

/// A need heard or sent for a block: it covers ours while `until` is ahead and `count` is at
/// least what we need.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cover {
    pub(super) count: u32,
    pub(super) until: Instant,
}

/// Where a session is in its life.
#[derive(Debug)]
pub(super) enum Phase {
    Receiving,
    Storing,
    /// Repeating `report` (on [`Timer::Report`]) until acknowledged or out of tries.
    Reporting {
        report: Report,
        tries_left: u32,
    },
    Done,
}

/// A session locked onto: everything the receiver knows and owes about one push.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) identity: Identity,
    /// The newest announcement from the sender (same identity; rate and GRTT may have moved).
    pub(super) announce: Announce,
    pub(super) header: Header,
    pub(super) grtt: Duration,
    pub(super) started: Instant,
    pub(super) objects: Objects<ObjectState>,
    manifest: Option<Manifest>,
    manifest_bytes: Vec<u8>,
    /// Decoded payload blocks, with their hashes, waiting for the manifest (the destination
    /// is made from it), or in a signed session for the hash list; bounded by
    /// `max_pending_blocks`.
    awaiting_manifest: BTreeMap<u32, (Vec<u8>, [u8; 32])>,
    /// Per payload block, the hash of what was last written there (32 B a block, allocated
    /// with the manifest). Done blocks are checked against the hash list when it arrives; a
    /// slot that is set for a block not done means the next write replaces bad bytes.
    written: Vec<Option<[u8; 32]>>,
    /// The verified hash list, once it arrived and matched the announcement.
    hash_list: Option<HashList>,
    hash_list_bytes: Vec<u8>,
    pub(super) covers: HashMap<(ObjectId, u32), Cover>,
    pub(super) timers: TimerTable<Timer>,
    /// When this receiver last sent a NAK.
    pub(super) last_nak: Option<Instant>,
    /// The sender's group size estimate, from its probes.
    pub(super) group_size: Option<f64>,
    /// Why reception failed, once it has.
    pub(super) failure: Option<String>,
    /// Highest data sequence number seen from the sender (or implied by a flush or advert).
    pub(super) seen_seq: Option<u32>,
    pub(super) phase: Phase,
    pub(super) events: VecDeque<Event>,
    pub(super) outbox: VecDeque<Packet<'static>>,
    /// A probe to echo: its send time and when it arrived.
    echo: Option<(u64, Instant)>,
    /// Locked onto through the trust gate (see `trust`): no payload block is handed out
    /// before the signed hash list verified (they wait with `awaiting_manifest`).
    pub(super) signed: bool,
    /// The sender signs (a trusted session, or a Signature heard): its hash list comes before
    /// the payload in a pass.
    pub(super) hashes_first: bool,
}

impl Session {
    /// A session locked onto at `now` from the announcement `a` sent with `header`; this
    /// receiver is `node`.
    pub(super) fn new(now: Instant, header: &Header, a: Announce, node: u32) -> Self {
        Session {
            identity: Identity::of(header, &a),
            announce: a,
            header: Header { flags: 0, session: header.session, node },
            grtt: grtt_of(a.grtt_us),
            started: now,
            objects: Objects::from_fn(|id| ObjectState::new(a.object_layout(id))),
            manifest: None,
            manifest_bytes: Vec::new(),
            awaiting_manifest: BTreeMap::new(),
            written: Vec::new(),
            hash_list: None,
            hash_list_bytes: Vec::new(),
            covers: HashMap::new(),
            timers: TimerTable::new(),
            last_nak: None,
            group_size: None,
            failure: None,
            seen_seq: None,
            phase: Phase::Receiving,
            events: VecDeque::new(),
            outbox: VecDeque::new(),
            echo: None,
            signed: false,
            hashes_first: false,
        }
    }

    /// The session id.
    pub(super) fn id(&self) -> u32 {
        self.identity.session
    }

    /// The send rate announced last, bits per second.
    pub(super) fn rate_bps(&self) -> u64 {
        self.announce.rate_bps
    }

    /// Whether datagrams are waiting for [`Session::poll_transmit`].
    pub(super) fn has_output(&self) -> bool {
        self.echo.is_some() || !self.outbox.is_empty()
    }

    /// Block slots left under `max` (collecting, decoding and blocks waiting for the manifest
    /// use one each; blocks written and waiting for the hash list use none).
    pub(super) fn free_slots(&self, max: usize) -> usize {
        let used: usize = self.objects.values().map(ObjectState::in_memory).sum();
        max.saturating_sub(used + self.awaiting_manifest.len())
    }

    /// The sender reports that its next data datagram will carry `next`: everything before it
    /// has been sent, and what we did not get of it is lost, not in flight.
    fn saw_position(&mut self, next: u32) {
        let last = next.wrapping_sub(1);
        if self.seen_seq.is_none_or(|s| seq_after(last, s)) {
            self.seen_seq = Some(last);
        }
    }

    /// A datagram of this session (or not: checked here) from `header.node`.
    pub(super) fn on_packet(&mut self, cx: &mut Ctx, now: Instant, header: Header, packet: Packet) {
        if header.session != self.id() {
            cx.stats.dropped_foreign += 1;
            return;
        }
        let from_sender = header.node == self.identity.sender_node;
        match packet {
            Packet::Data(d) if from_sender => self.on_data(cx, now, d),
            Packet::Announce(a) if from_sender => {
                let known = self.announce.hashes_hash();
                let same_list = known.is_none() || a.hashes_hash() == known;
                if Identity::of(&header, &a) == self.identity && same_list {
                    // Same push; follow its parameters.
                    self.grtt = grtt_of(a.grtt_us);
                    self.announce = a;
                    if known.is_none() && a.hashes_hash().is_some() {
                        self.try_hash_list(cx, now);
                    }
                } else {
                    // A changed object or hash list: not our transfer.
                    cx.stats.dropped_invalid += 1;
                }
            }
            Packet::Probe(p) if from_sender => {
                self.grtt = grtt_of(p.grtt_us);
                self.group_size = Some(f64::from(p.group_size.max(1)));
                let echo = p.echo_share == u16::MAX || cx.rng.gen::<u16>() < p.echo_share;
                if echo && matches!(self.phase, Phase::Receiving | Phase::Storing) {
                    self.echo = Some((p.send_time_us, now));
                }
            }
            Packet::Flush(f) if from_sender => {
                self.saw_position(f.seq);
                let grew = self.objects.values_mut().fold(false, |g, o| o.advance(u32::MAX) | g);
                if grew {
                    self.update_nak_timer(cx, now);
                }
            }
            Packet::RepairAdvert(list) if from_sender => {
                self.saw_position(list.seq);
                self.on_cover(cx, now, &list)
            }
            Packet::ReportAck(ack) if from_sender => self.on_report_ack(cx, &ack),
            Packet::Squelch(q) if from_sender => self.on_squelch(cx, now, &q),
            Packet::Nak(list) => self.on_cover(cx, now, &list),
            Packet::Signature(_) if from_sender => self.hashes_first = true,
            Packet::Echo(_) | Packet::Report(_) => {} // other receivers' feedback
            _ => cx.stats.dropped_foreign += 1,
        }
    }

    fn on_data(&mut self, cx: &mut Ctx, now: Instant, d: Data<'_>) {
        let Some(k) = self.objects[d.object].layout.source_symbols(d.block) else {
            cx.stats.dropped_invalid += 1;
            return;
        };
        if d.symbol.len() != usize::from(self.identity.symbol_size) {
            cx.stats.dropped_invalid += 1;
            return;
        }
        // Loss estimate from gaps in the sender's sequence numbers.
        match self.seen_seq {
            Some(prev) if seq_after(d.seq, prev) => {
                let gap = d.seq.wrapping_sub(prev);
                cx.stats.first_pass_missing += u64::from(gap - 1);
                cx.stats.first_pass_expected += u64::from(gap);
                self.seen_seq = Some(d.seq);
            }
            Some(_) => {} // reordered or duplicated
            None => {
                cx.stats.first_pass_expected += 1;
                self.seen_seq = Some(d.seq);
            }
        }
        // Everything below this block has been passed by the sender, and so has every object
        // sent before this one.
        let mut grew = false;
        for (id, o) in self.objects.iter_mut() {
            if id == d.object {
                grew |= o.advance(d.block);
            } else if trust::sent_before(self.hashes_first, id, d.object) {
                grew |= o.advance(u32::MAX);
            }
        }
        // The bound is on payload blocks: the manifest and the hash list are bounded by their
        // own limits, and must always find room (payload blocks decoded early wait for them).
        let full = d.object == ObjectId::Payload && self.free_slots(cx.cfg.max_pending_blocks) == 0;
        let o = &mut self.objects[d.object];
        if o.is_done(d.block) || o.decoding.contains(&d.block) {
            cx.stats.symbols_duplicate += 1;
        } else {
            let symbols = match o.pending.entry(d.block) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    if full {
                        cx.stats.dropped_memory += 1;
                        if grew {
                            self.update_nak_timer(cx, now);
                        }
                        return;
                    }
                    let Ok(b) = BlockSymbols::new(self.identity.symbol_size, k) else { return };
                    e.insert(b)
                }
            };
            match symbols.insert(d.esi, d.symbol) {
                Ok(Inserted::New) => cx.stats.symbols_new += 1,
                Ok(_) => cx.stats.symbols_duplicate += 1,
                Err(_) => cx.stats.dropped_invalid += 1,
            }
            if symbols.ready() {
                let symbols = o.pending.remove(&d.block).expect("present");
                o.decoding.insert(d.block);
                let len = o.layout.block_len(d.block).unwrap_or(0);
                self.events.push_back(Event::Decode(DecodeJob {
                    object: d.object,
                    block: d.block,
                    symbols,
                    len,
                }));
            }
        }
        if grew {
            self.update_nak_timer(cx, now);
        }
    }

    /// The result of a [`DecodeJob`].
    pub(super) fn on_decoded(&mut self, cx: &mut Ctx, now: Instant, decoded: Decoded) {
        let o = &mut self.objects[decoded.object];
        if !o.decoding.remove(&decoded.block) {
            return; // not ours (stale or foreign)
        }
        let (data, hash) = match decoded.result {
            Ok(done) => done,
            Err(symbols) => {
                cx.stats.decode_failures += 1;
                o.pending.insert(decoded.block, *symbols);
                self.update_nak_timer(cx, now);
                return;
            }
        };
        if decoded.systematic {
            cx.stats.blocks_systematic += 1;
        } else {
            cx.stats.blocks_decoded += 1;
        }
        if o.layout.block_len(decoded.block) != Some(data.len()) {
            return; // a job not built by this receiver
        }
        match decoded.object {
            ObjectId::Manifest => self.on_manifest_block(cx, now, decoded.block, &data),
            ObjectId::Payload => {
                if self.manifest.is_some() {
                    self.accept_block(cx, now, decoded.block, data, hash);
                } else if self.awaiting_manifest.len() < cx.cfg.max_pending_blocks {
                    o.set_done(decoded.block);
                    self.awaiting_manifest.insert(decoded.block, (data, hash));
                } else {
                    cx.stats.dropped_memory += 1;
                    o.reset(decoded.block);
                    self.update_nak_timer(cx, now);
                }
            }
            ObjectId::Hashes => self.on_hashes_block(cx, now, decoded.block, &data),
        }
    }

    fn on_hashes_block(&mut self, cx: &mut Ctx, now: Instant, block: u32, data: &[u8]) {
        let o = &mut self.objects[ObjectId::Hashes];
        let Some(off) = o.layout.block_offset(block) else {
            return;
        };
        if self.hash_list_bytes.is_empty() {
            // The layout is bounded at parse (MAX_HASH_LIST_LEN).
            self.hash_list_bytes = vec![0; o.layout.object_size() as usize];
        }
        self.hash_list_bytes[off as usize..off as usize + data.len()].copy_from_slice(data);
        o.set_done(block);
        self.try_hash_list(cx, now);
    }

    /// Once every block of the hash list is in and the announcement says its hash: verify it,
    /// then check every block written so far against it. A block that does not match is
    /// missing again (NAKed and fetched like any other); a list that does not match its
    /// announcement is fetched again.
    fn try_hash_list(&mut self, cx: &mut Ctx, now: Instant) {
        let o = &mut self.objects[ObjectId::Hashes];
        if self.hash_list.is_some() || !o.complete() || self.announce.hashes_hash().is_none() {
            return;
        }
        match HashList::decode(&self.hash_list_bytes, &self.announce) {
            Ok(list) => {
                self.hash_list_bytes = Vec::new();
                let payload = &mut self.objects[ObjectId::Payload];
                for (b, slot) in self.written.iter().enumerate() {
                    let b = b as u32;
                    let held = self.awaiting_manifest.contains_key(&b); // checked below
                    if payload.is_done(b) && !held && slot.as_ref() != list.get(b) {
                        cx.stats.hash_failures += 1;
                        payload.reset(b);
                    }
                }
                for (&b, (_, hash)) in &self.awaiting_manifest {
                    if list.get(b) != Some(hash) {
                        cx.stats.hash_failures += 1;
                        payload.reset(b);
                    }
                }
                let payload = &self.objects[ObjectId::Payload];
                self.awaiting_manifest.retain(|b, _| payload.is_done(*b));
                self.hash_list = Some(list);
                if self.signed && self.manifest.is_some() {
                    // Signed: the blocks held for the list go out now, each checked.
                    for (b, (data, hash)) in std::mem::take(&mut self.awaiting_manifest) {
                        self.objects[ObjectId::Payload].reset(b);
                        self.accept_block(cx, now, b, data, hash);
                    }
                }
                self.update_nak_timer(cx, now);
                self.check_complete();
            }
            Err(e) => {
                tracing::warn!("hash list rejected: {e}");
                cx.stats.hash_failures += 1;
                for b in 0..o.layout.block_count() {
                    o.reset(b);
                }
                self.update_nak_timer(cx, now);
            }
        }
    }

    fn on_manifest_block(&mut self, cx: &mut Ctx, now: Instant, block: u32, data: &[u8]) {
        let o = &mut self.objects[ObjectId::Manifest];
        let Some(off) = o.layout.block_offset(block) else {
            return;
        };
        if self.manifest_bytes.is_empty() {
            self.manifest_bytes = vec![0; self.identity.manifest_len as usize];
        }
        self.manifest_bytes[off as usize..off as usize + data.len()].copy_from_slice(data);
        o.set_done(block);
        if !o.complete() {
            return;
        }
        match Manifest::decode(&self.manifest_bytes, &self.announce) {
            Ok(m) => {
                self.manifest_bytes = Vec::new();
                self.written =
                    vec![None; self.objects[ObjectId::Payload].layout.block_count() as usize];
                self.manifest = Some(m.clone());
                self.events.push_back(Event::Manifest(m));
                // Undone first, so that completion waits for every held block to be handed out.
                let held = std::mem::take(&mut self.awaiting_manifest);
                for b in held.keys() {
                    self.objects[ObjectId::Payload].reset(*b);
                }
                for (b, (data, hash)) in held {
                    self.accept_block(cx, now, b, data, hash);
                }
                self.try_hash_list(cx, now);
                self.check_complete();
            }
            Err(ManifestError::Hash) => {
                // Damaged on the way (or forged symbols): fetch it again.
                tracing::warn!("manifest rejected: does not match the announced hash");
                cx.stats.hash_failures += 1;
                for b in 0..o.layout.block_count() {
                    o.reset(b);
                }
                self.update_nak_timer(cx, now);
            }
            Err(e) => {
                // The announced manifest itself is unacceptable (its hash matched): fetching
                // it again would only bring the same bytes.
                cx.stats.dropped_invalid += 1;
                self.fail(cx, now, format!("the sender's manifest is refused: {e}"));
            }
        }
    }

    /// Hand out `block` to be written (its `hash` was computed by the decode job): checked at
    /// once when the hash list is known, else kept to be checked when it arrives.
    fn accept_block(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        block: u32,
        data: Vec<u8>,
        hash: [u8; 32],
    ) {
        if self.signed && self.hash_list.is_none() {
            // Signed: held in memory until the signed hash list verified (bounded; a block
            // dropped here is fetched again).
            let o = &mut self.objects[ObjectId::Payload];
            if self.awaiting_manifest.len() < cx.cfg.max_pending_blocks {
                o.set_done(block);
                self.awaiting_manifest.insert(block, (data, hash));
            } else {
                cx.stats.dropped_memory += 1;
                o.reset(block);
                self.update_nak_timer(cx, now);
            }
            return;
        }
        let Some(slot) = self.written.get_mut(block as usize) else { return };
        let o = &mut self.objects[ObjectId::Payload];
        if self.hash_list.as_ref().is_some_and(|l| l.get(block) != Some(&hash)) {
            cx.stats.hash_failures += 1;
            o.reset(block);
            self.update_nak_timer(cx, now);
            return;
        }
        let rewrite = slot.replace(hash).is_some();
        o.set_done(block);
        let offset = o.layout.block_offset(block).unwrap_or(0);
        self.events.push_back(Event::Block { block, offset, data, rewrite });
        self.check_complete();
    }

    fn check_complete(&mut self) {
        let (Some(m), Some(list)) = (self.manifest.as_ref(), self.hash_list.as_ref()) else {
            return;
        };
        if matches!(self.phase, Phase::Receiving) && self.objects[ObjectId::Payload].complete() {
            self.phase = Phase::Storing;
            self.timers.stop(Timer::Nak);
            self.events.push_back(Event::Complete { bytes: m.object_size, hashes: list.clone() });
        }
    }

    /// Fire the timers due at `now`, in [`Timer::ALL`]'s order.
    pub(super) fn on_timeout(&mut self, cx: &mut Ctx, now: Instant) {
        for &timer in Timer::ALL {
            if !self.timers.take_expired(timer, now) {
                continue;
            }
            match timer {
                Timer::CoverCheck => {
                    self.covers.retain(|_, c| c.until > now);
                    if let Some(next) = self.covers.values().map(|c| c.until).min() {
                        self.timers.set(Timer::CoverCheck, next);
                    }
                    self.update_nak_timer(cx, now);
                }
                Timer::Nak => {
                    self.send_nak(cx, now);
                    self.update_nak_timer(cx, now);
                }
                Timer::Report => self.report_due(now),
            }
        }
    }

    /// The next datagram: a due echo first, then the outbox (NAKs, reports).
    pub(super) fn poll_transmit(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Option<Transmit> {
        if let Some((probe_time_us, at)) = self.echo.take() {
            let delay_us = (now - at).as_micros().min(u128::from(u32::MAX)) as u32;
            // Too few datagrams seen to say: "unmeasured", so the sender does not plan for 0.
            let loss_ppm =
                if cx.stats.first_pass_expected < 64 { u32::MAX } else { cx.stats.loss_ppm() };
            let echo = Echo { probe_time_us, delay_us, loss_ppm };
            cx.stats.echoes_sent += 1;
            wire::emit(&self.header, &Packet::Echo(echo), buf);
            return Some(Transmit { size: buf.len(), dest: Dest::Sender });
        }
        let packet = self.outbox.pop_front()?;
        let dest = match packet {
            Packet::Nak(_) => Dest::All,
            _ => Dest::Sender,
        };
        wire::emit(&self.header, &packet, buf);
        Some(Transmit { size: buf.len(), dest })
    }
}

/// Longest GRTT a receiver believes (the sender's own estimate never exceeds its `grtt_max`,
/// 5 s by default): a forged probe claiming hours would otherwise stall every NAK timer.
pub const MAX_GRTT: Duration = Duration::from_secs(5);

pub(super) fn grtt_of(us: u32) -> Duration {
    Duration::from_micros(u64::from(us).max(100)).min(MAX_GRTT)
}
