//! MEAL's discriminator (spec §1.6): three fully connected layers `d → d/2 → d/4 → 2`.
//!
//! The reference writes them as 1×1 convolutions on a 1×1 map, which are exactly linear layers
//! with the same PyTorch default initialisation, `U(±1/√fan_in)` for weight and bias.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::models::layers::{linear, relu};

/// `Reference` keeps the ReLU after the final layer (sic, spec §1.6); `Fixed` drops it
/// (spec §5 item 2), so the logits can be negative and the D loss has no floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscriminatorKind {
    #[default]
    Reference,
    Fixed,
}

/// `d → d/2 → (d/2)/2 → 2` with bias (integer floor division), a ReLU after every layer, the
/// last one only for [`DiscriminatorKind::Reference`].
#[derive(Module, Debug)]
pub struct Discriminator {
    pub layers: Vec<Linear>,
    pub final_relu: bool,
}

/// How to build a [`Discriminator`] for inputs of width `dim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscriminatorConfig {
    pub dim: usize,
    pub kind: DiscriminatorKind,
}

impl DiscriminatorConfig {
    pub fn new(dim: usize, kind: DiscriminatorKind) -> Self {
        Self { dim, kind }
    }

    /// The layer widths `[d, d/2, (d/2)/2, 2]`.
    pub fn widths(&self) -> [usize; 4] {
        let half = self.dim / 2;
        [self.dim, half, half / 2, 2]
    }

    /// Builds the discriminator, or says why a dim is too small (`(d/2)/2 == 0`, i.e. `d < 4`).
    pub fn try_init(&self, device: &Device) -> Result<Discriminator, String> {
        let widths = self.widths();
        if widths[2] == 0 {
            return Err(format!(
                "discriminator input dim {} is too small: the layers d → d/2 → d/4 → 2 need d ≥ 4",
                self.dim
            ));
        }
        let layers = widths
            .windows(2)
            .map(|w| linear(device, w[0], w[1]))
            .collect();
        Ok(Discriminator {
            layers,
            final_relu: self.kind == DiscriminatorKind::Reference,
        })
    }

    /// Like [`try_init`](Self::try_init).
    ///
    /// # Panics
    /// When `dim < 4`.
    pub fn init(&self, device: &Device) -> Discriminator {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Discriminator {
    /// `(N, d)` → `(N, 2)` logits.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last || self.final_relu {
                x = relu(x);
            }
        }
        x
    }

    /// The number of trainable scalars (73 for d = 10, 156,877 for d = 500).
    pub fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}
