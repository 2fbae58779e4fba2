//! DenseNet-BC for CIFAR (Huang et al. 2017): a bare 3×3 conv stem of `2·growth` channels,
//! dense blocks of bottleneck units whose outputs are concatenated, transitions that halve the
//! channels (reduction 0.5) and the resolution, then BN-ReLU, `avg_pool(4)`, flatten and one
//! linear layer. The classifier's width assumes 32×32 inputs, as in the reference.
//!
//! - Bottleneck unit: `BN-ReLU-conv1×1(→4k)-BN-ReLU-conv3×3(→k)`, output `cat[new, x]`.
//! - Transition: `BN-ReLU-conv1×1-avg_pool(2)`.
//!
//! Models:
//! - `densenet_cifar`: MEAL's 3-block variant, blocks `[8,24,24]`, growth 40. Channels
//!   80 → 400 → 200 → 1160 → 580 → 1540; the final 8×8 map pools to 2×2, so the classifier is
//!   `Linear(6160, k)`; 10.96M parameters, 2.36G MACs. Stages, as in MEAL: after trans2
//!   (580×8×8) and after dense3 (1540×8×8).
//! - `densenet121`: a true 4-block DenseNet-121, blocks `[6,12,24,16]`, growth 32 (MEAL's
//!   `densenet121` silently drops the 4th block; this one does not). Channels 64 → 256 → 128 →
//!   512 → 256 → 1024 → 512 → 1024, `Linear(1024, k)` on the pooled 4×4 map; 6.96M parameters.
//!   Stages: the output of each dense block (256×32×32, 512×16×16, 1024×8×8, 1024×4×4), one per
//!   resolution like ResNet-18's layer1..layer4, so the stage list lines up with ResNet-18's.

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::layers::{BatchNorm2d, avg_pool, bn_relu, conv, conv_fwd, flatten, linear, linear_fwd};
use super::output::ModelOutput;

#[derive(Module, Debug)]
pub struct DenseUnit {
    pub bn1: BatchNorm2d,
    pub conv1: Conv2d,
    pub bn2: BatchNorm2d,
    pub conv2: Conv2d,
}

impl DenseUnit {
    pub fn new(device: &Device, in_planes: usize, growth: usize) -> Self {
        Self {
            bn1: BatchNorm2d::new(device, in_planes),
            conv1: conv(device, in_planes, 4 * growth, 1, 1, false),
            bn2: BatchNorm2d::new(device, 4 * growth),
            conv2: conv(device, 4 * growth, growth, 3, 1, false),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = conv_fwd(&self.conv1, bn_relu(&self.bn1, x.clone()));
        let out = conv_fwd(&self.conv2, bn_relu(&self.bn2, out));
        Tensor::cat(vec![out, x], 1)
    }
}

#[derive(Module, Debug)]
pub struct Transition {
    pub bn: BatchNorm2d,
    pub conv: Conv2d,
}

impl Transition {
    pub fn new(device: &Device, in_planes: usize, out_planes: usize) -> Self {
        Self {
            bn: BatchNorm2d::new(device, in_planes),
            conv: conv(device, in_planes, out_planes, 1, 1, false),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        avg_pool(conv_fwd(&self.conv, bn_relu(&self.bn, x)), 2)
    }
}

/// Which block outputs are stages: bit `2i` is dense block `i+1`, bit `2i+1` transition `i+1`.
pub const fn after_dense(block: usize) -> usize {
    1 << (2 * (block - 1))
}

/// See [`after_dense`].
pub const fn after_transition(block: usize) -> usize {
    1 << (2 * (block - 1) + 1)
}

#[derive(Module, Debug)]
pub struct DenseNet {
    pub stem: Conv2d,
    pub blocks: Vec<Vec<DenseUnit>>,
    /// One fewer than `blocks`: transition `i` follows block `i`.
    pub transitions: Vec<Transition>,
    pub bn: BatchNorm2d,
    pub fc: Linear,
    /// Stage selection, a sum of [`after_dense`] / [`after_transition`] bits.
    pub stage_mask: usize,
}

impl DenseNet {
    pub fn new(
        device: &Device,
        num_blocks: &[usize],
        growth: usize,
        stage_mask: usize,
        num_classes: usize,
    ) -> Self {
        let mut planes = 2 * growth;
        let stem = conv(device, 3, planes, 3, 1, false);
        let mut blocks = Vec::with_capacity(num_blocks.len());
        let mut transitions = Vec::with_capacity(num_blocks.len() - 1);
        for (i, &n) in num_blocks.iter().enumerate() {
            let units = (0..n)
                .map(|_| {
                    let unit = DenseUnit::new(device, planes, growth);
                    planes += growth;
                    unit
                })
                .collect();
            blocks.push(units);
            if i + 1 < num_blocks.len() {
                transitions.push(Transition::new(device, planes, planes / 2));
                planes /= 2;
            }
        }
        // 32×32 input: halved by each transition, then avg_pool(4).
        let side = (32 >> (num_blocks.len() - 1)) / 4;
        Self {
            stem,
            blocks,
            transitions,
            bn: BatchNorm2d::new(device, planes),
            fc: linear(device, planes * side * side, num_classes),
            stage_mask,
        }
    }

    /// MEAL's `densenet_cifar`: `[8,24,24]`, growth 40, stages after trans2 and dense3.
    pub fn cifar(device: &Device, num_classes: usize) -> Self {
        let stages = after_transition(2) | after_dense(3);
        Self::new(device, &[8, 24, 24], 40, stages, num_classes)
    }

    /// DenseNet-121 (4 blocks), stages after each dense block.
    pub fn densenet121(device: &Device, num_classes: usize) -> Self {
        let stages = after_dense(1) | after_dense(2) | after_dense(3) | after_dense(4);
        Self::new(device, &[6, 12, 24, 16], 32, stages, num_classes)
    }

    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let mut out = conv_fwd(&self.stem, x);
        let mut stages = Vec::new();
        for (i, units) in self.blocks.iter().enumerate() {
            for unit in units {
                out = unit.forward(out);
            }
            if self.stage_mask & after_dense(i + 1) != 0 {
                stages.push(out.clone());
            }
            if let Some(transition) = self.transitions.get(i) {
                out = transition.forward(out);
                if self.stage_mask & after_transition(i + 1) != 0 {
                    stages.push(out.clone());
                }
            }
        }
        let pooled = flatten(avg_pool(bn_relu(&self.bn, out), 4));
        ModelOutput {
            stages,
            logits: linear_fwd(&self.fc, pooled),
        }
    }
}
