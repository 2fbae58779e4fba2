//! timm's ImageNet ResNet family (`timm.models.resnet.ResNet`): torchvision's ResNets and their
//! deep-stem, grouped and squeeze-and-excitation variants, with timm's module names so that the
//! tensor names are the state-dict keys of timm and torchvision files (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer2.0.downsample.0`, `layer1.0.se.fc1`, `fc`).
//!
//! - stem: a 7×7/2 conv (or, deep, three 3×3 convs 3→w/2→w/2→w of which the first has stride
//!   2, named `conv1.0/.3/.6` with BatchNorms `conv1.1/.4`), BatchNorm `bn1`, ReLU, 3×3/2 max
//!   pool with padding 1;
//! - four stages `layer1..4` of 64/128/256/512 planes, stride 2 on the first block of stages
//!   2-4 (on the 3×3 conv of a bottleneck);
//! - global average pool, dropout (training only), `fc`.
//!
//! Stages: the outputs of layer1..layer4 (strides 4, 8, 16, 32), timm's `feature_info` entries
//! of reduction ≥ 4. Any input size of at least 32×32 and any class count.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Dropout, DropoutConfig, Linear, Relu};
use burn::tensor::{Device, Tensor};

use super::layers::{
    BatchNorm2d, conv, conv_bn, conv_fwd, conv_grouped, linear, linear_fwd, max_pool_padded,
};
use super::output::ModelOutput;
use super::squeeze_excite::SqueezeExcite;

/// timm's `BasicBlock` (two 3×3 convs) or `Bottleneck` (1×1, grouped 3×3, 1×1 expanding ×4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Basic,
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// The arguments of timm's `ResNet` that the zoo's variants use.
#[derive(Debug, Clone)]
pub struct TimmResNetConfig {
    pub block: BlockKind,
    pub layers: [usize; 4],
    /// Groups of the bottleneck's 3×3 conv (`cardinality`).
    pub cardinality: usize,
    /// Width per group at 64 planes (`base_width`).
    pub base_width: usize,
    /// The bottleneck's first 1×1 conv narrows to `width / reduce_first` (`block_reduce_first`).
    pub reduce_first: usize,
    /// A deep stem of this width (`stem_type='deep'`, `stem_width`); `None` for the 7×7 conv.
    pub deep_stem: Option<usize>,
    /// Squeeze-and-excitation reduction in every block (`attn_layer='se'`), if any.
    pub se_reduction: Option<usize>,
    /// Kernel of the strided shortcut convs (`down_kernel_size`); unstrided ones are 1×1.
    pub down_kernel: usize,
    /// Dropout before the classifier in training (`drop_rate`).
    pub drop_rate: f64,
}

impl TimmResNetConfig {
    /// torchvision's ResNet: 7×7 stem, no groups, no SE.
    pub const fn torchvision(block: BlockKind, layers: [usize; 4]) -> Self {
        Self {
            block,
            layers,
            cardinality: 1,
            base_width: 64,
            reduce_first: 1,
            deep_stem: None,
            se_reduction: None,
            down_kernel: 1,
            drop_rate: 0.0,
        }
    }

    pub fn init(&self, device: &Device, num_classes: usize) -> TimmResNet {
        let stem_out = self.deep_stem.map_or(64, |w| 2 * w);
        let conv1 = match self.deep_stem {
            None => Stem::Plain(conv(device, 3, 64, 7, 2, false)),
            Some(w) => Stem::Deep((
                conv(device, 3, w, 3, 2, false),
                BatchNorm2d::new(device, w),
                Relu,
                conv(device, w, w, 3, 1, false),
                BatchNorm2d::new(device, w),
                Relu,
                conv(device, w, 2 * w, 3, 1, false),
            )),
        };
        let mut in_planes = stem_out;
        let mut stage = |s: usize| -> Vec<Block> {
            let planes = 64 << s;
            (0..self.layers[s])
                .map(|i| {
                    let stride = if s > 0 && i == 0 { 2 } else { 1 };
                    let block = self.block(device, in_planes, planes, stride);
                    in_planes = planes * self.block.expansion();
                    block
                })
                .collect()
        };
        let (layer1, layer2, layer3, layer4) = (stage(0), stage(1), stage(2), stage(3));
        TimmResNet {
            conv1,
            bn1: BatchNorm2d::new(device, stem_out),
            layer1,
            layer2,
            layer3,
            layer4,
            drop: DropoutConfig::new(self.drop_rate).init(),
            fc: linear(device, in_planes, num_classes),
        }
    }

    fn block(&self, device: &Device, in_planes: usize, planes: usize, stride: usize) -> Block {
        let out_planes = planes * self.block.expansion();
        let downsample = (stride != 1 || in_planes != out_planes).then(|| {
            let kernel = if stride == 1 { 1 } else { self.down_kernel };
            (
                conv(device, in_planes, out_planes, kernel, stride, false),
                BatchNorm2d::new(device, out_planes),
            )
        });
        let se = self
            .se_reduction
            .map(|r| SqueezeExcite::new(device, out_planes, r));
        match self.block {
            BlockKind::Basic => Block {
                conv1: conv(device, in_planes, planes, 3, stride, false),
                bn1: BatchNorm2d::new(device, planes),
                conv2: conv(device, planes, planes, 3, 1, false),
                bn2: BatchNorm2d::new(device, planes),
                conv3: None,
                bn3: None,
                se,
                downsample,
            },
            BlockKind::Bottleneck => {
                let width = planes * self.base_width / 64 * self.cardinality;
                let first = width / self.reduce_first;
                Block {
                    conv1: conv(device, in_planes, first, 1, 1, false),
                    bn1: BatchNorm2d::new(device, first),
                    conv2: conv_grouped(device, first, width, 3, stride, self.cardinality, false),
                    bn2: BatchNorm2d::new(device, width),
                    conv3: Some(conv(device, width, out_planes, 1, 1, false)),
                    bn3: Some(BatchNorm2d::new(device, out_planes)),
                    se,
                    downsample,
                }
            }
        }
    }
}

/// The stem's convolution(s), both under the name `conv1`: burn leaves enum variants out of
/// tensor names, and a tuple's fields are named by position as in a `nn.Sequential` (the ReLUs
/// hold the places of timm's).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Stem {
    Plain(Conv2d),
    Deep((Conv2d, BatchNorm2d, Relu, Conv2d, BatchNorm2d, Relu, Conv2d)),
}

impl Stem {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Stem::Plain(c) => conv_fwd(c, x),
            Stem::Deep((c0, b1, _, c3, b4, _, c6)) => {
                let x = conv_bn(c0, b1, x, true);
                let x = conv_bn(c3, b4, x, true);
                conv_fwd(c6, x)
            }
        }
    }
}

/// A basic block (`conv3`/`bn3` absent) or a bottleneck, with timm's field names.
#[derive(Module, Debug)]
pub struct Block {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub conv3: Option<Conv2d>,
    pub bn3: Option<BatchNorm2d>,
    pub se: Option<SqueezeExcite>,
    /// Strided or widening conv + BN shortcut, `downsample.0` and `downsample.1`.
    pub downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl Block {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = conv_bn(&self.conv1, &self.bn1, x.clone(), true);
        let mut out = conv_bn(&self.conv2, &self.bn2, out, self.conv3.is_some());
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            out = conv_bn(conv3, bn3, out, false);
        }
        if let Some(se) = &self.se {
            out = se.forward(out);
        }
        let shortcut = match &self.downsample {
            Some((c, bn)) => conv_bn(c, bn, x, false),
            None => x,
        };
        crate::kernels::add_relu(out, shortcut)
    }
}

#[derive(Module, Debug)]
pub struct TimmResNet {
    pub conv1: Stem,
    pub bn1: BatchNorm2d,
    pub layer1: Vec<Block>,
    pub layer2: Vec<Block>,
    pub layer3: Vec<Block>,
    pub layer4: Vec<Block>,
    pub drop: Dropout,
    pub fc: Linear,
}

impl TimmResNet {
    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        let x = self.conv1.forward(x);
        let mut out = max_pool_padded(self.bn1.forward_relu(x), 3, 2, 1);
        let mut stages = Vec::with_capacity(4);
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                out = block.forward(out);
            }
            stages.push(out.clone());
        }
        let pooled = out.mean_dim(3).mean_dim(2).flatten(1, 3);
        ModelOutput {
            stages,
            logits: linear_fwd(&self.fc, self.drop.forward(pooled)),
        }
    }
}
