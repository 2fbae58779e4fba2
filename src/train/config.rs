//! `meal train`'s configuration (teacher training with cross-entropy). Defaults follow the
//! reference teacher recipe (kuangliu/pytorch-cifar, spec §1.2): SGD lr 0.1, momentum 0.9,
//! weight decay 5e-4, batch 128.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::optim::SgdSettings;
use super::schedule::ScheduleConfig;
use crate::backend::DeviceSpec;
use crate::data::DataConfig;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Prefix of the run folder name (default: the architecture).
    #[serde(default)]
    pub name: Option<String>,
    pub arch: String,
    pub data: DataConfig,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default)]
    pub optimizer: SgdSettings,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub seed: u64,
    /// Data-loading threads (decoding and augmentation run ahead of the model).
    #[serde(default = "default_workers")]
    pub num_workers: usize,
    /// Where run folders are created.
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
    /// Use exactly this run folder instead of `<out_dir>/<name>-<timestamp>`.
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
    /// Compute device (`--device` overrides it); checkpoints load on any device.
    #[serde(default)]
    pub device: DeviceSpec,
}

pub(crate) fn default_epochs() -> usize {
    200
}
pub(crate) fn default_batch() -> usize {
    128
}
pub(crate) fn default_eval_batch() -> usize {
    100
}
pub(crate) fn default_lr() -> f64 {
    0.1
}
pub(crate) fn default_workers() -> usize {
    2
}
pub(crate) fn default_out_dir() -> PathBuf {
    PathBuf::from("runs")
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        crate::models::arch_info(&self.arch).map_err(|e| Error::Config(format!("arch: {e}")))?;
        check_common(
            self.epochs,
            self.batch_size,
            self.eval_batch_size,
            self.lr,
            &self.optimizer,
            "",
        )?;
        self.schedule.validate(self.epochs)
    }
}

/// Checks shared by `train` and `distill`; `prefix` names the section in messages.
pub(crate) fn check_common(
    epochs: usize,
    batch: usize,
    eval_batch: usize,
    lr: f64,
    opt: &SgdSettings,
    prefix: &str,
) -> Result<()> {
    let bad = |key: &str, why: String| Err(Error::Config(format!("{prefix}{key}: {why}")));
    if epochs == 0 {
        return bad("epochs", "must be at least 1".into());
    }
    if batch == 0 {
        return bad("batch_size", "must be at least 1".into());
    }
    if eval_batch == 0 {
        return bad("eval_batch_size", "must be at least 1".into());
    }
    if !(lr > 0.0 && lr.is_finite()) {
        return bad("lr", format!("must be a positive number, got {lr}"));
    }
    opt.validate(&format!("{prefix}optimizer"))
}

impl super::run::RunConfig for TrainConfig {
    const WHAT: &'static str = "train config";
    fn validate(&self) -> Result<()> {
        TrainConfig::validate(self)
    }
    fn run_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.arch.clone())
    }
    fn run_dir(&self) -> Option<&std::path::Path> {
        self.run_dir.as_deref()
    }
    fn out_dir(&self) -> &std::path::Path {
        &self.out_dir
    }
    fn seed(&self) -> u64 {
        self.seed
    }
    fn data(&self) -> &DataConfig {
        &self.data
    }
    fn device(&self) -> DeviceSpec {
        self.device
    }
}
