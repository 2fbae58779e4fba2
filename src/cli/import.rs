//! `meal import`: a PyTorch teacher (state dict or training checkpoint) → a meal checkpoint.

use std::path::PathBuf;

use clap::Args;

use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::interop::{ImportMeta, ImportOptions, NameScheme, import_checkpoint};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Zoo architecture the weights belong to (see `meal models`).
    #[arg(long)]
    pub arch: String,
    /// PyTorch file: torch.save'd state dict or checkpoint (.pth, .pt, .t7; `{'net': ...}` and
    /// `module.` prefixes are unwrapped) or .safetensors.
    #[arg(long)]
    pub from: PathBuf,
    /// The meal checkpoint to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Key names of the file: `meal` (the twins of scripts/models/param_counts.py) or
    /// `kuangliu` (kuangliu/pytorch-cifar and the MEAL reference: resnet18_cifar, preact_resnet18,
    /// vgg19_bn). Default: whichever matches more keys.
    #[arg(long)]
    pub names: Option<String>,
    /// Sub-dict of the file holding the state dict (e.g. `net`, `state_dict`). Default: found
    /// automatically.
    #[arg(long)]
    pub key: Option<String>,
    /// Class count (default: rows of the classifier weight in the file).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Per-channel input mean the model was trained with (default: the file's own if it has
    /// one, else CIFAR-10's reference values 0.4914,0.4822,0.4465).
    #[arg(long, value_delimiter = ',', value_name = "M1,M2,M3")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel input std (default: the file's own, else 0.2023,0.1994,0.2010).
    #[arg(long, value_delimiter = ',', value_name = "S1,S2,S3")]
    pub std: Option<Vec<f32>>,
    /// Input image side the model expects (default 32).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Comma-separated class names (default: CIFAR-10's for 10 classes, else 0..k).
    #[arg(long, value_delimiter = ',')]
    pub class_names: Option<Vec<String>>,
    /// Load the tensors that fit even if some are missing, unexpected or wrongly shaped (they
    /// are listed; missing ones keep a random initialisation).
    #[arg(long)]
    pub allow_partial: bool,
}

pub fn run(a: ImportArgs) -> Result<()> {
    let device = crate::backend::device();
    let normalization = match (&a.mean, &a.std) {
        (None, None) => None,
        (Some(m), Some(s)) => {
            let three = |v: &Vec<f32>, what: &str| {
                <[f32; 3]>::try_from(v.as_slice())
                    .map_err(|_| Error::Other(format!("--{what} takes 3 values, got {}", v.len())))
            };
            let norm = Normalization {
                mean: three(m, "mean")?,
                std: three(s, "std")?,
            };
            if norm.std.iter().any(|&s| s.is_nan() || s <= 0.0) {
                return Err(Error::Other("--std values must be positive".into()));
            }
            Some(norm)
        }
        _ => {
            return Err(Error::Other(
                "give both --mean and --std (or neither)".into(),
            ));
        }
    };
    let opts = ImportOptions {
        arch: a.arch.clone(),
        num_classes: a.classes,
        names: a
            .names
            .as_deref()
            .map(str::parse::<NameScheme>)
            .transpose()?,
        allow_partial: a.allow_partial,
        key: a.key.clone(),
    };
    let meta = ImportMeta {
        normalization,
        input_shape: a.image_size.map(|s| [3, s, s]),
        class_names: a.class_names.clone(),
    };
    let (imported, meta) = import_checkpoint(&a.from, &opts, &meta, Some(&a.out), &device)?;
    let r = &imported.report;
    if !r.is_complete() {
        eprintln!(
            "warning: partial import (--allow-partial): {} missing, {} unexpected, {} wrongly \
             shaped; missing parameters keep a random initialisation:\n  {}",
            r.missing.len(),
            r.unexpected.len(),
            r.mismatched.len(),
            r.problems().join("\n  ")
        );
    }
    let first = r.to_string();
    let first = first.lines().next().unwrap_or_default();
    println!(
        "imported {} ({} classes) from {}: {first}",
        meta.arch,
        meta.num_classes,
        a.from.display()
    );
    println!(
        "input normalisation mean {:?} std {:?}{}",
        meta.normalization.mean,
        meta.normalization.std,
        meta.test_acc
            .map(|acc| format!("; the file reports acc {acc:.2}, epoch {}", meta.epoch))
            .unwrap_or_default()
    );
    println!("wrote {}", a.out.display());
    Ok(())
}
