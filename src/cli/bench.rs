use std::path::PathBuf;

use clap::Args;

use crate::bench::{BenchOptions, LatencyOptions, Target, WORKLOADS};
use crate::error::{Error, Result};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["arch", "workload", "data_pipeline"])))]
pub struct BenchArgs {
    /// A zoo model: its training step and eval forward (see `meal models`).
    #[arg(long)]
    pub arch: Option<String>,
    /// A whole MEAL step: meal-v1-resnet18, meal-v1-cifar-small or meal-v2-resnet50.
    #[arg(long)]
    pub workload: Option<String>,
    /// Images per step (default 128 for --arch, 64 for --workload).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Side of the square random images (default: the model's own, 32 for CIFAR forms and 224
    /// for ImageNet forms; for a workload, the student's); with --data-pipeline, of the
    /// training crop (default 224).
    #[arg(long, value_name = "N")]
    pub image_size: Option<usize>,
    /// Timed steps (default 5; with --latency, 30 timed runs per batch size).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Seed of the weights and the random input.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override a workload's MEAL config: --set fold_discriminators=false
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Inference latency of --arch instead of throughput: the eval forward at batch 1 and 8,
    /// each run timed alone, ms per image (median and 90th percentile).
    #[arg(long, conflicts_with_all = ["workload", "batch", "sets"])]
    pub latency: bool,
    /// With --latency: also write the timed weights as a meal checkpoint here, for `meal
    /// export` (scripts/bench/latency.sh times the same model in PyTorch and ONNX Runtime).
    #[arg(long, value_name = "PATH", requires = "latency")]
    pub save_model: Option<PathBuf>,
    /// The input pipeline instead of a model: decode + RandomResizedCrop + flip + normalise
    /// of this image folder's train/ split, in images/s over whole passes (--steps passes).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["arch", "workload", "latency", "sets"])]
    pub data_pipeline: Option<PathBuf>,
    /// With --data-pipeline: decoding threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// With --data-pipeline: bilinear or bicubic.
    #[arg(long, default_value = "bilinear", value_parser = ["bilinear", "bicubic"])]
    pub interpolation: String,
    /// Print one JSON line instead of the summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: BenchArgs) -> Result<()> {
    if let Some(data) = a.data_pipeline {
        let report = crate::bench::run_pipeline(&crate::bench::PipelineOptions {
            data,
            workers: a.workers,
            batch: a.batch.unwrap_or(64),
            image_size: a.image_size.unwrap_or(224),
            interpolation: if a.interpolation == "bicubic" {
                crate::data::Interpolation::Bicubic
            } else {
                crate::data::Interpolation::Bilinear
            },
            warmup: a.warmup,
            passes: a.steps.unwrap_or(3),
        })?;
        if a.json {
            println!("{}", report.to_json());
        } else {
            println!("{}", report.to_text());
        }
        return Ok(());
    }
    if a.latency {
        let report = crate::bench::run_latency(&LatencyOptions {
            arch: a.arch.ok_or_else(|| {
                Error::Config("bench: --latency measures a zoo model; give --arch ARCH".into())
            })?,
            warmup: a.warmup,
            steps: a.steps.unwrap_or(30),
            seed: a.seed,
            save_model: a.save_model,
            image_size: a.image_size,
        })?;
        if a.json {
            println!("{}", report.to_json());
        } else {
            println!("{}", report.to_text());
        }
        return Ok(());
    }
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
        steps: a.steps.unwrap_or(5),
        seed: a.seed,
        image_size: a.image_size,
        sets: a.sets,
    })?;
    if a.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    Ok(())
}
