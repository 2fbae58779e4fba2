//! `meal train`: supervised (cross-entropy) training of a zoo model, the way MEAL's teachers are
//! trained (spec §1.2). Every epoch logs to `metrics.jsonl` and rewrites `last.ckpt` atomically;
//! `best.ckpt` follows the best test top-1. Resuming reloads model, optimizer and counters, and
//! since every random choice is a function of (seed, epoch, index), it continues bit-for-bit.

use std::path::Path;

use burn::optim::{GradientsParams, ModuleOptimizer};
use serde::{Deserialize, Serialize};

use super::checkpoint::Container;
use super::config::TrainConfig;
use super::divergence::Guard;
use super::model_io::{self, ModelMeta};
use super::prefetch::Input;
use super::readback::Readback;
use super::run::Start;
use super::runner::{self, EpochEnd, Measured, RunOutcome, Step, Task};
use super::tensors::cross_entropy;
use crate::data::Batch;
use crate::error::Result;
use crate::models::{self, Net};
use crate::progress;

const OPTIM: &str = "optim";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    #[serde(flatten)]
    pub measured: Measured,
}

pub type TrainOutcome = RunOutcome;

pub fn train(start: Start<TrainConfig>) -> Result<TrainOutcome> {
    runner::run(
        start,
        |_, _| Ok(()),
        |setup| {
            let config = setup.config;
            let train_set = &setup.splits.train;
            progress::say(format!(
                "meal train: {} on {} ({} classes) -> {}",
                config.arch,
                train_set.describe(),
                train_set.num_classes(),
                setup.run.path.display()
            ));
            let mut check = crate::backend::limits::Preflight::new();
            check.arch("model", &config.arch, train_set.num_classes())?;
            check.check()?;
            let device = crate::backend::autodiff_device();
            let model = crate::backend::seeded(&device, config.seed, || {
                models::build(&config.arch, train_set.num_classes(), &device)
            })?;
            Ok(Supervised {
                model,
                optim: config.optimizer.init(),
                loss_sum: 0.0,
                seen: 0,
            })
        },
    )
}

/// Cross-entropy training of one model: the task of `meal train`.
struct Supervised {
    model: Net,
    optim: ModuleOptimizer,
    /// This epoch's summed per-image loss and image count.
    loss_sum: f64,
    seen: usize,
}

impl Task for Supervised {
    type Record = EpochRecord;
    const COMMAND: &'static str = "train";
    const MODEL: &'static str = "model";
    const RATE_KEYS: &'static [&'static str] = &["lr"];

    fn model(&self) -> &Net {
        &self.model
    }

    fn load(self, c: &Container, path: &Path) -> Result<Self> {
        Ok(Self {
            model: runner::load_model_section(self.model, c, path)?,
            optim: runner::load_optim_bytes(self.optim, c.get(path, OPTIM)?, path)?,
            ..self
        })
    }

    fn step(
        mut self,
        batch: &Batch,
        input: Input,
        _epoch: usize,
        _index: usize,
        lr: f64,
        ahead: &mut dyn FnMut(),
    ) -> Result<(Self, Step)> {
        let (x, y) = (input.images, input.labels);
        let out = self.model.forward(x);
        let classes = out.logits.dims()[1];
        let loss = cross_entropy(out.logits.clone(), y);
        let mut readback = Readback::new();
        let (loss_slot, logits_slot) = (readback.push(loss.clone()), readback.push(out.logits));
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optim.step(lr, self.model, grads);
        // Read after the update and the next batch's upload are queued: the step's one wait
        // for the device.
        ahead();
        let values = readback.read()?;
        let loss_value = values.scalar(Some(loss_slot));
        let n = batch.labels.len();
        self.loss_sum += loss_value * n as f64;
        self.seen += n;
        let step = Step {
            rates: vec![("lr", lr)],
            losses: vec![("cross-entropy", loss_value)],
            scores: values.get(logits_slot).to_vec(),
            classes,
        };
        Ok((self, step))
    }

    fn progress(&self) -> String {
        format!("loss {:.3}", self.loss_sum / self.seen.max(1) as f64)
    }

    fn check_weights(&self, guard: &Guard, epoch: usize) -> Result<()> {
        guard.weights(epoch, "model", &self.model)
    }

    fn end_epoch(&mut self, end: EpochEnd) -> (EpochRecord, String) {
        let m = &end.measured;
        let train_loss = self.loss_sum / self.seen.max(1) as f64;
        (self.loss_sum, self.seen) = (0.0, 0);
        let line = format!(
            "epoch {:>3}/{} lr {:.4} loss {:.4} train {:.2}% test {:.2}% (top-5 {:.2}%) {:.0} img/s",
            end.epoch + 1,
            end.epochs,
            end.lr,
            train_loss,
            m.train_acc,
            m.test_top1,
            m.test_top5,
            m.images_per_sec
        );
        let record = EpochRecord {
            epoch: end.epoch,
            lr: end.lr,
            train_loss,
            measured: end.measured,
        };
        (record, line)
    }

    fn sections(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        Ok(vec![(OPTIM, runner::optim_bytes(&self.optim)?)])
    }
}

/// The trained model of a finished or interrupted run (for tests and the quickstart).
pub fn load_run_model(run_dir: &Path, best: bool) -> Result<(Net, ModelMeta)> {
    let path = run_dir.join(if best {
        super::run_dir::BEST
    } else {
        super::run_dir::LAST
    });
    let (net, meta, _) = model_io::load_model(&path, &crate::backend::device())?;
    Ok((net, meta))
}
