//! `meal predict`: [`crate::predict`] on the flags, printed as a table or as JSON lines, with a
//! summary line (images and images/s) on stderr.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::predict::{expand_images, predict};

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A checkpoint file, or a run folder (its best.ckpt is used).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files (PNG or JPEG, any size), or folders: every .png, .jpg and .jpeg under them,
    /// in path order.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// How many classes to list per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print one JSON object per image instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

pub fn run(a: PredictArgs) -> Result<()> {
    let images = expand_images(&a.images)?;
    let out = predict(&a.checkpoint, &images, a.top.max(1), a.batch_size)?;
    let (meta, path, preds) = (&out.meta, &out.checkpoint, &out.predictions);
    let rate = out.stats.images_per_s()?;
    let bad = preds.iter().filter(|p| p.nonfinite).count();
    if bad > 0 {
        eprintln!(
            "warning: {}: the model's outputs are non-finite (NaN or infinite) for {bad} of {} images, which get no prediction; its weights have probably diverged",
            path.display(),
            preds.len()
        );
    }
    if a.json {
        for p in preds {
            println!(
                "{}",
                serde_json::to_string(p).map_err(|e| Error::Other(e.to_string()))?
            );
        }
        summary(&out.stats, rate);
        return Ok(());
    }
    println!(
        "{} ({} classes, input {}x{}) from {}",
        meta.arch,
        meta.num_classes,
        meta.input_shape[1],
        meta.input_shape[2],
        path.display()
    );
    for p in preds {
        println!("{}", p.image.display());
        if p.nonfinite {
            println!("  no prediction: the model's outputs are non-finite (NaN or infinite)");
        }
        for (rank, c) in p.top.iter().enumerate() {
            println!("  {}. {:<16} {:>7.2}%", rank + 1, c.class, 100.0 * c.prob);
        }
    }
    summary(&out.stats, rate);
    Ok(())
}

/// On stderr, so that stdout stays the per-image table or JSON lines; hidden by `-q`.
fn summary(stats: &crate::predict::PredictStats, rate: f64) {
    if !crate::progress::quiet() {
        eprintln!(
            "predicted {} images in {:.2} s: {rate:.1} images/s (batch size {})",
            stats.images, stats.seconds, stats.batch_size
        );
    }
}
