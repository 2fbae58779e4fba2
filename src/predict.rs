//! The most likely classes of image files under a trained checkpoint (`meal predict`). Images
//! of any size are fitted to the model's input as its dataset's eval transform does
//! ([`crate::data::load_image_for_eval`]) and normalised with the checkpoint's statistics.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::train::model_io::{ModelMeta, load_model};
use crate::train::tensors::{host_rows, row_is_finite, softmax_rows};

/// One of an image's most likely classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassProb {
    pub index: usize,
    pub class: String,
    pub prob: f64,
}

/// The most likely classes of one image, most likely first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub image: PathBuf,
    /// Empty when `nonfinite`: a NaN or infinite output has no ranking.
    pub top: Vec<ClassProb>,
    /// The model's outputs for this image held a NaN or an infinity (diverged weights).
    pub nonfinite: bool,
}

/// The `k` largest probabilities of `probs`, descending (ties: lower index first).
pub fn top_k(probs: &[f32], k: usize, names: &[String]) -> Vec<ClassProb> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| ClassProb {
            index: i,
            class: names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}")),
            prob: probs[i] as f64,
        })
        .collect()
}

/// Classifies `images` with the model in `checkpoint` (a file or a run folder). Every image is
/// decoded before the model runs, so an unreadable file fails the call naming it.
pub fn predict(
    checkpoint: &Path,
    images: &[PathBuf],
    k: usize,
    batch_size: usize,
) -> Result<(ModelMeta, PathBuf, Vec<Prediction>)> {
    let path = crate::train::run_dir::resolve_checkpoint(checkpoint);
    let device = crate::backend::device();
    let (net, meta, _) = load_model(&path, &device)?;
    let [channels, height, width] = meta.input_shape;
    if channels != 3 || height != width || height == 0 {
        return Err(Error::checkpoint(
            &path,
            format!(
                "input shape {:?} is not a square RGB image; predict supports [3, s, s]",
                meta.input_shape
            ),
        ));
    }
    let size = height;
    let mut inputs = Vec::with_capacity(images.len());
    for img in images {
        inputs.push(crate::data::load_image_for_eval(
            img,
            size,
            meta.normalization,
        )?);
    }
    let per_image = 3 * size * size;
    let mut out = Vec::with_capacity(images.len());
    for (chunk_imgs, chunk) in images
        .chunks(batch_size.max(1))
        .zip(inputs.chunks(batch_size.max(1)))
    {
        let n = chunk.len();
        let mut flat = Vec::with_capacity(n * per_image);
        for x in chunk {
            flat.extend_from_slice(x);
        }
        let x = Tensor::<4>::from_data(TensorData::new(flat, [n, 3, size, size]), &device);
        let (scores, classes) = host_rows(&net.forward(x).logits);
        let probs = softmax_rows(&scores, classes);
        for ((img, row), logits) in chunk_imgs
            .iter()
            .zip(probs.chunks(classes))
            .zip(scores.chunks(classes))
        {
            let nonfinite = !row_is_finite(logits);
            out.push(Prediction {
                image: img.clone(),
                top: if nonfinite {
                    Vec::new()
                } else {
                    top_k(row, k.min(classes), &meta.class_names)
                },
                nonfinite,
            });
        }
    }
    Ok((meta, path, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_names() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let t = top_k(&[0.2, 0.5, 0.2, 0.1], 3, &names);
        assert_eq!(t.iter().map(|c| c.index).collect::<Vec<_>>(), vec![1, 0, 2]);
        assert_eq!(t[0].class, "b");
        assert_eq!(top_k(&[0.1, 0.2, 0.3, 0.4], 1, &names)[0].class, "class 3");
    }
}
