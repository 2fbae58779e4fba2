//! meal: multi-teacher adversarial knowledge distillation (MEAL, MEAL V2) on burn.
//!
//! The crate is laid out by concept:
//! - [`data`]: dataset readers, augmentation and the prefetching batch loader;
//! - [`models`]: the model zoo, every model returning its stage outputs and logits;
//! - [`train`]: optimizers, schedules, checkpoints and the supervised (teacher) loop;
//! - [`distill`]: MEAL itself (stage matching, similarity losses, discriminators);
//! - [`cli`]: the `meal` command line.

pub mod backend;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod distill;
pub mod error;
pub mod interop;
pub mod kernels;
pub mod models;
pub mod predict;
pub mod progress;
pub mod quickstart;
pub mod recipes;
pub mod report;
pub mod selftest;
pub mod train;

pub use error::{Error, Result};
