//! One session as a receiver sees it: its identity (what may never change during a push, and
//! the address its sender speaks from), the parameters it follows (rate, GRTT, group size:
//! whatever the sender announces last), the reception state of every object, its timers, and
//! its own queues of events and datagrams. A session starts as a *candidate*
//! ([`Session::locked`] false): it decodes and verifies only the manifest, NAKs only for it
//! (at most once per announcement heard), holds the payload blocks it collects (in its share
//! of the slots, handed out for decoding once locked) and hands nothing else out; the
//! [`Receiver`] locks onto the first candidate whose manifest verifies. The [`Receiver`] dispatches each entry point to the
//! session once, handing it a [`Ctx`] with what lives outside it (configuration, RNG,
//! counters).

use super::seq::{max_gap, Seq, SeqTrack};
use super::*;
use crate::proto::compress::BlockCodec;
use crate::proto::fec::block_coding;
use crate::proto::timer::{TimerKind, TimerTable};
use std::collections::{BTreeMap, HashSet};

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
    /// Repeat the Hello join until the sender welcomes this receiver.
    Hello,
    /// Send (again) the Have report of the blocks held before the payload (`have`).
    Have,
}

impl TimerKind for Timer {
    const ALL: &'static [Self] =
        &[Timer::CoverCheck, Timer::Nak, Timer::Report, Timer::Hello, Timer::Have];
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
    pub(super) session: u32,
    pub(super) sender_node: u32,
    pub(super) object_size: u64,
    pub(super) symbol_size: u16,
    block_symbols: u16,
    pub(super) manifest_len: u32,
    manifest_hash: [u8; 32],
    /// A compressed session ([`FLAG_COMPRESSED`]): payload symbols come as [`CData`] only.
    pub(super) compressed: bool,
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
            compressed: header.flags & FLAG_COMPRESSED != 0,
        }
    }
}

/// What lives outside the session (configuration, backoff RNG, counters): lent to every
/// session method that needs it.
pub(super) struct Ctx<'a> {
    pub(super) cfg: &'a ReceiverConfig,
    pub(super) rng: &'a mut ChaCha8Rng,
    pub(super) stats: &'a mut ReceiverStats,
    /// Payload blocks this session may hold: `max_pending_blocks`, shared out among the
    /// candidates while none is locked onto.
    pub(super) slots: usize,
}

/// A need heard or sent for a block: it covers ours while `until` is ahead and `count` is at
/// least what we need. `heard`: from another receiver or the sender's advertisement, not our
/// own NAK.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cover {
    pub(super) count: u32,
    pub(super) until: Instant,
    pub(super) heard: bool,
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

/// Most NAK credits a candidate saves up (one per announcement heard).
const MAX_NAK_CREDIT: u32 = 2;

/// A session, candidate or locked onto: everything the receiver knows and owes about one push.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) identity: Identity,
    /// The address the announcement came from: control datagrams are believed only from it.
    pub(super) from: SocketAddr,
    /// Locked onto (its manifest verified, or it failed while pinned); else a candidate.
    pub(super) locked: bool,
    /// When a datagram of this session last arrived (candidates: the least active goes first).
    pub(super) last_heard: Instant,
    /// A candidate's NAKs left (one more per announcement heard, at most [`MAX_NAK_CREDIT`]).
    nak_credit: u32,
    /// The newest announcement from the sender (same identity; rate and GRTT may have moved).
    pub(super) announce: Announce,
    pub(super) header: Header,
    pub(super) grtt: Duration,
    pub(super) started: Instant,
    pub(super) objects: Objects<ObjectState>,
    pub(super) manifest: Option<Manifest>,
    pub(super) manifest_bytes: Vec<u8>,
    /// A candidate's manifest matched its hash but was refused, and why.
    pub(super) refused: Option<String>,
    /// Per payload block written, the hash of what was written there (32 B a block, as blocks
    /// arrive). Done blocks are checked against the hash list when it arrives; an entry for a
    /// block not done means the next write replaces bad bytes.
    pub(super) written: HashMap<u32, [u8; 32]>,
    /// The verified hash list, once it arrived and matched the announcement.
    pub(super) hash_list: Option<HashList>,
    pub(super) hash_list_bytes: Vec<u8>,
    pub(super) covers: HashMap<(ObjectId, u32), Cover>,
    /// Blocks whose heard cover lapsed with our need unmet: no heard need covers them again
    /// until they are done.
    pub(super) must_nak: HashSet<(ObjectId, u32)>,
    pub(super) timers: TimerTable<Timer>,
    /// When this receiver last sent a NAK (none: it cannot be a straggler).
    pub(super) last_nak: Option<Instant>,
    /// Reports sent (an acknowledgement before the first is not one).
    pub(super) reports_sent: u32,
    /// The sender's group size estimate, from its probes.
    pub(super) group_size: Option<f64>,
    /// Why reception failed, once it has.
    pub(super) failure: Option<String>,
    /// The sender's data sequence numbers.
    pub(super) seq: SeqTrack,
    pub(super) phase: Phase,
    pub(super) events: VecDeque<Event>,
    pub(super) outbox: VecDeque<Packet<'static>>,
    /// A probe to echo: its send time and when it arrived.
    pub(super) echo: Option<(u64, Instant)>,
    /// The Hello join and the sender's welcome (`hello`).
    pub(super) hello: super::hello::HelloState,
    /// Locked onto through the trust gate (see `trust`): no payload block is handed out
    /// before the signed hash list verified (they wait in `signed_held`).
    pub(super) signed: bool,
    /// The sender signs (a trusted session, or a Signature heard): its hash list comes before
    /// the payload in a pass.
    pub(super) hashes_first: bool,
    /// Signed: decoded payload blocks, with their hashes, waiting for the signed hash list;
    /// bounded by `max_pending_blocks`.
    pub(super) signed_held: BTreeMap<u32, (Vec<u8>, [u8; 32])>,
    /// A squelch that concerned this receiver, not yet believed: its reason, block, and this
    /// receiver's NAK count when it came (see `report`).
    pub(super) squelch_seen: Option<(SquelchReason, u32, u64)>,
    /// Have reports still to send (`have`).
    pub(super) haves_left: u32,
    /// Automatic rate control: what this receiver measures and answers (`proto::rate`).
    pub(super) rate_meter: crate::proto::rate::RateMeter,
}

impl Session {
    /// A candidate session from the announcement `a` sent with `header` from `from` at `now`;
    /// this receiver is `node`.
    pub(super) fn new(
        now: Instant,
        from: SocketAddr,
        header: &Header,
        a: Announce,
        node: u32,
    ) -> Self {
        Session {
            identity: Identity::of(header, &a),
            from,
            locked: false,
            last_heard: now,
            nak_credit: 0,
            announce: a,
            header: Header { flags: 0, session: header.session, node },
            grtt: grtt_of(a.grtt_us),
            started: now,
            objects: Objects::from_fn(|id| ObjectState::new(a.object_layout(id))),
            manifest: None,
            manifest_bytes: Vec::new(),
            refused: None,
            written: HashMap::new(),
            hash_list: None,
            hash_list_bytes: Vec::new(),
            covers: HashMap::new(),
            must_nak: HashSet::new(),
            timers: TimerTable::new(),
            last_nak: None,
            reports_sent: 0,
            group_size: None,
            failure: None,
            seq: SeqTrack::default(),
            phase: Phase::Receiving,
            events: VecDeque::new(),
            outbox: VecDeque::new(),
            echo: None,
            hello: super::hello::HelloState::new(),
            signed: false,
            // Known from the first announcement: sent before the payload (signed mode, and
            // `--changed-only`).
            hashes_first: a.hashes_hash().is_some(),
            signed_held: BTreeMap::new(),
            squelch_seen: None,
            haves_left: 0,
            rate_meter: crate::proto::rate::RateMeter::default(),
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
        self.echo.is_some() || !self.outbox.is_empty() || self.rate_meter.has_report()
    }

    /// Whether a candidate may NAK now (a locked session always may).
    pub(super) fn may_nak(&self) -> bool {
        self.locked || self.nak_credit > 0
    }

    /// Objects this session asks for: a candidate only its manifest.
    pub(super) fn asks_for(&self, id: ObjectId) -> bool {
        self.locked || id == ObjectId::Manifest
    }

    /// Objects this session collects symbols of: a candidate its manifest and (within its
    /// share of the slots, decoded once locked) payload blocks, not the hash list.
    fn collects(&self, id: ObjectId) -> bool {
        self.locked || id != ObjectId::Hashes
    }

    /// Count a NAK sent against a candidate's credit.
    pub(super) fn spend_nak_credit(&mut self) {
        self.nak_credit = self.nak_credit.saturating_sub(1);
    }

    /// Block slots left under `max` (collecting and decoding use one each; blocks written and
    /// waiting for the hash list use none).
    pub(super) fn free_slots(&self, max: usize) -> usize {
        let used: usize = self.objects.values().map(ObjectState::in_memory).sum();
        max.saturating_sub(used)
    }

    /// Judge a sequence number from the sender: `Some(gap)` when it moved the position ahead
    /// (`gap` 1 means nothing lost), counting what is not believed.
    fn observe_seq(&mut self, cx: &mut Ctx, now: Instant, seq: u32) -> Option<u32> {
        let (rate, t) = (self.rate_bps(), self.identity.symbol_size);
        let bound = |elapsed| max_gap(rate, t, elapsed);
        match self.seq.observe(seq, now, super::seq::SEQ_SLACK, bound) {
            Seq::Ahead(gap) => Some(gap),
            Seq::First => Some(1),
            Seq::Behind => None,
            Seq::Implausible | Seq::Moved => {
                cx.stats.seq_jumps_ignored += 1;
                None
            }
        }
    }

    /// The sender reports that its next data datagram will carry `next`: everything before it
    /// has been sent, and what we did not get of it is lost, not in flight.
    fn saw_position(&mut self, cx: &mut Ctx, now: Instant, next: u32) {
        self.observe_seq(cx, now, next.wrapping_sub(1));
    }

    /// Follow the sender's GRTT. When it falls, what was scheduled by the old one is pulled
    /// in (the NAK backoff, the covers), so that one spoofed probe with a huge GRTT delays
    /// nothing past the sender's next probe.
    fn follow_grtt(&mut self, cx: &mut Ctx, now: Instant, grtt: Duration) {
        let fell = grtt < self.grtt;
        self.grtt = grtt;
        if !fell {
            return;
        }
        let backoff_max = now + grtt.mul_f64(cx.cfg.backoff_factor);
        if self.timers.get(Timer::Nak).is_some_and(|at| at > backoff_max) {
            self.timers.stop(Timer::Nak);
            self.update_nak_timer(cx, now);
        }
        if self.clamp_covers(cx, now) {
            self.update_nak_timer(cx, now);
        }
    }

    /// A datagram of this session (or not: checked here) from `header.node` at `from`.
    /// The datagram about to be handled arrived marked ECN Congestion Experienced: a mark for
    /// rate control if it is this session's, from its sender's node and address (data, or the
    /// ticks and probes that travel the same path).
    pub(super) fn note_ce_mark(&mut self, from: SocketAddr, header: &Header) {
        if header.session == self.id()
            && header.node == self.identity.sender_node
            && from == self.from
        {
            self.rate_meter.on_ce_marks(1);
        }
    }

    // Inlined into its two callers: the 104-byte `Packet` is then not copied once more on every
    // datagram (3.4 % of the simulator's instructions per copy).
    #[inline(always)]
    pub(super) fn on_packet(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: SocketAddr,
        header: Header,
        packet: Packet,
    ) {
        if header.session != self.id() {
            cx.stats.dropped_foreign += 1;
            return;
        }
        let sender_node = header.node == self.identity.sender_node;
        // Symbols are checked by the hashes; everything that steers the session only from the
        // address the session was announced from.
        let from_sender = sender_node && from == self.from;
        if sender_node && !from_sender && !matches!(packet, Packet::Data(_) | Packet::CData(_)) {
            cx.stats.dropped_not_sender += 1;
            return;
        }
        if sender_node {
            self.last_heard = now;
        }
        match packet {
            Packet::Data(d) if sender_node => self.on_data(cx, now, d, None, true),
            Packet::CData(c) if sender_node => {
                self.on_data(cx, now, c.data, Some((c.codec, c.kb)), true)
            }
            Packet::Repairer(p) => self.on_repairer(cx, now, p),
            Packet::Announce(a) if from_sender => self.on_announce(cx, now, &header, a),
            Packet::Probe(p) if from_sender => {
                self.follow_grtt(cx, now, grtt_of(p.grtt_us));
                self.group_size = Some(f64::from(p.group_size.max(1)));
                let echo = p.echo_share == u16::MAX
                    || cx.rng.gen::<u16>() < p.echo_share
                    || cx.cfg.always_echo;
                let live = matches!(self.phase, Phase::Receiving | Phase::Storing);
                if echo && live && self.locked {
                    self.echo = Some((p.send_time_us, now));
                }
            }
            Packet::Flush(f) if from_sender => {
                self.saw_position(cx, now, f.seq);
                let grew = self.objects.values_mut().fold(false, |g, o| o.advance(u32::MAX) | g);
                if grew {
                    self.update_nak_timer(cx, now);
                }
            }
            Packet::RepairAdvert(list) if from_sender => {
                self.saw_position(cx, now, list.seq);
                self.on_cover(cx, now, &list)
            }
            Packet::ReportAck(ack) if from_sender => self.on_report_ack(cx, &ack),
            Packet::Squelch(q) if from_sender => self.on_squelch(cx, now, &q),
            Packet::Nak(list) => self.on_cover(cx, now, &list),
            Packet::Hello(h) if from_sender => self.on_hello(cx, &h),
            Packet::Signature(_) if from_sender => self.hashes_first = true,
            Packet::Rate(RatePacket::Tick(t)) if from_sender => {
                let draw = cx.rng.gen::<u16>();
                let live = matches!(self.phase, Phase::Receiving | Phase::Storing);
                if live && self.locked {
                    let ext = header.flags & wire::FLAG_RATE_EXT != 0;
                    self.rate_meter.on_tick(now, &t, self.header.node, draw, ext);
                }
            }
            Packet::Rate(RatePacket::Report(_)) => {} // another receiver's
            Packet::Echo(_) | Packet::Report(_) | Packet::Hello(_) => {} // other receivers' feedback
            _ => cx.stats.dropped_foreign += 1,
        }
    }

    fn on_announce(&mut self, cx: &mut Ctx, now: Instant, header: &Header, a: Announce) {
        let known = self.announce.hashes_hash();
        let same_list = known.is_none() || a.hashes_hash() == known;
        if Identity::of(header, &a) != self.identity || !same_list {
            // A changed object or hash list: not our transfer.
            cx.stats.dropped_invalid += 1;
            return;
        }
        // Same push; follow its parameters.
        self.follow_grtt(cx, now, grtt_of(a.grtt_us));
        self.announce = a;
        if !self.locked {
            self.nak_credit = (self.nak_credit + 1).min(MAX_NAK_CREDIT);
            self.update_nak_timer(cx, now);
        }
        if known.is_none() && a.hashes_hash().is_some() {
            self.try_hash_list(cx, now);
        }
    }

    /// A symbol of this session: from its sender (`sender`: its sequence number and block
    /// position count), or a local repairer's (the symbol alone counts); `coded` is a
    /// compressed session's (codec, `K_b`) from its [`CData`] (repairers do not serve
    /// compressed sessions: their symbols carry no `K_b`).
    pub(super) fn on_data(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        d: Data<'_>,
        coded: Option<(BlockCodec, u16)>,
        sender: bool,
    ) {
        let layout_k = self.objects[d.object].layout.source_symbols(d.block);
        let Some((k, codec)) = block_coding(self.identity.compressed, d.object, layout_k, coded)
        else {
            cx.stats.dropped_invalid += 1;
            return;
        };
        if d.symbol.len() != usize::from(self.identity.symbol_size) {
            cx.stats.dropped_invalid += 1;
            return;
        }
        if !self.codec_allowed(codec) {
            cx.stats.dropped_codec += 1;
            return;
        }
        // Loss estimate from gaps in the sender's sequence numbers.
        if let Some(gap) = sender.then(|| self.observe_seq(cx, now, d.seq)).flatten() {
            cx.stats.first_pass_missing += u64::from(gap - 1);
            cx.stats.first_pass_expected += u64::from(gap);
            self.rate_meter.on_data(d.symbol.len() + wire::DATA_OVERHEAD, gap);
        }
        // Everything below this block's interleaving window has been passed by the sender
        // (`wire::interleave`), and so has every object sent before this one.
        let mut grew = false;
        for (id, o) in self.objects.iter_mut().filter(|_| sender) {
            if id == d.object {
                grew |= o.advance(crate::proto::wire::window_start(d.block));
            } else if trust::sent_before(self.hashes_first, id, d.object) {
                grew |= o.advance(u32::MAX);
            }
        }
        if !self.collects(d.object) {
            // A candidate does not hold the hash list: it is fetched once locked.
            cx.stats.dropped_unlocked += 1;
            if grew {
                self.update_nak_timer(cx, now);
            }
            return;
        }
        // The bound is on payload blocks: the manifest and the hash list are bounded by their
        // own limits, and must always find room.
        let full = d.object == ObjectId::Payload && self.free_slots(cx.slots) == 0;
        // A new collector for the block (the simulator's counting ones hold no bytes).
        let (t, counting) =
            (self.identity.symbol_size, cx.cfg.count_only_symbols && d.object == ObjectId::Payload);
        let collector = || BlockSymbols::for_coding_counting(t, k, codec, counting);
        let o = &mut self.objects[d.object];
        if o.is_done(d.block) || o.decoding.contains_key(&d.block) {
            cx.stats.symbols_duplicate += 1;
        } else {
            let symbols = match o.pending.entry(d.block) {
                super::block_map::Entry::Occupied(e) => {
                    let symbols = e.into_mut();
                    if !symbols.is_coded_as(k, codec) {
                        // Another K_b or codec than the block's first datagram said: one of
                        // them is forged. Start over with this one once they are as many.
                        // (A slot reserved by a NAK holds nothing yet and is simply resized.)
                        cx.stats.symbols_conflicting += u64::from(symbols.count() > 0);
                        let Ok(fresh) = collector() else { return };
                        if !symbols.conflict() {
                            if grew {
                                self.update_nak_timer(cx, now);
                            }
                            return;
                        }
                        *symbols = fresh;
                    }
                    symbols
                }
                super::block_map::Entry::Vacant(e) => {
                    if full {
                        cx.stats.dropped_memory += 1;
                        if grew {
                            self.update_nak_timer(cx, now);
                        }
                        return;
                    }
                    let Ok(b) = collector() else { return };
                    e.insert(b)
                }
            };
            match symbols.insert(d.esi, d.symbol) {
                Ok(Inserted::New) => cx.stats.symbols_new += 1,
                Ok(_) => cx.stats.symbols_duplicate += 1,
                Err(_) => cx.stats.dropped_invalid += 1,
            }
            // A candidate decodes its manifest only; its payload blocks wait, full, until it
            // is locked onto (see `Session::release_held`).
            if symbols.ready() && (self.locked || d.object == ObjectId::Manifest) {
                let symbols = o.pending.remove(&d.block).expect("present");
                o.decoding.insert_key(d.block);
                let len = o.layout.block_len(d.block).unwrap_or(0);
                let job = DecodeJob { object: d.object, block: d.block, symbols, len };
                if d.object == ObjectId::Manifest {
                    // Decoded here: a session locks only once its manifest verifies, so its
                    // decode cannot wait for a driver that serves the locked session.
                    self.on_decoded(cx, now, job.run());
                } else {
                    self.events.push_back(Event::Decode(job));
                }
            }
        }
        if grew {
            self.update_nak_timer(cx, now);
        }
    }

    /// Whether a payload block travelling as `codec` may belong to this session: raw, or the
    /// codec its manifest names (anything while the manifest is not known yet).
    fn codec_allowed(&self, codec: Option<BlockCodec>) -> bool {
        match (codec, &self.manifest) {
            (Some(c), Some(m)) => c == BlockCodec::Raw || Some(c) == m.compression,
            _ => true,
        }
    }

    /// Just verified the manifest: forget the payload blocks a candidate collected from
    /// datagrams of another codec than the manifest names (forged: they came before the
    /// manifest could say), counting their symbols in `dropped_codec`.
    pub(super) fn drop_other_codecs(&mut self, cx: &mut Ctx) {
        let Some(session) = self.manifest.as_ref().and_then(|m| m.compression) else { return };
        let o = &mut self.objects[ObjectId::Payload];
        let layout = &o.layout;
        o.pending.retain(|&block, symbols| {
            let k = layout.source_symbols(block).unwrap_or(0);
            let ours = symbols.count() == 0
                || symbols.is_coded_as(k, Some(BlockCodec::Raw))
                || (1..k).any(|kb| symbols.is_coded_as(kb, Some(session)));
            if !ours {
                cx.stats.dropped_codec += u64::from(symbols.count());
            }
            ours
        });
    }

    /// Just locked onto: hand out the payload blocks a candidate collected in full.
    pub(super) fn release_held(&mut self) {
        let o = &mut self.objects[ObjectId::Payload];
        let full: Vec<u32> = o.pending.iter().filter(|(_, s)| s.ready()).map(|(b, _)| *b).collect();
        for block in full {
            let symbols = o.pending.remove(&block).expect("present");
            o.decoding.insert_key(block);
            let len = o.layout.block_len(block).unwrap_or(0);
            let job = DecodeJob { object: ObjectId::Payload, block, symbols, len };
            self.events.push_back(Event::Decode(job));
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
                    self.lapse_covers(now);
                    self.update_nak_timer(cx, now);
                }
                Timer::Nak => {
                    self.send_nak(cx, now);
                    self.update_nak_timer(cx, now);
                }
                Timer::Report => self.report_due(now),
                Timer::Hello => self.hello_due(cx, now),
                Timer::Have => self.have_due(cx, now),
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
            let loss_ppm = reported_loss(cx.stats);
            let echo = Echo { probe_time_us, delay_us, loss_ppm };
            cx.stats.echoes_sent += 1;
            wire::emit(&self.header, &Packet::Echo(echo), buf);
            return Some(Transmit { size: buf.len(), dest: Dest::Sender });
        }
        if let Some(report) = self.rate_meter.take_report(now) {
            wire::emit(&self.header, &Packet::Rate(RatePacket::Report(report)), buf);
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

/// The first-pass loss rate to report (echoes, NAKs): with too few datagrams seen to say,
/// "unmeasured" (`u32::MAX`), so the sender neither plans for 0 nor takes a late joiner's
/// first few datagrams for a straggler's loss rate.
pub(super) fn reported_loss(stats: &ReceiverStats) -> u32 {
    if stats.first_pass_expected < 64 {
        u32::MAX
    } else {
        stats.loss_ppm()
    }
}

/// Longest GRTT a receiver believes (the sender's own estimate never exceeds its `grtt_max`,
/// 5 s by default): a forged probe claiming hours would otherwise stall every NAK timer.
pub const MAX_GRTT: Duration = Duration::from_secs(5);

pub(super) fn grtt_of(us: u32) -> Duration {
    Duration::from_micros(u64::from(us).max(100)).min(MAX_GRTT)
}
