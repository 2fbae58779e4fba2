//! Reading PyTorch state dicts: `torch.save` files (`.pth`, `.pt`, `.t7`, `.pkl`, zip or
//! legacy format, through burn-store's `pytorch-reader`) and `.safetensors`.
//!
//! A training checkpoint rather than a bare state dict is unwrapped: nested dicts give dotted
//! keys (`{'net': {'module.conv1.weight': ...}, 'acc': ..}` reads as `net.module.conv1.weight`),
//! and the leading wrappers `net.`, `state_dict.`, `model_state_dict.`, `model.`, `module.`
//! (DataParallel) and `_orig_mod.` (`torch.compile`) are stripped when every key has them. If a
//! file holds a state dict beside other tensors (`{'state_dict': .., 'optimizer': ..}`), the
//! state dict is taken and the rest listed as ignored; `--key` picks a sub-dict explicitly.

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{ModuleStore, SafetensorsStore, bridge};

use crate::error::{Error, Result};

/// Leading key segments that wrap a state dict rather than name a module.
pub const WRAPPERS: &[&str] = &[
    "net",
    "state_dict",
    "model_state_dict",
    "model",
    "module",
    "_orig_mod",
];

/// Wrappers under which a training checkpoint keeps the model's weights.
const STATE_DICT_KEYS: &[&str] = &["state_dict", "model_state_dict", "net", "model"];

/// The tensors of a PyTorch file, by state-dict key.
pub struct StateDict {
    pub tensors: BTreeMap<String, PackTensor>,
    /// What was stripped from every key (`net.module.`), empty if nothing.
    pub prefix: String,
    /// Tensors outside the state dict (other entries of a training checkpoint), not loaded.
    pub ignored: Vec<String>,
    /// `num_batches_tracked` buffers (PyTorch's BatchNorm step counter), dropped.
    pub batch_counters: usize,
    /// `safetensors` or `torch.save (zip)` etc.
    pub format: String,
}

/// Reads every tensor of `path`, unwrapped as the module docs describe. `key` (a dotted
/// path such as `net` or `state_dict`) selects a sub-dict explicitly.
pub fn read_state_dict(path: &Path, key: Option<&str>) -> Result<StateDict> {
    let (raw, format) = read_raw(path)?;
    if raw.is_empty() {
        return Err(Error::file(path, "holds no tensors"));
    }
    let mut tensors: BTreeMap<String, PackTensor> = raw;
    let mut prefix = String::new();
    let mut ignored = Vec::new();

    if let Some(key) = key.filter(|k| !k.is_empty()) {
        let want = format!("{}.", key.trim_end_matches('.'));
        let (inside, outside): (Vec<_>, Vec<_>) =
            tensors.into_iter().partition(|(k, _)| k.starts_with(&want));
        if inside.is_empty() {
            let tops = top_level(outside.iter().map(|(k, _)| k.as_str()));
            return Err(Error::file(
                path,
                format!("has no tensors under `{key}`; its top-level entries are: {tops}"),
            ));
        }
        ignored = outside.into_iter().map(|(k, _)| k).collect();
        tensors = strip(inside, &want);
        prefix = want;
    } else {
        // A checkpoint with the weights under one known key beside other tensors.
        let tops: Vec<String> = tensors
            .keys()
            .map(|k| k.split('.').next().unwrap_or("").to_string())
            .collect();
        let all_same = tops.windows(2).all(|w| w[0] == w[1]);
        if !all_same {
            let holders: Vec<&&str> = STATE_DICT_KEYS
                .iter()
                .filter(|w| tops.iter().any(|t| t == **w))
                .collect();
            if let [one] = holders.as_slice() {
                let want = format!("{one}.");
                let (inside, outside): (Vec<_>, Vec<_>) =
                    tensors.into_iter().partition(|(k, _)| k.starts_with(&want));
                ignored = outside.into_iter().map(|(k, _)| k).collect();
                tensors = strip(inside, &want);
                prefix = want;
            }
        }
    }
    // Wrappers shared by every key (`net.module.` of the MEAL reference).
    loop {
        let first = tensors.keys().next().cloned().unwrap_or_default();
        let Some(seg) = WRAPPERS
            .iter()
            .find(|w| first.starts_with(&format!("{w}.")))
        else {
            break;
        };
        let want = format!("{seg}.");
        if !tensors.keys().all(|k| k.starts_with(&want)) {
            break;
        }
        tensors = strip(tensors.into_iter().collect(), &want);
        prefix.push_str(&want);
    }
    let before = tensors.len();
    tensors.retain(|k, _| !(k == "num_batches_tracked" || k.ends_with(".num_batches_tracked")));
    let batch_counters = before - tensors.len();
    Ok(StateDict {
        tensors,
        prefix,
        ignored,
        batch_counters,
        format,
    })
}

fn strip(items: Vec<(String, PackTensor)>, prefix: &str) -> BTreeMap<String, PackTensor> {
    items
        .into_iter()
        .map(|(k, mut t)| {
            let k = k[prefix.len()..].to_string();
            t.name = k.clone();
            (k, t)
        })
        .collect()
}

fn top_level<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let mut tops: Vec<&str> = keys.map(|k| k.split('.').next().unwrap_or("")).collect();
    tops.dedup();
    tops.join(", ")
}

/// The file's tensors under their full dotted keys.
fn read_raw(path: &Path) -> Result<(BTreeMap<String, PackTensor>, String)> {
    if !path.is_file() {
        return Err(Error::file(path, "no such file"));
    }
    if is_safetensors(path)? {
        let mut store = SafetensorsStore::from_file(path);
        let tensors = store
            .get_all_tensors()
            .map_err(|e| Error::file(path, format!("cannot read safetensors: {e}")))?
            .clone();
        return Ok((tensors, "safetensors".into()));
    }
    let reader = PytorchReader::new(path).map_err(|e| {
        Error::file(
            path,
            format!("cannot read as a PyTorch checkpoint (torch.save zip or legacy file) or safetensors: {e}"),
        )
    })?;
    let format = format!("torch.save ({:?})", reader.metadata().format_type).to_lowercase();
    let file_len = std::fs::metadata(path)
        .map_err(|e| Error::file(path, e))?
        .len();
    let mut tensors = BTreeMap::new();
    for (k, t) in reader.into_tensors() {
        let mut t = bridge::from_pytorch(t);
        // The bytes are read later, when the tensor is used. A view with zero strides
        // (`expand`) materialises more than its storage holds: a few hundred bytes of file can
        // describe 10 GB. No state-dict tensor is larger than the file that stores it.
        if t.byte_len() as u64 > file_len {
            return Err(Error::file(
                path,
                format!(
                    "tensor `{k}` of shape {:?} would take {} bytes, more than the whole \
                     {file_len}-byte file: it is a broadcast view (e.g. `expand`) of a smaller \
                     storage; save `tensor.contiguous()` instead",
                    t.shape.as_slice(),
                    t.byte_len()
                ),
            ));
        }
        t.name = k.clone();
        tensors.insert(k, t);
    }
    Ok((tensors, format))
}

/// A safetensors file opens with a little-endian u64 header length and a `{`.
fn is_safetensors(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 9];
    let mut f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let n = f.read(&mut head).map_err(|e| Error::file(path, e))?;
    if n < 9 {
        return Ok(false);
    }
    let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    Ok(head[8] == b'{' && len < 100_000_000)
}
