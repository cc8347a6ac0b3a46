//! The receiver state machine. It locks onto the first session announced, collects symbols per
//! block, hands full blocks out for decoding ([`Event::Decode`]), checks every decoded block
//! against the manifest's BLAKE3 before handing it out ([`Event::Block`]), NAKs what the sender
//! has passed and it still lacks after a randomized backoff, stays quiet when it heard an equal
//! or larger need from another receiver or the sender's repair advertisement, and reports
//! completion until the sender acknowledges. It echoes a share of the sender's probes (the
//! share the probe asks for, so echoes stay bounded in a large group), and it gives up with a
//! clear reason when the sender squelches it (dropped as a straggler, or a block it lacks is no
//! longer held).
//!
//! The core never writes files: the driver writes verified blocks, then verifies and places the
//! whole object when asked with [`Event::Complete`], and answers with
//! [`Receiver::handle_stored`].

mod backoff;
mod nak;
mod object;

pub use backoff::backoff;
pub use object::ObjectState;

use crate::proto::fec::{BlockSymbols, Inserted};
use crate::proto::manifest::Manifest;
use crate::proto::stats::ReceiverStats;
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{self, *};
use crate::proto::{Dest, Transmit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap, VecDeque};
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
    /// Blocks held in memory at most (collecting, decoding, or awaiting the manifest).
    pub max_pending_blocks: usize,
    /// Report repetitions before giving up on an acknowledgement.
    pub report_tries: u32,
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
        }
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
    /// Decode (or copy) the block and hash it: all the CPU work a block needs, so that a
    /// driver can run it off its receive loop.
    pub fn run(self) -> Decoded {
        let systematic = self.symbols.is_systematic();
        let len = self.len;
        Decoded {
            object: self.object,
            block: self.block,
            systematic,
            result: self.symbols.decode().map(|mut data| {
                data.truncate(len);
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
}

/// Something the driver must act on.
#[derive(Debug)]
pub enum Event {
    /// The manifest arrived and verified: prepare the destination.
    Manifest(Manifest),
    /// Run this job and hand the result to [`Receiver::handle_decoded`].
    Decode(DecodeJob),
    /// A verified block: write `data` at `offset`.
    Block {
        /// Block number.
        block: u32,
        /// Byte offset in the payload.
        offset: u64,
        /// Verified bytes.
        data: Vec<u8>,
    },
    /// Every block is written: verify the whole object against `object_hash`, place it, and
    /// call [`Receiver::handle_stored`].
    Complete {
        /// Payload size.
        bytes: u64,
        /// Expected BLAKE3 of the payload.
        object_hash: [u8; 32],
    },
    /// Reception is over.
    Finished(Outcome),
}

#[derive(Debug, Clone, Copy)]
struct Cover {
    count: u32,
    until: Instant,
}

#[derive(Debug)]
enum Phase {
    Receiving,
    Storing,
    Reporting { report: Report, next: Instant, tries_left: u32 },
    Done,
}

#[derive(Debug)]
struct Session {
    id: u32,
    sender_node: u32,
    announce: Announce,
    grtt: Duration,
    started: Instant,
    objects: [ObjectState; 2],
    manifest: Option<Manifest>,
    manifest_bytes: Vec<u8>,
    /// Decoded payload blocks, with their hashes, waiting for the manifest.
    unverified: BTreeMap<u32, (Vec<u8>, [u8; 32])>,
    covers: HashMap<(ObjectId, u32), Cover>,
    cover_check: Option<Instant>,
    nak_at: Option<Instant>,
    /// When this receiver last sent a NAK.
    last_nak: Option<Instant>,
    /// The sender's group size estimate, from its probes.
    group_size: Option<f64>,
    /// Why reception failed, once it has.
    failure: Option<String>,
    /// Highest data sequence number seen from the sender (or implied by a flush or advert).
    seen_seq: Option<u32>,
    phase: Phase,
}

impl Session {
    /// Block slots left under `max` (collecting, decoding and unverified blocks use one each).
    fn free_slots(&self, max: usize) -> usize {
        let used =
            self.objects[0].in_memory() + self.objects[1].in_memory() + self.unverified.len();
        max.saturating_sub(used)
    }

    /// The sender reports that its next data datagram will carry `next`: everything before it
    /// has been sent, and what we did not get of it is lost, not in flight.
    fn saw_position(&mut self, next: u32) {
        let last = next.wrapping_sub(1);
        if self.seen_seq.is_none_or(|s| seq_after(last, s)) {
            self.seen_seq = Some(last);
        }
    }
}

/// The receiver state machine.
pub struct Receiver {
    cfg: ReceiverConfig,
    rng: ChaCha8Rng,
    session: Option<Session>,
    header: Header,
    outbox: VecDeque<Packet<'static>>,
    events: VecDeque<Event>,
    echo: Option<(u64, Instant)>,
    last_now: Instant,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver waiting for an announcement.
    pub fn new(cfg: ReceiverConfig) -> Self {
        Receiver {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            header: Header { flags: 0, session: 0, node: cfg.node },
            session: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            echo: None,
            last_now: Instant::ZERO,
            stats: ReceiverStats::default(),
            cfg,
        }
    }

    /// Counters.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// The session locked onto, if any.
    pub fn session_id(&self) -> Option<u32> {
        self.session.as_ref().map(|s| s.id)
    }

    /// The send rate the sender announced (bits per second), once locked onto a session.
    pub fn announced_rate(&self) -> Option<u64> {
        self.session.as_ref().map(|s| s.announce.rate_bps)
    }

    /// Payload bytes and blocks done so far, and the block count.
    pub fn progress(&self) -> Option<(u32, u32)> {
        let s = self.session.as_ref()?;
        let o = &s.objects[ObjectId::Payload as usize];
        Some((o.done_count(), o.layout.block_count()))
    }

    /// Feed one datagram. Bad input is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, _from: SocketAddr, data: &[u8]) {
        self.last_now = self.last_now.max(now);
        self.stats.datagrams += 1;
        let (header, packet) = match wire::parse(data) {
            Ok(p) => p,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        if header.node == self.cfg.node {
            return; // our own datagram looped back
        }
        if self.session.is_none() {
            match &packet {
                Packet::Announce(a)
                    if self.cfg.session.is_none_or(|s| s == header.session)
                        && !self.cfg.skip_sessions.contains(&header.session) =>
                {
                    self.start_session(now, header, *a);
                }
                _ => {
                    self.stats.dropped_foreign += 1;
                    return;
                }
            }
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if header.session != s.id {
            self.stats.dropped_foreign += 1;
            return;
        }
        let from_sender = header.node == s.sender_node;
        match packet {
            Packet::Data(d) if from_sender => self.on_data(now, d),
            Packet::Announce(a) if from_sender => {
                if a != (Announce { grtt_us: a.grtt_us, ..s.announce }) {
                    self.stats.dropped_invalid += 1; // a changed announcement: not our transfer
                } else {
                    s.grtt = grtt_of(a.grtt_us);
                }
            }
            Packet::Probe(p) if from_sender => {
                s.grtt = grtt_of(p.grtt_us);
                s.group_size = Some(f64::from(p.group_size.max(1)));
                let echo = p.echo_share == u16::MAX || self.rng.gen::<u16>() < p.echo_share;
                if echo && matches!(s.phase, Phase::Receiving | Phase::Storing) {
                    self.echo = Some((p.send_time_us, now));
                }
            }
            Packet::Flush(f) if from_sender => {
                s.saw_position(f.seq);
                let grew = s.objects.iter_mut().fold(false, |g, o| o.advance(u32::MAX) | g);
                if grew {
                    self.update_nak_timer(now);
                }
            }
            Packet::RepairAdvert(list) if from_sender => {
                s.saw_position(list.seq);
                self.on_cover(now, &list)
            }
            Packet::ReportAck(ack) if from_sender => {
                if ack.nodes.contains(&self.cfg.node) {
                    if let Phase::Reporting { report, .. } = &s.phase {
                        let outcome = match report.status {
                            ReportStatus::Complete => Outcome::Complete,
                            ReportStatus::Failed => Outcome::Failed(
                                s.failure.clone().unwrap_or_else(|| "reported failure".into()),
                            ),
                        };
                        s.phase = Phase::Done;
                        self.events.push_back(Event::Finished(outcome));
                    }
                }
            }
            Packet::Squelch(q) if from_sender => self.on_squelch(now, &q),
            Packet::Nak(list) => self.on_cover(now, &list),
            Packet::Echo(_) | Packet::Report(_) => {} // other receivers' feedback
            _ => self.stats.dropped_foreign += 1,
        }
    }

    fn start_session(&mut self, now: Instant, header: Header, a: Announce) {
        self.header.session = header.session;
        self.session = Some(Session {
            id: header.session,
            sender_node: header.node,
            announce: a,
            grtt: grtt_of(a.grtt_us),
            started: now,
            objects: [ObjectState::new(a.manifest_layout()), ObjectState::new(a.layout())],
            manifest: None,
            manifest_bytes: Vec::new(),
            unverified: BTreeMap::new(),
            covers: HashMap::new(),
            cover_check: None,
            nak_at: None,
            last_nak: None,
            group_size: None,
            failure: None,
            seen_seq: None,
            phase: Phase::Receiving,
        });
    }

    fn on_data(&mut self, now: Instant, d: Data<'_>) {
        let max_pending = self.cfg.max_pending_blocks;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let obj = d.object as usize;
        let Some(k) = s.objects[obj].layout.source_symbols(d.block) else {
            self.stats.dropped_invalid += 1;
            return;
        };
        if d.symbol.len() != usize::from(s.announce.symbol_size) {
            self.stats.dropped_invalid += 1;
            return;
        }
        // Loss estimate from gaps in the sender's sequence numbers.
        match s.seen_seq {
            Some(prev) if seq_after(d.seq, prev) => {
                let gap = d.seq.wrapping_sub(prev);
                self.stats.first_pass_missing += u64::from(gap - 1);
                self.stats.first_pass_expected += u64::from(gap);
                s.seen_seq = Some(d.seq);
            }
            Some(_) => {} // reordered or duplicated
            None => {
                self.stats.first_pass_expected += 1;
                s.seen_seq = Some(d.seq);
            }
        }
        // Everything below this block has been passed by the sender.
        let mut grew = s.objects[obj].advance(d.block);
        if d.object == ObjectId::Payload {
            grew |= s.objects[0].advance(u32::MAX);
        }
        let full = s.free_slots(max_pending) == 0;
        let o = &mut s.objects[obj];
        if o.is_done(d.block) || o.decoding.contains(&d.block) {
            self.stats.symbols_duplicate += 1;
        } else {
            let symbols = match o.pending.entry(d.block) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    if full {
                        self.stats.dropped_memory += 1;
                        if grew {
                            self.update_nak_timer(now);
                        }
                        return;
                    }
                    let Ok(b) = BlockSymbols::new(s.announce.symbol_size, k) else { return };
                    e.insert(b)
                }
            };
            match symbols.insert(d.esi, d.symbol) {
                Ok(Inserted::New) => self.stats.symbols_new += 1,
                Ok(_) => self.stats.symbols_duplicate += 1,
                Err(_) => self.stats.dropped_invalid += 1,
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
            self.update_nak_timer(now);
        }
    }

    /// Hand back the result of a [`DecodeJob`].
    pub fn handle_decoded(&mut self, now: Instant, decoded: Decoded) {
        self.last_now = self.last_now.max(now);
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let o = &mut s.objects[decoded.object as usize];
        if !o.decoding.remove(&decoded.block) {
            return; // not ours (stale or foreign)
        }
        let (data, hash) = match decoded.result {
            Ok(done) => done,
            Err(symbols) => {
                self.stats.decode_failures += 1;
                o.pending.insert(decoded.block, *symbols);
                self.update_nak_timer(now);
                return;
            }
        };
        if decoded.systematic {
            self.stats.blocks_systematic += 1;
        } else {
            self.stats.blocks_decoded += 1;
        }
        if o.layout.block_len(decoded.block) != Some(data.len()) {
            return; // a job not built by this receiver
        }
        match decoded.object {
            ObjectId::Manifest => self.on_manifest_block(now, decoded.block, &data),
            ObjectId::Payload => {
                if s.manifest.is_some() {
                    self.verify_block(now, decoded.block, data, hash);
                } else if s.unverified.len() < self.cfg.max_pending_blocks {
                    o.set_done(decoded.block);
                    s.unverified.insert(decoded.block, (data, hash));
                } else {
                    self.stats.dropped_memory += 1;
                    o.reset(decoded.block);
                    self.update_nak_timer(now);
                }
            }
        }
    }

    fn on_manifest_block(&mut self, now: Instant, block: u32, data: &[u8]) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let o = &mut s.objects[0];
        let Some(off) = o.layout.block_offset(block) else {
            return;
        };
        if s.manifest_bytes.is_empty() {
            s.manifest_bytes = vec![0; s.announce.manifest_len as usize];
        }
        s.manifest_bytes[off as usize..off as usize + data.len()].copy_from_slice(data);
        o.set_done(block);
        if !o.complete() {
            return;
        }
        match Manifest::decode(&s.manifest_bytes, &s.announce) {
            Ok(m) => {
                s.manifest_bytes = Vec::new();
                s.manifest = Some(m.clone());
                self.events.push_back(Event::Manifest(m));
                let held = std::mem::take(&mut s.unverified);
                for b in held.keys() {
                    s.objects[1].reset(*b);
                }
                for (b, (data, hash)) in held {
                    self.verify_block(now, b, data, hash);
                }
                self.check_complete();
            }
            Err(e) => {
                tracing::warn!("manifest rejected: {e}");
                self.stats.hash_failures += 1;
                for b in 0..o.layout.block_count() {
                    o.reset(b);
                }
                self.update_nak_timer(now);
            }
        }
    }

    /// Hand out `block` if `hash` (of `data`, computed by the decode job) is the manifest's.
    fn verify_block(&mut self, now: Instant, block: u32, data: Vec<u8>, hash: [u8; 32]) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(m) = s.manifest.as_ref() else { return };
        let o = &mut s.objects[1];
        let expected = m.block_hashes.get(block as usize);
        if expected != Some(&hash) {
            self.stats.hash_failures += 1;
            o.reset(block);
            self.update_nak_timer(now);
            return;
        }
        o.set_done(block);
        let offset = o.layout.block_offset(block).unwrap_or(0);
        self.events.push_back(Event::Block { block, offset, data });
        self.check_complete();
    }

    fn check_complete(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(m) = s.manifest.as_ref() else { return };
        if matches!(s.phase, Phase::Receiving) && s.objects[1].complete() {
            s.phase = Phase::Storing;
            s.nak_at = None;
            self.events
                .push_back(Event::Complete { bytes: m.object_size, object_hash: m.object_hash });
        }
    }

    /// The driver verified and placed the object (`Ok` with its hash) or failed to.
    pub fn handle_stored(&mut self, now: Instant, result: Result<[u8; 32], String>) {
        self.last_now = self.last_now.max(now);
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if !matches!(s.phase, Phase::Storing) {
            return;
        }
        let (status, object_hash) = match &result {
            Ok(h) => (ReportStatus::Complete, *h),
            Err(e) => {
                tracing::error!("storing failed: {e}");
                s.failure = Some(format!("storing failed: {e}"));
                (ReportStatus::Failed, [0; 32])
            }
        };
        self.start_reporting(now, status, object_hash);
    }

    /// The sender declined to repair: give up if it concerns us.
    fn on_squelch(&mut self, now: Instant, q: &Squelch) {
        let node = self.cfg.node;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if !matches!(s.phase, Phase::Receiving) {
            return;
        }
        let why = match q.reason {
            SquelchReason::Straggler if q.nodes.contains(&node) => format!(
                "the sender dropped this receiver as a straggler: it lost {:.1} % of the data, far \
                 more than the rest of the group, and used up its repair budget",
                f64::from(self.stats.loss_ppm()) / 1e4
            ),
            SquelchReason::Unavailable if !s.objects[q.object as usize].is_done(q.block) => {
                format!("the sender no longer holds block {} that this receiver lacks", q.block)
            }
            _ => return,
        };
        tracing::error!("{why}");
        self.stats.squelched += 1;
        s.failure = Some(why);
        s.nak_at = None;
        self.start_reporting(now, ReportStatus::Failed, [0; 32]);
    }

    /// Start repeating a report of `status` until the sender acknowledges it.
    fn start_reporting(&mut self, now: Instant, status: ReportStatus, object_hash: [u8; 32]) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let elapsed = now.saturating_duration_since(s.started).as_millis();
        let report = Report {
            status,
            bytes: s.announce.object_size,
            object_hash,
            naks_sent: self.stats.naks_sent as u32,
            naks_suppressed: self.stats.naks_suppressed as u32,
            elapsed_ms: elapsed.min(u128::from(u32::MAX)) as u32,
        };
        s.phase = Phase::Reporting { report, next: now, tries_left: self.cfg.report_tries };
    }

    /// Advance timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.cover_check.is_some_and(|t| t <= now) {
            s.covers.retain(|_, c| c.until > now);
            s.cover_check = s.covers.values().map(|c| c.until).min();
            self.update_nak_timer(now);
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.nak_at.is_some_and(|t| t <= now) {
            s.nak_at = None;
            self.send_nak(now);
            self.update_nak_timer(now);
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if let Phase::Reporting { report, next, tries_left } = &mut s.phase {
            if *next <= now {
                if *tries_left == 0 {
                    let outcome = match report.status {
                        ReportStatus::Complete => Outcome::Unacknowledged,
                        ReportStatus::Failed => Outcome::Failed(
                            s.failure.clone().unwrap_or_else(|| "report not acknowledged".into()),
                        ),
                    };
                    s.phase = Phase::Done;
                    self.events.push_back(Event::Finished(outcome));
                } else {
                    *tries_left -= 1;
                    let interval =
                        (s.grtt * 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
                    *next = now + interval;
                    self.outbox.push_back(Packet::Report(*report));
                }
            }
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Receiver::handle_timeout`] or [`Receiver::poll_transmit`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.outbox.is_empty() || self.echo.is_some() {
            return Some(self.last_now);
        }
        let s = self.session.as_ref()?;
        let report = match &s.phase {
            Phase::Reporting { next, .. } => Some(*next),
            _ => None,
        };
        [s.nak_at, s.cover_check, report].into_iter().flatten().min()
    }

    /// The next datagram to send to the group, written into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.last_now = self.last_now.max(now);
        if let Some((probe_time_us, at)) = self.echo.take() {
            let delay_us = (now - at).as_micros().min(u128::from(u32::MAX)) as u32;
            // Too few datagrams seen to say: "unmeasured", so the sender does not plan for 0.
            let loss_ppm =
                if self.stats.first_pass_expected < 64 { u32::MAX } else { self.stats.loss_ppm() };
            let echo = Echo { probe_time_us, delay_us, loss_ppm };
            self.stats.echoes_sent += 1;
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

fn grtt_of(us: u32) -> Duration {
    Duration::from_micros(u64::from(us).max(100))
}
