//! Loss models for the simulator: which copies of a multicast datagram are dropped.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How datagram copies are lost.
#[derive(Debug, Clone, PartialEq)]
pub enum LossModel {
    /// Each copy to each node is lost independently with this probability.
    Independent(f64),
}

/// Per-run loss state.
#[derive(Debug)]
pub(crate) struct LossState {
    model: LossModel,
}

impl LossState {
    pub(crate) fn new(model: &LossModel, _receivers: usize) -> Self {
        LossState { model: model.clone() }
    }

    /// Whether the copy from `from` to `to` of the current datagram is lost.
    pub(crate) fn drops(&mut self, rng: &mut ChaCha8Rng, _from: usize, _to: usize) -> bool {
        match self.model {
            LossModel::Independent(p) => p > 0.0 && rng.gen::<f64>() < p,
        }
    }

    /// The current datagram has been delivered to everyone.
    pub(crate) fn end_datagram(&mut self) {}
}
