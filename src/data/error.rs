//! The data pipeline's error type. Every variant names the file (and record, where there is
//! one) at fault and says what is wrong, so that a user can fix the data without a debugger.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read at all.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file was read but its contents are not what the format requires
    /// (truncated, wrong size, wrong shape, unsupported pickle opcode, ...).
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },

    /// One record of an otherwise well-formed file is wrong (e.g. a label out of range).
    #[error("{path}: record {record}: {message}")]
    Record {
        path: PathBuf,
        record: usize,
        message: String,
    },

    /// `open` could not recognise the dataset layout.
    #[error("{path}: cannot detect the dataset format; looked for {looked_for}")]
    Detect { path: PathBuf, looked_for: String },

    /// An image file could not be decoded.
    #[error("{path}: cannot decode image: {message}")]
    Image { path: PathBuf, message: String },

    /// Bad configuration (batch size 0, unknown class, ...).
    #[error("data config: {0}")]
    Config(String),

    /// A sample index outside the dataset.
    #[error("sample index {index} out of range for a dataset of {len} images")]
    Index { index: usize, len: usize },

    /// A loader worker thread died.
    #[error("data loader: {0}")]
    Worker(String),
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn format(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        DataError::Format {
            path: path.into(),
            message: message.to_string(),
        }
    }

    pub fn record(
        path: impl Into<PathBuf>,
        record: usize,
        message: impl std::fmt::Display,
    ) -> Self {
        DataError::Record {
            path: path.into(),
            record,
            message: message.to_string(),
        }
    }

    pub fn image(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        DataError::Image {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

/// `std::fs::read` with the path in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}
