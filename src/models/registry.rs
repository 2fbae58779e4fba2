//! The registry: one table from architecture name to constructor, like timm's `create_model`.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::output::ModelOutput;
use super::resnet_cifar::ResNetCifar;
use crate::error::{Error, Result};

/// Any zoo model. A checkpoint stores the architecture name beside the weights, and loading
/// rebuilds the variant from the name.
#[derive(Module, Debug)]
pub enum Net {
    ResNetCifar(ResNetCifar),
}

impl Net {
    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        match self {
            Net::ResNetCifar(m) => m.forward(x),
        }
    }
}

/// One row of the registry.
pub struct ArchInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// Number of stage feature maps in the output list (logits excluded).
    pub stages: usize,
    pub build: fn(&Device, usize) -> Net,
}

pub static ARCHS: &[ArchInfo] = &[
    ArchInfo {
        name: "resnet8",
        summary: "He et al. 2016 CIFAR ResNet, 3 stages of 16/32/64 channels, n=1",
        stages: 3,
        build: |d, k| Net::ResNetCifar(ResNetCifar::new(d, 8, k)),
    },
    ArchInfo {
        name: "resnet14",
        summary: "He et al. 2016 CIFAR ResNet, n=2",
        stages: 3,
        build: |d, k| Net::ResNetCifar(ResNetCifar::new(d, 14, k)),
    },
    ArchInfo {
        name: "resnet20",
        summary: "He et al. 2016 CIFAR ResNet, n=3",
        stages: 3,
        build: |d, k| Net::ResNetCifar(ResNetCifar::new(d, 20, k)),
    },
    ArchInfo {
        name: "resnet32",
        summary: "He et al. 2016 CIFAR ResNet, n=5",
        stages: 3,
        build: |d, k| Net::ResNetCifar(ResNetCifar::new(d, 32, k)),
    },
    ArchInfo {
        name: "resnet56",
        summary: "He et al. 2016 CIFAR ResNet, n=9",
        stages: 3,
        build: |d, k| Net::ResNetCifar(ResNetCifar::new(d, 56, k)),
    },
];

/// Looks an architecture up by name, listing the known ones when it is not there.
pub fn arch_info(name: &str) -> Result<&'static ArchInfo> {
    ARCHS.iter().find(|a| a.name == name).ok_or_else(|| {
        let known: Vec<&str> = ARCHS.iter().map(|a| a.name).collect();
        Error::Model(format!(
            "unknown architecture `{name}`; known: {}",
            known.join(", ")
        ))
    })
}

/// Builds a freshly initialised model.
pub fn build(name: &str, num_classes: usize, device: &Device) -> Result<Net> {
    if num_classes == 0 {
        return Err(Error::Model("num_classes must be at least 1".into()));
    }
    Ok((arch_info(name)?.build)(device, num_classes))
}
