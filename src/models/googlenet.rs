//! GoogLeNet for CIFAR (Szegedy et al. 2015, in kuangliu/pytorch-cifar's form): a 3×3 conv
//! (with bias) + BN + ReLU pre-layer of 192 channels, Inception modules a3, b3, a 3/2 max-pool
//! (padding 1), a4..e4, another max-pool, a5, b5, then `avg_pool(8)` and `Linear(1024, k)`.
//! 6.17M parameters, 1.52G MACs.
//!
//! An Inception module concatenates four branches, every conv with bias + BN + ReLU:
//! 1×1; 1×1 → 3×3; 1×1 → 3×3 → 3×3 (the "5×5" branch); 3×3/1 max-pool → 1×1.
//!
//! Stages, as in MEAL: after the first max-pool (480×16×16) and the second (832×8×8).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::layers::{ConvBnRelu, avg_pool, flatten, linear, linear_fwd, max_pool_padded};
use super::output::ModelOutput;

#[derive(Module, Debug)]
pub struct Inception {
    pub b1: ConvBnRelu,
    pub b2: Vec<ConvBnRelu>,
    pub b3: Vec<ConvBnRelu>,
    pub b4: ConvBnRelu,
}

/// Widths of one module: `(n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_planes)`.
type InceptionWidths = (usize, usize, usize, usize, usize, usize);

impl Inception {
    pub fn new(device: &Device, in_planes: usize, w: InceptionWidths) -> Self {
        let (n1, r3, n3, r5, n5, np) = w;
        let unit = |i, o, k| ConvBnRelu::new(device, i, o, k, 1, true);
        Self {
            b1: unit(in_planes, n1, 1),
            b2: vec![unit(in_planes, r3, 1), unit(r3, n3, 3)],
            b3: vec![unit(in_planes, r5, 1), unit(r5, n5, 3), unit(n5, n5, 3)],
            b4: unit(in_planes, np, 1),
        }
    }

    /// Output channels of a module with widths `w`.
    pub fn out_planes(w: InceptionWidths) -> usize {
        w.0 + w.2 + w.4 + w.5
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let chain = |units: &[ConvBnRelu], x: Tensor<4>| units.iter().fold(x, |y, u| u.forward(y));
        let y1 = self.b1.forward(x.clone());
        let y2 = chain(&self.b2, x.clone());
        let y3 = chain(&self.b3, x.clone());
        let y4 = self.b4.forward(max_pool_padded(x, 3, 1, 1));
        Tensor::cat(vec![y1, y2, y3, y4], 1)
    }
}

const A3: InceptionWidths = (64, 96, 128, 16, 32, 32);
const B3: InceptionWidths = (128, 128, 192, 32, 96, 64);
const A4: InceptionWidths = (192, 96, 208, 16, 48, 64);
const B4: InceptionWidths = (160, 112, 224, 24, 64, 64);
const C4: InceptionWidths = (128, 128, 256, 24, 64, 64);
const D4: InceptionWidths = (112, 144, 288, 32, 64, 64);
const E4: InceptionWidths = (256, 160, 320, 32, 128, 128);
const A5: InceptionWidths = (256, 160, 320, 32, 128, 128);
const B5: InceptionWidths = (384, 192, 384, 48, 128, 128);

#[derive(Module, Debug)]
pub struct GoogLeNet {
    pub pre: ConvBnRelu,
    /// Modules grouped by resolution: [a3, b3], [a4..e4], [a5, b5].
    pub groups: Vec<Vec<Inception>>,
    pub fc: Linear,
}

impl GoogLeNet {
    pub fn new(device: &Device, num_classes: usize) -> Self {
        let mut in_planes = 192;
        let groups = [&[A3, B3][..], &[A4, B4, C4, D4, E4], &[A5, B5]]
            .iter()
            .map(|widths| {
                widths
                    .iter()
                    .map(|&w| {
                        let m = Inception::new(device, in_planes, w);
                        in_planes = Inception::out_planes(w);
                        m
                    })
                    .collect()
            })
            .collect();
        Self {
            pre: ConvBnRelu::new(device, 3, 192, 3, 1, true),
            groups,
            fc: linear(device, in_planes, num_classes),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let mut out = self.pre.forward(x);
        let mut stages = Vec::with_capacity(2);
        let last = self.groups.len() - 1;
        for (g, modules) in self.groups.iter().enumerate() {
            for m in modules {
                out = m.forward(out);
            }
            if g < last {
                out = max_pool_padded(out, 3, 2, 1);
                stages.push(out.clone());
            }
        }
        let pooled = flatten(avg_pool(out, 8));
        ModelOutput {
            stages,
            logits: linear_fwd(&self.fc, pooled),
        }
    }
}
