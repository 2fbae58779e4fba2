//! Zoo model → PyTorch state dict in memory: every tensor under the PyTorch names of a
//! [`NameScheme`], in PyTorch's layout (Linear weights `[out, in]`), with BatchNorm's
//! `num_batches_tracked` counters so that the key set equals `model.state_dict()`'s and
//! `load_state_dict(..., strict=True)` passes. The writers (`safetensors.rs`, `torch_save.rs`)
//! encode it; `export.rs` picks the writer.

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, bridge};
use burn::tensor::DType;

use super::names::NameScheme;
use crate::error::{Error, Result};
use crate::models::Net;

/// One tensor of a PyTorch state dict, little-endian bytes.
#[derive(Debug, Clone)]
pub struct StateTensor {
    pub key: String,
    pub dtype: TorchDtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchDtype {
    F32,
    I64,
}

impl StateTensor {
    /// Refuses a tensor whose bytes do not fill its shape (a writer would emit a corrupt file).
    pub fn check_len(&self) -> Result<()> {
        let expected = self.shape.iter().product::<usize>() * self.dtype.size();
        if self.bytes.len() != expected {
            return Err(Error::Other(format!(
                "tensor {} has {} bytes for shape {:?}",
                self.key,
                self.bytes.len(),
                self.shape
            )));
        }
        Ok(())
    }
}

impl TorchDtype {
    pub fn size(self) -> usize {
        match self {
            TorchDtype::F32 => 4,
            TorchDtype::I64 => 8,
        }
    }
}

/// Every tensor of `net` as (burn path, shape in PyTorch layout), in module order.
pub fn pytorch_tensors(net: &Net) -> Vec<(String, Vec<usize>)> {
    net.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| (t.name, t.shape.to_vec()))
        .collect()
}

/// The state dict of `net` under `scheme`'s names, in module order, each BatchNorm followed by
/// its `num_batches_tracked` (0).
pub fn state_dict(net: &Net, arch: &str, scheme: NameScheme) -> Result<Vec<StateTensor>> {
    scheme.check(arch)?;
    let mut out = Vec::new();
    for t in net.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let path = t.name.clone();
        let shape = t.shape.to_vec();
        let data = bridge::into_data(t)
            .map_err(|e| Error::Other(format!("cannot read tensor {path}: {e:?}")))?;
        let data = if data.dtype() == DType::F32 {
            data
        } else {
            data.convert_dtype(DType::F32)
        };
        out.push(StateTensor {
            key: scheme.to_pytorch(arch, &path),
            dtype: TorchDtype::F32,
            shape,
            bytes: data.as_bytes().to_vec(),
        });
        if let Some(bn) = path.strip_suffix(".running_var") {
            out.push(StateTensor {
                key: scheme.to_pytorch(arch, &format!("{bn}.num_batches_tracked")),
                dtype: TorchDtype::I64,
                shape: Vec::new(),
                bytes: 0i64.to_le_bytes().to_vec(),
            });
        }
    }
    Ok(out)
}
