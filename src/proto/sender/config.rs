//! The sender's settings and their defaults.

use super::StragglerPolicy;
#[cfg(doc)]
use super::{proactive_symbols, Group, ParityBias, Sender};
use crate::proto::time::Duration;

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Session id (random per transfer). With the node id, the object layout and the manifest
    /// hash it is the session's identity, which receivers lock onto; rate and GRTT are
    /// parameters they follow.
    pub session: u32,
    /// This node's id.
    pub node: u32,
    /// Send rate at the start, bits per second ([`Sender::set_rate`] changes it).
    pub rate_bps: u64,
    /// Proactive repair symbols per block, as a share of its source symbols: fixed, or with
    /// `auto_parity` the share used until receivers have reported their loss.
    pub fec_overhead: f64,
    /// Follow the receivers' reported loss rates (see [`proactive_symbols`] and
    /// [`ParityBias`]).
    pub auto_parity: bool,
    /// Auto parity: receivers per block expected to still need a NAK.
    pub parity_target: f64,
    /// Auto parity: at most this share of a block's source symbols.
    pub max_parity: f64,
    /// GRTT assumed before any echo (within `[grtt_min, grtt_max]`).
    pub grtt_initial: Duration,
    /// Lower bound of the GRTT estimate (scheduling jitter floor).
    pub grtt_min: Duration,
    /// Upper bound of the GRTT estimate.
    pub grtt_max: Duration,
    /// Interval between announcements.
    pub announce_interval: Duration,
    /// Longest interval between GRTT probes (the interval is twice the GRTT within
    /// `[probe_interval_min, probe_interval]`, a quarter of that until some receiver has
    /// reported its loss rate).
    pub probe_interval: Duration,
    /// Shortest interval between GRTT probes.
    pub probe_interval_min: Duration,
    /// Echoes wanted per probe (receivers echo with probability this / group size).
    pub echoes_per_probe: u32,
    /// NAK aggregation window (holdoff) in GRTTs: NAKs heard within it are merged per block
    /// before repairs are queued.
    pub holdoff_grtts: u32,
    /// Repair symbols sent beyond the largest need.
    pub repair_margin: u16,
    /// Payload blocks held in memory at most.
    pub cache_blocks: usize,
    /// Payload blocks requested ahead of the one being sent.
    pub read_ahead: usize,
    /// Finish once this many receivers are accounted for: reported (any status) or dropped as
    /// stragglers.
    pub expected_receivers: Option<u32>,
    /// Without `expected_receivers`: finish once the pass is over, no repair is pending and no
    /// NAK has been heard for this long.
    pub linger: Duration,
    /// Token bucket depth in bytes: what may go out back to back after a pause.
    pub burst_bytes: usize,
    /// When a receiver that loses far more than the rest is dropped (see [`Group`]).
    pub straggler: StragglerPolicy,
    /// Carousel: passes after the first (`Some(0)`: until stopped).
    pub repeat: Option<u32>,
    /// Share of the rate always left for new data while there is new data to send: queued
    /// repairs go first only while they have used less than `1 - min_data_share` of the
    /// datagrams (0: repairs always go first). See [`DataShare`](super::DataShare).
    pub min_data_share: f64,
    /// Repair bytes one receiver's NAKs may queue at once (its budget's depth): one NAK costs
    /// at most this divided by the symbol size in repair symbols (see the `budget` module).
    pub node_repair_bytes: u64,
    /// Share of the rate that refills each receiver's repair budget.
    pub node_repair_share: f64,
    /// Repair bytes all NAKs together may queue at once (the total budget's depth); it refills
    /// at `1 - min_data_share` of the rate.
    pub total_repair_bytes: u64,
    /// Receivers tracked individually at most (loss rate, address, budget, straggler
    /// charge); node ids heard beyond it share one budget and are counted, not tracked.
    pub max_members: usize,
    /// Only what changed (`--changed-only`): after the hash list, wait at most this long for
    /// the expected receivers' Have reports and skip the blocks they all hold (see
    /// `holdings`); the sender must be built with the block hashes
    /// ([`Sender::new_prehashed`] or signed). `None`: send everything.
    pub changed_only: Option<Duration>,
    /// Who sets the rate: fixed at `rate_bps`, or automatic (see `proto::rate`).
    pub rate_control: crate::proto::rate::RateControl,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            session: 1,
            node: 1,
            rate_bps: 100_000_000,
            fec_overhead: 0.05,
            auto_parity: true,
            parity_target: 0.3,
            max_parity: 0.5,
            grtt_initial: Duration::from_millis(10),
            grtt_min: Duration::from_millis(1),
            grtt_max: Duration::from_secs(5),
            announce_interval: Duration::from_millis(100),
            probe_interval: Duration::from_millis(100),
            probe_interval_min: Duration::from_millis(10),
            echoes_per_probe: 8,
            holdoff_grtts: 1,
            repair_margin: 1,
            cache_blocks: 32,
            read_ahead: 4,
            expected_receivers: None,
            linger: Duration::from_secs(2),
            burst_bytes: 64 * 1024,
            straggler: StragglerPolicy::default(),
            repeat: None,
            min_data_share: 0.25,
            node_repair_bytes: 4 << 20,
            node_repair_share: 0.5,
            total_repair_bytes: 16 << 20,
            max_members: 4096,
            changed_only: None,
            rate_control: crate::proto::rate::RateControl::Fixed,
        }
    }
}
