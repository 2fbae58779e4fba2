//! Gradient reversal (DANN; MEAL V1's `--grl`): identity forward, gradient × −1 backward.

use burn::tensor::Tensor;

/// Identity in the forward pass, gradient multiplied by −1 in the backward pass, which turns
/// the joint minimisation of the adversarial loss into the paper's min-max (spec §1.7).
///
/// Written as `2·x.detach() − x`, which needs no custom backward op:
/// - backward: the detached term is a constant, so `d/dx = −1` exactly;
/// - forward: `2·x` is exact (a power-of-two scaling) and `2x − x` is exact by Sterbenz's lemma
///   (the operands are within a factor 2 of each other), so the value equals `x` exactly (only
///   `−0.0` comes out as `+0.0`). The one exception is `|x| > f32::MAX / 2`, where `2x`
///   overflows; no logit or pooled feature gets there.
pub fn gradient_reversal<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clone().detach().mul_scalar(2.0).sub(x)
}
