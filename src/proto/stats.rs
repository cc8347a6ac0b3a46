//! Counters the sender and receiver state machines expose: what was sent, what was received,
//! and what was dropped and why. Drivers copy them into reports.

use serde::Serialize;

/// Sender counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SenderStats {
    /// Source symbols sent (first pass).
    pub data_packets: u64,
    /// Repair symbols sent, proactive and on request.
    pub repair_packets: u64,
    /// Of `repair_packets`, those sent proactively.
    pub proactive_repair_packets: u64,
    /// Control datagrams sent (announce, probe, flush, advert, ack).
    pub control_packets: u64,
    /// Bytes of all datagrams sent.
    pub bytes_sent: u64,
    /// NAK datagrams received.
    pub naks_received: u64,
    /// Echo datagrams received.
    pub echoes_received: u64,
    /// Report datagrams received (including repeats).
    pub reports_received: u64,
    /// Datagrams dropped: malformed, bad checksum, unknown type.
    pub dropped_malformed: u64,
    /// Datagrams dropped: another session, or a type a sender ignores.
    pub dropped_foreign: u64,
    /// NAK entries ignored: unknown block, or already covered by repairs in flight.
    pub needs_ignored: u64,
    /// Blocks requested from the driver.
    pub blocks_requested: u64,
    /// Squelch datagrams sent (stragglers dropped, blocks no longer held).
    pub squelches_sent: u64,
    /// Of `needs_ignored`: for a block outside the object.
    pub needs_out_of_range: u64,
    /// Of `needs_ignored`: for a block not sent yet.
    pub needs_unsent: u64,
    /// Needs whose count was more than a receiver can lack (clamped).
    pub needs_clamped: u64,
    /// NAKs dropped: they quoted a sequence number ahead of what was sent.
    pub naks_seq_ahead: u64,
    /// Repair symbols NAKs asked for beyond the repair budgets (not sent).
    pub repairs_over_budget: u64,
    /// NAKs and echoes ignored: their node id was first heard from another address.
    pub feedback_wrong_addr: u64,
    /// NAKs and echoes from node ids beyond the members tracked (`max_members`).
    pub feedback_untracked: u64,
    /// Echoes ignored: not of a probe sent recently, or an impossible delay.
    pub echoes_ignored: u64,
    /// Payload bytes of the blocks prepared (each block counted once).
    pub payload_bytes: u64,
    /// What those blocks travel as before padding: compressed frames (or raw blocks); equal
    /// to `payload_bytes` in an uncompressed session.
    pub wire_payload_bytes: u64,
    /// `--changed-only`: payload blocks of the first pass not sent, as every expected
    /// receiver held them.
    pub skipped_blocks: u64,
    /// Bytes of `skipped_blocks`.
    pub skipped_bytes: u64,
    /// Have chunks taken (repetitions not counted).
    pub haves_received: u64,
    /// Have datagrams ignored: after the decision, another layout, a node at another address,
    /// or beyond the nodes tracked.
    pub haves_ignored: u64,
}

/// Receiver counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReceiverStats {
    /// Datagrams handed to the receiver.
    pub datagrams: u64,
    /// Dropped: malformed, bad checksum, unknown type.
    pub dropped_malformed: u64,
    /// Dropped: another session, or before any announcement.
    pub dropped_foreign: u64,
    /// Dropped: a symbol that does not fit the session (size, block or ESI out of range).
    pub dropped_invalid: u64,
    /// Dropped: too many blocks in progress (memory bound).
    pub dropped_memory: u64,
    /// Compressed sessions: symbols whose `K_b` or codec disagreed with their block's first
    /// datagram (a forgery on one side).
    pub symbols_conflicting: u64,
    /// Compressed sessions: blocks that decoded but did not decompress to their length (a
    /// forged `K_b` or codec): discarded and asked for again.
    pub decompress_failures: u64,
    /// Compressed sessions: payload symbols of another codec than the manifest names
    /// (forged), dropped.
    pub dropped_codec: u64,
    /// New symbols stored.
    pub symbols_new: u64,
    /// Symbols already held, or for blocks already complete.
    pub symbols_duplicate: u64,
    /// Blocks recovered by copying (no loss).
    pub blocks_systematic: u64,
    /// Blocks recovered by RaptorQ decoding.
    pub blocks_decoded: u64,
    /// Decodes that failed and needed more symbols.
    pub decode_failures: u64,
    /// Blocks whose BLAKE3 did not match the manifest.
    pub hash_failures: u64,
    /// NAK datagrams sent.
    pub naks_sent: u64,
    /// NAK rounds suppressed by what was heard from others.
    pub naks_suppressed: u64,
    /// Probes answered with an echo (the rest were skipped by the echo share).
    pub echoes_sent: u64,
    /// Squelches that ended this receiver's reception.
    pub squelched: u64,
    /// First-pass symbols expected (received plus gaps in the in-order ESI stream).
    pub first_pass_expected: u64,
    /// Of those, missing (first-pass loss).
    pub first_pass_missing: u64,
    /// Dropped: a control datagram naming the session's sender from another address.
    pub dropped_not_sender: u64,
    /// Dropped: hash-list symbols before a session was locked onto.
    pub dropped_unlocked: u64,
    /// Announcements not followed: another sender than `--sender`, larger than `--max-size`,
    /// or a candidate refused before.
    pub announces_refused: u64,
    /// Candidate sessions dropped for a newer one (at most a few are kept).
    pub candidates_evicted: u64,
    /// Candidate sessions whose manifest matched its hash but was refused.
    pub candidates_refused: u64,
    /// Data sequence numbers too far from the last to be believed (not counted as loss).
    pub seq_jumps_ignored: u64,
    /// Heard needs for blocks outside the layout.
    pub needs_ignored: u64,
    /// Squelches that did not concern this receiver.
    pub squelches_ignored: u64,
    /// Acknowledgements naming this receiver before it sent any report.
    pub acks_ignored: u64,
    /// Squelches that concerned this receiver but were not yet believed: one counts only
    /// when it comes again after this receiver's next NAK (a single forged datagram cannot
    /// end a receive).
    pub squelches_unconfirmed: u64,
    /// Aborts from the locked sender refuted by its datagrams that followed (forged).
    pub aborts_refuted: u64,
    /// Payload blocks taken from the previous version at the destination (only what
    /// changed is fetched).
    pub previous_blocks: u64,
    /// Have datagrams sent (what this receiver held before the payload).
    pub haves_sent: u64,
}

impl ReceiverStats {
    /// First-pass loss rate measured so far, in parts per million.
    pub fn loss_ppm(&self) -> u32 {
        if self.first_pass_expected == 0 {
            return 0;
        }
        (self.first_pass_missing * 1_000_000 / self.first_pass_expected) as u32
    }
}
