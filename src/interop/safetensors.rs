//! A minimal safetensors writer (and metadata reader): an 8-byte little-endian header length,
//! a JSON header naming each tensor's dtype, shape and byte range (keys sorted, header padded
//! with spaces to a multiple of 8), then the tensors' bytes back to back.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::state::{StateTensor, TorchDtype};
use crate::error::{Error, Result};

/// The file's bytes.
pub fn encode(tensors: &[StateTensor], metadata: &[(String, String)]) -> Result<Vec<u8>> {
    let mut sorted: Vec<&StateTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut header = Map::new();
    if !metadata.is_empty() {
        let meta: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        header.insert("__metadata__".into(), Value::Object(meta));
    }
    let mut offset = 0usize;
    for t in &sorted {
        t.check_len()?;
        let dtype = match t.dtype {
            TorchDtype::F32 => "F32",
            TorchDtype::I64 => "I64",
        };
        header.insert(
            t.key.clone(),
            json!({"dtype": dtype, "shape": t.shape, "data_offsets": [offset, offset + t.bytes.len()]}),
        );
        offset += t.bytes.len();
    }
    let mut text = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::Other(format!("safetensors header: {e}")))?;
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + offset);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    for t in &sorted {
        out.extend_from_slice(&t.bytes);
    }
    Ok(out)
}

/// The `__metadata__` of a safetensors file (empty when it has none).
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let len = u64::from_le_bytes(len);
    // The header length comes from the file: check it against what the file holds before
    // allocating for it.
    let file_len = f.metadata().map_err(|e| Error::file(path, e))?.len();
    if len > 100_000_000 || len > file_len.saturating_sub(8) {
        return Err(Error::file(
            path,
            format!(
                "not a safetensors file: header length {len} does not fit in a {file_len}-byte                  file"
            ),
        ));
    }
    let mut text = vec![0u8; len as usize];
    f.read_exact(&mut text)
        .map_err(|e| Error::file(path, format!("truncated safetensors header: {e}")))?;
    let header: Value = serde_json::from_slice(&text)
        .map_err(|e| Error::file(path, format!("safetensors header is not JSON: {e}")))?;
    Ok(header
        .get("__metadata__")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default())
}
