//! SGD with PyTorch semantics, built on burn's optimizer (which matches PyTorch once dampening
//! is 0): g = ∇ + wd·θ; buf = μ·buf + g (buf = g on the first step); g = g + μ·buf if nesterov,
//! else buf; θ ← θ − lr·g.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

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
        let momentum = (self.momentum > 0.0).then(|| {
            MomentumConfig::new()
                .with_momentum(self.momentum)
                .with_dampening(0.0)
                .with_nesterov(self.nesterov)
        });
        let decay =
            (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        SgdConfig::new()
            .with_momentum(momentum)
            .with_weight_decay(decay)
            .init()
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
