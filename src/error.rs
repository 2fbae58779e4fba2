//! One error type for the whole program. Every variant names the file, key or item at fault
//! so that the user knows what to fix.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),

    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },

    #[error("config: {0}")]
    Config(String),

    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    #[error("model: {0}")]
    Model(String),

    #[error("distill: {0}")]
    Distill(String),

    /// A loss, weight or output went NaN or infinite; the message names where and what was kept.
    #[error("diverged: {0}")]
    Diverged(String),

    /// The device failed to run or return a computation, or cannot hold what a command needs;
    /// the message names the device, what failed and what to change.
    #[error("device {device}: {message}")]
    Device { device: String, message: String },

    #[error("interrupted: {0}")]
    Interrupted(String),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// A [`Error::Device`] on the selected device.
    pub fn device(message: impl std::fmt::Display) -> Self {
        Error::Device {
            device: crate::backend::describe_selected(),
            message: message.to_string(),
        }
    }

    pub fn checkpoint(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
