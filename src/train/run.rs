//! Opening a run, for every kind of run: a fresh run validates its config and opens its data
//! (and the kind checks its other inputs) before the run folder is created; a resumed one reads
//! the folder's config, applies the changes asked for, and refuses those a resumed run cannot
//! take. Nothing in a resumed folder is rewritten here: [`Opened::begin`] records the changes
//! once the run has loaded its checkpoint and is about to train, so a refused or failed resume
//! leaves the folder as it was.

use std::path::PathBuf;
use std::sync::Arc;

use super::run_dir::RunDir;
use super::settings::{RESUMABLE_KEYS, RunConfig};
use crate::data::{self, DataSplits, Dataset, Loader, LoaderConfig};
use crate::error::{Error, Result};

/// Where a run starts from.
pub enum Start<C> {
    Fresh {
        config: Box<C>,
        table: toml::Table,
    },
    /// Continue the run in this folder; `sets` (`key=value`, as `--set` takes them) may change
    /// the keys in [`RESUMABLE_KEYS`], e.g. `epochs` to extend it. Any other change is refused.
    Resume {
        run_dir: PathBuf,
        sets: Vec<String>,
    },
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

/// An opened run: its config, folder and data.
pub struct Opened<C> {
    pub config: C,
    pub run: RunDir,
    /// Whether the run continues from its folder's `last.ckpt`.
    pub resume: bool,
    /// Epochs its `last.ckpt` holds (0 for a fresh run).
    pub epochs_done: usize,
    /// A resumed run that has trained every epoch its config asks for: nothing is trained or
    /// written, and the run reports what it recorded.
    pub finished: bool,
    pub splits: DataSplits,
    /// The resumed run's new config, written by [`Opened::begin`].
    pending: Option<toml::Table>,
}

impl<C> Opened<C> {
    /// Records a resumed run's config and device and drops the metrics of epochs after the
    /// `epochs_done` its `last.ckpt` holds: called once the checkpoint has loaded, before
    /// training.
    pub fn begin(&mut self, epochs_done: usize) -> Result<()> {
        let Some(table) = self.pending.take() else {
            return Ok(());
        };
        self.run.note(&format!(
            "resumed on device: {}",
            crate::backend::describe_selected()
        ))?;
        self.run.write_config(&table)?;
        self.run.truncate_metrics(epochs_done)
    }
}

/// Opens a run; `preflight` checks the inputs beyond the config and the data (teachers,
/// stores) of a fresh run before its folder exists, so that a bad input leaves nothing behind.
pub fn open<C: RunConfig>(
    start: Start<C>,
    preflight: impl FnOnce(&C, &DataSplits) -> Result<()>,
) -> Result<Opened<C>> {
    match start {
        Start::Fresh { config, mut table } => {
            let config = *config;
            config.validate()?;
            record_device_flag(&mut table);
            let s = config.settings();
            crate::backend::select(s.device)?;
            let splits = data::open(s.data)?;
            preflight(&config, &splits)?;
            let run = match s.run_dir {
                Some(dir) => RunDir::create_at(dir, &table, s.seed)?,
                None => RunDir::create(s.out_dir, &config.run_name(), &table, s.seed)?,
            };
            Ok(Opened {
                config,
                run,
                resume: false,
                epochs_done: 0,
                finished: false,
                splits,
                pending: None,
            })
        }
        Start::Resume { run_dir, sets } => {
            let run = RunDir::open(&run_dir)?;
            let recorded = run.read_config()?;
            let mut table = recorded.clone();
            for s in &sets {
                crate::config::apply_set(&mut table, s)?;
            }
            record_device_flag(&mut table);
            let config: C = crate::config::from_table(table.clone(), C::WHAT)?;
            config.validate()?;
            // Compared as the configs mean them, defaults filled in: `--set seed=0` on a run
            // that never named its seed changes nothing.
            let was: C = crate::config::from_table(recorded.clone(), C::WHAT)?;
            let mut changed = Vec::new();
            diff_keys("", &effective(&was)?, &effective(&config)?, &mut changed);
            refuse_fixed_keys(&changed, &run)?;
            // A damaged last.ckpt is refused before anything else is looked at.
            run.check_last()?;
            // A last.ckpt without a readable state is refused by the run itself, which
            // names what is missing once it has checked the weights.
            let epochs_done = super::run_state::read(&run).map_or(0, |s| s.epochs_done);
            let epochs = config.settings().epochs;
            if epochs < epochs_done {
                return Err(Error::Config(format!(
                    "epochs = {epochs}: {} already holds {epochs_done} finished epochs, and a run \
                     cannot be shortened; to train further, ask for more (--epochs {} or more)",
                    run.path.display(),
                    epochs_done + 1
                )));
            }
            let finished = epochs == epochs_done;
            if let Some((key, _, new)) = changed.iter().find(|(k, _, _)| finished && k != "device")
            {
                return Err(Error::Config(format!(
                    "{key} = {new} would not take effect: {} has finished all {epochs_done} \
                     epochs of its schedule, so there is nothing left to train; ask for more \
                     epochs too (--epochs {} or more)",
                    run.path.display(),
                    epochs_done + 1
                )));
            }
            // Checkpoints hold host bytes, so a run may continue on another device.
            crate::backend::select(config.settings().device)?;
            let splits = data::open(config.settings().data)?;
            Ok(Opened {
                config,
                run,
                resume: true,
                epochs_done,
                finished,
                splits,
                pending: Some(table),
            })
        }
    }
}

fn effective<C: serde::Serialize>(config: &C) -> Result<toml::Table> {
    toml::Table::try_from(config).map_err(|e| Error::Config(format!("cannot compare configs: {e}")))
}

/// Refuses every change to a key outside [`RESUMABLE_KEYS`], naming the key and both values.
fn refuse_fixed_keys(changed: &[(String, String, String)], run: &RunDir) -> Result<()> {
    let fixed: Vec<_> = changed
        .iter()
        .filter(|(key, _, _)| {
            !RESUMABLE_KEYS
                .iter()
                .any(|k| key == k || key.starts_with(&format!("{k}.")))
        })
        .collect();
    let Some((key, old, new)) = fixed.first() else {
        return Ok(());
    };
    Err(Error::Config(format!(
        "{key} cannot change when resuming {} (it was {old}, asked {new}): the checkpoint was \
         made with the run's own value. A resumed run may change only {}; start a new run for \
         anything else",
        run.path.display(),
        RESUMABLE_KEYS.join(", ")
    )))
}

/// Dotted keys whose values differ between `a` and `b`, with both values (`unset` if absent).
fn diff_keys(
    prefix: &str,
    a: &toml::Table,
    b: &toml::Table,
    out: &mut Vec<(String, String, String)>,
) {
    let show = |v: Option<&toml::Value>| v.map_or_else(|| "unset".to_string(), |v| v.to_string());
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let key = format!("{prefix}{k}");
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                diff_keys(&format!("{key}."), x, y, out)
            }
            (x, y) if x != y => out.push((key, show(x), show(y))),
            _ => {}
        }
    }
}
