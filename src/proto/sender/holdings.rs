//! Only what changed (`--changed-only`): the sender hashes every block before the first
//! datagram ([`Sender::new_prehashed`], or signed mode), sends the manifest and the hash list
//! ahead of the payload, and then waits, at most [`SenderConfig::changed_only`], for the
//! expected receivers' Have reports (which blocks each can build from the version it already
//! holds). A payload block that every expected receiver holds is skipped in the first pass;
//! NAKs for it are still answered (it counts as sent), so a Have that lied, or a receiver that
//! joined late, costs repairs, never correctness.
//!
//! Whose reports count: a Have only from a node heard at the same address as its other
//! feedback (the roster's binding) and for this layout; with `--expect`, only the listed
//! nodes' reports, and the wait ends when every listed host's report is whole; with
//! `expected_receivers` N, once N nodes' reports are whole, and then every whole report counts
//! (a block is skipped only if all of them hold it). Without either nothing is skipped: the
//! sender cannot know that everyone holds a block. When the wait runs out before that,
//! nothing is skipped either (a receiver that never reported needs every block).
//!
//! The decision is taken once, when the payload starts, and frozen: Haves after it are
//! counted and ignored. Memory: one bit per block and node for at most [`max_holders`] nodes
//! (bounded by [`MAX_HOLDINGS_BITS`] in all), one bit per chunk and node for whole reports.

use super::*;
use bitvec::vec::BitVec;

/// Bits of held-block bitmaps the sender keeps at most, over all nodes (32 MiB).
pub const MAX_HOLDINGS_BITS: usize = 256 << 20;

/// Nodes whose reports are kept for a payload of `blocks` blocks: at most 4096, fewer when
/// their bitmaps would exceed [`MAX_HOLDINGS_BITS`].
pub fn max_holders(blocks: u32) -> usize {
    (MAX_HOLDINGS_BITS / (blocks as usize).max(1)).clamp(1, 4096)
}

/// One node's report, as far as it arrived.
#[derive(Debug)]
struct Holder {
    held: BitVec,
    /// Chunks of the report received.
    seen: BitVec,
}

impl Holder {
    fn whole(&self) -> bool {
        self.seen.all()
    }
}

/// What the schedule does with the next payload block of the first pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// Send it.
    Send,
    /// Every expected receiver holds it: skip it.
    Skip,
    /// Still waiting for the receivers' holdings.
    Wait,
}

/// The sender's view of what receivers hold (see the module doc).
#[derive(Debug)]
pub(super) struct Holdings {
    /// Longest wait for the reports.
    wait: Duration,
    blocks: u32,
    holders: BTreeMap<u32, Holder>,
    max_holders: usize,
    /// When the payload was first due (the wait runs from then).
    waiting_since: Option<Instant>,
    /// The decision: which blocks are skipped.
    skip: Option<BitVec>,
}

impl Holdings {
    pub(super) fn new(wait: Duration, blocks: u32) -> Self {
        Holdings {
            wait,
            blocks,
            holders: BTreeMap::new(),
            max_holders: max_holders(blocks),
            waiting_since: None,
            skip: None,
        }
    }
}

impl Sender {
    /// A sender for `--changed-only` (or any push whose hashes are known ahead): like
    /// [`Sender::new`], with `hashes` the BLAKE3 of every payload block, so the hash list is
    /// announced from the first announcement and sent right after the manifest.
    pub fn new_prehashed(
        cfg: SenderConfig,
        manifest: &Manifest,
        hashes: Vec<[u8; 32]>,
        now: Instant,
    ) -> Result<Self, SigningError> {
        let mut s = Sender::new(cfg, manifest, now)?;
        let want = s.layout().block_count();
        if hashes.len() != want as usize {
            return Err(SigningError::HashCount { got: hashes.len(), want });
        }
        s.block_hashes = hashes.into_iter().map(Some).collect();
        s.hash_list_root = None;
        s.build_hash_list(now);
        Ok(s)
    }

    /// The blocks of the first pass skipped because every expected receiver holds them, once
    /// decided (with `changed_only`).
    pub fn skipped(&self) -> Option<&BitVec> {
        self.holdings.as_ref()?.skip.as_ref()
    }

    /// The object after `object` in a pass: with `changed_only` the hash list goes before the
    /// payload (receivers need it to find what they hold), as in signed mode.
    pub(super) fn pass_order(&self, object: ObjectId) -> Option<ObjectId> {
        if self.holdings.is_none() || self.is_signed() {
            return self.next_object(object);
        }
        match object {
            ObjectId::Manifest => Some(ObjectId::Hashes),
            ObjectId::Hashes => Some(ObjectId::Payload),
            ObjectId::Payload => None,
        }
    }

    /// A Have from `node` at `from` (see the module doc for which count).
    pub(super) fn on_have(&mut self, now: Instant, node: u32, from: SocketAddr, have: Have) {
        let Some(h) = self.holdings.as_mut() else {
            self.stats.dropped_foreign += 1;
            return;
        };
        if h.skip.is_some() || have.blocks != h.blocks {
            // Too late (the payload started), or another layout's.
            self.stats.haves_ignored += 1;
            return;
        }
        if !self.roster.heard(node, from, now) {
            self.stats.haves_ignored += 1;
            self.stats.feedback_wrong_addr += 1;
            return;
        }
        let full = h.holders.len() >= h.max_holders;
        let blocks = h.blocks as usize;
        let chunks = blocks.div_ceil(HAVE_CHUNK_BLOCKS as usize);
        let holder = match h.holders.entry(node) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(_) if full => {
                self.stats.haves_ignored += 1;
                return;
            }
            std::collections::btree_map::Entry::Vacant(e) => e.insert(Holder {
                held: BitVec::repeat(false, blocks),
                seen: BitVec::repeat(false, chunks),
            }),
        };
        let chunk = (have.base / HAVE_CHUNK_BLOCKS) as usize;
        if holder.seen[chunk] {
            // A repetition (receivers send their report a few times): the first one stands.
            return;
        }
        holder.seen.set(chunk, true);
        for b in have.span() {
            if have.holds(b) {
                holder.held.set(b as usize, true);
            }
        }
        self.stats.haves_received += 1;
        if self.holdings.as_ref().is_some_and(|h| h.waiting_since.is_some()) {
            self.decide_if_complete();
        }
    }

    /// The nodes whose reports decide, if every expected receiver's report is whole.
    fn deciding_nodes(&self) -> Option<Vec<u32>> {
        let h = self.holdings.as_ref()?;
        if let Some(list) = self.roster.expected() {
            let mut nodes = Vec::new();
            for x in list {
                let matching: Vec<u32> =
                    self.roster.nodes().filter(|e| x.matches(e)).map(|e| e.node).collect();
                let whole = |n: &u32| h.holders.get(n).is_some_and(Holder::whole);
                if matching.is_empty() || !matching.iter().all(whole) {
                    return None;
                }
                nodes.extend(matching);
            }
            return Some(nodes);
        }
        let n = self.cfg.expected_receivers?;
        let whole: Vec<u32> =
            h.holders.iter().filter(|(_, r)| r.whole()).map(|(node, _)| *node).collect();
        (whole.len() as u64 >= u64::from(n) && n > 0).then_some(whole)
    }

    /// Decide now if every expected report is whole: skip what all of them hold.
    fn decide_if_complete(&mut self) -> bool {
        let Some(nodes) = self.deciding_nodes() else { return false };
        let h = self.holdings.as_mut().expect("deciding nodes need holdings");
        let mut skip = BitVec::repeat(true, h.blocks as usize);
        for n in &nodes {
            if let Some(r) = h.holders.get(n) {
                skip &= &r.held;
            }
        }
        tracing::info!(
            "{} of {} blocks held by all {} expected receivers: skipped",
            skip.count_ones(),
            h.blocks,
            nodes.len()
        );
        h.skip = Some(skip);
        h.holders.clear();
        true
    }

    /// What the first pass does with payload block `block` (called when the cursor reaches
    /// it). A skipped block counts as sent: NAKs for it are answered.
    pub(super) fn payload_gate(&mut self, now: Instant, block: u32) -> Gate {
        if self.pass > 1 {
            return Gate::Send;
        }
        let Some(h) = self.holdings.as_mut() else { return Gate::Send };
        if h.skip.is_none() {
            let since = *h.waiting_since.get_or_insert(now);
            let deadline = since + h.wait;
            if !self.decide_if_complete() {
                if now < deadline {
                    return Gate::Wait;
                }
                let h = self.holdings.as_mut().expect("checked");
                tracing::warn!(
                    "not every expected receiver reported what it holds within {} ms: \
                     sending every block",
                    h.wait.as_millis()
                );
                h.skip = Some(BitVec::repeat(false, h.blocks as usize));
                h.holders.clear();
            }
        }
        let skip = self.holdings.as_ref().and_then(|h| h.skip.as_ref());
        if !skip.is_some_and(|s| s.get(block as usize).is_some_and(|b| *b)) {
            return Gate::Send;
        }
        self.stats.skipped_blocks += 1;
        self.stats.skipped_bytes += self.layout().block_len(block).unwrap_or(0) as u64;
        self.started[ObjectId::Payload] = self.started[ObjectId::Payload].max(block + 1);
        Gate::Skip
    }

    /// While the payload waits for the holdings: when the wait runs out.
    pub(super) fn holdings_deadline(&self) -> Option<Instant> {
        let h = self.holdings.as_ref()?;
        match (h.waiting_since, &h.skip) {
            (Some(since), None) => Some(since + h.wait),
            _ => None,
        }
    }

    /// Whether the payload is waiting for the holdings (no symbol of it is ready meanwhile).
    pub(super) fn holding_back(&self) -> bool {
        self.holdings_deadline().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Object;

    const A: u32 = 21;
    const B: u32 = 22;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, last], 7001))
    }

    /// A `changed_only` sender of 8 blocks (10 symbols of 100 B each), waiting up to 1 s for
    /// `expected` receivers, no proactive repair.
    fn sender(obj: &Object, expected: Option<u32>) -> Sender {
        let cfg = SenderConfig {
            auto_parity: false,
            fec_overhead: 0.0,
            expected_receivers: expected,
            changed_only: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let hashes = obj.hash_list().as_slice().to_vec();
        Sender::new_prehashed(cfg, obj.manifest(), hashes, Instant::ZERO).unwrap()
    }

    fn object() -> Object {
        Object::new((0..8000u32).map(|i| (i * 13) as u8).collect(), 100, 10).unwrap()
    }

    /// Payload blocks whose symbols went out by `now` (serving every block asked for).
    fn payload_sent(s: &mut Sender, obj: &Object, now: Instant) -> BTreeSet<u32> {
        let (mut out, mut buf) = (BTreeSet::new(), Vec::new());
        loop {
            while let Some(ev) = s.poll_event() {
                if let Event::NeedBlock(req) = ev {
                    let data = obj.bytes()[req.offset as usize..][..req.len].to_vec();
                    s.handle_block(req.block, req.prepare(data).unwrap()).unwrap();
                }
            }
            s.handle_timeout(now);
            if s.poll_transmit(now, &mut buf).is_none() {
                return out;
            }
            if let Ok((_, Packet::Data(d))) = wire::parse(&buf) {
                if d.object == ObjectId::Payload {
                    out.insert(d.block);
                }
            }
        }
    }

    fn have(s: &mut Sender, node: u32, from: SocketAddr, now: Instant, held: &[u32]) {
        let header = Header { flags: 0, session: s.cfg.session, node };
        let mut buf = Vec::new();
        for h in Have::chunks(8, |b| held.contains(&b)) {
            wire::emit(&header, &Packet::Have(h), &mut buf);
            s.handle_datagram(now, from, &buf);
        }
    }

    #[test]
    fn the_payload_waits_for_every_report_then_skips_what_all_hold() {
        let obj = object();
        let mut s = sender(&obj, Some(2));
        let t0 = Instant::ZERO;
        assert!(payload_sent(&mut s, &obj, t0).is_empty(), "held back after the hash list");
        assert_eq!(s.holdings_deadline(), Some(t0 + Duration::from_secs(1)));
        have(&mut s, A, addr(21), t0, &[0, 1, 2, 5]);
        assert!(payload_sent(&mut s, &obj, t0).is_empty(), "one of two reports");
        // A repetition with other contents: the first report stands.
        have(&mut s, A, addr(21), t0, &[0, 1, 2, 3, 4, 5, 6, 7]);
        have(&mut s, B, addr(22), t0, &[1, 2, 3, 5, 7]);
        assert_eq!(s.stats.haves_received, 2);
        let sent = payload_sent(&mut s, &obj, t0);
        assert_eq!(sent, BTreeSet::from([0, 3, 4, 6, 7]), "1, 2 and 5 are held by both");
        assert_eq!(s.stats.skipped_blocks, 3);
        assert_eq!(s.stats.skipped_bytes, 3000);
        assert_eq!(s.skipped().unwrap().count_ones(), 3);
        // Frozen: a later report changes nothing.
        have(&mut s, 23, addr(23), t0, &[]);
        assert_eq!(s.stats.haves_ignored, 1);
    }

    #[test]
    fn when_the_wait_runs_out_every_block_goes_out() {
        let obj = object();
        let mut s = sender(&obj, Some(2));
        let t0 = Instant::ZERO;
        assert!(payload_sent(&mut s, &obj, t0).is_empty());
        have(&mut s, A, addr(21), t0, &[0, 1, 2, 3, 4, 5, 6, 7]);
        let deadline = t0 + Duration::from_secs(1);
        assert_eq!(s.poll_timeout().map(|t| t <= deadline), Some(true));
        let just_before = t0 + Duration::from_micros(999_999);
        assert!(payload_sent(&mut s, &obj, just_before).is_empty(), "still waiting");
        assert_eq!(payload_sent(&mut s, &obj, deadline).len(), 8, "nothing skipped");
        assert_eq!(s.stats.skipped_blocks, 0);
    }

    #[test]
    fn reports_from_another_address_or_layout_do_not_count() {
        let obj = object();
        let mut s = sender(&obj, Some(1));
        let t0 = Instant::ZERO;
        assert!(payload_sent(&mut s, &obj, t0).is_empty());
        // Node A is first heard from .21 (a join); a Have claiming to be A from .99 is ignored.
        let header = Header { flags: 0, session: s.cfg.session, node: A };
        let mut buf = Vec::new();
        let join = Hello::Join { host: HostName::new("a").unwrap() };
        wire::emit(&header, &Packet::Hello(join), &mut buf);
        s.handle_datagram(t0, addr(21), &buf);
        have(&mut s, A, addr(99), t0, &[0, 1, 2, 3, 4, 5, 6, 7]);
        // Another layout's (9 blocks).
        let other = Have::chunks(9, |_| true).remove(0);
        wire::emit(&header, &Packet::Have(other), &mut buf);
        s.handle_datagram(t0, addr(21), &buf);
        assert_eq!(s.stats.haves_ignored, 2);
        assert!(payload_sent(&mut s, &obj, t0).is_empty(), "no report counted yet");
        have(&mut s, A, addr(21), t0, &[4]);
        assert_eq!(payload_sent(&mut s, &obj, t0).len(), 7);
    }

    #[test]
    fn naks_for_skipped_blocks_are_answered() {
        let obj = object();
        let mut s = sender(&obj, Some(1));
        let t0 = Instant::ZERO;
        payload_sent(&mut s, &obj, t0);
        have(&mut s, A, addr(21), t0, &[6, 7]);
        assert_eq!(payload_sent(&mut s, &obj, t0).len(), 6);
        // The receiver lied (or lost its disk): it NAKs the last block, which was skipped.
        let header = Header { flags: 0, session: s.cfg.session, node: A };
        let need = Need { object: ObjectId::Payload, block: 7, count: 10 };
        let nak = NeedList { seq: s.seq.wrapping_sub(1), loss_ppm: 0, needs: vec![need] };
        let mut buf = Vec::new();
        wire::emit(&header, &Packet::Nak(nak), &mut buf);
        let t1 = t0 + Duration::from_millis(100);
        s.handle_datagram(t1, addr(21), &buf);
        assert_eq!(s.stats.needs_unsent, 0, "a skipped block counts as sent");
        let t2 = t1 + Duration::from_millis(100);
        let repaired = payload_sent(&mut s, &obj, t2);
        assert_eq!(repaired, BTreeSet::from([7]));
        assert!(s.stats.repair_packets >= 10);
    }

    #[test]
    fn without_an_expected_count_nothing_is_ever_skipped() {
        let obj = object();
        let mut s = sender(&obj, None);
        let t0 = Instant::ZERO;
        assert!(payload_sent(&mut s, &obj, t0).is_empty());
        have(&mut s, A, addr(21), t0, &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(payload_sent(&mut s, &obj, t0).is_empty());
        assert_eq!(payload_sent(&mut s, &obj, t0 + Duration::from_secs(1)).len(), 8);
    }

    #[test]
    fn holders_are_bounded_by_the_bitmap_budget() {
        assert_eq!(max_holders(8), 4096);
        assert_eq!(max_holders(512 << 10), 512);
        assert_eq!(max_holders(u32::MAX), 1);
        assert_eq!(max_holders((MAX_HOLDINGS_BITS / 4096) as u32), 4096);
        assert_eq!(max_holders((MAX_HOLDINGS_BITS / 4096) as u32 + 1), 4095);
    }
}
