//! The zoo's models and blocks as ONNX graphs: each walks the same structure as its
//! `forward` (src/models/), under its module paths, and ends at the logits (the stage feature
//! maps MEAL matches during distillation are not outputs).

use super::graph::{Graph, Value};
use super::layers::{
    ToOnnx, add, avg_pool, bn_relu, concat_channels, conv_bn, flatten, global_avg_pool,
    global_max_pool, max_pool, narrow_channels, relu, scale, shortcut_a,
};
use crate::error::Result;
use crate::models::Net;
use crate::models::densenet::{DenseNet, DenseUnit, Transition};
use crate::models::dpn::{Dpn, DualPathBlock};
use crate::models::googlenet::{GoogLeNet, Inception};
use crate::models::layers::ConvBnRelu;
use crate::models::mobilenet::{MobileNet, SeparableBlock};
use crate::models::preact_resnet::{PreActBlock, PreActResNet};
use crate::models::resnet::{BasicBlock, ResNet};
use crate::models::resnet_cifar::{BasicBlockA, ResNetCifar};
use crate::models::resnet9::ResNet9;
use crate::models::resnext::{ResNeXt, ResNeXtBlock};
use crate::models::vgg::Vgg;

impl ToOnnx for Net {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        match self {
            Net::ResNetCifar(m) => m.to_onnx(g, name, x),
            Net::Vgg(m) => m.to_onnx(g, name, x),
            Net::ResNet(m) => m.to_onnx(g, name, x),
            Net::PreActResNet(m) => m.to_onnx(g, name, x),
            Net::DenseNet(m) => m.to_onnx(g, name, x),
            Net::Dpn(m) => m.to_onnx(g, name, x),
            Net::GoogLeNet(m) => m.to_onnx(g, name, x),
            Net::ResNeXt(m) => m.to_onnx(g, name, x),
            Net::MobileNet(m) => m.to_onnx(g, name, x),
            Net::ResNet9(m) => m.to_onnx(g, name, x),
            Net::TimmResNet(m) => m.to_onnx(g, name, x),
        }
    }
}

/// `prefix.part`, or `part` at the top level.
pub(super) fn path(prefix: &str, part: impl std::fmt::Display) -> String {
    if prefix.is_empty() {
        part.to_string()
    } else {
        format!("{prefix}.{part}")
    }
}

/// Runs `blocks[s][i]` in order under `{name}.{field}.{s}.{i}`.
fn stages<B: ToOnnx>(
    g: &mut Graph,
    name: &str,
    field: &str,
    stages: &[Vec<B>],
    mut x: Value,
) -> Result<Value> {
    for (s, blocks) in stages.iter().enumerate() {
        for (i, block) in blocks.iter().enumerate() {
            x = block.to_onnx(g, &path(name, format!("{field}.{s}.{i}")), x)?;
        }
    }
    Ok(x)
}

/// Units applied one after the other under `{name}.{i}`.
fn chain<B: ToOnnx>(g: &mut Graph, name: &str, units: &[B], x: Value) -> Result<Value> {
    units
        .iter()
        .enumerate()
        .try_fold(x, |y, (i, u)| u.to_onnx(g, &path(name, i), y))
}

impl ToOnnx for BasicBlockA {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |s: &str| path(name, s);
        let out = conv_bn(
            g,
            (&p("conv1"), &self.conv1),
            (&p("bn1"), &self.bn1),
            x.clone(),
            true,
        )?;
        let out = conv_bn(
            g,
            (&p("conv2"), &self.conv2),
            (&p("bn2"), &self.bn2),
            out,
            false,
        )?;
        let shortcut = if self.stride == 1 && self.pad == 0 {
            x
        } else {
            shortcut_a(g, &p("shortcut"), x, self.stride, self.pad)?
        };
        let sum = add(g, &p("add"), out, shortcut)?;
        Ok(relu(g, &p("relu"), sum))
    }
}

impl ToOnnx for ResNetCifar {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let out = self.stem.to_onnx(g, &path(name, "stem"), x)?;
        let out = stages(g, name, "stages", &self.stages, out)?;
        let pooled = global_avg_pool(g, &path(name, "pool"), out)?;
        self.fc.to_onnx(g, &path(name, "fc"), pooled)
    }
}

impl ToOnnx for Vgg {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let mut out = x;
        for (i, group) in self.groups.iter().enumerate() {
            let group_name = path(name, format!("groups.{i}"));
            out = chain(g, &group_name, group, out)?;
            out = max_pool(g, &path(&group_name, "pool"), out, 2, 2, 0)?;
        }
        let pooled = global_avg_pool(g, &path(name, "pool"), out)?;
        self.fc.to_onnx(g, &path(name, "fc"), pooled)
    }
}

impl ToOnnx for BasicBlock {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |s: &str| path(name, s);
        let out = conv_bn(
            g,
            (&p("conv1"), &self.conv1),
            (&p("bn1"), &self.bn1),
            x.clone(),
            true,
        )?;
        let out = conv_bn(
            g,
            (&p("conv2"), &self.conv2),
            (&p("bn2"), &self.bn2),
            out,
            false,
        )?;
        let shortcut = match &self.shortcut {
            Some(proj) => proj.to_onnx(g, &p("shortcut"), x)?,
            None => x,
        };
        let sum = add(g, &p("add"), out, shortcut)?;
        Ok(relu(g, &p("relu"), sum))
    }
}

/// `flatten(avg_pool(x, kernel))` then the classifier, the head of most of the zoo.
fn pooled_head(
    g: &mut Graph,
    name: &str,
    fc: &burn::nn::Linear,
    x: Value,
    kernel: usize,
) -> Result<Value> {
    let pooled = avg_pool(g, &path(name, "pool"), x, kernel)?;
    let flat = flatten(g, &path(name, "flatten"), pooled)?;
    fc.to_onnx(g, &path(name, "fc"), flat)
}

impl ToOnnx for ResNet {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let out = self.stem.to_onnx(g, &path(name, "stem"), x)?;
        let out = stages(g, name, "layers", &self.layers, out)?;
        pooled_head(g, name, &self.fc, out, 4)
    }
}

impl ToOnnx for PreActBlock {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |s: &str| path(name, s);
        let a = bn_relu(g, &p("bn1"), &self.bn1, x.clone())?;
        let shortcut = match &self.shortcut {
            Some(proj) => proj.to_onnx(g, &p("shortcut"), a.clone())?,
            None => x,
        };
        let out = self.conv1.to_onnx(g, &p("conv1"), a)?;
        let out = bn_relu(g, &p("bn2"), &self.bn2, out)?;
        let out = self.conv2.to_onnx(g, &p("conv2"), out)?;
        add(g, &p("add"), out, shortcut)
    }
}

impl ToOnnx for PreActResNet {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let out = self.stem.to_onnx(g, &path(name, "stem"), x)?;
        let out = stages(g, name, "layers", &self.layers, out)?;
        pooled_head(g, name, &self.fc, out, 4)
    }
}

impl ToOnnx for DenseUnit {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |s: &str| path(name, s);
        let out = bn_relu(g, &p("bn1"), &self.bn1, x.clone())?;
        let out = self.conv1.to_onnx(g, &p("conv1"), out)?;
        let out = bn_relu(g, &p("bn2"), &self.bn2, out)?;
        let out = self.conv2.to_onnx(g, &p("conv2"), out)?;
        concat_channels(g, &p("cat"), vec![out, x])
    }
}

impl ToOnnx for Transition {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let out = bn_relu(g, &path(name, "bn"), &self.bn, x)?;
        let out = self.conv.to_onnx(g, &path(name, "conv"), out)?;
        avg_pool(g, &path(name, "pool"), out, 2)
    }
}

impl ToOnnx for DenseNet {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let mut out = self.stem.to_onnx(g, &path(name, "stem"), x)?;
        for (i, units) in self.blocks.iter().enumerate() {
            out = chain(g, &path(name, format!("blocks.{i}")), units, out)?;
            if let Some(transition) = self.transitions.get(i) {
                out = transition.to_onnx(g, &path(name, format!("transitions.{i}")), out)?;
            }
        }
        let out = bn_relu(g, &path(name, "bn"), &self.bn, out)?;
        pooled_head(g, name, &self.fc, out, 4)
    }
}

impl ToOnnx for DualPathBlock {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |s: &str| path(name, s);
        let y = conv_bn(
            g,
            (&p("conv1"), &self.conv1),
            (&p("bn1"), &self.bn1),
            x.clone(),
            true,
        )?;
        let y = conv_bn(
            g,
            (&p("conv2"), &self.conv2),
            (&p("bn2"), &self.bn2),
            y,
            true,
        )?;
        let y = conv_bn(
            g,
            (&p("conv3"), &self.conv3),
            (&p("bn3"), &self.bn3),
            y,
            false,
        )?;
        let x = match &self.shortcut {
            Some(proj) => proj.to_onnx(g, &p("shortcut"), x)?,
            None => x,
        };
        let d = self.out_planes;
        let (cx, cy) = (x.chw(name)?[0], y.chw(name)?[0]);
        let res_x = narrow_channels(g, &p("residual_x"), x.clone(), 0, d)?;
        let res_y = narrow_channels(g, &p("residual_y"), y.clone(), 0, d)?;
        let residual = add(g, &p("residual"), res_x, res_y)?;
        let dense_x = narrow_channels(g, &p("dense_x"), x, d, cx.saturating_sub(d))?;
        let dense_y = narrow_channels(g, &p("dense_y"), y, d, cy.saturating_sub(d))?;
        let cat = concat_channels(g, &p("cat"), vec![residual, dense_x, dense_y])?;
        Ok(relu(g, &p("relu"), cat))
    }
}

impl ToOnnx for Dpn {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let out = self.stem.to_onnx(g, &path(name, "stem"), x)?;
        let out = stages(g, name, "layers", &self.layers, out)?;
        pooled_head(g, name, &self.fc, out, 4)
    }
}

impl ToOnnx for Inception {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |s: &str| path(name, s);
        let y1 = self.b1.to_onnx(g, &p("b1"), x.clone())?;
        let y2 = chain::<ConvBnRelu>(g, &p("b2"), &self.b2, x.clone())?;
        let y3 = chain::<ConvBnRelu>(g, &p("b3"), &self.b3, x.clone())?;
        let pooled = max_pool(g, &p("b4.pool"), x, 3, 1, 1)?;
        let y4 = self.b4.to_onnx(g, &p("b4"), pooled)?;
        concat_channels(g, &p("cat"), vec![y1, y2, y3, y4])
    }
}

impl ToOnnx for GoogLeNet {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let mut out = self.pre.to_onnx(g, &path(name, "pre"), x)?;
        let last = self.groups.len() - 1;
        for (i, modules) in self.groups.iter().enumerate() {
            let group_name = path(name, format!("groups.{i}"));
            out = chain(g, &group_name, modules, out)?;
            if i < last {
                out = max_pool(g, &path(&group_name, "pool"), out, 3, 2, 1)?;
            }
        }
        pooled_head(g, name, &self.fc, out, 8)
    }
}

impl ToOnnx for ResNeXtBlock {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |s: &str| path(name, s);
        let y = conv_bn(
            g,
            (&p("conv1"), &self.conv1),
            (&p("bn1"), &self.bn1),
            x.clone(),
            true,
        )?;
        let y = conv_bn(
            g,
            (&p("conv2"), &self.conv2),
            (&p("bn2"), &self.bn2),
            y,
            true,
        )?;
        let y = conv_bn(
            g,
            (&p("conv3"), &self.conv3),
            (&p("bn3"), &self.bn3),
            y,
            false,
        )?;
        let shortcut = match &self.shortcut {
            Some(proj) => proj.to_onnx(g, &p("shortcut"), x)?,
            None => x,
        };
        let sum = add(g, &p("add"), y, shortcut)?;
        Ok(relu(g, &p("relu"), sum))
    }
}

impl ToOnnx for ResNeXt {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let out = self.stem.to_onnx(g, &path(name, "stem"), x)?;
        let out = stages(g, name, "layers", &self.layers, out)?;
        pooled_head(g, name, &self.fc, out, 8)
    }
}

impl ToOnnx for SeparableBlock {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let y = self.depthwise.to_onnx(g, &path(name, "depthwise"), x)?;
        self.pointwise.to_onnx(g, &path(name, "pointwise"), y)
    }
}

impl ToOnnx for MobileNet {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let out = self.stem.to_onnx(g, &path(name, "stem"), x)?;
        let out = chain(g, &path(name, "blocks"), &self.blocks, out)?;
        pooled_head(g, name, &self.fc, out, 2)
    }
}

impl ToOnnx for ResNet9 {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |s: &str| path(name, s);
        let residual = |g: &mut Graph, field: &str, pair: &[ConvBnRelu], x: Value| {
            let y = chain(g, &p(field), pair, x.clone())?;
            add(g, &p(&format!("{field}.add")), x, y)
        };
        let x = self.prep.to_onnx(g, &p("prep"), x)?;
        let x = self.layer1.to_onnx(g, &p("layer1"), x)?;
        let x = max_pool(g, &p("layer1.pool"), x, 2, 2, 0)?;
        let s1 = residual(g, "res1", &self.res1, x)?;
        let x = self.layer2.to_onnx(g, &p("layer2"), s1)?;
        let s2 = max_pool(g, &p("layer2.pool"), x, 2, 2, 0)?;
        let x = self.layer3.to_onnx(g, &p("layer3"), s2)?;
        let x = max_pool(g, &p("layer3.pool"), x, 2, 2, 0)?;
        let s3 = residual(g, "res3", &self.res3, x)?;
        let pooled = global_max_pool(g, &p("pool"), s3)?;
        let logits = self.fc.to_onnx(g, &p("fc"), pooled)?;
        scale(
            g,
            &p("scale"),
            logits,
            crate::models::resnet9::LOGIT_SCALE as f32,
        )
    }
}
