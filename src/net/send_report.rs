//! What a push reports (`mcast-send --json`): the outcome, one entry per receiver that
//! reported or was dropped, and the counters of the core and of the batched I/O.

use crate::net::batch::BatchStats;
use crate::net::source::TreeCounts;
use crate::proto::stats::SenderStats;
use serde::Serialize;
use std::path::PathBuf;

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendStatus {
    /// Finished; with expected receivers, all reported complete.
    Complete,
    /// A receiver reported a failure, or some expected receivers did not report complete.
    Incomplete,
    /// Finished without `--receivers` and no receiver reported: nobody is known to have it.
    Unconfirmed,
    /// The timeout passed first.
    Timeout,
    /// Stopped by a signal.
    Interrupted,
}

/// One receiver in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverEntry {
    /// Node id.
    pub id: u32,
    /// Address the report came from.
    pub addr: String,
    /// "complete" (verified hash matches) or "failed".
    pub status: &'static str,
    /// Bytes the receiver placed.
    pub bytes: u64,
    /// NAKs it sent.
    pub naks_sent: u32,
    /// NAK rounds it suppressed.
    pub naks_suppressed: u32,
    /// Seconds from its first datagram to completion, as it measured.
    pub seconds: f64,
    /// Seconds from the start of the push until its report arrived.
    pub reported_at: f64,
}

/// A receiver dropped as a straggler.
#[derive(Debug, Clone, Serialize)]
pub struct DroppedEntry {
    /// Node id.
    pub id: u32,
    /// Its last reported loss rate.
    pub loss: f64,
    /// Repair symbols its NAKs called for.
    pub repairs_charged: u64,
}

/// The push report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    /// Outcome.
    pub status: SendStatus,
    /// Source path (the file, or the tree's root directory).
    pub path: PathBuf,
    /// A tree push: its files, directories, symlinks and bytes; `None` for a single file.
    pub tree: Option<TreeCounts>,
    /// Payload bytes (the size of the object).
    pub bytes: u64,
    /// Payload bytes sent at least once as source symbols: `bytes` once complete, less for a
    /// push that was interrupted or timed out.
    pub payload_bytes_sent: u64,
    /// Wall time of the whole push (hashing included), seconds.
    pub seconds: f64,
    /// Time spent hashing the source, seconds.
    pub hash_seconds: f64,
    /// `payload_bytes_sent` over wall time, Mbit/s.
    pub goodput_mbps: f64,
    /// Source symbols sent.
    pub data_packets: u64,
    /// Repair symbols sent (proactive and on request).
    pub repair_packets: u64,
    /// NAK datagrams received.
    pub naks_received: u64,
    /// Receivers expected, if given.
    pub expected_receivers: Option<u32>,
    /// Receivers that reported a verified copy.
    pub complete: usize,
    /// Every receiver that reported.
    pub receivers: Vec<ReceiverEntry>,
    /// Receivers dropped under the straggler policy.
    pub dropped: Vec<DroppedEntry>,
    /// Carousel passes started.
    pub passes: u32,
    /// Session id.
    pub session: u32,
    /// Final GRTT estimate, microseconds.
    pub grtt_us: u64,
    /// All sender counters.
    pub stats: SenderStats,
    /// Batched I/O counters (GSO batches, fallbacks, system calls).
    pub io: BatchStats,
    /// Most segments one GSO send could carry (1: no GSO).
    pub gso_segments: usize,
    /// CPU seconds (user + system) of the send loop's thread from the first datagram on
    /// (source hashing and the encoding workers excluded).
    pub loop_cpu_seconds: f64,
    /// Signed mode: the key id and version the push was signed with; `None` unsigned.
    pub signed: Option<crate::net::signing::SignedEntry>,
}
