//! Inference latency of one zoo model: the eval-mode forward at batch 1 and batch 8, each run
//! timed alone, as ms per image (median and 90th percentile). A deployed student answers one
//! request, or a handful, at a time; its throughput at batch 128 does not say how long that takes.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use serde::Serialize;

use super::arch::finite;
use super::input::Input;
use crate::backend::read::scalar;
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::train::model_io::{ModelMeta, model_container};

/// The batch sizes measured: one request, and a small batch of them.
pub const LATENCY_BATCHES: [usize; 2] = [1, 8];

/// Latency at one batch size, over the timed runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub batch: usize,
    pub runs: usize,
    /// Median run time divided by the batch, milliseconds.
    pub median_ms_per_image: f64,
    /// 90th percentile (nearest rank) of the run times divided by the batch, milliseconds.
    pub p90_ms_per_image: f64,
}

impl Latency {
    /// From run times in seconds (at least one); non-finite or non-positive times are refused.
    pub fn from_times(batch: usize, times: &[f64]) -> Result<Self> {
        if times.is_empty() {
            return Err(Error::Config("bench: --steps must be at least 1".into()));
        }
        let mut sorted = times.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = super::timing::median_of_sorted(&sorted);
        // Nearest rank: the smallest time that at least 90% of the runs do not exceed.
        let p90 = sorted[(n * 9).div_ceil(10) - 1];
        let per_image = |t: f64| t * 1e3 / batch as f64;
        let l = Self {
            batch,
            runs: n,
            median_ms_per_image: per_image(median),
            p90_ms_per_image: per_image(p90),
        };
        for (what, v) in [
            ("median latency", l.median_ms_per_image),
            ("p90 latency", l.p90_ms_per_image),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return Err(Error::Other(format!(
                    "bench: the {what} at batch {batch} came out as {v} ms; the clock measured nothing"
                )));
            }
        }
        Ok(l)
    }
}

/// Latency of `arch`'s eval forward on `input` (weights seeded by `seed`) at every batch of
/// [`LATENCY_BATCHES`]; with `save`, also writes those weights as a checkpoint, so that another
/// runtime can be timed on the very model meal timed (`meal export`).
pub fn bench_latency(
    arch: &str,
    input: Input,
    warmup: usize,
    steps: usize,
    seed: u64,
    save: Option<&Path>,
) -> Result<Vec<Latency>> {
    if steps == 0 {
        return Err(Error::Config("bench: --steps must be at least 1".into()));
    }
    let mut check = crate::backend::limits::Preflight::new();
    check.arch(arch, arch, input.classes)?;
    check.check()?;
    let device = crate::backend::device();
    let s = input.size;
    let (model, inputs) = crate::backend::seeded(&device, seed, || -> Result<_> {
        let model = crate::models::build(arch, input.classes, &device)?;
        let inputs = LATENCY_BATCHES.map(|batch| {
            Tensor::<4>::random([batch, 3, s, s], Distribution::Normal(0.0, 1.0), &device)
        });
        Ok((model, inputs))
    })?;
    if let Some(path) = save {
        let meta = ModelMeta {
            meal_version: env!("CARGO_PKG_VERSION").into(),
            arch: arch.to_string(),
            num_classes: input.classes,
            input_shape: [3, input.size, input.size],
            normalization: match crate::models::arch_info(arch)?.form {
                crate::models::Form::Cifar => Normalization::CIFAR10,
                crate::models::Form::ImageNet => Normalization::IMAGENET,
            },
            class_names: crate::interop::default_class_names(input.classes),
            source: "bench".into(),
            epoch: 0,
            test_acc: None,
            crop_pct: None,
            interpolation: Default::default(),
        };
        model_container(&meta, &model)?.save_atomic(path)?;
    }
    // The other cores poll for the layers' split work instead of parking between layers
    // (`kernels::hot`); a served model packs its weights once (`kernels::prepared`), in the
    // warm-up runs, on the thread that runs the forwards.
    crate::kernels::hot::hot_on(&device, || {
        let _prepared = crate::kernels::prepared::inference();
        let mut out = Vec::new();
        for (batch, x) in LATENCY_BATCHES.into_iter().zip(inputs) {
            let mut times = Vec::with_capacity(steps);
            for i in 0..warmup + steps {
                let t = Instant::now();
                // Reading the sum back waits for the forward to finish.
                let sum: f32 = scalar(
                    model.forward(x.clone()).logits.sum(),
                    "the sum of the logits",
                )?;
                let elapsed = t.elapsed().as_secs_f64();
                finite("logit sum", sum)?;
                if i >= warmup {
                    times.push(elapsed);
                }
            }
            out.push(Latency::from_times(batch, &times)?);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_per_image() {
        // Ten runs of 10..100 ms at batch 8: median 55 ms, p90 the 9th (90 ms).
        let times: Vec<f64> = (1..=10).rev().map(|i| i as f64 * 0.01).collect();
        let l = Latency::from_times(8, &times).unwrap();
        assert_eq!(l.runs, 10);
        assert!((l.median_ms_per_image - 55.0 / 8.0).abs() < 1e-9, "{l:?}");
        assert!((l.p90_ms_per_image - 90.0 / 8.0).abs() < 1e-9, "{l:?}");
        let l = Latency::from_times(1, &[0.003, 0.001, 0.002]).unwrap();
        assert!((l.median_ms_per_image - 2.0).abs() < 1e-9, "{l:?}");
        assert!((l.p90_ms_per_image - 3.0).abs() < 1e-9, "{l:?}");
        assert!(Latency::from_times(1, &[]).is_err());
        assert!(Latency::from_times(1, &[0.001, f64::NAN]).is_err());
        assert!(Latency::from_times(1, &[0.0]).is_err());
    }
}
