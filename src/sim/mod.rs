//! A deterministic multicast network simulator. One sender, N receivers, a virtual clock and a
//! seeded RNG: every datagram a node sends reaches every other member of the group after a fixed
//! one-way latency unless the loss model drops that copy ([`LossModel`]). NAKs are multicast
//! like everything else, so receivers hear each other. Block preparation, decoding and storage
//! run inline on in-memory buffers. The same configuration and seed always give the same trace
//! digest.
//!
//! This module owns the simulator's configuration ([`SimConfig`]), its result ([`SimResult`])
//! and [`run`], which is one user of the in-memory [`Harness`]. The pieces:
//! - [`harness`]: endpoints, network model, event queue, taps and stepping;
//! - [`serve`]: the sender's block requests served from memory ([`MemSource`]);
//! - [`consume`]: the receivers' events consumed in memory ([`Decoder`], [`MemSink`]);
//! - [`object`]: the object under test and its manifest ([`Object`], [`manifest_for`]);
//! - `loss`: the loss models.
//!
//! Scale: a datagram is one event however many receivers it reaches (it fans out when it
//! arrives), and with [`FecModel::Ideal`] a block decodes as soon as it holds `K` symbols
//! without running RaptorQ, so a thousand receivers are cheap. [`SimConfig::windowed`] steps
//! window by window of one latency: each receiver handles its datagrams of a window back to
//! back, and the receivers of a window run side by side on [`SimConfig::threads`] threads,
//! drawing their own copies' losses at their places in the one loss stream (the same results
//! for any number of threads, down to the trace). What a run costs is then the receivers' own
//! work on each copy, about 1,000 instructions (`valgrind --tool=cachegrind`, 300 receivers),
//! more than half of them in `Receiver::handle_parsed`, and their cache misses: each copy of an
//! interleaved push touches another block's collector. 10,000 receivers of a 64 MiB push take
//! 71 s on 2 cores.
//! [`SimConfig::scaled`] keeps every quantity the protocol sees (datagrams, symbols per block,
//! blocks, timing at the link rate) of a real push while shrinking the bytes in each symbol.

pub mod consume;
pub mod fuzz;
pub mod harness;
mod loss;
pub mod object;
pub mod rate;
pub mod serve;
pub mod topology;

pub use consume::{drive_receiver_events, Decoder, FecModel, MemSink};
pub use harness::{Datagram, Harness, Link, Network, Node, Stop};
pub use loss::LossModel;
pub use object::{manifest_for, try_manifest_for, Object};
pub use serve::{serve_sender_events, MemSource, SenderLog};

use crate::proto::layout::Layout;
use crate::proto::receiver::{Outcome, Receiver, ReceiverConfig};
use crate::proto::sender::SenderConfig;
use crate::proto::stats::{ReceiverStats, SenderStats};
use crate::proto::time::{Duration, Instant};
use crate::proto::wire::DATA_OVERHEAD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

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
    /// Step window by window ([`Harness::set_windowed`]): as exact, faster with many
    /// receivers. A window holds each datagram once with a bit per recipient, so memory stays
    /// flat per receiver: 265 MiB peak at 10,000 receivers (`examples/sim`, 64 MiB), about what
    /// event-by-event stepping holds.
    pub windowed: bool,
    /// Threads a window's receivers run on ([`Harness::set_threads`]; 0: the machine's
    /// parallelism, at most 8). The results do not depend on it.
    pub threads: usize,
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
            windowed: true,
            threads: 0,
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
            windowed: true,
            threads: 0,
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

/// Run one simulation to completion (or its limits).
pub fn run(cfg: &SimConfig) -> SimResult {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let bytes: Vec<u8> = (0..cfg.object_size).map(|_| rng.gen()).collect();
    let object =
        Arc::new(Object::new(bytes, cfg.symbol_size, cfg.block_symbols).expect("valid sim layout"));
    let mut scfg = cfg.sender.clone();
    scfg.expected_receivers = Some(cfg.receivers as u32);
    scfg.node = 1;
    let sender = object.sender(scfg, Instant::ZERO).expect("valid sim manifest");
    let net = Network {
        latency: cfg.latency,
        loss: cfg.loss.clone(),
        receiver_service: cfg.receiver_service,
        receiver_queue: cfg.receiver_queue,
    };
    let source = MemSource::new(object).with_unreadable(cfg.unreadable_blocks.clone());
    let mut h = Harness::new(net, sender, source, cfg.fec, rng);
    h.set_event_limit(cfg.event_limit);
    h.set_windowed(cfg.windowed);
    if cfg.threads > 0 {
        h.set_threads(cfg.threads);
    }
    for i in 0..cfg.receivers {
        let rx = Receiver::new(ReceiverConfig {
            node: 2 + i as u32,
            seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            // The ideal model takes a block's bytes from the object, never from the symbols.
            count_only_symbols: cfg.receiver.count_only_symbols || cfg.fec == FecModel::Ideal,
            ..cfg.receiver.clone()
        });
        // The last entry for a receiver wins.
        let link = Link {
            joins_at: cfg
                .late_join
                .iter()
                .rev()
                .find(|(r, _)| *r == i)
                .map_or(Instant::ZERO, |(_, at)| Instant::ZERO + *at),
            extra_loss: cfg.extra_loss.iter().rev().find(|(r, _)| *r == i).map_or(0.0, |(_, p)| *p),
        };
        h.add_receiver(rx, link);
    }
    h.run(Instant::ZERO + cfg.time_limit);
    let since_zero = |t: Instant| t - Instant::ZERO;
    let receivers = (0..cfg.receivers)
        .map(|i| {
            let sink = h.sink(i);
            ReceiverResult {
                node: 2 + i as u32,
                outcome: sink.outcome().cloned(),
                correct: sink.stored().is_some_and(|(_, exact)| exact),
                completed_at: sink.stored().map(|(t, _)| since_zero(t)),
                stats: h.receiver(i).stats().clone(),
                queue_drops: h.queue_drops(i),
            }
        })
        .collect();
    let (lossy_blocks, max_lacked) = h.lacked();
    let log = h.sender_log();
    SimResult {
        receivers,
        sender: h.sender().stats().clone(),
        sender_finished_at: log.finished_at.map(since_zero),
        reports: h.sender().receivers().len(),
        dropped: log.dropped.clone(),
        end: since_zero(h.now()),
        events: h.events(),
        trace: h.trace(),
        lossy_blocks,
        max_lacked,
        payload_repairs: h.payload_repairs(),
    }
}
