//! Reading a run folder: its per-epoch metrics, its teachers (distillation runs), its config and
//! its command line. Nothing here needs the run to be finished: a run still in progress shows
//! the epochs it has logged so far.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::train::run_dir::{CONFIG_FILE, METRICS_FILE};

/// `run.txt`: the command line, version, seed and device of a run.
pub const RUN_INFO_FILE: &str = "run.txt";
/// `teachers.json`, written by `meal distill` (see `distill::trainer::TEACHERS_FILE`).
pub const TEACHERS_FILE: &str = crate::distill::trainer::TEACHERS_FILE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// `meal train`: cross-entropy on labels.
    Train,
    /// `meal distill`: a student distilled from teachers.
    Distill,
}

impl RunKind {
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Train => "train",
            RunKind::Distill => "distill",
        }
    }
}

/// One line of `metrics.jsonl`: the epoch and every numeric field.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    /// 1-based, as the terminal shows it (`metrics.jsonl` logs the 0-based index).
    pub epoch: usize,
    pub values: BTreeMap<String, f64>,
}

impl EpochRow {
    /// A finite value of `key`, if logged.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied().filter(|v| v.is_finite())
    }
}

/// Test accuracy of a teacher or of the teachers' ensemble, as in `teachers.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Acc {
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub images: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Teacher {
    pub arch: String,
    /// What `meal distill` called it (its checkpoint path).
    pub name: String,
    pub acc: Acc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Teachers {
    pub teachers: Vec<Teacher>,
    pub ensemble: Acc,
}

#[derive(Deserialize)]
struct TeachersFile {
    teachers: Vec<(String, String, Acc)>,
    ensemble: Acc,
}

/// Everything the report shows about one run folder.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Short unique name (the folder name, with parents added when two runs share it).
    pub name: String,
    pub path: PathBuf,
    pub kind: RunKind,
    /// The trained architecture (`arch`) or the student (`student`).
    pub model: String,
    /// Planned epochs from the config (defaults filled in), if readable.
    pub epochs_planned: Option<usize>,
    /// Logged epochs in order, one per epoch (a re-logged epoch keeps its last line).
    pub epochs: Vec<EpochRow>,
    pub teachers: Option<Teachers>,
    pub config_text: Option<String>,
    pub run_text: Option<String>,
    /// Things that were off in the folder (skipped lines, unreadable files).
    pub warnings: Vec<String>,
}

/// Whether `dir` looks like a run folder.
pub fn is_run_dir(dir: &Path) -> bool {
    [METRICS_FILE, CONFIG_FILE, RUN_INFO_FILE, TEACHERS_FILE]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// The run folders that `paths` name: each path is a run folder, or a folder whose direct
/// subfolders are run folders (e.g. `runs/`), which stands for all of them in name order.
pub fn expand_run_dirs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            return Err(Error::file(p, "not a folder (give run folders)"));
        }
        if is_run_dir(p) {
            out.push(p.clone());
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| Error::file(p, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|s| s.is_dir() && is_run_dir(s))
            .collect();
        if subs.is_empty() {
            return Err(Error::file(
                p,
                format!(
                    "not a run folder (no {METRICS_FILE}, {CONFIG_FILE}, {RUN_INFO_FILE} or \
                     {TEACHERS_FILE}) and no subfolder is one"
                ),
            ));
        }
        subs.sort();
        out.extend(subs);
    }
    Ok(out)
}

/// Reads one run folder. Missing files are tolerated (a run that has not logged an epoch yet
/// still has a config); unreadable metric lines are skipped with a warning.
pub fn load_run(path: &Path) -> Result<RunData> {
    let mut warnings = Vec::new();
    let read = |name: &str| -> Result<Option<String>> {
        let p = path.join(name);
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::file(&p, e)),
        }
    };
    let config_text = read(CONFIG_FILE)?;
    let run_text = read(RUN_INFO_FILE)?;
    let metrics_text = read(METRICS_FILE)?;
    let teachers_text = read(TEACHERS_FILE)?;

    let table = match config_text.as_deref().map(str::parse::<toml::Table>) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            warnings.push(format!("{CONFIG_FILE} is not valid TOML: {e}"));
            None
        }
        None => None,
    };

    let epochs = match &metrics_text {
        Some(text) => parse_metrics(text, &mut warnings),
        None => {
            warnings.push(format!("no {METRICS_FILE} yet: no epoch has been logged"));
            Vec::new()
        }
    };

    let teachers = match teachers_text {
        Some(text) => match serde_json::from_str::<TeachersFile>(&text) {
            Ok(f) => Some(Teachers {
                teachers: f
                    .teachers
                    .into_iter()
                    .map(|(arch, name, acc)| Teacher { arch, name, acc })
                    .collect(),
                ensemble: f.ensemble,
            }),
            Err(e) => {
                warnings.push(format!("{TEACHERS_FILE} is unreadable: {e}"));
                None
            }
        },
        None => None,
    };

    let has = |key: &str| table.as_ref().is_some_and(|t| t.contains_key(key));
    let kind = if teachers.is_some()
        || has("student")
        || has("teachers")
        || epochs.iter().any(|e| e.values.contains_key("sim_loss"))
    {
        RunKind::Distill
    } else {
        RunKind::Train
    };
    let model_key = match kind {
        RunKind::Train => "arch",
        RunKind::Distill => "student",
    };
    let model = table
        .as_ref()
        .and_then(|t| t.get(model_key))
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    let epochs_planned = table.as_ref().and_then(|t| planned_epochs(t, kind));

    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(RunData {
        name,
        path: path.to_path_buf(),
        kind,
        model,
        epochs_planned,
        epochs,
        teachers,
        config_text,
        run_text,
        warnings,
    })
}

/// Epochs the config asks for, with the default filled in as `meal train`/`distill` would.
fn planned_epochs(table: &toml::Table, kind: RunKind) -> Option<usize> {
    let resolved = match kind {
        RunKind::Train => {
            crate::config::from_table::<crate::train::TrainConfig>(table.clone(), "train config")
                .map(|c| c.epochs)
        }
        RunKind::Distill => crate::config::from_table::<crate::distill::DistillConfig>(
            table.clone(),
            "distill config",
        )
        .map(|c| c.epochs),
    };
    match resolved {
        Ok(e) => Some(e),
        Err(_) => match table.get("epochs").and_then(|v| v.as_integer()) {
            Some(e) if e > 0 => Some(e as usize),
            _ => None,
        },
    }
}

/// Parses `metrics.jsonl`. A line that is not a JSON object with an `epoch` is skipped (the
/// last line of a run being written may be incomplete); epochs logged twice keep the last line.
pub fn parse_metrics(text: &str, warnings: &mut Vec<String>) -> Vec<EpochRow> {
    let mut by_epoch: BTreeMap<usize, BTreeMap<String, f64>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<serde_json::Value>(line);
        let Some(obj) = parsed.as_ref().ok().and_then(|v| v.as_object()) else {
            warnings.push(format!(
                "{METRICS_FILE} line {}: not a JSON object, skipped",
                i + 1
            ));
            continue;
        };
        let Some(epoch) = obj.get("epoch").and_then(|e| e.as_u64()) else {
            warnings.push(format!(
                "{METRICS_FILE} line {}: no `epoch`, skipped",
                i + 1
            ));
            continue;
        };
        let values = obj
            .iter()
            .filter(|(k, _)| k.as_str() != "epoch")
            .filter_map(|(k, v)| v.as_f64().map(|f| (k.clone(), f)))
            .collect();
        by_epoch.insert(epoch as usize + 1, values);
    }
    by_epoch
        .into_iter()
        .map(|(epoch, values)| EpochRow { epoch, values })
        .collect()
}

/// Gives runs that share a folder name longer names (`parent/name`) so that every run in one
/// report has a distinct name.
pub fn disambiguate(runs: &mut [RunData]) {
    for depth in 1..=4 {
        let names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
        let mut clash = false;
        for (i, run) in runs.iter_mut().enumerate() {
            if names.iter().filter(|n| **n == names[i]).count() > 1 {
                clash = true;
                let parts: Vec<String> = run
                    .path
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let start = parts.len().saturating_sub(depth + 1);
                run.name = parts[start..].join("/");
            }
        }
        if !clash {
            return;
        }
    }
    // Still equal (the same folder given twice): number them.
    let names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    for (i, run) in runs.iter_mut().enumerate() {
        if names.iter().filter(|n| **n == names[i]).count() > 1 {
            run.name = format!("{} #{}", names[i], i + 1);
        }
    }
}

/// Summary numbers of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunSummary {
    pub epochs_done: usize,
    /// Best test top-1 and the epoch it was reached at.
    pub best_top1: Option<(f64, usize)>,
    pub last_top1: Option<f64>,
    pub last_top5: Option<f64>,
    /// Mean training throughput over the logged epochs.
    pub images_per_sec: Option<f64>,
    /// Sum of the logged epochs' wall time.
    pub seconds: Option<f64>,
}

impl RunData {
    pub fn summary(&self) -> RunSummary {
        let best_top1 = self
            .epochs
            .iter()
            .filter_map(|e| e.get("test_top1").map(|v| (v, e.epoch)))
            .fold(None, |best: Option<(f64, usize)>, (v, ep)| match best {
                Some((b, _)) if b >= v => best,
                _ => Some((v, ep)),
            });
        let last = |key: &str| self.epochs.iter().rev().find_map(|e| e.get(key));
        let ips: Vec<f64> = self
            .epochs
            .iter()
            .filter_map(|e| e.get("images_per_sec"))
            .collect();
        let secs: Vec<f64> = self
            .epochs
            .iter()
            .filter_map(|e| e.get("epoch_seconds"))
            .collect();
        RunSummary {
            epochs_done: self.epochs.len(),
            best_top1,
            last_top1: last("test_top1"),
            last_top5: last("test_top5"),
            images_per_sec: (!ips.is_empty()).then(|| ips.iter().sum::<f64>() / ips.len() as f64),
            seconds: (!secs.is_empty()).then(|| secs.iter().sum()),
        }
    }

    /// `(epoch, value)` of `key` for every epoch that logged a finite value.
    pub fn series(&self, key: &str) -> Vec<(usize, f64)> {
        self.epochs
            .iter()
            .filter_map(|e| e.get(key).map(|v| (e.epoch, v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_lines_dedupe_and_skip_garbage() {
        let mut w = Vec::new();
        let rows = parse_metrics(
            "{\"epoch\":1,\"test_top1\":20}\n{\"epoch\":0,\"test_top1\":10}\n\
             {\"epoch\":1,\"test_top1\":25,\"lr\":0.1}\n{\"epoch\":2,\"test_",
            &mut w,
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].epoch, 1);
        assert_eq!(rows[1].get("test_top1"), Some(25.0));
        assert_eq!(rows[1].get("lr"), Some(0.1));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("line 4"));
    }
}
