//! `meal train`: supervised (cross-entropy) training of a zoo model, the way MEAL's teachers are
//! trained (spec §1.2). Every epoch logs to `metrics.jsonl` and rewrites `last.ckpt` atomically;
//! `best.ckpt` follows the best test top-1. Resuming reloads model, optimizer and counters, and
//! since every random choice is a function of (seed, epoch, index), it continues bit-for-bit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use serde::{Deserialize, Serialize};

use super::checkpoint::Container;
use super::config::TrainConfig;
use super::divergence::Guard;
use super::evaluate::{Accuracy, evaluate};
use super::model_io::{self, ModelMeta};
use super::run::Start;
use super::run_dir::RunDir;
use super::tensors::{batch_tensors, cross_entropy, host_rows, topk_correct};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::{self, Net};
use crate::progress;

const OPTIM: &str = "optim";
pub(crate) const STATE: &str = "state";

/// Counters that, with the weights and optimizer state, define where a run stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    pub epochs_done: usize,
    pub best_acc: f64,
    pub best_epoch: usize,
}

impl RunState {
    /// Records a finished epoch; returns whether its accuracy is the best so far.
    pub fn finish_epoch(&mut self, epoch: usize, top1: f64) -> bool {
        self.epochs_done = epoch + 1;
        let improved = top1 > self.best_acc || self.epochs_done == 1;
        if improved {
            self.best_acc = top1;
            self.best_epoch = epoch + 1;
        }
        improved
    }
}

/// Writes `best.ckpt` (the model alone, when `improved`) and `last.ckpt` (the model, the
/// `extra` sections and the run state), each atomically.
pub(crate) fn save_checkpoints(
    run: &RunDir,
    meta: &ModelMeta,
    model: &Net,
    improved: bool,
    state: &RunState,
    extra: Vec<(&str, Vec<u8>)>,
) -> Result<()> {
    if improved {
        model_io::model_container(meta, model)?.save_atomic(&run.best())?;
    }
    let mut c = model_io::model_container(meta, model)?;
    for (name, bytes) in extra {
        c.insert(name, bytes);
    }
    c.insert_json(STATE, state)?;
    c.save_atomic(&run.last())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_top1: f64,
    pub test_top5: f64,
    pub test_loss: f64,
    pub images_per_sec: f64,
    pub epoch_seconds: f64,
}

#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub run_dir: PathBuf,
    pub best_acc: f64,
    pub last: Accuracy,
    pub epochs_done: usize,
    pub seconds: f64,
}

pub fn train(start: Start<TrainConfig>) -> Result<TrainOutcome> {
    let o = super::run::open(start)?;
    train_in(&o.config, &o.run, o.resume, o.splits.train, o.splits.test)
}

pub fn train_in(
    config: &TrainConfig,
    run: &RunDir,
    resume: bool,
    train_set: Arc<dyn Dataset>,
    test_set: Arc<dyn Dataset>,
) -> Result<TrainOutcome> {
    super::interrupt::install();
    let started = Instant::now();
    let device = crate::backend::autodiff_device();
    let plain = crate::backend::device();
    let num_classes = train_set.num_classes();
    let meta = ModelMeta {
        meal_version: env!("CARGO_PKG_VERSION").to_string(),
        arch: config.arch.clone(),
        num_classes,
        input_shape: train_set.output_shape(),
        normalization: train_set.normalization(),
        class_names: train_set.class_names(),
        source: "train".into(),
        epoch: 0,
        test_acc: None,
    };
    progress::say(format!(
        "meal train: {} on {} ({} classes) -> {}",
        config.arch,
        train_set.describe(),
        num_classes,
        run.path.display()
    ));
    let (train_loader, test_loader) = super::run::loaders(
        train_set,
        test_set,
        config.batch_size,
        config.eval_batch_size,
        config.seed,
        config.num_workers,
    );

    device.seed(config.seed);
    let mut model = models::build(&config.arch, num_classes, &device)?;
    let mut optim = config.optimizer.init();
    let mut state = RunState::default();
    if resume {
        let path = run.last();
        let c = Container::load(&path)?;
        model = model_io::load_weights(model, c.get(&path, model_io::MODEL)?, &path)?;
        optim = load_optim(optim, &c, &path)?;
        state = c.get_json(&path, STATE)?;
        run.truncate_metrics(state.epochs_done)?;
        progress::say(format!(
            "resuming at epoch {} (best {:.2}%)",
            state.epochs_done + 1,
            state.best_acc
        ));
    }

    let mut last = Accuracy::default();
    for epoch in state.epochs_done..config.epochs {
        let t0 = Instant::now();
        let bar = progress::bar(train_loader.num_batches(), &format!("epoch {}", epoch + 1));
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let mut lr = 0.0;
        let nb = train_loader.num_batches().max(1);
        let guard = Guard {
            command: "train",
            run_dir: &run.path,
            epochs_done: state.epochs_done,
            rate_keys: &["lr"],
        };
        for (i, batch) in train_loader.epoch(epoch).enumerate() {
            if super::interrupt::requested() {
                bar.abandon();
                return Err(Error::Interrupted(format!(
                    "stopped in epoch {}; `meal train --resume {}` continues from epoch {}",
                    epoch + 1,
                    run.path.display(),
                    state.epochs_done + 1
                )));
            }
            let batch = batch?;
            lr = config
                .schedule
                .lr(config.lr, epoch, i as f64 / nb as f64, config.epochs);
            let (x, y) = batch_tensors(&batch, &device);
            let out = model.forward(x);
            let loss = cross_entropy(out.logits.clone(), y);
            let (scores, k) = host_rows(&out.logits);
            correct += topk_correct(&scores, k, &batch.labels, 1);
            let n = batch.labels.len();
            let loss_value = loss.clone().into_scalar::<f32>() as f64;
            if let Err(e) = guard.losses(
                epoch,
                i,
                nb,
                &[("lr", lr)],
                &[("cross-entropy", loss_value)],
            ) {
                bar.abandon();
                return Err(e);
            }
            loss_sum += loss_value * n as f64;
            seen += n;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.3} acc {:.1}%",
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64
            ));
        }
        bar.finish_and_clear();
        let train_seconds = t0.elapsed().as_secs_f64();
        guard.weights(epoch, "model", &model)?;
        let (accs, _) = evaluate(&[&model.valid()], &test_loader, &plain)?;
        guard.outputs(epoch, "model", &accs[0])?;
        last = accs[0];
        let improved = state.finish_epoch(epoch, last.top1);
        let record = EpochRecord {
            epoch,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: 100.0 * correct as f64 / seen.max(1) as f64,
            test_top1: last.top1,
            test_top5: last.top5,
            test_loss: last.loss,
            images_per_sec: seen as f64 / train_seconds,
            epoch_seconds: t0.elapsed().as_secs_f64(),
        };
        run.log_metrics(&record)?;
        progress::say(format!(
            "epoch {:>3}/{} lr {:.4} loss {:.4} train {:.2}% test {:.2}% (top-5 {:.2}%) {:.0} img/s",
            epoch + 1,
            config.epochs,
            lr,
            record.train_loss,
            record.train_acc,
            last.top1,
            last.top5,
            record.images_per_sec
        ));
        let meta = ModelMeta {
            epoch: epoch + 1,
            test_acc: Some(last.top1),
            ..meta.clone()
        };
        save_checkpoints(
            run,
            &meta,
            &model,
            improved,
            &state,
            vec![(OPTIM, optim_bytes(&optim)?)],
        )?;
    }
    Ok(TrainOutcome {
        run_dir: run.path.clone(),
        best_acc: state.best_acc,
        last,
        epochs_done: state.epochs_done,
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub(crate) fn optim_bytes(optim: &burn::optim::ModuleOptimizer) -> Result<Vec<u8>> {
    Ok(optim
        .into_bytes()
        .map_err(|e| Error::Other(format!("cannot serialise optimizer: {e}")))?
        .to_vec())
}

pub(crate) fn load_optim_bytes(
    optim: burn::optim::ModuleOptimizer,
    bytes: &[u8],
    path: &Path,
) -> Result<burn::optim::ModuleOptimizer> {
    optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| Error::checkpoint(path, format!("optimizer state is corrupt: {e}")))
}

fn load_optim(
    optim: burn::optim::ModuleOptimizer,
    c: &Container,
    path: &Path,
) -> Result<burn::optim::ModuleOptimizer> {
    load_optim_bytes(optim, c.get(path, OPTIM)?, path)
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
