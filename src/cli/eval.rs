use std::path::PathBuf;

use clap::Args;

use crate::data::{self, DataConfig, Loader, LoaderConfig};
use crate::error::{Error, Result};
use crate::train::evaluate::{Accuracy, Renorm, evaluate_renormalized};
use crate::train::model_io::load_model;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint files, or run folders (their best.ckpt is used).
    #[arg(long, num_args = 1.., required = true)]
    pub checkpoint: Vec<PathBuf>,
    /// Dataset folder whose test split is evaluated.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Evaluate only a class-balanced subset of this many test images (at least 1).
    #[arg(long, value_parser = super::at_least_one)]
    pub test_subset: Option<usize>,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let device = crate::backend::device();
    let mut data_cfg = DataConfig::new(&a.data);
    data_cfg.test_subset = a.test_subset;
    let mut loaded = Vec::new();
    for p in &a.checkpoint {
        let path = crate::train::run_dir::resolve_checkpoint(p);
        match load_model(&path, &device) {
            Ok((net, meta, _)) => loaded.push((path, net, meta)),
            Err(e) => {
                // A broken dataset is reported before a broken checkpoint.
                data::open(&data_cfg)?;
                return Err(e);
            }
        }
    }
    // Image folders are cropped as the checkpoint says (its input size, crop fraction and
    // interpolation); every model of an ensemble must see the same crop.
    let first = &loaded[0].2;
    data_cfg.image_size = Some(first.input_shape[1]);
    data_cfg.crop_pct = first.crop_pct;
    data_cfg.interpolation = Some(first.interpolation);
    for (path, _, meta) in &loaded[1..] {
        if (meta.input_shape, meta.crop_pct, meta.interpolation)
            != (first.input_shape, first.crop_pct, first.interpolation)
        {
            return Err(Error::checkpoint(
                path,
                format!(
                    "its input ({:?}, crop_pct {:?}, {}) differs from {}'s ({:?}, crop_pct {:?}, {}); \
                     an ensemble is evaluated on one crop",
                    meta.input_shape,
                    meta.crop_pct,
                    meta.interpolation.name(),
                    loaded[0].0.display(),
                    first.input_shape,
                    first.crop_pct,
                    first.interpolation.name()
                ),
            ));
        }
    }
    let splits = data::open(&data_cfg)?;
    let mut models = Vec::new();
    let mut renorms = Vec::new();
    let mut names = Vec::new();
    for (path, net, meta) in loaded {
        if meta.num_classes != splits.test.num_classes() {
            return Err(Error::checkpoint(
                &path,
                format!(
                    "model has {} classes but {} has {}",
                    meta.num_classes,
                    a.data.display(),
                    splits.test.num_classes()
                ),
            ));
        }
        // Each model sees its input normalised as it was trained (imported teachers may differ).
        renorms.push(Renorm::between(
            splits.test.normalization(),
            meta.normalization,
        ));
        names.push(format!("{} ({})", path.display(), meta.arch));
        models.push(net);
    }
    let loader = Loader::new(
        splits.test.clone(),
        LoaderConfig {
            batch_size: a.batch_size.max(1),
            shuffle: false,
            augment: false,
            drop_last: false,
            seed: 0,
            num_workers: 2,
            prefetch: 4,
        },
    );
    let refs: Vec<_> = models.iter().collect();
    let (each, ensemble) = evaluate_renormalized(&refs, &renorms, &loader, &device)?;
    println!("{:<60} {:>8} {:>8}", "model", "top-1", "top-5");
    let mut rows: Vec<(String, _)> = names.iter().cloned().zip(each).collect();
    if models.len() > 1 {
        rows.push((
            format!("ensemble of {} (mean softmax)", models.len()),
            ensemble,
        ));
    }
    for (name, acc) in &rows {
        println!(
            "{name:<60} {:>7.2}% {:>7.2}%{}",
            acc.top1,
            acc.top5,
            nonfinite_note(acc)
        );
    }
    for (name, acc) in rows.iter().filter(|(_, a)| a.nonfinite > 0) {
        // On stderr too, so that a script reading only the numbers still hears of it.
        eprintln!(
            "warning: {name}: {} of {} test images got non-finite (NaN or infinite) outputs and count as wrong; the weights have probably diverged",
            acc.nonfinite, acc.images
        );
    }
    println!(
        "({} test images from {})",
        ensemble.images,
        splits.test.describe()
    );
    Ok(())
}

/// The table's marker for a model with non-finite outputs; empty when there were none.
fn nonfinite_note(acc: &Accuracy) -> String {
    if acc.nonfinite == 0 {
        String::new()
    } else {
        format!(
            "  NON-FINITE OUTPUTS on {} of {} images (counted as wrong)",
            acc.nonfinite, acc.images
        )
    }
}
