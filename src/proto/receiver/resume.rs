//! Resume: payload blocks an earlier run of the same push already wrote into the staging area
//! (the driver's resume journal says which, with the BLAKE3 of what was written) are handed to
//! the receiver with [`Receiver::handle_held`] once the manifest is known. They count as
//! written: not collected again, not NAKed, and checked against the hash list like any written
//! block (one that does not match is reset, fetched again and rewritten).

use super::session::{Ctx, Phase, Session};
use super::*;

impl Receiver {
    /// The staging area already holds `blocks` (payload block number and the BLAKE3 of what is
    /// written there), from an earlier run of the same push (same manifest hash). Call it after
    /// [`Event::Manifest`], before the next datagram. Blocks out of range, already done, or
    /// given before the manifest (or after reception ended) are ignored; a block whose hash the
    /// known hash list refutes is counted as a hash failure and fetched again (its bytes are
    /// then rewritten). Returns how many blocks were taken as held.
    pub fn handle_held(&mut self, now: Instant, blocks: &[(u32, [u8; 32])]) -> usize {
        match self.enter(now) {
            Some((s, mut cx)) => s.on_held(&mut cx, now, blocks),
            None => 0,
        }
    }
}

impl Session {
    /// See [`Receiver::handle_held`].
    pub(super) fn on_held(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        blocks: &[(u32, [u8; 32])],
    ) -> usize {
        if self.manifest.is_none() || !matches!(self.phase, Phase::Receiving) {
            return 0;
        }
        let mut taken = 0;
        for &(b, hash) in blocks {
            let o = &mut self.objects[ObjectId::Payload];
            if b >= o.layout.block_count() || o.is_done(b) {
                continue;
            }
            // Set even when refuted below: the bytes are there, so the next write replaces them.
            self.written.insert(b, hash);
            if self.hash_list.as_ref().is_some_and(|l| l.get(b) != Some(&hash)) {
                cx.stats.hash_failures += 1;
                continue;
            }
            o.set_done(b);
            taken += 1;
        }
        self.update_nak_timer(cx, now);
        self.check_complete();
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sender::{self, Sender, SenderConfig};
    use crate::sim::manifest_for;

    const T: u16 = 100;
    const K: u16 = 10;
    const BLOCK: usize = T as usize * K as usize;

    /// What a lossless push to a receiver holding `held` blocks saw.
    struct Resumed {
        outcome: Option<Outcome>,
        data: Vec<u8>,
        taken: usize,
        rewrites: Vec<u32>,
        stats: ReceiverStats,
        /// Payload blocks the receiver's NAKs asked for, and whether the manifest was in then.
        naked: Vec<(u32, bool)>,
    }

    /// A lossless push of `obj` until the receiver finishes (or 10 s of virtual time). The
    /// receiver's staging area starts with `held` (block, bytes) written, announced to it with
    /// [`Receiver::handle_held`] when the manifest arrives, with the BLAKE3 of those bytes.
    fn push_holding(obj: &[u8], held: &[(u32, Vec<u8>)]) -> Resumed {
        push_holding_losing(obj, held, |_| false)
    }

    /// [`push_holding`], the receiver losing the datagrams whose index `lost` says.
    fn push_holding_losing(
        obj: &[u8],
        held: &[(u32, Vec<u8>)],
        lost: fn(usize) -> bool,
    ) -> Resumed {
        let cfg = SenderConfig {
            session: 9,
            node: 1,
            rate_bps: 8_000_000,
            burst_bytes: 2000,
            expected_receivers: Some(1),
            ..SenderConfig::default()
        };
        let mut s = Sender::new(cfg, &manifest_for(obj, T, K), Instant::ZERO).unwrap();
        let mut r =
            Receiver::new(ReceiverConfig { node: 2, report_tries: 5, ..ReceiverConfig::default() });
        let mut out = Resumed {
            outcome: None,
            data: vec![0; obj.len()],
            taken: 0,
            rewrites: Vec::new(),
            stats: ReceiverStats::default(),
            naked: Vec::new(),
        };
        let (mut sent, mut manifest_in) = (0, false);
        for (b, bytes) in held.iter().filter(|(b, _)| (*b as usize) < obj.len() / BLOCK) {
            out.data[*b as usize * BLOCK..][..bytes.len()].copy_from_slice(bytes);
        }
        let held: Vec<(u32, [u8; 32])> =
            held.iter().map(|(b, bytes)| (*b, *blake3::hash(bytes).as_bytes())).collect();
        let from = SocketAddr::from(([198, 18, 0, 1], 7000));
        let (mut now, mut buf) = (Instant::ZERO, Vec::new());
        while now < Instant::ZERO + Duration::from_secs(10) && out.outcome.is_none() {
            s.handle_timeout(now);
            r.handle_timeout(now);
            let mut progressed = true;
            while progressed && out.outcome.is_none() {
                progressed = false;
                while let Some(ev) = s.poll_event() {
                    if let sender::Event::NeedBlock(req) = ev {
                        let data = obj[req.offset as usize..][..req.len].to_vec();
                        s.handle_block(req.block, req.prepare(data).unwrap()).unwrap();
                    }
                }
                while s.poll_transmit(now, &mut buf).is_some() {
                    progressed = true;
                    sent += 1;
                    if !lost(sent - 1) {
                        r.handle_datagram(now, from, &buf);
                    }
                }
                while let Some(ev) = r.poll_event() {
                    progressed = true;
                    match ev {
                        Event::Manifest(_) => {
                            manifest_in = true;
                            out.taken = r.handle_held(now, &held)
                        }
                        Event::Decode(job) => r.handle_decoded(now, job.run()),
                        Event::Block { block, offset, data, rewrite, hash } => {
                            assert_eq!(hash, *blake3::hash(&data).as_bytes());
                            if rewrite {
                                out.rewrites.push(block);
                            }
                            out.data[offset as usize..][..data.len()].copy_from_slice(&data)
                        }
                        Event::Complete { .. } => {
                            r.handle_stored(now, Ok(*blake3::hash(&out.data).as_bytes()))
                        }
                        Event::Finished(o) => out.outcome = Some(o),
                    }
                }
                while let Some(t) = r.poll_transmit(now, &mut buf) {
                    progressed = true;
                    if let Ok((_, Packet::Nak(list))) = wire::parse(&buf) {
                        let payload = list.needs.iter().filter(|n| n.object == ObjectId::Payload);
                        out.naked.extend(payload.map(|n| (n.block, manifest_in)));
                    }
                    if t.dest != Dest::Receivers {
                        s.handle_datagram(now, SocketAddr::from(([198, 18, 0, 2], 7001)), &buf);
                    }
                }
            }
            let next = [s.poll_timeout(), r.poll_timeout()].into_iter().flatten().min();
            now = next.unwrap_or(now).max(now + Duration::from_micros(1));
        }
        out.stats = r.stats().clone();
        out
    }

    fn object() -> Vec<u8> {
        // 20 blocks of 1000 bytes.
        (0..20 * BLOCK as u32).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn block(obj: &[u8], b: u32) -> (u32, Vec<u8>) {
        (b, obj[b as usize * BLOCK..][..BLOCK].to_vec())
    }

    #[test]
    fn held_blocks_are_not_collected_again() {
        let obj = object();
        let full = push_holding(&obj, &[]);
        assert_eq!(full.outcome, Some(Outcome::Complete));
        assert!(full.data == obj);
        // The second half (the first blocks may be in before the manifest is).
        let half: Vec<_> = (10..20).map(|b| block(&obj, b)).collect();
        let resumed = push_holding(&obj, &half);
        assert_eq!(resumed.outcome, Some(Outcome::Complete));
        assert!(resumed.data == obj, "the copy differs");
        assert_eq!(resumed.taken, 10);
        assert!(resumed.rewrites.is_empty());
        assert_eq!(resumed.stats.hash_failures, 0);
        // The payload is 200 source symbols; the manifest and the hash list come on top, the
        // same in both runs. Holding half, exactly the other 100 payload symbols are new.
        let overhead = full.stats.symbols_new - 200;
        assert_eq!(resumed.stats.symbols_new, overhead + 100, "only the rest was collected");
        assert_eq!(resumed.stats.naks_sent, 0, "nothing held was asked for");
    }

    #[test]
    fn a_held_block_the_hash_list_refutes_is_fetched_and_rewritten() {
        let obj = object();
        let mut held: Vec<_> = (10..20).map(|b| block(&obj, b)).collect();
        held[3].1[17] ^= 0x40;
        // Out of range and repeated entries are ignored.
        held.push(block(&obj, 14));
        held.push((20, vec![0; BLOCK]));
        let resumed = push_holding(&obj, &held);
        assert_eq!(resumed.outcome, Some(Outcome::Complete));
        assert!(resumed.data == obj, "the refuted block was rewritten");
        assert_eq!(resumed.taken, 10, "blocks 10..20 once each, block 20 does not exist");
        assert_eq!(resumed.rewrites, vec![13]);
        assert_eq!(resumed.stats.hash_failures, 1);
    }

    #[test]
    fn held_blocks_are_never_naked_not_even_before_the_manifest() {
        let obj = object();
        let half: Vec<_> = (10..20).map(|b| block(&obj, b)).collect();
        // The first 40 datagrams (the announcement and the manifest among them) are lost, and
        // every 5th after: the payload passes while the receiver is still a candidate.
        let resumed = push_holding_losing(&obj, &half, |i| i < 40 || i % 5 == 0);
        assert_eq!(resumed.outcome, Some(Outcome::Complete));
        assert!(resumed.data == obj, "the copy differs");
        assert_eq!(resumed.taken, 10);
        assert!(resumed.naked.iter().all(|(_, manifest_in)| *manifest_in), "{:?}", resumed.naked);
        assert!(resumed.naked.iter().any(|(b, _)| *b < 10), "the lost blocks were asked for");
        let held: Vec<_> = resumed.naked.iter().filter(|(b, _)| *b >= 10).collect();
        assert!(held.is_empty(), "held blocks were asked for: {held:?}");
        // The same loss without anything held: the second half is asked for too.
        let full = push_holding_losing(&obj, &[], |i| i < 40 || i % 5 == 0);
        assert!(full.naked.iter().any(|(b, _)| *b >= 10), "{:?}", full.naked);
    }

    #[test]
    fn held_blocks_before_the_manifest_are_ignored() {
        let mut r = Receiver::new(ReceiverConfig::default());
        assert_eq!(r.handle_held(Instant::ZERO, &[(0, [0; 32])]), 0, "no session yet");
    }
}
