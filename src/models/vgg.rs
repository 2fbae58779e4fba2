//! VGG with BatchNorm (Simonyan & Zisserman 2015, CIFAR form): groups of 3×3 conv (with
//! bias), BN and ReLU units, each group closed by a 2×2/2 max-pool, then global average pooling
//! and one linear layer.
//!
//! - `vgg19_bn`: cfg `[64,64,M,128,128,M,256×4,M,512×4,M,512×4,M]`, 20.04M parameters. MEAL's
//!   `VGG("VGG19")` flattens the 512×1×1 map after an identity `AvgPool2d(1)`, which is the
//!   global average here.
//! - `vgg8`: a small VGG for CPU experiments, cfg `[32,M,64,64,M,128,128,M,256,256,M]`: seven
//!   conv layers + the classifier = 8 weight layers, 1.17M parameters, 43M MACs (about resnet20's
//!   cost).
//!
//! Stages: the output of every max-pool except the last, as in MEAL's VGG, whose last pooled
//! map is overwritten by the logits. vgg19_bn: 64×16×16, 128×8×8, 256×4×4, 512×2×2; vgg8:
//! 32×16×16, 64×8×8, 128×4×4 (three stages, like the CIFAR ResNets).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::layers::{ConvBnRelu, linear, linear_fwd, max_pool};
use super::output::ModelOutput;

/// `vgg19_bn`'s layout: conv widths per max-pool group.
pub const VGG19: &[&[usize]] = &[
    &[64, 64],
    &[128, 128],
    &[256, 256, 256, 256],
    &[512, 512, 512, 512],
    &[512, 512, 512, 512],
];

/// `vgg8`'s layout.
pub const VGG8: &[&[usize]] = &[&[32], &[64, 64], &[128, 128], &[256, 256]];

#[derive(Module, Debug)]
pub struct Vgg {
    /// Conv units grouped by the max-pool that follows them.
    pub groups: Vec<Vec<ConvBnRelu>>,
    pub fc: Linear,
}

impl Vgg {
    pub fn new(device: &Device, cfg: &[&[usize]], num_classes: usize) -> Self {
        let mut in_channels = 3;
        let groups = cfg
            .iter()
            .map(|widths| {
                widths
                    .iter()
                    .map(|&w| {
                        let unit = ConvBnRelu::new(device, in_channels, w, 3, 1, true);
                        in_channels = w;
                        unit
                    })
                    .collect()
            })
            .collect();
        Self {
            groups,
            fc: linear(device, in_channels, num_classes),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let mut out = x;
        let mut stages = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            for unit in group {
                out = unit.forward(out);
            }
            out = max_pool(out, 2, 2);
            stages.push(out.clone());
        }
        // The last pooled map is not a stage (MEAL replaces it with the logits).
        stages.pop();
        let pooled = out.mean_dim(3).mean_dim(2).flatten(1, 3);
        ModelOutput {
            stages,
            logits: linear_fwd(&self.fc, pooled),
        }
    }
}
