//! timm's `tf_mobilenetv3_*` (Howard et al. 2019, TensorFlow-ported weights' form): a 3×3
//! stride-2 stem of 16 channels + hard-swish, the blocks of [`SMALL`] or [`LARGE`], global
//! average pooling, a 1×1 `conv_head` with bias to 1024 / 1280 features + hard-swish, dropout
//! and the `classifier`. BatchNorm eps 1e-3, "same" padding; squeeze-excitations with ReLU
//! and a hard-sigmoid gate, their width rounded to 8 from the expanded width.
//!
//! Parameter counts at 1000 classes (timm 1.0.31): small_075 2,041,872, small_100 2,542,856,
//! large_100 5,483,032. Stages: timm's `feature_info` with reduction ≥ 4 (/4, /8, /16, /32).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};

use super::activation::{Act, Gate};
use super::efficientnet_blocks::{Block, conv_bn_act};
use super::efficientnet_builder::{
    BlockArgs, ModelArgs, feature_stages, tf_bn, tf_conv, tf_linear,
};
use super::layers::{BatchNorm2d, conv_fwd, linear_fwd};
use super::output::ModelOutput;

const RELU: Option<Act> = Some(Act::Relu);

/// `_gen_mobilenet_v3`'s small `arch_def`.
pub const SMALL: &[&[BlockArgs]] = &[
    &[BlockArgs::ds(1, 3, 2, 16, 0.25, RELU)],
    &[
        BlockArgs::ir(1, 3, 2, 4.5, 24, 0.0, RELU),
        BlockArgs::ir(1, 3, 1, 3.67, 24, 0.0, RELU),
    ],
    &[
        BlockArgs::ir(1, 5, 2, 4.0, 40, 0.25, None),
        BlockArgs::ir(2, 5, 1, 6.0, 40, 0.25, None),
    ],
    &[BlockArgs::ir(2, 5, 1, 3.0, 48, 0.25, None)],
    &[BlockArgs::ir(3, 5, 2, 6.0, 96, 0.25, None)],
    &[BlockArgs::cn(1, 1, 1, 576)],
];

/// `_gen_mobilenet_v3`'s large `arch_def`.
pub const LARGE: &[&[BlockArgs]] = &[
    &[BlockArgs::ds(1, 3, 1, 16, 0.0, RELU)],
    &[
        BlockArgs::ir(1, 3, 2, 4.0, 24, 0.0, RELU),
        BlockArgs::ir(1, 3, 1, 3.0, 24, 0.0, RELU),
    ],
    &[BlockArgs::ir(3, 5, 2, 3.0, 40, 0.25, RELU)],
    &[
        BlockArgs::ir(1, 3, 2, 6.0, 80, 0.0, None),
        BlockArgs::ir(1, 3, 1, 2.5, 80, 0.0, None),
        BlockArgs::ir(2, 3, 1, 2.3, 80, 0.0, None),
    ],
    &[BlockArgs::ir(2, 3, 1, 6.0, 112, 0.25, None)],
    &[BlockArgs::ir(3, 5, 2, 6.0, 160, 0.25, None)],
    &[BlockArgs::cn(1, 1, 1, 960)],
];

/// Which MobileNetV3, and its training-time regularisation (timm's defaults: none).
#[derive(Debug, Clone)]
pub struct MobileNetV3Config {
    pub arch: &'static [&'static [BlockArgs]],
    pub channel_multiplier: f64,
    /// Width of `conv_head` (not scaled by the multiplier, as in timm).
    pub num_features: usize,
    pub num_classes: usize,
    /// Dropout before the classifier.
    pub drop_rate: f64,
    /// Stochastic depth of the last block (linearly less before it).
    pub drop_path_rate: f64,
}

impl MobileNetV3Config {
    pub fn small(channel_multiplier: f64, num_classes: usize) -> Self {
        Self::new(SMALL, channel_multiplier, 1024, num_classes)
    }

    pub fn large(channel_multiplier: f64, num_classes: usize) -> Self {
        Self::new(LARGE, channel_multiplier, 1280, num_classes)
    }

    fn new(
        arch: &'static [&'static [BlockArgs]],
        channel_multiplier: f64,
        num_features: usize,
        num_classes: usize,
    ) -> Self {
        Self {
            arch,
            channel_multiplier,
            num_features,
            num_classes,
            drop_rate: 0.0,
            drop_path_rate: 0.0,
        }
    }

    pub fn with_drop_rate(mut self, p: f64) -> Self {
        self.drop_rate = p;
        self
    }

    pub fn with_drop_path_rate(mut self, p: f64) -> Self {
        self.drop_path_rate = p;
        self
    }

    pub fn init(&self, device: &Device) -> MobileNetV3 {
        let args = ModelArgs {
            act: Act::HardSwish,
            gate: Gate::HardSigmoid,
            se_act: Some(Act::Relu),
            se_from_exp: true,
            channel_multiplier: self.channel_multiplier,
            depth_multiplier: 1.0,
            drop_path_rate: self.drop_path_rate,
        };
        // timm keeps the stem at 16 below a multiplier of 0.75 (`fix_stem`).
        let stem = if self.channel_multiplier < 0.75 {
            16
        } else {
            args.round_chs(16)
        };
        let (blocks, head_in) = args.build_stages(device, self.arch, stem);
        MobileNetV3 {
            conv_stem: tf_conv(device, 3, stem, 3, 2, 1, false),
            bn1: tf_bn(device, stem),
            blocks,
            conv_head: tf_conv(device, head_in, self.num_features, 1, 1, 1, true),
            classifier: tf_linear(device, self.num_features, self.num_classes),
            dropout: DropoutConfig::new(self.drop_rate).init(),
            feature_stages: feature_stages(self.arch),
        }
    }
}

#[derive(Module, Debug)]
pub struct MobileNetV3 {
    pub conv_stem: Conv2d,
    pub bn1: BatchNorm2d,
    pub blocks: Vec<Vec<Block>>,
    pub conv_head: Conv2d,
    pub classifier: Linear,
    pub dropout: Dropout,
    #[module(skip)]
    pub feature_stages: Vec<usize>,
}

impl MobileNetV3 {
    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let x = conv_bn_act(&self.conv_stem, &self.bn1, x, Some(Act::HardSwish));
        let (x, stages) = run_stages(&self.blocks, &self.feature_stages, x);
        let pooled = x.mean_dim(2).mean_dim(3);
        let head = Act::HardSwish.apply(conv_fwd(&self.conv_head, pooled));
        let features = self.dropout.forward(head.flatten(1, 3));
        ModelOutput {
            stages,
            logits: linear_fwd(&self.classifier, features),
        }
    }
}

/// Runs every block, keeping the outputs of the stages in `features`.
pub fn run_stages(
    blocks: &[Vec<Block>],
    features: &[usize],
    mut x: Tensor<4>,
) -> (Tensor<4>, Vec<Tensor<4>>) {
    let mut stages = Vec::with_capacity(features.len());
    for (i, stage) in blocks.iter().enumerate() {
        x = stage.iter().fold(x, |y, b| b.forward(y));
        if features.contains(&i) {
            stages.push(x.clone());
        }
    }
    (x, stages)
}
