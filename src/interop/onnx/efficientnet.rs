//! ONNX graphs of timm's `tf_` MobileNetV3 and EfficientNet (src/models/mobilenetv3.rs,
//! efficientnet.rs): the graph's spatial size is fixed, so TensorFlow "same" padding becomes
//! the static (possibly asymmetric) `pads` of each strided `Conv`; hard-swish is `HardSwish`,
//! the hard-sigmoid gate `HardSigmoid` (α = 1/6, β = 1/2), SiLU `x · Sigmoid(x)`, and a
//! squeeze-excitation `GlobalAveragePool` → `Conv` → act → `Conv` → gate → `Mul`.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;

use super::graph::{Graph, Value, attr_float};
use super::layers::{ToOnnx, add, flatten, global_avg_pool, global_avg_pool_keep, relu};
use super::models::path;
use crate::error::Result;
use crate::models::activation::{Act, Gate};
use crate::models::efficientnet::EfficientNet;
use crate::models::efficientnet_blocks::Block;
use crate::models::efficientnet_se::SqueezeExcite;
use crate::models::layers::BatchNorm2d;
use crate::models::mobilenetv3::MobileNetV3;
use crate::models::same_pad::same_padding;

/// The convolution with "same" padding for this input: its own static padding at stride 1,
/// the TensorFlow padding of `x`'s size otherwise.
fn conv_same(g: &mut Graph, name: &str, conv: &Conv2d, x: Value) -> Result<Value> {
    if conv.stride == [1, 1] {
        return conv.to_onnx(g, name, x);
    }
    let [_, h, w] = x.chw(name)?;
    let [_, _, kh, kw] = conv.weight.shape().dims::<4>();
    let (top, bottom) = same_padding(h, kh, conv.stride[0], conv.dilation[0]);
    let (left, right) = same_padding(w, kw, conv.stride[1], conv.dilation[1]);
    let mut padded = conv.clone();
    padded.padding = PaddingConfig2d::Explicit(top, left, bottom, right);
    padded.to_onnx(g, name, x)
}

fn act(g: &mut Graph, name: &str, act: Act, x: Value) -> Value {
    match act {
        Act::Relu => relu(g, name, x),
        Act::HardSwish => g.node("HardSwish", name, vec![x.name], vec![], x.dims),
        Act::Silu => {
            let s = g.node(
                "Sigmoid",
                &format!("{name}.sigmoid"),
                vec![x.name.clone()],
                vec![],
                x.dims.clone(),
            );
            g.node("Mul", name, vec![x.name, s.name], vec![], x.dims)
        }
    }
}

fn gate(g: &mut Graph, name: &str, gate: Gate, x: Value) -> Value {
    match gate {
        Gate::Sigmoid => g.node("Sigmoid", name, vec![x.name], vec![], x.dims),
        Gate::HardSigmoid => g.node(
            "HardSigmoid",
            name,
            vec![x.name],
            vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)],
            x.dims,
        ),
    }
}

/// `act(bn(conv(x)))` under `{name}.{conv}` / `{name}.{bn}`.
fn conv_bn_act(
    g: &mut Graph,
    (conv_name, conv): (&str, &Conv2d),
    (bn_name, bn): (&str, &BatchNorm2d),
    x: Value,
    activation: Option<Act>,
) -> Result<Value> {
    let y = conv_same(g, conv_name, conv, x)?;
    let y = bn.to_onnx(g, bn_name, y)?;
    Ok(match activation {
        Some(a) => act(g, &format!("{bn_name}.act"), a, y),
        None => y,
    })
}

impl ToOnnx for SqueezeExcite {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let pooled = global_avg_pool_keep(g, &path(name, "pool"), x.clone())?;
        let s = self
            .conv_reduce
            .to_onnx(g, &path(name, "conv_reduce"), pooled)?;
        let s = act(g, &path(name, "act1"), self.act, s);
        let s = self.conv_expand.to_onnx(g, &path(name, "conv_expand"), s)?;
        let s = gate(g, &path(name, "gate"), self.gate, s);
        Ok(g.node("Mul", name, vec![x.name, s.name], vec![], x.dims))
    }
}

fn se(g: &mut Graph, name: &str, se: &Option<SqueezeExcite>, x: Value) -> Result<Value> {
    match se {
        Some(se) => se.to_onnx(g, &path(name, "se"), x),
        None => Ok(x),
    }
}

impl ToOnnx for Block {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |part: &str| path(name, part);
        match self {
            Block::DepthwiseSeparable(b) => {
                let (dw, bn1) = (p("conv_dw"), p("bn1"));
                let y = conv_bn_act(g, (&dw, &b.conv_dw), (&bn1, &b.bn1), x.clone(), Some(b.act))?;
                let y = se(g, name, &b.se, y)?;
                let (pw, bn2) = (p("conv_pw"), p("bn2"));
                let y = conv_bn_act(g, (&pw, &b.conv_pw), (&bn2, &b.bn2), y, None)?;
                if b.has_skip {
                    add(g, &p("add"), y, x)
                } else {
                    Ok(y)
                }
            }
            Block::InvertedResidual(b) => {
                let (pw, bn1) = (p("conv_pw"), p("bn1"));
                let y = conv_bn_act(g, (&pw, &b.conv_pw), (&bn1, &b.bn1), x.clone(), Some(b.act))?;
                let (dw, bn2) = (p("conv_dw"), p("bn2"));
                let y = conv_bn_act(g, (&dw, &b.conv_dw), (&bn2, &b.bn2), y, Some(b.act))?;
                let y = se(g, name, &b.se, y)?;
                let (pwl, bn3) = (p("conv_pwl"), p("bn3"));
                let y = conv_bn_act(g, (&pwl, &b.conv_pwl), (&bn3, &b.bn3), y, None)?;
                if b.has_skip {
                    add(g, &p("add"), y, x)
                } else {
                    Ok(y)
                }
            }
            Block::ConvBnAct(b) => {
                let (conv, bn1) = (p("conv"), p("bn1"));
                conv_bn_act(g, (&conv, &b.conv), (&bn1, &b.bn1), x, Some(b.act))
            }
        }
    }
}

fn blocks(g: &mut Graph, name: &str, stages: &[Vec<Block>], mut x: Value) -> Result<Value> {
    for (s, stage) in stages.iter().enumerate() {
        for (i, block) in stage.iter().enumerate() {
            x = block.to_onnx(g, &path(name, format!("blocks.{s}.{i}")), x)?;
        }
    }
    Ok(x)
}

impl ToOnnx for MobileNetV3 {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let (stem, bn1) = (path(name, "conv_stem"), path(name, "bn1"));
        let x = conv_bn_act(
            g,
            (&stem, &self.conv_stem),
            (&bn1, &self.bn1),
            x,
            Some(Act::HardSwish),
        )?;
        let x = blocks(g, name, &self.blocks, x)?;
        let pooled = global_avg_pool_keep(g, &path(name, "global_pool"), x)?;
        let head = self
            .conv_head
            .to_onnx(g, &path(name, "conv_head"), pooled)?;
        let head = act(g, &path(name, "act2"), Act::HardSwish, head);
        let features = flatten(g, &path(name, "flatten"), head)?;
        self.classifier
            .to_onnx(g, &path(name, "classifier"), features)
    }
}

impl ToOnnx for EfficientNet {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let (stem, bn1) = (path(name, "conv_stem"), path(name, "bn1"));
        let x = conv_bn_act(
            g,
            (&stem, &self.conv_stem),
            (&bn1, &self.bn1),
            x,
            Some(Act::Silu),
        )?;
        let x = blocks(g, name, &self.blocks, x)?;
        let (head, bn2) = (path(name, "conv_head"), path(name, "bn2"));
        let x = conv_bn_act(
            g,
            (&head, &self.conv_head),
            (&bn2, &self.bn2),
            x,
            Some(Act::Silu),
        )?;
        let pooled = global_avg_pool(g, &path(name, "global_pool"), x)?;
        self.classifier
            .to_onnx(g, &path(name, "classifier"), pooled)
    }
}
