//! A deterministic multicast network simulator. One sender, N receivers, a virtual clock and a
//! seeded RNG: every datagram a node sends reaches every other member of the group after a fixed
//! one-way latency unless the loss model drops that copy ([`LossModel`]). NAKs are multicast
//! like everything else, so receivers hear each other. Block preparation, decoding and storage
//! run inline on in-memory buffers. The same configuration and seed always give the same trace
//! digest.
//!
//! Scale: a datagram is one event however many receivers it reaches (it fans out when it
//! arrives), and with [`FecModel::Ideal`] a block decodes as soon as it holds `K` symbols
//! without running RaptorQ, so a thousand receivers are cheap. [`SimConfig::scaled`] keeps
//! every quantity the protocol sees (datagrams, symbols per block, blocks, timing at the link
//! rate) of a real push while shrinking the bytes in each symbol.

mod loss;

pub use loss::LossModel;

use crate::proto::layout::Layout;
use crate::proto::manifest::Manifest;
use crate::proto::receiver::{self, Decoded, Outcome, Receiver, ReceiverConfig};
use crate::proto::sender::{self, Sender, SenderConfig};
use crate::proto::stats::{ReceiverStats, SenderStats};
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{self, ObjectId, Packet, DATA_OVERHEAD};
use crate::proto::Dest;
use loss::Links;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;

/// How blocks are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FecModel {
    /// Run RaptorQ on the symbols (exact, including its rare failure with exactly `K`).
    Real,
    /// A block with `K` symbols decodes to the right bytes (fast; no RaptorQ run).
    Ideal,
}

/// One simulated run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of receivers.
    pub receivers: usize,
    /// Which datagram copies are lost.
    pub loss: LossModel,
    /// One-way latency of every link.
    pub latency: Duration,
    /// Seed for the object bytes, the loss RNG and the receivers' RNGs.
    pub seed: u64,
    /// Payload size in bytes.
    pub object_size: usize,
    /// Symbol size `T`.
    pub symbol_size: u16,
    /// Symbols per full block `K`.
    pub block_symbols: u16,
    /// Sender settings (`expected_receivers` is set to `receivers`).
    pub sender: SenderConfig,
    /// Receiver settings (`node` and `seed` are set per receiver).
    pub receiver: ReceiverConfig,
    /// Time a receiver spends on each datagram (zero: infinitely fast). A receiver slower than
    /// the sender builds a queue, like a socket buffer.
    pub receiver_service: Duration,
    /// Longest a datagram may wait in a receiver's queue; beyond it the copy is dropped, like a
    /// full socket buffer.
    pub receiver_queue: Duration,
    /// Virtual time after which the run stops regardless.
    pub time_limit: Duration,
    /// Processed events after which the run stops regardless.
    pub event_limit: u64,
    /// How blocks are decoded.
    pub fec: FecModel,
    /// Receivers (by index) that join late, and when: before that they receive nothing.
    pub late_join: Vec<(usize, Duration)>,
    /// Receivers (by index) with extra independent loss on their link (stragglers).
    pub extra_loss: Vec<(usize, f64)>,
    /// Payload blocks the sender's storage fails to read.
    pub unreadable_blocks: Vec<u32>,
}

impl SimConfig {
    /// A small, fast configuration: 512 KiB in 16 KiB blocks of 256-byte symbols at 100 Mbit/s.
    pub fn small(receivers: usize, loss: f64, seed: u64) -> Self {
        SimConfig {
            receivers,
            loss: LossModel::Independent(loss),
            latency: Duration::from_micros(200),
            seed,
            object_size: 512 * 1024,
            symbol_size: 256,
            block_symbols: 64,
            sender: SenderConfig {
                rate_bps: 100_000_000,
                linger: Duration::from_millis(200),
                ..SenderConfig::default()
            },
            receiver: ReceiverConfig::default(),
            receiver_service: Duration::ZERO,
            receiver_queue: Duration::from_millis(50),
            time_limit: Duration::from_secs(60),
            event_limit: 50_000_000,
            fec: FecModel::Real,
            late_join: Vec::new(),
            extra_loss: Vec::new(),
            unreadable_blocks: Vec::new(),
        }
    }

    /// A push of `object_bytes` in 1400-byte symbols and 1 MiB blocks at 1 Gbit/s on a rack
    /// (100 µs one way), as the protocol sees it: the same datagrams, symbols per block, blocks
    /// and timing, but each symbol carries 16 bytes instead of 1400 (the rate is scaled so that
    /// datagrams leave at the real link's pace) and decoding is [`FecModel::Ideal`].
    pub fn scaled(receivers: usize, loss: LossModel, seed: u64, object_bytes: u64) -> Self {
        const T: u16 = 1400;
        const SIM_T: u16 = 16;
        const RATE: f64 = 1e9;
        let k = Layout::block_symbols_for(T, 1 << 20);
        let symbols = object_bytes.div_ceil(u64::from(T));
        let per_datagram = (usize::from(SIM_T) + DATA_OVERHEAD) as f64;
        let datagrams_per_s = RATE / 8.0 / (f64::from(T) + DATA_OVERHEAD as f64);
        let sender = SenderConfig {
            rate_bps: (datagrams_per_s * per_datagram * 8.0) as u64,
            burst_bytes: (45.0 * per_datagram) as usize,
            linger: Duration::from_millis(200),
            ..SenderConfig::default()
        };
        SimConfig {
            receivers,
            loss,
            latency: Duration::from_micros(100),
            seed,
            object_size: (symbols * u64::from(SIM_T)) as usize,
            symbol_size: SIM_T,
            block_symbols: k,
            sender,
            receiver: ReceiverConfig::default(),
            receiver_service: Duration::ZERO,
            receiver_queue: Duration::from_millis(50),
            time_limit: Duration::from_secs(600),
            event_limit: 2_000_000_000,
            fec: FecModel::Ideal,
            late_join: Vec::new(),
            extra_loss: Vec::new(),
            unreadable_blocks: Vec::new(),
        }
    }
}

/// How one receiver fared.
#[derive(Debug, Clone)]
pub struct ReceiverResult {
    /// Node id.
    pub node: u32,
    /// How it ended, if it did.
    pub outcome: Option<Outcome>,
    /// Whether its copy equals the object.
    pub correct: bool,
    /// When it placed the object.
    pub completed_at: Option<Duration>,
    /// Its counters.
    pub stats: ReceiverStats,
    /// Datagrams dropped because its queue was full.
    pub queue_drops: u64,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct SimResult {
    /// Per receiver.
    pub receivers: Vec<ReceiverResult>,
    /// Sender counters.
    pub sender: SenderStats,
    /// Whether the sender finished, and when.
    pub sender_finished_at: Option<Duration>,
    /// Receivers the sender holds a report from.
    pub reports: usize,
    /// Receivers the sender dropped as stragglers.
    pub dropped: Vec<u32>,
    /// Virtual time at the end.
    pub end: Duration,
    /// Events processed.
    pub events: u64,
    /// Digest of every delivery (time, endpoints, length, checksum).
    pub trace: [u8; 32],
    /// Payload blocks of which some receiver (present from the start) lacked a source symbol.
    pub lossy_blocks: u64,
    /// Sum over payload blocks of the most source symbols any such receiver lacked: the repair
    /// an omniscient sender would need if repairs were never lost.
    pub max_lacked: u64,
    /// Payload repair symbols sent (proactive and on request).
    pub payload_repairs: u64,
}

impl SimResult {
    /// Receivers holding a correct copy.
    pub fn complete(&self) -> usize {
        self.receivers.iter().filter(|r| r.correct).count()
    }

    /// Time the last receiver placed the object.
    pub fn last_completion(&self) -> Option<Duration> {
        self.receivers.iter().map(|r| r.completed_at).collect::<Option<Vec<_>>>()?.into_iter().max()
    }

    /// NAK datagrams the sender received per lossy block.
    pub fn naks_per_lossy_block(&self) -> f64 {
        self.sender.naks_received as f64 / self.lossy_blocks.max(1) as f64
    }

    /// Payload repair symbols sent per symbol an omniscient sender would have needed.
    pub fn repair_ratio(&self) -> f64 {
        if self.max_lacked == 0 {
            return if self.payload_repairs == 0 { 1.0 } else { f64::INFINITY };
        }
        self.payload_repairs as f64 / self.max_lacked as f64
    }

    /// NAK rounds suppressed, summed over receivers.
    pub fn naks_suppressed(&self) -> u64 {
        self.receivers.iter().map(|r| r.stats.naks_suppressed).sum()
    }
}

/// A datagram on its way: one event for all its copies.
struct Flight {
    from: usize,
    dest: Dest,
    data: Rc<[u8]>,
    /// A payload source symbol: its block.
    source_block: Option<u32>,
    /// Lost upstream (for every receiver).
    upstream_lost: bool,
}

enum Item {
    /// A datagram reaches the group.
    Arrive(Flight),
    /// A copy leaves a slow receiver's queue.
    Dequeue {
        to: usize,
        from: usize,
        data: Rc<[u8]>,
        source_block: Option<u32>,
    },
    Timer {
        node: usize,
    },
}

struct Node {
    timer: Option<Instant>,
    /// When the node is done with the datagrams already queued for it.
    busy_until: Instant,
    /// Before this it receives nothing.
    joins_at: Instant,
}

struct World {
    cfg: SimConfig,
    now: Instant,
    seq: u64,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    items: HashMap<u64, Item>,
    rng: ChaCha8Rng,
    links: Links,
    sender: Sender,
    receivers: Vec<Receiver>,
    nodes: Vec<Node>,
    object: Vec<u8>,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    layout: Layout,
    /// Per receiver: payload blocks written (and whether every byte matched).
    written: Vec<Vec<bool>>,
    mismatch: Vec<bool>,
    /// Per receiver, per payload block: source symbols received.
    got: Vec<Vec<u16>>,
    payload_repairs: u64,
    dropped: Vec<u32>,
    results: Vec<ReceiverResult>,
    sender_finished_at: Option<Duration>,
    trace: blake3::Hasher,
    buf: Vec<u8>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 7000))
}

/// Run one simulation to completion (or its limits).
pub fn run(cfg: &SimConfig) -> SimResult {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let object: Vec<u8> = (0..cfg.object_size).map(|_| rng.gen()).collect();
    let mut scfg = cfg.sender.clone();
    scfg.expected_receivers = Some(cfg.receivers as u32);
    scfg.node = 1;
    let manifest = manifest_for(&object, cfg.symbol_size, cfg.block_symbols);
    let sender = Sender::new(scfg, &manifest, Instant::ZERO).expect("valid sim manifest");
    let layout = *sender.layout();
    let receivers: Vec<Receiver> = (0..cfg.receivers)
        .map(|i| {
            Receiver::new(ReceiverConfig {
                node: 2 + i as u32,
                seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                ..cfg.receiver.clone()
            })
        })
        .collect();
    let results = (0..cfg.receivers)
        .map(|i| ReceiverResult {
            node: 2 + i as u32,
            outcome: None,
            correct: false,
            completed_at: None,
            stats: ReceiverStats::default(),
            queue_drops: 0,
        })
        .collect();
    let mut nodes: Vec<Node> = (0..=cfg.receivers)
        .map(|_| Node { timer: None, busy_until: Instant::ZERO, joins_at: Instant::ZERO })
        .collect();
    for &(r, at) in &cfg.late_join {
        if let Some(n) = nodes.get_mut(r + 1) {
            n.joins_at = Instant::ZERO + at;
        }
    }
    let mut extra = vec![0.0; cfg.receivers];
    for &(r, p) in &cfg.extra_loss {
        if let Some(e) = extra.get_mut(r) {
            *e = p;
        }
    }
    let blocks = layout.block_count() as usize;
    let w = World {
        cfg: cfg.clone(),
        now: Instant::ZERO,
        seq: 0,
        heap: BinaryHeap::new(),
        items: HashMap::new(),
        rng,
        links: Links::new(cfg.loss.clone(), extra),
        sender,
        receivers,
        nodes,
        manifest_bytes: manifest.encode(),
        manifest,
        object,
        layout,
        written: vec![vec![false; blocks]; cfg.receivers],
        mismatch: vec![false; cfg.receivers],
        got: vec![vec![0; blocks]; cfg.receivers],
        payload_repairs: 0,
        dropped: Vec::new(),
        results,
        sender_finished_at: None,
        trace: blake3::Hasher::new(),
        buf: Vec::with_capacity(2048),
    };
    w.run()
}

/// The manifest for `object` in blocks of `block_symbols` symbols of `symbol_size` bytes.
pub fn manifest_for(object: &[u8], symbol_size: u16, block_symbols: u16) -> Manifest {
    let block = usize::from(symbol_size) * usize::from(block_symbols);
    let name = crate::proto::manifest::RelPath::new("sim.bin").expect("a plain name");
    let block_hashes = object.chunks(block).map(|c| *blake3::hash(c).as_bytes()).collect();
    let (size, hash) = (object.len() as u64, *blake3::hash(object).as_bytes());
    Manifest::single_file(name, size, symbol_size, block_symbols, block_hashes, hash)
        .expect("valid sim layout")
}

impl World {
    fn push(&mut self, at: Instant, item: Item) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq)));
        self.items.insert(self.seq, item);
    }

    fn run(mut self) -> SimResult {
        let mut events = 0u64;
        self.drain(0);
        for i in 1..self.nodes.len() {
            self.drain(i);
        }
        let limit = Instant::ZERO + self.cfg.time_limit;
        while let Some(Reverse((at, seq))) = self.heap.pop() {
            if at > limit || events >= self.cfg.event_limit || self.all_done() {
                break;
            }
            events += 1;
            self.now = self.now.max(at);
            let Some(item) = self.items.remove(&seq) else {
                continue;
            };
            match item {
                Item::Arrive(f) => self.arrive(f),
                Item::Dequeue { to, from, data, source_block } => {
                    self.deliver(to, from, &data, source_block)
                }
                Item::Timer { node } => {
                    if self.nodes[node].timer != Some(at) {
                        continue; // superseded
                    }
                    self.nodes[node].timer = None;
                    if node == 0 {
                        self.sender.handle_timeout(self.now);
                    } else {
                        self.receivers[node - 1].handle_timeout(self.now);
                    }
                    self.drain(node);
                }
            }
        }
        for (i, r) in self.receivers.iter().enumerate() {
            self.results[i].stats = r.stats().clone();
        }
        let (lossy_blocks, max_lacked) = self.lacked();
        SimResult {
            receivers: self.results,
            sender: self.sender.stats().clone(),
            sender_finished_at: self.sender_finished_at,
            reports: self.sender.receivers().len(),
            dropped: self.dropped,
            end: self.now - Instant::ZERO,
            events,
            trace: *self.trace.finalize().as_bytes(),
            lossy_blocks,
            max_lacked,
            payload_repairs: self.payload_repairs,
        }
    }

    /// Lossy blocks and the sum of the largest shortfall per block, over the receivers present
    /// from the start.
    fn lacked(&self) -> (u64, u64) {
        let (mut lossy, mut sum) = (0u64, 0u64);
        for b in 0..self.layout.block_count() {
            let k = self.layout.source_symbols(b).unwrap_or(0);
            let worst = (0..self.cfg.receivers)
                .filter(|r| self.nodes[r + 1].joins_at == Instant::ZERO)
                .map(|r| k.saturating_sub(self.got[r][b as usize]))
                .max()
                .unwrap_or(0);
            lossy += u64::from(worst > 0);
            sum += u64::from(worst);
        }
        (lossy, sum)
    }

    fn all_done(&self) -> bool {
        self.sender_finished_at.is_some() && self.results.iter().all(|r| r.outcome.is_some())
    }

    /// Send everything node `i` has to send, act on its events, and re-arm its timer.
    fn drain(&mut self, i: usize) {
        loop {
            let mut progressed = false;
            let mut buf = std::mem::take(&mut self.buf);
            loop {
                let sent = if i == 0 {
                    self.sender.poll_transmit(self.now, &mut buf)
                } else {
                    self.receivers[i - 1].poll_transmit(self.now, &mut buf)
                };
                let Some(t) = sent else { break };
                progressed = true;
                self.multicast(i, t.dest, &buf);
            }
            self.buf = buf;
            if i == 0 {
                while let Some(ev) = self.sender.poll_event() {
                    progressed = true;
                    self.on_sender_event(ev);
                }
            } else {
                while let Some(ev) = self.receivers[i - 1].poll_event() {
                    progressed = true;
                    self.on_receiver_event(i - 1, ev);
                }
            }
            if !progressed {
                break;
            }
        }
        let t =
            if i == 0 { self.sender.poll_timeout() } else { self.receivers[i - 1].poll_timeout() };
        if let Some(t) = t {
            let t = t.max(self.now);
            if self.nodes[i].timer != Some(t) {
                self.nodes[i].timer = Some(t);
                self.push(t, Item::Timer { node: i });
            }
        }
    }

    /// A node sends a datagram: it is in flight to the group for one latency.
    fn multicast(&mut self, from: usize, dest: Dest, data: &[u8]) {
        let mut source_block = None;
        if from == 0 {
            if let Ok((_, Packet::Data(d))) = wire::parse(data) {
                if d.object == ObjectId::Payload {
                    let k = self.layout.source_symbols(d.block).unwrap_or(0);
                    if d.esi < u32::from(k) {
                        source_block = Some(d.block);
                    } else {
                        self.payload_repairs += 1;
                    }
                }
            }
        }
        let upstream_lost = from == 0 && self.links.upstream(&mut self.rng);
        let at = self.now + self.cfg.latency;
        let flight = Flight { from, dest, data: Rc::from(data), source_block, upstream_lost };
        self.push(at, Item::Arrive(flight));
    }

    /// A datagram reaches the group: each copy is lost or delivered.
    fn arrive(&mut self, f: Flight) {
        let mut mix = 0xcbf2_9ce4_8422_2325u64;
        for to in 0..self.nodes.len() {
            let wanted = match f.dest {
                Dest::Receivers => to != 0,
                Dest::Sender => to == 0,
                Dest::All => true,
            };
            if to == f.from || !wanted {
                continue;
            }
            let lost = if f.from == 0 {
                f.upstream_lost || self.links.downstream(to - 1, &mut self.rng)
            } else {
                self.links.feedback(&mut self.rng)
            };
            if lost || self.now < self.nodes[to].joins_at {
                continue;
            }
            mix = (mix ^ to as u64).wrapping_mul(0x0100_0000_01b3);
            if to != 0 && !self.cfg.receiver_service.is_zero() {
                self.enqueue(to, f.from, Rc::clone(&f.data), f.source_block);
            } else {
                self.deliver(to, f.from, &f.data, f.source_block);
            }
        }
        let crc = &f.data[f.data.len().saturating_sub(4)..];
        self.trace.update(&self.now.as_micros().to_le_bytes());
        self.trace.update(&(f.from as u32).to_le_bytes());
        self.trace.update(&(f.data.len() as u32).to_le_bytes());
        self.trace.update(crc);
        self.trace.update(&mix.to_le_bytes());
    }

    fn deliver(&mut self, to: usize, from: usize, data: &[u8], source_block: Option<u32>) {
        if to == 0 {
            self.sender.handle_datagram(self.now, addr(from), data);
        } else {
            if let Some(b) = source_block {
                let got = &mut self.got[to - 1][b as usize];
                *got = got.saturating_add(1);
            }
            self.receivers[to - 1].handle_datagram(self.now, addr(from), data);
        }
        self.drain(to);
    }

    /// A copy reaches a slow receiver: it waits its turn, or is dropped when the queue is full.
    fn enqueue(&mut self, to: usize, from: usize, data: Rc<[u8]>, source_block: Option<u32>) {
        let node = &mut self.nodes[to];
        let start = node.busy_until.max(self.now);
        if start - self.now > self.cfg.receiver_queue {
            self.results[to - 1].queue_drops += 1;
            return;
        }
        node.busy_until = start + self.cfg.receiver_service;
        let at = node.busy_until;
        self.push(at, Item::Dequeue { to, from, data, source_block });
    }

    fn on_sender_event(&mut self, ev: sender::Event) {
        match ev {
            sender::Event::NeedBlock(req) if self.cfg.unreadable_blocks.contains(&req.block) => {
                self.sender.handle_block_failed(req.block);
            }
            sender::Event::NeedBlock(req) => {
                let data = self.object[req.offset as usize..][..req.len].to_vec();
                let enc = req.prepare(data).expect("layout-consistent block");
                self.sender.handle_block(req.block, enc).expect("requested block");
            }
            sender::Event::ReceiverReport(_) | sender::Event::BlockUnavailable { .. } => {}
            sender::Event::ReceiverDropped { node, .. } => self.dropped.push(node),
            sender::Event::Finished => self.sender_finished_at = Some(self.now - Instant::ZERO),
        }
    }

    /// [`FecModel::Ideal`]: the block's true bytes (the job holds `K` symbols).
    fn ideal_decode(&self, job: receiver::DecodeJob) -> Decoded {
        let (bytes, layout) = match job.object {
            ObjectId::Manifest => (&self.manifest_bytes[..], self.sender_manifest_layout()),
            ObjectId::Payload => (&self.object[..], self.layout),
        };
        let off = layout.block_offset(job.block).unwrap_or(0) as usize;
        let data = bytes[off..off + job.len].to_vec();
        let hash = match job.object {
            ObjectId::Payload => self.manifest.block_hashes[job.block as usize],
            ObjectId::Manifest => *blake3::hash(&data).as_bytes(),
        };
        Decoded {
            object: job.object,
            block: job.block,
            systematic: job.symbols.is_systematic(),
            result: Ok((data, hash)),
        }
    }

    fn sender_manifest_layout(&self) -> Layout {
        Layout::new(self.manifest_bytes.len() as u64, self.cfg.symbol_size, self.cfg.block_symbols)
            .expect("valid manifest layout")
    }

    fn on_receiver_event(&mut self, r: usize, ev: receiver::Event) {
        match ev {
            receiver::Event::Manifest(_) => {}
            receiver::Event::Decode(job) => {
                let done = match self.cfg.fec {
                    FecModel::Real => job.run(),
                    FecModel::Ideal => self.ideal_decode(job),
                };
                self.receivers[r].handle_decoded(self.now, done);
            }
            receiver::Event::Block { block, offset, data } => {
                let off = offset as usize;
                if self.object.get(off..off + data.len()) != Some(&data[..]) {
                    self.mismatch[r] = true;
                }
                if let Some(w) = self.written[r].get_mut(block as usize) {
                    *w = true;
                }
            }
            receiver::Event::Complete { object_hash, .. } => {
                let correct = !self.mismatch[r] && self.written[r].iter().all(|w| *w);
                let result = if correct && object_hash == self.manifest.object_hash {
                    Ok(object_hash)
                } else {
                    Err("hash mismatch".into())
                };
                self.results[r].correct = correct;
                self.results[r].completed_at = Some(self.now - Instant::ZERO);
                self.receivers[r].handle_stored(self.now, result);
            }
            receiver::Event::Finished(outcome) => self.results[r].outcome = Some(outcome),
        }
    }
}
