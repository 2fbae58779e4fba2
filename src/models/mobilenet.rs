//! MobileNet v1 for CIFAR (Howard et al. 2017, in kuangliu/pytorch-cifar's form): a 3×3
//! conv + BN + ReLU stem of 32 channels, 13 depthwise-separable blocks, `avg_pool(2)` and
//! `Linear(1024, k)`. All convs are bias-free. 3.22M parameters, 46M MACs.
//!
//! Block: depthwise 3×3 (groups = channels, stride s) + BN + ReLU, pointwise 1×1 + BN + ReLU.
//! Widths (stride): 64, 128 (2), 128, 256 (2), 256, 512 (2), 512×5, 1024 (2), 1024.
//!
//! Stages, as in MEAL: after the stem (32×32×32) and after all blocks (1024×2×2).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::layers::{
    BatchNorm2d, ConvBnRelu, avg_pool, conv, conv_grouped, flatten, linear, linear_fwd,
};
use super::output::ModelOutput;

/// `(out_planes, stride)` of every block.
const CFG: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

#[derive(Module, Debug)]
pub struct SeparableBlock {
    pub depthwise: ConvBnRelu,
    pub pointwise: ConvBnRelu,
}

impl SeparableBlock {
    pub fn new(device: &Device, in_planes: usize, out_planes: usize, stride: usize) -> Self {
        Self {
            depthwise: ConvBnRelu {
                conv: conv_grouped(device, in_planes, in_planes, 3, stride, in_planes, false),
                bn: BatchNorm2d::new(device, in_planes),
            },
            pointwise: ConvBnRelu {
                conv: conv(device, in_planes, out_planes, 1, 1, false),
                bn: BatchNorm2d::new(device, out_planes),
            },
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pointwise.forward(self.depthwise.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct MobileNet {
    pub stem: ConvBnRelu,
    pub blocks: Vec<SeparableBlock>,
    pub fc: Linear,
}

impl MobileNet {
    pub fn new(device: &Device, num_classes: usize) -> Self {
        let mut in_planes = 32;
        let blocks = CFG
            .iter()
            .map(|&(out, stride)| {
                let block = SeparableBlock::new(device, in_planes, out, stride);
                in_planes = out;
                block
            })
            .collect();
        Self {
            stem: ConvBnRelu::new(device, 3, 32, 3, 1, false),
            blocks,
            fc: linear(device, in_planes, num_classes),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let stem = self.stem.forward(x);
        let out = self.blocks.iter().fold(stem.clone(), |y, b| b.forward(y));
        let pooled = flatten(avg_pool(out.clone(), 2));
        ModelOutput {
            stages: vec![stem, out],
            logits: linear_fwd(&self.fc, pooled),
        }
    }
}
