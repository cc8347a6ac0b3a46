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
//!
//! That model assumes receivers lose independently. When they do not (a loss upstream of the
//! whole group, bursts), the largest loss per block differs from the model's, and
//! [`ParityBias`] corrects it from what happens: each block whose NAK window closed without a
//! NAK lowers the parity, each block that was NAKed raises it (NORM sets its auto parity from the
//! NAKs it sees in the same spirit). It steps down one symbol after a quiet block and up three
//! after a NAKed one, so it settles where about a quarter of the blocks need a NAK round, as the
//! model intends, and it only ever lowers the model's figure: under independent loss the model
//! is right and the correction stays near zero. (Doubling the steps converges faster but
//! overshoots: a parity far too low for a moment makes hundreds of receivers NAK the same block
//! with different needs. Letting it raise the parity, for bursty loss, made the independent
//! case worse by its noise.)
//!
//! The end game is planned apart ([`FINAL_WINDOW_SHARE`]): the blocks that no full window
//! follows get the parity for a far smaller target, without the bias, and do not teach it. Their
//! NAK rounds cannot overlap with later blocks, so each one is added to the push's completion.

use crate::proto::time::Instant;
use std::collections::{HashSet, VecDeque};

/// The share of [`SenderConfig::parity_target`](super::SenderConfig::parity_target) that the
/// blocks of the payload's end game (its last window, and the one before when the last is
/// short) are planned for. A block short at some receiver in mid-push is repaired while later
/// blocks go out; one of the end game costs that receiver, and so the push's completion, a NAK
/// round after the pass (two when a repair is lost, likely at 10,000 receivers). At the default
/// target (0.3) a last window of 8 blocks expects 0.07 receivers short, not 2.4, for 25 to 60
/// more symbols a push at 1 % loss (1 to 10,000 simulated receivers, 64 MiB: about 0.1 % of its
/// datagrams). Not while active local repairers cover part of the group:
/// their neighbours' shortfalls are theirs to repair, in the end game too.
pub const FINAL_WINDOW_SHARE: f64 = 0.03;

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
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
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

/// Learned correction to the modelled parity, in symbols (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct ParityBias {
    bias: f64,
    /// Last step (signed).
    step: f64,
    /// Blocks sent whose NAK window is still open, with the time it closes.
    open: VecDeque<(u32, Instant)>,
    nacked: HashSet<u32>,
}

impl ParityBias {
    const UP: f64 = 3.0;

    /// Block `block`'s proactive symbols have gone out; its NAKs are expected before `closes`.
    pub fn block_sent(&mut self, block: u32, closes: Instant) {
        if self.open.len() >= 1024 {
            self.open.pop_front();
        }
        self.open.push_back((block, closes));
    }

    /// A NAK asked for repairs of `block`.
    pub fn on_nak(&mut self, block: u32) {
        if self.open.iter().any(|(b, _)| *b == block) {
            self.nacked.insert(block);
        }
    }

    /// Close the windows due at `now` and learn from them. `modelled` is the parity the model
    /// currently gives (the bias never takes the total below zero).
    pub fn update(&mut self, now: Instant, modelled: u32) {
        while let Some(&(block, closes)) = self.open.front() {
            if closes > now {
                break;
            }
            self.open.pop_front();
            // Up after a NAKed block, down one symbol after a quiet one: the parity settles
            // where about one block in `UP + 1` needs a NAK round.
            self.step = if self.nacked.remove(&block) { Self::UP } else { -1.0 };
            self.bias = (self.bias + self.step).clamp(-f64::from(modelled), 0.0);
        }
    }

    /// The parity to send: the modelled one lowered by the correction, within `[0, max]`.
    pub fn apply(&self, modelled: u32, max: u32) -> u32 {
        (f64::from(modelled) + self.bias).round().clamp(0.0, f64::from(max)) as u32
    }

    /// The current correction, symbols.
    pub fn bias(&self) -> f64 {
        self.bias
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::time::Duration;

    #[test]
    fn bias_learns_from_nak_windows() {
        let mut b = ParityBias::default();
        let t = |ms| Instant::ZERO + Duration::from_millis(ms);
        // Four quiet blocks: one symbol down each.
        for blk in 0..4 {
            b.block_sent(blk, t(blk as u64));
        }
        b.update(t(10), 20);
        assert_eq!(b.bias(), -4.0);
        assert_eq!(b.apply(20, 100), 16);
        // A NAKed block: three up, but never above the model.
        b.block_sent(4, t(11));
        b.on_nak(4);
        b.on_nak(99); // not open: ignored
        b.update(t(10), 20);
        assert_eq!(b.bias(), -4.0, "window not closed yet");
        b.update(t(11), 20);
        assert_eq!(b.bias(), -1.0);
        b.block_sent(5, t(11));
        b.on_nak(5);
        b.update(t(11), 20);
        assert_eq!(b.bias(), 0.0);
        // Never below zero parity.
        for blk in 5..30 {
            b.block_sent(blk, t(12));
        }
        b.update(t(12), 20);
        assert_eq!(b.apply(20, 100), 0);
        assert_eq!(b.bias(), -20.0);
    }

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
        for (k, parity, p) in
            [(749u16, 17u32, 0.01), (749, 10, 0.01), (64, 5, 0.05), (749, 60, 0.05)]
        {
            let got = short_probability(k, parity, p);
            let want = binomial_tail(u32::from(k) + parity, p, parity);
            assert!(
                (got - want).abs() < 0.01 + want * 0.15,
                "k={k} P={parity} p={p}: {got} vs {want}"
            );
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
