//! MEAL's discriminator (spec §1.6): three fully connected layers `d → d/k → (d/k)/k → 2`,
//! k = 2 in MEAL V1 and 8 in MEAL V2 (spec §4.1: 1000 → 125 → 15 → 2).
//!
//! The reference writes them as 1×1 convolutions on a 1×1 map, which are exactly linear layers
//! with the same PyTorch default initialisation, `U(±1/√fan_in)` for weight and bias.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::pool::fold_rows;
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

/// `d → d/k → (d/k)/k → 2` with bias (integer floor division), a ReLU after every layer, the
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
    /// How much each hidden layer narrows (`meal.d_width_divisor`).
    pub divisor: usize,
}

/// MEAL V1's narrowing.
pub const V1_DIVISOR: usize = 2;

impl DiscriminatorConfig {
    /// MEAL V1's widths (`divisor` 2).
    pub fn new(dim: usize, kind: DiscriminatorKind) -> Self {
        Self {
            dim,
            kind,
            divisor: V1_DIVISOR,
        }
    }

    pub fn with_divisor(self, divisor: usize) -> Self {
        Self { divisor, ..self }
    }

    /// The layer widths `[d, d/k, (d/k)/k, 2]`.
    pub fn widths(&self) -> [usize; 4] {
        let k = self.divisor.max(1);
        let first = self.dim / k;
        [self.dim, first, first / k, 2]
    }

    /// Builds the discriminator, or says why a dim is too small for the divisor (a hidden layer
    /// would have no units, `d < k²`). PyTorch would build such a layer, and the reference's
    /// D would then output a constant: refusing is the honest answer.
    pub fn try_init(&self, device: &Device) -> Result<Discriminator, String> {
        let k = self.divisor;
        if k == 0 {
            return Err("meal.d_width_divisor must be at least 1".into());
        }
        let widths = self.widths();
        if widths[2] == 0 {
            return Err(format!(
                "discriminator input dim {d} is too small for meal.d_width_divisor = {k}: \
                 the layers {d} → {} → {} → 2 leave a layer with no units; the input must be at \
                 least {} wide (or lower meal.d_width_divisor: 2 needs d ≥ 4)",
                widths[1],
                widths[2],
                k * k,
                d = self.dim,
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
    /// When `dim < divisor²`.
    pub fn init(&self, device: &Device) -> Discriminator {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// What a discriminator reads: matched vectors `(N, d)`, or the `(N, L)` channel-mean maps
/// that average pooling turns into them (the fold: see [`Discriminator::forward_inputs`]).
#[derive(Debug, Clone)]
pub enum DInput {
    Vector(Tensor<2>),
    Map(Tensor<2>),
}

impl DInput {
    pub fn rows(&self) -> usize {
        match self {
            DInput::Vector(t) | DInput::Map(t) => t.dims()[0],
        }
    }

    /// The same kind of input with `f` applied to its tensor (detach, gradient reversal: both
    /// commute with the linear pooling).
    pub fn map_tensor(self, f: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Self {
        match self {
            DInput::Vector(t) => DInput::Vector(f(t)),
            DInput::Map(t) => DInput::Map(f(t)),
        }
    }
}

impl Discriminator {
    /// `(N, d)` → `(N, 2)` logits.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let z = self.layers[0].forward(x);
        self.after_first(z)
    }

    /// The logits of the rows of `inputs`, stacked in order: the same as [`forward`] on the
    /// stacked matched vectors. A [`DInput::Map`] `m` (whose vector is `pool(m)`) goes through
    /// the first layer as `m·(Pᵀ·W₁) + b₁`, which is `pool(m)·W₁ + b₁` with `L` instead of
    /// `d` multiply-adds per output, and whose weight gradient `P·(mᵀ·g)` is what `W₁` would
    /// get from the pooled vectors.
    ///
    /// [`forward`]: Self::forward
    pub fn forward_inputs(&self, inputs: Vec<DInput>) -> Tensor<2> {
        if inputs.iter().all(|i| matches!(i, DInput::Vector(_))) {
            let vectors = inputs
                .into_iter()
                .map(|i| match i {
                    DInput::Vector(t) => t,
                    DInput::Map(_) => unreachable!("all inputs are vectors"),
                })
                .collect();
            return self.forward(Tensor::cat(vectors, 0));
        }
        let first = &self.layers[0];
        let bias = first.bias.as_ref().map(|b| b.val());
        // One folded weight per map length, shared by the rows that have it.
        let mut folded: Vec<(usize, Tensor<2>)> = Vec::new();
        let z = inputs
            .into_iter()
            .map(|input| match input {
                DInput::Vector(t) => first.forward(t),
                DInput::Map(m) => {
                    let len = m.dims()[1];
                    let q = match folded.iter().find(|(l, _)| *l == len) {
                        Some((_, q)) => q.clone(),
                        None => {
                            let q = fold_rows(first.weight.val(), len);
                            folded.push((len, q.clone()));
                            q
                        }
                    };
                    burn::tensor::module::linear(m, q, bias.clone())
                }
            })
            .collect();
        self.after_first(Tensor::cat(z, 0))
    }

    fn after_first(&self, z: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        let mut x = z;
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                x = layer.forward(x);
            }
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
