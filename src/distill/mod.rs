//! MEAL itself: stage features, similarity losses, discriminators, the adversarial objective,
//! the teachers, the soft-label store, and MEAL as a kind of run.

pub mod adversarial;
pub mod config;
pub mod discriminator;
pub mod folded;
pub mod grl;
pub mod objective;
pub mod pool;
pub mod similarity;
pub mod soft_labels;
pub mod stages;
pub mod teachers;
pub mod trainer;

pub use config::DistillConfig;
pub use trainer::{DistillOutcome, DistillStart, distill};
