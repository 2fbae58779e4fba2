use clap::Args;

use crate::bench::{BenchOptions, Target, WORKLOADS};
use crate::error::{Error, Result};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["arch", "workload"])))]
pub struct BenchArgs {
    /// A zoo model: its training step and eval forward (see `meal models`).
    #[arg(long)]
    pub arch: Option<String>,
    /// A whole MEAL step: meal-v1-resnet18 or meal-v1-cifar-small.
    #[arg(long)]
    pub workload: Option<String>,
    /// Images per step (default 128 for --arch, 64 for --workload).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Seed of the weights and the random input.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override a workload's MEAL config: --set fold_discriminators=false
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print one JSON line instead of the summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let (target, default_batch) = match (a.arch, a.workload) {
        (Some(arch), None) => (Target::Arch(arch), 128),
        (None, Some(w)) => (Target::Workload(w), 64),
        _ => {
            let names: Vec<_> = WORKLOADS.iter().map(|w| w.name).collect();
            return Err(Error::Config(format!(
                "bench: give --arch ARCH or --workload ({})",
                names.join(", ")
            )));
        }
    };
    let report = crate::bench::run(&BenchOptions {
        target,
        batch: a.batch.unwrap_or(default_batch),
        warmup: a.warmup,
        steps: a.steps,
        seed: a.seed,
        sets: a.sets,
    })?;
    if a.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    Ok(())
}
