use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::train::{Start, TrainConfig, train};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML config file (flags and --set override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Architecture (see `meal models`).
    #[arg(long)]
    pub arch: Option<String>,
    /// Dataset folder (CIFAR-10/100 binary or python, SVHN .mat, or train/+val/ image folders).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub epochs: Option<i64>,
    #[arg(long)]
    pub batch_size: Option<i64>,
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
    /// Override any config key: --set schedule.milestones=[100,150]
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Continue the run in this folder from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let start = match a.resume {
        Some(run_dir) => Start::Resume {
            run_dir,
            sets: a.sets,
        },
        None => {
            let mut flags = toml::Table::new();
            super::flag(&mut flags, "arch", a.arch);
            super::flag(
                &mut flags,
                "data.path",
                a.data.map(|p| p.display().to_string()),
            );
            super::flag(&mut flags, "epochs", a.epochs);
            super::flag(&mut flags, "batch_size", a.batch_size);
            super::flag(&mut flags, "lr", a.lr);
            super::flag(&mut flags, "seed", a.seed);
            super::flag(&mut flags, "name", a.name);
            super::flag(
                &mut flags,
                "out_dir",
                a.out_dir.map(|p| p.display().to_string()),
            );
            super::flag(
                &mut flags,
                "run_dir",
                a.run_dir.map(|p| p.display().to_string()),
            );
            let (config, table) = crate::config::load::<TrainConfig>(
                a.config.as_deref(),
                flags,
                &a.sets,
                "train config",
            )?;
            Start::Fresh {
                config: Box::new(config),
                table,
            }
        }
    };
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
