//! Token-bucket pacing: every datagram the sender emits is charged against a budget refilled at
//! the configured rate. The bucket may go negative by one datagram so that the long-run rate is
//! exact whatever the datagram sizes; a burst is capped at `burst` bytes.
//!
//! Within that rate, [`DataShare`] keeps a minimum share for new data: queued repairs go
//! first, but only while they have used less than `1 - min_data_share` of the symbols sent
//! while data was waiting, so that no amount of NAKs (forged or not) can starve the pass.

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

/// Repair symbols that may go back to back after a stretch of data only (the credit a long
/// run of data earns is capped at this many repairs).
const REPAIR_CREDIT: f64 = 64.0;

/// Who goes first when both a queued repair and new data are ready: repairs, unless they have
/// used up their share (see the module docs).
///
/// A balance rises by `min_data_share` for each repair sent ahead of waiting data and falls
/// by `1 - min_data_share` for each data symbol; repairs go first while it is at most zero.
/// Over any stretch, repairs ≤ `(1 - s) / s` × data + a bounded credit, i.e. data keeps at
/// least the share `s` of the symbols.
#[derive(Debug, Clone)]
pub struct DataShare {
    share: f64,
    balance: f64,
}

impl DataShare {
    /// At least `min_data_share` (within `[0, 1)`) of the symbols for new data.
    pub fn new(min_data_share: f64) -> Self {
        DataShare { share: min_data_share.clamp(0.0, 0.99), balance: 0.0 }
    }

    /// Whether a queued repair goes ahead of new data now.
    pub fn repair_first(&self) -> bool {
        self.balance <= 0.0
    }

    /// A repair went out ahead of data that was ready.
    pub fn on_repair(&mut self) {
        self.balance = (self.balance + self.share).min(1.0);
    }

    /// A data symbol went out.
    pub fn on_data(&mut self) {
        let floor = -REPAIR_CREDIT * self.share;
        self.balance = (self.balance - (1.0 - self.share)).max(floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keeps_its_share_however_many_repairs_wait() {
        // Repairs always waiting: of 1000 symbols, data gets a quarter (within one symbol).
        let mut d = DataShare::new(0.25);
        let (mut repairs, mut data) = (0, 0);
        for _ in 0..1000 {
            if d.repair_first() {
                d.on_repair();
                repairs += 1;
            } else {
                d.on_data();
                data += 1;
            }
        }
        assert!((249..=251).contains(&data), "{data} data, {repairs} repairs");
        // After a long stretch of data only, at most REPAIR_CREDIT repairs go back to back.
        for _ in 0..10_000 {
            d.on_data();
        }
        let mut burst = 0;
        while d.repair_first() {
            d.on_repair();
            burst += 1;
        }
        assert_eq!(burst, REPAIR_CREDIT as usize + 1);
        // Share 0: repairs always first.
        let mut none = DataShare::new(0.0);
        for _ in 0..100 {
            assert!(none.repair_first());
            none.on_repair();
        }
    }

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
