//! Test-set evaluation of one model or an ensemble (mean of softmax probabilities).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::tensors::{batch_tensors, host_rows, softmax_rows, topk_correct};
use crate::data::Loader;
use crate::error::Result;
use crate::models::Net;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub images: usize,
}

/// Accuracy of each model and of the ensemble of all of them. `models` must be in inference
/// form (`valid()`); `device` is the plain device they live on.
pub fn evaluate(
    models: &[&Net],
    loader: &Loader,
    device: &Device,
) -> Result<(Vec<Accuracy>, Accuracy)> {
    let mut correct1 = vec![0usize; models.len() + 1];
    let mut correct5 = vec![0usize; models.len() + 1];
    let mut loss = vec![0f64; models.len() + 1];
    let mut seen = 0usize;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let (x, _) = batch_tensors(&batch, device);
        let mut mean_probs: Vec<f32> = Vec::new();
        let mut classes = 0;
        for (i, model) in models.iter().enumerate() {
            let (scores, k) = host_rows(&model.forward(x.clone()).logits);
            classes = k;
            let probs = softmax_rows(&scores, k);
            correct1[i] += topk_correct(&scores, k, &batch.labels, 1);
            correct5[i] += topk_correct(&scores, k, &batch.labels, 5.min(k));
            loss[i] += nll(&probs, k, &batch.labels);
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
        seen += batch.labels.len();
    }
    let acc = |i: usize| Accuracy {
        top1: 100.0 * correct1[i] as f64 / seen.max(1) as f64,
        top5: 100.0 * correct5[i] as f64 / seen.max(1) as f64,
        loss: loss[i] / seen.max(1) as f64,
        images: seen,
    };
    let per_model = (0..models.len()).map(acc).collect();
    Ok((per_model, acc(models.len())))
}

fn nll(probs: &[f32], classes: usize, labels: &[usize]) -> f64 {
    labels
        .iter()
        .enumerate()
        .map(|(row, &l)| -(probs[row * classes + l].max(1e-12) as f64).ln())
        .sum()
}
