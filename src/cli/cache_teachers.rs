use std::path::PathBuf;

use clap::Args;

use crate::data::DataConfig;
use crate::distill::DistillConfig;
use crate::distill::config::TeacherSpec;
use crate::distill::soft_labels::{CacheOptions, cache_teachers};
use crate::error::{Error, Result};

#[derive(Debug, Args)]
#[command(
    after_help = "Example: meal cache-teachers --teacher runs/t1 runs/t2 --data data/cifar10-mini \
                  --views 10 --out soft.bin\n\
                  then: meal distill --recipe quickstart --soft-labels soft.bin \
                  --set meal.teacher_bn=eval\n\n\
                  Epoch e of `meal distill --soft-labels` trains on view e mod K. With --seed equal \
                  to the run's seed, view e is exactly the augmentation a live run draws in epoch e."
)]
pub struct CacheTeachersArgs {
    /// Teacher checkpoints or run folders (replaces the config's [[teachers]]).
    #[arg(long, num_args = 1..)]
    pub teacher: Vec<PathBuf>,
    /// A distill config whose [[teachers]] and [data] to use (flags override them).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset folder: a 32×32 format (CIFAR-10/100, SVHN) or ImageNet-layout folders; use
    /// --config for [data] settings such as image_size or WebDataset shards.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use a class-balanced subset of this many training images (as data.train_subset; at
    /// least 1).
    #[arg(long, value_parser = super::at_least_one)]
    pub train_subset: Option<usize>,
    /// Augmented views per training image (one per epoch, repeating after K): a padded crop +
    /// flip of a 32×32 image, or a photo's RandomResizedCrop box + flip.
    #[arg(long)]
    pub views: usize,
    /// The store to write (atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Logits kept per image and teacher; the rest of the probability mass is spread uniformly
    /// (default: 10, capped at the class count, which is exact for 10 classes).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the crop/flip draws (default: the config's seed, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Images per teacher forward pass.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Data loading threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

pub fn run(a: CacheTeachersArgs) -> Result<()> {
    let config: Option<DistillConfig> = match &a.config {
        Some(path) => Some(crate::config::from_table(
            crate::config::read_table(path)?,
            "distill config",
        )?),
        None => None,
    };
    let teachers: Vec<TeacherSpec> = if a.teacher.is_empty() {
        config
            .as_ref()
            .map(|c| c.teachers.clone())
            .unwrap_or_default()
    } else {
        a.teacher.iter().map(TeacherSpec::checkpoint).collect()
    };
    let mut data = match (&a.data, &config) {
        (Some(p), c) => DataConfig {
            path: p.clone(),
            ..c.as_ref()
                .map(|c| c.data.clone())
                .unwrap_or_else(|| DataConfig::new(p))
        },
        (None, Some(c)) => c.data.clone(),
        (None, None) => {
            return Err(Error::Config(
                "give --data DIR (or --config FILE with a [data] table)".into(),
            ));
        }
    };
    if a.train_subset.is_some() {
        data.train_subset = a.train_subset;
    }
    let opts = CacheOptions {
        views: a.views,
        top_k: a.top_k,
        seed: a
            .seed
            .unwrap_or_else(|| config.as_ref().map(|c| c.seed).unwrap_or(0)),
        batch_size: a.batch_size.max(1),
        num_workers: a.workers,
    };
    crate::train::interrupt::install();
    let s = cache_teachers(&teachers, &data, &opts, &a.out)?;
    let h = &s.header;
    println!(
        "wrote {}: {} teacher(s) x {} images x {} views, top-{} of {} classes, {:.1} MB in {:.0}s; \
         ensemble test top-1 {:.2}%",
        a.out.display(),
        h.teachers.len(),
        h.images,
        h.views,
        h.top_k,
        h.classes,
        s.bytes as f64 / 1e6,
        s.seconds,
        h.report.ensemble.top1
    );
    Ok(())
}
