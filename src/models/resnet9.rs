//! ResNet-9 of Page's DAWNBench entry ("How to train your ResNet", Myrtle.ai 2018; the network
//! of the fast-CIFAR-10 line that airbench continues): a VGG-like trunk of five conv-BN-ReLU
//! units, three of them closed by a 2×2 max-pool, two residual pairs, a global max-pool and a
//! bias-free linear layer whose logits are scaled by 1/8.
//!
//! ```text
//! prep    conv(3→w)
//! layer1  conv(w→2w), pool, + res1 = conv(2w→2w), conv(2w→2w)     stage 1: 2w×16×16
//! layer2  conv(2w→4w), pool                                       stage 2: 4w×8×8
//! layer3  conv(4w→8w), pool, + res3 = conv(8w→8w), conv(8w→8w)    stage 3: 8w×4×4
//! head    global max-pool, linear(8w→k, no bias), ×0.125
//! ```
//!
//! - `resnet9`: Page's width, w = 64 (6.57M parameters, 380M MACs): 94% in 24 epochs on a GPU.
//! - `resnet9_w24`: w = 24 (0.92M parameters, 54M MACs), the CPU teacher shipped in
//!   data/teachers: most of its layers have ≥ 48 channels, where meal's Winograd convolution is
//!   at its best, so it trains at three quarters of vgg8's speed for 1.24× vgg8's MACs.
//!
//! The 1/8 logit scale is Page's: with it the cross-entropy gradients stay small early on, which
//! the high learning rates of one-cycle and cosine schedules need.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::layers::{ConvBnRelu, linear_fwd, linear_without_bias, max_pool};
use super::output::ModelOutput;

pub const LOGIT_SCALE: f64 = 0.125;

#[derive(Module, Debug)]
pub struct ResNet9 {
    pub prep: ConvBnRelu,
    pub layer1: ConvBnRelu,
    pub res1: Vec<ConvBnRelu>,
    pub layer2: ConvBnRelu,
    pub layer3: ConvBnRelu,
    pub res3: Vec<ConvBnRelu>,
    pub fc: Linear,
}

impl ResNet9 {
    /// `width`: the prep layer's channels (Page's 64); the stages have 2, 4 and 8 times as many.
    pub fn new(device: &Device, width: usize, num_classes: usize) -> Self {
        let unit = |i, o| ConvBnRelu::new(device, i, o, 3, 1, false);
        let pair = |c| vec![unit(c, c), unit(c, c)];
        Self {
            prep: unit(3, width),
            layer1: unit(width, 2 * width),
            res1: pair(2 * width),
            layer2: unit(2 * width, 4 * width),
            layer3: unit(4 * width, 8 * width),
            res3: pair(8 * width),
            fc: linear_without_bias(device, 8 * width, num_classes),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let residual = |x: Tensor<4>, pair: &[ConvBnRelu]| {
            let y = pair.iter().fold(x.clone(), |y, unit| unit.forward(y));
            x + y
        };
        let x = self.prep.forward(x);
        let s1 = residual(max_pool(self.layer1.forward(x), 2, 2), &self.res1);
        let s2 = max_pool(self.layer2.forward(s1.clone()), 2, 2);
        let s3 = residual(max_pool(self.layer3.forward(s2.clone()), 2, 2), &self.res3);
        let pooled = s3.clone().max_dim(3).max_dim(2);
        let logits = linear_fwd(&self.fc, pooled.flatten(1, 3)).mul_scalar(LOGIT_SCALE);
        ModelOutput {
            stages: vec![s1, s2, s3],
            logits,
        }
    }
}
