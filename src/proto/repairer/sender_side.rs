//! The sender's side of local repairers (a child module of `proto::sender`, kept with the
//! repairer's code): it assigns each repairer an ESI slot ([`Hello::RepairerJoin`] in,
//! [`Hello::Slots`] out), and it takes a repairer's advertisement as a need covered, so that it
//! does not repeat what a repairer nearer the loss is already sending.
//!
//! Hostile input: an advertisement counts only from a node that holds a slot, from the address
//! it joined from; it covers a block for [`COVER_HOLD_MAX`] at most, a live cover is never
//! extended, and a block is covered for at most [`COVER_LIMIT_BLOCKS`] blocks' worth of
//! symbols in all. After that the sender answers NAKs for it as if no repairer existed, so a
//! forged (or lying) repairer delays a block's repair by a bounded time, never stops it.
//! Joins fill at most [`REPAIR_SLOTS`] slots, one per IP address (a second join from an
//! address that holds one is refused, so one host cannot take them all). A full table
//! reclaims the slot of a holder not heard at all (no echo, NAK, join or report) for
//! [`SLOT_IDLE`]; otherwise it refuses the join (counted).
//!
//! **Repairers first.** While a repairer is active (a slot holder heard within
//! [`ACTIVE_FOR`]), the first NAK of a block from a receiver that is not a repairer opens a
//! deferral of `clamp(DEFER_GRTTS × GRTT, DEFER_MIN, DEFER_MAX)`: until it ends, NAKs from
//! non-repairers for that block are not answered, and the repairers' own NAKs are. The sender
//! then repairs only what a repairer lacks (its losses are as many as anyone's, but one
//! repairer's need, not the worst of the group's), the repairer decodes, and it answers the
//! others from there. Each block is deferred once per session; a deferral that ends without a
//! repairer's advertisement for its block counts as futile, and after [`FUTILE_LIMIT`] futile
//! ones in a row (repairers that cannot serve: unverified blocks, gone) no block is deferred
//! until an advertisement is believed again. A forged repairer therefore delays each block's
//! repair once by a bounded time, never stops it. Among the repairers, the first to NAK a
//! block is repaired, and for the same span the others' NAKs of it are left to that one (it
//! decodes first and repairs them): the sender sends one repairer's need, not the largest.

use super::repair::BlockKey;
use super::*;
use crate::proto::repairer::{
    SenderRepairerStats, ACTIVE_FOR, COVER_HOLD_GRTTS, COVER_HOLD_MAX, COVER_HOLD_MIN,
    COVER_LIMIT_BLOCKS, DEFER_GRTTS, DEFER_MAX, DEFER_MIN, FUTILE_LIMIT, MAX_DEFERRALS, SLOT_IDLE,
};

/// A block's deferral (see the module docs).
#[derive(Debug, Clone, Copy)]
struct Deferral {
    until: Instant,
    /// A repairer advertised a cover of the block while it ran.
    covered: bool,
    /// Its end was counted (futile or not).
    settled: bool,
}

#[derive(Debug, Clone, Copy)]
struct Cover {
    count: u32,
    until: Instant,
    /// The repairer that advertised it.
    by: u32,
}

/// Slots and covers (one per sender).
#[derive(Debug, Default)]
pub(crate) struct Repairers {
    /// Per repairer node: its slot and the address it joined from.
    slots: BTreeMap<u32, (u8, SocketAddr)>,
    /// The slot table changed or a repairer asked again: a Slots Hello is due.
    slots_due: bool,
    covers: HashMap<BlockKey, Cover>,
    /// Symbols covered per block so far (bounded by [`COVER_LIMIT_BLOCKS`]).
    covered: HashMap<BlockKey, u32>,
    /// Who the covers served (auto parity follows their repairers' loss).
    pub(crate) served: super::repairer_parity::CoveredGroup,
    /// How long after a NAK an advertisement still covers it (the cover hold).
    hold: Duration,
    /// When a slot holder was last heard.
    last_active: Option<Instant>,
    /// Per block, its deferral (one per session).
    deferrals: HashMap<BlockKey, Deferral>,
    /// Deferrals in a row that ended without a repairer's advert.
    futile: u32,
    /// Per block, the repairer repaired first and until when the others wait for it.
    first: HashMap<BlockKey, (u32, Instant)>,
    pub(crate) stats: SenderRepairerStats,
}

impl Repairers {
    /// Whether a Slots Hello is waiting to go out.
    pub(crate) fn slots_due(&self) -> bool {
        self.slots_due
    }

    /// The Slots Hello to send, if due.
    pub(crate) fn take_slots(&mut self) -> Option<Packet<'static>> {
        if !std::mem::take(&mut self.slots_due) || self.slots.is_empty() {
            return None;
        }
        let slots = self.slots.iter().map(|(n, (s, _))| (*n, *s)).collect();
        Some(Packet::Hello(Hello::Slots { slots }))
    }

    /// The slot of `node`, if it has one.
    pub(crate) fn slot(&self, node: u32) -> Option<u8> {
        self.slots.get(&node).map(|(s, _)| *s)
    }

    /// A slot holder was heard at `now`.
    fn heard_repairer(&mut self, now: Instant) {
        self.last_active = Some(self.last_active.map_or(now, |t| t.max(now)));
    }

    /// Whether a repairer was heard within [`ACTIVE_FOR`] of `now`.
    fn active(&self, now: Instant) -> bool {
        self.last_active.is_some_and(|t| now.saturating_duration_since(t) <= ACTIVE_FOR)
    }

    /// Whether a NAK of `key` from a non-repairer at `now` is deferred (see the module docs).
    fn deferred(&mut self, now: Instant, grtt: Duration, key: BlockKey) -> bool {
        if let Some(d) = self.deferrals.get_mut(&key) {
            if now < d.until {
                self.stats.needs_deferred += 1;
                return true;
            }
            if !d.settled {
                d.settled = true;
                self.futile = if d.covered { 0 } else { self.futile + 1 };
                self.stats.deferrals_futile += u64::from(!d.covered);
            }
            return false;
        }
        if !self.active(now) || self.futile >= FUTILE_LIMIT || self.deferrals.len() >= MAX_DEFERRALS
        {
            return false;
        }
        let span = (grtt * DEFER_GRTTS).clamp(DEFER_MIN, DEFER_MAX);
        let d = Deferral { until: now + span, covered: false, settled: false };
        self.deferrals.insert(key, d);
        self.stats.blocks_deferred += 1;
        self.stats.needs_deferred += 1;
        true
    }

    /// Whether repairer `node`'s NAK of `key` waits for another repairer repaired first: the
    /// first repairer to NAK a block is repaired, and for a deferral's span the others are
    /// left to it (it decodes first and repairs them), so that the sender sends one
    /// repairer's need, not the largest.
    fn second_repairer(&mut self, now: Instant, grtt: Duration, node: u32, key: BlockKey) -> bool {
        match self.first.get(&key) {
            Some((first, until)) if now < *until => {
                if *first != node {
                    self.stats.needs_deferred += 1;
                }
                *first != node
            }
            Some(_) => false,
            None if self.first.len() < MAX_DEFERRALS => {
                let span = (grtt * DEFER_GRTTS).clamp(DEFER_MIN, DEFER_MAX);
                self.first.insert(key, (node, now + span));
                false
            }
            None => false,
        }
    }

    /// What of `need` (from `node`'s NAK heard at `now`, the GRTT being `grtt`) is not covered
    /// by a repairer, or deferred to one.
    pub(crate) fn uncovered(&mut self, now: Instant, grtt: Duration, node: u32, need: Need) -> u16 {
        let key = (need.object, need.block);
        let live = self.covers.get(&key).filter(|c| c.until > now).map(|c| c.by);
        if !self.slots.is_empty() {
            self.served.on_nak(now, node, key, live, self.hold.max(COVER_HOLD_MIN));
        }
        if self.slots.contains_key(&node) {
            self.heard_repairer(now); // a repairer's own need: served, for the first one
            if need.object == ObjectId::Payload && self.second_repairer(now, grtt, node, key) {
                return 0;
            }
        } else if live.is_none()
            && need.object == ObjectId::Payload
            && self.deferred(now, grtt, key)
        {
            return 0;
        }
        match self.covers.get(&key) {
            Some(c) if c.until > now => {
                let left = u32::from(need.count).saturating_sub(c.count);
                if left < u32::from(need.count) {
                    self.stats.needs_covered += 1;
                }
                left as u16
            }
            Some(_) => {
                self.covers.remove(&key);
                need.count
            }
            None => need.count,
        }
    }
}

/// Every slot is taken: free the one whose holder has been silent longest (no join, echo,
/// NAK or report for [`SLOT_IDLE`]), if any, and return it.
fn reclaim(r: &mut Repairers, roster: &super::roster::Roster, now: Instant) -> Option<u8> {
    let heard = |node: &u32| roster.get(*node).map_or(Instant::ZERO, |e| e.last_heard);
    let (node, slot) = r
        .slots
        .iter()
        .filter(|(n, _)| now.saturating_duration_since(heard(n)) > SLOT_IDLE)
        .min_by_key(|(n, _)| heard(n))
        .map(|(n, (s, _))| (*n, *s))?;
    r.slots.remove(&node);
    r.stats.slots_reclaimed += 1;
    tracing::debug!(node, slot, "repairer slot reclaimed from a silent holder");
    Some(slot)
}

impl Sender {
    /// The repairer counters.
    pub fn repairer_stats(&self) -> &SenderRepairerStats {
        &self.repairers.stats
    }

    /// The ESI slot assigned to repairer `node`, if any.
    pub fn repairer_slot(&self, node: u32) -> Option<u8> {
        self.repairers.slot(node)
    }

    /// A repairer join from `node` at `from`: give it a slot (or repeat the one it has).
    pub(super) fn on_repairer_join(&mut self, now: Instant, node: u32, from: SocketAddr) {
        if !self.roster.heard(node, from, now) {
            self.repairers.stats.joins_refused += 1;
            return;
        }
        let r = &mut self.repairers;
        match r.slots.get(&node) {
            Some((_, addr)) if *addr != from => {
                r.stats.joins_refused += 1;
                return;
            }
            Some(_) => {}
            None if r.slots.values().any(|(_, a)| a.ip() == from.ip()) => {
                r.stats.joins_same_address += 1;
                return;
            }
            None => {
                let used: BTreeSet<u8> = r.slots.values().map(|(s, _)| *s).collect();
                let free = (1..=REPAIR_SLOTS).find(|s| !used.contains(s));
                let Some(free) = free.or_else(|| reclaim(r, &self.roster, now)) else {
                    r.stats.slots_full += 1;
                    return;
                };
                r.slots.insert(node, (free, from));
                tracing::debug!(node, slot = free, "repairer joined");
            }
        }
        r.heard_repairer(now);
        r.slots_due = true;
    }

    /// A repairer datagram from `node` at `from`.
    pub(super) fn on_repairer_packet(
        &mut self,
        now: Instant,
        node: u32,
        from: SocketAddr,
        p: RepairerPacket<'_>,
    ) {
        let joined = self.repairers.slots.get(&node).is_some_and(|(_, a)| *a == from);
        let RepairerPacket::Advert(list) = p else {
            self.repairers.stats.symbols_heard += 1;
            if joined {
                self.repairers.heard_repairer(now);
            }
            return;
        };
        if !joined {
            self.repairers.stats.adverts_ignored += 1;
            return;
        }
        self.repairers.stats.adverts_heard += 1;
        self.repairers.heard_repairer(now);
        self.repairers.futile = 0;
        let hold = (self.grtt.get() * COVER_HOLD_GRTTS).clamp(COVER_HOLD_MIN, COVER_HOLD_MAX);
        self.repairers.hold = hold;
        for need in list.needs {
            let Some(k) = self.layout_of(need.object).source_symbols(need.block) else {
                self.repairers.stats.needs_ignored += 1;
                continue;
            };
            if need.block >= self.started[need.object] {
                self.repairers.stats.needs_ignored += 1;
                continue;
            }
            let key = (need.object, need.block);
            self.repairers.served.on_cover(now, node, key, hold);
            if let Some(d) = self.repairers.deferrals.get_mut(&key) {
                d.covered |= now < d.until;
            }
            let most = u32::from(k) + u32::from(feedback::NEED_SLACK);
            let count = u32::from(need.count).min(most);
            let covered = self.repairers.covered.entry(key).or_insert(0);
            let room = (most * COVER_LIMIT_BLOCKS).saturating_sub(*covered);
            if room == 0 {
                self.repairers.stats.covers_over_limit += 1;
                continue;
            }
            let count = count.min(room);
            *covered += count;
            let taken = self.repairs.cover(key, count);
            self.repairers.stats.repairs_saved += u64::from(taken);
            match self.repairers.covers.get_mut(&key) {
                // Never extended: a repeated advert raises the count, not the time.
                Some(c) if c.until > now => c.count = c.count.max(count),
                _ => {
                    let cover = Cover { count, until: now + hold, by: node };
                    self.repairers.covers.insert(key, cover);
                }
            }
        }
    }
}
