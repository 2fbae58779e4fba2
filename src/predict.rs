//! The most likely classes of image files under a trained checkpoint (`meal predict`). Images
//! of any size are fitted to the model's input as its dataset's eval transform does
//! ([`crate::data::load_image_for_eval`]) and normalised with the checkpoint's statistics.

use std::path::{Path, PathBuf};
use std::time::Instant;

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

/// Image files a folder given to `meal predict` contributes: PNG and JPEG by extension.
const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// `paths` with every folder replaced by the PNG and JPEG files under it (recursively, sorted by
/// path so that the output order does not depend on the file system). A file named directly is
/// kept whatever its extension: decoding it then says what is wrong. A folder holding no image
/// is an error naming it, as is a path that does not exist.
pub fn expand_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = out.len();
            walk(p, &mut out)?;
            if out.len() == before {
                return Err(Error::file(
                    p,
                    format!(
                        "folder holds no image ({} files)",
                        IMAGE_EXTENSIONS.join(", ")
                    ),
                ));
            }
            out[before..].sort();
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
    for entry in entries {
        let path = entry
            .map_err(|e| Error::file(dir, format!("cannot list: {e}")))?
            .path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// How long a [`predict`] call took over how many images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictStats {
    pub images: usize,
    pub batch_size: usize,
    /// Wall time of decoding and the forward passes, seconds (not loading the checkpoint).
    pub seconds: f64,
}

impl PredictStats {
    /// Images per second; an error where the clock gives no finite rate.
    pub fn images_per_s(&self) -> Result<f64> {
        let rate = self.images as f64 / self.seconds;
        if rate.is_finite() && self.seconds > 0.0 {
            Ok(rate)
        } else {
            Err(Error::Other(format!(
                "predict: {} images in {} s give no finite rate",
                self.images, self.seconds
            )))
        }
    }
}

/// Everything a [`predict`] call found.
pub struct PredictOutput {
    pub meta: ModelMeta,
    /// The checkpoint file used (a run folder resolved to its `best.ckpt`).
    pub checkpoint: PathBuf,
    /// One per image, in the order of `images`.
    pub predictions: Vec<Prediction>,
    pub stats: PredictStats,
}

/// Classifies `images` with the model in `checkpoint` (a file or a run folder), `batch_size`
/// images per forward pass, with a progress bar over the images. Images are decoded batch by
/// batch (a folder of any size fits in memory); an unreadable file fails the whole call naming
/// it, before anything is returned to print.
pub fn predict(
    checkpoint: &Path,
    images: &[PathBuf],
    k: usize,
    batch_size: usize,
) -> Result<PredictOutput> {
    if batch_size == 0 {
        return Err(Error::Config(
            "predict: --batch-size must be at least 1".into(),
        ));
    }
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
    let per_image = 3 * size * size;
    let start = Instant::now();
    let bar = crate::progress::bar(images.len(), "predict");
    // The other cores poll for the layers' split work instead of parking between layers
    // (`kernels::hot`); the weights are packed for the kernels once, not per batch, on the
    // thread that runs the forwards.
    let out = crate::kernels::hot::hot_on(&device, || -> Result<Vec<Prediction>> {
        let _prepared = crate::kernels::prepared::inference();
        let mut out = Vec::with_capacity(images.len());
        for chunk_imgs in images.chunks(batch_size) {
            let n = chunk_imgs.len();
            let mut flat = Vec::with_capacity(n * per_image);
            for img in chunk_imgs {
                flat.extend(crate::data::load_image_for_eval_with(
                    img,
                    size,
                    meta.normalization,
                    meta.eval_resize(),
                )?);
            }
            let x = Tensor::<4>::from_data(TensorData::new(flat, [n, 3, size, size]), &device);
            let (scores, classes) = host_rows(&net.forward(x).logits)?;
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
            bar.inc(n as u64);
        }
        Ok(out)
    })?;
    bar.finish_and_clear();
    let stats = PredictStats {
        images: out.len(),
        batch_size,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok(PredictOutput {
        meta,
        checkpoint: path,
        predictions: out,
        stats,
    })
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

    #[test]
    fn rates_must_be_finite() {
        let s = PredictStats {
            images: 10,
            batch_size: 4,
            seconds: 0.5,
        };
        assert_eq!(s.images_per_s().unwrap(), 20.0);
        for seconds in [0.0, f64::NAN, -1.0] {
            assert!(
                PredictStats { seconds, ..s }.images_per_s().is_err(),
                "{seconds}"
            );
        }
    }
}
