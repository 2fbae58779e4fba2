//! Zoo model → PyTorch file: the state dict of [`super::state`] written as `.safetensors` or a
//! `torch.save` zip.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::names::NameScheme;
use super::state::state_dict;
use super::{safetensors, torch_save};
use crate::error::{Error, Result};
use crate::models::Net;
use crate::train::model_io::ModelMeta;

/// What `meal export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// `.safetensors`, with the model's arch, classes and normalisation in its metadata.
    Safetensors,
    /// A `torch.save` zip file holding an `OrderedDict` state dict (`.pth`).
    Pytorch,
    /// An ONNX model for inference (opset 17, weights embedded), see [`super::onnx`].
    Onnx,
}

impl FromStr for ExportFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "safetensors" => Ok(ExportFormat::Safetensors),
            "pytorch" | "pth" | "pt" | "torch" => Ok(ExportFormat::Pytorch),
            "onnx" => Ok(ExportFormat::Onnx),
            other => Err(Error::Other(format!(
                "unknown export format `{other}`; known: safetensors, pytorch, onnx"
            ))),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Safetensors => "safetensors",
            ExportFormat::Pytorch => "pytorch",
            ExportFormat::Onnx => "onnx",
        })
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// State-dict entries, or the ONNX graph's initializers.
    pub tensors: usize,
    pub bytes: u64,
    pub scheme: NameScheme,
}

/// Writes `net` (described by `meta`) to `out` in `format` under `scheme`'s names.
pub fn export(
    net: &Net,
    meta: &ModelMeta,
    scheme: NameScheme,
    format: ExportFormat,
    out: &Path,
) -> Result<ExportSummary> {
    if out.is_dir() {
        return Err(Error::file(
            out,
            "is a folder; the output must be a file path (for example <folder>/student.onnx)",
        ));
    }
    let (bytes, tensors) = match format {
        ExportFormat::Onnx => {
            let file = super::onnx::encode(net, meta)?;
            (file.bytes, file.initializers)
        }
        ExportFormat::Safetensors | ExportFormat::Pytorch => {
            let tensors = state_dict(net, &meta.arch, scheme)?;
            let bytes = if format == ExportFormat::Safetensors {
                safetensors::encode(&tensors, &export_metadata(meta, scheme))?
            } else {
                torch_save::encode(&tensors)?
            };
            (bytes, tensors.len())
        }
    };
    write_atomic(out, &bytes)?;
    Ok(ExportSummary {
        tensors,
        bytes: bytes.len() as u64,
        scheme,
    })
}

/// The safetensors `__metadata__` of an export: enough to rebuild the model and its input.
pub fn export_metadata(meta: &ModelMeta, scheme: NameScheme) -> Vec<(String, String)> {
    let floats = |v: &[f32; 3]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        ("format".into(), "pt".into()),
        (
            "producer".into(),
            format!("meal {}", env!("CARGO_PKG_VERSION")),
        ),
        ("arch".into(), meta.arch.clone()),
        ("num_classes".into(), meta.num_classes.to_string()),
        ("names".into(), scheme.as_str().into()),
        ("mean".into(), floats(&meta.normalization.mean)),
        ("std".into(), floats(&meta.normalization.std)),
        (
            "input_shape".into(),
            meta.input_shape
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("class_names".into(), meta.class_names.join(",")),
    ]
}

/// Temp file in the same folder, then rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, bytes).map_err(|e| Error::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::file(path, format!("cannot rename: {e}")))
}
