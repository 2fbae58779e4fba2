//! Checkpoint files: one self-describing file holding a JSON header and named binary sections
//! (model weights, optimizer state, ...). Written to a temporary file in the same folder and
//! renamed into place, so a crash never leaves a half-written checkpoint behind.
//!
//! Layout: `MEALCKPT` magic, u32 format version, u32 section count, then per section
//! u32 name length, name (UTF-8), u64 payload length, payload. All integers little-endian.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"MEALCKPT";
/// A CRC-32 over every other section (name and payload), so a flipped byte is caught on load.
const CHECKSUM: &str = "crc32";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Default)]
pub struct Container {
    pub sections: BTreeMap<String, Vec<u8>>,
}

impl Container {
    pub fn insert(&mut self, name: &str, data: Vec<u8>) {
        self.sections.insert(name.to_string(), data);
    }

    pub fn insert_json<T: serde::Serialize>(&mut self, name: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::Other(format!("cannot serialise `{name}`: {e}")))?;
        self.insert(name, bytes);
        Ok(())
    }

    pub fn get(&self, path: &Path, name: &str) -> Result<&[u8]> {
        self.sections.get(name).map(Vec::as_slice).ok_or_else(|| {
            Error::checkpoint(
                path,
                format!(
                    "has no `{name}` section (it holds: {}); was it written by another kind of run?",
                    self.sections.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &Path, name: &str) -> Result<T> {
        serde_json::from_slice(self.get(path, name)?)
            .map_err(|e| Error::checkpoint(path, format!("section `{name}` is not valid: {e}")))
    }

    /// Writes atomically: temp file in the same folder, fsync, rename.
    pub fn save_atomic(&self, path: &Path) -> Result<()> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        }
        let tmp = tmp_path(path);
        let mut sections = self.sections.clone();
        sections.remove(CHECKSUM);
        let crc = checksum(&sections);
        sections.insert(CHECKSUM.to_string(), crc.to_le_bytes().to_vec());
        let write = || -> std::io::Result<()> {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            f.write_all(MAGIC)?;
            f.write_all(&VERSION.to_le_bytes())?;
            f.write_all(&(sections.len() as u32).to_le_bytes())?;
            for (name, data) in &sections {
                f.write_all(&(name.len() as u32).to_le_bytes())?;
                f.write_all(name.as_bytes())?;
                f.write_all(&(data.len() as u64).to_le_bytes())?;
                if let Some(e) = injected_fault(path) {
                    f.write_all(&data[..data.len() / 2])?;
                    f.flush()?;
                    return Err(e);
                }
                f.write_all(data)?;
            }
            let f = f.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            Ok(())
        };
        let kept = |e: &dyn std::fmt::Display| {
            let _ = std::fs::remove_file(&tmp);
            let previous = if path.exists() {
                "the previous version is left as it was"
            } else {
                "nothing was written"
            };
            Error::checkpoint(
                path,
                format!(
                    "cannot save it ({e}); {previous}. Free some space or fix the folder's permissions, then resume"
                ),
            )
        };
        write().map_err(|e| kept(&e))?;
        std::fs::rename(&tmp, path).map_err(|e| kept(&e))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::checkpoint(path, format!("cannot read ({e}); check the path")))?;
        Self::parse(path, &bytes)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad =
            |what: &str| Error::checkpoint(path, format!("not a valid meal checkpoint: {what}"));
        let mut r = Reader { bytes, pos: 0 };
        if r.take(8).ok_or_else(|| bad("file too short"))? != MAGIC {
            return Err(bad(
                "wrong magic bytes (is this a PyTorch file? use `meal import`)",
            ));
        }
        let version = r.u32().ok_or_else(|| bad("truncated header"))?;
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version}, this meal reads version {VERSION}"
            )));
        }
        let count = r.u32().ok_or_else(|| bad("truncated header"))?;
        let mut sections = BTreeMap::new();
        for i in 0..count {
            let truncated = || bad(&format!("truncated in section {i} of {count}"));
            let len = r.u32().ok_or_else(truncated)? as usize;
            let name = std::str::from_utf8(r.take(len).ok_or_else(truncated)?)
                .map_err(|_| bad("section name is not UTF-8"))?
                .to_string();
            let len = r.u64().ok_or_else(truncated)? as usize;
            let data = r.take(len).ok_or_else(truncated)?.to_vec();
            sections.insert(name, data);
        }
        if r.pos != bytes.len() {
            return Err(bad("trailing bytes after the last section"));
        }
        if let Some(stored) = sections.remove(CHECKSUM) {
            let expected = checksum(&sections).to_le_bytes();
            if stored != expected {
                return Err(bad("CRC-32 checksum mismatch: the file is corrupt"));
            }
        }
        Ok(Self { sections })
    }
}

fn checksum(sections: &BTreeMap<String, Vec<u8>>) -> u32 {
    let mut crc = flate2::Crc::new();
    for (name, data) in sections {
        crc.update(name.as_bytes());
        crc.update(&(data.len() as u64).to_le_bytes());
        crc.update(data);
    }
    crc.sum()
}

/// Test hook for the write-failure path: `MEAL_TEST_FAIL_WRITE=<file name>` makes saving a
/// checkpoint of that name stop halfway with "no space left on device", as a full disk would.
/// Root ignores read-only folders, so this is the only way a test can make a write fail.
fn injected_fault(path: &Path) -> Option<std::io::Error> {
    let target = std::env::var_os("MEAL_TEST_FAIL_WRITE")?;
    (path.file_name() == Some(target.as_os_str())).then(|| std::io::Error::from_raw_os_error(28))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ckpt");
        let mut c = Container::default();
        c.insert("model", vec![1, 2, 3]);
        c.insert_json("meta", &serde_json::json!({"epoch": 3}))
            .unwrap();
        c.save_atomic(&path).unwrap();
        let back = Container::load(&path).unwrap();
        assert_eq!(back.get(&path, "model").unwrap(), &[1, 2, 3]);
        let meta: serde_json::Value = back.get_json(&path, "meta").unwrap();
        assert_eq!(meta["epoch"], 3);
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        let err = Container::load(&path).unwrap_err().to_string();
        assert!(err.contains("a.ckpt") && err.contains("truncated"), "{err}");
        std::fs::write(&path, b"PK\x03\x04 zip").unwrap();
        let err = Container::load(&path).unwrap_err().to_string();
        assert!(err.contains("magic"), "{err}");
        // A flipped byte inside a payload is caught by the checksum.
        let mut flipped = bytes.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        let err = Container::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("corrupt") || err.contains("truncated"),
            "{err}"
        );
        let err = back.get(&path, "optim").unwrap_err().to_string();
        assert!(err.contains("optim"), "{err}");
    }
}
