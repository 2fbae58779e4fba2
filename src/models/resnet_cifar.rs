//! The CIFAR ResNets of He et al. (2016), section 4.2: `6n+2` layers, three stages of 16/32/64
//! channels, identity shortcuts with zero-padded channels when the shape changes ("option A",
//! parameter-free). resnet20 has 0.27M parameters. These train in minutes on a CPU, so the
//! quickstart and the CPU experiments use them.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::layers::{BatchNorm2d, ConvBnRelu, conv, conv_bn, linear, linear_fwd};
use super::output::ModelOutput;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;

#[derive(Module, Debug)]
pub struct BasicBlockA {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    /// Channels added on each side by the shortcut (0 when the shape is unchanged).
    pub pad: usize,
    pub stride: usize,
}

impl BasicBlockA {
    pub fn new(device: &Device, in_planes: usize, planes: usize, stride: usize) -> Self {
        Self {
            conv1: conv(device, in_planes, planes, 3, stride, false),
            bn1: BatchNorm2d::new(device, planes),
            conv2: conv(device, planes, planes, 3, 1, false),
            bn2: BatchNorm2d::new(device, planes),
            pad: (planes - in_planes) / 2,
            stride,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = conv_bn(&self.conv1, &self.bn1, x.clone(), true);
        let out = conv_bn(&self.conv2, &self.bn2, out, false);
        let shortcut = if self.stride == 1 && self.pad == 0 {
            x
        } else {
            // x[:, :, ::2, ::2] zero-padded to the new width.
            crate::kernels::shortcut_a(x, self.stride, self.pad)
        };
        crate::kernels::add_relu(out, shortcut)
    }
}

#[derive(Module, Debug)]
pub struct ResNetCifar {
    pub stem: ConvBnRelu,
    pub stages: Vec<Vec<BasicBlockA>>,
    pub fc: Linear,
}

impl ResNetCifar {
    /// `depth = 6n + 2` (8, 14, 20, 32, 44, 56, 110).
    pub fn new(device: &Device, depth: usize, num_classes: usize) -> Self {
        assert!(
            depth >= 8 && (depth - 2).is_multiple_of(6),
            "CIFAR ResNet depth must be 6n+2"
        );
        let n = (depth - 2) / 6;
        let widths = [16, 32, 64];
        let mut in_planes = 16;
        let mut stages = Vec::new();
        for (s, &planes) in widths.iter().enumerate() {
            let mut blocks = Vec::new();
            for i in 0..n {
                let stride = if s > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BasicBlockA::new(device, in_planes, planes, stride));
                in_planes = planes;
            }
            stages.push(blocks);
        }
        Self {
            stem: ConvBnRelu::new(device, 3, 16, 3, 1, false),
            stages,
            fc: linear(device, 64, num_classes),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let mut out = self.stem.forward(x);
        let mut stages = Vec::with_capacity(self.stages.len());
        for blocks in &self.stages {
            for block in blocks {
                out = block.forward(out);
            }
            stages.push(out.clone());
        }
        let pooled = out.mean_dim(3).mean_dim(2).flatten(1, 3);
        ModelOutput {
            stages,
            logits: linear_fwd(&self.fc, pooled),
        }
    }
}
