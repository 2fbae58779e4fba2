//! Training machinery shared by every kind of run (`meal train`, `meal distill`): the shared
//! settings, opening and resuming a run, the epoch-loop skeleton, optimizer, schedules,
//! checkpoints, run folders, evaluation, and the supervised task.

pub mod checkpoint;
pub mod config;
pub mod divergence;
pub mod evaluate;
pub mod interrupt;
pub mod model_io;
pub mod optim;
pub mod prefetch;
pub mod readback;
pub mod run;
pub mod run_dir;
pub mod run_lock;
pub mod run_state;
pub mod runner;
pub mod schedule;
pub mod settings;
pub mod supervised;
pub mod tensors;

pub use config::TrainConfig;
pub use run::Start;
pub use runner::RunOutcome;
pub use supervised::{TrainOutcome, train};
