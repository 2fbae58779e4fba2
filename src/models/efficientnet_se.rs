//! timm's `SqueezeExcite` (`_efficientnet_blocks.py`): global average, a 1×1 reduce conv with
//! bias, an activation, a 1×1 expand conv with bias, and a gate that scales the input's
//! channels. MobileNetV3 uses ReLU and a hard-sigmoid gate, EfficientNet the block's SiLU and
//! a sigmoid; the reduced width is computed by the builder ([`super::efficientnet_builder`]).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::activation::{Act, Gate};
use super::efficientnet_builder::tf_conv;
use super::layers::conv_fwd;

#[derive(Module, Debug)]
pub struct SqueezeExcite {
    pub conv_reduce: Conv2d,
    pub conv_expand: Conv2d,
    #[module(skip)]
    pub act: Act,
    #[module(skip)]
    pub gate: Gate,
}

impl SqueezeExcite {
    pub fn new(device: &Device, channels: usize, reduced: usize, act: Act, gate: Gate) -> Self {
        Self {
            conv_reduce: tf_conv(device, channels, reduced, 1, 1, 1, true),
            conv_expand: tf_conv(device, reduced, channels, 1, 1, 1, true),
            act,
            gate,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let pooled = x.clone().mean_dim(2).mean_dim(3).reshape([b, c]);
        self.forward_pooled(x, pooled)
    }

    /// [`Self::forward`] given the input's global average (`[batch, channels]`), which the
    /// depthwise kernel before it computes at inference as it writes `x`.
    pub fn forward_pooled(&self, x: Tensor<4>, pooled: Tensor<2>) -> Tensor<4> {
        let [b, c] = pooled.dims();
        let s = self
            .act
            .apply(conv_fwd(&self.conv_reduce, pooled.reshape([b, c, 1, 1])));
        let s = self.gate.apply(conv_fwd(&self.conv_expand, s));
        crate::kernels::plane_scale(x, s.reshape([b, c]))
    }
}
