//! Test-set evaluation of one model or an ensemble (mean of softmax probabilities).

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::tensors::{
    batch_tensors, host_rows, nonfinite_rows, row_is_finite, softmax_rows, topk_correct,
};
use crate::data::{Loader, Normalization};
use crate::error::Result;
use crate::models::Net;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub images: usize,
    /// Images whose outputs held a NaN or an infinity; they count as wrong in `top1`/`top5`,
    /// and a model with any is one to distrust (usually diverged weights).
    #[serde(default)]
    pub nonfinite: usize,
}

/// The per-channel `x·scale + shift` that turns an input normalised with one mean/std into the
/// same input normalised with another, so that a model trained with other statistics than the
/// dataset's (an imported teacher, say) sees what it was trained on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Renorm {
    pub scale: [f32; 3],
    pub shift: [f32; 3],
}

impl Renorm {
    /// From inputs normalised with `data` to inputs normalised with `own`; `None` when equal.
    pub fn between(data: Normalization, own: Normalization) -> Option<Self> {
        (data != own).then(|| {
            let mut r = Renorm {
                scale: [0.0; 3],
                shift: [0.0; 3],
            };
            for c in 0..3 {
                // x_raw = x·std_d + mean_d; x_own = (x_raw − mean_own) / std_own
                r.scale[c] = data.std[c] / own.std[c];
                r.shift[c] = (data.mean[c] - own.mean[c]) / own.std[c];
            }
            r
        })
    }

    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let s = Tensor::<1>::from_floats(self.scale, &device).reshape([1, 3, 1, 1]);
        let b = Tensor::<1>::from_floats(self.shift, &device).reshape([1, 3, 1, 1]);
        x * s + b
    }
}

/// Accuracy of each model and of the ensemble of all of them. `models` must be in inference
/// form (`valid()`); `device` is the plain device they live on.
pub fn evaluate(
    models: &[&Net],
    loader: &Loader,
    device: &Device,
) -> Result<(Vec<Accuracy>, Accuracy)> {
    evaluate_renormalized(models, &vec![None; models.len()], loader, device)
}

/// [`evaluate`] where model `i` sees its input re-normalised by `renorms[i]` (the ensemble
/// averages the models' probabilities as they are).
pub fn evaluate_renormalized(
    models: &[&Net],
    renorms: &[Option<Renorm>],
    loader: &Loader,
    device: &Device,
) -> Result<(Vec<Accuracy>, Accuracy)> {
    assert_eq!(models.len(), renorms.len(), "one renorm per model");
    crate::kernels::hot::here(device, || evaluate_here(models, renorms, loader, device))
}

fn evaluate_here(
    models: &[&Net],
    renorms: &[Option<Renorm>],
    loader: &Loader,
    device: &Device,
) -> Result<(Vec<Accuracy>, Accuracy)> {
    let mut correct1 = vec![0usize; models.len() + 1];
    let mut correct5 = vec![0usize; models.len() + 1];
    let mut loss = vec![0f64; models.len() + 1];
    let mut nonfinite = vec![0usize; models.len() + 1];
    let mut seen = 0usize;
    // The weights are packed for the kernels once, not per batch; released on return.
    let _prepared = crate::kernels::prepared::inference();
    for batch in loader.epoch(0) {
        let batch = batch?;
        if batch.is_empty() {
            // Every image of it was undecodable and skipped (data.skip_corrupt).
            continue;
        }
        let (x, _) = batch_tensors(&batch, device);
        let mut mean_probs: Vec<f32> = Vec::new();
        let mut classes = 0;
        for (i, model) in models.iter().enumerate() {
            let xi = match &renorms[i] {
                Some(r) => r.apply(x.clone()),
                None => x.clone(),
            };
            let (scores, k) = host_rows(&model.forward(xi).logits)?;
            classes = k;
            let probs = softmax_rows(&scores, k);
            correct1[i] += topk_correct(&scores, k, &batch.labels, 1);
            correct5[i] += topk_correct(&scores, k, &batch.labels, 5.min(k));
            loss[i] += nll(&probs, k, &batch.labels);
            nonfinite[i] += nonfinite_rows(&scores, k);
            if mean_probs.is_empty() {
                mean_probs = probs;
            } else {
                mean_probs.iter_mut().zip(&probs).for_each(|(m, p)| *m += p);
            }
        }
        let n = models.len().max(1) as f32;
        mean_probs.iter_mut().for_each(|m| *m /= n);
        let e = models.len();
        correct1[e] += topk_correct(&mean_probs, classes, &batch.labels, 1);
        correct5[e] += topk_correct(&mean_probs, classes, &batch.labels, 5.min(classes));
        loss[e] += nll(&mean_probs, classes, &batch.labels);
        nonfinite[e] += nonfinite_rows(&mean_probs, classes);
        seen += batch.labels.len();
    }
    let acc = |i: usize| Accuracy {
        top1: 100.0 * correct1[i] as f64 / seen.max(1) as f64,
        top5: 100.0 * correct5[i] as f64 / seen.max(1) as f64,
        loss: loss[i] / seen.max(1) as f64,
        images: seen,
        nonfinite: nonfinite[i],
    };
    let per_model = (0..models.len()).map(acc).collect();
    Ok((per_model, acc(models.len())))
}

/// Whether each image's top-1 prediction is right, in loader order (a row with a non-finite
/// score is wrong). `model` must be in inference form.
pub fn top1_hits(model: &Net, loader: &Loader, device: &Device) -> Result<Vec<bool>> {
    let mut hits = Vec::with_capacity(loader.dataset().len());
    for batch in loader.epoch(0) {
        let batch = batch?;
        let (x, _) = batch_tensors(&batch, device);
        let (scores, k) = host_rows(&model.forward(x).logits)?;
        for (row, &label) in batch.labels.iter().enumerate() {
            let r = &scores[row * k..(row + 1) * k];
            hits.push(topk_correct(r, k, &[label], 1) == 1);
        }
    }
    Ok(hits)
}

/// Top-1 accuracy (%) from [`top1_hits`]; no images give no accuracy (not NaN, not 0).
pub fn hits_percent(hits: &[bool]) -> f64 {
    assert!(!hits.is_empty(), "an accuracy needs at least one image");
    100.0 * hits.iter().filter(|&&x| x).count() as f64 / hits.len() as f64
}

/// Model A's top-1 accuracy minus model B's on the same images, in points, with a 95%
/// interval.
///
/// The interval is the normal one of the per-image differences (each −1, 0 or +1): images both
/// models get right, or both get wrong, add no noise, so it is much tighter than one computed
/// from the two accuracies separately. It covers which images happened to be tested, not the
/// training run's own randomness (another seed moves both models).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    pub images: usize,
    pub points: f64,
    pub low: f64,
    pub high: f64,
}

impl PairedDifference {
    /// Whether the interval excludes zero.
    pub fn beyond_sampling_noise(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// [`PairedDifference`] of per-image hits `a` and `b` (same images, same order; at least two,
/// or there is no spread to estimate).
pub fn paired_difference(a: &[bool], b: &[bool]) -> PairedDifference {
    assert_eq!(a.len(), b.len(), "paired hits of different lengths");
    let n = a.len();
    assert!(
        n >= 2,
        "a paired difference needs at least 2 images, got {n}"
    );
    let (mut sum, mut sq) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let d = f64::from(u8::from(x)) - f64::from(u8::from(y));
        sum += d;
        sq += d * d;
    }
    let mean = sum / n as f64;
    // Sample variance of the differences (clamped: rounding can take 0 just below).
    let var = (sq - n as f64 * mean * mean) / (n - 1) as f64;
    let half = 1.96 * (var.max(0.0) / n as f64).sqrt();
    PairedDifference {
        images: n,
        points: 100.0 * mean,
        low: 100.0 * (mean - half),
        high: 100.0 * (mean + half),
    }
}

/// Summed negative log-likelihood. Probabilities are floored at 1e-12 so one confident mistake
/// costs at most ~27.6; a non-finite row costs exactly that, the worst a finite row can, rather
/// than a NaN that would poison the whole mean.
fn nll(probs: &[f32], classes: usize, labels: &[usize]) -> f64 {
    labels
        .iter()
        .enumerate()
        .map(|(row, &l)| {
            let r = &probs[row * classes..(row + 1) * classes];
            let p = if row_is_finite(r) { r[l] } else { 0.0 };
            -(p.max(1e-12) as f64).ln()
        })
        .sum()
}
