//! The sender state machine. It announces the session, sends the manifest (object 0), the
//! payload (object 1) block by block, source symbols followed by a share of proactive repair
//! symbols, and then the hash list (object 2), paced by a token bucket; it aggregates NAKs and
//! answers them with fresh repair symbols; it flushes at the end of the pass and collects
//! completion reports.
//!
//! Streamed hashes: nothing is hashed before the first datagram. Each block's BLAKE3 comes in
//! with the block ([`PreparedBlock`], computed on the worker that prepares it); the hash list
//! is built when the first pass reaches its end, announced (length and BLAKE3, the object hash)
//! and sent like the manifest. A block prepared again later (evicted, repaired, a carousel
//! pass) must hash the same, else the file changed under the sender and the block is
//! unavailable (squelched, [`Event::BlockUnavailable`]).
//!
//! Rate policy: one token bucket covers every datagram. Control datagrams (announce, probe,
//! flush, repair advertisement, report ack, squelch) are small and rare: they are charged but
//! never wait. Queued repairs go before new data, because they unblock receivers and free their
//! memory, but only within their share ([`DataShare`]: `min_data_share` of the rate is always
//! left for new data while there is some); what one NAK, one node or all NAKs together can
//! queue is bounded by the repair budgets ([`RepairBudget`], whose docs give the worst case of
//! one NAK), and no receiver can make the sender repeat more than its straggler budget of the
//! object while the rest wait ([`StragglerPolicy`]). Feedback is checked against what the
//! session can produce before it is believed (see `feedback`).
//!
//! Feedback scales with the group: probes carry the group size estimate and the share of
//! receivers that should echo (so the sender hears about `echoes_per_probe` echoes per probe
//! whatever the group size), the probe interval follows the GRTT, and the proactive repair
//! share per block follows the loss rates receivers report ([`proactive_symbols`]).
//!
//! Carousel: with `repeat`, the sender starts over (manifest, payload, hashes) after each pass,
//! for receivers that join at any time.
//!
//! Stopping early: [`Sender::abort`] sends nothing but a few Abort datagrams, spaced, then
//! finishes at once, so receivers give up without waiting for their session timeout.
//!
//! The core never reads files: it asks for block contents with [`Event::NeedBlock`] and is handed
//! a [`PreparedBlock`] through [`Sender::handle_block`]. It holds at most
//! `cache_blocks` payload blocks and asks again for a block it has evicted.
//!
//! Time: every deadline is a [`Timer`] in one table; [`Sender::poll_timeout`] is the earliest
//! of them (or the pacer's next opening while a symbol is ready), [`Sender::handle_timeout`]
//! fires the due ones. The send rate is a parameter of the session, not part of its identity:
//! [`Sender::set_rate`] changes it mid-push and receivers follow.
//!
//! This module holds the events and the entry points; the rest is split by concern: `config`
//! ([`SenderConfig`]), `control` (timers and control datagrams), `schedule` (which symbol goes
//! out next, block requests), `feedback` (NAKs, echoes, reports), `repair` (NAK aggregation),
//! `pacer`, `grtt`, `group` (who is listening, stragglers) and `parity` (auto parity).

mod budget;
mod compressed;
mod config;
mod control;
mod feedback;
mod group;
mod grtt;
mod holdings;
mod pacer;
mod parity;
mod repair;
mod repairer_parity;
#[path = "../repairer/sender_side.rs"]
mod repairer_side;
mod roster;
mod schedule;
mod signing;

pub use budget::RepairBudget;
pub use config::SenderConfig;
pub use control::{ack_delay, Timer, ABORT_REPEATS, ABORT_SPACING};

pub use group::{Binding, Group, Member, StragglerPolicy, LOSS_SAMPLE, STRAGGLER_ROUNDS};
pub use grtt::{Grtt, MAX_RISE, PROBES_KEPT};
pub use holdings::{max_holders, MAX_HOLDINGS_BITS};
pub use pacer::{DataShare, Pacer};
pub use parity::{proactive_symbols, short_probability, ParityBias, FINAL_WINDOW_SHARE};
pub use repair::{BlockKey, Repairs};
pub use roster::{parse_node_id, Expected, NodeOutcome, Roster, RosterEntry, Tally, MAX_ROSTER};
pub use signing::SigningError;

use crate::proto::fec::{BlockEncoder, FecError};
use crate::proto::layout::Layout;
use crate::proto::manifest::{HashList, Manifest, ManifestError};
use crate::proto::stats::SenderStats;
use crate::proto::time::{Duration, Instant};
use crate::proto::timer::TimerTable;
use crate::proto::wire::{self, *};
pub use crate::proto::{Dest, Transmit};
use control::{Aborting, Due};
use schedule::Cursor;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;

/// Sender construction failures.
#[derive(Debug, Error)]
pub enum SenderError {
    /// The manifest describes an impossible layout.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The manifest is too large to announce.
    #[error("manifest of {0} bytes is too large")]
    ManifestTooLarge(usize),
    /// A prepared block does not match the layout.
    #[error("block {block}: {reason}")]
    Block {
        /// Block number.
        block: u32,
        /// What was wrong.
        reason: String,
    },
    /// FEC refused the data.
    #[error(transparent)]
    Fec(#[from] FecError),
    /// [`Sender::set_compression`] with another codec than the manifest names.
    #[error("compression {0} does not match the manifest's codec")]
    Compression(crate::proto::compress::Codec),
}

/// A completion report from one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverInfo {
    /// Receiver node id.
    pub node: u32,
    /// Address its report came from.
    pub addr: SocketAddr,
    /// The report.
    pub report: Report,
    /// When it first arrived.
    pub at: Instant,
}

/// Payload bytes the sender needs, and how to prepare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRequest {
    /// Block number.
    pub block: u32,
    /// Byte offset in the payload.
    pub offset: u64,
    /// Bytes to read.
    pub len: usize,
    /// Source symbols in the block.
    pub symbols: u16,
    /// Symbol size.
    pub symbol_size: u16,
    /// Compressed session: the codec to compress the block with before FEC.
    pub codec: Option<crate::proto::compress::Codec>,
}

impl BlockRequest {
    /// Prepare the block's bytes for sending: hash them (BLAKE3, for the hash list) and build
    /// the FEC encoding plan. The CPU-heavy step a driver runs off its loop, and every harness
    /// runs inline.
    pub fn prepare(&self, data: Vec<u8>) -> Result<PreparedBlock, FecError> {
        self.prepare_with(data, true)
    }

    /// [`Self::prepare`], computing the repair encoder now only if `repair` (see
    /// [`Sender::expects_repair`]); otherwise the first repair symbol asked of it does.
    pub fn prepare_with(&self, data: Vec<u8>, repair: bool) -> Result<PreparedBlock, FecError> {
        if data.len() != self.len {
            return Err(FecError::BlockLength {
                len: data.len(),
                k: self.symbols,
                t: self.symbol_size,
            });
        }
        let hash = *blake3::hash(&data).as_bytes();
        let encoder = match self.codec {
            Some(codec) => BlockEncoder::compressed(self.symbol_size, self.symbols, data, codec)?,
            None => BlockEncoder::systematic(self.symbol_size, self.symbols, data)?,
        };
        if repair {
            encoder.prepare_repair();
        }
        Ok(PreparedBlock { encoder, hash })
    }
}

/// A block ready to send: its encoder and the BLAKE3 of its bytes.
#[derive(Debug)]
pub struct PreparedBlock {
    /// The FEC encoder of the block's bytes.
    pub encoder: BlockEncoder,
    /// BLAKE3 of the block's bytes (unpadded).
    pub hash: [u8; 32],
}

/// Something the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Read the block's bytes, [`BlockRequest::prepare`] them (on a worker: it is the hashing
    /// and encoding work) and hand the result back with [`Sender::handle_block`].
    NeedBlock(BlockRequest),
    /// A receiver reported (first report from that node only).
    ReceiverReport(ReceiverInfo),
    /// A receiver was dropped under the straggler policy.
    ReceiverDropped {
        /// Its node id.
        node: u32,
        /// Its last reported loss rate, parts per million.
        loss_ppm: u32,
        /// Repair symbols its NAKs called for.
        charged: u64,
    },
    /// A block could not be read again ([`Sender::handle_block_failed`]), or read again it no
    /// longer hashes as it did (the file changed): NAKs for it are squelched, and receivers
    /// lacking it cannot complete.
    BlockUnavailable {
        /// Block number.
        block: u32,
    },
    /// The transfer is over (expected reports in, or quiet for `linger` after the flush).
    Finished,
}

/// The sender state machine.
pub struct Sender {
    cfg: SenderConfig,
    header: Header,
    announce: Announce,
    /// Every object's layout (the manifest's follows from its length, with the payload's T
    /// and K).
    layouts: Objects<Layout>,
    /// The manifest, encoded: it is small and always held.
    manifest_blocks: Vec<BlockEncoder>,
    /// Each payload block's BLAKE3, as first prepared.
    block_hashes: Vec<Option<[u8; 32]>>,
    /// The hash list, encoded, once built (at the end of the first pass); then always held.
    hash_list_blocks: Vec<BlockEncoder>,
    /// BLAKE3 of the hash list (the object hash), once built.
    hash_list_root: Option<[u8; 32]>,
    /// Flushes still to carry an announcement of the hash list.
    flush_announces: u8,
    cache: HashMap<u32, (Arc<BlockEncoder>, u64)>,
    use_clock: u64,
    requested: HashSet<u32>,
    /// Per object and block, the next fresh repair ESI.
    next_repair_esi: Objects<Vec<u32>>,
    cursor: Option<Cursor>,
    pacer: Pacer,
    grtt: Grtt,
    repairs: Repairs,
    /// Per-node and total repair budgets (what one NAK can cost).
    budget: RepairBudget,
    /// The share of the rate kept for new data.
    share: DataShare,
    /// Per object, the blocks whose first symbol has gone out (NAKs for later ones are
    /// made up).
    started: Objects<u32>,
    /// Every deadline: announce, probe, flush, NAK holdoff, linger (see [`Timer`]).
    timers: TimerTable<Timer>,
    /// Control datagrams due, sent by the next [`Sender::poll_transmit`] calls.
    due: Due,
    /// The first pass is over: flushes go out, and without `expected_receivers` the linger
    /// runs.
    flushing: bool,
    quiet_since: Instant,
    acks: BTreeSet<u32>,
    receivers: BTreeMap<u32, ReceiverInfo>,
    group: Group,
    /// Who was heard in this session, from where, and how each ended.
    roster: roster::Roster,
    /// Dropped receivers still to be told.
    squelch_nodes: BTreeSet<u32>,
    /// Blocks that can no longer be sent, and whether a squelch for them is due.
    unavailable: BTreeMap<u32, bool>,
    /// Passes started (1 during the first).
    pass: u32,
    /// Auto parity's learned correction.
    bias: ParityBias,
    /// The modelled parity of the last block started.
    modelled_parity: u32,
    finished: bool,
    finished_at: Instant,
    last_report_at: Instant,
    events: VecDeque<Event>,
    scratch: Vec<u8>,
    /// Sequence number of the next data datagram.
    seq: u32,
    /// `seq` when old repair records were last pruned.
    pruned_at: u32,
    last_now: Instant,
    stats: SenderStats,
    /// Stopping early ([`Sender::abort`]): the Aborts still to send.
    aborting: Option<Aborting>,
    /// Signed mode ([`Sender::new_signed`]): the signature sent after each announcement.
    signing: Option<signing::Signing>,
    /// Compressed session ([`Sender::set_compression`]): the codec, and each payload block's
    /// `K_b` once prepared (0 before).
    compression: Option<compressed::Compression>,
    /// The codec the manifest names ([`Manifest::compression`]): `set_compression` must agree.
    manifest_codec: Option<crate::proto::compress::BlockCodec>,
    /// `changed_only`: what the receivers hold, and which blocks are skipped (`holdings`).
    holdings: Option<holdings::Holdings>,
    /// Who sets the rate (`proto::rate`), and whether its tick is due.
    rate_ctl: Box<dyn crate::proto::rate::RateController>,
    rate_tick_due: bool,
    /// Local repairers: their ESI slots and the needs they cover.
    repairers: repairer_side::Repairers,
}

impl Sender {
    /// A sender for the payload described by `manifest`, starting at `now`.
    pub fn new(cfg: SenderConfig, manifest: &Manifest, now: Instant) -> Result<Self, SenderError> {
        let rate_ctl = cfg.rate_control.build(cfg.rate_bps, now);
        let cfg = SenderConfig { rate_bps: rate_ctl.rate_bps(), ..cfg };
        let layout = manifest.layout()?;
        let bytes = manifest.encode();
        let manifest_len = u32::try_from(bytes.len())
            .ok()
            .filter(|l| *l <= MAX_MANIFEST_LEN)
            .ok_or(SenderError::ManifestTooLarge(bytes.len()))?;
        let manifest_layout =
            Layout::new(u64::from(manifest_len), layout.symbol_size(), layout.block_symbols())
                .expect("same T and K as a valid layout");
        let manifest_blocks = encode_object(&bytes, &manifest_layout)?;
        let announce = Announce {
            object_size: layout.object_size(),
            symbol_size: layout.symbol_size(),
            block_symbols: layout.block_symbols(),
            manifest_len,
            manifest_hash: *blake3::hash(&bytes).as_bytes(),
            hashes_len: 0,
            hashes_hash: [0; 32],
            rate_bps: cfg.rate_bps,
            grtt_us: 0,
        };
        let layouts = Objects::from_fn(|id| announce.object_layout(id));
        let next_repair_esi = Objects::from_fn(|id| {
            let l = &layouts[id];
            (0..l.block_count()).map(|b| u32::from(l.source_symbols(b).unwrap_or(0))).collect()
        });
        let mut sender = Sender {
            header: Header { flags: 0, session: cfg.session, node: cfg.node },
            announce,
            layouts,
            manifest_blocks,
            block_hashes: vec![None; layout.block_count() as usize],
            hash_list_blocks: Vec::new(),
            hash_list_root: None,
            flush_announces: control::FLUSH_ANNOUNCEMENTS,
            cache: HashMap::new(),
            use_clock: 0,
            requested: HashSet::new(),
            next_repair_esi,
            cursor: Some(Cursor::start(ObjectId::FIRST)),
            pacer: Pacer::new(cfg.rate_bps, cfg.burst_bytes, now),
            grtt: Grtt::new(cfg.grtt_initial, cfg.grtt_min, cfg.grtt_max),
            repairs: Repairs::default(),
            budget: RepairBudget::new(
                cfg.node_repair_bytes,
                cfg.node_repair_share,
                cfg.total_repair_bytes,
                cfg.min_data_share,
                layout.symbol_size(),
                cfg.rate_bps,
                now,
            ),
            share: DataShare::new(cfg.min_data_share),
            started: Objects::from_fn(|_| 0),
            timers: TimerTable::new(),
            due: Due::default(),
            flushing: false,
            quiet_since: now,
            acks: BTreeSet::new(),
            receivers: BTreeMap::new(),
            group: Group::new(cfg.expected_receivers, cfg.max_members),
            roster: roster::Roster::default(),
            squelch_nodes: BTreeSet::new(),
            unavailable: BTreeMap::new(),
            pass: 1,
            bias: ParityBias::default(),
            modelled_parity: 0,
            finished: false,
            finished_at: now,
            last_report_at: now,
            events: VecDeque::new(),
            scratch: Vec::new(),
            seq: 0,
            pruned_at: 0,
            last_now: now,
            stats: SenderStats::default(),
            aborting: None,
            signing: None,
            compression: None,
            manifest_codec: manifest.compression,
            holdings: cfg.changed_only.map(|w| holdings::Holdings::new(w, layout.block_count())),
            rate_ctl,
            rate_tick_due: false,
            repairers: repairer_side::Repairers::default(),
            cfg,
        };
        if layout.block_count() == 0 {
            // An empty payload's hash list is empty and known at once.
            sender.build_hash_list(now);
        }
        // The session starts with a burst of announcements and a probe, ahead of any data.
        sender.start_control(now);
        // Start reading the first blocks while the manifest goes out.
        for b in 0..=sender.cfg.read_ahead as u32 {
            sender.request(b);
        }
        Ok(sender)
    }

    /// The object hash (BLAKE3 of the hash list) receivers must report, once the first pass
    /// has hashed every block.
    pub fn object_hash(&self) -> Option<[u8; 32]> {
        self.hash_list_root
    }

    /// Payload layout.
    pub fn layout(&self) -> &Layout {
        &self.layouts[ObjectId::Payload]
    }

    /// Counters.
    pub fn stats(&self) -> &SenderStats {
        &self.stats
    }

    /// Reports received so far, by node id.
    pub fn receivers(&self) -> &BTreeMap<u32, ReceiverInfo> {
        &self.receivers
    }

    /// The group as heard through feedback: loss rates, repair charges, dropped receivers.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Passes started (1 during the first; more with `repeat`).
    pub fn pass(&self) -> u32 {
        self.pass
    }

    /// Current GRTT estimate.
    pub fn grtt(&self) -> Duration {
        self.grtt.get()
    }

    /// The send rate, bits per second.
    pub fn rate(&self) -> u64 {
        self.announce.rate_bps
    }

    /// Send at `rate_bps` from `now` on. The session stays the same (receivers follow the rate
    /// in its announcements); an announcement carrying the new rate is sent at once.
    pub fn set_rate(&mut self, now: Instant, rate_bps: u64) {
        self.last_now = self.last_now.max(now);
        let rate_bps = rate_bps.max(1);
        self.cfg.rate_bps = rate_bps;
        self.announce.rate_bps = rate_bps;
        self.pacer.set_rate(now, rate_bps);
        self.budget.set_rate(now, rate_bps);
        self.rate_ctl.set_rate(now, rate_bps);
        self.queue_announce(now);
    }

    /// What the rate controller did so far (`proto::rate`), as of the last call.
    pub fn rate_summary(&self) -> crate::proto::rate::RateSummary {
        self.rate_ctl.summary(self.last_now)
    }

    /// Let the rate controller decide at `now`: its tick may become due, its rate applies.
    fn rate_timeout(&mut self, now: Instant) {
        let backlogged = self.symbol_ready() && !self.finished;
        self.rate_ctl.on_sent(now, self.stats.bytes_sent, backlogged);
        let group = self.group.size();
        if self.rate_ctl.on_timeout(now, self.grtt.get(), group) && !self.finished {
            self.rate_tick_due = true;
        }
        let rate = self.rate_ctl.rate_bps();
        if rate != self.announce.rate_bps {
            self.set_rate(now, rate);
        }
    }

    /// Whether [`Event::Finished`] has been issued.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Once finished, when the driver may stop. Until then it keeps answering reports: a
    /// receiver whose acknowledgement was lost repeats its report, and must be acknowledged
    /// again rather than left to give up. The window runs from the last report heard.
    pub fn leave_at(&self) -> Option<Instant> {
        if self.aborting.is_some() {
            return self.finished.then_some(self.finished_at);
        }
        let linger =
            (self.grtt.get() * 16).clamp(Duration::from_millis(100), Duration::from_secs(2));
        self.finished.then(|| self.finished_at.max(self.last_report_at) + linger)
    }

    fn layout_of(&self, object: ObjectId) -> &Layout {
        &self.layouts[object]
    }

    /// Hand over a block asked for with [`Event::NeedBlock`]. A block that hashes differently
    /// from when it was first prepared is treated as unreadable
    /// ([`handle_block_failed`](Self::handle_block_failed)): the file changed under the sender.
    pub fn handle_block(&mut self, block: u32, prepared: PreparedBlock) -> Result<(), SenderError> {
        let PreparedBlock { encoder, hash } = prepared;
        if !self.fits_layout(block, &encoder) {
            return Err(SenderError::Block { block, reason: "does not match the layout".into() });
        }
        self.requested.remove(&block);
        match self.block_hashes[block as usize] {
            Some(first) if first != hash || !self.same_coding(block, &encoder) => {
                tracing::error!("block {block} changed since it was first read: unavailable");
                self.handle_block_failed(block);
                return Ok(());
            }
            Some(_) => {}
            // Unavailable when the list was built: no receiver can verify it.
            None if self.hash_list_root.is_some() => return Ok(()),
            None => {
                self.block_hashes[block as usize] = Some(hash);
                self.first_prepared(block, &encoder);
            }
        }
        if self.cache.len() >= self.cfg.cache_blocks.max(1) {
            if let Some(oldest) =
                self.cache.iter().min_by_key(|(_, (_, used))| *used).map(|(b, _)| *b)
            {
                self.cache.remove(&oldest);
            }
        }
        self.use_clock += 1;
        self.cache.insert(block, (Arc::new(encoder), self.use_clock));
        Ok(())
    }

    /// The driver could not read `block` (I/O error, file changed): the sender skips it and
    /// answers NAKs for it with a squelch, so receivers lacking it fail with a clear reason
    /// instead of waiting.
    pub fn handle_block_failed(&mut self, block: u32) {
        if block >= self.layout().block_count() || self.unavailable.contains_key(&block) {
            return;
        }
        self.requested.remove(&block);
        self.cache.remove(&block);
        self.repairs.forget((ObjectId::Payload, block));
        self.unavailable.insert(block, true);
        self.events.push_back(Event::BlockUnavailable { block });
    }

    /// Feed one datagram received from the group. Bad input is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.last_now = self.last_now.max(now);
        let (header, packet) = match wire::parse(data) {
            Ok(p) => p,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        if header.node == self.cfg.node && header.session == self.cfg.session {
            return; // our own datagram looped back
        }
        if header.session != self.cfg.session {
            self.stats.dropped_foreign += 1;
            return;
        }
        if self.aborting.is_some() {
            return; // stopping: nobody is answered any more
        }
        match packet {
            Packet::Nak(list) => {
                self.roster.heard(header.node, from, now);
                self.on_nak(now, header.node, from, list)
            }
            Packet::Echo(e) => {
                self.roster.heard(header.node, from, now);
                self.on_echo(now, header.node, from, &e)
            }
            Packet::Report(report) => self.on_report(now, header.node, from, report),
            Packet::Hello(h) => self.on_hello(now, header.node, from, h),
            Packet::Have(h) => self.on_have(now, header.node, from, h),
            Packet::Rate(RatePacket::Report(r)) => self.on_rate_report(now, header.node, from, &r),
            Packet::Repairer(p) => self.on_repairer_packet(now, header.node, from, p),
            Packet::Relayed(r) => self.roster.on_relayed(header.node, from, &r.nodes),
            _ => self.stats.dropped_foreign += 1,
        }
    }

    /// Fire the timers due at `now`: due control datagrams are queued for
    /// [`Sender::poll_transmit`], a closed NAK holdoff queues its repairs.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.fire_timers(now);
        self.rate_timeout(now);
        // Auto parity's NAK windows close lazily, here and not on a timer of their own: closing
        // one sends nothing, and what it changes is read only when the next block starts.
        self.bias.update(now, self.modelled_parity);
        // No receiver is a million datagrams (over a GiB) behind and still useful; forgetting
        // older repairs is bookkeeping, done every 64 Ki datagrams rather than every call.
        if self.seq.wrapping_sub(self.pruned_at) >= 1 << 16 {
            self.pruned_at = self.seq;
            self.repairs.prune(self.seq.wrapping_sub(1 << 20));
        }
        self.check_finished(now);
    }

    fn check_finished(&mut self, now: Instant) {
        if self.finished || self.aborting.is_some() {
            return;
        }
        let done = match self.cfg.expected_receivers {
            _ if self.roster.expect_met() == Some(true) => true,
            Some(n) if self.roster.expected().is_none() => self.accounted() >= u64::from(n),
            _ => {
                self.cursor.is_none()
                    && self.flushing
                    && !self.repairs.has_queued()
                    && !self.timers.is_set(Timer::Holdoff)
                    && now >= self.quiet_since + self.cfg.linger
            }
        };
        if done {
            self.finished = true;
            self.finished_at = now;
            self.timers.stop(Timer::Linger);
            self.events.push_back(Event::Finished);
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Sender::handle_timeout`] or [`Sender::poll_transmit`] next has work: now while
    /// control datagrams are due, else the earliest timer or, when a symbol is ready to go,
    /// the pacer's next opening.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.control_due() || self.repairers.slots_due() {
            return Some(self.last_now);
        }
        if self.aborting.is_some() {
            return self.timers.next_timeout();
        }
        // The pacer's readiness stays a computed value rather than a table entry: it moves with
        // every datagram charged and matters only while a symbol is ready (a block arriving
        // from the driver, a holdoff closing), so a stored deadline would have to be refreshed
        // at each of those points to say what this line says.
        let paced = self.symbol_ready().then(|| self.pacer.next_ready());
        let holdings = self.holdings_deadline();
        let rate = self.rate_ctl.poll_timeout();
        [self.timers.next_timeout(), paced, holdings, rate].into_iter().flatten().min()
    }

    /// Whether a block requested now will likely need repair symbols: repairs are queued, or
    /// the proactive parity is above zero (the fixed share until receivers report loss, then
    /// the modelled one). A driver prepares such a block's repair encoder on its worker
    /// ([`BlockRequest::prepare_with`]); any other block's is built on its first repair symbol.
    pub fn expects_repair(&self) -> bool {
        if self.repairs.has_queued() {
            return true;
        }
        if !self.cfg.auto_parity {
            return self.cfg.fec_overhead > 0.0;
        }
        if self.group.loss_sample().is_empty() {
            return self.cfg.fec_overhead > 0.0 && self.cfg.max_parity > 0.0;
        }
        self.bias.apply(self.modelled_parity, u32::MAX) > 0
    }

    /// The next datagram to send, written into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let slots = self.aborting.is_none().then(|| self.repairers.take_slots()).flatten();
        if let Some(packet) = slots.or_else(|| self.next_control(now)) {
            wire::emit(&wire::tick_header(&self.header, &packet), &packet, buf);
            self.stats.control_packets += 1;
            return Some(self.sent(now, buf.len()));
        }
        if self.aborting.is_some() || !self.pacer.ready(now) {
            return None;
        }
        // Queued repairs go first while they have used less than their share of the rate;
        // new data otherwise (and repairs when there is no data to send).
        let repair_first = self.share.repair_first();
        if repair_first && self.next_repair(buf) {
            self.share.on_repair();
            return Some(self.repair_sent(now, buf.len()));
        }
        if self.next_data(now, buf) {
            self.share.on_data();
            return Some(self.sent(now, buf.len()));
        }
        if !repair_first && self.next_repair(buf) {
            return Some(self.repair_sent(now, buf.len()));
        }
        // The pass may have made control datagrams due (the hash list's announcements).
        if let Some(packet) = self.next_control(now) {
            wire::emit(&wire::tick_header(&self.header, &packet), &packet, buf);
            self.stats.control_packets += 1;
            return Some(self.sent(now, buf.len()));
        }
        None
    }

    /// Build the hash list from the blocks hashed so far (a block that was unavailable gets an
    /// all-zero hash: no receiver can verify it, as none can get it) and announce it.
    pub(super) fn build_hash_list(&mut self, now: Instant) {
        if self.hash_list_root.is_some() {
            return;
        }
        let hashes = self.block_hashes.iter().map(|h| h.unwrap_or([0; 32])).collect();
        let list = HashList::new(*self.layout(), hashes).expect("one hash per block");
        let bytes = list.encode();
        let layout = self.layouts[ObjectId::Hashes];
        debug_assert_eq!(bytes.len() as u64, layout.object_size());
        self.hash_list_blocks = encode_object(&bytes, &layout).unwrap_or_default();
        let root = list.root();
        self.hash_list_root = Some(root);
        self.announce.hashes_len = bytes.len() as u32;
        self.announce.hashes_hash = root;
        self.queue_hashes_announce(now);
    }

    fn repair_sent(&mut self, now: Instant, size: usize) -> Transmit {
        if !self.repairs.has_queued() {
            // The last queued repair is out: the linger may have run out while it waited.
            self.check_finished(now);
        }
        self.sent(now, size)
    }

    fn sent(&mut self, now: Instant, size: usize) -> Transmit {
        self.pacer.charge(now, size);
        self.stats.bytes_sent += size as u64;
        Transmit { size, dest: Dest::Receivers }
    }
}

/// The encoders of an object held in memory (the manifest, the hash list).
fn encode_object(bytes: &[u8], layout: &Layout) -> Result<Vec<BlockEncoder>, FecError> {
    (0..layout.block_count())
        .map(|b| {
            let off = layout.block_offset(b).unwrap_or(0) as usize;
            let len = layout.block_len(b).unwrap_or(0);
            let k = layout.source_symbols(b).unwrap_or(0);
            BlockEncoder::new(layout.symbol_size(), k, bytes[off..off + len].to_vec())
        })
        .collect()
}

#[cfg(test)]
mod tests;
