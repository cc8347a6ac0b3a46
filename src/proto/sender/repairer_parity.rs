//! Auto parity where local repairers cover a segment: the receivers whose needs a repairer
//! covers are repaired by it, so the origin's proactive parity should follow what it must get
//! across to the repairers, not what the repairers close locally.
//!
//! The sender learns who is covered from what it already hears. A NAK heard while a
//! repairer's advertisement covers its block, or an advertisement arriving within a cover
//! hold of a NAK for the block, marks the NAKer as covered by that repairer; a NAK that no
//! advertisement covered within the hold marks it as not covered. A verdict lasts
//! [`COVERED_FOR`]. A receiver without a verdict, while a repairer holding a slot has been
//! heard within [`COVERED_FOR`], is presumed covered by the lossiest such repairer (else
//! auto parity high enough that nobody NAKs would never find out that a repairer could serve
//! them); its first NAK the repairers do not cover puts its own loss back.
//! [`Sender::parity_plan`] gives auto parity the group's loss sample without the covered
//! receivers whose repairer loses at most [`COMPARABLE_LOSS`] times as much as they do (the
//! repairers, in the sample as receivers, stand for them), the group size less them, and a
//! target that allows [`REPAIRER_SHORT_TARGET`] short repairers each.
//!
//! Hostile input: only NAKs that passed the sender's checks (bound address, in range) and
//! adverts from slot holders at their joined address are counted; the tables are bounded
//! ([`MAX_NAKED_BLOCKS`], [`MAX_NAKERS`], [`MAX_VERDICTS`]). A lying repairer can lower the
//! parity of the receivers it claims to serve, which makes them NAK more; the sender still
//! repairs what its covers do not deliver (bounded by the cover limits).

use super::repair::BlockKey;
use super::{Group, Sender};
use crate::proto::time::{Duration, Instant};
use std::collections::HashMap;

/// A verdict (covered or not) lasts this long after the NAK or cover that gave it.
pub const COVERED_FOR: Duration = Duration::from_secs(2);
/// Blocks whose recent NAKers are remembered.
pub const MAX_NAKED_BLOCKS: usize = 256;
/// NAKers remembered per block.
pub const MAX_NAKERS: usize = 64;
/// Verdicts remembered.
pub const MAX_VERDICTS: usize = 4096;

/// Whether a receiver's needs are covered, as far as the sender knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Covered by this repairer.
    By(u32),
    /// A NAK of it went uncovered.
    Uncovered,
    /// Nothing heard lately: covered by the active repairers, presumably.
    Presumed,
}

/// Who NAKed what lately, and who is covered by which repairer.
#[derive(Debug, Default)]
pub(crate) struct CoveredGroup {
    nakers: HashMap<BlockKey, Vec<(u32, Instant)>>,
    /// Receiver node → (repairer node or `None`: not covered, when decided).
    verdicts: HashMap<u32, (Option<u32>, Instant)>,
    last_now: Instant,
}

impl CoveredGroup {
    /// `node` NAKed `key` at `now`; `by` is the repairer whose cover of it is live, if any.
    /// `window` is how long an advertisement arriving later still counts as covering it.
    pub(crate) fn on_nak(
        &mut self,
        now: Instant,
        node: u32,
        key: BlockKey,
        by: Option<u32>,
        window: Duration,
    ) {
        self.last_now = self.last_now.max(now);
        self.sweep(now, window);
        if let Some(by) = by {
            self.decide(node, Some(by), now);
            return;
        }
        if !self.nakers.contains_key(&key) && self.nakers.len() >= MAX_NAKED_BLOCKS {
            return;
        }
        let v = self.nakers.entry(key).or_default();
        if v.len() < MAX_NAKERS && !v.iter().any(|(n, _)| *n == node) {
            v.push((node, now));
        }
    }

    /// NAKs older than `window` that no advertisement covered: their NAKers are not covered.
    fn sweep(&mut self, now: Instant, window: Duration) {
        let mut late = Vec::new();
        self.nakers.retain(|_, v| {
            v.retain(|(n, t)| {
                let open = now.saturating_duration_since(*t) <= window;
                if !open {
                    late.push((*n, *t));
                }
                open
            });
            !v.is_empty()
        });
        for (node, t) in late {
            self.decide(node, None, t);
        }
    }

    /// Repairer `by` advertised a cover of `key` at `now`: the receivers that NAKed it within
    /// `window` are covered by it.
    pub(crate) fn on_cover(&mut self, now: Instant, by: u32, key: BlockKey, window: Duration) {
        self.last_now = self.last_now.max(now);
        let Some(v) = self.nakers.remove(&key) else { return };
        for (node, t) in v {
            let by = (now.saturating_duration_since(t) <= window).then_some(by);
            self.decide(node, by, if by.is_some() { now } else { t });
        }
    }

    fn decide(&mut self, node: u32, by: Option<u32>, at: Instant) {
        if by == Some(node) {
            return;
        }
        if !self.verdicts.contains_key(&node) && self.verdicts.len() >= MAX_VERDICTS {
            let now = self.last_now;
            self.verdicts.retain(|_, (_, t)| now.saturating_duration_since(*t) <= COVERED_FOR);
            if self.verdicts.len() >= MAX_VERDICTS {
                return;
            }
        }
        let e = self.verdicts.entry(node).or_insert((by, at));
        if at >= e.1 {
            *e = (by, at);
        }
    }

    /// What is known about `node` at `now`.
    pub(crate) fn verdict(&self, node: u32, now: Instant) -> Verdict {
        match self.verdicts.get(&node) {
            Some((by, t)) if now.saturating_duration_since(*t) <= COVERED_FOR => {
                by.map_or(Verdict::Uncovered, Verdict::By)
            }
            _ => Verdict::Presumed,
        }
    }
}

/// `sample` without one entry per receiver in `covered` (receiver, the loss rate of what
/// covers it) whose repairer loses at most [`COMPARABLE_LOSS`] times as much as it does, and
/// how many were taken out.
pub(crate) fn without_covered(
    sample: Vec<f64>,
    group: &Group,
    covered: &[(u32, f64)],
) -> (Vec<f64>, usize) {
    let mut drop: HashMap<u64, usize> = HashMap::new();
    let mut taken = 0;
    for &(node, rep) in covered {
        let own = group.get(node).and_then(|m| m.loss_ppm).map(|p| f64::from(p) / 1e6);
        match own {
            Some(own) if rep <= own * COMPARABLE_LOSS => {
                *drop.entry(own.to_bits()).or_default() += 1
            }
            Some(_) => continue,
            None => {} // unmeasured: not in the sample, still covered
        }
        taken += 1;
    }
    let out = sample
        .into_iter()
        .filter(|p| match drop.get_mut(&p.to_bits()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect();
    (out, taken)
}

/// A covered receiver leaves auto parity's sample when its repairer loses at most this many
/// times as much as it does (a repairer far lossier than the receivers it covers would make
/// them pay for its losses).
pub const COMPARABLE_LOSS: f64 = 2.0;

/// Expected repairers short of a block that auto parity allows, per active repairer, where
/// repairers cover receivers: a short repairer asks for exactly what it lacks, and the
/// receivers it covers are then repaired by it, so parity beyond a repairer's typical loss
/// would be symbols sent for nobody.
pub const REPAIRER_SHORT_TARGET: f64 = 0.5;

/// What auto parity plans for ([`Sender::parity_plan`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParityPlan {
    /// Loss rates.
    pub(crate) sample: Vec<f64>,
    /// The group size the sample stands for.
    pub(crate) group: u32,
    /// Expected receivers short of a block after the proactive symbols.
    pub(crate) target: f64,
    /// Whether active repairers cover some of the group (their shortfalls are repaired
    /// locally, so the end game is planned like the rest: see `FINAL_WINDOW_SHARE`).
    pub(crate) local: bool,
}

impl Sender {
    /// What auto parity plans for. Without active repairers: the group's loss sample, its
    /// size and the configured target. With them: the receivers they cover (see the module
    /// docs) leave the sample and the group when their repairer's loss is comparable
    /// ([`COMPARABLE_LOSS`]; the repairers, in the sample as receivers, stand for them), and the target allows
    /// [`REPAIRER_SHORT_TARGET`] short repairers each: what the origin must get across is one
    /// repairer's need, which NAK-driven repair meets exactly.
    pub(crate) fn parity_plan(&self) -> ParityPlan {
        let target = self.cfg.parity_target;
        let sample = self.group.loss_sample();
        let group = self.group.size();
        let Some((active, covered)) = self.covered_receivers() else {
            return ParityPlan { sample, group, target, local: false };
        };
        let (kept, taken) = without_covered(sample, &self.group, &covered);
        if taken == 0 {
            return ParityPlan { sample: kept, group, target, local: false };
        }
        let mut sample = kept;
        if sample.is_empty() {
            sample = active.iter().map(|(_, l)| *l).collect();
        }
        let group = (group as usize).saturating_sub(taken).max(sample.len()).max(1) as u32;
        let target = target + REPAIRER_SHORT_TARGET * active.len() as f64;
        ParityPlan { sample, group, target, local: true }
    }

    /// The active repairers (node, loss) and the receivers they cover (node, their
    /// repairer's loss), or `None` without an active repairer.
    #[allow(clippy::type_complexity)]
    fn covered_receivers(&self) -> Option<(Vec<(u32, f64)>, Vec<(u32, f64)>)> {
        let r = &self.repairers;
        let now = self.last_now;
        let loss = |node: u32| self.group.get(node)?.loss_ppm.map(|p| f64::from(p) / 1e6);
        // Repairers heard lately, with their loss.
        let active: Vec<(u32, f64)> = self
            .roster
            .nodes()
            .filter(|e| r.slot(e.node).is_some())
            .filter(|e| now.saturating_duration_since(e.last_heard) <= COVERED_FOR)
            .filter_map(|e| Some((e.node, loss(e.node)?)))
            .collect();
        if active.is_empty() {
            return None;
        }
        let presumed = active.iter().map(|(_, l)| *l).fold(0.0, f64::max);
        let covered: Vec<(u32, f64)> = self
            .roster
            .nodes()
            .filter(|e| r.slot(e.node).is_none())
            .filter_map(|e| match r.served.verdict(e.node, now) {
                Verdict::By(by) => Some((e.node, active.iter().find(|a| a.0 == by)?.1)),
                Verdict::Presumed => Some((e.node, presumed)),
                Verdict::Uncovered => None,
            })
            .collect();
        Some((active, covered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::ObjectId;

    fn t(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn a_cover_within_the_hold_marks_the_naker_and_one_past_it_does_not() {
        let mut c = CoveredGroup::default();
        let key = (ObjectId::Payload, 3);
        let w = Duration::from_millis(40);
        assert_eq!(c.verdict(10, t(0)), Verdict::Presumed, "nothing heard");
        c.on_nak(t(0), 10, key, None, w);
        c.on_cover(t(40), 7, key, w); // at the window's end: counts
        c.on_nak(t(100), 12, key, None, w);
        c.on_cover(t(141), 7, key, w); // 1 ms past it: does not
        assert_eq!(c.verdict(10, t(350)), Verdict::By(7));
        assert_eq!(c.verdict(12, t(350)), Verdict::Uncovered);
        // A NAK under a live cover marks at once; a repairer never covers itself.
        c.on_nak(t(200), 13, key, Some(7), w);
        c.on_nak(t(200), 7, key, Some(7), w);
        assert_eq!(c.verdict(13, t(350)), Verdict::By(7));
        assert_eq!(c.verdict(7, t(350)), Verdict::Presumed);
        // A NAK nobody covers is found out by the next sweep.
        c.on_nak(t(300), 10, (ObjectId::Payload, 9), None, w);
        assert_eq!(c.verdict(10, t(350)), Verdict::By(7), "still within its hold");
        c.on_nak(t(341), 99, (ObjectId::Payload, 1), None, w);
        assert_eq!(c.verdict(10, t(350)), Verdict::Uncovered);
        // Verdicts last exactly COVERED_FOR.
        assert_eq!(c.verdict(13, t(200) + COVERED_FOR), Verdict::By(7));
        assert_eq!(c.verdict(13, t(201) + COVERED_FOR), Verdict::Presumed);
    }

    #[test]
    fn tables_stay_bounded() {
        let mut c = CoveredGroup::default();
        let w = Duration::from_secs(10);
        for b in 0..(MAX_NAKED_BLOCKS as u32 + 50) {
            for n in 0..(MAX_NAKERS as u32 + 5) {
                c.on_nak(t(0), n, (ObjectId::Payload, b), None, w);
            }
        }
        assert_eq!(c.nakers.len(), MAX_NAKED_BLOCKS);
        assert!(c.nakers.values().all(|v| v.len() == MAX_NAKERS));
        for n in 0..(MAX_VERDICTS as u32 + 10) {
            c.on_nak(t(0), n + 100, (ObjectId::Payload, 0), Some(1), w);
        }
        assert_eq!(c.verdicts.len(), MAX_VERDICTS);
        // Once the old verdicts are stale, a new one makes room.
        c.on_nak(t(1) + COVERED_FOR, 1_000_000, (ObjectId::Payload, 0), Some(1), w);
        assert_eq!(c.verdicts.len(), 1);
    }

    #[test]
    fn covered_receivers_leave_the_sample_when_their_repairer_is_comparable() {
        let mut g = Group::new(None, 100);
        for (node, ppm) in [(1, 50_000), (2, 50_000), (3, 10_000), (7, 0), (8, 80_000)] {
            g.report_loss(node, ppm);
        }
        let sample = g.loss_sample();
        // 1 covered by a clean repairer, 2 by one at exactly twice its loss (out), 3 by one
        // just past twice its loss (kept), 9 unmeasured (out of the group, not the sample).
        let covered = [(1, 0.0), (2, 0.1), (3, 0.020_001), (9, 0.0)];
        let (out, taken) = without_covered(sample.clone(), &g, &covered);
        let expected: Vec<f64> = sample.iter().copied().filter(|p| *p != 0.05).collect();
        assert_eq!(out, expected);
        assert_eq!(taken, 3);
        assert_eq!(without_covered(sample.clone(), &g, &[]), (sample, 0));
    }
}
