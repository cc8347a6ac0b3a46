//! Simulated topologies of segments: the origin's segment (the sender, its receivers, some of
//! them local repairers) and, behind it, a downstream segment of receivers reached either
//! through a relay (a receiver upstream and a sender of its own session downstream) or, with
//! `relay: false`, directly through the lossy segment (one more hop of latency). Loss is per
//! port: what a port sends is lost for everyone with its loss rate, what it receives is lost
//! copy by copy with it. Everything runs on a virtual clock from one seed, like [`run`](super::run).
//!
//! The pieces are the harness's: [`Sender`], [`Receiver`], [`Repairer`], [`MemSource`],
//! [`serve_sender_events`]; `net` holds the event loop, `relay` the sim's relay. What a run
//! measures ([`TopologyResult`]): who completed, what the origin repaired, what repairers and
//! the relay sent, and every symbol of a block sent more than once within a session by anyone
//! (`duplicate_esis`).

mod net;
mod relay;

use super::consume::FecModel;
use super::object::Object;
use super::serve::{serve_sender_events, MemSource};
use super::SimConfig;
use crate::proto::receiver::{Receiver, ReceiverConfig};
use crate::proto::repairer::{Repairer, RepairerConfig};
use crate::proto::sender::{Sender, SenderConfig};
use crate::proto::time::Duration;
use serde::Serialize;

/// The downstream segment.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// Receivers on it.
    pub receivers: usize,
    /// Loss rate of each of their ports.
    pub loss: f64,
    /// Reached through a relay (else directly, one hop further from the origin).
    pub relay: bool,
}

/// One simulated topology.
#[derive(Debug, Clone)]
pub struct TopologyConfig {
    /// Seed of the object, the losses and every node's RNG.
    pub seed: u64,
    /// Payload size in bytes.
    pub object_size: usize,
    /// Symbol size `T`.
    pub symbol_size: u16,
    /// Symbols per block `K`.
    pub block_symbols: u16,
    /// One-way latency from a port to its segment (a hop is twice this).
    pub port_latency: Duration,
    /// Receivers on the origin's segment.
    pub receivers: usize,
    /// Loss rate of each receiver port on the origin's segment (and the relay's upstream).
    pub loss: f64,
    /// How many of the origin segment's receivers are local repairers (the first ones).
    pub repairers: usize,
    /// Loss rate of the repairers' own ports (`None`: the segment's `loss`). Repairers
    /// help most where their links are better than their neighbours' (designated repairers).
    pub repairer_loss: Option<f64>,
    /// The downstream segment, if any.
    pub downstream: Option<Downstream>,
    /// With a relayed downstream: relays in a chain in front of it (1: one relay; 2: the
    /// origin's segment, relay 1, a middle segment, relay 2, the downstream segment; ...).
    pub relays: usize,
    /// Origin (and relay downstream) sender settings.
    pub sender: SenderConfig,
    /// Receiver settings.
    pub receiver: ReceiverConfig,
    /// Repairer settings (`node` and `seed` set per repairer).
    pub repairer: RepairerConfig,
    /// How blocks are decoded.
    pub fec: FecModel,
    /// Virtual time after which the run stops.
    pub time_limit: Duration,
    /// Events after which the run stops.
    pub event_limit: u64,
}

impl TopologyConfig {
    /// The timing and layout of [`SimConfig::scaled`] (a real push of `object_bytes` at
    /// 1 Gbit/s, 16-byte symbols standing in for 1400-byte ones), with `receivers` on the
    /// origin's segment at `loss`.
    pub fn scaled(receivers: usize, loss: f64, seed: u64, object_bytes: u64) -> Self {
        let s =
            SimConfig::scaled(receivers, super::LossModel::Independent(loss), seed, object_bytes);
        let rate = s.sender.rate_bps;
        TopologyConfig {
            seed,
            object_size: s.object_size,
            symbol_size: s.symbol_size,
            block_symbols: s.block_symbols,
            port_latency: s.latency / 2,
            receivers,
            loss,
            repairers: 0,
            repairer_loss: None,
            downstream: None,
            relays: 1,
            sender: s.sender,
            receiver: s.receiver,
            // A tenth of the sender's rate: repairs are a share of the traffic. Blocks are
            // served as soon as decoded, as in keyed mode (`--key-file`: every datagram
            // authenticated; the simulator forges nothing). In open mode a repairer serves a
            // block only once the hash list verified it, which a streamed push sends at the
            // end of its first pass (`serve_unverified: false`).
            repairer: RepairerConfig {
                rate_bps: rate / 10,
                serve_unverified: true,
                ..RepairerConfig::default()
            },
            fec: s.fec,
            time_limit: s.time_limit,
            event_limit: 200_000_000,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TopologyResult {
    /// Receivers in all (both segments, the relay not counted).
    pub receivers: usize,
    /// Of them, those holding a correct copy.
    pub complete: usize,
    /// Complete reports the origin holds (downstream ones through the relay included).
    pub origin_reports: usize,
    /// Repair symbols the origin sent (proactive and on request, every object).
    pub sender_repair_datagrams: u64,
    /// Of those, proactive.
    pub sender_proactive_datagrams: u64,
    /// Every datagram the origin sent.
    pub sender_datagrams: u64,
    /// NAKs the origin heard.
    pub sender_naks: u64,
    /// Repair symbols sent by local repairers.
    pub repairer_datagrams: u64,
    /// Advertisements sent by local repairers.
    pub repairer_adverts: u64,
    /// Needs the origin left to a repairer's cover.
    pub needs_covered: u64,
    /// Blocks whose NAKs the origin deferred to the repairers, and the needs it deferred.
    pub blocks_deferred: u64,
    /// NAK needs deferred.
    pub needs_deferred: u64,
    /// Per downstream host (relays after the first included) whose complete report the origin
    /// holds, the relay the origin lists it `via` (node ids).
    pub via: std::collections::BTreeMap<u32, u32>,
    /// Datagrams the relays' downstream senders sent.
    pub relay_datagrams: u64,
    /// Symbols of a block sent more than once within one session, by anyone.
    pub duplicate_esis: u64,
    /// With repairers: the fewest payload repair symbols the origin could have sent, the sum
    /// over blocks of the fewest source symbols of the block any repairer lost. Nobody but the
    /// origin can make a symbol of a block before some repairer decoded it, and that repairer
    /// needs one fresh symbol per source symbol it lost: no scheme of repairers beats this.
    pub repair_floor: u64,
    /// Virtual seconds until the last receiver completed.
    pub seconds: f64,
    /// Events processed.
    pub events: u64,
    /// Digest of every delivery.
    #[serde(skip)]
    pub trace: [u8; 32],
}

/// Run one topology to completion (or its limits).
pub fn run(cfg: &TopologyConfig) -> TopologyResult {
    net::Net::build(cfg).run()
}
