//! Randomized NAK backoff (RFC 5401 §3.3 / NORM's `ExponentialRand`): a truncated exponential
//! over `[0, max]` skewed towards `max`, steeper for larger groups, so that a few receivers NAK
//! early and the rest hear them and stay quiet.

use crate::proto::time::Duration;
use rand::Rng;

/// A backoff in `[0, max]` for a group of about `group_size` receivers.
pub fn backoff<R: Rng>(rng: &mut R, max: Duration, group_size: f64) -> Duration {
    let max_s = max.as_secs_f64();
    if max_s <= 0.0 {
        return Duration::ZERO;
    }
    let lambda = group_size.max(1.0).ln() + 1.0;
    let em1 = lambda.exp() - 1.0;
    let x = rng.gen::<f64>() * (lambda / max_s) + lambda / (max_s * em1);
    let t = (max_s / lambda) * (x * em1 * (max_s / lambda)).ln();
    Duration::from_secs_f64(t.clamp(0.0, max_s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn bounded_and_skewed_to_max() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let max = Duration::from_millis(100);
        let samples: Vec<Duration> = (0..10_000).map(|_| backoff(&mut rng, max, 1000.0)).collect();
        assert!(samples.iter().all(|d| *d <= max));
        let early = samples.iter().filter(|d| **d < max / 2).count();
        // With lambda = ln(1000)+1 only about e^(lambda/2)/e^lambda ~ 2 % fall in the first half.
        assert!(early < 400, "{early}");
        assert!(samples.iter().any(|d| *d < max / 4), "some receivers NAK early");
        assert_eq!(backoff(&mut rng, Duration::ZERO, 10.0), Duration::ZERO);
    }
}
