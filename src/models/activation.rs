//! The activations of timm's MobileNetV3 and EfficientNet, with timm's (PyTorch's) formulas.

use burn::tensor::Tensor;
use burn::tensor::activation::{relu, sigmoid};

use crate::kernels::activation::{Activation, OutputAct};

/// A block's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Relu,
    /// `x · relu6(x + 3) / 6` (`nn.Hardswish`).
    HardSwish,
    /// `x · sigmoid(x)` (`nn.SiLU`, timm's "swish").
    Silu,
}

impl Act {
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Act::Relu => relu(x),
            Act::HardSwish => hard_swish(x),
            Act::Silu => crate::kernels::activation(x, Activation::Silu),
        }
    }

    /// The same activation written by an inference kernel as it stores its output.
    pub fn output(self) -> OutputAct {
        match self {
            Act::Relu => OutputAct::Relu,
            Act::HardSwish => OutputAct::Fused(Activation::HardSwish),
            Act::Silu => OutputAct::Fused(Activation::Silu),
        }
    }
}

/// The gate of a squeeze-excitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Sigmoid,
    /// `relu6(x + 3) / 6` (`nn.Hardsigmoid`).
    HardSigmoid,
}

impl Gate {
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Gate::Sigmoid => sigmoid(x),
            Gate::HardSigmoid => hard_sigmoid(x),
        }
    }
}

/// `relu6(x + 3) / 6`, written as PyTorch computes it so that float32 rounding agrees.
pub fn hard_sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0)
}

/// `x · (relu6(x + 3) / 6)`, one pass each way (`kernels::activation`).
pub fn hard_swish<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    crate::kernels::activation(x, Activation::HardSwish)
}
