//! CIFAR-10 and CIFAR-100 readers, binary and python (pickle) releases.

use std::path::{Path, PathBuf};

use super::error::read_file;
use super::pickle;
use super::{Cifar100Labels, DataError};

/// Bytes of one 32×32 RGB image (1024 R, 1024 G, 1024 B).
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Images (CHW uint8, concatenated) and labels read from one or more files.
#[derive(Debug, Default)]
pub struct RawSplit {
    pub images: Vec<u8>,
    pub labels: Vec<usize>,
    pub files: Vec<PathBuf>,
}

/// `dir/<prefix><N><suffix>` files, sorted by N (e.g. `data_batch_1.bin`, `data_batch_2.bin`).
pub fn numbered_files(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
        else {
            continue;
        };
        if !num.is_empty()
            && num.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = num.parse::<u64>()
            && entry.path().is_file()
        {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Reads one CIFAR binary file: records of `label_bytes` label bytes then 3072 pixel bytes.
/// `classes[i]` bounds label byte `i`; `use_label` picks the label byte that is returned.
pub fn read_bin_file(
    path: &Path,
    classes: &[usize],
    use_label: usize,
    out: &mut RawSplit,
) -> Result<(), DataError> {
    let bytes = read_file(path)?;
    let label_bytes = classes.len();
    let record = label_bytes + IMAGE_BYTES;
    if bytes.is_empty() {
        return Err(DataError::format(path, "file is empty"));
    }
    if !bytes.len().is_multiple_of(record) {
        return Err(DataError::format(
            path,
            format!(
                "size {} is not a multiple of the {record}-byte record ({} whole records, \
                 {} bytes left over): truncated or not a CIFAR binary file",
                bytes.len(),
                bytes.len() / record,
                bytes.len() % record
            ),
        ));
    }
    let n = bytes.len() / record;
    out.images.reserve(n * IMAGE_BYTES);
    out.labels.reserve(n);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        for (b, &max) in classes.iter().enumerate() {
            if rec[b] as usize >= max {
                let what = match (label_bytes, b) {
                    (2, 0) => "coarse label",
                    (2, _) => "fine label",
                    _ => "label",
                };
                return Err(DataError::record(
                    path,
                    i,
                    format!(
                        "{what} byte {} is not below {max} classes (byte offset {})",
                        rec[b],
                        i * record + b
                    ),
                ));
            }
        }
        out.labels.push(rec[use_label] as usize);
        out.images.extend_from_slice(&rec[label_bytes..]);
    }
    out.files.push(path.to_path_buf());
    Ok(())
}

/// Class names from a text file, one per line, blank lines ignored; `expected` names required.
/// A missing file gives `fallback`.
pub fn read_names(
    path: &Path,
    expected: usize,
    fallback: impl FnOnce() -> Vec<String>,
) -> Result<Vec<String>, DataError> {
    if !path.exists() {
        return Ok(fallback());
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != expected {
        return Err(DataError::format(
            path,
            format!("holds {} class names, expected {expected}", names.len()),
        ));
    }
    Ok(names)
}

fn numbered_names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn cifar10_names() -> Vec<String> {
    CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
}

fn required(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(DataError::format(dir, format!("missing file {name}")))
    }
}

/// CIFAR-10 binary release: (train, test, class names).
pub fn cifar10_bin(dir: &Path) -> Result<(RawSplit, RawSplit, Vec<String>), DataError> {
    let files = numbered_files(dir, "data_batch_", ".bin")?;
    if files.is_empty() {
        return Err(DataError::format(
            dir,
            "no training files data_batch_<N>.bin found",
        ));
    }
    let mut train = RawSplit::default();
    for f in &files {
        read_bin_file(f, &[10], 0, &mut train)?;
    }
    let mut test = RawSplit::default();
    read_bin_file(&required(dir, "test_batch.bin")?, &[10], 0, &mut test)?;
    let names = read_names(&dir.join("batches.meta.txt"), 10, cifar10_names)?;
    Ok((train, test, names))
}

/// CIFAR-100 binary release.
pub fn cifar100_bin(
    dir: &Path,
    labels: Cifar100Labels,
) -> Result<(RawSplit, RawSplit, Vec<String>), DataError> {
    let use_label = match labels {
        Cifar100Labels::Coarse => 0,
        Cifar100Labels::Fine => 1,
    };
    let mut train = RawSplit::default();
    read_bin_file(
        &required(dir, "train.bin")?,
        &[20, 100],
        use_label,
        &mut train,
    )?;
    let mut test = RawSplit::default();
    read_bin_file(
        &required(dir, "test.bin")?,
        &[20, 100],
        use_label,
        &mut test,
    )?;
    let names = match labels {
        Cifar100Labels::Fine => read_names(&dir.join("fine_label_names.txt"), 100, || {
            numbered_names("fine_", 100)
        })?,
        Cifar100Labels::Coarse => read_names(&dir.join("coarse_label_names.txt"), 20, || {
            numbered_names("coarse_", 20)
        })?,
    };
    Ok((train, test, names))
}

/// Reads one CIFAR python batch (a pickled dict) into `out`; `label_key` names the label list.
pub fn read_py_file(
    path: &Path,
    label_key: &str,
    classes: usize,
    out: &mut RawSplit,
) -> Result<(), DataError> {
    let bytes = read_file(path)?;
    let dict = pickle::load(&bytes, path)?;
    if !matches!(dict, pickle::Value::Dict(_)) {
        return Err(DataError::format(path, "pickle does not hold a dict"));
    }
    let (rows, data) = pickle::u8_matrix(&dict, "data", IMAGE_BYTES, path)?;
    let labels = pickle::int_list(&dict, label_key, path)?;
    if labels.len() != rows {
        return Err(DataError::format(
            path,
            format!(
                "'data' has {rows} rows but '{label_key}' has {} entries",
                labels.len()
            ),
        ));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= classes) {
        return Err(DataError::record(
            path,
            i,
            format!("{label_key} entry {l} is not below {classes} classes"),
        ));
    }
    out.images.extend_from_slice(&data);
    out.labels.extend(labels);
    out.files.push(path.to_path_buf());
    Ok(())
}

fn meta_names(
    path: &Path,
    key: &str,
    expected: usize,
    fallback: impl FnOnce() -> Vec<String>,
) -> Result<Vec<String>, DataError> {
    if !path.is_file() {
        return Ok(fallback());
    }
    let bytes = read_file(path)?;
    let meta = pickle::load(&bytes, path)?;
    let names = pickle::text_list(&meta, key, path)?;
    if names.len() != expected {
        return Err(DataError::format(
            path,
            format!("'{key}' holds {} names, expected {expected}", names.len()),
        ));
    }
    Ok(names)
}

/// CIFAR-10 python release (`cifar-10-batches-py`).
pub fn cifar10_py(dir: &Path) -> Result<(RawSplit, RawSplit, Vec<String>), DataError> {
    let files = numbered_files(dir, "data_batch_", "")?;
    if files.is_empty() {
        return Err(DataError::format(
            dir,
            "no training files data_batch_<N> found",
        ));
    }
    let mut train = RawSplit::default();
    for f in &files {
        read_py_file(f, "labels", 10, &mut train)?;
    }
    let mut test = RawSplit::default();
    read_py_file(&required(dir, "test_batch")?, "labels", 10, &mut test)?;
    let names = meta_names(&dir.join("batches.meta"), "label_names", 10, cifar10_names)?;
    Ok((train, test, names))
}

/// CIFAR-100 python release (`cifar-100-python`).
pub fn cifar100_py(
    dir: &Path,
    labels: Cifar100Labels,
) -> Result<(RawSplit, RawSplit, Vec<String>), DataError> {
    let (key, classes, names_key, prefix) = match labels {
        Cifar100Labels::Fine => ("fine_labels", 100, "fine_label_names", "fine_"),
        Cifar100Labels::Coarse => ("coarse_labels", 20, "coarse_label_names", "coarse_"),
    };
    let mut train = RawSplit::default();
    read_py_file(&required(dir, "train")?, key, classes, &mut train)?;
    let mut test = RawSplit::default();
    read_py_file(&required(dir, "test")?, key, classes, &mut test)?;
    let names = meta_names(&dir.join("meta"), names_key, classes, || {
        numbered_names(prefix, classes)
    })?;
    Ok((train, test, names))
}
