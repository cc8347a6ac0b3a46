//! Group round-trip time estimate (RFC 5401 §3.5 style): the sender probes, receivers echo with
//! how long they held the probe, and the estimate follows the largest sample of each probe
//! interval: up at once, down slowly.
//!
//! Echoes are feedback anyone can forge, so a sample counts only if
//! - it echoes exactly the send time of one of the last [`PROBES_KEPT`] probes sent,
//! - its hold time is shorter than the time since that probe went out,
//! - and it is clamped to `[min, max]` (`max`: 5 s by default, what receivers believe too).
//!
//! And however many echoes arrive, the estimate rises at most [`MAX_RISE`] times its value when
//! the last probe went out, per probe interval: a burst of forged echoes cannot take it from
//! milliseconds to seconds at once (a real rise is followed within a few probes).

use crate::proto::time::{Duration, Instant};
use std::collections::VecDeque;

/// Probe send times remembered (an echo of an older probe is ignored).
pub const PROBES_KEPT: usize = 8;

/// The estimate rises at most this many times per probe interval.
pub const MAX_RISE: u32 = 4;

/// The sender's GRTT estimator.
#[derive(Debug, Clone)]
pub struct Grtt {
    estimate: Duration,
    min: Duration,
    max: Duration,
    /// Largest sample since the last probe.
    peak: Option<Duration>,
    /// The estimate when the last probe went out (bounds the rise until the next).
    base: Duration,
    /// Send times of the last probes, microseconds, oldest first.
    probes: VecDeque<u64>,
}

impl Grtt {
    /// Starts at `initial`, kept within `[min, max]`.
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        let estimate = initial.clamp(min, max);
        Grtt { estimate, min, max, peak: None, base: estimate, probes: VecDeque::new() }
    }

    /// Current estimate.
    pub fn get(&self) -> Duration {
        self.estimate
    }

    /// An echo arrived at `now` of the probe sent at `probe_time_us` (the probe's own field),
    /// held `delay` by the receiver. Returns the sample, if it counts (see the module docs).
    pub fn on_echo(
        &mut self,
        now: Instant,
        probe_time_us: u64,
        delay: Duration,
    ) -> Option<Duration> {
        if !self.probes.contains(&probe_time_us) {
            return None;
        }
        let probe_sent = Instant::from_micros(probe_time_us);
        if probe_sent > now {
            return None;
        }
        let sample = (now - probe_sent).checked_sub(delay)?;
        let sample = sample.clamp(self.min, self.max).min(self.base * MAX_RISE);
        if sample > self.estimate {
            self.estimate = sample;
        }
        self.peak = Some(self.peak.map_or(sample, |p| p.max(sample)));
        Some(sample)
    }

    /// A probe goes out at `now`, and a new probe interval starts: decrease towards the last
    /// interval's peak, by a quarter.
    pub fn on_probe(&mut self, now: Instant) {
        if let Some(peak) = self.peak.take() {
            if peak < self.estimate {
                self.estimate = (self.estimate * 3 + peak) / 4;
            }
        }
        self.base = self.estimate;
        if self.probes.len() == PROBES_KEPT {
            self.probes.pop_front();
        }
        self.probes.push_back(now.as_micros());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn us(t: Instant) -> u64 {
        t.as_micros()
    }

    #[test]
    fn up_fast_down_slow() {
        let mut g = Grtt::new(20 * MS, MS, 1000 * MS);
        let t0 = Instant::ZERO;
        g.on_probe(t0);
        g.on_echo(t0 + 50 * MS, us(t0), Duration::ZERO);
        assert_eq!(g.get(), 50 * MS);
        let t1 = t0 + 100 * MS;
        g.on_probe(t1);
        g.on_echo(t1 + 12 * MS, us(t1), 2 * MS);
        assert_eq!(g.get(), 50 * MS, "a lower sample does not lower it within the interval");
        g.on_probe(t1 + 200 * MS);
        assert_eq!(g.get(), (150 * MS + 10 * MS) / 4);
        // Hold time longer than the round trip: implausible, ignored.
        assert_eq!(g.on_echo(t1 + MS, us(t1), 2 * MS), None);
    }

    #[test]
    fn only_echoes_of_probes_sent_count() {
        let mut g = Grtt::new(10 * MS, MS, 5000 * MS);
        let t0 = Instant::from_micros(1_000_000);
        g.on_probe(t0);
        let now = t0 + 4 * MS;
        // A made-up probe time (an hour back, or one microsecond off): ignored.
        assert_eq!(g.on_echo(now, us(t0) - 1, Duration::ZERO), None);
        assert_eq!(g.on_echo(now, 0, Duration::ZERO), None);
        assert_eq!(g.on_echo(now, us(t0), Duration::ZERO), Some(4 * MS));
        // Only the last PROBES_KEPT probes are remembered.
        for i in 1..=PROBES_KEPT as u32 {
            g.on_probe(t0 + 10 * MS * i);
        }
        assert_eq!(g.on_echo(now + 100 * MS, us(t0), Duration::ZERO), None, "forgotten");
        let oldest = t0 + 10 * MS;
        assert!(g.on_echo(now + 100 * MS, us(oldest), Duration::ZERO).is_some());
    }

    #[test]
    fn one_interval_of_echoes_rises_at_most_max_rise_times() {
        // Boundary pair: a sample of exactly MAX_RISE times the estimate is taken whole, a
        // larger one is cut there, and a thousand of them in one interval change nothing more.
        let mut g = Grtt::new(10 * MS, MS, 5000 * MS);
        let t0 = Instant::ZERO;
        g.on_probe(t0);
        let at = |rtt: Duration| t0 + rtt;
        assert_eq!(g.on_echo(at(40 * MS), us(t0), Duration::ZERO), Some(40 * MS));
        assert_eq!(g.get(), 40 * MS);
        for _ in 0..1000 {
            g.on_echo(at(4000 * MS), us(t0), Duration::ZERO);
        }
        assert_eq!(g.get(), 40 * MS, "capped at 4 x the estimate when the probe went out");
        // The next interval may rise four times again, and never past max (5 s).
        let t1 = t0 + 20 * MS;
        g.on_probe(t1);
        g.on_echo(t1 + 4000 * MS, us(t1), Duration::ZERO);
        assert_eq!(g.get(), 160 * MS);
        let mut g = Grtt::new(2000 * MS, MS, 5000 * MS);
        g.on_probe(t0);
        assert_eq!(g.on_echo(at(60_000 * MS), us(t0), Duration::ZERO), Some(5000 * MS));
    }
}
