//! Starting a run, shared by `meal train` and `meal distill`: a fresh run validates its config
//! and opens its data before creating the run folder; a resumed one reads the folder's config,
//! applies `--set` overrides (e.g. more epochs) and records them.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::run_dir::RunDir;
use std::sync::Arc;

use crate::data::{self, DataConfig, DataSplits, Dataset, Loader, LoaderConfig};
use crate::error::Result;

/// Where a run starts from.
pub enum Start<C> {
    Fresh {
        config: Box<C>,
        table: toml::Table,
    },
    /// Continue the run in this folder; `sets` may change e.g. `epochs` to extend it.
    Resume {
        run_dir: PathBuf,
        sets: Vec<String>,
    },
}

/// What a run config tells the code that opens the run.
pub trait RunConfig: DeserializeOwned {
    /// How error messages name this kind of config.
    const WHAT: &'static str;
    fn validate(&self) -> Result<()>;
    /// Run-folder prefix when `name` is not set.
    fn run_name(&self) -> String;
    fn run_dir(&self) -> Option<&Path>;
    fn out_dir(&self) -> &Path;
    fn seed(&self) -> u64;
    fn data(&self) -> &DataConfig;
    /// The config's `device` key (`--device` overrides it).
    fn device(&self) -> crate::backend::DeviceSpec;
    /// Checks of the inputs beyond the config and the data (teachers, stores) that can be made
    /// before a fresh run folder exists, so that a bad input leaves no folder behind.
    fn preflight(&self, splits: &data::DataSplits) -> Result<()> {
        let _ = splits;
        Ok(())
    }
}

/// Puts `--device` into a run's config table, so that `config.toml` records where it ran.
fn record_device_flag(table: &mut toml::Table) {
    if let Some(spec) = crate::backend::requested() {
        table.insert("device".into(), toml::Value::String(spec.to_string()));
    }
}

/// The shuffled, augmented training loader and the ordered, plain test loader of a run.
pub fn loaders(
    train: Arc<dyn Dataset>,
    test: Arc<dyn Dataset>,
    batch_size: usize,
    eval_batch_size: usize,
    seed: u64,
    num_workers: usize,
) -> (Loader, Loader) {
    let make = |dataset, batch_size, training: bool| {
        Loader::new(
            dataset,
            LoaderConfig {
                batch_size,
                shuffle: training,
                augment: training,
                drop_last: false,
                seed,
                num_workers,
                prefetch: 4,
            },
        )
    };
    (
        make(train, batch_size, true),
        make(test, eval_batch_size, false),
    )
}

pub struct Opened<C> {
    pub config: C,
    pub run: RunDir,
    pub resume: bool,
    pub splits: DataSplits,
}

pub fn open<C: RunConfig>(start: Start<C>) -> Result<Opened<C>> {
    match start {
        Start::Fresh { config, mut table } => {
            let config = *config;
            config.validate()?;
            record_device_flag(&mut table);
            crate::backend::select(config.device())?;
            // Bad data, teachers or stores fail before a run folder is created.
            let splits = data::open(config.data())?;
            config.preflight(&splits)?;
            let run = match config.run_dir() {
                Some(dir) => RunDir::create_at(dir, &table, config.seed())?,
                None => {
                    RunDir::create(config.out_dir(), &config.run_name(), &table, config.seed())?
                }
            };
            Ok(Opened {
                config,
                run,
                resume: false,
                splits,
            })
        }
        Start::Resume { run_dir, sets } => {
            let run = RunDir::open(&run_dir)?;
            let mut table = run.read_config()?;
            for s in &sets {
                crate::config::apply_set(&mut table, s)?;
            }
            record_device_flag(&mut table);
            let config: C = crate::config::from_table(table.clone(), C::WHAT)?;
            config.validate()?;
            // A damaged last.ckpt is refused before anything in the folder is rewritten.
            run.check_last()?;
            // Checkpoints hold host bytes, so a run may continue on another device.
            let device = crate::backend::select(config.device())?;
            run.note(&format!("resumed on device: {device}"))?;
            run.write_config(&table)?;
            let splits = data::open(config.data())?;
            Ok(Opened {
                config,
                run,
                resume: true,
                splits,
            })
        }
    }
}
