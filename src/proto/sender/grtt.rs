//! Group round-trip time estimate (RFC 5401 §3.5 style): the sender probes, receivers echo with
//! how long they held the probe, and the estimate follows the largest sample of each probe
//! interval: up at once, down slowly.

use crate::proto::time::{Duration, Instant};

/// The sender's GRTT estimator.
#[derive(Debug, Clone)]
pub struct Grtt {
    estimate: Duration,
    min: Duration,
    max: Duration,
    /// Largest sample since the last probe.
    peak: Option<Duration>,
}

impl Grtt {
    /// Starts at `initial`, kept within `[min, max]`.
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        Grtt { estimate: initial.clamp(min, max), min, max, peak: None }
    }

    /// Current estimate.
    pub fn get(&self) -> Duration {
        self.estimate
    }

    /// An echo arrived at `now` for a probe sent at `probe_sent`, held `delay` by the receiver.
    /// Returns the sample, if plausible.
    pub fn on_echo(
        &mut self,
        now: Instant,
        probe_sent: Instant,
        delay: Duration,
    ) -> Option<Duration> {
        if probe_sent > now {
            return None;
        }
        let sample = (now - probe_sent).checked_sub(delay)?;
        let sample = sample.clamp(self.min, self.max);
        if sample > self.estimate {
            self.estimate = sample;
        }
        self.peak = Some(self.peak.map_or(sample, |p| p.max(sample)));
        Some(sample)
    }

    /// A new probe interval starts: decrease towards the last interval's peak, by a quarter.
    pub fn on_probe(&mut self) {
        if let Some(peak) = self.peak.take() {
            if peak < self.estimate {
                self.estimate = (self.estimate * 3 + peak) / 4;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn up_fast_down_slow() {
        let mut g = Grtt::new(10 * MS, MS, 1000 * MS);
        let t0 = Instant::ZERO;
        g.on_echo(t0 + 50 * MS, t0, Duration::ZERO);
        assert_eq!(g.get(), 50 * MS);
        g.on_probe();
        g.on_echo(t0 + 12 * MS, t0, 2 * MS);
        assert_eq!(g.get(), 50 * MS, "a lower sample does not lower it within the interval");
        g.on_probe();
        assert_eq!(g.get(), (150 * MS + 10 * MS) / 4);
        // Hold time longer than the round trip: implausible, ignored.
        assert_eq!(g.on_echo(t0 + MS, t0, 2 * MS), None);
        assert_eq!(g.on_echo(t0, t0 + MS, Duration::ZERO), None);
    }
}
