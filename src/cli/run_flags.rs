//! The flags every kind of run takes (`meal train`, `meal distill`), and how they apply to a
//! fresh run (config keys) or to a resumed one (the same keys as `--set`, which the run then
//! applies or refuses with the reason).

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::train::Start;

#[derive(Debug, Args)]
pub struct RunFlags {
    /// Dataset folder (CIFAR-10/100 binary or python, SVHN .mat, or train/+val/ image folders);
    /// replaces data.path.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Epochs to train (with --resume: extends the run's schedule to this many).
    #[arg(long)]
    pub epochs: Option<i64>,
    /// Leave undecodable images out of their batch (counted in metrics.jsonl and the log)
    /// instead of stopping; sets data.skip_corrupt.
    #[arg(long)]
    pub skip_corrupt: bool,
    #[arg(long)]
    pub batch_size: Option<i64>,
    /// Learning rate (of the student, for distill).
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<i64>,
    /// Run-name prefix of the folder created under --out-dir.
    #[arg(long)]
    pub name: Option<String>,
    /// Where run folders go (default runs/).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Write into exactly this run folder (instead of <out-dir>/<name>-<timestamp>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Override any config key: --set schedule.milestones=[100,150] (keys: `meal config help`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Continue the run in this folder from its last checkpoint. Flags and --set then change
    /// the run's own config: epochs, lr, batch sizes, optimizer, schedule and loader threads may
    /// change; a change to anything else is refused with the reason.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
}

impl RunFlags {
    /// The flags as `(key, value)` config entries, in the order they are applied.
    fn entries(&self) -> Vec<(&'static str, toml::Value)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string().into());
        [
            ("data.path", path(&self.data)),
            ("epochs", self.epochs.map(Into::into)),
            (
                "data.skip_corrupt",
                self.skip_corrupt.then_some(toml::Value::Boolean(true)),
            ),
            ("batch_size", self.batch_size.map(Into::into)),
            ("lr", self.lr.map(Into::into)),
            ("seed", self.seed.map(Into::into)),
            ("name", self.name.clone().map(Into::into)),
            ("out_dir", path(&self.out_dir)),
            ("run_dir", path(&self.run_dir)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// Puts the flags into a fresh run's config table (before `--set`).
    pub fn apply(&self, table: &mut toml::Table) {
        for (key, value) in self.entries() {
            super::flag(table, key, Some(value));
        }
    }

    /// Where the run starts: from `fresh` (the config a fresh run asks for), or, with
    /// `--resume`, from the run's own config changed by these flags and `--set`. `refused`
    /// names the flags of the command that only a fresh run takes, if any was given.
    pub fn start<C>(
        &self,
        refused: Option<&str>,
        fresh: impl FnOnce() -> Result<(C, toml::Table)>,
    ) -> Result<Start<C>> {
        let Some(run_dir) = self.resume.clone() else {
            let (config, table) = fresh()?;
            return Ok(Start::Fresh {
                config: Box::new(config),
                table,
            });
        };
        if let Some(flag) = refused {
            return Err(Error::Config(format!(
                "{flag} cannot be given with --resume: a resumed run reads its own config.toml \
                 in {}; change a key with --set KEY=VALUE, or start a new run",
                run_dir.display()
            )));
        }
        let mut sets: Vec<String> = self
            .entries()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        sets.extend(self.sets.iter().cloned());
        Ok(Start::Resume { run_dir, sets })
    }
}
