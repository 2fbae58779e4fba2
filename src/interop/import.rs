//! PyTorch state dict → zoo model, strictly: every missing, unexpected or wrongly shaped key is
//! named in one error, unless the caller allows a partial load (and then gets the same list).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use burn::store::{FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter};
use burn::tensor::{DType, Device};

use super::names::{NameScheme, NameTable};
use super::read::{StateDict, read_state_dict};
use super::state::pytorch_tensors;
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::models::{self, Net};
use crate::train::model_io::ModelMeta;

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub arch: String,
    /// Class count; by default the row count of the classifier weight in the file.
    pub num_classes: Option<usize>,
    /// Naming of the file's keys; by default the scheme that matches most keys.
    pub names: Option<NameScheme>,
    /// Load what fits and report the rest instead of failing.
    pub allow_partial: bool,
    /// A sub-dict of the file (`net`, `state_dict`) to read; by default found automatically.
    pub key: Option<String>,
}

impl ImportOptions {
    pub fn new(arch: &str) -> Self {
        Self {
            arch: arch.to_string(),
            num_classes: None,
            names: None,
            allow_partial: false,
            key: None,
        }
    }
}

/// A key whose tensor has another shape than the model's.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeMismatch {
    pub key: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// How a file's keys met the model's (all names are PyTorch keys of the file's scheme).
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub file_format: String,
    pub scheme: Option<NameScheme>,
    /// Stripped from every key of the file (`net.module.`).
    pub prefix: String,
    pub loaded: usize,
    /// Parameters of the model the file lacks (left at their random initialisation).
    pub missing: Vec<String>,
    /// Keys of the file the model has no parameter for.
    pub unexpected: Vec<String>,
    pub mismatched: Vec<ShapeMismatch>,
    /// Tensors outside the state dict (optimizer state, ...), not considered.
    pub ignored: Vec<String>,
    /// `num_batches_tracked` buffers skipped.
    pub batch_counters: usize,
}

impl ImportReport {
    /// Nothing missing, unexpected or mismatched.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// One line per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for k in &self.missing {
            out.push(format!("missing     {k}"));
        }
        for k in &self.unexpected {
            out.push(format!("unexpected  {k}"));
        }
        for m in &self.mismatched {
            out.push(format!(
                "shape       {}: the model has {:?}, the file {:?}",
                m.key, m.expected, m.found
            ));
        }
        out
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.map(|s| s.as_str()).unwrap_or("?");
        write!(
            f,
            "{} tensors loaded ({} file, {scheme} names",
            self.loaded, self.file_format
        )?;
        if !self.prefix.is_empty() {
            write!(f, ", prefix `{}` stripped", self.prefix)?;
        }
        if self.batch_counters > 0 {
            write!(f, ", {} num_batches_tracked ignored", self.batch_counters)?;
        }
        write!(f, ")")?;
        if !self.ignored.is_empty() {
            write!(
                f,
                "; {} tensors outside the state dict ignored ({}{})",
                self.ignored.len(),
                self.ignored
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if self.ignored.len() > 3 { ", ..." } else { "" }
            )?;
        }
        let problems = self.problems();
        if !problems.is_empty() {
            write!(
                f,
                "\n{} missing, {} unexpected, {} wrongly shaped:",
                self.missing.len(),
                self.unexpected.len(),
                self.mismatched.len()
            )?;
            for p in problems {
                write!(f, "\n  {p}")?;
            }
        }
        Ok(())
    }
}

/// An imported model.
pub struct Imported {
    pub net: Net,
    pub num_classes: usize,
    pub report: ImportReport,
}

/// Reads `path` and loads it into a fresh `opts.arch` on `device`.
///
/// Strict unless `opts.allow_partial`: any missing, unexpected or wrongly shaped key fails
/// with all of them listed. With `allow_partial`, the tensors that fit are loaded, the rest of
/// the model keeps its initialisation, and the report lists what did not fit.
pub fn import_pytorch(path: &Path, opts: &ImportOptions, device: &Device) -> Result<Imported> {
    let info = models::arch_info(&opts.arch)?;
    if let Some(s) = opts.names {
        s.check(info.name)?;
    }
    let state = read_state_dict(path, opts.key.as_deref())?;

    // Choose the naming scheme from a probe model (names do not depend on the class count).
    let probe = models::build(info.name, opts.num_classes.unwrap_or(10), device)?;
    let probe_classes = opts.num_classes.unwrap_or(10);
    let tensors = pytorch_tensors(&probe);
    // The classifier: the last 2-D weight with one row per class (`fc`, timm's `classifier`,
    // SENet's `last_linear`), found on the probe rather than by name.
    let head = tensors
        .iter()
        .rev()
        .find(|(p, shape)| p.ends_with(".weight") && shape.len() == 2 && shape[0] == probe_classes)
        .map(|(p, _)| p.clone())
        .unwrap_or_else(|| "fc.weight".to_string());
    let paths: Vec<String> = tensors.into_iter().map(|(p, _)| p).collect();
    let scheme = match opts.names {
        Some(s) => s,
        None => best_scheme(info.name, &paths, &state),
    };
    let table = NameTable::new(info.name, scheme, paths);
    let fc_key = scheme.to_pytorch(info.name, &head);
    let num_classes = match opts.num_classes {
        Some(k) => k,
        None => match state.tensors.get(&fc_key) {
            Some(t) if t.shape.len() == 2 && t.shape[0] > 0 => t.shape[0],
            _ => {
                return Err(Error::file(
                    path,
                    format!(
                        "cannot tell the class count: no 2-D `{fc_key}` (the classifier of {} \
                         with {scheme} names); give it with --classes. {}",
                        info.name,
                        key_hint(&state)
                    ),
                ));
            }
        },
    };
    let net = if probe_classes == num_classes {
        probe
    } else {
        models::build(info.name, num_classes, device)?
    };
    let (net, report) = load_state_dict(net, info.name, &table, state, opts.allow_partial)
        .map_err(|e| match e {
            Error::Other(msg) => Error::file(path, msg),
            e => e,
        })?;
    Ok(Imported {
        net,
        num_classes,
        report,
    })
}

/// The scheme under which most of the file's keys name a parameter (`meal` on a tie).
fn best_scheme(arch: &str, paths: &[String], state: &StateDict) -> NameScheme {
    NameScheme::for_arch(arch)
        .into_iter()
        .map(|s| {
            let hits = paths
                .iter()
                .filter(|p| state.tensors.contains_key(&s.to_pytorch(arch, p)))
                .count();
            (hits, std::cmp::Reverse(s), s)
        })
        .max()
        .map(|(_, _, s)| s)
        .unwrap_or(NameScheme::Meal)
}

fn key_hint(state: &StateDict) -> String {
    let keys: Vec<&String> = state.tensors.keys().take(5).collect();
    format!(
        "The file's first keys: {}",
        keys.iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Loads `state` into `net` (keys named by `table`), strictly unless `allow_partial`.
fn load_state_dict(
    mut net: Net,
    arch: &str,
    table: &NameTable,
    state: StateDict,
    allow_partial: bool,
) -> Result<(Net, ImportReport)> {
    let expected: BTreeMap<String, Vec<usize>> = pytorch_tensors(&net)
        .into_iter()
        .map(|(p, shape)| (table.scheme.to_pytorch(arch, &p), shape))
        .collect();
    let mut report = ImportReport {
        file_format: state.format.clone(),
        scheme: Some(table.scheme),
        prefix: state.prefix.clone(),
        ignored: state.ignored.clone(),
        batch_counters: state.batch_counters,
        ..Default::default()
    };
    let mut usable = Vec::new();
    for (key, tensor) in state.tensors {
        match (expected.get(&key), table.to_burn.get(&key)) {
            (Some(shape), Some(burn_path)) => {
                let found = tensor.shape.to_vec();
                if &found != shape {
                    report.mismatched.push(ShapeMismatch {
                        key,
                        expected: shape.clone(),
                        found,
                    });
                } else {
                    let mut tensor = tensor;
                    tensor.name = burn_path.clone();
                    usable.push(tensor);
                }
            }
            _ => report.unexpected.push(key),
        }
    }
    let present: std::collections::HashSet<&str> = usable
        .iter()
        .map(|t| t.name.as_str())
        .chain(
            report
                .mismatched
                .iter()
                .filter_map(|m| table.to_burn.get(&m.key).map(|s| s.as_str())),
        )
        .collect();
    report.missing = expected
        .keys()
        .filter(|k| {
            !table
                .to_burn
                .get(*k)
                .is_some_and(|p| present.contains(p.as_str()))
        })
        .cloned()
        .collect();
    if !report.is_complete() && !allow_partial {
        return Err(Error::Other(format!(
            "does not fit {arch} ({} names); nothing was loaded. {} missing, {} unexpected, {} \
             wrongly shaped (PyTorch keys; run with --allow-partial to load the rest anyway):\n  {}",
            table.scheme,
            report.missing.len(),
            report.unexpected.len(),
            report.mismatched.len(),
            report.problems().join("\n  ")
        )));
    }
    let adapter: Box<dyn ModuleAdapter> =
        Box::new(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)));
    let wanted = usable.len();
    let result = net.apply(usable, None, Some(adapter), true);
    if !result.errors.is_empty() || result.applied.len() != wanted {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(Error::Other(format!(
            "loading into {arch} failed for {} of {wanted} tensors: {}; unused: {}",
            wanted - result.applied.len(),
            errors.join("; "),
            result.unused.join(", ")
        )));
    }
    report.loaded = result.applied.len();
    Ok((net, report))
}

/// The header of a checkpoint made from an imported model.
pub fn imported_meta(
    arch: &str,
    num_classes: usize,
    normalization: Normalization,
    input_shape: [usize; 3],
    class_names: Vec<String>,
) -> ModelMeta {
    let pretrained = crate::data::pretrained_input(arch);
    ModelMeta {
        meal_version: env!("CARGO_PKG_VERSION").to_string(),
        arch: arch.to_string(),
        num_classes,
        input_shape,
        normalization,
        class_names,
        source: "import".to_string(),
        epoch: 0,
        test_acc: None,
        crop_pct: pretrained.map(|p| p.settings.crop_pct),
        interpolation: pretrained
            .map(|p| p.settings.interpolation)
            .unwrap_or_default(),
    }
}
