//! `meal export`: a meal checkpoint → PyTorch weights (safetensors or a torch.save file) under
//! the PyTorch module names of the matching architecture, or an ONNX model for inference.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::interop::{ExportFormat, NameScheme, export};
use crate::train::model_io::load_model;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A meal checkpoint, or a run folder (its best.ckpt is used).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// `safetensors`, `pytorch` (a torch.save zip holding the state dict) or `onnx` (the
    /// eval-mode model for ONNX Runtime, TensorRT, OpenVINO: opset 17, dynamic batch; see
    /// docs/onnx.md).
    #[arg(long, default_value = "safetensors")]
    pub format: String,
    /// Key names: `meal` (the twins of scripts/models/param_counts.py, every architecture) or
    /// `kuangliu` (kuangliu/pytorch-cifar: resnet18_cifar, preact_resnet18, vgg19_bn). Not used by
    /// `onnx`, whose tensors carry meal's module paths.
    #[arg(long, default_value = "meal")]
    pub names: String,
    /// Output file, not a folder (default: the checkpoint's name with .safetensors, .pth or
    /// .onnx).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let format: ExportFormat = a.format.parse()?;
    let scheme: NameScheme = a.names.parse()?;
    let path = crate::train::run_dir::resolve_checkpoint(&a.checkpoint);
    let device = crate::backend::device();
    let (net, meta, _) = load_model(&path, &device)?;
    let out = a.out.clone().unwrap_or_else(|| {
        path.with_extension(match format {
            ExportFormat::Pytorch => "pth",
            ExportFormat::Onnx => "onnx",
            ExportFormat::Safetensors => "safetensors",
        })
    });
    let summary = export(&net, &meta, scheme, format, &out)?;
    let what = match format {
        ExportFormat::Onnx => format!(
            "ONNX opset {}, {} initializers",
            crate::interop::onnx::OPSET,
            summary.tensors
        ),
        _ => format!("{} tensors, {} names", summary.tensors, summary.scheme),
    };
    println!(
        "wrote {} ({what}, {:.1} MB) from {} ({}, {} classes)",
        out.display(),
        summary.bytes as f64 / 1e6,
        path.display(),
        meta.arch,
        meta.num_classes
    );
    let guide = match format {
        ExportFormat::Onnx => "the ONNX file's metadata holds it too; see docs/onnx.md",
        _ => "see docs/interop.md for loading it in PyTorch",
    };
    println!(
        "input normalisation: mean {:?} std {:?} ({guide})",
        meta.normalization.mean, meta.normalization.std
    );
    Ok(())
}
