//! The receiver state machine. It keeps up to a few *candidate* sessions from the
//! announcements it hears (`candidate`) and locks onto the first whose manifest decodes and
//! matches its announced hash (a forged announcement that never delivers a manifest blocks
//! nothing), optionally only from one sender ([`SenderFilter`], `--sender`). Once locked, it
//! collects symbols per block, hands full blocks out for decoding ([`Event::Decode`]) and
//! decoded blocks out to be written ([`Event::Block`]) with their BLAKE3 kept (32 bytes a
//! block written); when the hash list (object 2) arrives and matches the announcement it
//! checks every block written against it (one that does not match is fetched again and
//! rewritten), and blocks decoded after it are checked before they are handed out. It NAKs
//! what the sender has passed and it still lacks after a randomized backoff, stays quiet for a
//! bounded while when it heard an equal or larger need from another receiver or the sender's
//! repair advertisement, and reports completion until the sender acknowledges. It echoes a
//! share of the sender's probes (the share the probe asks for, so echoes stay bounded in a
//! large group), and it gives up with a clear reason when the sender squelches it (dropped as
//! a straggler after it NAKed, or a block it lacks is no longer held).
//!
//! Open mode trusts nothing it cannot check: control datagrams (announcements, probes,
//! flushes, repair advertisements, squelches, acknowledgements) count only from the address
//! the session was announced from; a squelch or acknowledgement only for what this receiver
//! asked; a heard NAK suppresses ours only for a bounded time; a sequence jump larger than the
//! sender could have sent is not loss ([`seq`]). Sizes are bounded before anything is sized
//! by them: the announce's layout at parse, `max_size` here, the manifest's entry count before
//! it is decoded, and per-block state is one bit a block ([`ObjectState`]).
//!
//! The core never writes files: the driver writes blocks into a staging area, then, when every
//! block is verified ([`Event::Complete`]), makes it durable and places it without reading it
//! again (unless asked to), and answers with [`Receiver::handle_stored`]. The object hash it
//! reports is the hash list's BLAKE3, derived from what was verified.
//!
//! A session's identity is its id, its sender, the object layout, the manifest (length and
//! hash) and the hash list's hash once announced (it may go from unknown to a value once): an
//! announcement that changes any of them is refused and counted. The rate and the
//! GRTT it announces are parameters the receiver follows ([`Receiver::announced_rate`] is the
//! newest).
//!
//! This module holds the configuration, the events and the [`Receiver`], whose entry points
//! dispatch once to the session (or the candidates); `session` holds the session's state, its
//! [`Timer`]s and its queues, `verify` what is done with decoded blocks, `nak` NAK scheduling
//! and suppression, `report` how a session ends, `abort` how it ends without its sender (an
//! Abort, the idle and session timeouts, storage errors), [`backoff`] the randomized NAK backoff
//! and [`ObjectState`] each object's blocks.

mod abort;
pub use abort::ABORT_CONFIRM;
mod backoff;
mod block_map;
mod candidate;
mod have;
mod hello;
mod nak;
mod object;
#[path = "../repairer/receiver_side.rs"]
mod repairer_side;
mod report;
mod resume;
pub mod seq;
mod session;
mod trust;
mod verify;

pub use backoff::backoff;
pub use candidate::{SenderFilter, SenderFilterError, MAX_CANDIDATES, MAX_REFUSED};
pub use have::{HAVE_REPEATS, SEARCH_POLL};
pub use hello::{default_host_name, HELLO_INTERVAL_MAX, HELLO_INTERVAL_MIN, HELLO_TRIES};
pub use nak::{COVER_MARGIN, MAX_HEARD_TX};
pub use object::ObjectState;
pub use session::{Timer, MAX_GRTT};
pub use trust::{Accepted, Refusals, TrustConfig};

use crate::proto::fec::{BlockSymbols, Inserted};
use crate::proto::manifest::{HashList, Manifest};
use crate::proto::stats::ReceiverStats;
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{self, *};
use crate::proto::{Dest, Transmit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use session::{Ctx, Session};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// This node's id.
    pub node: u32,
    /// Seed for the backoff RNG.
    pub seed: u64,
    /// Accept only this session (else the first announced).
    pub session: Option<u32>,
    /// Never lock onto these sessions (already received).
    pub skip_sessions: Vec<u32>,
    /// Maximum NAK backoff in GRTTs (RFC 5401's K).
    pub backoff_factor: f64,
    /// Group size estimate for the backoff distribution, until the sender's probes say.
    pub group_size: f64,
    /// Least time between two NAKs, in GRTTs (a per-receiver NAK rate limit).
    pub nak_interval_grtts: f64,
    /// Blocks held in memory at most (collecting or decoding; before a session is locked onto,
    /// the candidates share them; blocks written and awaiting the hash list are not held).
    pub max_pending_blocks: usize,
    /// Report repetitions before giving up on an acknowledgement.
    pub report_tries: u32,
    /// Give up ([`Outcome::TimedOut`]) when no session was announced this long after the
    /// receiver started; `None` waits forever.
    pub idle_timeout: Option<Duration>,
    /// Give up ([`Outcome::TimedOut`]) when the locked sender was not heard for this long while
    /// receiving; `None` waits forever.
    pub session_timeout: Option<Duration>,
    /// Host name its Hello carries (`None`: [`default_host_name`] of the node id).
    pub host: Option<HostName>,
    /// Take announcements only from this sender (`--sender`); else from anyone.
    pub sender: Option<SenderFilter>,
    /// Refuse a payload larger than this many bytes (`--max-size`) before anything is sized
    /// by it; else only the layout's bound applies.
    pub max_size: Option<u64>,
    /// Signed mode: lock only onto pushes signed by one of these keys (see `trust`).
    pub trust: Option<TrustConfig>,
    /// Keep only which symbols of a block arrived, not their bytes
    /// ([`BlockSymbols::counting`]): for the simulator's ideal FEC model, whose decoder never
    /// reads the symbols, so that thousands of receivers fit in memory. A real receiver keeps
    /// this `false` (its blocks would not decode).
    pub count_only_symbols: bool,
    /// Answer every probe with an echo, whatever share the sender asks for: a relay's
    /// upstream receiver speaks for everyone behind it, and the origin, whose group size counts
    /// them, would otherwise hear its loss rate (what automatic parity plans from) rarely or
    /// never.
    pub always_echo: bool,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            node: 2,
            seed: 0,
            session: None,
            skip_sessions: Vec::new(),
            backoff_factor: 4.0,
            group_size: 1000.0,
            nak_interval_grtts: 1.0,
            max_pending_blocks: 32,
            report_tries: 40,
            idle_timeout: None,
            session_timeout: None,
            host: None,
            sender: None,
            max_size: None,
            trust: None,
            count_only_symbols: false,
            always_echo: false,
        }
    }
}

impl ReceiverConfig {
    /// These settings for a relay's upstream receiver (`mcast-relay` and the simulator's
    /// relay): it echoes every probe ([`ReceiverConfig::always_echo`]).
    pub fn for_relay(self) -> Self {
        ReceiverConfig { always_echo: true, ..self }
    }
}

/// A block ready to be decoded (CPU work the driver may run on another thread).
#[derive(Debug)]
pub struct DecodeJob {
    /// Object.
    pub object: ObjectId,
    /// Block number.
    pub block: u32,
    /// The symbols collected.
    pub symbols: BlockSymbols,
    /// Bytes of object data in the block (the rest of `K * T` is padding).
    pub len: usize,
}

/// The result of [`DecodeJob::run`], for [`Receiver::handle_decoded`].
#[derive(Debug)]
pub struct Decoded {
    /// Object.
    pub object: ObjectId,
    /// Block number.
    pub block: u32,
    /// Whether it was a copy (no loss).
    pub systematic: bool,
    /// The block's data and its BLAKE3, or the symbols back when they were not enough.
    pub result: Result<(Vec<u8>, [u8; 32]), Box<BlockSymbols>>,
}

impl DecodeJob {
    /// Decode (or copy) the block, decompress it in a compressed session, and hash it: all the
    /// CPU work a block needs, so that a driver can run it off its receive loop. A block that
    /// does not decompress to its length comes back empty (the session discards it).
    pub fn run(self) -> Decoded {
        let systematic = self.symbols.is_systematic();
        let len = self.len;
        Decoded {
            object: self.object,
            block: self.block,
            systematic,
            result: self.symbols.decode_payload(len).map(|data| {
                let data = data.unwrap_or_default();
                let hash = *blake3::hash(&data).as_bytes();
                (data, hash)
            }),
        }
    }
}

/// How reception ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Verified, placed, reported and acknowledged.
    Complete,
    /// Verified and placed, but the sender never acknowledged the report.
    Unacknowledged,
    /// Could not be completed.
    Failed(String),
    /// Gave up waiting: no session was announced within the idle timeout, or the locked
    /// sender went silent for the session timeout.
    TimedOut(String),
}

/// Something the driver must act on.
#[derive(Debug)]
pub enum Event {
    /// The manifest arrived and verified: prepare the destination.
    Manifest(Manifest),
    /// Run this job and hand the result to [`Receiver::handle_decoded`].
    Decode(DecodeJob),
    /// A decoded block: write `data` at `offset` in the staging area (never the destination).
    /// It is verified already if the hash list is known, else when the list arrives.
    Block {
        /// Block number.
        block: u32,
        /// Byte offset in the payload.
        offset: u64,
        /// Decoded bytes.
        data: Vec<u8>,
        /// Bytes were written at this offset before and failed verification: these replace
        /// them (zeros included).
        rewrite: bool,
        /// BLAKE3 of `data` (what a resume journal records for the block).
        hash: [u8; 32],
    },
    /// Every block is written and verified against `hashes`: make the copy durable, place it
    /// (re-reading it only with `--verify-readback`) and call [`Receiver::handle_stored`] with
    /// `hashes.root()`, the object hash.
    Complete {
        /// Payload size.
        bytes: u64,
        /// The verified hash list.
        hashes: HashList,
    },
    /// Reception is over.
    Finished(Outcome),
}

/// The receiver state machine.
pub struct Receiver {
    cfg: ReceiverConfig,
    rng: ChaCha8Rng,
    /// The session locked onto.
    session: Option<Session>,
    /// Before locking: the sessions announced, each collecting its manifest.
    candidates: Vec<Session>,
    /// Candidates whose manifest was refused (their sender and identity), oldest first.
    refused: VecDeque<(SocketAddr, session::Identity)>,
    /// `max_size` refusal logged once.
    warned_size: bool,
    /// With `trust`: what stands between an announcement and locking onto it.
    gate: Option<trust::Gate>,
    last_now: Instant,
    stats: ReceiverStats,
    watch: abort::Watch,
    /// The next datagram handed over arrived marked ECN Congestion Experienced
    /// ([`Receiver::note_ce_mark`]).
    ce_next: bool,
}

impl Receiver {
    /// A receiver waiting for an announcement.
    pub fn new(cfg: ReceiverConfig) -> Self {
        Receiver {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            session: None,
            candidates: Vec::new(),
            refused: VecDeque::new(),
            warned_size: false,
            gate: cfg.trust.clone().map(trust::Gate::new),
            last_now: Instant::ZERO,
            stats: ReceiverStats::default(),
            watch: abort::Watch::default(),
            ce_next: false,
            cfg,
        }
    }

    /// Counters.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// Candidate sessions kept while none is locked onto.
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// The session locked onto, if any.
    pub fn session_id(&self) -> Option<u32> {
        self.session.as_ref().map(Session::id)
    }

    /// With `trust`: the pushes refused so far, and why.
    pub fn refusals(&self) -> Option<&Refusals> {
        self.gate.as_ref().map(|g| &g.refusals)
    }

    /// With `trust`: the signed push locked onto (its key and version), once verified.
    pub fn accepted(&self) -> Option<&Accepted> {
        let locked = self.session.as_ref()?.id();
        self.gate.as_ref()?.accepted.iter().rev().find(|a| a.session == locked)
    }

    /// The send rate the sender announced last (bits per second), once locked onto a session.
    pub fn announced_rate(&self) -> Option<u64> {
        self.session.as_ref().map(Session::rate_bps)
    }

    /// Payload bytes and blocks done so far, and the block count.
    pub fn progress(&self) -> Option<(u32, u32)> {
        let o = &self.session.as_ref()?.objects[ObjectId::Payload];
        Some((o.done_count(), o.layout.block_count()))
    }

    /// The session and what it needs from outside it: the one place entry points dispatch.
    fn enter(&mut self, now: Instant) -> Option<(&mut Session, Ctx<'_>)> {
        self.last_now = self.last_now.max(now);
        let s = self.session.as_mut()?;
        let slots = self.cfg.max_pending_blocks;
        Some((s, Ctx { cfg: &self.cfg, rng: &mut self.rng, stats: &mut self.stats, slots }))
    }

    /// Feed one datagram from `from`. Bad input is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.start_watch(now);
        self.stats.datagrams += 1;
        self.last_now = self.last_now.max(now);
        let (header, packet) = match wire::parse(data) {
            Ok(p) => p,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                self.ce_next = false; // the mark was this datagram's
                return;
            }
        };
        self.on_parsed(now, from, header, packet);
    }

    /// [`Receiver::handle_datagram`] for a datagram that parsed to `header` and `packet`
    /// (a simulator parses each datagram once for all its receivers): the same effects.
    pub fn handle_parsed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        packet: Packet,
    ) {
        self.start_watch(now);
        self.stats.datagrams += 1;
        self.last_now = self.last_now.max(now);
        self.on_parsed(now, from, header, packet);
    }

    fn on_parsed(&mut self, now: Instant, from: SocketAddr, header: Header, packet: Packet) {
        let ce = std::mem::take(&mut self.ce_next);
        if header.node == self.cfg.node {
            return; // our own datagram looped back
        }
        if let Packet::Abort(a) = &packet {
            return self.on_abort(now, from, &header, a);
        }
        if self.session.is_none() && self.watch.ended() {
            self.stats.dropped_foreign += 1;
            return;
        }
        self.watch_heard(now, from, &header);
        let gated = self.gate.is_some();
        match self.enter(now) {
            Some((s, mut cx)) => {
                if ce {
                    s.note_ce_mark(from, &header);
                }
                s.on_packet(&mut cx, now, from, header, packet)
            }
            None if gated => self.on_unlocked_gated(now, from, header, packet),
            None => self.on_unlocked(now, from, header, packet),
        }
    }

    /// Hand back the result of a [`DecodeJob`].
    pub fn handle_decoded(&mut self, now: Instant, decoded: Decoded) {
        if let Some((s, mut cx)) = self.enter(now) {
            s.on_decoded(&mut cx, now, decoded);
        }
    }

    /// The driver verified and placed the object (`Ok` with its hash) or failed to.
    pub fn handle_stored(&mut self, now: Instant, result: Result<[u8; 32], String>) {
        if let Some((s, mut cx)) = self.enter(now) {
            s.on_stored(&mut cx, now, result);
        }
    }

    /// The kernel's running count of datagrams it dropped on this receiver's socket (receive
    /// buffer full), read by the driver at `now`: rate control tells the host's loss from the
    /// path's with it (`RateMeter::on_socket_drops`).
    pub fn note_socket_drops(&mut self, now: Instant, total: u64) {
        if let Some(s) = self.session.as_mut() {
            s.rate_meter.on_socket_drops(now, total);
        }
    }

    /// The next datagram handed over ([`Receiver::handle_datagram`] or
    /// [`Receiver::handle_parsed`]) arrived marked ECN Congestion Experienced (the driver reads
    /// the IP header's ECN field with each datagram). The mark is congestion to rate control
    /// (`RateMeter::on_ce_marks`) only if that datagram proves to be the locked session's,
    /// from its sender's node and address: a forged datagram's mark counts for nothing.
    pub fn note_ce_mark(&mut self) {
        self.ce_next = true;
    }

    /// Fire the timers due at `now` (NAK backoff, lapsed covers, report repetition).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.check_watch(now);
        if let Some((s, mut cx)) = self.enter(now) {
            s.on_timeout(&mut cx, now);
            return;
        }
        let (candidates, mut cx) = self.candidates_ctx();
        for c in candidates {
            c.on_timeout(&mut cx, now);
        }
    }

    /// Whether [`Receiver::poll_transmit`] or [`Receiver::poll_event`] has something now: a
    /// driver that polls after every input may skip both while this is `false` (the simulator
    /// does, for thousands of receivers); [`Receiver::poll_timeout`] is still to be asked.
    pub fn has_output(&self) -> bool {
        if self.watch.has_event() {
            return true;
        }
        match &self.session {
            Some(s) => s.has_output() || !s.events.is_empty(),
            None => self.candidates.iter().any(session::Session::has_output),
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(ev) = self.watch.take_event() {
            return Some(ev);
        }
        self.session.as_mut()?.events.pop_front()
    }

    /// When [`Receiver::handle_timeout`] or [`Receiver::poll_transmit`] next has work: now
    /// while datagrams are waiting, else the session's earliest timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let watch = self.watch_deadline();
        let sessions = self.session.iter().chain(&self.candidates);
        let mut next: Option<Instant> = watch;
        for s in sessions {
            if s.has_output() {
                return Some(self.last_now);
            }
            next = match (next, s.timers.next_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }

    /// The next datagram to send to the group, written into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some((s, mut cx)) = self.enter(now) {
            return s.poll_transmit(&mut cx, now, buf);
        }
        let (candidates, mut cx) = self.candidates_ctx();
        candidates.iter_mut().find_map(|c| c.poll_transmit(&mut cx, now, buf))
    }
}

#[cfg(test)]
mod tests;
