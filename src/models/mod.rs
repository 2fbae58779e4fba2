//! The model zoo. Every model returns a [`ModelOutput`] (stage feature maps + logits) so that
//! MEAL can match intermediate stages; the number of classes is a parameter; initialisation
//! follows PyTorch's defaults.

pub mod count;
pub mod densenet;
pub mod dpn;
pub mod flops;
pub mod googlenet;
pub mod layers;
pub mod mobilenet;
pub mod output;
pub mod preact_resnet;
pub mod registry;
pub mod resnet;
pub mod resnet9;
pub mod resnet_cifar;
pub mod resnext;
pub mod squeeze_excite;
pub mod timm_resnet;
pub mod vgg;

pub use count::{count_macs, trainable_params};
pub use output::ModelOutput;
pub use registry::{ARCHS, ArchInfo, Form, Net, arch_info, build};
