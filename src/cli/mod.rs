//! The command line. Each subcommand lives in its own file and only translates flags into
//! library calls.

mod bench;
mod cache_teachers;
mod config_cmd;
mod distill;
mod download;
mod eval;
mod export;
mod import;
mod models;
mod predict;
mod quickstart;
mod recipes;
mod report;
mod run_flags;
mod selftest;
mod train;

use clap::{Parser, Subcommand};

use crate::error::Result;

#[derive(Debug, Parser)]
#[command(
    name = "meal",
    version,
    about = "MEAL / MEAL V2: distil an ensemble of image classifiers into one student",
    long_about = None
)]
pub struct Cli {
    /// Print only errors and final results (no progress bars).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Compute on this device: flex (CPU), cuda, cuda:N, wgpu, wgpu:N, or auto (default: cuda:0
    /// when this build has CUDA and the machine a GPU, else flex). Overrides a config's `device`.
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<crate::backend::DeviceSpec>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on the embedded CIFAR-10 subset in a few minutes.
    Quickstart(quickstart::QuickstartArgs),
    /// Train a model with cross-entropy on labels (how teachers are made).
    Train(train::TrainArgs),
    /// Test accuracy of one or more checkpoints and of their ensemble (mean of softmax).
    Eval(eval::EvalArgs),
    /// List the model zoo with parameter counts and FLOPs at 32×32.
    Models(models::ModelsArgs),
    /// Distil teachers into a student with MEAL (V1, V2, and the min-max variants).
    Distill(distill::DistillArgs),
    /// Precompute eval-mode teachers' logits on K augmented views of every training image
    /// (a soft-label store for `meal distill --soft-labels`).
    CacheTeachers(cache_teachers::CacheTeachersArgs),
    /// List the shipped recipes.
    Recipes,
    /// Download an official dataset release (checksum verified).
    Download(download::DownloadArgs),
    /// Write an HTML report (plus PNG charts) of one or more run folders.
    Report(report::ReportArgs),
    /// Top classes of image files (PNG/JPEG, any size) under a trained checkpoint.
    Predict(predict::PredictArgs),
    /// Show a resolved config with every default, or the reference of every config key.
    Config(config_cmd::ConfigArgs),
    /// Turn a PyTorch teacher (.pth/.pt/.t7/.safetensors state dict) into a meal checkpoint.
    Import(import::ImportArgs),
    /// Write a checkpoint's weights for PyTorch (safetensors or .pth, PyTorch module names).
    Export(export::ExportArgs),
    /// Training and inference speed of a zoo model or a whole MEAL step, on random data.
    Bench(bench::BenchArgs),
    /// Check this build on a device: golden comparisons with PyTorch and a tiny train/distill/resume round.
    Selftest(selftest::SelftestArgs),
}

pub fn main() -> Result<()> {
    crate::kernels::allocator::keep_freed_memory();
    crate::kernels::hot::adopt_calling_thread();
    run(Cli::parse())
}

pub fn run(cli: Cli) -> Result<()> {
    crate::progress::set_quiet(cli.quiet);
    crate::progress::init_logging(cli.quiet, cli.verbose);
    crate::backend::request(cli.device);
    match &cli.command {
        // These read no tensors (the config commands also want no GPU start-up).
        Command::Recipes | Command::Download(_) | Command::Report(_) | Command::Config(_) => {}
        // Their config's `device` key is the fallback of the flag: they select in train::run.
        Command::Train(_) | Command::Distill(_) => {}
        _ => {
            crate::backend::select(crate::backend::DeviceSpec::Auto)?;
        }
    }
    match cli.command {
        Command::Quickstart(a) => quickstart::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Models(a) => models::run(a),
        Command::Distill(a) => distill::run(a),
        Command::CacheTeachers(a) => cache_teachers::run(a),
        Command::Recipes => recipes::run(),
        Command::Download(a) => download::run(a),
        Command::Report(a) => report::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Config(a) => config_cmd::run(a),
        Command::Import(a) => import::run(a),
        Command::Export(a) => export::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Selftest(a) => selftest::run(a),
    }
}

/// Inserts `value` at `key` in `table` when the flag was given.
pub(crate) fn flag<T: Into<toml::Value>>(table: &mut toml::Table, key: &str, value: Option<T>) {
    if let Some(v) = value {
        crate::config::set_path(table, key, v.into()).expect("flag keys are valid");
    }
}

/// A count flag that must be at least 1 (`--test-subset 0` would select no image): clap names
/// the flag and this says why.
pub(crate) fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}
