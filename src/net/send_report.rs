//! What a push reports (`mcast-send --json`): the outcome, one entry per receiver that
//! reported or was dropped, who completed, failed or never answered (against `--expect`),
//! and the counters of the core and of the batched I/O. `docs/report-schema.md` documents
//! the JSON.

use crate::net::batch::BatchStats;
use crate::net::source::TreeCounts;
use crate::proto::auth::AuthCounters;
use crate::proto::sender::{NodeOutcome, Roster, RosterEntry};
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
    /// Its host name, if its Hello was heard.
    pub host: Option<String>,
    /// Address the report came from.
    pub addr: String,
    /// Why it failed, as it reported (or why the sender refuses its copy); `None` if complete.
    pub reason: Option<String>,
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
    /// Payload bytes sent at least once as source symbols: `bytes` once complete (less
    /// `skipped_bytes`), less for a push that was interrupted or timed out.
    pub payload_bytes_sent: u64,
    /// `--changed-only`: payload blocks not sent in the first pass, as every expected
    /// receiver held them.
    pub skipped_blocks: u64,
    /// Bytes of `skipped_blocks`.
    pub skipped_bytes: u64,
    /// Wall time of the whole push (hashing included), seconds.
    pub seconds: f64,
    /// Time spent hashing the source, seconds.
    pub hash_seconds: f64,
    /// When the push started, seconds since the Unix epoch (receivers' `started_unix` line up
    /// with it).
    pub started_unix: f64,
    /// Seconds from the start until the first datagram went out.
    pub first_datagram_seconds: Option<f64>,
    /// Seconds from the start until the first pass had sent every payload byte once.
    pub payload_pass_seconds: Option<f64>,
    /// Seconds from the start until the push finished (every receiver it waits for reported);
    /// `seconds` after this is the time spent answering late reports.
    pub finished_seconds: Option<f64>,
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
    /// Who completed, failed, never answered, or answered unasked.
    #[serde(flatten)]
    pub roster: RosterLists,
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
    /// Feedback datagrams accepted and dropped by keyed mode's checks, by reason.
    pub auth: AuthCounters,
    /// No receiver reported and every datagram heard was refused: why (e.g. a wrong key).
    pub auth_error: Option<String>,
    /// Signed mode: the key id and version the push was signed with; `None` unsigned.
    pub signed: Option<crate::net::signing::SignedEntry>,
    /// `--compress`: the codec and what it saved; `None` uncompressed.
    pub compression: Option<CompressionEntry>,
    /// `--rate auto`: the receiver (node id) that limited the rate longest; `None` with a
    /// fixed rate or when no receiver reported congestion.
    pub rate_limited_by: Option<u32>,
    /// How the rate went (see `docs/rate-control.md`).
    pub rate: RateEntry,
    /// Local repairers (`mcast-recv --repairer`): their symbols and adverts heard, the needs
    /// and queued repairs they held the sender off, joins refused.
    pub repairers: crate::proto::repairer::SenderRepairerStats,
}

/// What compression did (`"compression"` in `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompressionEntry {
    /// The codec, as `--compress` takes it (`zstd:3`, `lz4`).
    pub codec: String,
    /// Payload bytes of the blocks prepared.
    pub payload_bytes: u64,
    /// What they travelled as (compressed frames, raw blocks that did not shrink), before
    /// padding to whole symbols.
    pub wire_payload_bytes: u64,
    /// `payload_bytes / wire_payload_bytes` (1 when nothing was prepared).
    pub ratio: f64,
}

impl CompressionEntry {
    /// The entry of a push compressed with `codec`, from its sender's counters.
    pub fn new(codec: crate::proto::compress::Codec, stats: &SenderStats) -> Self {
        let ratio = match stats.wire_payload_bytes {
            0 => 1.0,
            w => stats.payload_bytes as f64 / w as f64,
        };
        CompressionEntry {
            codec: codec.to_string(),
            payload_bytes: stats.payload_bytes,
            wire_payload_bytes: stats.wire_payload_bytes,
            ratio,
        }
    }
}

/// The rate summary of the report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RateEntry {
    /// `fixed` or `auto`.
    pub mode: &'static str,
    /// Rate at the end, lowest, highest and time-weighted mean, bit/s.
    pub final_bps: u64,
    /// Lowest rate used, bit/s.
    pub min_bps: u64,
    /// Highest rate used, bit/s.
    pub max_bps: u64,
    /// Time-weighted mean rate, bit/s.
    pub mean_bps: u64,
    /// Time-weighted mean rate over the middle half of the push, bit/s.
    pub steady_bps: u64,
    /// Congestion answered with a decrease.
    pub decreases: u32,
    /// Rate reports believed.
    pub reports: u64,
    /// Rate reports not believed (unknown tick, excluded receiver).
    pub reports_ignored: u64,
    /// `[node id, seconds]` each limiting receiver held that role.
    pub limiting: Vec<(u32, f64)>,
    /// Receivers dropped from rate decisions under the straggler rule (node ids).
    pub excluded: Vec<u32>,
    /// Straggler trials begun under `--straggler-fraction`.
    pub trials: u32,
    /// Control intervals the rate was held for a receiver's socket overflow (host-limited).
    pub host_holds: u32,
    /// Congested reports taken for a receiver's scheduling hiccup, not a queue.
    pub hiccups: u64,
    /// Control windows the rate came down to what a backlogged sender could push.
    pub sender_limited: u32,
}

impl RateEntry {
    /// The entry of a controller's summary.
    pub fn of(s: &crate::proto::rate::RateSummary) -> Self {
        RateEntry {
            mode: s.mode,
            final_bps: s.final_bps,
            min_bps: s.min_bps,
            max_bps: s.max_bps,
            mean_bps: s.mean_bps,
            steady_bps: s.steady_bps,
            decreases: s.decreases,
            reports: s.reports,
            reports_ignored: s.reports_ignored,
            limiting: s.limiting.iter().map(|(n, us)| (*n, *us as f64 / 1e6)).collect(),
            excluded: s.excluded.clone(),
            trials: s.trials,
            host_holds: s.host_holds,
            hiccups: s.hiccups,
            sender_limited: s.sender_limited,
        }
    }
}

/// A receiver by name and id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostEntry {
    /// Host name from its Hello (`None` if only its NAKs or echoes were heard).
    pub host: Option<String>,
    /// Node id.
    pub node: u32,
    /// Address it was heard from.
    pub addr: String,
    /// The relay its report came through (`mcast-relay`): its host name, else its node id
    /// in hex; absent for a receiver heard directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// A receiver that reported a failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedEntry {
    /// Host name from its Hello.
    pub host: Option<String>,
    /// Node id.
    pub node: u32,
    /// Address it was heard from.
    pub addr: String,
    /// Why, as it reported (or why the sender refuses its copy).
    pub reason: String,
}

/// An `--expect` entry no receiver answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingEntry {
    /// The entry as listed (a host name or a node id).
    pub host: String,
    /// A node that matches it and was heard, but never reported; `None` if none was heard.
    pub node: Option<u32>,
}

/// A receiver that reported but was not listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnexpectedEntry {
    /// Host name from its Hello.
    pub host: Option<String>,
    /// Node id.
    pub node: u32,
    /// Address it was heard from.
    pub addr: String,
    /// "complete" or "failed".
    pub status: &'static str,
    /// Why it failed; `None` if complete.
    pub reason: Option<String>,
}

/// The roster as lists: with `--expect`, `completed` and `failed` hold the listed receivers
/// only, `missing` the entries nobody answered (in the list's order) and `unexpected` the
/// receivers that reported unlisted; without it, `completed` and `failed` hold every receiver
/// that reported and the other two are empty. Receivers are sorted by host name (unnamed
/// last), then node id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RosterLists {
    /// The `--expect` entries as listed; `None` without `--expect`.
    pub expected: Option<Vec<String>>,
    /// Reported a verified copy.
    pub completed: Vec<HostEntry>,
    /// Reported a failure.
    pub failed: Vec<FailedEntry>,
    /// Listed, never reported.
    pub missing: Vec<MissingEntry>,
    /// Reported, not listed.
    pub unexpected: Vec<UnexpectedEntry>,
    /// Receivers heard in this session (Hello, NAK, echo or report).
    pub heard: usize,
    /// Reports ignored: from a node never heard in this session, or from another address
    /// than the one it was heard from.
    pub unsolicited_reports: u64,
    /// Datagrams under a known node id from another address (two receivers with one
    /// `--node-id`, or a forgery).
    pub address_conflicts: u64,
}

impl RosterLists {
    /// The lists of `roster`.
    pub fn of(roster: &Roster) -> Self {
        let mut t = roster.tally();
        let key = |e: &RosterEntry| (e.host.is_none(), e.host.clone(), e.node);
        t.completed.sort_by_key(|e| key(e));
        t.failed.sort_by_key(|(e, _)| key(e));
        t.unexpected.sort_by_key(|e| key(e));
        let name = |e: &RosterEntry| e.host.as_ref().map(ToString::to_string);
        let via = |e: &RosterEntry| {
            let r = roster.via(e.node)?;
            Some(name(r).unwrap_or_else(|| format!("{:08x}", r.node)))
        };
        RosterLists {
            expected: roster.expected().map(|l| l.iter().map(|x| x.entry.clone()).collect()),
            completed: t
                .completed
                .iter()
                .map(|e| HostEntry {
                    host: name(e),
                    node: e.node,
                    addr: e.addr.to_string(),
                    via: via(e),
                })
                .collect(),
            failed: t
                .failed
                .iter()
                .map(|(e, why)| FailedEntry {
                    host: name(e),
                    node: e.node,
                    addr: e.addr.to_string(),
                    reason: why.to_string(),
                })
                .collect(),
            missing: t
                .missing
                .iter()
                .map(|(x, heard)| MissingEntry {
                    host: x.entry.clone(),
                    node: heard.map(|e| e.node),
                })
                .collect(),
            unexpected: t
                .unexpected
                .iter()
                .map(|e| {
                    let reason = match &e.outcome {
                        Some(NodeOutcome::Failed(why)) => Some(why.clone()),
                        _ => None,
                    };
                    UnexpectedEntry {
                        host: name(e),
                        node: e.node,
                        addr: e.addr.to_string(),
                        status: if reason.is_some() { "failed" } else { "complete" },
                        reason,
                    }
                })
                .collect(),
            heard: roster.nodes().count(),
            unsolicited_reports: roster.unsolicited_reports(),
            address_conflicts: roster.address_conflicts(),
        }
    }

    /// Whether every listed host completed (`None` without `--expect`).
    pub fn all_expected_complete(&self) -> Option<bool> {
        self.expected.as_ref().map(|_| self.missing.is_empty() && self.failed.is_empty())
    }
}
