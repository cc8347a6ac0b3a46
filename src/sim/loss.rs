//! Loss models for the simulator: which copies of a multicast datagram are dropped.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How datagram copies are lost.
#[derive(Debug, Clone, PartialEq)]
pub enum LossModel {
    /// Each copy to each node is lost independently with this probability.
    Independent(f64),
}

impl LossModel {
    /// Whether the next copy is lost.
    pub(crate) fn drops(&self, rng: &mut ChaCha8Rng) -> bool {
        match *self {
            LossModel::Independent(p) => p > 0.0 && rng.gen::<f64>() < p,
        }
    }
}
