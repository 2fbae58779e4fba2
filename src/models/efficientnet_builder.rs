//! timm's `_efficientnet_builder.py` for the `tf_` MobileNetV3 and EfficientNet models: block
//! definitions per stage, channel rounding (`make_divisible`, `round_channels`), depth scaling
//! (`_scale_stage_depth`, "ceil"), the squeeze-excitation width, the drop-path schedule, the
//! layers' initialisation (`_init_weight_goog`) and BatchNorm with TensorFlow's eps of 1e-3.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::Device;

use super::activation::{Act, Gate};
use super::efficientnet_blocks::Block;
use super::efficientnet_se::SqueezeExcite;
use super::layers::BatchNorm2d;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `ds`
    DepthwiseSeparable,
    /// `ir`
    InvertedResidual,
    /// `cn`
    ConvBnAct,
}

/// One entry of timm's `arch_def`, e.g. `ir_r3_k5_s2_e3_c40_se0.25_nre`.
#[derive(Debug, Clone, Copy)]
pub struct BlockArgs {
    pub kind: BlockKind,
    pub repeats: usize,
    pub kernel: usize,
    /// Stride of the first repeat; the others have 1.
    pub stride: usize,
    pub exp_ratio: f64,
    pub out_chs: usize,
    /// 0 for none.
    pub se_ratio: f64,
    /// The block's activation where it differs from the model's (`_nre`: ReLU).
    pub act: Option<Act>,
}

impl BlockArgs {
    pub const fn ds(r: usize, k: usize, s: usize, c: usize, se: f64, act: Option<Act>) -> Self {
        Self::new(BlockKind::DepthwiseSeparable, r, k, s, 1.0, c, se, act)
    }

    pub const fn ir(
        r: usize,
        k: usize,
        s: usize,
        e: f64,
        c: usize,
        se: f64,
        act: Option<Act>,
    ) -> Self {
        Self::new(BlockKind::InvertedResidual, r, k, s, e, c, se, act)
    }

    pub const fn cn(r: usize, k: usize, s: usize, c: usize) -> Self {
        Self::new(BlockKind::ConvBnAct, r, k, s, 1.0, c, 0.0, None)
    }

    #[allow(clippy::too_many_arguments)]
    const fn new(
        kind: BlockKind,
        repeats: usize,
        kernel: usize,
        stride: usize,
        exp_ratio: f64,
        out_chs: usize,
        se_ratio: f64,
        act: Option<Act>,
    ) -> Self {
        Self {
            kind,
            repeats,
            kernel,
            stride,
            exp_ratio,
            out_chs,
            se_ratio,
            act,
        }
    }

    /// The expanded width of an inverted residual from `in_chs`.
    pub fn mid_channels(&self, in_chs: usize) -> usize {
        make_divisible(in_chs as f64 * self.exp_ratio)
    }
}

/// What a model family sets around its blocks (timm's builder arguments).
#[derive(Debug, Clone)]
pub struct ModelArgs {
    pub act: Act,
    pub gate: Gate,
    /// MobileNetV3 forces ReLU inside its squeeze-excitations; EfficientNet uses the block's.
    pub se_act: Option<Act>,
    /// MobileNetV3: the reduced width is `round_channels(mid · ratio)`; EfficientNet: Python's
    /// `round(mid · ratio / exp_ratio)`, i.e. a fraction of the block's input.
    pub se_from_exp: bool,
    pub channel_multiplier: f64,
    pub depth_multiplier: f64,
    pub drop_path_rate: f64,
}

impl ModelArgs {
    pub fn round_chs(&self, chs: usize) -> usize {
        round_channels(chs, self.channel_multiplier)
    }

    /// The squeeze-excitation of a block whose SE sees `chs` channels, if it has one.
    pub fn se(
        &self,
        device: &Device,
        args: &BlockArgs,
        _in_chs: usize,
        chs: usize,
        block_act: Act,
    ) -> Option<SqueezeExcite> {
        if args.se_ratio == 0.0 {
            return None;
        }
        let reduced = if self.se_from_exp {
            make_divisible(chs as f64 * args.se_ratio)
        } else {
            (chs as f64 * (args.se_ratio / args.exp_ratio)).round_ties_even() as usize
        };
        let act = self.se_act.unwrap_or(block_act);
        Some(SqueezeExcite::new(device, chs, reduced, act, self.gate))
    }

    /// The stages of blocks from `stem_chs` channels, and the width they end with.
    pub fn build_stages(
        &self,
        device: &Device,
        arch: &[&[BlockArgs]],
        stem_chs: usize,
    ) -> (Vec<Vec<Block>>, usize) {
        let stages: Vec<Vec<BlockArgs>> = arch
            .iter()
            .map(|stage| scale_stage_depth(stage, self.depth_multiplier))
            .collect();
        let total: usize = stages.iter().map(Vec::len).sum();
        let mut in_chs = stem_chs;
        let mut index = 0;
        let blocks = stages
            .iter()
            .map(|stage| {
                stage
                    .iter()
                    .enumerate()
                    .map(|(i, args)| {
                        let out = self.round_chs(args.out_chs);
                        let stride = if i == 0 { args.stride } else { 1 };
                        let drop = self.drop_path_rate * index as f64 / total as f64;
                        let block = Block::new(device, self, args, in_chs, out, stride, drop);
                        in_chs = out;
                        index += 1;
                        block
                    })
                    .collect()
            })
            .collect();
        (blocks, in_chs)
    }
}

/// The stages whose outputs are timm's `feature_info` entries with a reduction of at least 4:
/// the last stage of each resolution (the next one starts strided, or none follows), counting
/// the stem's stride of 2.
pub fn feature_stages(arch: &[&[BlockArgs]]) -> Vec<usize> {
    let mut reduction = 2;
    let mut out = Vec::new();
    for (i, stage) in arch.iter().enumerate() {
        reduction *= stage[0].stride;
        let last_of_resolution = arch.get(i + 1).is_none_or(|next| next[0].stride > 1);
        if last_of_resolution && reduction >= 4 {
            out.push(i);
        }
    }
    out
}

/// timm's `make_divisible(v, 8)`: the nearest multiple of 8, at least 8, never below 90% of `v`.
pub fn make_divisible(v: f64) -> usize {
    const DIVISOR: usize = 8;
    let rounded = ((v + DIVISOR as f64 / 2.0) as usize / DIVISOR * DIVISOR).max(DIVISOR);
    if (rounded as f64) < 0.9 * v {
        rounded + DIVISOR
    } else {
        rounded
    }
}

/// timm's `round_channels`: `chs · multiplier` made divisible by 8.
pub fn round_channels(chs: usize, multiplier: f64) -> usize {
    make_divisible(chs as f64 * multiplier)
}

/// timm's `_scale_stage_depth` with "ceil": the stage's total repeats scaled up, handed out to
/// its definitions from the last (Python's `round`, ties to even), each repeated in place.
fn scale_stage_depth(stage: &[BlockArgs], depth_multiplier: f64) -> Vec<BlockArgs> {
    let mut num_repeat: usize = stage.iter().map(|a| a.repeats).sum();
    let mut num_scaled = (num_repeat as f64 * depth_multiplier).ceil() as usize;
    let mut repeats = vec![0; stage.len()];
    for (i, args) in stage.iter().enumerate().rev() {
        let r = args.repeats;
        let rs =
            ((r as f64 / num_repeat as f64 * num_scaled as f64).round_ties_even() as usize).max(1);
        repeats[i] = rs;
        num_repeat -= r;
        num_scaled = num_scaled.saturating_sub(rs);
    }
    stage
        .iter()
        .zip(repeats)
        .flat_map(|(args, n)| std::iter::repeat_n(*args, n))
        .collect()
}

/// A convolution as timm's `create_conv2d(..., padding='same')` builds it (static `k/2` padding
/// at stride 1; strided ones pad at run time, [`super::same_pad`]), initialised as timm's
/// `_init_weight_goog`: N(0, √(2 / fan_out)) with `fan_out = k·k·out / groups`, bias 0.
pub fn tf_conv(
    device: &Device,
    in_chs: usize,
    out_chs: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    bias: bool,
) -> Conv2d {
    let pad = if stride == 1 { kernel / 2 } else { 0 };
    let fan_out = kernel * kernel * out_chs / groups;
    let mut conv = Conv2dConfig::new([in_chs, out_chs], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(bias)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: (2.0 / fan_out as f64).sqrt(),
        })
        .init(device);
    if bias {
        conv.bias = Some(Initializer::Zeros.init([out_chs], device));
    }
    conv
}

/// The classifier as `_init_weight_goog` sets it: U(±1/√out), bias 0.
pub fn tf_linear(device: &Device, d_input: usize, d_output: usize) -> Linear {
    let bound = 1.0 / (d_output as f64).sqrt();
    let mut linear = LinearConfig::new(d_input, d_output)
        .with_initializer(Initializer::Uniform {
            min: -bound,
            max: bound,
        })
        .init(device);
    linear.bias = Some(Initializer::Zeros.init([d_output], device));
    linear
}

/// BatchNorm with TensorFlow's eps (`BN_EPS_TF_DEFAULT`, 1e-3).
pub fn tf_bn(device: &Device, channels: usize) -> BatchNorm2d {
    BatchNorm2d {
        epsilon: 1e-3,
        ..BatchNorm2d::new(device, channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_timm() {
        assert_eq!(make_divisible(16.0 * 4.5), 72);
        assert_eq!(make_divisible(24.0 * 3.67), 88);
        assert_eq!(make_divisible(80.0 * 2.3), 184);
        assert_eq!(round_channels(16, 0.75), 16);
        assert_eq!(round_channels(48, 0.75), 40);
        assert_eq!(round_channels(576, 0.75), 432);
        assert_eq!(round_channels(1280, 1.4), 1792);
        assert_eq!(round_channels(40, 1.4), 56);
    }

    #[test]
    fn depth_scaling_matches_timm() {
        let stage = [BlockArgs::ir(3, 3, 2, 6.0, 80, 0.25, None)];
        assert_eq!(scale_stage_depth(&stage, 1.8).len(), 6);
        let stage = [BlockArgs::ir(1, 3, 1, 6.0, 320, 0.25, None)];
        assert_eq!(scale_stage_depth(&stage, 1.8).len(), 2);
        // Several definitions: scaled from the last.
        let stage = [
            BlockArgs::ir(1, 3, 2, 6.0, 80, 0.0, None),
            BlockArgs::ir(1, 3, 1, 2.5, 80, 0.0, None),
            BlockArgs::ir(2, 3, 1, 2.3, 80, 0.0, None),
        ];
        let scaled = scale_stage_depth(&stage, 1.0);
        let e: Vec<f64> = scaled.iter().map(|a| a.exp_ratio).collect();
        assert_eq!(e, [6.0, 2.5, 2.3, 2.3]);
    }
}
