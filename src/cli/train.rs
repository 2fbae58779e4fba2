use std::path::PathBuf;

use clap::Args;

use super::run_flags::RunFlags;
use crate::error::Result;
use crate::train::{TrainConfig, train};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML config file (flags and --set override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Architecture (see `meal models`).
    #[arg(long)]
    pub arch: Option<String>,
    #[command(flatten)]
    pub run: RunFlags,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let refused = match (&a.config, &a.arch) {
        (Some(_), _) => Some("--config"),
        (None, Some(_)) => Some("--arch (the run's weights are of its own architecture)"),
        (None, None) => None,
    };
    let start = a.run.start(refused, || {
        let mut flags = toml::Table::new();
        super::flag(&mut flags, "arch", a.arch.clone());
        a.run.apply(&mut flags);
        crate::config::load::<TrainConfig>(a.config.as_deref(), flags, &a.run.sets, "train config")
    })?;
    let out = train(start)?;
    println!(
        "finished {} epochs in {:.0}s: test top-1 {:.2}% (best {:.2}%), run folder {}",
        out.epochs_done,
        out.seconds,
        out.last.top1,
        out.best_acc,
        out.run_dir.display()
    );
    Ok(())
}
