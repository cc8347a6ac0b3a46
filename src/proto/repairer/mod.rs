//! Local repairers, sans-IO: a receiver that keeps what it has received and answers the NAKs it
//! hears for those blocks with fresh repair symbols of its own (PGM's designated local
//! repairers, RMTP's designated receivers), so that a loss near it is closed near it instead of
//! by the sender.
//!
//! A [`Repairer`] runs beside a [`Receiver`](crate::proto::receiver::Receiver) and is fed the
//! same datagrams. Its driver tells it which session the receiver locked onto
//! ([`Repairer::set_view`], from [`Receiver::repair_view`](crate::proto::receiver::Receiver::repair_view))
//! and hands it every payload block the receiver writes ([`Repairer::handle_block`]: decoded,
//! and verified when the hash list is known; a block rewritten after a failed verification
//! replaces the copy held). What it does:
//!
//! * **Slot.** It asks the sender for an ESI slot ([`Hello::RepairerJoin`], repeated until the
//!   sender's [`Hello::Slots`] names it, [`JOIN_TRIES`] at most). Its symbols come from that
//!   slot only ([`slot_esis`]), each ESI once: no two repairers, nor the sender (whose repairs
//!   stay below [`SENDER_ESI_END`]), ever send the same symbol of a block. Without a slot it
//!   stays silent.
//! * **Answer.** A NAK heard for a block it holds starts a backoff of
//!   `U(0, 1) × backoff_grtts × distance × GRTT`: short enough that its advertisement reaches
//!   the sender before the sender's own NAK holdoff (one GRTT) closes, and scaled by
//!   [`RepairerConfig::distance`] (its distance to the losses it serves, 0..=1, as its driver
//!   measures or configures it), so that the repairer nearest a loss answers first. When the
//!   backoff ends it advertises the need (packet type 15, [`RepairerPacket::Advert`]) and
//!   queues `need + margin` symbols.
//! * **Suppress.** A repair advertisement heard (the sender's or another repairer's) that
//!   covers the need cancels it; a smaller one, or repair symbols of the block heard meanwhile,
//!   lower it.
//! * **Rate.** Its symbols are paced by a token bucket of its own ([`RepairerConfig::rate_bps`]);
//!   advertisements and joins are charged but never wait.
//! * **Memory.** It keeps the data of up to [`RepairerConfig::window_blocks`] blocks (the
//!   most recently used) and a few prepared encoders; a block it held and evicted is asked for
//!   again with [`RepairerEvent::NeedBlock`] (the driver reads it back from what the receiver
//!   wrote) and answered once it comes back.
//!
//! Hostile input: everything is parsed with the checked wire parser; control (slots, GRTT,
//! the sender's adverts) counts only from the session's sender address; a NAK makes it send
//! at most `K + 16 + margin` symbols of a block per round, at its own capped rate, and a block
//! it is already sending is not asked again until that round is out.

mod send;
mod stats;
#[cfg(test)]
mod tests;
mod verify;
mod waiting;

pub use stats::{RepairerStats, SenderRepairerStats};
pub use waiting::{receiver_config, NAK_BACKOFF_GRTTS};

use crate::proto::fec::BlockEncoder;
use crate::proto::layout::Layout;
use crate::proto::sender::Pacer;
use crate::proto::time::{Duration, Instant};
use crate::proto::timer::{TimerKind, TimerTable};
use crate::proto::wire::{self, *};
use crate::proto::{Dest, Transmit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

/// Repairer joins sent before giving up on a slot.
pub const JOIN_TRIES: u32 = 20;
/// Prepared encoders kept (the blocks being repaired right now).
pub const ENCODERS: usize = 4;
/// A need is clamped to the block's K plus this (as the sender clamps it).
pub const NEED_SLACK: u16 = 16;

// The sender's side (see `sender_side`):
/// Longest a repairer's advertisement holds the sender off a block.
pub const COVER_HOLD_MAX: Duration = Duration::from_secs(1);
/// Shortest hold (a GRTT estimate of a few hundred microseconds on a LAN would end a cover
/// before the repairer's symbols have gone out).
pub const COVER_HOLD_MIN: Duration = Duration::from_millis(20);
/// A cover lasts this many GRTTs (within the bounds above).
pub const COVER_HOLD_GRTTS: u32 = 4;
/// A block is covered for at most this many times its source symbols (plus slack) in all.
pub const COVER_LIMIT_BLOCKS: u32 = 2;
/// A repairer counts as active this long after it was last heard (join, NAK, advert, symbol).
pub const ACTIVE_FOR: Duration = Duration::from_secs(2);
/// A block's deferral lasts this many GRTTs (within the bounds below): the repairer's NAK, the
/// sender's holdoff, its repairs, a second round for the repairer, and its answer.
pub const DEFER_GRTTS: u32 = 8;
/// Shortest deferral.
pub const DEFER_MIN: Duration = Duration::from_millis(5);
/// Longest deferral.
pub const DEFER_MAX: Duration = Duration::from_millis(500);
/// Futile deferrals in a row after which no block is deferred until an advert is believed.
pub const FUTILE_LIMIT: u32 = 8;
/// Blocks whose deferral is remembered (beyond, blocks are not deferred).
pub const MAX_DEFERRALS: usize = 1 << 16;

/// A slot holder not heard for this long loses its slot to a new join once all are taken
/// (receivers echo several times a second).
pub const SLOT_IDLE: Duration = Duration::from_secs(2);

/// Repairer settings.
#[derive(Debug, Clone)]
pub struct RepairerConfig {
    /// This node's id (the receiver's).
    pub node: u32,
    /// Seed of the backoff RNG.
    pub seed: u64,
    /// Blocks whose data is kept in memory (`--repair-window`).
    pub window_blocks: usize,
    /// Repair symbol rate cap, bits per second (`--repair-rate`).
    pub rate_bps: u64,
    /// Token bucket depth, bytes.
    pub burst_bytes: usize,
    /// Longest backoff, in GRTTs (below the sender's one-GRTT NAK holdoff).
    pub backoff_grtts: f64,
    /// Distance to the losses this repairer serves, 0..=1 (1: as far as the sender): scales
    /// its backoff, so nearer repairers answer first.
    pub distance: f64,
    /// Symbols sent beyond a need (a failed decode's slack).
    pub margin: u16,
    /// Serve blocks before the hash list has verified them (they are still checked when it
    /// arrives). Only for keyed mode, where every datagram is authenticated: whoever could
    /// forge a symbol there could forge the hash list too. Open mode keeps it off, so that
    /// one forged symbol cannot make a repairer send a block's worth of bad ones.
    pub serve_unverified: bool,
}

impl Default for RepairerConfig {
    fn default() -> Self {
        RepairerConfig {
            node: 2,
            seed: 0,
            window_blocks: 64,
            rate_bps: 50_000_000,
            burst_bytes: 16 * 1024,
            backoff_grtts: 0.25,
            distance: 1.0,
            margin: 1,
            serve_unverified: false,
        }
    }
}

/// The session a repairer serves, as its receiver locked onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairView {
    /// Session id.
    pub session: u32,
    /// The sender's node id.
    pub sender_node: u32,
    /// The address the sender's control datagrams come from.
    pub sender: SocketAddr,
    /// Payload layout.
    pub layout: Layout,
    /// The sender's GRTT as last announced.
    pub grtt: Duration,
}

/// Something the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairerEvent {
    /// Read block `block` (`len` bytes at `offset`) back from what the receiver wrote and
    /// hand it over with [`Repairer::handle_block`].
    NeedBlock {
        /// Block number.
        block: u32,
        /// Byte offset in the payload.
        offset: u64,
        /// Bytes.
        len: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Join,
    Answer,
}

impl TimerKind for Timer {
    const ALL: &'static [Self] = &[Timer::Join, Timer::Answer];
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    count: u32,
    at: Instant,
}

/// The local repairer state machine.
pub struct Repairer {
    cfg: RepairerConfig,
    rng: ChaCha8Rng,
    view: Option<RepairView>,
    slot: Option<u8>,
    joins_sent: u32,
    /// Verified blocks handed over (held in memory or readable back from the driver): only
    /// these are served.
    held: BTreeSet<u32>,
    /// Blocks handed over before the hash list arrived: checked when it does.
    unverified: BTreeSet<u32>,
    /// The session's verified hash list, once the receiver has it.
    hashes: Option<crate::proto::manifest::HashList>,
    /// When the session's sender was last heard, and whether it said Abort.
    sender_heard: Option<Instant>,
    sender_aborted: bool,
    /// Data of the most recently used blocks, with their use clock.
    window: HashMap<u32, (Vec<u8>, u64)>,
    encoders: VecDeque<(u32, BlockEncoder)>,
    use_clock: u64,
    /// Per block, the next ESI offset within the slot.
    next_esi: HashMap<u32, u32>,
    pending: BTreeMap<u32, Pending>,
    /// Needs heard for blocks not held yet (see `waiting`).
    waiting: BTreeMap<u32, u32>,
    /// Answers waiting for their block to come back from the driver.
    fetching: BTreeMap<u32, u32>,
    /// Symbols left to send per block.
    queue: BTreeMap<u32, u32>,
    last_served: Option<u32>,
    outbox: VecDeque<(Packet<'static>, Dest)>,
    events: VecDeque<RepairerEvent>,
    timers: TimerTable<Timer>,
    pacer: Pacer,
    header: Header,
    scratch: Vec<u8>,
    last_now: Instant,
    stats: RepairerStats,
}

impl Repairer {
    /// A repairer with no session yet.
    pub fn new(cfg: RepairerConfig, now: Instant) -> Self {
        Repairer {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x7265_7061_6972),
            view: None,
            slot: None,
            joins_sent: 0,
            held: BTreeSet::new(),
            unverified: BTreeSet::new(),
            hashes: None,
            sender_heard: None,
            sender_aborted: false,
            window: HashMap::new(),
            encoders: VecDeque::new(),
            use_clock: 0,
            next_esi: HashMap::new(),
            pending: BTreeMap::new(),
            waiting: BTreeMap::new(),
            fetching: BTreeMap::new(),
            queue: BTreeMap::new(),
            last_served: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            timers: TimerTable::new(),
            pacer: Pacer::new(cfg.rate_bps.max(1), cfg.burst_bytes, now),
            header: Header { flags: 0, session: 0, node: cfg.node },
            scratch: Vec::new(),
            last_now: now,
            stats: RepairerStats::default(),
            cfg,
        }
    }

    /// Counters.
    pub fn stats(&self) -> &RepairerStats {
        &self.stats
    }

    /// The ESI slot the sender assigned, once known.
    pub fn slot(&self) -> Option<u8> {
        self.slot
    }

    /// Blocks whose data is in memory now.
    pub fn in_memory(&self) -> usize {
        self.window.len()
    }

    /// The session to serve. A new session forgets everything held for the old one.
    pub fn set_view(&mut self, now: Instant, view: RepairView) {
        self.last_now = self.last_now.max(now);
        match &mut self.view {
            Some(v) if v.session == view.session && v.sender == view.sender => {
                v.grtt = view.grtt;
                return;
            }
            _ => {}
        }
        let cfg = self.cfg.clone();
        *self = Repairer::new(cfg, now);
        self.header.session = view.session;
        self.view = Some(view);
        self.timers.set(Timer::Join, now);
    }

    /// A payload block the receiver wrote (decoded, verified when its hash list is known).
    /// Blocks that do not fit the layout are ignored.
    pub fn handle_block(&mut self, now: Instant, block: u32, data: Vec<u8>) {
        self.last_now = self.last_now.max(now);
        let Some(view) = &self.view else { return };
        if view.layout.block_len(block) != Some(data.len()) {
            return;
        }
        if !self.admit(block, &data) {
            return;
        }
        self.encoders.retain(|(b, _)| *b != block); // a rewrite replaces what was held
        if self.window.len() >= self.cfg.window_blocks.max(1) && !self.window.contains_key(&block) {
            if let Some(oldest) = self.window.iter().min_by_key(|(_, (_, u))| *u).map(|(b, _)| *b) {
                self.window.remove(&oldest);
            }
        }
        self.use_clock += 1;
        self.window.insert(block, (data, self.use_clock));
        if let Some(count) = self.fetching.remove(&block) {
            self.start_sending(block, count);
        }
        self.wake_waiting(now, block);
    }

    /// The driver could not read `block` back: it is no longer held.
    pub fn handle_block_failed(&mut self, block: u32) {
        self.held.remove(&block);
        self.waiting.remove(&block);
        self.fetching.remove(&block);
        self.pending.remove(&block);
    }

    /// Feed one datagram heard on the group.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.last_now = self.last_now.max(now);
        if self.view.is_none() {
            return;
        }
        match wire::parse(data) {
            Ok((header, packet)) => self.handle_parsed(now, from, header, packet),
            Err(_) => self.stats.dropped_malformed += 1,
        }
    }

    /// [`Repairer::handle_datagram`] for a datagram already parsed to `header` and `packet`
    /// (the receiver beside it parsed the same bytes: they are parsed once).
    pub fn handle_parsed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        packet: Packet,
    ) {
        self.last_now = self.last_now.max(now);
        let Some(view) = self.view else { return };
        if header.node == self.cfg.node {
            return;
        }
        if header.session != view.session {
            self.stats.dropped_foreign += 1;
            return;
        }
        let from_sender = header.node == view.sender_node && from == view.sender;
        if from_sender {
            self.sender_heard = Some(now);
        }
        match packet {
            Packet::Abort(_) if from_sender => self.sender_aborted = true,
            Packet::Nak(list) if header.node != view.sender_node => self.on_nak(now, &list),
            Packet::Repairer(RepairerPacket::Advert(list)) => self.on_covered(&list.needs),
            Packet::Repairer(RepairerPacket::Symbol(s)) => self.on_symbol(s.object, s.block),
            Packet::RepairAdvert(list) if from_sender => self.on_covered(&list.needs),
            Packet::Data(d) if from_sender => {
                let k = view.layout.source_symbols(d.block).unwrap_or(u16::MAX);
                if d.esi >= u32::from(k) {
                    self.on_symbol(d.object, d.block);
                }
            }
            Packet::Probe(p) if from_sender => self.follow_grtt(now, p.grtt_us),
            Packet::Announce(a) if from_sender => self.follow_grtt(now, a.grtt_us),
            Packet::Hello(Hello::Slots { slots }) if from_sender => {
                if let Some((_, s)) = slots.iter().find(|(n, _)| *n == self.cfg.node) {
                    self.slot = Some(*s);
                    self.timers.stop(Timer::Join);
                } else if self.slot.take().is_some() {
                    // Reclaimed (the sender thought it gone): ask again.
                    self.joins_sent = 0;
                    self.timers.set(Timer::Join, now);
                }
            }
            _ if !from_sender && header.node == view.sender_node => self.stats.dropped_foreign += 1,
            _ => {}
        }
    }

    fn follow_grtt(&mut self, now: Instant, grtt_us: u32) {
        let grtt = Duration::from_micros(u64::from(grtt_us).max(100))
            .min(crate::proto::receiver::MAX_GRTT);
        if let Some(v) = &mut self.view {
            v.grtt = grtt;
        }
        // A falling GRTT pulls in what the old one scheduled.
        let latest = now + self.backoff_max();
        for p in self.pending.values_mut() {
            p.at = p.at.min(latest);
        }
        self.arm_answer();
    }

    fn backoff_max(&self) -> Duration {
        let grtt = self.view.map_or(Duration::from_millis(10), |v| v.grtt);
        grtt.mul_f64((self.cfg.backoff_grtts * self.cfg.distance.clamp(0.0, 1.0)).max(0.0))
    }

    fn on_nak(&mut self, now: Instant, list: &NeedList) {
        self.stats.naks_heard += 1;
        let Some(view) = self.view else { return };
        for n in &list.needs {
            if n.object != ObjectId::Payload {
                continue;
            }
            let Some(k) = view.layout.source_symbols(n.block) else { continue };
            if !self.held.contains(&n.block) {
                if self.unverified.contains(&n.block) {
                    self.stats.needs_unverified += 1;
                } else {
                    self.stats.needs_unheld += 1;
                }
                self.wait_for(n.block, u32::from(n.count.min(k.saturating_add(NEED_SLACK))));
                continue;
            }
            self.stats.needs_held += 1;
            if self.queue.contains_key(&n.block) || self.fetching.contains_key(&n.block) {
                continue; // being answered: this round's symbols are on their way
            }
            let count = u32::from(n.count.min(k.saturating_add(NEED_SLACK)));
            let at = now + self.backoff_max().mul_f64(self.rng.gen::<f64>());
            let p = self.pending.entry(n.block).or_insert(Pending { count, at });
            p.count = p.count.max(count);
        }
        self.arm_answer();
    }

    /// An advertisement heard (the sender's or another repairer's): what it covers is not
    /// answered again.
    fn on_covered(&mut self, needs: &[Need]) {
        for n in needs.iter().filter(|n| n.object == ObjectId::Payload) {
            self.lower_waiting(n.block, u32::from(n.count));
            if let Some(p) = self.pending.get_mut(&n.block) {
                p.count = p.count.saturating_sub(u32::from(n.count));
                if p.count == 0 {
                    self.pending.remove(&n.block);
                    self.stats.suppressed += 1;
                }
            }
        }
        self.arm_answer();
    }

    /// A repair symbol of `block` heard from someone else: one less to send.
    fn on_symbol(&mut self, object: ObjectId, block: u32) {
        if object != ObjectId::Payload {
            return;
        }
        self.lower_waiting(block, 1);
        if let Some(p) = self.pending.get_mut(&block) {
            p.count = p.count.saturating_sub(1);
            if p.count == 0 {
                self.pending.remove(&block);
                self.stats.suppressed += 1;
                self.arm_answer();
            }
        }
    }

    fn arm_answer(&mut self) {
        match self.pending.values().map(|p| p.at).min() {
            Some(at) => self.timers.set(Timer::Answer, at),
            None => self.timers.stop(Timer::Answer),
        }
    }

    /// Fire what is due at `now`: joins, and the backoffs that ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.timers.take_expired(Timer::Join, now) {
            self.join_due(now);
        }
        if self.timers.take_expired(Timer::Answer, now) {
            let due: Vec<(u32, u32)> = self
                .pending
                .iter()
                .filter(|(_, p)| p.at <= now)
                .map(|(b, p)| (*b, p.count))
                .collect();
            let mut needs = Vec::new();
            for (block, count) in due {
                self.pending.remove(&block);
                if self.slot.is_none() {
                    self.stats.no_slot += 1;
                    continue;
                }
                let count = count + u32::from(self.cfg.margin);
                self.stats.answers += 1;
                needs.push(Need {
                    object: ObjectId::Payload,
                    block,
                    count: count.min(u32::from(u16::MAX)) as u16,
                });
                if self.window.contains_key(&block) {
                    self.start_sending(block, count);
                } else if let Some(req) = self.request(block) {
                    self.fetching.insert(block, count);
                    self.stats.blocks_fetched += 1;
                    self.events.push_back(req);
                }
            }
            for chunk in needs.chunks(MAX_NEEDS) {
                let list = NeedList { seq: 0, loss_ppm: 0, needs: chunk.to_vec() };
                self.outbox.push_back((Packet::Repairer(RepairerPacket::Advert(list)), Dest::All));
            }
            self.arm_answer();
        }
    }

    fn join_due(&mut self, now: Instant) {
        if self.slot.is_some() || self.joins_sent >= JOIN_TRIES {
            return;
        }
        self.joins_sent += 1;
        self.outbox.push_back((Packet::Hello(Hello::RepairerJoin), Dest::Sender));
        let grtt = self.view.map_or(Duration::from_millis(10), |v| v.grtt);
        let interval = (grtt * 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
        self.timers.set(Timer::Join, now + interval);
    }

    fn request(&self, block: u32) -> Option<RepairerEvent> {
        let l = self.view?.layout;
        Some(RepairerEvent::NeedBlock {
            block,
            offset: l.block_offset(block)?,
            len: l.block_len(block)?,
        })
    }

    fn start_sending(&mut self, block: u32, count: u32) {
        *self.queue.entry(block).or_insert(0) += count;
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<RepairerEvent> {
        self.events.pop_front()
    }

    /// When [`Repairer::handle_timeout`] or [`Repairer::poll_transmit`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.outbox.is_empty() {
            return Some(self.last_now);
        }
        let paced = (!self.queue.is_empty()).then(|| self.pacer.next_ready());
        [self.timers.next_timeout(), paced].into_iter().flatten().min()
    }

    /// The next datagram to send, written into `buf`: joins and advertisements first (never
    /// paced), then repair symbols within the rate cap.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.last_now = self.last_now.max(now);
        if let Some((packet, dest)) = self.outbox.pop_front() {
            if matches!(packet, Packet::Repairer(_)) {
                self.stats.adverts_sent += 1;
            }
            wire::emit(&self.header, &packet, buf);
            self.pacer.charge(now, buf.len());
            return Some(Transmit { size: buf.len(), dest });
        }
        if self.queue.is_empty() || !self.pacer.ready(now) {
            return None;
        }
        while let Some(block) = self.next_block() {
            self.last_served = Some(block);
            if let Some(esi) = self.next_symbol(block) {
                let symbol =
                    RepairSymbol { object: ObjectId::Payload, block, esi, symbol: &self.scratch };
                wire::emit(&self.header, &Packet::Repairer(RepairerPacket::Symbol(symbol)), buf);
                self.pacer.charge(now, buf.len());
                self.stats.symbols_sent += 1;
                return Some(Transmit { size: buf.len(), dest: Dest::All });
            }
        }
        None
    }
}
