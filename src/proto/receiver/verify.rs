//! What a session does with decoded blocks: the manifest (a candidate's is verified against
//! its announcement, and locks the session), the hash list (verified against the announcement,
//! then every block written so far is checked against it), and payload blocks (handed out to
//! be written, checked at once when the list is known), and when the object is complete.

use super::session::{Phase, Session};
use super::*;
use crate::proto::manifest::ManifestError;

impl Session {
    /// The result of a [`DecodeJob`].
    pub(super) fn on_decoded(&mut self, cx: &mut Ctx, now: Instant, decoded: Decoded) {
        let o = &mut self.objects[decoded.object];
        if o.decoding.remove(&decoded.block).is_none() {
            return; // not ours (stale or foreign)
        }
        let (data, hash) = match decoded.result {
            Ok(done) => done,
            Err(symbols) => {
                cx.stats.decode_failures += 1;
                o.pending.insert(decoded.block, *symbols);
                self.update_nak_timer(cx, now);
                return;
            }
        };
        if decoded.systematic {
            cx.stats.blocks_systematic += 1;
        } else {
            cx.stats.blocks_decoded += 1;
        }
        if o.layout.block_len(decoded.block) != Some(data.len()) {
            // A compressed block that did not decompress to its length (a forged K_b or codec;
            // `DecodeJob::run`), or a job not built by this receiver: its state is gone, so
            // it is asked for again.
            cx.stats.decompress_failures += u64::from(data.is_empty());
            self.update_nak_timer(cx, now);
            return;
        }
        match decoded.object {
            ObjectId::Manifest => self.on_manifest_block(cx, now, decoded.block, &data),
            ObjectId::Payload => self.accept_block(cx, now, decoded.block, data, hash),
            ObjectId::Hashes => self.on_hashes_block(cx, now, decoded.block, &data),
        }
    }

    fn on_hashes_block(&mut self, cx: &mut Ctx, now: Instant, block: u32, data: &[u8]) {
        let o = &mut self.objects[ObjectId::Hashes];
        let Some(off) = o.layout.block_offset(block) else {
            return;
        };
        if self.hash_list_bytes.is_empty() {
            // The layout is bounded at parse (MAX_HASH_LIST_LEN).
            self.hash_list_bytes = vec![0; o.layout.object_size() as usize];
        }
        self.hash_list_bytes[off as usize..off as usize + data.len()].copy_from_slice(data);
        o.set_done(block);
        self.try_hash_list(cx, now);
    }

    /// Once every block of the hash list is in and the announcement says its hash: verify it,
    /// then check every block written so far against it. A block that does not match is
    /// missing again (NAKed and fetched like any other); a list that does not match its
    /// announcement is fetched again.
    pub(super) fn try_hash_list(&mut self, cx: &mut Ctx, now: Instant) {
        let o = &mut self.objects[ObjectId::Hashes];
        if self.hash_list.is_some() || !o.complete() || self.announce.hashes_hash().is_none() {
            return;
        }
        match HashList::decode(&self.hash_list_bytes, &self.announce) {
            Ok(list) => {
                self.hash_list_bytes = Vec::new();
                let payload = &mut self.objects[ObjectId::Payload];
                for (&b, hash) in &self.written {
                    let held = self.signed_held.contains_key(&b); // handed out below
                    if payload.is_done(b) && !held && list.get(b) != Some(hash) {
                        cx.stats.hash_failures += 1;
                        payload.reset(b);
                    }
                }
                self.hash_list = Some(list);
                // Signed: the blocks held for the list go out now, each checked as it goes.
                for (b, (data, hash)) in std::mem::take(&mut self.signed_held) {
                    self.objects[ObjectId::Payload].reset(b);
                    self.accept_block(cx, now, b, data, hash);
                }
                self.update_nak_timer(cx, now);
                self.check_complete();
            }
            Err(e) => {
                tracing::warn!("hash list rejected: {e}");
                cx.stats.hash_failures += 1;
                for b in 0..o.layout.block_count() {
                    o.reset(b);
                }
                self.update_nak_timer(cx, now);
            }
        }
    }

    fn on_manifest_block(&mut self, cx: &mut Ctx, now: Instant, block: u32, data: &[u8]) {
        let o = &mut self.objects[ObjectId::Manifest];
        let Some(off) = o.layout.block_offset(block) else {
            return;
        };
        if self.manifest_bytes.is_empty() {
            // Bounded at parse (MAX_MANIFEST_LEN).
            self.manifest_bytes = vec![0; self.identity.manifest_len as usize];
        }
        self.manifest_bytes[off as usize..off as usize + data.len()].copy_from_slice(data);
        o.set_done(block);
        if !o.complete() {
            return;
        }
        let flagged = self.identity.compressed;
        match Manifest::decode(&self.manifest_bytes, &self.announce)
            .and_then(|m| m.check_flag(flagged))
            .and_then(|m| m.check_max_size(cx.cfg.max_size))
        {
            Ok(m) => {
                self.manifest_bytes = Vec::new();
                self.manifest = Some(m.clone());
                self.events.push_back(Event::Manifest(m));
                self.locked = true;
                self.drop_other_codecs(cx);
                self.release_held();
                // Blocks the sender passed while this was a candidate are asked for now.
                self.update_nak_timer(cx, now);
                self.try_hash_list(cx, now);
                self.check_complete();
            }
            Err(ManifestError::Hash) => {
                // Damaged on the way (or forged symbols): fetch it again.
                tracing::warn!("manifest rejected: does not match the announced hash");
                cx.stats.hash_failures += 1;
                for b in 0..o.layout.block_count() {
                    o.reset(b);
                }
                self.update_nak_timer(cx, now);
            }
            Err(e) => {
                // The announced manifest itself is unacceptable (its hash matched): fetching
                // it again would only bring the same bytes. The receiver decides whether
                // that ends reception (pinned) or only this candidate.
                cx.stats.dropped_invalid += 1;
                self.manifest_bytes = Vec::new();
                self.refused = Some(format!("the sender's manifest is refused: {e}"));
            }
        }
    }

    /// Hand out `block` to be written (its `hash` was computed by the decode job): checked at
    /// once when the hash list is known, else kept to be checked when it arrives.
    fn accept_block(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        block: u32,
        data: Vec<u8>,
        hash: [u8; 32],
    ) {
        let o = &mut self.objects[ObjectId::Payload];
        let Some(offset) = o.layout.block_offset(block) else { return };
        if self.signed && self.hash_list.is_none() {
            // Signed: held in memory until the signed hash list verified (bounded; a block
            // dropped here is fetched again). Nothing unverified is ever written.
            if self.signed_held.len() < cx.cfg.max_pending_blocks {
                o.set_done(block);
                self.signed_held.insert(block, (data, hash));
            } else {
                cx.stats.dropped_memory += 1;
                o.reset(block);
                self.update_nak_timer(cx, now);
            }
            return;
        }
        if self.hash_list.as_ref().is_some_and(|l| l.get(block) != Some(&hash)) {
            cx.stats.hash_failures += 1;
            o.reset(block);
            self.update_nak_timer(cx, now);
            return;
        }
        let rewrite = self.written.insert(block, hash).is_some();
        o.set_done(block);
        self.events.push_back(Event::Block { block, offset, data, rewrite, hash });
        self.check_complete();
    }

    pub(super) fn check_complete(&mut self) {
        let (Some(m), Some(list)) = (self.manifest.as_ref(), self.hash_list.as_ref()) else {
            return;
        };
        if matches!(self.phase, Phase::Receiving) && self.objects[ObjectId::Payload].complete() {
            self.phase = Phase::Storing;
            self.timers.stop(Timer::Nak);
            self.events.push_back(Event::Complete { bytes: m.object_size, hashes: list.clone() });
        }
    }
}
