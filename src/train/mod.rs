//! Training machinery shared by `meal train` and `meal distill`: optimizer, schedules,
//! checkpoints, run folders, evaluation, and the supervised loop.

pub mod checkpoint;
pub mod config;
pub mod divergence;
pub mod evaluate;
pub mod interrupt;
pub mod model_io;
pub mod optim;
pub mod run;
pub mod run_dir;
pub mod run_lock;
pub mod schedule;
pub mod supervised;
pub mod tensors;

pub use config::TrainConfig;
pub use run::Start;
pub use supervised::{TrainOutcome, train};
