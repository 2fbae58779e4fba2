//! The blocks of timm's MobileNetV3 and EfficientNet (`_efficientnet_blocks.py`), with timm's
//! module names so that the burn paths are timm's state-dict keys:
//!
//! - [`DepthwiseSeparable`] (`ds`): `conv_dw` + `bn1` + act, `se`, `conv_pw` + `bn2`;
//! - [`InvertedResidual`] (`ir`): `conv_pw` + `bn1` + act, `conv_dw` + `bn2` + act, `se`,
//!   `conv_pwl` + `bn3`;
//! - [`ConvBnAct`] (`cn`): `conv` + `bn1` + act.
//!
//! The first two add their input back (through drop path) when the stride is 1 and the widths
//! agree. Strided convolutions pad "same" ([`super::same_pad`]).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::activation::Act;
use super::drop_path::DropPath;
use super::efficientnet_builder::{BlockArgs, BlockKind, ModelArgs, tf_bn, tf_conv};
use super::efficientnet_se::SqueezeExcite;
use super::layers::{self, BatchNorm2d, count_conv};
use super::same_pad::same_options;
use crate::kernels::activation::OutputAct;

/// `act(bn(conv(x)))` with "same" padding, the BatchNorm and the activation riding on the
/// convolution at inference ([`layers::conv_bn_act_with`]).
pub fn conv_bn_act(conv: &Conv2d, bn: &BatchNorm2d, x: Tensor<4>, act: Option<Act>) -> Tensor<4> {
    let out = act.map_or(OutputAct::Identity, Act::output);
    let [_, _, h, w] = x.dims();
    match same_options(conv, h, w) {
        Some(options) => layers::conv_bn_act_with(conv, bn, x, out, options),
        None => layers::bn_act(bn, layers::conv_fwd(conv, x), out),
    }
}

/// `act(bn(conv_dw(x)))` then the squeeze-excitation `se`. At inference the BatchNorm, the
/// activation and the excitation's global average pool ride on the depthwise kernel's output
/// pass ([`crate::kernels::depthwise_affine`]), and the gate scales the map in place.
fn dw_bn_act_se(
    conv: &Conv2d,
    bn: &BatchNorm2d,
    se: Option<&SqueezeExcite>,
    x: Tensor<4>,
    act: Act,
) -> Tensor<4> {
    let inference = !x.device().is_autodiff() && !bn.batch_statistics(&x);
    let [_, _, h, w] = x.dims();
    let Some(options) = same_options(conv, h, w).filter(|_| inference && conv.bias.is_none())
    else {
        let y = conv_bn_act(conv, bn, x, Some(act));
        return match se {
            Some(se) => se.forward(y),
            None => y,
        };
    };
    let out_act = act.output();
    let affine = bn.eval_affine(&x.device());
    let (y, pooled) =
        crate::kernels::depthwise_affine(x, conv.weight.val(), affine, out_act, options);
    let y = count_conv(conv, y);
    match se {
        Some(se) => se.forward_pooled(y, pooled),
        None => y,
    }
}

#[derive(Module, Debug)]
pub struct DepthwiseSeparable {
    pub conv_dw: Conv2d,
    pub bn1: BatchNorm2d,
    pub se: Option<SqueezeExcite>,
    pub conv_pw: Conv2d,
    pub bn2: BatchNorm2d,
    pub drop_path: DropPath,
    #[module(skip)]
    pub act: Act,
    pub has_skip: bool,
}

#[derive(Module, Debug)]
pub struct InvertedResidual {
    pub conv_pw: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv_dw: Conv2d,
    pub bn2: BatchNorm2d,
    pub se: Option<SqueezeExcite>,
    pub conv_pwl: Conv2d,
    pub bn3: BatchNorm2d,
    pub drop_path: DropPath,
    #[module(skip)]
    pub act: Act,
    pub has_skip: bool,
}

#[derive(Module, Debug)]
pub struct ConvBnAct {
    pub conv: Conv2d,
    pub bn1: BatchNorm2d,
    #[module(skip)]
    pub act: Act,
}

/// One block of a stage.
// The variants differ only by a few layers' bookkeeping (a few hundred bytes, weights live on
// the heap), and burn's `Module` derive has no `Box` support.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block {
    DepthwiseSeparable(DepthwiseSeparable),
    InvertedResidual(InvertedResidual),
    ConvBnAct(ConvBnAct),
}

impl Block {
    /// The block `args` describes, from `in_chs` channels, dropping its path with `drop_path`.
    pub fn new(
        device: &Device,
        model: &ModelArgs,
        args: &BlockArgs,
        in_chs: usize,
        out_chs: usize,
        stride: usize,
        drop_path: f64,
    ) -> Self {
        let act = args.act.unwrap_or(model.act);
        let k = args.kernel;
        let has_skip = stride == 1 && in_chs == out_chs;
        match args.kind {
            BlockKind::DepthwiseSeparable => Block::DepthwiseSeparable(DepthwiseSeparable {
                conv_dw: tf_conv(device, in_chs, in_chs, k, stride, in_chs, false),
                bn1: tf_bn(device, in_chs),
                se: model.se(device, args, in_chs, in_chs, act),
                conv_pw: tf_conv(device, in_chs, out_chs, 1, 1, 1, false),
                bn2: tf_bn(device, out_chs),
                drop_path: DropPath::new(drop_path),
                act,
                has_skip,
            }),
            BlockKind::InvertedResidual => {
                let mid = args.mid_channels(in_chs);
                Block::InvertedResidual(InvertedResidual {
                    conv_pw: tf_conv(device, in_chs, mid, 1, 1, 1, false),
                    bn1: tf_bn(device, mid),
                    conv_dw: tf_conv(device, mid, mid, k, stride, mid, false),
                    bn2: tf_bn(device, mid),
                    se: model.se(device, args, in_chs, mid, act),
                    conv_pwl: tf_conv(device, mid, out_chs, 1, 1, 1, false),
                    bn3: tf_bn(device, out_chs),
                    drop_path: DropPath::new(drop_path),
                    act,
                    has_skip,
                })
            }
            BlockKind::ConvBnAct => Block::ConvBnAct(ConvBnAct {
                conv: tf_conv(device, in_chs, out_chs, k, stride, 1, false),
                bn1: tf_bn(device, out_chs),
                act,
            }),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Block::DepthwiseSeparable(b) => {
                let y = dw_bn_act_se(&b.conv_dw, &b.bn1, b.se.as_ref(), x.clone(), b.act);
                let y = conv_bn_act(&b.conv_pw, &b.bn2, y, None);
                residual(b.has_skip, &b.drop_path, x, y)
            }
            Block::InvertedResidual(b) => {
                let y = conv_bn_act(&b.conv_pw, &b.bn1, x.clone(), Some(b.act));
                let y = dw_bn_act_se(&b.conv_dw, &b.bn2, b.se.as_ref(), y, b.act);
                let y = conv_bn_act(&b.conv_pwl, &b.bn3, y, None);
                residual(b.has_skip, &b.drop_path, x, y)
            }
            Block::ConvBnAct(b) => conv_bn_act(&b.conv, &b.bn1, x, Some(b.act)),
        }
    }
}

fn residual(has_skip: bool, drop_path: &DropPath, x: Tensor<4>, y: Tensor<4>) -> Tensor<4> {
    if has_skip {
        drop_path.forward(y) + x
    } else {
        y
    }
}
