//! Dual Path Network DPN-92 for CIFAR (Chen et al. 2017, in kuangliu/pytorch-cifar's form):
//! a 3×3 conv + BN + ReLU stem (64 channels), four stages of dual-path bottlenecks, then
//! `avg_pool(4)` and `Linear(2560, k)`. 34.24M parameters, 2.04G MACs.
//!
//! Stage `s` has bottleneck width `in_planes[s]` (96, 192, 384, 768), residual width
//! `out_planes[s]` (256, 512, 1024, 2048), `blocks[s]` (3, 4, 20, 3) units and dense increment
//! `dense_depth[s]` (16, 32, 24, 128); the 3×3 conv has 32 groups. A unit computes
//! `y = BN(conv1×1(ReLU(BN(gconv3×3(ReLU(BN(conv1×1 x)))))))` with `out_planes + dense_depth`
//! channels and, with `d = out_planes`, returns
//! `ReLU(cat[x[:d] + y[:d], x[d:], y[d:]])`: the first `d` channels are a residual path, the
//! rest a densely growing path. The first unit of a stage projects `x` with a strided 1×1
//! conv and BN to `out_planes + dense_depth` channels. A stage therefore ends with
//! `out_planes + (blocks + 1)·dense_depth` channels.
//!
//! Stages: layer1..layer4 outputs, 320×32×32, 672×16×16, 1528×8×8, 2560×4×4. (MEAL pools all
//! four with its first adaptive pool, a bug in its feature bookkeeping, not in the network.)

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::layers::{
    BatchNorm2d, ConvBn, ConvBnRelu, avg_pool, conv, conv_fwd, conv_grouped, flatten, linear,
    linear_fwd, relu,
};
use super::output::ModelOutput;

#[derive(Module, Debug)]
pub struct DualPathBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub conv3: Conv2d,
    pub bn3: BatchNorm2d,
    /// Projection of the input, on the first unit of a stage.
    pub shortcut: Option<ConvBn>,
    /// Width of the residual path.
    pub out_planes: usize,
}

impl DualPathBlock {
    pub fn new(
        device: &Device,
        last_planes: usize,
        in_planes: usize,
        out_planes: usize,
        dense_depth: usize,
        stride: usize,
        first: bool,
    ) -> Self {
        let width = out_planes + dense_depth;
        Self {
            conv1: conv(device, last_planes, in_planes, 1, 1, false),
            bn1: BatchNorm2d::new(device, in_planes),
            conv2: conv_grouped(device, in_planes, in_planes, 3, stride, 32, false),
            bn2: BatchNorm2d::new(device, in_planes),
            conv3: conv(device, in_planes, width, 1, 1, false),
            bn3: BatchNorm2d::new(device, width),
            shortcut: first.then(|| ConvBn::new(device, last_planes, width, 1, stride)),
            out_planes,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.bn1.forward_relu(conv_fwd(&self.conv1, x.clone()));
        let y = self.bn2.forward_relu(conv_fwd(&self.conv2, y));
        let y = self.bn3.forward(conv_fwd(&self.conv3, y));
        let x = match &self.shortcut {
            Some(proj) => proj.forward(x),
            None => x,
        };
        let d = self.out_planes;
        let (cx, cy) = (x.dims()[1], y.dims()[1]);
        let residual = x.clone().narrow(1, 0, d) + y.clone().narrow(1, 0, d);
        let dense_x = x.narrow(1, d, cx - d);
        let dense_y = y.narrow(1, d, cy - d);
        relu(Tensor::cat(vec![residual, dense_x, dense_y], 1))
    }
}

#[derive(Module, Debug)]
pub struct Dpn {
    pub stem: ConvBnRelu,
    pub layers: Vec<Vec<DualPathBlock>>,
    pub fc: Linear,
}

/// One DPN configuration.
pub struct DpnConfig {
    pub in_planes: [usize; 4],
    pub out_planes: [usize; 4],
    pub num_blocks: [usize; 4],
    pub dense_depth: [usize; 4],
}

/// DPN-92.
pub const DPN92: DpnConfig = DpnConfig {
    in_planes: [96, 192, 384, 768],
    out_planes: [256, 512, 1024, 2048],
    num_blocks: [3, 4, 20, 3],
    dense_depth: [16, 32, 24, 128],
};

impl Dpn {
    pub fn new(device: &Device, cfg: &DpnConfig, num_classes: usize) -> Self {
        let mut last_planes = 64;
        let mut layers = Vec::with_capacity(4);
        for s in 0..4 {
            let stride = if s == 0 { 1 } else { 2 };
            let (out, dense) = (cfg.out_planes[s], cfg.dense_depth[s]);
            let blocks = (0..cfg.num_blocks[s])
                .map(|i| {
                    let block = DualPathBlock::new(
                        device,
                        last_planes,
                        cfg.in_planes[s],
                        out,
                        dense,
                        if i == 0 { stride } else { 1 },
                        i == 0,
                    );
                    last_planes = out + (i + 2) * dense;
                    block
                })
                .collect();
            layers.push(blocks);
        }
        Self {
            stem: ConvBnRelu::new(device, 3, 64, 3, 1, false),
            layers,
            fc: linear(device, last_planes, num_classes),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let mut out = self.stem.forward(x);
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
