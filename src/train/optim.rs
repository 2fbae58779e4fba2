//! SGD with PyTorch semantics (dampening 0): g = ∇ + wd·θ; buf = μ·buf + g (buf = g on the
//! first step); g = g + μ·buf if nesterov, else buf; θ ← θ − lr·g.
//!
//! The step is burn's `Sgd` computed in one in-place pass ([`crate::kernels::sgd_step`]), with
//! the same float operations in the same order, and its state is recorded under burn's names, so
//! checkpoints written with burn's optimizer resume with this one (and the other way round).

use burn::optim::{
    LearningRate, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource, join_path,
};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::kernels::{self, sgd::SgdStep};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdSettings {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

impl Default for SgdSettings {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
        }
    }
}

impl SgdSettings {
    pub fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(Sgd {
            momentum: self.momentum as f32,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay as f32,
        })
    }
}

/// The optimizer of [`SgdSettings`]; the scalars are `f32`, as burn converts them.
#[derive(Clone, Debug)]
pub struct Sgd {
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
}

/// One parameter's momentum buffer (none before the first step, or without momentum).
#[derive(Clone)]
pub struct SgdState<const D: usize> {
    velocity: Option<Tensor<D>>,
}

impl<const D: usize> RecordState for SgdState<D> {
    // burn's `SgdState { momentum: Option<MomentumState { velocity }> }` flattens to
    // `<prefix>.momentum.velocity`; the same name keeps checkpoints interchangeable.
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        if let Some(v) = &self.velocity {
            // burn's `RecordState` cannot fail; the run skeleton syncs the device before it
            // serialises a checkpoint, so a device failure is an error before this read.
            out.push_tensor(
                &join_path(prefix, "momentum"),
                "velocity",
                v.clone().into_data(),
            );
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let velocity = src
            .take_tensor(&join_path(prefix, "momentum"), "velocity")
            .map(|data| Tensor::from_data(data, device));
        Some(Self { velocity })
    }
}

impl Optimizer for Sgd {
    type State<const D: usize> = SgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let step = SgdStep {
            lr: lr as f32,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            nesterov: self.nesterov,
        };
        let velocity = state.and_then(|s| s.velocity);
        let (tensor, velocity) = kernels::sgd_step(tensor, grad, velocity, step);
        (tensor, Some(SgdState { velocity }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        SgdState {
            velocity: state.velocity.map(|v| v.to_device(device)),
        }
    }
}

impl SgdSettings {
    /// Rejects values PyTorch would reject (or that make no sense), naming the key.
    pub fn validate(&self, section: &str) -> crate::error::Result<()> {
        let err = |m: String| Err(crate::error::Error::Config(format!("{section}.{m}")));
        if !(0.0..1.0).contains(&self.momentum) {
            return err(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return err(format!(
                "weight_decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if self.nesterov && self.momentum == 0.0 {
            return err("nesterov requires momentum > 0 (as in PyTorch)".into());
        }
        Ok(())
    }
}
