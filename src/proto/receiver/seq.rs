//! The sender's data sequence numbers as a receiver tracks them: the highest seen (quoted in
//! NAKs, so the sender knows which repairs are still on their way) and the gaps (the first-pass
//! loss estimate). A jump larger than the sender could have sent since the last number (at its
//! announced rate, doubled, plus [`SEQ_SLACK`]) is not believed: one forged datagram can
//! neither poison the loss estimate nor move the NAK position. Two numbers in a row that agree
//! with each other and not with the old position move it there without counting loss, so a
//! forged first number cannot hold the position either.

use crate::proto::time::{Duration, Instant};
use crate::proto::wire::{seq_after, DATA_FIELDS_LEN, HEADER_LEN, TRAILER_LEN};

/// Datagrams a sender may be ahead of its rate at any moment (bursts, reordering).
pub const SEQ_SLACK: u32 = 1024;

/// What one sequence number meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seq {
    /// The first one: nothing to compare with.
    First,
    /// `gap` numbers past the previous one (1: nothing lost in between).
    Ahead(u32),
    /// At or behind the position, plausibly (reordered or duplicated).
    Behind,
    /// Too far from the position to be believed: ignored.
    Implausible,
    /// Agrees with the implausible one before it: the position moved, no loss counted.
    Moved,
}

/// Where the sender's sequence numbers are.
#[derive(Debug, Clone, Default)]
pub(super) struct SeqTrack {
    /// The highest plausible number and when it came.
    pos: Option<(u32, Instant)>,
    /// The last implausible number and when it came.
    stray: Option<(u32, Instant)>,
}

/// Most datagrams of `symbol_size`-byte symbols a sender at `rate_bps` can send in `elapsed`,
/// doubled, plus [`SEQ_SLACK`].
pub(super) fn max_gap(rate_bps: u64, symbol_size: u16, elapsed: Duration) -> u32 {
    let bits = (u64::from(symbol_size) + (HEADER_LEN + TRAILER_LEN + DATA_FIELDS_LEN) as u64) * 8;
    let micros = elapsed.as_micros();
    // In 64 bits when the product fits (it does for any real rate and a gap of seconds): the
    // same quotient, without the 128-bit division every data datagram would pay.
    let sent = match u64::try_from(micros).ok().and_then(|m| rate_bps.checked_mul(m)) {
        Some(product) => u128::from(product / (bits * 1_000_000)),
        None => u128::from(rate_bps) * micros / (u128::from(bits) * 1_000_000),
    };
    (sent.saturating_mul(2).min(u128::from(u32::MAX / 4)) as u32).saturating_add(SEQ_SLACK)
}

impl SeqTrack {
    /// The highest number believed.
    pub(super) fn highest(&self) -> Option<u32> {
        self.pos.map(|(s, _)| s)
    }

    /// Judge `seq`, seen at `now`; `bound(elapsed)` is the largest believable distance from a
    /// number seen `elapsed` ago, and never less than `floor`.
    pub(super) fn observe(
        &mut self,
        seq: u32,
        now: Instant,
        floor: u32,
        bound: impl Fn(Duration) -> u32,
    ) -> Seq {
        let Some((pos, at)) = self.pos else {
            self.pos = Some((seq, now));
            return Seq::First;
        };
        // Within `floor` either way (nearly every datagram: the next one, or one of the few
        // before it) the verdict is the same for any bound: it is not worked out.
        let near = seq.wrapping_sub(pos) <= floor || pos.wrapping_sub(seq) <= floor;
        let limit = if near { floor } else { bound(now.saturating_duration_since(at)) };
        if seq_after(seq, pos) && seq.wrapping_sub(pos) <= limit {
            self.pos = Some((seq, now));
            self.stray = None;
            return Seq::Ahead(seq.wrapping_sub(pos));
        }
        if !seq_after(seq, pos) && pos.wrapping_sub(seq) <= limit {
            return Seq::Behind;
        }
        if let Some((stray, sat)) = self.stray {
            let d = seq.wrapping_sub(stray);
            if seq_after(seq, stray) && d <= bound(now.saturating_duration_since(sat)) {
                self.pos = Some((seq, now));
                self.stray = None;
                return Seq::Moved;
            }
        }
        self.stray = Some((seq, now));
        Seq::Implausible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::ZERO;

    fn fixed(_: Duration) -> u32 {
        100
    }

    impl SeqTrack {
        /// [`SeqTrack::observe`] with no floor: `bound` judges every number.
        fn observe_all(&mut self, seq: u32, now: Instant, bound: impl Fn(Duration) -> u32) -> Seq {
            self.observe(seq, now, 0, bound)
        }
    }

    #[test]
    fn gaps_up_to_the_bound_count_one_past_it_does_not() {
        let mut t = SeqTrack::default();
        assert_eq!(t.observe_all(10, T0, fixed), Seq::First);
        assert_eq!(t.observe_all(110, T0, fixed), Seq::Ahead(100), "at the bound");
        assert_eq!(t.observe_all(211, T0, fixed), Seq::Implausible, "one past it");
        assert_eq!(t.highest(), Some(110));
        assert_eq!(t.observe_all(111, T0, fixed), Seq::Ahead(1), "the real stream goes on");
        assert_eq!(t.observe_all(50, T0, fixed), Seq::Behind);
        assert_eq!(t.observe_all(111u32.wrapping_sub(101), T0, fixed), Seq::Implausible);
    }

    #[test]
    fn a_forged_first_number_is_left_behind_by_two_real_ones() {
        let mut t = SeqTrack::default();
        assert_eq!(t.observe_all(3_000_000_000, T0, fixed), Seq::First);
        assert_eq!(t.observe_all(7, T0, fixed), Seq::Implausible);
        assert_eq!(t.observe_all(8, T0, fixed), Seq::Moved);
        assert_eq!(t.highest(), Some(8));
        assert_eq!(t.observe_all(9, T0, fixed), Seq::Ahead(1));
        // Two implausible numbers that do not agree with each other move nothing.
        assert_eq!(t.observe_all(1 << 20, T0, fixed), Seq::Implausible);
        assert_eq!(t.observe_all(1 << 30, T0, fixed), Seq::Implausible);
        assert_eq!(t.highest(), Some(9));
    }

    #[test]
    fn a_floor_changes_no_verdict_of_a_bound_at_or_above_it() {
        // Numbers on both sides of the floor and of the bound, ahead and behind, and implausible
        // ones: the tracker that skips the bound within the floor judges each the same.
        let (floor, bound) = (SEQ_SLACK, |e: Duration| SEQ_SLACK + e.as_micros() as u32 / 10);
        let (mut with, mut without) = (SeqTrack::default(), SeqTrack::default());
        let mut seq = 5_000u32;
        for i in 0..4_000u32 {
            let now = T0 + Duration::from_micros(u64::from(i));
            let step = match i % 7 {
                0 => floor,
                1 => floor + 1,
                2 => 1,
                3 => 0u32.wrapping_sub(floor),
                4 => 0u32.wrapping_sub(floor + 1),
                5 => 3 * floor + i,
                _ => 1 << 31,
            };
            seq = seq.wrapping_add(step);
            let verdict = with.observe(seq, now, floor, bound);
            assert_eq!(verdict, without.observe_all(seq, now, bound), "step {i}");
            assert_eq!(with.highest(), without.highest());
        }
    }

    #[test]
    fn the_bound_follows_rate_and_time() {
        // 1400-byte symbols, 1432-byte datagrams: 1 Gbit/s for 1 s is 87 290 datagrams.
        let one_s = max_gap(1_000_000_000, 1400, Duration::from_secs(1));
        assert_eq!(one_s, 2 * 87_290 + SEQ_SLACK);
        assert_eq!(max_gap(1_000_000_000, 1400, Duration::ZERO), SEQ_SLACK);
        assert_eq!(max_gap(u64::MAX, 16, Duration::from_secs(1 << 30)), u32::MAX / 4 + SEQ_SLACK);
    }

    #[test]
    fn the_64_bit_bound_is_the_128_bit_one_on_both_sides_of_the_overflow() {
        let reference = |rate: u64, t: u16, us: u64| {
            let bits = (u64::from(t) + (HEADER_LEN + TRAILER_LEN + DATA_FIELDS_LEN) as u64) * 8;
            let sent = u128::from(rate) * u128::from(us) / (u128::from(bits) * 1_000_000);
            (sent.saturating_mul(2).min(u128::from(u32::MAX / 4)) as u32).saturating_add(SEQ_SLACK)
        };
        let rate = 10_000_000_000u64;
        let fits = u64::MAX / rate; // the longest gap whose product fits in 64 bits
        for us in [0, 1, 999, 1_000_000, fits - 1, fits, fits + 1, u64::MAX / 2, u64::MAX] {
            for t in [16u16, 1400, 9000] {
                let d = Duration::from_micros(us);
                assert_eq!(max_gap(rate, t, d), reference(rate, t, us), "{us} us, T {t}");
            }
        }
    }
}
