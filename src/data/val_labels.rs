//! Labels of a flat ImageNet validation folder (`val/*.JPEG`, no class sub-folders), from one of
//! the two common files:
//!
//! * Kaggle's `LOC_val_solution.csv`: a header `ImageId,PredictionString`, then rows
//!   `ILSVRC2012_val_00008726,n02119789 255 142 454 329 ...` whose first token is the wnid;
//!   the image is `<ImageId>.JPEG`.
//! * A plain text file of `<file> <wnid-or-index>` lines (e.g. `ILSVRC2012_val_00000001.JPEG 65`),
//!   an index counting the sorted class folders of `train/` from 0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::DataError;

/// The file names a flat `val/` is labelled by when `data.val_labels` is unset, looked for in
/// the data folder, in this order.
pub const DEFAULT_NAMES: [&str; 2] = ["LOC_val_solution.csv", "val_labels.txt"];

/// `(image file name, label)` pairs of `path`, sorted by file name; `classes` are the training
/// class names, whose positions are the labels.
pub fn read(path: &Path, classes: &[String]) -> Result<Vec<(String, usize)>, DataError> {
    let bytes = super::error::read_file(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| DataError::format(path, "labels file is not UTF-8 text"))?;
    let index: HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let csv = text.trim_start_matches('\u{feff}').starts_with("ImageId,");
    if csv {
        lines.next();
    }
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    for (n, line) in lines {
        let record = n + 1;
        let (file, class) = if csv {
            let (id, pred) = line.split_once(',').ok_or_else(|| {
                DataError::record(path, record, "expected `ImageId,PredictionString`")
            })?;
            let wnid = pred
                .split_whitespace()
                .next()
                .ok_or_else(|| DataError::record(path, record, "PredictionString is empty"))?;
            (format!("{}.JPEG", id.trim()), wnid)
        } else {
            let mut tokens = line.split_whitespace();
            match (tokens.next(), tokens.next(), tokens.next()) {
                (Some(f), Some(c), None) => (f.to_string(), c),
                _ => {
                    return Err(DataError::record(
                        path,
                        record,
                        format!("expected `<file> <wnid-or-index>`, found {line:?}"),
                    ));
                }
            }
        };
        let label = match index.get(class) {
            Some(&l) => l,
            None => match class.parse::<usize>() {
                Ok(i) if i < classes.len() => i,
                Ok(i) => {
                    return Err(DataError::record(
                        path,
                        record,
                        format!(
                            "class index {i} is out of range: train/ has {} class folders",
                            classes.len()
                        ),
                    ));
                }
                Err(_) => {
                    return Err(DataError::record(
                        path,
                        record,
                        format!("class {class:?} has no folder in train/"),
                    ));
                }
            },
        };
        if let Some(first) = seen.insert(file.clone(), record) {
            return Err(DataError::record(
                path,
                record,
                format!("{file} is labelled again (first on record {first})"),
            ));
        }
        out.push((file, label));
    }
    if out.is_empty() {
        return Err(DataError::format(path, "labels file lists no images"));
    }
    out.sort();
    Ok(out)
}

/// The labels file of a flat `val/`: `configured` (relative paths count from the data folder),
/// else the first of [`DEFAULT_NAMES`] present.
pub fn locate(root: &Path, configured: Option<&Path>) -> Result<PathBuf, DataError> {
    if let Some(p) = configured {
        return Ok(if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        });
    }
    DEFAULT_NAMES
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            DataError::format(
                root.join("val"),
                format!(
                    "no class sub-folders, and no labels file ({}) beside it; \
                     set data.val_labels",
                    DEFAULT_NAMES.join(" or ")
                ),
            )
        })
}
