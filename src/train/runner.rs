//! The skeleton every kind of run shares. It owns the run: opening or resuming its folder, the
//! epoch loop with its learning-rate schedule, stop requests and progress, the divergence
//! guard, evaluation, `metrics.jsonl`, the checkpoints, and the cleanup of a fresh run that
//! failed before it saved anything. A kind of run (supervised training, MEAL distillation)
//! supplies only a [`Task`]: its per-batch step, what it checkpoints, and its epoch record, in
//! the spirit of burn-train's `TrainStep` / `ValidStep` split.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use serde::{Deserialize, Serialize};

use super::checkpoint::Container;
use super::divergence::Guard;
use super::evaluate::{Accuracy, evaluate};
use super::model_io::{self, ModelMeta};
use super::prefetch::{Fetched, Input, Prefetch};
use super::run::{Opened, Start};
use super::run_dir::RunDir;
pub use super::run_state::{RunState, STATE};
use super::settings::{RunConfig, Settings};
use super::tensors::topk_correct;
use crate::data::{Batch, DataSplits, Loader};
use crate::error::{Error, Result};
use crate::models::Net;
use crate::progress;

/// What one step reports back to the skeleton.
pub struct Step {
    /// The step's named learning rates, main one first (for the divergence message).
    pub rates: Vec<(&'static str, f64)>,
    /// The losses the divergence guard checks.
    pub losses: Vec<(&'static str, f64)>,
    /// The trained model's logits on the batch (host copy, row-major), for the training
    /// accuracy, and their class count.
    pub scores: Vec<f32>,
    pub classes: usize,
}

/// What the skeleton measured of a finished epoch.
pub struct EpochEnd {
    pub epoch: usize,
    pub epochs: usize,
    /// The (student's) learning rate at the epoch's last batch.
    pub lr: f64,
    pub measured: Measured,
}

/// The measurements every epoch record ends with (`metrics.jsonl` keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub train_acc: f64,
    pub test_top1: f64,
    pub test_top5: f64,
    pub test_loss: f64,
    pub images_per_sec: f64,
    pub epoch_seconds: f64,
    /// Training images left out as undecodable (`data.skip_corrupt`); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_corrupt: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A kind of run, once built: the models and optimizers it trains and how one batch trains
/// them. Steps take and return the task by value, as burn's optimizers take modules.
pub trait Task: Sized {
    /// One line of `metrics.jsonl`.
    type Record: Serialize;
    /// The command whose `--resume` continues the run (`train`, `distill`).
    const COMMAND: &'static str;
    /// What messages call the trained model (`model`, `student`).
    const MODEL: &'static str;
    /// The config keys of the run's learning rates, main one first, for the divergence hint.
    const RATE_KEYS: &'static [&'static str];

    /// The network that is evaluated and saved in `best.ckpt` and `last.ckpt`.
    fn model(&self) -> &Net;
    /// Takes the model and the sections of [`Task::sections`] from a resumed run's `last.ckpt`.
    fn load(self, c: &Container, path: &Path) -> Result<Self>;
    /// One optimisation step on `batch` (batch `index` of epoch `epoch`, already on the device
    /// as `input`) at learning rate `lr`. Once the update is queued and before the step's one
    /// read from the device, it calls `ahead`, which uploads the next batch ([`Prefetch`]). A
    /// failed read ends the run, as a diverged step does.
    ///
    /// [`Prefetch`]: super::prefetch::Prefetch
    fn step(
        self,
        batch: &Batch,
        input: Input,
        epoch: usize,
        index: usize,
        lr: f64,
        ahead: &mut dyn FnMut(),
    ) -> Result<(Self, Step)>;
    /// The running means the progress bar shows (the skeleton adds the accuracy).
    fn progress(&self) -> String;
    /// Fails if anything this task trains holds a non-finite weight or buffer.
    fn check_weights(&self, guard: &Guard, epoch: usize) -> Result<()>;
    /// The epoch's `metrics.jsonl` record and log line; starts the next epoch's sums afresh.
    fn end_epoch(&mut self, end: EpochEnd) -> (Self::Record, String);
    /// What `last.ckpt` holds beside the model and the run state (optimizer states, ...).
    fn sections(&self) -> Result<Vec<(&'static str, Vec<u8>)>>;
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub best_acc: f64,
    pub last: Accuracy,
    pub epochs_done: usize,
    pub seconds: f64,
}

impl RunOutcome {
    fn new(run: &RunDir, state: &RunState, last: Accuracy, started: Instant) -> Self {
        Self {
            run_dir: run.path.clone(),
            best_acc: state.best_acc,
            last,
            epochs_done: state.epochs_done,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// What a kind's `build` gets: the opened run and its loaders.
pub struct Setup<'a, C> {
    pub config: &'a C,
    pub run: &'a RunDir,
    /// Whether the run continues from its folder's `last.ckpt`.
    pub resume: bool,
    pub splits: &'a DataSplits,
    /// The shuffled, augmented training loader (a kind may replace its views).
    pub train: Loader,
    pub test: Loader,
}

/// Runs a kind of run from `start` to its last epoch: `preflight` checks a fresh run's inputs
/// before its folder exists, `build` makes the task (and may print and write what the kind
/// adds to the folder). A fresh run that fails before it saved an epoch leaves no folder behind;
/// a refused resume leaves its folder as it was.
pub fn run<C: RunConfig, T: Task>(
    start: Start<C>,
    preflight: impl FnOnce(&C, &DataSplits) -> Result<()>,
    build: impl FnOnce(&mut Setup<'_, C>) -> Result<T>,
) -> Result<RunOutcome> {
    super::interrupt::install();
    let started = Instant::now();
    let mut opened = super::run::open(start, preflight)?;
    if opened.finished {
        return recorded_outcome(&opened.run, started);
    }
    let result = execute(&mut opened, build, started);
    if result.is_err() && !opened.resume {
        opened.run.discard_unsaved();
    }
    result
}

fn execute<C: RunConfig, T: Task>(
    opened: &mut Opened<C>,
    build: impl FnOnce(&mut Setup<'_, C>) -> Result<T>,
    started: Instant,
) -> Result<RunOutcome> {
    let s: Settings<'_> = opened.config.settings();
    let (train, test) = super::run::loaders(
        opened.splits.train.clone(),
        opened.splits.test.clone(),
        s.batch_size,
        s.eval_batch_size,
        s.seed,
        s.num_workers,
    );
    let resume = opened.resume;
    let mut setup = Setup {
        config: &opened.config,
        run: &opened.run,
        resume,
        splits: &opened.splits,
        train,
        test,
    };
    let mut task = build(&mut setup)?;
    let Setup {
        train: train_loader,
        test: test_loader,
        ..
    } = setup;
    let run = &opened.run;
    let train_set = &opened.splits.train;
    let meta = ModelMeta {
        meal_version: env!("CARGO_PKG_VERSION").to_string(),
        arch: String::new(),
        num_classes: train_set.num_classes(),
        input_shape: train_set.output_shape(),
        normalization: train_set.normalization(),
        class_names: train_set.class_names(),
        source: T::COMMAND.into(),
        epoch: 0,
        test_acc: None,
        crop_pct: train_set.input_settings().map(|i| i.crop_pct),
        interpolation: train_set
            .input_settings()
            .map(|i| i.interpolation)
            .unwrap_or_default(),
    };
    let mut state = RunState::default();
    if resume {
        let path = run.last();
        let c = Container::load(&path)?;
        task = task.load(&c, &path)?;
        state = c.get_json(&path, STATE)?;
        progress::say(format!(
            "resuming at epoch {} (best {:.2}%)",
            state.epochs_done + 1,
            state.best_acc
        ));
    }
    opened.begin(state.epochs_done)?;
    let meta = ModelMeta {
        arch: opened.config.model_arch().to_string(),
        ..meta
    };

    let run = &opened.run;
    let plain = crate::backend::device();
    let trained_on = crate::backend::autodiff_device();
    let s = opened.config.settings();
    let nb = train_loader.num_batches().max(1);
    let mut last = Accuracy::default();
    for epoch in state.epochs_done..s.epochs {
        let t0 = Instant::now();
        let bar = progress::bar(nb, &format!("epoch {}", epoch + 1));
        let (mut correct, mut seen, mut skipped) = (0usize, 0usize, 0usize);
        let mut lr = 0.0;
        let guard = Guard {
            command: T::COMMAND,
            run_dir: &run.path,
            epochs_done: state.epochs_done,
            rate_keys: T::RATE_KEYS,
        };
        let mut batches = Prefetch::new(train_loader.epoch(epoch), trained_on.clone());
        while let Some(fetched) = batches.next() {
            if super::interrupt::requested() {
                bar.abandon();
                return Err(Error::Interrupted(stopped(T::COMMAND, run, epoch, &state)));
            }
            let Fetched {
                index: i,
                batch,
                input,
            } = fetched?;
            for msg in &batch.skipped {
                progress::say(format!("skipped (data.skip_corrupt): {msg}"));
            }
            skipped += batch.skipped.len();
            let Some(input) = input else {
                bar.inc(1);
                continue;
            };
            lr = s.schedule.lr(s.lr, epoch, i as f64 / nb as f64, s.epochs);
            // On this thread (burn keeps BatchNorm's running statistics per thread), the
            // pool's other workers polling for the step's parallel work.
            let stepped = crate::kernels::hot::here(&plain, || {
                task.step(&batch, input, epoch, i, lr, &mut || batches.ahead())
            });
            let (next, step) = match stepped {
                Ok(s) => s,
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            };
            task = next;
            // The step has already updated the weights, but a failed step ends the run and
            // nothing of this epoch is saved, so the damage never leaves memory.
            if let Err(e) = guard.losses(epoch, i, nb, &step.rates, &step.losses) {
                bar.abandon();
                return Err(e);
            }
            correct += topk_correct(&step.scores, step.classes, &batch.labels, 1);
            seen += batch.labels.len();
            bar.inc(1);
            bar.set_message(format!(
                "{} acc {:.1}%",
                task.progress(),
                100.0 * correct as f64 / seen as f64
            ));
        }
        bar.finish_and_clear();
        let train_seconds = t0.elapsed().as_secs_f64();
        task.check_weights(&guard, epoch)?;
        let (accs, _) = evaluate(&[&task.model().valid()], &test_loader, &plain)?;
        guard.outputs(epoch, T::MODEL, &accs[0])?;
        // burn reads the weights for the checkpoint's record with reads that panic on a device
        // failure; a failure still pending ends the run here, before the epoch writes anything.
        crate::backend::read::sync(&plain, "the epoch's weights")?;
        last = accs[0];
        let improved = state.finish_epoch(epoch, last.top1);
        let (record, line) = task.end_epoch(EpochEnd {
            epoch,
            epochs: s.epochs,
            lr,
            measured: Measured {
                train_acc: 100.0 * correct as f64 / seen.max(1) as f64,
                test_top1: last.top1,
                test_top5: last.top5,
                test_loss: last.loss,
                images_per_sec: seen as f64 / train_seconds,
                epoch_seconds: t0.elapsed().as_secs_f64(),
                skipped_corrupt: skipped,
            },
        });
        run.log_metrics(&record)?;
        progress::say(line);
        let meta = ModelMeta {
            epoch: epoch + 1,
            test_acc: Some(last.top1),
            ..meta.clone()
        };
        save_checkpoints(run, &meta, task.model(), improved, &state, task.sections()?)?;
    }
    Ok(RunOutcome::new(run, &state, last, started))
}

/// What a finished run recorded: its state and the test accuracy of its last epoch, as
/// `metrics.jsonl` holds it (a resume with nothing left to train measures nothing).
fn recorded_outcome(run: &RunDir, started: Instant) -> Result<RunOutcome> {
    let state = super::run_state::read(run)?;
    let path = run.path.join(super::run_dir::METRICS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, e))?;
    let last = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["epoch"].as_u64() == Some(state.epochs_done as u64 - 1))
        .and_then(|r| {
            Some(Accuracy {
                top1: r["test_top1"].as_f64()?,
                top5: r["test_top5"].as_f64()?,
                loss: r["test_loss"].as_f64()?,
                ..Accuracy::default()
            })
        })
        .ok_or_else(|| {
            Error::file(
                &path,
                format!("holds no test result of epoch {}", state.epochs_done),
            )
        })?;
    progress::say(format!(
        "{} has finished all {} epochs of its schedule; nothing left to train (--epochs N \
         extends it)",
        run.path.display(),
        state.epochs_done
    ));
    Ok(RunOutcome::new(run, &state, last, started))
}

/// The message of a stop request: where the run stands and how to go on.
fn stopped(command: &str, run: &RunDir, epoch: usize, state: &RunState) -> String {
    if state.epochs_done == 0 && !run.last().exists() {
        return format!(
            "stopped in epoch {} before any epoch was saved, so there is nothing to resume and \
             the new run folder {} is removed; start the run again to train it",
            epoch + 1,
            run.path.display()
        );
    }
    format!(
        "stopped in epoch {}; `meal {command} --resume {}` continues from epoch {}",
        epoch + 1,
        run.path.display(),
        state.epochs_done + 1
    )
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

/// The model weights of `last.ckpt` into `model`.
pub(crate) fn load_model_section(model: Net, c: &Container, path: &Path) -> Result<Net> {
    model_io::load_weights(model, c.get(path, model_io::MODEL)?, path)
}
