//! A deterministic multicast network simulator. One sender, N receivers, a virtual clock and a
//! seeded RNG: every datagram a node sends reaches every other member of the group after a fixed
//! one-way latency unless the loss model drops that copy. NAKs are multicast like everything
//! else, so receivers hear each other. Block preparation, decoding and storage run inline on
//! in-memory buffers. The same configuration and seed always give the same trace digest.

mod loss;

pub use loss::LossModel;

use crate::proto::fec::BlockEncoder;
use crate::proto::manifest::Manifest;
use crate::proto::receiver::{self, Outcome, Receiver, ReceiverConfig};
use crate::proto::sender::{self, Sender, SenderConfig};
use crate::proto::stats::{ReceiverStats, SenderStats};
use crate::proto::time::{Duration, Instant};
use crate::proto::Dest;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;

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
    /// Virtual time at the end.
    pub end: Duration,
    /// Events processed.
    pub events: u64,
    /// Digest of every delivery (time, endpoints, length, checksum).
    pub trace: [u8; 32],
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
}

enum Item {
    /// `queued`: the copy has already waited its turn in the receiver's queue.
    Deliver {
        to: usize,
        from: usize,
        data: Rc<[u8]>,
        queued: bool,
    },
    Timer {
        node: usize,
    },
}

struct Node {
    timer: Option<Instant>,
    /// When the node is done with the datagrams already queued for it.
    busy_until: Instant,
}

struct World {
    cfg: SimConfig,
    now: Instant,
    seq: u64,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    items: HashMap<u64, Item>,
    rng: ChaCha8Rng,
    sender: Sender,
    receivers: Vec<Receiver>,
    nodes: Vec<Node>,
    object: Vec<u8>,
    sinks: Vec<Vec<u8>>,
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
    let w = World {
        cfg: cfg.clone(),
        now: Instant::ZERO,
        seq: 0,
        heap: BinaryHeap::new(),
        items: HashMap::new(),
        rng,
        sender,
        receivers,
        nodes: (0..=cfg.receivers)
            .map(|_| Node { timer: None, busy_until: Instant::ZERO })
            .collect(),
        object,
        sinks: vec![Vec::new(); cfg.receivers],
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
    Manifest {
        name: "sim.bin".into(),
        object_size: object.len() as u64,
        symbol_size,
        block_symbols,
        block_hashes: object.chunks(block).map(|c| *blake3::hash(c).as_bytes()).collect(),
        object_hash: *blake3::hash(object).as_bytes(),
    }
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
                Item::Deliver { to, from, data, queued } => {
                    if to != 0 && !queued && !self.cfg.receiver_service.is_zero() {
                        self.enqueue(to, from, data);
                        continue;
                    }
                    if to == 0 {
                        self.sender.handle_datagram(self.now, addr(from), &data);
                    } else {
                        self.receivers[to - 1].handle_datagram(self.now, addr(from), &data);
                    }
                    self.drain(to);
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
        SimResult {
            receivers: self.results,
            sender: self.sender.stats().clone(),
            sender_finished_at: self.sender_finished_at,
            reports: self.sender.receivers().len(),
            end: self.now - Instant::ZERO,
            events,
            trace: *self.trace.finalize().as_bytes(),
        }
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

    fn multicast(&mut self, from: usize, dest: Dest, data: &[u8]) {
        let data: Rc<[u8]> = Rc::from(data);
        let at = self.now + self.cfg.latency;
        let crc = &data[data.len().saturating_sub(4)..];
        for to in 0..self.nodes.len() {
            let wanted = match dest {
                Dest::Receivers => to != 0,
                Dest::Sender => to == 0,
                Dest::All => true,
            };
            if to == from || !wanted {
                continue;
            }
            if self.cfg.loss.drops(&mut self.rng) {
                continue;
            }
            self.trace.update(&at.as_micros().to_le_bytes());
            self.trace.update(&[from as u8, to as u8, (to >> 8) as u8]);
            self.trace.update(&(data.len() as u32).to_le_bytes());
            self.trace.update(crc);
            self.push(at, Item::Deliver { to, from, data: Rc::clone(&data), queued: false });
        }
    }

    /// A copy reaches a slow receiver: it waits its turn, or is dropped when the queue is full.
    fn enqueue(&mut self, to: usize, from: usize, data: Rc<[u8]>) {
        let node = &mut self.nodes[to];
        let start = node.busy_until.max(self.now);
        if start - self.now > self.cfg.receiver_queue {
            self.results[to - 1].queue_drops += 1;
            return;
        }
        node.busy_until = start + self.cfg.receiver_service;
        let at = node.busy_until;
        self.push(at, Item::Deliver { to, from, data, queued: true });
    }

    fn on_sender_event(&mut self, ev: sender::Event) {
        match ev {
            sender::Event::NeedBlock { block, offset, len, symbols, symbol_size } => {
                let data = self.object[offset as usize..offset as usize + len].to_vec();
                let enc =
                    BlockEncoder::new(symbol_size, symbols, data).expect("layout-consistent block");
                self.sender.handle_block(block, enc).expect("requested block");
            }
            sender::Event::ReceiverReport(_) => {}
            sender::Event::Finished => self.sender_finished_at = Some(self.now - Instant::ZERO),
        }
    }

    fn on_receiver_event(&mut self, r: usize, ev: receiver::Event) {
        match ev {
            receiver::Event::Manifest(m) => self.sinks[r] = vec![0; m.object_size as usize],
            receiver::Event::Decode(job) => {
                let done = job.run();
                self.receivers[r].handle_decoded(self.now, done);
            }
            receiver::Event::Block { offset, data, .. } => {
                let off = offset as usize;
                self.sinks[r][off..off + data.len()].copy_from_slice(&data);
            }
            receiver::Event::Complete { object_hash, .. } => {
                let hash = *blake3::hash(&self.sinks[r]).as_bytes();
                let result =
                    if hash == object_hash { Ok(hash) } else { Err("hash mismatch".into()) };
                self.results[r].correct = self.sinks[r] == self.object;
                self.results[r].completed_at = Some(self.now - Instant::ZERO);
                self.receivers[r].handle_stored(self.now, result);
            }
            receiver::Event::Finished(outcome) => self.results[r].outcome = Some(outcome),
        }
    }
}
