//! A discriminator's first layer trained in the folded space (issue 9).
//!
//! A feature stage's matched vector is `v = m·Pᵀ`: the channel-mean map `m` (length `L`, a few
//! hundred values) lengthened by adaptive average pooling `P` (`d × L`, `d` up to 10,000). The
//! first layer `z = v·W + b` (`W` is `d × h`: 50 M values for MEAL V1's first stage) only ever
//! sees such vectors, so its gradient `vᵀ·g = P·(mᵀ·g)` always lies in the column span of `P`.
//! SGD with momentum, weight decay and Nesterov (dampening 0) is linear in the weight and its
//! momentum buffer, so from `W₀` and an empty buffer every later state has the form
//!
//! - `W = α·W₀ + Σ_a P_a·X_a`, the buffer `B = β·W₀ + Σ_a P_a·Y_a`,
//!
//! where `a` runs over the distinct map lengths that reach this discriminator (student and
//! teachers may differ), `X_a`, `Y_a` are `L_a × h`, and `α`, `β` are scalars. `X_a` follows
//! exactly the optimizer's SGD as a parameter whose gradient is `m_aᵀ·g`, with the same weight
//! decay, and the scalars follow `β ← μβ + λα`, `α ← α − lr·(Nesterov ? λα + μβ : β)`. The
//! forward pass needs only `P_aᵀ·W₀` (computed once) and the fixed `P_aᵀ·P_b`:
//! `z = α·m·(P_aᵀW₀) + m·P_aᵀ·Σ_b P_b·X_b + b`. So the layer never holds `W`; its forward,
//! backward and update cost `L·h` instead of `d·h`, and the results are the unfolded layer's up to
//! float rounding ([`FoldedLinear::weight`] rebuilds `W` for the tests that prove it).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};

use super::pool::{PoolKind, fold_rows, pool_map};
use crate::backend::read;
use crate::error::Result;
use crate::train::optim::SgdSettings;

/// The first layer `d → h` of a discriminator whose inputs are all average-pooled maps.
#[derive(Module, Debug)]
pub struct FoldedLinear {
    /// `[X_1; …; X_k]` (`ΣL × h`), trained by the discriminators' optimizer.
    pub x: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
    /// `[P_1ᵀ·W₀; …; P_kᵀ·W₀]` (`ΣL × h`), fixed.
    pub base: Param<Tensor<2>>,
    /// `[P_1 … P_k]ᵀ·[P_1 … P_k]` (`ΣL × ΣL`), fixed.
    pub gram: Param<Tensor<2>>,
    /// `[α, β]`, advanced by [`FoldedLinear::advance`] after every optimizer step.
    pub scale: Param<Tensor<1>>,
    /// The distinct map lengths `L_1 … L_k`, in block order.
    pub lengths: Vec<usize>,
    /// The pooled length `d`.
    pub dim: usize,
    /// The discriminators' optimizer settings, which the scalars must follow.
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

/// A recorded tensor that no optimizer touches (`detach` makes a computed tensor a leaf).
fn fixed<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(t.detach()).set_require_grad(false)
}

/// `P_aᵀ` (`L_a × d`): row `l` is the pooling of the unit map `e_l`.
fn pooling_transposed(len: usize, dim: usize, device: &Device) -> Tensor<2> {
    let mut eye = vec![0f32; len * len];
    for l in 0..len {
        eye[l * len + l] = 1.0;
    }
    let eye = Tensor::<2>::from_data(TensorData::new(eye, [len, len]), device);
    pool_map(eye, dim, PoolKind::Avg)
}

impl FoldedLinear {
    /// The folded form of `layer` (its current weight becomes `W₀`) for maps of the given
    /// distinct `lengths`, each shorter than the layer's input width, trained by SGD with
    /// `sgd`.
    ///
    /// # Panics
    /// When `lengths` is empty, has duplicates, or holds a length of at least the input width.
    pub fn new(layer: &Linear, lengths: &[usize], sgd: &SgdSettings) -> Self {
        let w0 = layer.weight.val().detach();
        let [dim, h] = w0.dims();
        let device = w0.device();
        assert!(!lengths.is_empty(), "FoldedLinear: no map lengths");
        for (i, &l) in lengths.iter().enumerate() {
            assert!(
                l > 0 && l < dim && !lengths[..i].contains(&l),
                "FoldedLinear: map length {l} must be distinct and in 1..{dim}"
            );
        }
        let base = Tensor::cat(
            lengths.iter().map(|&l| fold_rows(w0.clone(), l)).collect(),
            0,
        );
        let pt = Tensor::cat(
            lengths
                .iter()
                .map(|&l| pooling_transposed(l, dim, &device))
                .collect(),
            0,
        );
        let gram = pt.clone().matmul(pt.transpose());
        let total: usize = lengths.iter().sum();
        let bias = match &layer.bias {
            Some(b) => b.val().detach(),
            None => Tensor::zeros([h], &device),
        };
        Self {
            x: Param::from_tensor(Tensor::zeros([total, h], &device)),
            bias: Param::from_tensor(bias),
            base: fixed(base),
            gram: fixed(gram),
            scale: fixed(Tensor::from_data(
                TensorData::new(vec![1f32, 0.0], [2]),
                &device,
            )),
            lengths: lengths.to_vec(),
            dim,
            momentum: sgd.momentum,
            nesterov: sgd.nesterov,
            weight_decay: sgd.weight_decay,
        }
    }

    /// The index of block `len` and its rows in `X`, `base` and `gram`.
    fn block(&self, len: usize) -> (usize, std::ops::Range<usize>) {
        let mut start = 0;
        for (i, &l) in self.lengths.iter().enumerate() {
            if l == len {
                return (i, start..start + l);
            }
            start += l;
        }
        panic!(
            "FoldedLinear: a map of length {len} reached a layer folded for lengths {:?}",
            self.lengths
        )
    }

    /// `pool(Σ maps)·W + b` for each group of maps, the groups' rows stacked in order. A
    /// group holds maps of distinct lengths among [`lengths`](Self::lengths), `(N, L_a)` each,
    /// whose pooled vectors sum to the rows' matched vectors (one model's stage, or a teacher
    /// ensemble's combined target).
    pub fn forward(&self, groups: &[Vec<Tensor<2>>]) -> Tensor<2> {
        let x = self.x.val();
        let fixed_x = x.clone().detach();
        let [total, h] = x.dims();
        let alpha = self.scale.val().narrow(0, 0, 1).reshape([1, 1]);
        // Q_a = α·P_aᵀW₀ + P_aᵀ·Σ_b P_b·X_b, so that m·Q_a is m's output before the bias. It
        // is built from the detached X once per call and shared by all rows of length L_a:
        // the gradient that X must receive is mᵀ·g in block a (the optimizer's view of W's
        // gradient), not the autodiff one through the Gram matrix, so a zero-valued term
        // m·(X_a − X_a) with m detached carries exactly that.
        let mut q: Vec<Option<Tensor<2>>> = vec![None; self.lengths.len()];
        let mut q_of = |len: usize| {
            let (i, rows) = self.block(len);
            q[i].get_or_insert_with(|| {
                self.base
                    .val()
                    .slice([rows.clone(), 0..h])
                    .mul(alpha.clone())
                    + self
                        .gram
                        .val()
                        .slice([rows, 0..total])
                        .matmul(fixed_x.clone())
            })
            .clone()
        };
        let z: Vec<Tensor<2>> = groups
            .iter()
            .map(|maps| {
                maps.iter()
                    .map(|m| {
                        let (_, rows) = self.block(m.dims()[1]);
                        let carrier = m.clone().detach().matmul(
                            x.clone().slice([rows.clone(), 0..h])
                                - fixed_x.clone().slice([rows, 0..h]),
                        );
                        m.clone().matmul(q_of(m.dims()[1])) + carrier
                    })
                    .reduce(|a, b| a + b)
                    .expect("FoldedLinear::forward needs at least one map per group")
            })
            .collect();
        Tensor::cat(z, 0) + self.bias.val().reshape([1, h])
    }

    /// Moves `α`, `β` as the optimizer moved `W₀`'s share of the weight in the step just taken
    /// with learning rate `lr`. Done in `f32` from the stored values, so a resumed run repeats
    /// it bit for bit.
    pub fn advance(self, lr: f64) -> Result<Self> {
        let s = self.scalars()?;
        let (alpha, beta) = (s[0], s[1]);
        let (mu, wd, lr) = (self.momentum as f32, self.weight_decay as f32, lr as f32);
        let (alpha, beta) = if mu > 0.0 {
            let beta = mu * beta + wd * alpha;
            let step = if self.nesterov {
                wd * alpha + mu * beta
            } else {
                beta
            };
            (alpha - lr * step, beta)
        } else {
            (alpha - lr * (wd * alpha), beta)
        };
        let device = self.scale.val().device();
        let scale = self
            .scale
            .map(|_| Tensor::from_data(TensorData::new(vec![alpha, beta], [2]), &device));
        Ok(Self { scale, ..self })
    }

    /// The unfolded weight `α·W₀ + Σ_a P_a·X_a` (`d × h`), given the `W₀` the layer was built
    /// from: what an unfolded layer trained on the same inputs would hold.
    pub fn weight(&self, w0: Tensor<2>) -> Result<Tensor<2>> {
        let s = self.scalars()?;
        let x = self.x.val().detach();
        let h = x.dims()[1];
        let mut w = w0.mul_scalar(s[0]);
        let mut start = 0;
        for &l in &self.lengths {
            let xa = x.clone().slice([start..start + l, 0..h]);
            w = w + pool_map(xa.transpose(), self.dim, PoolKind::Avg).transpose();
            start += l;
        }
        Ok(w)
    }

    /// `[α, β]`, read from the device.
    fn scalars(&self) -> Result<Vec<f32>> {
        read::floats(self.scale.val(), "a folded discriminator's scalars")
    }

    /// `W₀`'s current coefficient `α`.
    pub fn alpha(&self) -> Result<f32> {
        Ok(self.scalars()?[0])
    }
}
