//! [`ArrivalClock`]: turns the kernel's receive timestamp of a datagram into the driver's
//! monotonic [`Instant`], so that the core sees when a datagram *arrived*, not when the loop got
//! round to reading it (on a busy host the two differ by the loop's scheduling: milliseconds
//! that automatic rate control would otherwise read as a queue on the path).
//!
//! The kernel stamps with `CLOCK_REALTIME` (`SO_TIMESTAMPNS`); the driver's clock is monotonic.
//! Once per loop turn the driver samples both clocks ([`ArrivalClock::sample`]); a stamp is
//! converted with that offset. The result is clamped ([`ArrivalClock::arrival`]):
//!
//! - never earlier than the latest time already given to the role (a datagram that arrived
//!   while the loop was busy with the previous turn's timers and sends): time never runs
//!   backwards for the sans-IO core. Counted as *raised*, with the total moved;
//! - never later than the loop's clock when the datagram is handed over (a wall-clock step or
//!   an offset sampled a little off). Counted as *lowered*.
//!
//! A datagram without a stamp is timed by the loop's clock, as before.

use crate::proto::time::{Duration, Instant};

/// Converts and clamps receive stamps (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct ArrivalClock {
    /// Wall clock minus the monotonic clock, microseconds, as last sampled.
    offset_us: Option<i128>,
    /// The latest time given to the role: no arrival is placed before it.
    floor: Instant,
    counts: ArrivalCounts,
}

/// What [`ArrivalClock`] did to the stamps since [`ArrivalClock::take_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArrivalCounts {
    /// Arrivals moved up to the time already given to the role.
    pub raised: u64,
    /// Microseconds they were moved in all.
    pub raised_us: u64,
    /// Arrivals moved down to the loop's clock.
    pub lowered: u64,
}

impl ArrivalClock {
    /// A clock that has not sampled the offset yet (stamps are ignored until it has).
    pub fn new() -> Self {
        Self::default()
    }

    /// The monotonic clock read `mono`, the wall clock read `unix` (since the Unix epoch) at
    /// the same moment.
    pub fn sample(&mut self, mono: Instant, unix: Duration) {
        self.offset_us = Some(unix.as_micros() as i128 - i128::from(mono.as_micros()));
    }

    /// A time `now` (a fresh reading of the loop's clock) given to the role other than as a
    /// datagram's arrival: later arrivals are not placed before it.
    pub fn given(&mut self, now: Instant) {
        self.floor = self.floor.max(now);
    }

    /// The time to hand a datagram over with: its `stamp` converted to the loop's clock and
    /// clamped into `[latest time given, now]`, where `now` is the loop's clock as it hands the
    /// datagram over; `now` itself (clamped likewise) without a stamp or an offset.
    pub fn arrival(&mut self, stamp: Option<Duration>, now: Instant) -> Instant {
        let converted = match (stamp, self.offset_us) {
            (Some(s), Some(off)) => {
                let us = s.as_micros() as i128 - off;
                Some(Instant::from_micros(us.clamp(0, i128::from(u64::MAX)) as u64))
            }
            _ => None,
        };
        let upper = now.max(self.floor);
        let at = match converted {
            Some(t) if t < self.floor => {
                self.counts.raised += 1;
                self.counts.raised_us += self.floor.saturating_duration_since(t).as_micros() as u64;
                self.floor
            }
            Some(t) if t > upper => {
                self.counts.lowered += 1;
                upper
            }
            Some(t) => t,
            None => upper,
        };
        self.floor = at;
        at
    }

    /// The counts since the last call.
    pub fn take_counts(&mut self) -> ArrivalCounts {
        std::mem::take(&mut self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    /// Wall clock = monotonic + 1_000_000_000 s (in µs).
    const OFF: u64 = 1_000_000_000_000_000;

    fn unix(us: u64) -> Option<Duration> {
        Some(Duration::from_micros(us + OFF))
    }

    fn sampled() -> ArrivalClock {
        let mut c = ArrivalClock::new();
        c.sample(at(0), Duration::from_micros(OFF));
        c
    }

    #[test]
    fn a_stamp_converts_to_the_loop_clock() {
        let mut c = sampled();
        c.given(at(1_000));
        assert_eq!(c.arrival(unix(1_500), at(4_000)), at(1_500));
        assert_eq!(c.arrival(unix(3_999), at(4_000)), at(3_999));
        assert_eq!(c.take_counts(), ArrivalCounts::default());
    }

    #[test]
    fn clamp_boundaries() {
        let mut c = sampled();
        c.given(at(1_000));
        // Exactly the floor and exactly now are kept as they are.
        assert_eq!(c.arrival(unix(1_000), at(2_000)), at(1_000));
        assert_eq!(c.arrival(unix(2_000), at(2_000)), at(2_000));
        assert_eq!(c.take_counts(), ArrivalCounts::default());
        // One microsecond before the floor (now 2_000, after the last arrival): raised.
        assert_eq!(c.arrival(unix(1_999), at(2_500)), at(2_000));
        // One after now: lowered.
        assert_eq!(c.arrival(unix(2_501), at(2_500)), at(2_500));
        assert_eq!(c.take_counts(), ArrivalCounts { raised: 1, raised_us: 1, lowered: 1 });
        assert_eq!(c.take_counts(), ArrivalCounts::default(), "taken");
    }

    #[test]
    fn time_never_runs_backwards() {
        let mut c = sampled();
        let mut last = Instant::ZERO;
        // Stamps out of order, some before a time given in between, some in the future.
        let stamps = [500u64, 300, 900, 2_000, 1_200, 50, 7_000, 2_100];
        for (i, s) in stamps.iter().enumerate() {
            let now = at(1_000 + 200 * i as u64);
            if i == 3 {
                c.given(now);
            }
            let t = c.arrival(unix(*s), now);
            assert!(t >= last, "{t:?} < {last:?}");
            assert!(t <= now.max(last), "{t:?} after now {now:?}");
            last = t;
        }
        let n = c.take_counts();
        assert!(n.raised >= 3 && n.lowered >= 1, "{n:?}");
    }

    #[test]
    fn no_stamp_or_no_offset_is_now() {
        let mut c = ArrivalClock::new();
        assert_eq!(c.arrival(unix(10), at(3_000)), at(3_000), "no offset sampled yet");
        let mut c = sampled();
        assert_eq!(c.arrival(None, at(3_000)), at(3_000));
        c.given(at(5_000));
        assert_eq!(c.arrival(None, at(4_000)), at(5_000), "never before a time given");
        assert_eq!(c.take_counts(), ArrivalCounts::default());
    }

    #[test]
    fn a_stamp_before_the_epoch_of_the_loop_clock_is_raised() {
        let mut c = ArrivalClock::new();
        c.sample(at(10_000_000), Duration::from_micros(OFF));
        c.given(at(10_000_000));
        // Stamped 20 s before the offset's sample: before the loop clock's zero.
        let stamp = Some(Duration::from_micros(OFF - 20_000_000));
        assert_eq!(c.arrival(stamp, at(10_000_100)), at(10_000_000));
        assert_eq!(c.take_counts().raised_us, 10_000_000);
    }
}
