use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::quickstart::{QuickstartConfig, render, run as run_quickstart};

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Dataset folder (default: the embedded CIFAR-10 subset).
    #[arg(long, default_value = "data/cifar10-mini")]
    pub data: PathBuf,
    #[arg(long, default_value = "runs")]
    pub out_dir: PathBuf,
    /// Teacher architectures.
    #[arg(long, num_args = 1.., default_values_t = ["resnet20".to_string(), "vgg8".to_string(), "resnet14".to_string()])]
    pub teachers: Vec<String>,
    #[arg(long, default_value = "resnet8")]
    pub student: String,
    #[arg(long, default_value_t = 3)]
    pub teacher_epochs: usize,
    #[arg(long, default_value_t = 3)]
    pub student_epochs: usize,
    /// Class-balanced training subset (0 = all training images).
    #[arg(long, default_value_t = 2500)]
    pub train_subset: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: QuickstartArgs) -> Result<()> {
    let q = QuickstartConfig {
        data: a.data,
        out_dir: a.out_dir,
        teachers: a.teachers,
        student: a.student,
        teacher_epochs: a.teacher_epochs,
        student_epochs: a.student_epochs,
        train_subset: (a.train_subset > 0).then_some(a.train_subset),
        test_subset: None,
        seed: a.seed,
        ..QuickstartConfig::default()
    };
    let summary = run_quickstart(&q)?;
    println!("\n{}", render(&summary));
    Ok(())
}
