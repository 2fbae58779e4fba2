//! Squeeze-and-excitation (Hu et al. 2018) as timm's `SEModule`: global average pool, a 1×1
//! conv to `channels / reduction` with bias, ReLU, a 1×1 conv back with bias, and the input
//! scaled channel-wise by the sigmoid of the result. The fields are timm's (`fc1`, `fc2`), so the
//! module's tensor names are its state-dict keys.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use super::layers::{conv, conv_fwd, relu};

#[derive(Module, Debug)]
pub struct SqueezeExcite {
    pub fc1: Conv2d,
    pub fc2: Conv2d,
}

impl SqueezeExcite {
    /// The reduced width is timm's `make_divisible(channels / reduction, 8, round_limit=0)`:
    /// `channels / reduction` rounded to the nearest multiple of 8, at least 8.
    pub fn new(device: &Device, channels: usize, reduction: usize) -> Self {
        let reduced = ((channels + 4 * reduction) / reduction / 8 * 8).max(8);
        Self {
            fc1: conv(device, channels, reduced, 1, 1, true),
            fc2: conv(device, reduced, channels, 1, 1, true),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let squeezed = x.clone().mean_dim(3).mean_dim(2);
        let gate = sigmoid(conv_fwd(&self.fc2, relu(conv_fwd(&self.fc1, squeezed))));
        x * gate
    }
}
