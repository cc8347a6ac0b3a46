//! NAK scheduling and suppression (RFC 5401 style): when the receiver lacks symbols of blocks
//! the sender has passed, it waits a randomized backoff scaled by the GRTT and the group size,
//! then asks for what is still uncovered. A need is covered, for a while, by an equal or larger
//! need heard from another receiver or advertised by the sender, or by our own earlier NAK.
//! Only blocks the receiver has room for are asked for, and their slots are reserved, so that
//! repairs are never sent to a receiver that would have to drop them.

use super::session::{Cover, Ctx, Phase, Session, Timer};
use super::*;

/// Whether block `b` of object `id` (state `o`) can take symbols: it is a block of the manifest
/// or the hash list (always room: payload blocks decoded early wait for them), it already has
/// a slot, or a free one is left (which this then counts as used).
fn takes(id: ObjectId, o: &ObjectState, b: u32, free: &mut usize) -> bool {
    if id != ObjectId::Payload || o.pending.contains_key(&b) {
        return true;
    }
    if *free > 0 && !o.decoding.contains(&b) {
        *free -= 1;
        return true;
    }
    false
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
    fn covered(&self, id: ObjectId, b: u32, need: u32, now: Instant) -> bool {
        covered(&self.covers, id, b, need, now)
    }

    /// How long a NAK for `symbols` symbols covers its blocks: the sender's holdoff, a round
    /// trip, the longest backoff of the others, and the time to send the repairs (at the rate
    /// announced last).
    fn repair_wait(&self, backoff_factor: f64, symbols: u32) -> Duration {
        let tx_us = u64::from(symbols) * u64::from(self.identity.symbol_size) * 8 * 1_000_000
            / self.rate_bps().max(1);
        self.grtt.mul_f64(backoff_factor + 2.0) + Duration::from_micros(tx_us)
    }

    /// Check the covers again when the one ending at `until` lapses (or earlier).
    fn arm_cover_check(&mut self, until: Instant) {
        let at = self.timers.get(Timer::CoverCheck).map_or(until, |c| c.min(until));
        self.timers.set(Timer::CoverCheck, at);
    }

    /// A NAK from another receiver or a repair advertisement: our need for those blocks is
    /// covered if theirs is at least as large.
    pub(super) fn on_cover(&mut self, cx: &mut Ctx, now: Instant, list: &NeedList) {
        let total: u32 = list.needs.iter().map(|n| u32::from(n.count)).sum();
        let until = now + self.repair_wait(cx.cfg.backoff_factor, total);
        for n in &list.needs {
            let heard = Cover { count: u32::from(n.count), until };
            let c = self.covers.entry((n.object, n.block)).or_insert(heard);
            if c.until <= now {
                *c = heard; // the old cover has lapsed: only what was just heard counts
            } else if heard.count >= c.count {
                *c = Cover { count: heard.count, until: until.max(c.until) };
            }
        }
        self.arm_cover_check(until);
    }

    /// Arm the NAK backoff if some block we can take is short and uncovered.
    pub(super) fn update_nak_timer(&mut self, cx: &mut Ctx, now: Instant) {
        if self.timers.is_set(Timer::Nak) || !matches!(self.phase, Phase::Receiving) {
            return;
        }
        let mut free = self.free_slots(cx.cfg.max_pending_blocks);
        let wanted = self.objects.iter().any(|(id, o)| {
            o.outstanding.iter().any(|b| {
                let need = o.need(*b);
                need > 0 && !self.covered(id, *b, need, now) && takes(id, o, *b, &mut free)
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
        let mut needs = Vec::new();
        let mut short = false;
        let mut free = self.free_slots(cx.cfg.max_pending_blocks);
        let (t, max) = (self.identity.symbol_size, MAX_NEEDS);
        for (id, o) in self.objects.iter_mut() {
            let full = needs.len() == max;
            for &b in o.outstanding.iter().take_while(|_| !full) {
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
                    if let Ok(slot) = BlockSymbols::new(t, k) {
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
        // Too few datagrams seen to say (a late joiner's first NAK): "unmeasured", as in echoes,
        // so that the straggler policy does not judge it by a handful of datagrams.
        let loss_ppm =
            if cx.stats.first_pass_expected < 64 { u32::MAX } else { cx.stats.loss_ppm() };
        let list = NeedList { seq: self.seen_seq.unwrap_or(0), loss_ppm, needs };
        let total: u32 = list.needs.iter().map(|n| u32::from(n.count)).sum();
        let until = now + self.repair_wait(cx.cfg.backoff_factor, total);
        for n in &list.needs {
            self.covers.insert((n.object, n.block), Cover { count: u32::from(n.count), until });
        }
        self.arm_cover_check(until);
        self.outbox.push_back(Packet::Nak(list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver_in_session() -> Receiver {
        receiver_with(ReceiverConfig::default(), 10_000)
    }

    /// A receiver locked onto session 9: `object_size` bytes in blocks of 10 symbols of 100.
    fn receiver_with(cfg: ReceiverConfig, object_size: u64) -> Receiver {
        let mut r = Receiver::new(cfg);
        let a = Announce {
            object_size,
            symbol_size: 100,
            block_symbols: 10,
            manifest_len: 100,
            manifest_hash: [0; 32],
            hashes_len: 0,
            hashes_hash: [0; 32],
            rate_bps: 1_000_000_000,
            grtt_us: 1000,
        };
        let mut b = Vec::new();
        wire::emit(&Header { flags: 0, session: 9, node: 1 }, &Packet::Announce(a), &mut b);
        r.handle_datagram(Instant::ZERO, "198.18.0.1:7000".parse().unwrap(), &b);
        assert_eq!(r.session_id(), Some(9));
        r
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
    fn covers_take_the_larger_need_and_lapse() {
        let mut r = receiver_in_session();
        let t0 = Instant::ZERO;
        cover(&mut r, t0, &heard(10));
        cover(&mut r, t0, &heard(4));
        let s = r.session.as_ref().unwrap();
        assert!(s.covered(ObjectId::Payload, 3, 10, t0), "the larger need stands");
        assert!(!s.covered(ObjectId::Payload, 3, 11, t0), "but does not cover more");
        let until = s.covers[&(ObjectId::Payload, 3)].until;
        assert!(!s.covered(ObjectId::Payload, 3, 1, until), "lapsed at its deadline");
        // After it lapsed, a smaller need heard covers only that much.
        cover(&mut r, until, &heard(2));
        let s = r.session.as_ref().unwrap();
        assert!(s.covered(ObjectId::Payload, 3, 2, until));
        assert!(!s.covered(ObjectId::Payload, 3, 5, until), "stale count must not linger");
    }
}
