//! Token-bucket pacing: every datagram the sender emits is charged against a budget refilled at
//! the configured rate. The bucket may go negative by one datagram so that the long-run rate is
//! exact whatever the datagram sizes; a burst is capped at `burst` bytes.

use crate::proto::time::{Duration, Instant};

/// A token bucket in bytes.
#[derive(Debug, Clone)]
pub struct Pacer {
    bytes_per_us: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    /// A bucket for `rate_bps` bits per second holding at most `burst` bytes, full at `now`.
    pub fn new(rate_bps: u64, burst: usize, now: Instant) -> Self {
        Pacer {
            bytes_per_us: rate_bps.max(1) as f64 / 8.0 / 1e6,
            burst: burst as f64,
            tokens: burst as f64,
            last: now,
        }
    }

    /// Refill at `rate_bps` from `now` on (what was earned until `now` stays).
    pub fn set_rate(&mut self, now: Instant, rate_bps: u64) {
        self.refill(now);
        self.bytes_per_us = rate_bps.max(1) as f64 / 8.0 / 1e6;
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_micros() as f64;
        self.tokens = (self.tokens + dt * self.bytes_per_us).min(self.burst);
        if now > self.last {
            self.last = now;
        }
    }

    /// Whether a datagram may go out at `now`.
    pub fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 0.0
    }

    /// Charge `bytes` sent at `now`.
    pub fn charge(&mut self, now: Instant, bytes: usize) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }

    /// When the bucket is next non-negative (`last` if it already is).
    pub fn next_ready(&self) -> Instant {
        if self.tokens >= 0.0 {
            return self.last;
        }
        let wait_us = (-self.tokens / self.bytes_per_us).ceil() as u64;
        self.last + Duration::from_micros(wait_us.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_run_rate_is_exact() {
        // 8 Mbit/s = 1 byte/us; 1000-byte datagrams => one per ms after the burst.
        let mut p = Pacer::new(8_000_000, 2000, Instant::ZERO);
        let mut now = Instant::ZERO;
        let mut sent = 0u64;
        while now < Instant::from_micros(1_000_000) {
            if p.ready(now) {
                p.charge(now, 1000);
                sent += 1;
            } else {
                now = p.next_ready();
            }
        }
        // 1 s at 1000 datagrams/s plus the initial burst of 2 (and the one that goes negative).
        assert!((1000..=1003).contains(&sent), "{sent}");
    }

    #[test]
    fn a_new_rate_applies_from_when_it_is_set() {
        // 8 Mbit/s = 1 byte/us, no burst: a 1000-byte debt takes 1000 us to repay...
        let mut p = Pacer::new(8_000_000, 0, Instant::ZERO);
        p.charge(Instant::ZERO, 1000);
        assert_eq!(p.next_ready(), Instant::from_micros(1000));
        // ...half of it is repaid at the old rate, the rest at four times the rate.
        let half = Instant::from_micros(500);
        p.set_rate(half, 32_000_000);
        assert_eq!(p.next_ready(), Instant::from_micros(625));
        assert!(!p.ready(Instant::from_micros(624)));
        assert!(p.ready(Instant::from_micros(625)));
    }
}
