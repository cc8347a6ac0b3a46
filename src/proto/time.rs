//! Virtual time for the sans-IO core: an [`Instant`] is microseconds since an arbitrary origin
//! chosen by the driver (process start for real runs, zero in the simulator).

use std::ops::{Add, AddAssign, Sub};
pub use std::time::Duration;

/// A point in time, in microseconds since the driver's origin. Never read from a clock here:
/// the driver passes it in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);

    /// An instant `us` microseconds after the origin.
    pub const fn from_micros(us: u64) -> Self {
        Instant(us)
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let a = Instant::from_micros(10);
        assert_eq!((a + Duration::from_micros(5)).as_micros(), 15);
        assert_eq!(a - Instant::from_micros(20), Duration::ZERO);
        assert_eq!((Instant::from_micros(u64::MAX) + Duration::from_secs(1)).as_micros(), u64::MAX);
    }
}
