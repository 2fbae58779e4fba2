//! The similarity losses between a student output and its teacher target (spec §1.5, §4.1, §7).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// `--loss`: soft cross-entropy (the default of every released script), KL divergence, or the
/// L1 / L2 distances between raw outputs or between softmaxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimilarityKind {
    #[default]
    Ce,
    Kl,
    L1,
    L2,
    L1Soft,
    L2Soft,
}

/// The teacher side of one matched stage: `raw` = teacher output (or the combination of several
/// teachers' raw outputs), `probs` = teacher probabilities at temperature T (for several teachers:
/// the (weighted) mean of their softmaxes, NOT the softmax of the mean).
#[derive(Debug, Clone)]
pub struct TeacherTarget {
    pub raw: Tensor<2>,
    pub probs: Tensor<2>,
}

/// `softmax(x)` over dim 1, stable (the row max is subtracted first).
pub fn softmax(x: Tensor<2>) -> Tensor<2> {
    let max = x.clone().detach().max_dim(1);
    let e = x.sub(max).exp();
    let sum = e.clone().sum_dim(1);
    e.div(sum)
}

/// `log_softmax(x)` over dim 1, stable: `(x − m) − log Σ exp(x − m)` with `m` the row max. `m`
/// is detached: log-softmax does not depend on a per-row shift, so its gradient is unchanged.
pub fn log_softmax(x: Tensor<2>) -> Tensor<2> {
    let max = x.clone().detach().max_dim(1);
    let shifted = x.sub(max);
    let lse = shifted.clone().exp().sum_dim(1).log();
    shifted.sub(lse)
}

fn scaled(x: Tensor<2>, temperature: f64) -> Tensor<2> {
    if temperature == 1.0 {
        x
    } else {
        x.div_scalar(temperature)
    }
}

/// Teacher probabilities: `softmax(raw / T)` over dim 1.
pub fn teacher_probs(raw: Tensor<2>, temperature: f64) -> Tensor<2> {
    softmax(scaled(raw, temperature))
}

/// The per-stage similarity loss, a scalar of shape `[1]`:
/// - `Ce`: `-(1/B) Σ probs · log_softmax(s/T) · T²` (the reference: T = 1, no factor);
/// - `Kl`: `(1/B) Σ probs · (log probs − log_softmax(s/T)) · T²`, with `0·log 0 = 0`;
/// - `L1`: `mean |s − raw|`, `L2`: `mean (s − raw)²` over all `B·D` elements;
/// - `L1Soft` / `L2Soft`: `mean |softmax(s/T) − probs|`, `mean (softmax(s/T) − probs)²`.
pub fn similarity(
    kind: SimilarityKind,
    student: Tensor<2>,
    target: &TeacherTarget,
    temperature: f64,
) -> Tensor<1> {
    let [batch, _] = student.dims();
    let t2 = temperature * temperature;
    match kind {
        SimilarityKind::Ce => {
            let log_q = log_softmax(scaled(student, temperature));
            target
                .probs
                .clone()
                .mul(log_q)
                .sum()
                .mul_scalar(-t2 / batch as f64)
        }
        SimilarityKind::Kl => {
            let log_q = log_softmax(scaled(student, temperature));
            // The teacher entropy term carries no student gradient; the log is masked to 0
            // where probs = 0 so that 0·log 0 = 0 (PyTorch's xlogy).
            let p = target.probs.clone().detach();
            let log_p = p
                .clone()
                .log()
                .mask_fill(p.clone().lower_equal_elem(0.0), 0.0);
            let neg_entropy = p.mul(log_p).sum();
            let cross = target.probs.clone().mul(log_q).sum();
            neg_entropy.sub(cross).mul_scalar(t2 / batch as f64)
        }
        SimilarityKind::L1 => student.sub(target.raw.clone()).abs().mean(),
        SimilarityKind::L2 => student.sub(target.raw.clone()).square().mean(),
        SimilarityKind::L1Soft => softmax(scaled(student, temperature))
            .sub(target.probs.clone())
            .abs()
            .mean(),
        SimilarityKind::L2Soft => softmax(scaled(student, temperature))
            .sub(target.probs.clone())
            .square()
            .mean(),
    }
}
