//! MEAL's discriminator (spec §1.6): three fully connected layers `d → d/k → (d/k)/k → 2`,
//! k = 2 in MEAL V1 and 8 in MEAL V2 (spec §4.1: 1000 → 125 → 15 → 2).
//!
//! The reference writes them as 1×1 convolutions on a 1×1 map, which are exactly linear layers
//! with the same PyTorch default initialisation, `U(±1/√fan_in)` for weight and bias.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::folded::FoldedLinear;
use super::pool::{PoolKind, pool_map};
use crate::models::layers::{linear, relu};
use crate::train::optim::SgdSettings;

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
/// last one only for [`DiscriminatorKind::Reference`]. Once [`fold`](Discriminator::fold)ed,
/// the first layer is `folded` and `layers` holds the other two.
#[derive(Module, Debug)]
pub struct Discriminator {
    pub layers: Vec<Linear>,
    pub folded: Option<FoldedLinear>,
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
            folded: None,
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

/// What a discriminator reads for a group of rows: matched vectors `(N, d)`, or maps of
/// distinct lengths whose pooled vectors sum to them (one model's channel-mean map, or a teacher
/// ensemble's weighted maps grouped by length).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built a handful of times per step
pub enum DInput {
    Vector(Tensor<2>),
    Maps(Vec<Tensor<2>>),
}

impl DInput {
    pub fn rows(&self) -> usize {
        match self {
            DInput::Vector(t) => t.dims()[0],
            DInput::Maps(m) => m[0].dims()[0],
        }
    }

    /// The same kind of input with `f` applied to its tensors (detach, gradient reversal: both
    /// commute with the linear pooling).
    pub fn map_tensor(self, f: impl Fn(Tensor<2>) -> Tensor<2>) -> Self {
        match self {
            DInput::Vector(t) => DInput::Vector(f(t)),
            DInput::Maps(m) => DInput::Maps(m.into_iter().map(f).collect()),
        }
    }

    /// The matched vector, pooling the maps to `dim`.
    fn into_vector(self, dim: usize) -> Tensor<2> {
        match self {
            DInput::Vector(t) => t,
            DInput::Maps(maps) => maps
                .into_iter()
                .map(|m| pool_map(m, dim, PoolKind::Avg))
                .reduce(|a, b| a + b)
                .expect("at least one map"),
        }
    }
}

impl Discriminator {
    /// `(N, d)` → `(N, 2)` logits.
    ///
    /// # Panics
    /// When folded (a folded discriminator reads maps: [`forward_inputs`](Self::forward_inputs)).
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        assert!(
            self.folded.is_none(),
            "a folded discriminator reads maps, not vectors"
        );
        let z = self.layers[0].forward(x);
        self.after_first(z)
    }

    /// The input width `d`.
    pub fn dim(&self) -> usize {
        match &self.folded {
            Some(f) => f.dim,
            None => self.layers[0].weight.dims()[0],
        }
    }

    /// Trains the first layer in the folded space from now on ([`FoldedLinear`]): every input
    /// must then be maps of the given distinct `lengths`. `sgd` is the optimizer that will train
    /// this discriminator.
    pub fn fold(mut self, lengths: &[usize], sgd: &SgdSettings) -> Self {
        if self.folded.is_some() {
            return self;
        }
        let first = self.layers.remove(0);
        self.folded = Some(FoldedLinear::new(&first, lengths, sgd));
        self
    }

    /// The logits of the rows of `inputs`, stacked in order: the same as [`forward`] on the
    /// stacked matched vectors. A folded discriminator reads the maps (and needs them); an
    /// unfolded one pools any maps to vectors first.
    ///
    /// [`forward`]: Self::forward
    pub fn forward_inputs(&self, inputs: Vec<DInput>) -> Tensor<2> {
        let z = match &self.folded {
            Some(f) => {
                let groups: Vec<Vec<Tensor<2>>> = inputs
                    .into_iter()
                    .map(|input| match input {
                        DInput::Maps(m) => m,
                        DInput::Vector(_) => {
                            panic!("a folded discriminator reads maps, not vectors")
                        }
                    })
                    .collect();
                f.forward(&groups)
            }
            None => {
                let dim = self.dim();
                let v = inputs.into_iter().map(|i| i.into_vector(dim)).collect();
                self.layers[0].forward(Tensor::cat(v, 0))
            }
        };
        self.after_first(z)
    }

    /// Moves the folded layer's scalars after an optimizer step with learning rate `lr`.
    pub fn after_step(self, lr: f64) -> crate::error::Result<Self> {
        Ok(Self {
            folded: self.folded.map(|f| f.advance(lr)).transpose()?,
            ..self
        })
    }

    fn after_first(&self, z: Tensor<2>) -> Tensor<2> {
        let skip = usize::from(self.folded.is_none());
        let hidden = &self.layers[skip..];
        let mut x = relu(z);
        for (i, layer) in hidden.iter().enumerate() {
            x = layer.forward(x);
            if i + 1 < hidden.len() || self.final_relu {
                x = relu(x);
            }
        }
        x
    }

    /// The number of scalars (73 for d = 10, 156,877 for d = 500; folded, the first layer's
    /// `ΣL × h` trained and fixed ones instead of `d × h`).
    pub fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}
