//! NAK scheduling and suppression (RFC 5401 style): when the receiver lacks symbols of blocks
//! the sender has passed, it waits a randomized backoff scaled by the GRTT and the group size,
//! then asks for what is still uncovered. A need is covered, for a while, by an equal or larger
//! need heard from another receiver or advertised by the sender, or by our own earlier NAK.
//! Only blocks the receiver has room for are asked for, and their slots are reserved, so that
//! repairs are never sent to a receiver that would have to drop them.
//!
//! What is heard is not trusted far (in open mode anyone can send a NAK to the group port, and
//! the sender, listening on port + 1, may never hear it): a heard need is clamped to the block's
//! K plus [`COVER_MARGIN`], needs for blocks outside the layout are skipped, a heard cover lasts
//! the repair wait with its sending time capped at [`MAX_HEARD_TX`] and is never extended by
//! what is heard later, and once [`MAX_STALLED_COVERS`] heard covers of a block have lapsed with
//! our need unmet *and no symbol of the block received under them*, no heard need covers that
//! block again (until it is done). A cover under which our need fell was a real repair round
//! (the sender answered someone's NAK) of which we lost a repair, and one that brought nothing
//! is most often a round whose only repair we lost: so the next round is suppressed like the
//! first, instead of every receiver that lost a repair NAKing on its own (at 10,000 receivers
//! that was most of the NAKs, in the end game above all). A forger's need, which the sender
//! does not answer, brings no symbols: it holds ours off for at most [`MAX_STALLED_COVERS`]
//! covers.

use super::object::HeardCovers;
use super::session::{Cover, Ctx, Phase, Session, Timer};
use super::*;

/// Symbols a heard need may exceed its block's K by and still count in full.
pub const COVER_MARGIN: u32 = 16;
/// Heard covers of a block that may lapse with nothing received under them before no heard
/// need covers it any more.
pub const MAX_STALLED_COVERS: u8 = 2;
/// GRTTs a heard cover waits, besides the repairs' sending time, for the repairs it asked for
/// (the sender's holdoff of one GRTT, a round trip, one GRTT of slack).
pub const HEARD_WAIT_GRTTS: f64 = 3.0;
/// Longest time a heard cover allows for sending the repairs it asks for.
pub const MAX_HEARD_TX: Duration = Duration::from_secs(1);

/// Whether block `b` of object `id` (state `o`) can take symbols: it is a block of the manifest
/// or the hash list (always room: they are bounded on their own), it already has a slot, or a
/// free one is left (which this then counts as used).
fn takes(id: ObjectId, o: &ObjectState, b: u32, free: &mut usize) -> bool {
    if id != ObjectId::Payload || o.pending.contains_key(&b) {
        return true;
    }
    if *free > 0 && !o.decoding.contains_key(&b) {
        *free -= 1;
        return true;
    }
    false
}

/// A heard cover of block `b` (of `o`) lapsed: whether no heard need may cover the block any
/// more (our need is unmet, and [`MAX_STALLED_COVERS`] heard covers brought no symbol of it).
fn lapse_heard(o: &mut ObjectState, b: u32) -> bool {
    let need = o.need(b);
    if need == 0 || !(o.is_outstanding(b) || o.pending.contains_key(&b)) {
        return false;
    }
    // Not noted when the cover was taken (the block was neither passed nor collecting): our
    // need was then the whole block, as if nothing of it had arrived.
    let whole = o.layout.source_symbols(b).map_or(0, u32::from);
    let h = o.heard.entry(b).or_insert(HeardCovers { need: whole, stalled: 0 });
    if need >= h.need {
        h.stalled = h.stalled.saturating_add(1);
    }
    h.stalled >= MAX_STALLED_COVERS
}

/// A heard need of ours for block `b` (of `o`) is now covered: note our need. Only blocks we
/// lack and the sender has passed or we are collecting are noted (and forgotten once done), so
/// heard needs for blocks we hold or nobody sent yet cost no memory.
fn take_heard(o: &mut ObjectState, b: u32) {
    let need = o.need(b);
    if need > 0 && (o.is_outstanding(b) || o.pending.contains_key(&b)) {
        o.heard.entry(b).or_default().need = need;
    }
}

/// Whether a need of `need` symbols for block `b` is covered by what was heard or sent.
fn covered(
    covers: &HashMap<(ObjectId, u32), Cover>,
    id: ObjectId,
    b: u32,
    need: u32,
    now: Instant,
) -> bool {
    covers.get(&(id, b)).is_some_and(|c| c.until > now && c.count >= need)
}

impl Session {
    /// See [`covered`].
    pub(super) fn covered(&self, id: ObjectId, b: u32, need: u32, now: Instant) -> bool {
        covered(&self.covers, id, b, need, now)
    }

    /// Time to send `symbols` symbols at the rate announced last.
    fn tx_time(&self, symbols: u32) -> Duration {
        let bits = u128::from(symbols) * u128::from(self.identity.symbol_size) * 8;
        let us = bits * 1_000_000 / u128::from(self.rate_bps().max(1));
        Duration::from_micros(us.min(u128::from(u64::MAX)) as u64)
    }

    /// How long a NAK for `symbols` symbols covers its blocks: the sender's holdoff, a round
    /// trip, the longest backoff of the others, and the time to send the repairs (at the rate
    /// announced last). A heard NAK's cover leaves out the others' backoff (the repairs it
    /// asked for are on their way a holdoff after it: [`HEARD_WAIT_GRTTS`] covers holdoff,
    /// round trip and slack), and its sending time is at most [`MAX_HEARD_TX`]: a receiver
    /// whose repair of that round was lost asks again a backoff sooner.
    fn repair_wait(&self, backoff_factor: f64, symbols: u32, heard: bool) -> Duration {
        let tx = self.tx_time(symbols);
        if heard {
            self.grtt.mul_f64(HEARD_WAIT_GRTTS.min(backoff_factor + 2.0)) + tx.min(MAX_HEARD_TX)
        } else {
            self.grtt.mul_f64(backoff_factor + 2.0) + tx
        }
    }

    /// Check the covers again when the one ending at `until` lapses (or earlier).
    fn arm_cover_check(&mut self, until: Instant) {
        let at = self.timers.get(Timer::CoverCheck).map_or(until, |c| c.min(until));
        self.timers.set(Timer::CoverCheck, at);
    }

    /// A NAK from another receiver or a repair advertisement: our need for those blocks is
    /// covered if theirs is at least as large (clamped to what the block can need).
    pub(super) fn on_cover(&mut self, cx: &mut Ctx, now: Instant, list: &NeedList) {
        let mut heard = Vec::with_capacity(list.needs.len());
        for n in &list.needs {
            let Some(k) = self.objects[n.object].layout.source_symbols(n.block) else {
                cx.stats.needs_ignored += 1;
                continue;
            };
            if self.must_nak.contains(&(n.object, n.block)) {
                continue;
            }
            heard.push((n.object, n.block, u32::from(n.count).min(u32::from(k) + COVER_MARGIN)));
        }
        if heard.is_empty() {
            return;
        }
        let total = heard.iter().map(|h| h.2).sum();
        let until = now + self.repair_wait(cx.cfg.backoff_factor, total, true);
        for (object, block, count) in heard {
            let key = (object, block);
            let h = Cover { count, until, heard: true };
            match self.covers.get_mut(&key) {
                // A live cover is never extended by what is heard (else a NAK repeated every
                // millisecond would hold ours off for ever); a larger need raises its count.
                Some(c) if c.until > now => {
                    if count > c.count {
                        if !c.heard {
                            take_heard(&mut self.objects[object], block);
                        }
                        (c.count, c.heard) = (count, true);
                    }
                }
                // A heard cover lapsed (its check not yet run) with our need unmet, once too
                // often without progress: ours now.
                Some(c) if c.heard && lapse_heard(&mut self.objects[object], block) => {
                    self.covers.remove(&key);
                    self.must_nak.insert(key);
                }
                // Our own cover lapsed, or none (or a heard one forgiven): only what was just
                // heard counts.
                _ => {
                    self.covers.insert(key, h);
                    take_heard(&mut self.objects[object], block);
                }
            }
        }
        self.arm_cover_check(until);
    }

    /// End the covers that last longer than the current GRTT allows (a heard one's longest
    /// wait); returns whether any was shortened. The cover check is armed for the earliest.
    pub(super) fn clamp_covers(&mut self, cx: &Ctx, now: Instant) -> bool {
        let limit = now + self.grtt.mul_f64(cx.cfg.backoff_factor + 2.0) + MAX_HEARD_TX;
        let mut clamped = false;
        for c in self.covers.values_mut().filter(|c| c.until > limit) {
            c.until = limit;
            clamped = true;
        }
        if clamped {
            self.arm_cover_check(limit);
        }
        clamped
    }

    /// The cover check: forget the covers that lapsed (a heard one whose block still lacks
    /// symbols leaves the block to our own NAK) and re-arm for the next.
    pub(super) fn lapse_covers(&mut self, now: Instant) {
        let (objects, must_nak) = (&mut self.objects, &mut self.must_nak);
        self.covers.retain(|&(id, b), c| {
            let lapsed = c.until <= now;
            if lapsed && c.heard && lapse_heard(&mut objects[id], b) {
                must_nak.insert((id, b));
            }
            !lapsed
        });
        must_nak.retain(|&(id, b)| !objects[id].is_done(b));
        if let Some(next) = self.covers.values().map(|c| c.until).min() {
            self.timers.set(Timer::CoverCheck, next);
        }
    }

    /// Arm the NAK backoff if some block we can take is short and uncovered.
    pub(super) fn update_nak_timer(&mut self, cx: &mut Ctx, now: Instant) {
        let live = matches!(self.phase, Phase::Receiving);
        if self.timers.is_set(Timer::Nak) || !live || !self.may_nak() {
            return;
        }
        let mut free = self.free_slots(cx.slots);
        let wanted = self.objects.iter().filter(|(id, _)| self.asks_for(*id)).any(|(id, o)| {
            o.outstanding().any(|b| {
                let need = o.need(b);
                need > 0 && !self.covered(id, b, need, now) && takes(id, o, b, &mut free)
            })
        });
        if wanted {
            let max = self.grtt.mul_f64(cx.cfg.backoff_factor);
            let group = self.group_size.unwrap_or(cx.cfg.group_size);
            let mut at = now + backoff(cx.rng, max, group);
            // Rate limit: at most one NAK per `nak_interval_grtts` GRTTs.
            if let Some(last) = self.last_nak {
                at = at.max(last + self.grtt.mul_f64(cx.cfg.nak_interval_grtts));
            }
            self.timers.set(Timer::Nak, at);
        }
    }

    /// The backoff expired: NAK what is still short and uncovered (or count a suppression).
    pub(super) fn send_nak(&mut self, cx: &mut Ctx, now: Instant) {
        if !self.may_nak() {
            return;
        }
        let mut needs = Vec::new();
        let mut short = false;
        let mut free = self.free_slots(cx.slots);
        let (t, max, locked) = (self.identity.symbol_size, MAX_NEEDS, self.locked);
        for (id, o) in self.objects.iter_mut() {
            if !locked && id != ObjectId::Manifest {
                continue; // a candidate asks for its manifest only
            }
            let full = needs.len() == max;
            for b in o.outstanding().take_while(|_| !full) {
                let need = o.need(b);
                if need == 0 {
                    continue;
                }
                short = true;
                // Ask only for blocks we can hold: the repairs for a block with no slot would
                // be dropped on arrival and asked for again.
                if !covered(&self.covers, id, b, need, now) && takes(id, o, b, &mut free) {
                    let count = need.min(u32::from(u16::MAX)) as u16;
                    needs.push(Need { object: id, block: b, count });
                    if needs.len() == max {
                        break;
                    }
                }
            }
            // Reserve the slots of the blocks asked for (also when the list filled up inside
            // this object), so their repairs find room.
            for n in needs.iter().filter(|n| n.object == id) {
                if !o.pending.contains_key(&n.block) {
                    let k = o.layout.source_symbols(n.block).unwrap_or(0);
                    let counting = cx.cfg.count_only_symbols && id == ObjectId::Payload;
                    if let Ok(slot) = BlockSymbols::for_coding_counting(t, k, None, counting) {
                        o.pending.insert(n.block, slot);
                    }
                }
            }
        }
        if needs.is_empty() {
            if short {
                cx.stats.naks_suppressed += 1;
            }
            return;
        }
        cx.stats.naks_sent += 1;
        self.last_nak = Some(now);
        self.spend_nak_credit();
        let loss_ppm = super::session::reported_loss(cx.stats);
        let list = NeedList { seq: self.seq.highest().unwrap_or(0), loss_ppm, needs };
        let total: u32 = list.needs.iter().map(|n| u32::from(n.count)).sum();
        let until = now + self.repair_wait(cx.cfg.backoff_factor, total, false);
        for n in &list.needs {
            let own = Cover { count: u32::from(n.count), until, heard: false };
            self.covers.insert((n.object, n.block), own);
        }
        self.arm_cover_check(until);
        self.outbox.push_back(Packet::Nak(list));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests as t;
    use super::*;

    fn receiver_in_session() -> Receiver {
        receiver_with(ReceiverConfig::default(), 10_000)
    }

    /// A receiver locked onto a session of `object_size` bytes in blocks of 10 symbols of 100.
    fn receiver_with(cfg: ReceiverConfig, object_size: u64) -> Receiver {
        let a = Announce { object_size, rate_bps: 1_000_000_000, ..t::announce(0) };
        t::locked(cfg, a).0
    }

    /// A receiver in session whose sender has passed the blocks below `to`.
    fn receiver_passed(to: u32) -> Receiver {
        let mut r = receiver_in_session();
        r.session.as_mut().unwrap().objects[ObjectId::Payload].advance(to);
        r
    }

    #[test]
    fn heard_needs_for_blocks_not_passed_nor_collected_are_not_noted() {
        let mut r = receiver_in_session();
        let t0 = Instant::ZERO;
        cover(&mut r, t0, &heard(10)); // block 3: not passed, nothing of it collected
        let s = r.session.as_ref().unwrap();
        assert!(s.objects[ObjectId::Payload].heard.is_empty());
        let mut r = receiver_passed(4);
        cover(&mut r, t0, &heard(10));
        let s = r.session.as_ref().unwrap();
        assert_eq!(s.objects[ObjectId::Payload].heard.len(), 1, "passed and lacking: noted");
    }

    fn heard(count: u16) -> NeedList {
        NeedList {
            seq: 0,
            loss_ppm: 0,
            needs: vec![Need { object: ObjectId::Payload, block: 3, count }],
        }
    }

    fn cover(r: &mut Receiver, now: Instant, list: &NeedList) {
        let (s, mut cx) = r.enter(now).unwrap();
        s.on_cover(&mut cx, now, list);
    }

    #[test]
    fn a_full_nak_reserves_a_slot_for_every_block_it_asks_for() {
        // 400 payload blocks outstanding and room for all of them: the NAK fills up (180
        // needs) inside the payload object, and each block asked for must still get its slot.
        let cfg = ReceiverConfig { max_pending_blocks: 1000, ..ReceiverConfig::default() };
        let mut r = receiver_with(cfg, 400 * 1000);
        let (s, mut cx) = r.enter(Instant::ZERO).unwrap();
        s.objects[ObjectId::Payload].advance(u32::MAX);
        s.send_nak(&mut cx, Instant::ZERO);
        let Some(Packet::Nak(list)) = s.outbox.back() else { panic!("no NAK queued") };
        assert_eq!(list.needs.len(), MAX_NEEDS);
        let payload = &s.objects[ObjectId::Payload];
        for n in list.needs.iter().filter(|n| n.object == ObjectId::Payload) {
            assert!(payload.pending.contains_key(&n.block), "block {} has no slot", n.block);
        }
    }

    #[test]
    fn covers_take_the_larger_need_are_never_extended_and_lapse() {
        let mut r = receiver_passed(4);
        let t0 = Instant::ZERO;
        cover(&mut r, t0, &heard(10));
        cover(&mut r, t0, &heard(4));
        let s = r.session.as_ref().unwrap();
        assert!(s.covered(ObjectId::Payload, 3, 10, t0), "the larger need stands");
        assert!(!s.covered(ObjectId::Payload, 3, 11, t0), "but does not cover more");
        let until = s.covers[&(ObjectId::Payload, 3)].until;
        // Heard again while it is live: the deadline does not move.
        let later = t0 + (until - t0) / 2;
        cover(&mut r, later, &heard(10));
        let s = r.session.as_ref().unwrap();
        assert_eq!(s.covers[&(ObjectId::Payload, 3)].until, until);
        assert!(!s.covered(ObjectId::Payload, 3, 1, until), "lapsed at its deadline");
        // Heard again once it lapsed with the need unmet and nothing received: forgiven once
        // (a real round's only repair may have been lost) ...
        cover(&mut r, until, &heard(2));
        let s = r.session.as_ref().unwrap();
        assert!(s.covered(ObjectId::Payload, 3, 2, until), "forgiven once");
        assert!(!s.must_nak.contains(&(ObjectId::Payload, 3)));
        let until = s.covers[&(ObjectId::Payload, 3)].until;
        // ... but after MAX_STALLED_COVERS covers that brought nothing, none heard covers it.
        cover(&mut r, until, &heard(10));
        let s = r.session.as_ref().unwrap();
        assert!(!s.covered(ObjectId::Payload, 3, 1, until));
        assert!(s.must_nak.contains(&(ObjectId::Payload, 3)));
        cover(&mut r, until, &heard(10));
        assert!(!r.session.as_ref().unwrap().covered(ObjectId::Payload, 3, 1, until));
    }

    #[test]
    fn heard_covers_under_which_symbols_arrived_never_count_against_the_block() {
        let mut r = receiver_passed(4); // blocks of K = 10 symbols of 100 bytes
        let mut at = Instant::ZERO;
        for round in 0..2 * u32::from(MAX_STALLED_COVERS) {
            cover(&mut r, at, &heard(10));
            let (s, _) = r.enter(at).unwrap();
            assert!(s.covered(ObjectId::Payload, 3, 10 - round, at), "round {round}");
            // One repair of the round arrives, the rest are lost.
            let o = &mut s.objects[ObjectId::Payload];
            let b = o.pending.entry(3).or_insert_with(|| BlockSymbols::new(100, 10).unwrap());
            assert_eq!(b.insert(round, &[0; 100]), Ok(Inserted::New));
            at = s.covers[&(ObjectId::Payload, 3)].until;
            s.lapse_covers(at);
            assert!(!s.must_nak.contains(&(ObjectId::Payload, 3)), "round {round}");
        }
        // A round that brings nothing is forgiven once more, the next is not.
        for stalled in 1..=MAX_STALLED_COVERS {
            cover(&mut r, at, &heard(10));
            let (s, _) = r.enter(at).unwrap();
            at = s.covers[&(ObjectId::Payload, 3)].until;
            s.lapse_covers(at);
            let ours = s.must_nak.contains(&(ObjectId::Payload, 3));
            assert_eq!(ours, stalled == MAX_STALLED_COVERS, "stalled {stalled}");
        }
    }

    /// A heard cover taken before the block was passed or collected (nothing noted, to keep
    /// memory bounded) counts as taken at the whole block's need: a symbol that arrived under it
    /// does not make it a stalled cover (it did in 0e73ec9, and at 10,000 simulated receivers
    /// NAKs per lossy block rose from 1.5 to 3.5); the covers after it are forgiven once, as
    /// always.
    #[test]
    fn a_cover_taken_before_the_block_was_collected_counts_what_arrived_under_it() {
        let mut r = receiver_in_session(); // block 3 not passed, nothing of it held
        let mut at = Instant::ZERO;
        for round in 0..=MAX_STALLED_COVERS {
            cover(&mut r, at, &heard(10));
            let (s, _) = r.enter(at).unwrap();
            if round == 0 {
                assert!(s.objects[ObjectId::Payload].heard.is_empty(), "not noted");
                // The sender passes the block; one symbol of it arrives under the cover.
                let o = &mut s.objects[ObjectId::Payload];
                o.advance(4);
                let b = o.pending.entry(3).or_insert_with(|| BlockSymbols::new(100, 10).unwrap());
                assert_eq!(b.insert(0, &[0; 100]), Ok(Inserted::New));
            }
            at = s.covers[&(ObjectId::Payload, 3)].until;
            s.lapse_covers(at);
            let ours = s.must_nak.contains(&(ObjectId::Payload, 3));
            assert_eq!(ours, round == MAX_STALLED_COVERS, "round {round}");
        }
    }

    #[test]
    fn heard_needs_are_clamped_to_k_plus_margin_and_past_the_end_skipped() {
        let mut r = receiver_in_session(); // blocks of K = 10
        let t0 = Instant::ZERO;
        let mut list = heard(u16::MAX);
        list.needs.push(Need { object: ObjectId::Payload, block: 10, count: 1 });
        cover(&mut r, t0, &list);
        let s = r.session.as_ref().unwrap();
        assert_eq!(s.covers[&(ObjectId::Payload, 3)].count, 10 + COVER_MARGIN);
        assert!(!s.covers.contains_key(&(ObjectId::Payload, 10)), "block 10 is past the end");
        assert_eq!(r.stats().needs_ignored, 1);
        // The cover lasts the repair wait of the clamped need, its sending time capped.
        let s = r.session.as_ref().unwrap();
        let wait = s.covers[&(ObjectId::Payload, 3)].until - t0;
        assert_eq!(wait, s.repair_wait(4.0, 10 + COVER_MARGIN, true));
        assert!(wait <= s.grtt.mul_f64(6.0) + MAX_HEARD_TX);
    }
}
