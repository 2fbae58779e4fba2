//! Pre-activation ResNet-18 for CIFAR (He et al. 2016b, "Identity mappings"), as MEAL uses it:
//! a bare 3×3 conv stem (no BN/ReLU), PreActBlocks `[2,2,2,2]` of 64/128/256/512 channels, and
//! **no** final BN-ReLU before `avg_pool(4)` and `Linear(512, k)`. 11.17M parameters.
//!
//! PreActBlock: `a = relu(bn1(x))`; `out = conv2(relu(bn2(conv1(a)))) + shortcut`, where the
//! shortcut is `x`, or a 1×1 conv (no BN) of `a` when the shape changes.
//!
//! Stages: the outputs of layer1..layer4 (64×32×32, 128×16×16, 256×8×8, 512×4×4).

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::layers::{BatchNorm2d, avg_pool, bn_relu, conv, conv_fwd, flatten, linear, linear_fwd};
use super::output::ModelOutput;

#[derive(Module, Debug)]
pub struct PreActBlock {
    pub bn1: BatchNorm2d,
    pub conv1: Conv2d,
    pub bn2: BatchNorm2d,
    pub conv2: Conv2d,
    /// 1×1 conv (no BN) applied to the pre-activated input when the shape changes.
    pub shortcut: Option<Conv2d>,
}

impl PreActBlock {
    pub fn new(device: &Device, in_planes: usize, planes: usize, stride: usize) -> Self {
        let shortcut = (stride != 1 || in_planes != planes)
            .then(|| conv(device, in_planes, planes, 1, stride, false));
        Self {
            bn1: BatchNorm2d::new(device, in_planes),
            conv1: conv(device, in_planes, planes, 3, stride, false),
            bn2: BatchNorm2d::new(device, planes),
            conv2: conv(device, planes, planes, 3, 1, false),
            shortcut,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = bn_relu(&self.bn1, x.clone());
        let shortcut = match &self.shortcut {
            Some(proj) => conv_fwd(proj, a.clone()),
            None => x,
        };
        let out = conv_fwd(&self.conv1, a);
        let out = conv_fwd(&self.conv2, bn_relu(&self.bn2, out));
        out + shortcut
    }
}

#[derive(Module, Debug)]
pub struct PreActResNet {
    pub stem: Conv2d,
    pub layers: Vec<Vec<PreActBlock>>,
    pub fc: Linear,
}

impl PreActResNet {
    /// `num_blocks` per stage (`[2,2,2,2]` is PreActResNet-18).
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
                        let block = PreActBlock::new(device, in_planes, planes, stride);
                        in_planes = planes;
                        block
                    })
                    .collect()
            })
            .collect();
        Self {
            stem: conv(device, 3, 64, 3, 1, false),
            layers,
            fc: linear(device, 512, num_classes),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let mut out = conv_fwd(&self.stem, x);
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
