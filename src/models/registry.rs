//! The registry: one table from architecture name to constructor, like timm's `create_model`.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::densenet::DenseNet;
use super::dpn::{DPN92, Dpn};
use super::efficientnet::{EfficientNet, EfficientNetConfig};
use super::googlenet::GoogLeNet;
use super::mobilenet::MobileNet;
use super::mobilenetv3::{MobileNetV3, MobileNetV3Config};
use super::output::ModelOutput;
use super::preact_resnet::PreActResNet;
use super::resnet::ResNet;
use super::resnet_cifar::ResNetCifar;
use super::resnet9::ResNet9;
use super::resnext::ResNeXt;
use super::timm_resnet::{BlockKind, TimmResNet, TimmResNetConfig};
use super::vgg::{VGG8, VGG19, Vgg};
use crate::error::{Error, Result};

/// Any zoo model. A checkpoint stores the architecture name beside the weights, and loading
/// rebuilds the variant from the name.
// One `Net` exists per model and is never copied around in bulk, so a variant with its layers
// inline (ResNet-9's seven units) costs nothing worth boxing for (and burn's `Module` derive
// has no `Box` support).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Net {
    ResNetCifar(ResNetCifar),
    Vgg(Vgg),
    ResNet(ResNet),
    PreActResNet(PreActResNet),
    DenseNet(DenseNet),
    Dpn(Dpn),
    GoogLeNet(GoogLeNet),
    ResNeXt(ResNeXt),
    MobileNet(MobileNet),
    ResNet9(ResNet9),
    TimmResNet(TimmResNet),
    MobileNetV3(MobileNetV3),
    EfficientNet(EfficientNet),
}

impl Net {
    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        match self {
            Net::ResNetCifar(m) => m.forward(x),
            Net::Vgg(m) => m.forward(x),
            Net::ResNet(m) => m.forward(x),
            Net::PreActResNet(m) => m.forward(x),
            Net::DenseNet(m) => m.forward(x),
            Net::Dpn(m) => m.forward(x),
            Net::GoogLeNet(m) => m.forward(x),
            Net::ResNeXt(m) => m.forward(x),
            Net::MobileNet(m) => m.forward(x),
            Net::ResNet9(m) => m.forward(x),
            Net::TimmResNet(m) => m.forward(x),
            Net::MobileNetV3(m) => m.forward(x),
            Net::EfficientNet(m) => m.forward(x),
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
    pub form: Form,
}

/// Which inputs an architecture is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// 32×32 CIFAR images (MEAL's zoo: small stems, few downsamplings).
    Cifar,
    /// ImageNet-sized images (timm's models under timm's names and keys: strided stems, any
    /// input size of at least 32×32).
    ImageNet,
}

pub static ARCHS: &[ArchInfo] = &[
    ArchInfo {
        name: "resnet8",
        summary: "He et al. 2016 CIFAR ResNet, 3 stages of 16/32/64 channels, n=1",
        stages: 3,
        build: |d, k| Net::ResNetCifar(ResNetCifar::new(d, 8, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "resnet14",
        summary: "He et al. 2016 CIFAR ResNet, n=2",
        stages: 3,
        build: |d, k| Net::ResNetCifar(ResNetCifar::new(d, 14, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "resnet20",
        summary: "He et al. 2016 CIFAR ResNet, n=3",
        stages: 3,
        build: |d, k| Net::ResNetCifar(ResNetCifar::new(d, 20, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "resnet32",
        summary: "He et al. 2016 CIFAR ResNet, n=5",
        stages: 3,
        build: |d, k| Net::ResNetCifar(ResNetCifar::new(d, 32, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "resnet56",
        summary: "He et al. 2016 CIFAR ResNet, n=9",
        stages: 3,
        build: |d, k| Net::ResNetCifar(ResNetCifar::new(d, 56, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "vgg8",
        summary: "small VGG with BN for CPU runs: 7 conv3x3 (32..256) + linear, global avg pool",
        stages: 3,
        build: |d, k| Net::Vgg(Vgg::new(d, VGG8, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "resnet9_w24",
        summary: "Page's DAWNBench ResNet-9 at 3/8 width (24..192 channels) for CPU runs",
        stages: 3,
        build: |d, k| Net::ResNet9(ResNet9::new(d, 24, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "resnet9",
        summary: "Page's DAWNBench ResNet-9 (64..512 channels, 1/8-scaled logits), 6.6M params",
        stages: 3,
        build: |d, k| Net::ResNet9(ResNet9::new(d, 64, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "vgg19_bn",
        summary: "VGG-19 with BN, CIFAR form (MEAL's `vgg19`/`vgg19_BN`), 20.0M params",
        stages: 4,
        build: |d, k| Net::Vgg(Vgg::new(d, VGG19, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "resnet18_cifar",
        summary: "ResNet-18 (BasicBlock [2,2,2,2], 64..512), CIFAR stem, 11.2M params",
        stages: 4,
        build: |d, k| Net::ResNet(ResNet::new(d, [2, 2, 2, 2], k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "preact_resnet18",
        summary: "pre-activation ResNet-18 (MEAL's `preactresnet18`), 11.2M params",
        stages: 4,
        build: |d, k| Net::PreActResNet(PreActResNet::new(d, [2, 2, 2, 2], k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "densenet_cifar",
        summary: "MEAL's 3-block DenseNet-BC, blocks [8,24,24], growth 40, 11.0M params",
        stages: 2,
        build: |d, k| Net::DenseNet(DenseNet::cifar(d, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "densenet121",
        summary: "DenseNet-121 (4 blocks [6,12,24,16], growth 32), CIFAR stem, 7.0M params",
        stages: 4,
        build: |d, k| Net::DenseNet(DenseNet::densenet121(d, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "dpn92",
        summary: "Dual Path Network 92, CIFAR form, 34.2M params",
        stages: 4,
        build: |d, k| Net::Dpn(Dpn::new(d, &DPN92, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "googlenet",
        summary: "GoogLeNet (Inception v1), CIFAR form, 6.2M params",
        stages: 2,
        build: |d, k| Net::GoogLeNet(GoogLeNet::new(d, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "resnext29_2x64d",
        summary: "ResNeXt-29 2x64d (MEAL's `resnext`), 9.1M params",
        stages: 3,
        build: |d, k| Net::ResNeXt(ResNeXt::new(d, 2, 64, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "mobilenet",
        summary: "MobileNet v1, CIFAR form, 3.2M params",
        stages: 2,
        build: |d, k| Net::MobileNet(MobileNet::new(d, k)),
        form: Form::Cifar,
    },
    ArchInfo {
        name: "resnet18",
        summary: "torchvision/timm ResNet-18, ImageNet form, 11.7M params",
        stages: 4,
        build: |d, k| {
            timm_resnet(
                d,
                k,
                TimmResNetConfig::torchvision(BlockKind::Basic, [2, 2, 2, 2]),
            )
        },
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "resnet34",
        summary: "torchvision/timm ResNet-34, ImageNet form, 21.8M params",
        stages: 4,
        build: |d, k| {
            timm_resnet(
                d,
                k,
                TimmResNetConfig::torchvision(BlockKind::Basic, [3, 4, 6, 3]),
            )
        },
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "resnet50",
        summary: "torchvision/timm ResNet-50, ImageNet form, 25.6M params",
        stages: 4,
        build: |d, k| {
            timm_resnet(
                d,
                k,
                TimmResNetConfig::torchvision(BlockKind::Bottleneck, [3, 4, 6, 3]),
            )
        },
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "resnet101",
        summary: "torchvision/timm ResNet-101, ImageNet form, 44.5M params",
        stages: 4,
        build: |d, k| {
            timm_resnet(
                d,
                k,
                TimmResNetConfig::torchvision(BlockKind::Bottleneck, [3, 4, 23, 3]),
            )
        },
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "resnet152",
        summary: "torchvision/timm ResNet-152, ImageNet form, 60.2M params",
        stages: 4,
        build: |d, k| {
            timm_resnet(
                d,
                k,
                TimmResNetConfig::torchvision(BlockKind::Bottleneck, [3, 8, 36, 3]),
            )
        },
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "resnet152s",
        summary: "timm's ResNet-152 with a deep 3-conv stem (gluon_resnet152_v1s), 60.3M params",
        stages: 4,
        build: |d, k| {
            timm_resnet(
                d,
                k,
                TimmResNetConfig {
                    deep_stem: Some(64),
                    ..TimmResNetConfig::torchvision(BlockKind::Bottleneck, [3, 8, 36, 3])
                },
            )
        },
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "senet154",
        summary: "timm's SENet-154: deep stem, SE-ResNeXt bottlenecks 64 groups, 115.1M params",
        stages: 4,
        build: |d, k| {
            timm_resnet(
                d,
                k,
                TimmResNetConfig {
                    cardinality: 64,
                    base_width: 4,
                    reduce_first: 2,
                    deep_stem: Some(64),
                    se_reduction: Some(16),
                    down_kernel: 3,
                    drop_rate: 0.0,
                    ..TimmResNetConfig::torchvision(BlockKind::Bottleneck, [3, 8, 36, 3])
                },
            )
        },
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "tf_mobilenetv3_small_075",
        summary: "timm's MobileNetV3-Small at 0.75 width, TF form (same padding, BN eps 1e-3), 2.0M params",
        stages: 4,
        build: |d, k| Net::MobileNetV3(MobileNetV3Config::small(0.75, k).init(d)),
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "tf_mobilenetv3_small_100",
        summary: "timm's MobileNetV3-Small, TF form, 2.5M params",
        stages: 4,
        build: |d, k| Net::MobileNetV3(MobileNetV3Config::small(1.0, k).init(d)),
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "tf_mobilenetv3_large_100",
        summary: "timm's MobileNetV3-Large, TF form, 5.5M params",
        stages: 4,
        build: |d, k| Net::MobileNetV3(MobileNetV3Config::large(1.0, k).init(d)),
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "tf_efficientnet_b0",
        summary: "timm's EfficientNet-B0, TF form (same padding, BN eps 1e-3), 5.3M params",
        stages: 4,
        build: |d, k| Net::EfficientNet(EfficientNetConfig::new(1.0, 1.0, k).init(d)),
        form: Form::ImageNet,
    },
    ArchInfo {
        name: "tf_efficientnet_b4",
        summary: "timm's EfficientNet-B4 (width 1.4, depth 1.8), TF form, 19.3M params",
        stages: 4,
        build: |d, k| Net::EfficientNet(EfficientNetConfig::new(1.4, 1.8, k).init(d)),
        form: Form::ImageNet,
    },
];

fn timm_resnet(device: &Device, num_classes: usize, config: TimmResNetConfig) -> Net {
    Net::TimmResNet(config.init(device, num_classes))
}

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

/// Builds a freshly initialised model (its weights drawn from the process's generator: seed it
/// with [`crate::backend::seeded`] around the call for a reproducible model).
pub fn build(name: &str, num_classes: usize, device: &Device) -> Result<Net> {
    if num_classes == 0 {
        return Err(Error::Model("num_classes must be at least 1".into()));
    }
    let build = arch_info(name)?.build;
    Ok(crate::backend::unseeded(|| {
        crate::backend::drawn(build(device, num_classes))
    }))
}
