//! Run folders: `runs/<name>-<UTC timestamp>/` holding the resolved config, the command line,
//! `metrics.jsonl` and the checkpoints, so every run can be inspected and resumed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::checkpoint::Container;
use super::run_lock::RunLock;
use crate::error::{Error, Result};

pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const LAST: &str = "last.ckpt";
pub const BEST: &str = "best.ckpt";

/// An open run folder. It holds the folder's lock (see [`RunLock`]) until the last clone is
/// dropped, so a second process cannot write into it meanwhile.
/// The folder a fresh run was created in, as it was before.
#[derive(Debug, Clone)]
enum Before {
    NoFolder,
    Entries(Vec<std::ffi::OsString>),
}

#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    /// What this process found where it created the run (`None` for a resumed run), so that a
    /// run that saved nothing can leave it as it was.
    before: Option<Before>,
    _lock: Arc<RunLock>,
}

impl RunDir {
    /// Creates a fresh run folder under `root`.
    pub fn create(root: &Path, name: &str, config: &toml::Table, seed: u64) -> Result<Self> {
        let mut path = root.join(format!("{name}-{}", timestamp()));
        // Two runs started in the same second get distinct folders.
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = root.join(format!("{name}-{}-{n}", timestamp()));
        }
        Self::create_at(&path, config, seed)
    }

    /// Creates the run folder at exactly `path` (for scripts), refusing to reuse a finished run.
    pub fn create_at(path: &Path, config: &toml::Table, seed: u64) -> Result<Self> {
        if path.join(LAST).exists() {
            return Err(Error::file(
                path,
                "already holds a run; use --resume to continue it or choose another folder",
            ));
        }
        if path.exists() && !path.is_dir() {
            return Err(Error::file(
                path,
                "is a file, not a folder; run_dir (--run-dir) must name a new or empty folder",
            ));
        }
        let path = path.to_path_buf();
        let before = match std::fs::read_dir(&path) {
            Ok(entries) => Before::Entries(
                entries
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect(),
            ),
            Err(_) => Before::NoFolder,
        };
        std::fs::create_dir_all(&path).map_err(|e| Error::file(&path, e))?;
        let lock = Arc::new(RunLock::acquire(&path)?);
        // Checked again under the lock: another process may have finished an epoch here.
        if path.join(LAST).exists() {
            return Err(Error::file(
                &path,
                "already holds a run; use --resume to continue it or choose another folder",
            ));
        }
        let dir = Self {
            path,
            before: Some(before),
            _lock: lock,
        };
        dir.write_config(config)?;
        let command: Vec<String> = std::env::args().collect();
        let info = format!(
            "command: {}\nmeal_version: {}\nseed: {seed}\ndevice: {}\n",
            command.join(" "),
            env!("CARGO_PKG_VERSION"),
            crate::backend::describe_selected()
        );
        write_file(&dir.path.join("run.txt"), info.as_bytes())?;
        Ok(dir)
    }

    /// Appends a line to `run.txt`.
    /// Undoes the creation of a run that failed before it saved an epoch: removes the folder
    /// if this process made it, else what the run added to it. A folder that holds a
    /// `last.ckpt`, or was opened to resume, is left alone.
    pub fn discard_unsaved(&self) {
        let Some(before) = &self.before else {
            return;
        };
        if self.last().exists() {
            return;
        }
        match before {
            Before::NoFolder => {
                let _ = std::fs::remove_dir_all(&self.path);
            }
            Before::Entries(kept) => {
                let Ok(entries) = std::fs::read_dir(&self.path) else {
                    return;
                };
                for e in entries.flatten() {
                    if !kept.contains(&e.file_name()) && e.file_name() != super::run_lock::LOCK_FILE
                    {
                        let p = e.path();
                        let _ = if p.is_dir() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                    }
                }
            }
        }
    }

    pub fn note(&self, line: &str) -> Result<()> {
        use std::io::Write;
        let path = self.path.join("run.txt");
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"))
            .map_err(|e| Error::file(&path, e))
    }

    /// Opens an existing run folder (for `--resume`), taking its lock.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join(LAST).exists() {
            return Err(Error::file(
                path,
                format!("no {LAST} here: not a run folder, or the run never finished an epoch"),
            ));
        }
        let lock = Arc::new(RunLock::acquire(path)?);
        Ok(Self {
            path: path.to_path_buf(),
            before: None,
            _lock: lock,
        })
    }

    /// A `last.ckpt` that fails its CRC or is cut short cannot be resumed; say where the other
    /// copy of the weights is (best.ckpt is written separately, so it may well be intact).
    pub fn check_last(&self) -> Result<()> {
        let Err(err) = Container::load(&self.last()) else {
            return Ok(());
        };
        let Error::Checkpoint { path, message } = err else {
            return Err(err);
        };
        let best = self.best();
        let pointer = if best.exists() {
            format!(
                "the run cannot resume from it. {} (the best epoch's weights) is a separate \
                 file: check it with `meal eval --checkpoint {} --data DATA`, and start a new run \
                 from it (`meal distill ... --set student_init={}`) or retrain",
                best.display(),
                best.display(),
                best.display()
            )
        } else {
            format!("the run cannot resume from it, and there is no {BEST} beside it")
        };
        Err(Error::Checkpoint {
            path,
            message: format!("{message}; {pointer}"),
        })
    }

    pub fn write_config(&self, config: &toml::Table) -> Result<()> {
        let text = toml::to_string_pretty(config).map_err(|e| Error::Config(e.to_string()))?;
        write_file(&self.path.join(CONFIG_FILE), text.as_bytes())
    }

    pub fn read_config(&self) -> Result<toml::Table> {
        crate::config::read_table(&self.path.join(CONFIG_FILE))
    }

    pub fn last(&self) -> PathBuf {
        self.path.join(LAST)
    }

    pub fn best(&self) -> PathBuf {
        self.path.join(BEST)
    }

    /// Appends one JSON line to `metrics.jsonl`.
    pub fn log_metrics<T: Serialize>(&self, record: &T) -> Result<()> {
        let path = self.path.join(METRICS_FILE);
        let line = serde_json::to_string(record).map_err(|e| Error::Other(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::file(&path, e))?;
        writeln!(f, "{line}").map_err(|e| Error::file(&path, e))
    }

    /// Drops metric lines of epochs after `epochs_done`, so that a resumed run does not log an
    /// epoch twice (an interrupted epoch may have been logged before its checkpoint).
    pub fn truncate_metrics(&self, epochs_done: usize) -> Result<()> {
        let path = self.path.join(METRICS_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("epoch").and_then(|e| e.as_u64()))
                    .is_none_or(|e| (e as usize) < epochs_done)
            })
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        write_file(&path, out.as_bytes())
    }
}

/// A run folder stands for its best checkpoint; anything else is taken as a checkpoint file.
pub fn resolve_checkpoint(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(BEST)
    } else {
        path.to_path_buf()
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::file(path, e))
}

/// `YYYYMMDD-HHMMSS` in UTC, without a date-time dependency.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_785), (2026, 11, 28));
    }
}
