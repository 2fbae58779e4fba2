//! `meal download`: fetches an official dataset release, verifies its published MD5 and unpacks
//! it. Transfers go through the system `curl` (present on every mainstream OS); nothing else in
//! meal touches the network, and no test depends on it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};

use super::DataError;

/// One file of an official release.
#[derive(Debug)]
pub struct Artifact {
    pub url: &'static str,
    pub md5: &'static str,
    /// Unpack (`.tar.gz`) or keep as is.
    pub extract: bool,
}

#[derive(Debug)]
pub struct Release {
    pub name: &'static str,
    pub about: &'static str,
    pub artifacts: &'static [Artifact],
}

/// The releases torchvision also downloads, with the checksums it verifies.
pub static RELEASES: &[Release] = &[
    Release {
        name: "cifar10",
        about: "CIFAR-10 binary version (cifar-10-batches-bin), 162 MB",
        artifacts: &[Artifact {
            url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            md5: "c32a1d4ab5d03f1284b67883e8d87530",
            extract: true,
        }],
    },
    Release {
        name: "cifar10-python",
        about: "CIFAR-10 python version (cifar-10-batches-py), 163 MB",
        artifacts: &[Artifact {
            url: "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            md5: "c58f30108f718f92721af3b95e74349a",
            extract: true,
        }],
    },
    Release {
        name: "cifar100",
        about: "CIFAR-100 binary version (cifar-100-binary), 161 MB",
        artifacts: &[Artifact {
            url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
            md5: "03b5dce01913d631647c71ecec9e9cb8",
            extract: true,
        }],
    },
    Release {
        name: "cifar100-python",
        about: "CIFAR-100 python version (cifar-100-python), 161 MB",
        artifacts: &[Artifact {
            url: "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            md5: "eb9058c3a382ffc7106e4002c42a8d85",
            extract: true,
        }],
    },
    Release {
        name: "svhn",
        about: "SVHN cropped digits, train + test (train_32x32.mat, test_32x32.mat), 246 MB",
        artifacts: &[
            Artifact {
                url: "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                md5: "e26dedcc434d2e4c54c9b2d4a06d8373",
                extract: false,
            },
            Artifact {
                url: "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                md5: "eb5a983be6a315427106f1b164d9cef3",
                extract: false,
            },
        ],
    },
];

pub fn release(name: &str) -> Result<&'static Release, DataError> {
    RELEASES
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| DataError::Format {
            path: PathBuf::from(name),
            message: format!(
                "unknown dataset; known: {}",
                RELEASES
                    .iter()
                    .map(|r| r.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

fn err(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// MD5 of a file, as lowercase hex.
pub fn md5_file(path: &Path) -> Result<String, DataError> {
    let mut f = std::fs::File::open(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| err(path, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Fetches `url` to `dest` with curl (a partial file is removed on failure).
pub fn fetch(url: &str, dest: &Path) -> Result<(), DataError> {
    let part = dest.with_extension("part");
    let status = Command::new("curl")
        .args([
            "--fail",
            "--location",
            "--silent",
            "--show-error",
            "--retry",
            "2",
            "-o",
        ])
        .arg(&part)
        .arg(url)
        .status()
        .map_err(|e| {
            err(
                dest,
                format!("cannot run curl ({e}); install curl or download {url} by hand"),
            )
        })?;
    if !status.success() {
        let _ = std::fs::remove_file(&part);
        return Err(err(
            dest,
            format!(
                "could not download {url} (curl exit {}): are you offline? Download it by hand and put it here",
                status.code().unwrap_or(-1)
            ),
        ));
    }
    std::fs::rename(&part, dest).map_err(|e| err(dest, format!("cannot rename: {e}")))
}

/// Unpacks a `.tar.gz` into `out`.
pub fn extract_tar_gz(archive: &Path, out: &Path) -> Result<(), DataError> {
    let f = std::fs::File::open(archive).map_err(|e| err(archive, format!("cannot read: {e}")))?;
    tar::Archive::new(flate2::read::GzDecoder::new(f))
        .unpack(out)
        .map_err(|e| err(archive, format!("corrupt archive: {e}")))
}

/// Downloads (unless already there with the right checksum), verifies and unpacks `release`
/// into `out`; returns the folder to pass as `--data`.
pub fn download(
    release: &Release,
    out: &Path,
    fetcher: &dyn Fn(&str, &Path) -> Result<(), DataError>,
) -> Result<PathBuf, DataError> {
    std::fs::create_dir_all(out).map_err(|e| err(out, format!("cannot create: {e}")))?;
    for a in release.artifacts {
        let file = out.join(a.url.rsplit('/').next().unwrap_or("download"));
        let ok = file.exists() && md5_file(&file)? == a.md5;
        if !ok {
            fetcher(a.url, &file)?;
            let got = md5_file(&file)?;
            if got != a.md5 {
                return Err(err(
                    &file,
                    format!(
                        "checksum mismatch: MD5 {got}, the official release has {}; the download is corrupt or tampered with (delete it and retry)",
                        a.md5
                    ),
                ));
            }
        }
        if a.extract {
            extract_tar_gz(&file, out)?;
        }
    }
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(dir: &Path) -> PathBuf {
        let path = dir.join("src.tar.gz");
        let f = std::fs::File::create(&path).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let mut t = tar::Builder::new(gz);
        let data = b"hello";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, "inner/file.txt", &data[..]).unwrap();
        t.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn verifies_checksum_and_extracts() {
        let dir = tempfile::tempdir().unwrap();
        let src = tarball(dir.path());
        let md5 = md5_file(&src).unwrap();
        let artifacts: &'static [Artifact] = Box::leak(Box::new([Artifact {
            url: "file:///x/data.tar.gz",
            md5: Box::leak(md5.into_boxed_str()),
            extract: true,
        }]));
        let rel = Release {
            name: "t",
            about: "",
            artifacts,
        };
        let out = dir.path().join("out");
        let copy = |_: &str, dest: &Path| -> Result<(), DataError> {
            std::fs::copy(&src, dest)
                .map(|_| ())
                .map_err(|e| err(dest, e.to_string()))
        };
        download(&rel, &out, &copy).unwrap();
        assert_eq!(std::fs::read(out.join("inner/file.txt")).unwrap(), b"hello");

        // A corrupt download is rejected, naming the file and both checksums.
        std::fs::remove_file(out.join("data.tar.gz")).unwrap();
        let bad = |_: &str, dest: &Path| -> Result<(), DataError> {
            std::fs::write(dest, b"not the release").map_err(|e| err(dest, e.to_string()))
        };
        let e = download(&rel, &out, &bad).unwrap_err().to_string();
        assert!(
            e.contains("data.tar.gz") && e.contains("checksum mismatch"),
            "{e}"
        );
    }

    #[test]
    fn offline_fetch_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.bin");
        // A file:// URL that does not exist fails like an unreachable host, without the network.
        let e = fetch("file:///nonexistent/meal/x.bin", &dest)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("could not download") || e.contains("cannot run curl"),
            "{e}"
        );
        assert!(!dest.exists());
        assert!(release("nope").unwrap_err().to_string().contains("cifar10"));
    }
}
