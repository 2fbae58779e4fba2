//! One zoo model alone: a supervised training step (forward, cross-entropy, backward, SGD with
//! momentum 0.9 and weight decay 5e-4, as `meal train`) and an eval-mode forward.

use burn::module::Module;
use burn::optim::GradientsParams;

use super::input::Input;
use super::timing::{Throughput, measure};
use crate::backend::limits::Preflight;
use crate::backend::read::scalar;
use crate::error::{Error, Result};
use crate::train::optim::SgdSettings;
use crate::train::tensors::cross_entropy;

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

/// What [`bench_arch`] measured: training and inference throughput, and the model's forward
/// MACs per image at the input it ran on.
pub struct ArchRun {
    pub train: Throughput,
    pub infer: Throughput,
    pub macs_per_image: u64,
}

/// Throughput of `arch` at `batch` on random `input` images seeded by `seed`.
pub fn bench_arch(
    arch: &str,
    input: Input,
    batch: usize,
    warmup: usize,
    steps: usize,
    seed: u64,
) -> Result<ArchRun> {
    let mut check = Preflight::new();
    check.arch(arch, arch, input.classes)?;
    check.check()?;
    let device = crate::backend::autodiff_device();
    let (net, macs_per_image, (x, y)) = crate::backend::seeded(&device, seed, || -> Result<_> {
        let net = crate::models::build(arch, input.classes, &device)?;
        let macs_per_image = input.probe(arch, &net)?;
        Ok((net, macs_per_image, input.random_batch(batch, &device)))
    })?;
    let mut model = Some(net);
    let mut optim = SgdSettings::default().init();
    let train = measure(batch, warmup, steps, |_| {
        let m = model
            .take()
            .expect("the model is put back after every step");
        let loss = cross_entropy(m.forward(x.clone()).logits, y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(0.1, m, grads));
        finite("cross-entropy", scalar(loss, "the training step's loss")?)
    })?;
    let eval = model.expect("trained model").valid();
    let xi = x.inner();
    let infer = measure(batch, warmup, steps, |_| {
        let logits = eval.forward(xi.clone()).logits;
        finite("logit sum", scalar(logits.sum(), "the sum of the logits")?)
    })?;
    Ok(ArchRun {
        train,
        infer,
        macs_per_image,
    })
}
