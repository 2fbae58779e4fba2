//! timm's ImageNet ResNets (src/models/timm_resnet.rs) as ONNX graphs, under timm's module
//! names; squeeze-and-excitation as GlobalAveragePool → Conv → Relu → Conv → Sigmoid → Mul.

use super::graph::{Graph, Value};
use super::layers::{
    ToOnnx, add, bn_relu, conv_bn, global_avg_pool, global_avg_pool_keep, max_pool, relu,
};
use super::models::path;
use crate::error::Result;
use crate::models::squeeze_excite::SqueezeExcite;
use crate::models::timm_resnet::{Block, Stem, TimmResNet};

impl ToOnnx for SqueezeExcite {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let squeezed = global_avg_pool_keep(g, &path(name, "pool"), x.clone())?;
        let y = self.fc1.to_onnx(g, &path(name, "fc1"), squeezed)?;
        let y = relu(g, &path(name, "relu"), y);
        let y = self.fc2.to_onnx(g, &path(name, "fc2"), y)?;
        let gate = g.node("Sigmoid", &path(name, "gate"), vec![y.name], vec![], y.dims);
        let dims = x.dims.clone();
        Ok(g.node("Mul", name, vec![x.name, gate.name], vec![], dims))
    }
}

impl ToOnnx for Block {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |s: &str| path(name, s);
        let bottleneck = self.conv3.is_some();
        let out = conv_bn(
            g,
            (&p("conv1"), &self.conv1),
            (&p("bn1"), &self.bn1),
            x.clone(),
            true,
        )?;
        let mut out = conv_bn(
            g,
            (&p("conv2"), &self.conv2),
            (&p("bn2"), &self.bn2),
            out,
            bottleneck,
        )?;
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            out = conv_bn(g, (&p("conv3"), conv3), (&p("bn3"), bn3), out, false)?;
        }
        if let Some(se) = &self.se {
            out = se.to_onnx(g, &p("se"), out)?;
        }
        let shortcut = match &self.downsample {
            Some((c, bn)) => conv_bn(
                g,
                (&p("downsample.0"), c),
                (&p("downsample.1"), bn),
                x,
                false,
            )?,
            None => x,
        };
        let sum = add(g, &p("add"), out, shortcut)?;
        Ok(relu(g, &p("relu"), sum))
    }
}

impl ToOnnx for TimmResNet {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let p = |s: &str| path(name, s);
        let x = match &self.conv1 {
            Stem::Plain(c) => c.to_onnx(g, &p("conv1"), x)?,
            Stem::Deep((c0, b1, _, c3, b4, _, c6)) => {
                let x = conv_bn(g, (&p("conv1.0"), c0), (&p("conv1.1"), b1), x, true)?;
                let x = conv_bn(g, (&p("conv1.3"), c3), (&p("conv1.4"), b4), x, true)?;
                c6.to_onnx(g, &p("conv1.6"), x)?
            }
        };
        let x = bn_relu(g, &p("bn1"), &self.bn1, x)?;
        let mut out = max_pool(g, &p("maxpool"), x, 3, 2, 1)?;
        let layers = [&self.layer1, &self.layer2, &self.layer3, &self.layer4];
        for (s, blocks) in layers.into_iter().enumerate() {
            for (i, block) in blocks.iter().enumerate() {
                out = block.to_onnx(g, &p(&format!("layer{}.{i}", s + 1)), out)?;
            }
        }
        let pooled = global_avg_pool(g, &p("pool"), out)?;
        self.fc.to_onnx(g, &p("fc"), pooled)
    }
}
