//! What a reception reports (`mcast-recv --json`): the outcome, where the object was placed,
//! NAK and drop counters (ours, the kernel's), buffer sizes and the core's counters.

use crate::net::batch::BatchStats;
use crate::net::source::TreeCounts;
use crate::proto::auth::AuthCounters;
use crate::proto::stats::ReceiverStats;
use serde::Serialize;
use std::path::PathBuf;

/// How one reception ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecvStatus {
    /// Verified, placed, and the sender acknowledged the report.
    Complete,
    /// Verified and placed; the sender never acknowledged the report.
    Unacknowledged,
    /// Not placed: verification or storage failed, or the sender stopped (Abort).
    Failed,
    /// The timeout passed first (`--timeout`, the idle timeout without a session, or the
    /// session timeout of a silent sender); nothing placed.
    Timeout,
    /// Stopped by a signal; nothing placed.
    Interrupted,
}

/// The receiver report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct RecvReport {
    /// Outcome.
    pub status: RecvStatus,
    /// Where the object was placed (a file, or the root of a tree).
    pub path: Option<PathBuf>,
    /// A tree push, as its manifest announced it: files, directories, symlinks and bytes;
    /// `None` for a single file or before the manifest.
    pub tree: Option<TreeCounts>,
    /// Payload bytes held: the whole object once placed; otherwise the verified blocks that
    /// were written before it stopped (discarded with the temp file).
    pub bytes: u64,
    /// Payload bytes an interrupted earlier run had staged and this one kept (resumed, not
    /// received again); 0 when nothing was resumed.
    pub resumed_bytes: u64,
    /// Size of the object as the manifest announced it, once known.
    pub size: Option<u64>,
    /// Wall time from start to the end of reception, seconds.
    pub seconds: f64,
    /// Seconds from the first datagram until every block was received (or, unfinished, until
    /// it stopped): the transfer itself, without the wait for a sender.
    pub transfer_seconds: Option<f64>,
    /// Seconds until every block was received and written (before the final verification).
    pub received_seconds: Option<f64>,
    /// Seconds until the first datagram arrived (so `received_seconds` minus this is the
    /// transfer time).
    pub first_datagram_seconds: Option<f64>,
    /// Seconds until the last payload block was written to the staging file (its decode and
    /// write done; `received_seconds` later than this is the wait for the hash list).
    pub last_block_seconds: Option<f64>,
    /// Seconds until the object was placed (fsync and rename done), if it was.
    pub placed_seconds: Option<f64>,
    /// When this receiver started, seconds since the Unix epoch (to line its timeline up with
    /// the sender's `started_unix`).
    pub started_unix: f64,
    /// NAK datagrams sent.
    pub naks_sent: u64,
    /// NAK rounds suppressed.
    pub naks_suppressed: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Session received.
    pub session: Option<u32>,
    /// This receiver's node id (derived from the host and `--output`, or `--node-id`).
    pub node: u32,
    /// The host name its Hello carries.
    pub host: String,
    /// Whether the sender welcomed this receiver (heard its Hello): `false` means the sender
    /// ignores its report unless it heard a NAK or an echo from it; `None` if no session was
    /// locked onto.
    pub welcomed: Option<bool>,
    /// Datagrams discarded by `--drop-rate`.
    pub dropped_on_purpose: u64,
    /// Kernel receive buffer granted, bytes (as read back: twice the usable payload).
    pub recv_buffer: usize,
    /// Receive buffer asked for, sized from the announced rate.
    pub recv_buffer_requested: usize,
    /// Datagrams the kernel dropped on this socket because this host did not read them in time
    /// (receive buffer full), as opposed to loss in the network. `None` where unknown.
    pub kernel_drops: Option<u64>,
    /// Growth of the namespace-wide `Udp: RcvbufErrors` counter during the reception (all
    /// sockets of this network namespace together).
    pub udp_rcvbuf_errors: Option<u64>,
    /// Batched I/O counters (`recvmmsg` calls, GRO buffers).
    pub io: BatchStats,
    /// CPU seconds (user + system) of the receive loop's thread (the final verification
    /// included, the decoding workers excluded).
    pub loop_cpu_seconds: f64,
    /// Datagrams accepted and dropped by keyed mode's checks, by reason.
    pub auth: AuthCounters,
    /// All receiver counters.
    pub stats: ReceiverStats,
    /// Signed mode (`--trust`): the key id and version of the push locked onto.
    pub signed: Option<crate::net::signing::SignedEntry>,
    /// Signed mode: what was refused and why ("" when nothing was); `None` without `--trust`.
    pub refused: Option<String>,
    /// `--repairer`: `slot`, `repair_datagrams`, `adverts`, `suppressed` ... (flattened into
    /// the report; absent without `--repairer`).
    #[serde(flatten)]
    pub repairer: Option<crate::net::recv::repairer::RepairReport>,
}

/// Now, in seconds since the Unix epoch (0 if the clock is before it), for `started_unix`.
pub fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
