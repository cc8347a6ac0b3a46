//! Loss models for the simulator: which copies of a multicast datagram are dropped.
//!
//! Data from the sender crosses an upstream link shared by every receiver and then each
//! receiver's own downstream link; feedback from a receiver crosses links of its own. The models
//! place the loss on those links:
//! - **independent**: each copy to each receiver is lost on its own downstream link;
//! - **shared**: the loss is upstream, so a datagram is lost for every receiver at once (the
//!   NAK-implosion case: all receivers lack the same symbols at the same moment);
//! - **burst**: Gilbert–Elliott on each downstream link: a good state that loses nothing and a bad
//!   state that loses everything, with mean burst length `burst` datagrams and the given average
//!   loss rate.
//!
//! In every model, feedback copies (NAKs, echoes, reports, going to the sender and to the other
//! receivers) are lost independently at the same average rate, and a receiver may have extra
//! independent loss of its own (a straggler).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How datagram copies are lost.
#[derive(Debug, Clone, PartialEq)]
pub enum LossModel {
    /// Each copy to each node is lost independently with this probability.
    Independent(f64),
    /// Each datagram from the sender is lost for all receivers at once with this probability.
    Shared(f64),
    /// Gilbert–Elliott bursts on each receiver's link: average loss rate and mean burst length
    /// in datagrams.
    Burst {
        /// Average loss rate.
        loss: f64,
        /// Mean burst length, datagrams (at least 1).
        burst: f64,
    },
}

impl LossModel {
    /// Mean burst length used by `--loss-model burst`.
    pub const DEFAULT_BURST: f64 = 10.0;

    /// A model by name (`independent`, `shared`, `burst`) at average loss rate `loss`.
    pub fn from_name(name: &str, loss: f64) -> Result<Self, String> {
        if !(0.0..1.0).contains(&loss) {
            return Err(format!("loss rate {loss} must be in [0, 1)"));
        }
        match name {
            "independent" => Ok(LossModel::Independent(loss)),
            "shared" => Ok(LossModel::Shared(loss)),
            "burst" => Ok(LossModel::Burst { loss, burst: Self::DEFAULT_BURST }),
            other => Err(format!("unknown loss model {other:?} (independent, shared, burst)")),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &'static str {
        match self {
            LossModel::Independent(_) => "independent",
            LossModel::Shared(_) => "shared",
            LossModel::Burst { .. } => "burst",
        }
    }

    /// Average loss rate of a copy.
    pub fn rate(&self) -> f64 {
        match *self {
            LossModel::Independent(p) | LossModel::Shared(p) => p,
            LossModel::Burst { loss, .. } => loss,
        }
    }
}

/// The links' state during a run.
pub(crate) struct Links {
    model: LossModel,
    /// Gilbert–Elliott: whether each receiver's link is in the bad state.
    bad: Vec<bool>,
    /// Extra independent loss per receiver.
    extra: Vec<f64>,
    /// Whether no receiver has extra loss ([`Links::fixed_draws`]).
    fixed: bool,
}

impl Links {
    pub(crate) fn new(model: LossModel, extra: Vec<f64>) -> Self {
        let fixed = extra.iter().all(|&e| e <= 0.0);
        Links { model, bad: vec![false; extra.len()], extra, fixed }
    }

    /// One more receiver link, with `extra` independent loss of its own.
    pub(crate) fn add_receiver(&mut self, extra: f64) {
        self.bad.push(false);
        self.extra.push(extra);
        self.fixed &= extra <= 0.0;
    }

    /// Whether a datagram from the sender is lost upstream (for everyone).
    pub(crate) fn upstream(&mut self, rng: &mut ChaCha8Rng) -> bool {
        match self.model {
            LossModel::Shared(p) => p > 0.0 && rng.gen::<f64>() < p,
            _ => false,
        }
    }

    /// Whether the copy of a sender datagram to receiver `r` is lost on its link.
    pub(crate) fn downstream(&mut self, r: usize, rng: &mut ChaCha8Rng) -> bool {
        let lost = link_lost(&self.model, &mut self.bad[r], rng);
        let extra = self.extra[r];
        lost || (extra > 0.0 && rng.gen::<f64>() < extra)
    }

    /// Whether a feedback copy (from a receiver) is lost.
    pub(crate) fn feedback(&mut self, rng: &mut ChaCha8Rng) -> bool {
        feedback_lost(&self.model, rng)
    }

    /// Whether every copy takes the same number of draws from the loss stream whatever the
    /// draws before it said (no receiver has extra loss, which is drawn only for a copy its
    /// link kept): a copy's draws then have a place in the stream known in advance, and can be
    /// made out of order (module `harness::draw`).
    pub(crate) fn fixed_draws(&self) -> bool {
        self.fixed
    }

    /// Words of the loss stream that one copy takes under [`Links::fixed_draws`]: a copy from the
    /// sender on its receiver's link (`from_sender`), or a feedback copy.
    pub(crate) fn words_per_copy(&self, from_sender: bool) -> u128 {
        let p = match self.model {
            LossModel::Shared(_) if from_sender => 0.0,
            ref m => m.rate(),
        };
        // `gen::<f64>` takes one `u64`: two words.
        if p > 0.0 {
            2
        } else {
            0
        }
    }

    /// The model, and the receivers' Gilbert–Elliott states to draw with (receiver `r` at
    /// `r`) under [`Links::fixed_draws`].
    pub(crate) fn parts(&mut self) -> (&LossModel, &mut [bool]) {
        (&self.model, &mut self.bad)
    }
}

/// Whether the copy of a sender datagram is lost on a receiver's link in state `bad` (the
/// receiver's extra loss aside).
pub(crate) fn link_lost(model: &LossModel, bad: &mut bool, rng: &mut ChaCha8Rng) -> bool {
    match *model {
        LossModel::Independent(p) => p > 0.0 && rng.gen::<f64>() < p,
        LossModel::Shared(_) => false,
        LossModel::Burst { loss, burst } => {
            if loss <= 0.0 {
                false
            } else {
                let burst = burst.max(1.0);
                let flip = if *bad { 1.0 / burst } else { loss / (burst * (1.0 - loss)) };
                if rng.gen::<f64>() < flip {
                    *bad = !*bad;
                }
                *bad
            }
        }
    }
}

/// Whether a feedback copy (from a receiver) is lost.
pub(crate) fn feedback_lost(model: &LossModel, rng: &mut ChaCha8Rng) -> bool {
    let p = model.rate();
    p > 0.0 && rng.gen::<f64>() < p
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_model_loses_its_average_rate() {
        for model in [
            LossModel::Independent(0.05),
            LossModel::Shared(0.05),
            LossModel::Burst { loss: 0.05, burst: 10.0 },
        ] {
            let mut links = Links::new(model.clone(), vec![0.0; 4]);
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let (mut lost, n) = (0u32, 200_000);
            for _ in 0..n {
                let up = links.upstream(&mut rng);
                lost += u32::from(up || links.downstream(0, &mut rng));
                links.downstream(1, &mut rng);
            }
            let rate = f64::from(lost) / f64::from(n);
            assert!((rate - 0.05).abs() < 0.006, "{model:?}: {rate}");
        }
    }

    #[test]
    fn bursts_are_long_and_shared_loss_hits_everyone() {
        let mut links = Links::new(LossModel::Burst { loss: 0.05, burst: 10.0 }, vec![0.0]);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let seq: Vec<bool> = (0..200_000).map(|_| links.downstream(0, &mut rng)).collect();
        let bursts = seq.windows(2).filter(|w| !w[0] && w[1]).count();
        let mean = seq.iter().filter(|l| **l).count() as f64 / bursts as f64;
        assert!((8.0..12.0).contains(&mean), "mean burst {mean}");
        // Shared: no downstream loss of its own.
        let mut links = Links::new(LossModel::Shared(0.5), vec![0.0; 2]);
        assert!((0..1000).all(|_| !links.downstream(1, &mut rng)));
        assert!(LossModel::from_name("bogus", 0.1).is_err());
        assert!(LossModel::from_name("shared", 1.0).is_err());
    }
}
