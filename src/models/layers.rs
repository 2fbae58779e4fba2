//! Building blocks shared by the zoo, with PyTorch's numerics.
//!
//! burn's own `BatchNorm` updates `running_var` with the biased batch variance; PyTorch uses the
//! unbiased one (n/(n-1)). MEAL results are compared with PyTorch runs, so the zoo uses
//! [`BatchNorm2d`], which follows PyTorch exactly.

use burn::module::{Flag, Module, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};

use super::flops;
use crate::kernels::activation::OutputAct;
use burn::tensor::ops::{AvgPoolOptions, ConvOptions};
use burn::tensor::{Device, Tensor};

/// A `k×k` convolution with PyTorch's default initialisation and `padding = k/2`.
pub fn conv(
    device: &Device,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    bias: bool,
) -> Conv2d {
    conv_grouped(device, in_channels, out_channels, kernel, stride, 1, bias)
}

/// Like [`conv`] with `groups` (ResNeXt, DPN, MobileNet depthwise).
pub fn conv_grouped(
    device: &Device,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    bias: bool,
) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            kernel / 2,
            kernel / 2,
            kernel / 2,
            kernel / 2,
        ))
        .with_groups(groups)
        .with_bias(bias)
        .init(device)
}

/// `nn.Linear` with PyTorch's default initialisation: U(±1/√fan_in) for weight and bias.
pub fn linear(device: &Device, d_input: usize, d_output: usize) -> Linear {
    pytorch_linear(d_input, d_output).init(device)
}

/// `nn.Linear(..., bias=False)` with PyTorch's default initialisation (ResNet-9's classifier).
pub fn linear_without_bias(device: &Device, d_input: usize, d_output: usize) -> Linear {
    pytorch_linear(d_input, d_output)
        .with_bias(false)
        .init(device)
}

fn pytorch_linear(d_input: usize, d_output: usize) -> LinearConfig {
    LinearConfig::new(d_input, d_output).with_initializer(Initializer::KaimingUniform {
        gain: 1.0 / 3f64.sqrt(),
        fan_out_only: false,
    })
}

/// `conv.forward(x)`, adding the layer's multiply-accumulates to the [`flops`] counter when one
/// is active: `B·out_h·out_w·k_h·k_w·(in/groups)·out` (the bias is not counted). Every zoo model
/// runs its convolutions through here so that [`super::count::count_macs`] sees them.
pub fn conv_fwd(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    // The zoo pads explicitly; anything else keeps burn's own layer.
    match explicit_options(conv) {
        Some(options) => conv_with(conv, x, options),
        None => count_conv(conv, conv.forward(x)),
    }
}

/// `conv(x)` run with `options` instead of the layer's own (TensorFlow "same" padding,
/// [`super::same_pad`], depends on the input size).
pub fn conv_with(conv: &Conv2d, x: Tensor<4>, options: ConvOptions<2>) -> Tensor<4> {
    let y = crate::kernels::conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    );
    count_conv(conv, y)
}

/// `bn(conv(x))`, with the ReLU when `relu` ([`conv_bn_act`]).
pub fn conv_bn(conv: &Conv2d, bn: &BatchNorm2d, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let act = if relu {
        OutputAct::Relu
    } else {
        OutputAct::Identity
    };
    conv_bn_act(conv, bn, x, act)
}

/// `act(bn(conv(x)))`. At inference (BatchNorm on its running statistics, nothing
/// differentiated) the BatchNorm and the activation ride on the convolution's output pass
/// ([`crate::kernels::conv2d_affine`]); otherwise the layers run one after the other.
pub fn conv_bn_act(conv: &Conv2d, bn: &BatchNorm2d, x: Tensor<4>, act: OutputAct) -> Tensor<4> {
    match explicit_options(conv) {
        Some(options) => conv_bn_act_with(conv, bn, x, act, options),
        None => bn_act(bn, conv_fwd(conv, x), act),
    }
}

/// [`conv_bn_act`] with the convolution run with `options` (as [`conv_with`]).
pub fn conv_bn_act_with(
    conv: &Conv2d,
    bn: &BatchNorm2d,
    x: Tensor<4>,
    act: OutputAct,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let inference = !x.device().is_autodiff() && !bn.batch_statistics(&x);
    if !inference {
        return bn_act(bn, conv_with(conv, x, options), act);
    }
    let y = crate::kernels::conv2d_affine(
        x.clone(),
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        bn.eval_affine(&x.device()),
        act,
        options,
    );
    count_conv(conv, y)
}

/// `act(bn(y))` as separate layers (the ReLU on the BatchNorm's own pass): training, and
/// convolutions whose output pass cannot take them.
pub fn bn_act(bn: &BatchNorm2d, y: Tensor<4>, act: OutputAct) -> Tensor<4> {
    let (relu, act) = act.split();
    let y = if relu {
        bn.forward_relu(y)
    } else {
        bn.forward(y)
    };
    match act {
        Some(a) => crate::kernels::activation(y, a),
        None => y,
    }
}

/// The layer's options for meal's kernels, when it pads explicitly (the whole zoo does).
fn explicit_options(conv: &Conv2d) -> Option<ConvOptions<2>> {
    let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else {
        return None;
    };
    Some(ConvOptions::new_with_padding(
        conv.stride,
        [(top, bottom), (left, right)],
        conv.dilation,
        conv.groups,
    ))
}

pub(super) fn count_conv(conv: &Conv2d, y: Tensor<4>) -> Tensor<4> {
    if flops::is_counting() {
        let [b, out, h, w] = y.dims();
        let [_, in_per_group, kh, kw] = conv.weight.shape().dims::<4>();
        flops::record((b * out * h * w * in_per_group * kh * kw) as u64);
    }
    y
}

/// `lin.forward(x)` on `(B, in)`, counting `B·in·out` MACs like [`conv_fwd`].
pub fn linear_fwd(lin: &Linear, x: Tensor<2>) -> Tensor<2> {
    let y = crate::kernels::linear(x, lin.weight.val(), lin.bias.as_ref().map(|b| b.val()));
    if flops::is_counting() {
        let [b, _] = y.dims();
        let [d_in, d_out] = lin.weight.shape().dims::<2>();
        flops::record((b * d_in * d_out) as u64);
    }
    y
}

pub fn relu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    burn::tensor::activation::relu(x)
}

/// `F.max_pool2d(x, k, stride)` without padding.
pub fn max_pool(x: Tensor<4>, kernel: usize, stride: usize) -> Tensor<4> {
    crate::kernels::max_pool2d(x, kernel, stride, 0)
}

/// `F.max_pool2d(x, k, stride, padding)`.
pub fn max_pool_padded(x: Tensor<4>, kernel: usize, stride: usize, padding: usize) -> Tensor<4> {
    crate::kernels::max_pool2d(x, kernel, stride, padding)
}

/// `F.avg_pool2d(x, k)` (stride k, no padding).
pub fn avg_pool(x: Tensor<4>, kernel: usize) -> Tensor<4> {
    burn::tensor::module::avg_pool2d(x, AvgPoolOptions::new([kernel, kernel]))
}

/// Flattens `(B, C, H, W)` to `(B, C·H·W)` in PyTorch's `view(B, -1)` order.
pub fn flatten(x: Tensor<4>) -> Tensor<2> {
    x.flatten(1, 3)
}

/// BatchNorm over `(B, C, ...)` with PyTorch semantics: biased variance to normalise, unbiased
/// variance for `running_var`, momentum 0.1, eps 1e-5, γ=1, β=0.
///
/// Batch statistics are used when the module's training flag is on *and* the input lives on an
/// autodiff device, as for burn's own layer, or inside [`with_batch_statistics`]: a frozen
/// teacher kept in "train mode" (MEAL V1's default) runs on the inner device, with no gradient
/// bookkeeping, and still normalises with (and updates its buffers from) the batch.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
    pub training: Param<Flag>,
    pub momentum: f64,
    pub epsilon: f64,
}

thread_local! {
    static FORCE_BATCH_STATS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every [`BatchNorm2d`] on batch statistics (updating its running buffers), on
/// any device and whatever its training flag, like a PyTorch module in `train()` mode under
/// `no_grad`. Restored on return, also when `f` panics.
pub fn with_batch_statistics<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCE_BATCH_STATS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORCE_BATCH_STATS.with(|c| c.replace(true)));
    f()
}

impl BatchNorm2d {
    pub fn new(device: &Device, num_features: usize) -> Self {
        Self {
            weight: Initializer::Ones.init([num_features], device),
            bias: Initializer::Zeros.init([num_features], device),
            running_mean: RunningState::new(Tensor::zeros([num_features], device)),
            running_var: RunningState::new(Tensor::ones([num_features], device)),
            training: Param::from_bool(true),
            momentum: 0.1,
            epsilon: 1e-5,
        }
    }

    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        if self.batch_statistics(&input) {
            self.forward_train(input)
        } else {
            self.forward_eval(input, false)
        }
    }

    /// Batch statistics in training on an autodiff device, or anywhere inside
    /// [`with_batch_statistics`]; running statistics otherwise.
    pub(crate) fn batch_statistics<const D: usize>(&self, input: &Tensor<D>) -> bool {
        (input.device().is_autodiff() && self.training.is_enabled())
            || FORCE_BATCH_STATS.with(|c| c.get())
    }

    /// Running statistics folded into one multiply-add per element.
    fn forward_eval<const D: usize>(&self, input: Tensor<D>, fuse_relu: bool) -> Tensor<D> {
        let (scale, shift) = self.eval_affine(&input.device());
        crate::kernels::channel_affine(input, scale, shift, fuse_relu)
    }

    /// `(scale, shift)` per channel with `eval(x) = x · scale + shift`.
    pub(super) fn eval_affine(&self, device: &Device) -> (Tensor<1>, Tensor<1>) {
        crate::kernels::bn_eval_affine(
            self.weight.val(),
            self.bias.val(),
            self.running_mean.value().to_device(device),
            self.running_var.value().to_device(device),
            self.epsilon,
        )
    }

    fn forward_train<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        self.forward_train_fused(input, false)
    }

    /// `relu(self.forward(input))`, with the ReLU fused into the BatchNorm kernel in training.
    pub fn forward_relu<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        if self.batch_statistics(&input) {
            self.forward_train_fused(input, true)
        } else {
            self.forward_eval(input, true)
        }
    }

    fn forward_train_fused<const D: usize>(&self, input: Tensor<D>, fuse_relu: bool) -> Tensor<D> {
        let device = input.device();
        let dims = input.dims();
        let per_channel: usize = dims.iter().product::<usize>() / dims[1];
        let (output, batch_mean, batch_var) = crate::kernels::batch_norm_train(
            input,
            self.weight.val(),
            self.bias.val(),
            self.epsilon,
            fuse_relu,
        );
        // PyTorch stores the unbiased variance; a single value per channel has none, and
        // PyTorch then refuses to train, so we keep the biased one rather than divide by zero.
        let correction = if per_channel > 1 {
            per_channel as f64 / (per_channel as f64 - 1.0)
        } else {
            1.0
        };
        let m = self.momentum;
        let mean = self
            .running_mean
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(batch_mean.detach().mul_scalar(m));
        let var = self
            .running_var
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(batch_var.detach().mul_scalar(m * correction));
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        output
    }
}

/// Conv → BN → ReLU, the most common unit of the zoo.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    pub conv: Conv2d,
    pub bn: BatchNorm2d,
}

impl ConvBnRelu {
    pub fn new(
        device: &Device,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        bias: bool,
    ) -> Self {
        Self {
            conv: conv(device, in_channels, out_channels, kernel, stride, bias),
            bn: BatchNorm2d::new(device, out_channels),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_bn(&self.conv, &self.bn, x, true)
    }
}

/// Conv → BN without activation: projection shortcuts and the last unit of bottlenecks.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm2d,
}

impl ConvBn {
    pub fn new(
        device: &Device,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
    ) -> Self {
        Self {
            conv: conv(device, in_channels, out_channels, kernel, stride, false),
            bn: BatchNorm2d::new(device, out_channels),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_bn(&self.conv, &self.bn, x, false)
    }
}

/// BN → ReLU (pre-activation units of PreAct-ResNet and DenseNet).
pub fn bn_relu(bn: &BatchNorm2d, x: Tensor<4>) -> Tensor<4> {
    bn.forward_relu(x)
}
