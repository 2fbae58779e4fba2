//! One writer per run folder: `meal.lock` holds the pid of the process writing there. Two
//! processes appending to the same `metrics.jsonl` and renaming checkpoints over each other
//! would leave a run that is neither, so a second one is refused. A lock whose process is gone
//! (a crash, a kill -9, a second Ctrl-C) is taken over, saying so.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const LOCK_FILE: &str = "meal.lock";

/// Held while a run writes its folder; removes the lock file when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl RunLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let me = std::process::id();
        // Two rounds: the second follows the removal of a stale lock.
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let lock = Self { path: path.clone() };
                    writeln!(f, "{me}")
                        .and_then(|_| f.sync_all())
                        .map_err(|e| Error::file(&path, format!("cannot write the lock: {e}")))?;
                    return Ok(lock);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let Ok(pid) = text.trim().parse::<u32>() else {
                        return Err(Error::file(
                            &path,
                            format!(
                                "the run folder is locked, but the lock names no process \
                                 ({:?}); if no meal is writing to {}, delete the lock",
                                text.trim(),
                                dir.display()
                            ),
                        ));
                    };
                    if pid == me || alive(pid) {
                        let who = if pid == me { " (this process)" } else { "" };
                        return Err(Error::file(
                            &path,
                            format!(
                                "the run folder is in use by process {pid}{who}: another meal \
                                 is writing to {}; wait for it to finish (or stop it), or \
                                 choose another folder",
                                dir.display()
                            ),
                        ));
                    }
                    tracing::warn!(
                        "{}: taking over the lock of process {pid}, which is no longer running",
                        path.display()
                    );
                    std::fs::remove_file(&path).map_err(|e| {
                        Error::file(&path, format!("cannot remove a stale lock: {e}"))
                    })?;
                }
                Err(e) => {
                    return Err(Error::file(
                        &path,
                        format!("cannot create the run lock: {e}"),
                    ));
                }
            }
        }
        Err(Error::file(
            &path,
            "another process took the run lock at the same moment; try again",
        ))
    }
}

/// Whether process `pid` exists. Linux answers through /proc; elsewhere every pid counts as
/// alive, so a stale lock is reported (naming the file to delete) rather than taken over.
fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if cfg!(target_os = "linux") && proc.join("self").exists() {
        proc.join(pid.to_string()).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_refused_released_and_stale_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("in use by process") && err.contains(LOCK_FILE),
            "{err}"
        );
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
        // A pid that has exited (reaped) is stale.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), format!("{dead}\n")).unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
    }
}
