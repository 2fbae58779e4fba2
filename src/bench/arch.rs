//! One zoo model alone: a supervised training step (forward, cross-entropy, backward, SGD with
//! momentum 0.9 and weight decay 5e-4, as `meal train`) and an eval-mode forward.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use super::timing::{Throughput, measure};
use crate::error::{Error, Result};
use crate::train::optim::SgdSettings;
use crate::train::tensors::cross_entropy;

/// CIFAR-10's shape: the zoo's models and the numbers in BENCHMARKS.md are all at 32×32.
pub const CLASSES: usize = 10;

/// A seeded random batch of `(batch, 3, 32, 32)` standard-normal images and cycling labels.
pub fn random_batch(batch: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let x = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), device);
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % CLASSES as i64).collect();
    let y = Tensor::from_data(TensorData::new(labels, [batch]), device);
    (x, y)
}

/// Fails when a loss read back from a step is not finite: a diverged step times other work.
pub fn finite(what: &str, value: f32) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "bench: the {what} became {value}; the measurement would not be of a real step"
        )))
    }
}

/// `(training, inference)` throughput of `arch` at `batch` on random data seeded by `seed`.
pub fn bench_arch(
    arch: &str,
    batch: usize,
    warmup: usize,
    steps: usize,
    seed: u64,
) -> Result<(Throughput, Throughput)> {
    let device = crate::backend::autodiff_device();
    device.seed(seed);
    let mut model = Some(crate::models::build(arch, CLASSES, &device)?);
    let mut optim = SgdSettings::default().init();
    let (x, y) = random_batch(batch, &device);
    let train = measure(batch, warmup, steps, |_| {
        let m = model
            .take()
            .expect("the model is put back after every step");
        let loss = cross_entropy(m.forward(x.clone()).logits, y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(0.1, m, grads));
        finite("cross-entropy", loss.into_scalar())
    })?;
    let eval = model.expect("trained model").valid();
    let xi = x.inner();
    let infer = measure(batch, warmup, steps, |_| {
        let logits = eval.forward(xi.clone()).logits;
        finite("logit sum", logits.sum().into_scalar())
    })?;
    Ok((train, infer))
}
