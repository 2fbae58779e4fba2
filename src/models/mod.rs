//! The model zoo. Every model returns a [`ModelOutput`] (stage feature maps + logits) so that
//! MEAL can match intermediate stages; the number of classes is a parameter; initialisation
//! follows PyTorch's defaults.

pub mod count;
pub mod layers;
pub mod output;
pub mod registry;
pub mod resnet_cifar;

pub use count::trainable_params;
pub use output::ModelOutput;
pub use registry::{ARCHS, ArchInfo, Net, arch_info, build};
