//! timm's `tf_efficientnet_b*` (Tan & Le 2019, TensorFlow-ported weights' form): a 3×3 stride-2
//! stem of 32 channels (scaled) + SiLU, the seven stages of [`ARCH`] scaled in width and depth,
//! a 1×1 `conv_head` to 1280 features (scaled) + `bn2` + SiLU, global average pooling, dropout
//! and the `classifier`. BatchNorm eps 1e-3, "same" padding; squeeze-excitations with SiLU and a
//! sigmoid gate, a quarter of the block's input wide.
//!
//! Parameter counts at 1000 classes (timm 1.0.31): b0 5,288,548, b4 19,341,616. Stages: timm's
//! `feature_info` with reduction ≥ 4 (/4, /8, /16, /32).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};

use super::activation::{Act, Gate};
use super::efficientnet_blocks::{Block, conv_bn_act};
use super::efficientnet_builder::{
    BlockArgs, ModelArgs, feature_stages, tf_bn, tf_conv, tf_linear,
};
use super::layers::{BatchNorm2d, linear_fwd};
use super::mobilenetv3::run_stages;
use super::output::ModelOutput;

/// `_gen_efficientnet`'s `arch_def`.
pub const ARCH: &[&[BlockArgs]] = &[
    &[BlockArgs::ds(1, 3, 1, 16, 0.25, None)],
    &[BlockArgs::ir(2, 3, 2, 6.0, 24, 0.25, None)],
    &[BlockArgs::ir(2, 5, 2, 6.0, 40, 0.25, None)],
    &[BlockArgs::ir(3, 3, 2, 6.0, 80, 0.25, None)],
    &[BlockArgs::ir(3, 5, 1, 6.0, 112, 0.25, None)],
    &[BlockArgs::ir(4, 5, 2, 6.0, 192, 0.25, None)],
    &[BlockArgs::ir(1, 3, 1, 6.0, 320, 0.25, None)],
];

/// An EfficientNet by its width and depth multipliers (b0: 1.0, 1.0; b4: 1.4, 1.8), and its
/// training-time regularisation (timm's defaults: none).
#[derive(Debug, Clone)]
pub struct EfficientNetConfig {
    pub channel_multiplier: f64,
    pub depth_multiplier: f64,
    pub num_classes: usize,
    /// Dropout before the classifier.
    pub drop_rate: f64,
    /// Stochastic depth of the last block (linearly less before it).
    pub drop_path_rate: f64,
}

impl EfficientNetConfig {
    pub fn new(channel_multiplier: f64, depth_multiplier: f64, num_classes: usize) -> Self {
        Self {
            channel_multiplier,
            depth_multiplier,
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

    pub fn init(&self, device: &Device) -> EfficientNet {
        let args = ModelArgs {
            act: Act::Silu,
            gate: Gate::Sigmoid,
            se_act: None,
            se_from_exp: false,
            channel_multiplier: self.channel_multiplier,
            depth_multiplier: self.depth_multiplier,
            drop_path_rate: self.drop_path_rate,
        };
        let stem = args.round_chs(32);
        let num_features = args.round_chs(1280);
        let (blocks, head_in) = args.build_stages(device, ARCH, stem);
        EfficientNet {
            conv_stem: tf_conv(device, 3, stem, 3, 2, 1, false),
            bn1: tf_bn(device, stem),
            blocks,
            conv_head: tf_conv(device, head_in, num_features, 1, 1, 1, false),
            bn2: tf_bn(device, num_features),
            classifier: tf_linear(device, num_features, self.num_classes),
            dropout: DropoutConfig::new(self.drop_rate).init(),
            feature_stages: feature_stages(ARCH),
        }
    }
}

#[derive(Module, Debug)]
pub struct EfficientNet {
    pub conv_stem: Conv2d,
    pub bn1: BatchNorm2d,
    pub blocks: Vec<Vec<Block>>,
    pub conv_head: Conv2d,
    pub bn2: BatchNorm2d,
    pub classifier: Linear,
    pub dropout: Dropout,
    #[module(skip)]
    pub feature_stages: Vec<usize>,
}

impl EfficientNet {
    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let x = conv_bn_act(&self.conv_stem, &self.bn1, x, Some(Act::Silu));
        let (x, stages) = run_stages(&self.blocks, &self.feature_stages, x);
        let x = conv_bn_act(&self.conv_head, &self.bn2, x, Some(Act::Silu));
        let pooled = x.mean_dim(2).mean_dim(3).flatten(1, 3);
        ModelOutput {
            stages,
            logits: linear_fwd(&self.classifier, self.dropout.forward(pooled)),
        }
    }
}
