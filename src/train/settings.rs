//! The settings every kind of run shares (data, epochs, batch sizes, learning rate, optimizer,
//! schedule, seed, loader threads, run folder, device), declared once.
//!
//! They are top-level keys of each run config (`epochs = 200`, not `[run] epochs = 200`), so
//! the configs and recipes users already have keep working. serde's `flatten` would allow a
//! shared struct, but not together with `deny_unknown_fields`, which turns a typo into an error
//! naming the key; [`run_config!`] writes the shared fields into each config struct instead.

use std::path::{Path, PathBuf};

use super::optim::SgdSettings;
use super::schedule::ScheduleConfig;
use crate::backend::DeviceSpec;
use crate::data::DataConfig;
use crate::error::{Error, Result};

/// Declares a run config: `name`, the kind's own leading fields, `data`, the shared settings,
/// then the kind's own trailing fields (in that order, which is the order `meal config show`
/// prints them in), and implements [`RunConfig::settings`]'s accessor `settings()` for it.
macro_rules! run_config {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $(#[$lead_attr:meta])* pub $lead:ident : $lead_ty:ty, )*
        }
        then {
            $( $(#[$tail_attr:meta])* pub $tail:ident : $tail_ty:ty, )*
        }
    ) => {
        $(#[$attr])*
        pub struct $name {
            /// Prefix of the run folder name.
            #[serde(default)]
            pub name: Option<String>,
            $( $(#[$lead_attr])* pub $lead: $lead_ty, )*
            pub data: $crate::data::DataConfig,
            #[serde(default = "crate::train::settings::default_epochs")]
            pub epochs: usize,
            #[serde(default = "crate::train::settings::default_batch")]
            pub batch_size: usize,
            #[serde(default = "crate::train::settings::default_eval_batch")]
            pub eval_batch_size: usize,
            /// Learning rate (of the student, in a distillation run).
            #[serde(default = "crate::train::settings::default_lr")]
            pub lr: f64,
            #[serde(default)]
            pub optimizer: $crate::train::optim::SgdSettings,
            #[serde(default)]
            pub schedule: $crate::train::schedule::ScheduleConfig,
            #[serde(default)]
            pub seed: u64,
            /// Data-loading threads (decoding and augmentation run ahead of the model).
            #[serde(default = "crate::train::settings::default_workers")]
            pub num_workers: usize,
            /// Where run folders are created.
            #[serde(default = "crate::train::settings::default_out_dir")]
            pub out_dir: std::path::PathBuf,
            /// Use exactly this run folder instead of `<out_dir>/<name>-<timestamp>`.
            #[serde(default)]
            pub run_dir: Option<std::path::PathBuf>,
            /// Compute device (`--device` overrides it); checkpoints load on any device.
            #[serde(default)]
            pub device: $crate::backend::DeviceSpec,
            $( $(#[$tail_attr])* pub $tail: $tail_ty, )*
        }

        impl $name {
            /// The settings this config shares with every other kind of run.
            pub fn settings(&self) -> $crate::train::settings::Settings<'_> {
                $crate::train::settings::Settings {
                    name: self.name.as_deref(),
                    data: &self.data,
                    epochs: self.epochs,
                    batch_size: self.batch_size,
                    eval_batch_size: self.eval_batch_size,
                    lr: self.lr,
                    optimizer: &self.optimizer,
                    schedule: &self.schedule,
                    seed: self.seed,
                    num_workers: self.num_workers,
                    out_dir: &self.out_dir,
                    run_dir: self.run_dir.as_deref(),
                    device: self.device,
                }
            }
        }
    };
}
pub(crate) use run_config;

/// A view of the shared settings of any run config.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub name: Option<&'a str>,
    pub data: &'a DataConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub lr: f64,
    pub optimizer: &'a SgdSettings,
    pub schedule: &'a ScheduleConfig,
    pub seed: u64,
    pub num_workers: usize,
    pub out_dir: &'a Path,
    pub run_dir: Option<&'a Path>,
    pub device: DeviceSpec,
}

impl Settings<'_> {
    /// The checks every kind of run makes of its shared settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("{key}: {why}")));
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.eval_batch_size == 0 {
            return bad("eval_batch_size", "must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be a positive number, got {}", self.lr));
        }
        self.optimizer.validate("optimizer")?;
        self.schedule.validate(self.epochs)
    }
}

/// What the code that opens, resumes and runs a run needs of its config.
pub trait RunConfig: serde::de::DeserializeOwned + serde::Serialize {
    /// How error messages name this kind of config.
    const WHAT: &'static str;
    /// Every check of the config's own values (not of files it names).
    fn validate(&self) -> Result<()>;
    /// Run-folder prefix when `name` is not set.
    fn default_name(&self) -> String;
    /// The zoo architecture the run trains.
    fn model_arch(&self) -> &str;
    fn settings(&self) -> Settings<'_>;
    fn run_name(&self) -> String {
        self.settings()
            .name
            .map(str::to_string)
            .unwrap_or_else(|| self.default_name())
    }
}

/// The keys a resumed run may change, and how: anything else would make the checkpoint describe
/// another run (other weights' shapes, other data, another folder, other draws), so it is
/// refused. `epochs` may only grow past the epochs already done.
pub const RESUMABLE_KEYS: &[&str] = &[
    "epochs",
    "lr",
    "batch_size",
    "eval_batch_size",
    "optimizer",
    "schedule",
    "num_workers",
    "device",
    "meal.d_lr",
    "meal.d_lr_follows_schedule",
    "meal.d_weight_decay",
];

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
