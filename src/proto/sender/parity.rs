//! Automatic proactive repair ("auto parity", as NORM calls it): how many repair symbols to send
//! with each block, straight after its source symbols, so that at the loss rates receivers
//! report most blocks decode without any NAK.
//!
//! A receiver that loses each datagram with probability `p` and is sent `K + P` symbols of a
//! block cannot decode it when it loses more than `P` of them. Over a group of `N` receivers the
//! expected number that must NAK a block is `Σ_r Pr[Binomial(K + P, p_r) > P]`. The sender picks
//! the smallest `P` that keeps this at or under a target (0.3 by default: about one block in four
//! needs a NAK round, which costs one or two NAK datagrams thanks to suppression). `P` therefore
//! tracks the group's *largest* loss per block, which is what an omniscient sender would send,
//! instead of the average loss, which would leave most blocks to NAKs.
//!
//! The loss rates come from the receivers' echoes and NAKs. Only those up to the 90th percentile
//! are used, and the sample is scaled up to the group size: the worst tenth of the group is left
//! to NAKs, so one receiver on a bad link does not make everyone pay for its losses.

/// Loss rates are clamped to this (beyond it, proactive repair is meaningless).
const MAX_LOSS: f64 = 0.5;

/// Probability that a receiver losing each symbol with probability `p` loses more than `parity`
/// of the `k + parity` symbols it is sent (binomial, through its Poisson or normal
/// approximation).
pub fn short_probability(k: u16, parity: u32, p: f64) -> f64 {
    let p = p.clamp(0.0, MAX_LOSS);
    if p <= 0.0 {
        return 0.0;
    }
    let n = f64::from(k) + f64::from(parity);
    let lambda = n * p;
    let x = f64::from(parity);
    if lambda > 200.0 {
        // Normal approximation with continuity correction.
        let sd = (n * p * (1.0 - p)).sqrt();
        return 0.5 * erfc((x + 0.5 - lambda) / (sd * std::f64::consts::SQRT_2));
    }
    // Poisson: 1 - sum_{i <= x} e^-λ λ^i / i!
    let mut term = (-lambda).exp();
    let mut cdf = term;
    for i in 1..=parity {
        term *= lambda / f64::from(i);
        cdf += term;
        if term < 1e-18 && f64::from(i) > lambda {
            break;
        }
    }
    (1.0 - cdf).max(0.0)
}

/// Complementary error function (Abramowitz and Stegun 7.1.26; absolute error below 1.5e-7).
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    poly * (-x * x).exp()
}

/// The proactive repair symbols for a block of `k` source symbols.
///
/// `losses` are the reported loss rates of a sample of the group (already without its worst
/// tenth); `group` is the group size estimate the sample stands for; `target` is the expected
/// number of receivers that may still be short after the proactive symbols; the answer is at
/// most `max`.
pub fn proactive_symbols(k: u16, losses: &[f64], group: u32, target: f64, max: u32) -> u32 {
    if losses.is_empty() || k == 0 || losses.iter().all(|p| *p <= 0.0) {
        return 0;
    }
    let scale = f64::from(group.max(1)).max(losses.len() as f64) / losses.len() as f64;
    let short = |parity: u32| -> f64 {
        scale * losses.iter().map(|p| short_probability(k, parity, *p)).sum::<f64>()
    };
    if short(max) > target {
        return max;
    }
    // `short` decreases with the parity: binary search for the smallest that meets the target.
    let (mut lo, mut hi) = (0u32, max);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if short(mid) <= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: exact binomial tail.
    fn binomial_tail(n: u32, p: f64, x: u32) -> f64 {
        let mut cdf = 0.0;
        let mut log_c = 0.0f64; // ln C(n, i)
        for i in 0..=x.min(n) {
            if i > 0 {
                log_c += (f64::from(n - i + 1)).ln() - f64::from(i).ln();
            }
            cdf += (log_c + f64::from(i) * p.ln() + f64::from(n - i) * (1.0 - p).ln()).exp();
        }
        1.0 - cdf
    }

    #[test]
    fn tail_matches_the_binomial() {
        for (k, parity, p) in [(749u16, 17u32, 0.01), (749, 10, 0.01), (64, 5, 0.05), (749, 60, 0.05)]
        {
            let got = short_probability(k, parity, p);
            let want = binomial_tail(u32::from(k) + parity, p, parity);
            assert!((got - want).abs() < 0.01 + want * 0.15, "k={k} P={parity} p={p}: {got} vs {want}");
        }
        // Normal branch (λ > 200).
        let got = short_probability(8192, 1000, 0.1);
        let want = binomial_tail(9192, 0.1, 1000);
        assert!((got - want).abs() < 0.01, "{got} vs {want}");
        assert_eq!(short_probability(749, 0, 0.0), 0.0);
    }

    #[test]
    fn parity_follows_loss_and_group_size() {
        let one = proactive_symbols(749, &[0.01], 1, 0.3, 400);
        let thousand = proactive_symbols(749, &vec![0.01; 50], 1000, 0.3, 400);
        let lossier = proactive_symbols(749, &vec![0.05; 50], 1000, 0.3, 400);
        // Numbers from the binomial: about 9 for one receiver, 19 for the largest of 1000.
        assert!((8..=10).contains(&one), "{one}");
        assert!((18..=20).contains(&thousand), "{thousand}");
        assert!(lossier > 2 * thousand, "{lossier}");
        assert_eq!(proactive_symbols(749, &[], 1000, 0.3, 400), 0, "nothing known");
        assert_eq!(proactive_symbols(749, &[0.0; 10], 1000, 0.3, 400), 0, "no loss");
        assert_eq!(proactive_symbols(749, &[0.5; 10], 1000, 0.3, 40), 40, "capped");
    }

    #[test]
    fn boundary_pair_at_the_target() {
        // The answer meets the target and one symbol fewer does not.
        let losses = vec![0.01; 20];
        let p = proactive_symbols(749, &losses, 1000, 0.3, 400);
        let short = |parity| 50.0 * short_probability(749, parity, 0.01) * 20.0;
        assert!(short(p) <= 0.3);
        assert!(short(p - 1) > 0.3);
    }
}
