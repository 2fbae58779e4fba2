//! ResNeXt-29 for CIFAR (Xie et al. 2017, in kuangliu/pytorch-cifar's form), `2x64d`:
//! a 1×1 conv + BN + ReLU stem of 64 channels, three stages of three bottleneck blocks,
//! `avg_pool(8)` and `Linear(1024, k)`. 9.13M parameters, 1.41G MACs.
//!
//! A block with group width `g = cardinality · bottleneck_width` is
//! `conv1×1(→g)-BN-ReLU-gconv3×3(→g, groups=cardinality, stride)-BN-ReLU-conv1×1(→2g)-BN`, plus
//! the input (or its 1×1 conv + BN projection when the shape changes), then ReLU. The
//! bottleneck width doubles per stage (64, 128, 256 for 2x64d).
//!
//! Stages: layer1..layer3 outputs, 256×32×32, 512×16×16, 1024×8×8.

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::layers::{
    BatchNorm2d, ConvBn, ConvBnRelu, avg_pool, conv, conv_fwd, conv_grouped, flatten, linear,
    linear_fwd,
};
use super::output::ModelOutput;

#[derive(Module, Debug)]
pub struct ResNeXtBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub conv3: Conv2d,
    pub bn3: BatchNorm2d,
    pub shortcut: Option<ConvBn>,
}

impl ResNeXtBlock {
    pub fn new(
        device: &Device,
        in_planes: usize,
        cardinality: usize,
        bottleneck_width: usize,
        stride: usize,
    ) -> Self {
        let g = cardinality * bottleneck_width;
        let out = 2 * g;
        let shortcut = (stride != 1 || in_planes != out)
            .then(|| ConvBn::new(device, in_planes, out, 1, stride));
        Self {
            conv1: conv(device, in_planes, g, 1, 1, false),
            bn1: BatchNorm2d::new(device, g),
            conv2: conv_grouped(device, g, g, 3, stride, cardinality, false),
            bn2: BatchNorm2d::new(device, g),
            conv3: conv(device, g, out, 1, 1, false),
            bn3: BatchNorm2d::new(device, out),
            shortcut,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.bn1.forward_relu(conv_fwd(&self.conv1, x.clone()));
        let y = self.bn2.forward_relu(conv_fwd(&self.conv2, y));
        let y = self.bn3.forward(conv_fwd(&self.conv3, y));
        let shortcut = match &self.shortcut {
            Some(proj) => proj.forward(x),
            None => x,
        };
        crate::kernels::add_relu(y, shortcut)
    }
}

#[derive(Module, Debug)]
pub struct ResNeXt {
    pub stem: ConvBnRelu,
    pub layers: Vec<Vec<ResNeXtBlock>>,
    pub fc: Linear,
}

impl ResNeXt {
    /// ResNeXt-29 (`3 × 3` blocks) with the given cardinality and initial bottleneck width.
    pub fn new(
        device: &Device,
        cardinality: usize,
        bottleneck_width: usize,
        num_classes: usize,
    ) -> Self {
        let mut in_planes = 64;
        let mut width = bottleneck_width;
        let mut layers = Vec::with_capacity(3);
        for s in 0..3 {
            let blocks = (0..3)
                .map(|i| {
                    let stride = if s > 0 && i == 0 { 2 } else { 1 };
                    let block = ResNeXtBlock::new(device, in_planes, cardinality, width, stride);
                    in_planes = 2 * cardinality * width;
                    block
                })
                .collect();
            layers.push(blocks);
            width *= 2;
        }
        Self {
            stem: ConvBnRelu::new(device, 3, 64, 1, 1, false),
            layers,
            fc: linear(device, in_planes, num_classes),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let mut out = self.stem.forward(x);
        let mut stages = Vec::with_capacity(self.layers.len());
        for blocks in &self.layers {
            for block in blocks {
                out = block.forward(out);
            }
            stages.push(out.clone());
        }
        let pooled = flatten(avg_pool(out, 8));
        ModelOutput {
            stages,
            logits: linear_fwd(&self.fc, pooled),
        }
    }
}
