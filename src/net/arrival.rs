//! [`ArrivalClock`]: turns the kernel's receive timestamp of a datagram into the driver's
//! monotonic [`Instant`], so that the core sees when a datagram *arrived*, not when the loop got
//! round to reading it (on a busy host the two differ by the loop's scheduling: milliseconds
//! that automatic rate control would otherwise read as a queue on the path).
//!
//! The kernel stamps with `CLOCK_REALTIME` (`SO_TIMESTAMPNS`); the driver's clock is monotonic.
//! Once per loop turn the driver samples both clocks ([`ArrivalClock::sample`]); a stamp is
//! converted with that offset and placed ([`ArrivalClock::arrival`]):
//!
//! - no earlier than the previous datagram's arrival (arrivals never run backwards), and no
//!   more than [`MAX_STEP_BACK`] before the latest time given to the role otherwise (its timers,
//!   its sends). A datagram that arrived while the loop was busy with the previous turn, or
//!   while its thread was not scheduled, is handed over with its true arrival, which may be a
//!   little *earlier* than the time of the role's last timeout: counted as *early*, with the
//!   total. The core's time arithmetic saturates and the roles keep the latest time they saw,
//!   so such a step back only makes a timer armed from it fire sooner. A stamp further back
//!   (a wall-clock step) is *raised* to that bound;
//! - no later than the loop's clock when the datagram is handed over (a wall-clock step or
//!   an offset sampled a little off): *lowered*.
//!
//! A datagram without a stamp is timed by the loop's clock, as before.
//!
//! Clamping every arrival to the latest time given (so that time never steps back at all) was
//! tried first: on the lab (3 receivers and a sender on 2 cores) a quarter of the datagrams
//! were raised, by 0.6 ms on average, and the rate ticks among them still carried the
//! scheduling delay this is meant to remove.

use crate::proto::time::{Duration, Instant};

/// How far before the latest time given to the role an arrival may be placed.
pub const MAX_STEP_BACK: Duration = Duration::from_millis(100);

/// Converts and places receive stamps (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct ArrivalClock {
    /// Wall clock minus the monotonic clock, microseconds, as last sampled.
    offset_us: Option<i128>,
    /// The latest time given to the role, as a datagram's arrival or otherwise.
    given: Instant,
    /// The previous datagram's arrival.
    last_arrival: Instant,
    counts: ArrivalCounts,
}

/// What [`ArrivalClock`] did to the stamps since [`ArrivalClock::take_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArrivalCounts {
    /// Arrivals placed before the latest time already given to the role.
    pub early: u64,
    /// Microseconds they were before it, in all.
    pub early_us: u64,
    /// Arrivals moved up to the previous arrival or [`MAX_STEP_BACK`] before the latest time
    /// given.
    pub raised: u64,
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
    /// datagram's arrival; returns it, to hand over.
    pub fn given(&mut self, now: Instant) -> Instant {
        self.given = self.given.max(now);
        now
    }

    /// The time to hand a datagram over with: its `stamp` converted to the loop's clock and
    /// placed as the module docs say, where `now` is the loop's clock as it hands the datagram
    /// over (a fresh reading: never before a time given); `now` without a stamp or an offset.
    pub fn arrival(&mut self, stamp: Option<Duration>, now: Instant) -> Instant {
        let converted = match (stamp, self.offset_us) {
            (Some(s), Some(off)) => {
                let us = s.as_micros() as i128 - off;
                Some(Instant::from_micros(us.clamp(0, i128::from(u64::MAX)) as u64))
            }
            _ => None,
        };
        let given = self.given.max(self.last_arrival);
        let lower = self.last_arrival.max(Instant::from_micros(
            given.as_micros().saturating_sub(MAX_STEP_BACK.as_micros() as u64),
        ));
        let upper = now.max(given);
        let at = match converted {
            Some(t) if t < lower => {
                self.counts.raised += 1;
                lower
            }
            Some(t) if t > upper => {
                self.counts.lowered += 1;
                upper
            }
            Some(t) => t,
            None => upper,
        };
        if at < given {
            self.counts.early += 1;
            self.counts.early_us += given.saturating_duration_since(at).as_micros() as u64;
        }
        self.last_arrival = at;
        self.given = given.max(at);
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

    const BACK: u64 = MAX_STEP_BACK.as_micros() as u64;

    #[test]
    fn a_stamp_converts_to_the_loop_clock() {
        let mut c = sampled();
        c.given(at(1_000));
        assert_eq!(c.arrival(unix(1_500), at(4_000)), at(1_500));
        assert_eq!(c.arrival(unix(3_999), at(4_000)), at(3_999));
        assert_eq!(c.take_counts(), ArrivalCounts::default());
    }

    #[test]
    fn an_arrival_during_the_last_turn_keeps_its_time() {
        let mut c = sampled();
        c.given(at(200_000));
        // Arrived 3 ms before the role's last timeout, read 1 ms after it.
        assert_eq!(c.arrival(unix(197_000), at(201_000)), at(197_000));
        assert_eq!(
            c.take_counts(),
            ArrivalCounts { early: 1, early_us: 3_000, raised: 0, lowered: 0 }
        );
    }

    #[test]
    fn clamp_boundaries() {
        let mut c = sampled();
        c.given(at(200_000));
        // Exactly MAX_STEP_BACK before the latest time given is kept; one microsecond more is
        // raised to it.
        assert_eq!(c.arrival(unix(200_000 - BACK), at(200_500)), at(200_000 - BACK));
        let mut d = sampled();
        d.given(at(200_000));
        assert_eq!(d.arrival(unix(200_000 - BACK - 1), at(200_500)), at(200_000 - BACK));
        assert_eq!(d.take_counts().raised, 1);
        // Exactly the previous arrival is kept, one before it is raised to it.
        assert_eq!(c.arrival(unix(200_000 - BACK), at(200_500)), at(200_000 - BACK));
        assert_eq!(c.arrival(unix(200_000 - BACK - 1), at(200_500)), at(200_000 - BACK));
        // Exactly now is kept, one after it is lowered to it.
        assert_eq!(c.arrival(unix(201_000), at(201_000)), at(201_000));
        assert_eq!(c.arrival(unix(202_001), at(202_000)), at(202_000));
        let n = c.take_counts();
        assert_eq!((n.raised, n.lowered, n.early), (1, 1, 3), "{n:?}");
        assert_eq!(c.take_counts(), ArrivalCounts::default(), "taken");
    }

    #[test]
    fn arrivals_never_run_backwards_nor_past_now() {
        let mut c = sampled();
        let mut last = Instant::ZERO;
        let mut given = Instant::ZERO;
        // Stamps out of order, some before a time given in between, some in the future.
        let stamps = [500u64, 300, 900, 2_000, 1_200, 50, 7_000, 2_100];
        for (i, s) in stamps.iter().enumerate() {
            let now = at(1_000 + 200 * i as u64);
            if i == 3 {
                c.given(now);
                given = now;
            }
            let t = c.arrival(unix(*s), now);
            assert!(t >= last, "{t:?} < {last:?}");
            assert!(t <= now, "{t:?} after now {now:?}");
            assert!(t + MAX_STEP_BACK >= given, "{t:?} too far before {given:?}");
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
        assert_eq!(c.arrival(None, at(5_000)), at(5_000));
        assert_eq!(c.take_counts(), ArrivalCounts::default());
    }

    #[test]
    fn a_stamp_before_the_epoch_of_the_loop_clock_is_raised() {
        let mut c = ArrivalClock::new();
        c.sample(at(10_000_000), Duration::from_micros(OFF));
        c.given(at(10_000_000));
        // Stamped 20 s before the offset's sample: before the loop clock's zero.
        let stamp = Some(Duration::from_micros(OFF - 20_000_000));
        assert_eq!(c.arrival(stamp, at(10_000_100)), at(10_000_000 - BACK));
        let n = c.take_counts();
        assert_eq!((n.raised, n.early, n.early_us), (1, 1, BACK));
    }
}
