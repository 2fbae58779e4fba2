//! MEAL itself: stage features, similarity losses, discriminators, the adversarial objective
//! and the distillation loop.

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
pub mod trainer;

pub use config::DistillConfig;
pub use trainer::{DistillOutcome, DistillStart, distill};
