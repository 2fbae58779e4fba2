//! Device selection. burn 0.22 dispatches at run time: the default build compiles burn-flex
//! (pure-Rust CPU); the `cuda` feature adds burn-cuda, which `Device::default()` prefers.
//! `BURN_DEVICE=flex|cuda` overrides the choice.

use burn::tensor::Device;

/// The device every command computes on.
pub fn device() -> Device {
    Device::default()
}

/// The autodiff twin of [`device`], used for training.
pub fn autodiff_device() -> Device {
    device().autodiff()
}

/// A one-word description for logs and reports.
pub fn describe(device: &Device) -> String {
    format!("{device:?}")
}
