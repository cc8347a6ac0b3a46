//! What a relay reports (`mcast-relay --json`): how each side ended, who downstream reported,
//! and how many of those reports reached the origin.

use crate::net::signing::SignedEntry;
use serde::Serialize;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayStatus {
    /// Upstream verified, downstream finished with every reporting receiver complete (and
    /// `--receivers` of them, if given).
    Complete,
    /// Upstream verified, but a downstream receiver failed or fewer than `--receivers`
    /// completed.
    Incomplete,
    /// The upstream receive failed (or the downstream session had to be stopped).
    Failed,
    /// `--timeout` (or the upstream idle or session timeout) passed first.
    Timeout,
    /// Stopped by a signal.
    Interrupted,
}

impl RelayStatus {
    /// The exit status of `mcast-relay` (see its `--help`).
    pub fn exit_code(self) -> i32 {
        match self {
            RelayStatus::Complete => 0,
            RelayStatus::Failed => crate::cli::EXIT_ERROR,
            RelayStatus::Incomplete | RelayStatus::Timeout => crate::cli::EXIT_INCOMPLETE,
            RelayStatus::Interrupted => crate::cli::EXIT_INTERRUPTED,
        }
    }
}

/// The upstream side: the relay as a receiver of the origin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpstreamEntry {
    /// The origin's session (hex), once locked on.
    pub session: Option<String>,
    /// `complete`, `unacknowledged`, `failed`, `timeout` or `interrupted`.
    pub status: String,
    /// Payload size from the manifest.
    pub size: Option<u64>,
    /// Payload bytes decoded into the spool.
    pub bytes: u64,
    /// NAKs sent upstream (only for what the relay lacked).
    pub naks_sent: u64,
    /// Signed upstream (`--trust`): the origin's key and version, once accepted.
    pub signed: Option<SignedEntry>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One downstream receiver that reported.
#[derive(Debug, Clone, Serialize)]
pub struct DownstreamReceiver {
    /// Node id.
    pub id: u32,
    /// Host name from its join.
    pub host: Option<String>,
    /// Address its report came from.
    pub addr: String,
    /// `complete` or `failed`.
    pub status: &'static str,
}

/// The downstream side: the relay's own session.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownstreamEntry {
    /// Whether it started (the manifest arrived upstream).
    pub started: bool,
    /// The relay's own session (hex).
    pub session: Option<String>,
    /// Receivers that reported.
    pub receivers: Vec<DownstreamReceiver>,
    /// Of them, complete.
    pub complete: usize,
    /// Source and repair symbols sent downstream.
    pub data_packets: u64,
    /// Repair symbols sent downstream (proactive and requested).
    pub repair_packets: u64,
    /// NAKs heard downstream.
    pub naks_received: u64,
    /// Re-signed downstream (`--sign-key`): the relay's key and the version (the origin's).
    pub signed: Option<SignedEntry>,
    /// Why the downstream session was stopped early, if it was.
    pub aborted: Option<String>,
}

/// The relay report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    /// Outcome.
    pub status: RelayStatus,
    /// Upstream.
    pub upstream: UpstreamEntry,
    /// Downstream.
    pub downstream: DownstreamEntry,
    /// Downstream reports forwarded to the origin.
    pub forwarded: usize,
    /// Of them, acknowledged by the origin.
    pub forwarded_acknowledged: usize,
    /// Wall time of the whole relay.
    pub seconds: f64,
}
