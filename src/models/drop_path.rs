//! Stochastic depth (timm's `DropPath`): in training, each sample's residual branch is dropped
//! with probability `prob` and the kept ones scaled by `1 / (1 − prob)`; an identity otherwise.

use burn::module::{Flag, Module, Param};
use burn::tensor::{Distribution, Tensor};

/// Like burn's `Dropout`, active only on an autodiff device with its training flag on.
#[derive(Module, Debug)]
pub struct DropPath {
    pub prob: f64,
    pub training: Param<Flag>,
}

impl DropPath {
    pub fn new(prob: f64) -> Self {
        Self {
            prob,
            training: Param::from_bool(true),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.prob == 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.prob;
        let [batch, _, _, _] = x.dims();
        let mask = crate::backend::unseeded(|| {
            Tensor::<4>::random([batch, 1, 1, 1], Distribution::Bernoulli(keep), &x.device())
        });
        x * mask.div_scalar(keep)
    }
}
