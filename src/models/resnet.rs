//! ResNet-18 for CIFAR (He et al. 2016, ImageNet block design on a 3×3 stride-1 stem, as in
//! kuangliu/pytorch-cifar): BasicBlocks `[2,2,2,2]` of 64/128/256/512 channels, a 1×1 conv + BN
//! projection shortcut where the shape changes, `avg_pool(4)` on the 4×4 map, `Linear(512, k)`.
//! 11.17M parameters, 0.56G MACs.
//!
//! Stages: the outputs of layer1..layer4 (64×32×32, 128×16×16, 256×8×8, 512×4×4).

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::layers::{
    BatchNorm2d, ConvBn, ConvBnRelu, avg_pool, conv, conv_bn, flatten, linear, linear_fwd,
};
use super::output::ModelOutput;

#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    /// 1×1 conv + BN when the stride or the width changes; identity otherwise.
    pub shortcut: Option<ConvBn>,
}

impl BasicBlock {
    pub fn new(device: &Device, in_planes: usize, planes: usize, stride: usize) -> Self {
        let shortcut = (stride != 1 || in_planes != planes)
            .then(|| ConvBn::new(device, in_planes, planes, 1, stride));
        Self {
            conv1: conv(device, in_planes, planes, 3, stride, false),
            bn1: BatchNorm2d::new(device, planes),
            conv2: conv(device, planes, planes, 3, 1, false),
            bn2: BatchNorm2d::new(device, planes),
            shortcut,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = conv_bn(&self.conv1, &self.bn1, x.clone(), true);
        let out = conv_bn(&self.conv2, &self.bn2, out, false);
        let shortcut = match &self.shortcut {
            Some(proj) => proj.forward(x),
            None => x,
        };
        crate::kernels::add_relu(out, shortcut)
    }
}

#[derive(Module, Debug)]
pub struct ResNet {
    pub stem: ConvBnRelu,
    pub layers: Vec<Vec<BasicBlock>>,
    pub fc: Linear,
}

impl ResNet {
    /// `num_blocks` per stage (`[2,2,2,2]` is ResNet-18, `[3,4,6,3]` ResNet-34).
    pub fn new(device: &Device, num_blocks: [usize; 4], num_classes: usize) -> Self {
        let mut in_planes = 64;
        let layers = [64, 128, 256, 512]
            .iter()
            .zip(num_blocks)
            .enumerate()
            .map(|(s, (&planes, n))| {
                (0..n)
                    .map(|i| {
                        let stride = if s > 0 && i == 0 { 2 } else { 1 };
                        let block = BasicBlock::new(device, in_planes, planes, stride);
                        in_planes = planes;
                        block
                    })
                    .collect()
            })
            .collect();
        Self {
            stem: ConvBnRelu::new(device, 3, 64, 3, 1, false),
            layers,
            fc: linear(device, 512, num_classes),
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
        let pooled = flatten(avg_pool(out, 4));
        ModelOutput {
            stages,
            logits: linear_fwd(&self.fc, pooled),
        }
    }
}
