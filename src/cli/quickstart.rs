use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::quickstart::{
    QuickstartConfig, SHIPPED_TEACHERS, render, run as run_quickstart, shipped_teachers,
};

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Dataset folder (default: the embedded CIFAR-10 subset).
    #[arg(long, default_value = "data/cifar10-mini")]
    pub data: PathBuf,
    #[arg(long, default_value = "runs")]
    pub out_dir: PathBuf,
    /// Teacher checkpoints (.ckpt files or run folders); default: every .ckpt in
    /// data/teachers, the teachers shipped with meal.
    #[arg(long, num_args = 1..)]
    pub teachers: Vec<PathBuf>,
    #[arg(long, default_value = "resnet8")]
    pub student: String,
    /// Epochs of each student run (labels, KD, MEAL: the same budget).
    #[arg(long, default_value_t = QuickstartConfig::default().student_epochs)]
    pub student_epochs: usize,
    /// Class-balanced training subset (0 = all training images). Few labelled images are where
    /// a teacher's soft labels pay most, and what keeps the quickstart within minutes.
    #[arg(long, default_value_t = QuickstartConfig::default().train_subset.unwrap_or(0))]
    pub train_subset: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also train the student by plain Hinton KD (T = 4): a third student run, which takes the
    /// quickstart past five minutes on 2 CPU cores.
    #[arg(long)]
    pub kd: bool,
    /// No plain-KD student (the default now; kept so that older commands still run).
    #[arg(long, hide = true, conflicts_with = "kd")]
    pub no_kd: bool,
}

pub fn run(a: QuickstartArgs) -> Result<()> {
    let teachers = if a.teachers.is_empty() {
        let choice = shipped_teachers(SHIPPED_TEACHERS.as_ref())?;
        if let Some(note) = choice.note {
            eprintln!("meal quickstart: {note}");
        }
        choice.files
    } else {
        a.teachers
    };
    let q = QuickstartConfig {
        data: a.data,
        out_dir: a.out_dir,
        teachers,
        student: a.student,
        student_epochs: a.student_epochs,
        train_subset: (a.train_subset > 0).then_some(a.train_subset),
        test_subset: None,
        seed: a.seed,
        kd: a.kd,
        ..QuickstartConfig::default()
    };
    let summary = run_quickstart(&q)?;
    println!("\n{}", render(&summary));
    Ok(())
}
