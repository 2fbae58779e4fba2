//! PyTorch interop: teachers in, students out.
//!
//! - [`import_pytorch`] reads a PyTorch state dict (`torch.save` zip or legacy file: `.pth`,
//!   `.pt`, `.t7`; or `.safetensors`), including the MEAL reference's
//!   `{'net': state_dict, 'acc', 'epoch'}` checkpoints with DataParallel's `module.` prefix, and
//!   loads it into a zoo model under one of the [`NameScheme`]s. Strict by default: every
//!   missing, unexpected or wrongly shaped key is listed in one error.
//! - [`import_checkpoint`] writes the result as an ordinary meal checkpoint (`source =
//!   "import"`, with the input normalisation the teacher was trained with), which `meal eval`
//!   and `meal distill` use like any other; a distill config can also name the PyTorch file
//!   directly ([`load_pytorch_teacher`]).
//! - [`export()`] writes a model as a PyTorch state dict (`.safetensors` or a `torch.save` zip)
//!   under the same names, so that `model.load_state_dict(...)` works in PyTorch.
//!
//! - [`onnx`] writes a model as an ONNX graph for inference (ONNX Runtime, TensorRT, OpenVINO).
//!
//! The names and formats are documented in `docs/interop.md`, ONNX in `docs/onnx.md`.

pub mod export;
pub mod import;
pub mod names;
pub mod onnx;
pub mod read;
pub mod safetensors;
pub mod state;
pub mod torch_save;

use std::path::Path;

use burn::tensor::Device;

pub use export::{ExportFormat, ExportSummary, export};
pub use import::{ImportOptions, ImportReport, Imported, ShapeMismatch, import_pytorch};
pub use names::NameScheme;
pub use state::{StateTensor, TorchDtype, state_dict};

use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::models::Net;
use crate::train::model_io::{ModelMeta, model_container};

/// What the user says about an imported model beyond its weights.
#[derive(Debug, Clone, Default)]
pub struct ImportMeta {
    /// Input normalisation the model was trained with; by default the file's own (a meal
    /// safetensors export carries it), else timm's for its ImageNet architectures, else
    /// CIFAR-10's reference values.
    pub normalization: Option<Normalization>,
    /// `[channels, height, width]`; default the file's own, else timm's pretrained input size
    /// for its ImageNet architectures, else `[3, 32, 32]`.
    pub input_shape: Option<[usize; 3]>,
    /// Default: the file's own, CIFAR-10's names for 10 classes, else `0..k`.
    pub class_names: Option<Vec<String>>,
}

/// Imports `from` and writes it as a meal checkpoint at `out` (when given).
pub fn import_checkpoint(
    from: &Path,
    opts: &ImportOptions,
    meta: &ImportMeta,
    out: Option<&Path>,
    device: &Device,
) -> Result<(Imported, ModelMeta)> {
    let imported = import_pytorch(from, opts, device)?;
    let file_meta = file_metadata(from);
    let k = imported.num_classes;
    // timm's ImageNet architectures default to their pretrained_cfg input, the CIFAR forms to
    // CIFAR-10's.
    let pretrained = crate::data::pretrained_input(&opts.arch);
    let normalization = meta
        .normalization
        .or_else(|| file_normalization(&file_meta))
        .or(pretrained.map(|p| p.normalization))
        .unwrap_or(Normalization::CIFAR10);
    let input_shape = meta
        .input_shape
        .or_else(|| {
            let v = parse_list::<usize>(file_meta.get("input_shape")?)?;
            <[usize; 3]>::try_from(v).ok()
        })
        .or(pretrained.map(|p| [3, p.size, p.size]))
        .unwrap_or([3, 32, 32]);
    let class_names = match &meta.class_names {
        Some(names) => names.clone(),
        None => file_meta
            .get("class_names")
            .map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|v| v.len() == k)
            .unwrap_or_else(|| default_class_names(k)),
    };
    if class_names.len() != k {
        return Err(Error::Other(format!(
            "{} class names given for a model with {k} classes",
            class_names.len()
        )));
    }
    let (acc, epoch) = reference_info(from);
    let mut model_meta =
        import::imported_meta(&opts.arch, k, normalization, input_shape, class_names);
    model_meta.test_acc = acc;
    model_meta.epoch = epoch.unwrap_or(0);
    if let Some(out) = out {
        model_container(&model_meta, &imported.net)?.save_atomic(out)?;
    }
    Ok((imported, model_meta))
}

/// A teacher named by a distill config as `{ arch = "...", pytorch = "file" }`: imported
/// strictly, on `device`, with `normalization` as its input normalisation.
pub fn load_pytorch_teacher(
    arch: &str,
    path: &Path,
    normalization: Option<Normalization>,
    device: &Device,
) -> Result<(Net, ModelMeta)> {
    let meta = ImportMeta {
        normalization,
        ..Default::default()
    };
    let (imported, meta) = import_checkpoint(path, &ImportOptions::new(arch), &meta, None, device)?;
    Ok((imported.net, meta))
}

pub(crate) fn default_class_names(k: usize) -> Vec<String> {
    if k == crate::data::cifar::CIFAR10_CLASSES.len() {
        crate::data::cifar::CIFAR10_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (0..k).map(|i| i.to_string()).collect()
    }
}

/// The safetensors metadata of `path` (empty for other files).
fn file_metadata(path: &Path) -> std::collections::BTreeMap<String, String> {
    safetensors::read_metadata(path).unwrap_or_default()
}

fn file_normalization(meta: &std::collections::BTreeMap<String, String>) -> Option<Normalization> {
    let mean = <[f32; 3]>::try_from(parse_list::<f32>(meta.get("mean")?)?).ok()?;
    let std = <[f32; 3]>::try_from(parse_list::<f32>(meta.get("std")?)?).ok()?;
    Some(Normalization { mean, std })
}

fn parse_list<T: std::str::FromStr>(s: &str) -> Option<Vec<T>> {
    s.split(',').map(|x| x.trim().parse().ok()).collect()
}

/// `'acc'` and `'epoch'` of a reference checkpoint (`{'net', 'acc', 'epoch'}`), if present.
fn reference_info(path: &Path) -> (Option<f64>, Option<usize>) {
    use burn::store::pytorch_reader::{PickleValue, PytorchReader};
    let Ok(PickleValue::Dict(d)) = PytorchReader::read_pickle_data(path, None) else {
        return (None, None);
    };
    let acc = match d.get("acc") {
        Some(PickleValue::Float(v)) => Some(*v),
        Some(PickleValue::Int(v)) => Some(*v as f64),
        _ => None,
    };
    let epoch = match d.get("epoch") {
        Some(PickleValue::Int(v)) if *v >= 0 => Some(*v as usize),
        _ => None,
    };
    (acc, epoch)
}
