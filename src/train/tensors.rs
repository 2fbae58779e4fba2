//! The boundary between the data pipeline (plain vectors) and burn tensors, and the few
//! tensor reductions every loop needs.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::Batch;
use crate::error::Result;

/// Images as `(N, C, H, W)` and labels as `(N,)` on `device`.
pub fn batch_tensors(batch: &Batch, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let images = Tensor::<4>::from_data(
        TensorData::new(batch.images.clone(), batch.shape.to_vec()),
        device,
    );
    let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
    let n = labels.len();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
    (images, labels)
}

/// Mean cross-entropy of `logits` against integer `labels` (`nn.CrossEntropyLoss`).
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let log_probs = burn::tensor::activation::log_softmax(logits, 1);
    let picked = log_probs.gather(1, labels.unsqueeze_dim(1));
    picked.mean().neg()
}

/// Logits copied to the host, row-major `(N, K)`.
pub fn host_rows(logits: &Tensor<2>) -> Result<(Vec<f32>, usize)> {
    let [_, k] = logits.dims();
    let data = crate::backend::read::floats(logits.clone(), "a model's logits")?;
    Ok((data, k))
}

/// Whether every score of a row is finite. A row with a NaN or an infinity has no meaningful
/// ranking: NaN compares false with everything, so a naive "how many beat the label" count
/// would call it correct.
pub fn row_is_finite(row: &[f32]) -> bool {
    row.iter().all(|v| v.is_finite())
}

/// Number of rows of `scores` (row-major, `classes` wide) holding any non-finite value.
pub fn nonfinite_rows(scores: &[f32], classes: usize) -> usize {
    scores
        .chunks(classes.max(1))
        .filter(|r| !row_is_finite(r))
        .count()
}

/// Number of rows whose label is among the `k` highest scores (ties broken towards the lower
/// index, as `torch.topk` does in practice for distinct values). A row with any non-finite
/// score counts as wrong.
pub fn topk_correct(scores: &[f32], classes: usize, labels: &[usize], k: usize) -> usize {
    labels
        .iter()
        .enumerate()
        .filter(|&(row, &label)| {
            let r = &scores[row * classes..(row + 1) * classes];
            if !row_is_finite(r) {
                return false;
            }
            let target = r[label];
            let better = r
                .iter()
                .enumerate()
                .filter(|&(j, &v)| v > target || (v == target && j < label))
                .count();
            better < k
        })
        .count()
}

/// Row-wise softmax on the host.
pub fn softmax_rows(scores: &[f32], classes: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(scores.len());
    for row in scores.chunks(classes) {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        out.extend(exps.into_iter().map(|e| e / sum));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_counts() {
        let scores = [0.1, 0.5, 0.4, 0.9, 0.0, 0.1];
        assert_eq!(topk_correct(&scores, 3, &[1, 0], 1), 2);
        assert_eq!(topk_correct(&scores, 3, &[2, 2], 1), 0);
        assert_eq!(topk_correct(&scores, 3, &[2, 2], 2), 2);
        let p = softmax_rows(&scores, 3);
        assert!((p[0] + p[1] + p[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn nonfinite_rows_are_never_correct() {
        // Row 0 would be right at top-1 by its finite values; row 1 is all NaN; row 2 has an
        // infinity on the label itself.
        let scores = [
            0.1,
            0.9,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            0.0,
            f32::INFINITY,
            0.0,
        ];
        for k in 1..=3 {
            assert_eq!(topk_correct(&scores, 3, &[1, 0, 1], k), 0, "top-{k}");
        }
        assert_eq!(nonfinite_rows(&scores, 3), 3);
        let finite = [0.1, 0.9, 0.0, 0.2, 0.1, 0.0];
        assert_eq!(topk_correct(&finite, 3, &[1, 0], 1), 2);
        assert_eq!(nonfinite_rows(&finite, 3), 0);
        assert_eq!(nonfinite_rows(&[0.0, f32::NEG_INFINITY], 2), 1);
    }

    #[test]
    fn cross_entropy_matches_hand_value() {
        let device = Device::default();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0], [2, 3]),
            &device,
        );
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0], [2]), &device);
        let v: f32 = cross_entropy(logits, labels).into_scalar();
        let l1 = -(3.0f64 - (1f64.exp() + 2f64.exp() + 3f64.exp()).ln());
        let l2 = 3f64.ln();
        assert!((v as f64 - (l1 + l2) / 2.0).abs() < 1e-6, "{v}");
    }
}
