//! meal's own CPU kernels, plugged into burn through its backend-extension mechanism.
//!
//! burn-flex lowers every 2-d convolution to a 3-d one, converts NCHW to NHWC and back around
//! each call, and computes the input gradient as a transposed 3-d convolution; on the small
//! CIFAR networks that layout traffic costs more than the arithmetic (BENCHMARKS.md has the
//! profile). [`conv2d`] replaces the forward pass and both backward passes on burn-flex with the
//! kernels of [`conv`] (depthwise ones with [`depthwise`], the forward pass of narrow groups with
//! [`grouped`]), and keeps burn's own implementation
//! on every other backend (CUDA) and for the shapes these kernels leave alone. Models call [`conv2d`] like burn's
//! `module::conv2d` and stay backend-generic.
//!
//! `MEAL_KERNELS=burn` switches every call back to burn's implementation, for comparison.

/// Defines `$name(isa, args..)`, which runs the `#[inline(always)]` function `$inner` (safe or
/// `unsafe`; the caller of `$name` takes on its contract) compiled
/// for the instruction set `isa` (AVX-512F, AVX2+FMA, or the build's baseline): the loops of the
/// transforms and of BatchNorm vectorise to the CPU's width without hand-written intrinsics.
macro_rules! isa_versions {
    ($vis:vis $name:ident, $inner:path, ($($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {
        /// # Safety
        /// As the function it wraps.
        #[allow(clippy::too_many_arguments, unused_unsafe)]
        $vis unsafe fn $name(isa: $crate::kernels::simd::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments, unused_unsafe)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { unsafe { $inner($($arg),*) } }
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments, unused_unsafe)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { unsafe { $inner($($arg),*) } }
                match isa {
                    // SAFETY: the ISA was detected on this CPU (`simd::isa`).
                    $crate::kernels::simd::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::kernels::simd::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::kernels::simd::Isa::Portable => {}
                }
            }
            let _ = isa;
            unsafe { $inner($($arg),*) }
        }
    };
}

pub mod activation;
pub mod allocator;
mod autodiff;
pub mod batch_norm;
pub mod conv;
mod copy;
pub mod depthwise;
mod depthwise_lanes;
mod flex;
mod gemm;
pub mod grouped;
pub mod hot;
pub mod linear;
pub mod max_pool;
pub mod plane_scale;
pub mod pointwise;
pub mod prepared;
pub mod sgd;
pub mod shape;
pub mod shortcut;
pub mod simd;
mod transpose;
pub mod weight_gemm;
pub mod winograd;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::Slice;
use burn::backend::ops::ConvOptions;
use burn::backend::{Dispatch, TensorMetadata, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;

/// The convolution passes and training-mode BatchNorm(+ReLU) as backend operations: the
/// defaults are burn's own, and burn-flex overrides them with [`conv`] and [`batch_norm`].
#[backend_extension(Flex, Autodiff, Cube: cfg(any(feature = "cuda", feature = "wgpu")))]
pub trait ConvKernels: burn::backend::Backend {
    /// `relu?(x · scale[c] + shift[c])` over `(B, C, ...)`: eval-mode BatchNorm with its
    /// statistics folded into one multiply-add per element.
    fn meal_channel_affine(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        let shape = x.shape();
        let mut per_channel = vec![1; shape.num_dims()];
        per_channel[1] = shape[1];
        let scale = Self::float_reshape(scale, per_channel.clone().into());
        let shift = Self::float_reshape(shift, per_channel.into());
        let y = Self::float_add(Self::float_mul(x, scale), shift);
        if relu { Self::relu(y) } else { y }
    }

    /// An eval-mode BatchNorm's running statistics folded into `(scale, shift)`, with
    /// `bn(x) = x · scale + shift`: `scale = weight / sqrt(var + ε)` and `shift = bias − mean ·
    /// scale`, rounded as burn's ops round them.
    fn meal_bn_eval_affine(
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        eval_affine_ops::<Self>(weight, bias, mean, var, epsilon)
    }

    /// `(relu?(bn(x)), batch mean, biased batch variance)`.
    fn meal_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let r = Self::batch_norm_train(x, gamma, beta, epsilon);
        let out = if relu { Self::relu(r.output) } else { r.output };
        (out, r.mean, r.variance)
    }

    /// Gradients of input, gamma and beta; `output` is the forward result (its sign is the
    /// ReLU mask when `relu`).
    #[allow(clippy::too_many_arguments)]
    fn meal_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let grad = if relu {
            Self::relu_backward(output, output_grad)
        } else {
            output_grad
        };
        let b = Self::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
        (b.x_grad, b.gamma_grad, b.beta_grad)
    }

    /// `act(x)` element-wise in one pass (hard-swish or SiLU).
    fn meal_activation(x: FloatTensor<Self>, act: activation::Activation) -> FloatTensor<Self> {
        burn_activation::<Self>(x, act)
    }

    /// The input gradient of [`ConvKernels::meal_activation`] at `x`.
    fn meal_activation_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        act: activation::Activation,
    ) -> FloatTensor<Self> {
        burn_activation_backward::<Self>(x, grad, act)
    }

    /// One SGD step with PyTorch's semantics (dampening 0): `g = ∇ + wd·θ`; `v = μ·v + g` (`v = g`
    /// on the `first` step, whatever `velocity` holds); `g = g + μ·v` with Nesterov, else `v`;
    /// `θ ← θ − lr·g`. Returns `θ` and `v`; with `momentum` 0 there is no buffer, and
    /// `velocity` (any tensor) comes back untouched. The default is burn's own optimizer, op for
    /// op, so every backend gives the same numbers.
    fn meal_sgd_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        velocity: FloatTensor<Self>,
        first: bool,
        step: sgd::SgdStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        burn_sgd_step::<Self>(param, grad, velocity, first, step)
    }

    /// The "option A" shortcut of the CIFAR ResNets: `x[:, :, ::stride, ::stride]` between `pad`
    /// zero channels on either side.
    fn meal_shortcut_a(x: FloatTensor<Self>, stride: usize, pad: usize) -> FloatTensor<Self> {
        burn_shortcut_a::<Self>(x, stride, pad)
    }

    /// The input gradient of [`ConvKernels::meal_shortcut_a`] for an input of `h × w`.
    fn meal_shortcut_a_backward(
        grad: FloatTensor<Self>,
        stride: usize,
        pad: usize,
        h: usize,
        w: usize,
    ) -> FloatTensor<Self> {
        burn_shortcut_a_backward::<Self>(grad, stride, pad, h, w)
    }

    /// `act(conv(x, w) · scale[c] + shift[c])`: a convolution followed by an eval-mode
    /// BatchNorm and its activation, for inference only (no backward).
    fn meal_conv2d_affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        act: activation::OutputAct,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let y = Self::meal_conv2d(x, weight, options);
        burn_affine_act::<Self>(y, scale, shift, act)
    }

    /// `act(depthwise(x, w) · scale[c] + shift[c])` and the mean of each output plane
    /// (`[batch, c]`): a depthwise convolution, its eval-mode BatchNorm and activation, and the
    /// global average pool of the squeeze-excitation after it, for inference only.
    fn meal_depthwise_affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        act: activation::OutputAct,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        burn_depthwise_affine::<Self>(x, weight, scale, shift, act, options)
    }

    /// `relu(a + b)`: a residual block's end.
    fn meal_add_relu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::relu(Self::float_add(a, b))
    }

    /// The gradient through a ReLU whose result was `output`: `grad` where `output > 0`, else
    /// 0 (burn's `relu_backward`, so a NaN output passes its gradient on).
    fn meal_relu_backward(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::relu_backward(output, grad)
    }

    /// `F.max_pool2d(x, kernel, stride, padding)` for inference (no indices to keep).
    fn meal_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::max_pool2d(x, kernel, stride, padding, [1, 1], false)
    }

    /// `x[b, c] · s[b, c]` over `(B, C, H, W)` with `s: [B, C]`: a squeeze-excitation's gate.
    fn meal_plane_scale(x: FloatTensor<Self>, s: FloatTensor<Self>) -> FloatTensor<Self> {
        let d = s.shape();
        let s = Self::float_reshape(s, [d[0], d[1], 1, 1].into());
        Self::float_mul(x, s)
    }

    /// `x · weight` for `x: [n, d_in]`, `weight: [d_in, d_out]` (burn's `Linear` without its
    /// bias).
    fn meal_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear(x, weight, None)
    }

    fn meal_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    fn meal_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    fn meal_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }
}

/// burn's optimizer step, op for op (`burn::optim::Sgd` with weight decay and momentum,
/// dampening 0): the default of [`ConvKernels::meal_sgd_step`].
pub(crate) fn burn_sgd_step<B: burn::backend::Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    velocity: FloatTensor<B>,
    first: bool,
    step: sgd::SgdStep,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let sgd::SgdStep {
        lr,
        weight_decay,
        momentum,
        nesterov,
    } = step;
    let grad = if weight_decay != 0.0 {
        let decay = B::float_mul_scalar(param.clone(), weight_decay.into());
        B::float_add(decay, grad)
    } else {
        grad
    };
    if momentum == 0.0 {
        let delta = B::float_mul_scalar(grad, lr.into());
        return (B::float_sub(param, delta), velocity);
    }
    let v = if first {
        grad.clone()
    } else {
        B::float_add(grad.clone(), B::float_mul_scalar(velocity, momentum.into()))
    };
    let g = if nesterov {
        B::float_add(B::float_mul_scalar(v.clone(), momentum.into()), grad)
    } else {
        v.clone()
    };
    let delta = B::float_mul_scalar(g, lr.into());
    (B::float_sub(param, delta), v)
}

/// [`ConvKernels::meal_activation`] from burn's ops.
pub(crate) fn burn_activation<B: burn::backend::Backend>(
    x: FloatTensor<B>,
    act: activation::Activation,
) -> FloatTensor<B> {
    match act {
        activation::Activation::HardSwish => {
            let gate = B::float_add_scalar(x.clone(), 3.0.into());
            let gate = B::float_clamp(gate, 0.0.into(), 6.0.into());
            B::float_mul(x, B::float_div_scalar(gate, 6.0.into()))
        }
        activation::Activation::Silu => B::float_mul(x.clone(), B::sigmoid(x)),
    }
}

/// `act(y · scale[c] + shift[c])` from meal's affine and activation ops: the unfused form of an
/// inference epilogue.
pub(crate) fn burn_affine_act<B: ConvKernels>(
    y: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
    act: activation::OutputAct,
) -> FloatTensor<B> {
    let (relu, act) = act.split();
    let y = B::meal_channel_affine(y, scale, shift, relu);
    match act {
        Some(a) => B::meal_activation(y, a),
        None => y,
    }
}

/// [`ConvKernels::meal_depthwise_affine`] from meal's convolution, affine and activation ops and
/// burn's mean.
pub(crate) fn burn_depthwise_affine<B: ConvKernels>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
    act: activation::OutputAct,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let y = B::meal_conv2d(x, weight, options);
    let y = burn_affine_act::<B>(y, scale, shift, act);
    let d = y.shape();
    let means = B::float_mean_dim(B::float_mean_dim(y.clone(), 3), 2);
    (y, B::float_reshape(means, [d[0], d[1]].into()))
}

/// [`ConvKernels::meal_activation_backward`] from burn's ops.
pub(crate) fn burn_activation_backward<B: burn::backend::Backend>(
    x: FloatTensor<B>,
    grad: FloatTensor<B>,
    act: activation::Activation,
) -> FloatTensor<B> {
    let d = match act {
        activation::Activation::HardSwish => {
            // clamp(x + 3, 0, 6) / 6 + x / 6 where |x| < 3 (`relu(sign(3 − |x|))` is that set).
            let gate = B::float_add_scalar(x.clone(), 3.0.into());
            let gate =
                B::float_div_scalar(B::float_clamp(gate, 0.0.into(), 6.0.into()), 6.0.into());
            let inside = B::float_add_scalar(B::float_neg(B::float_abs(x.clone())), 3.0.into());
            let inside = B::relu(B::float_sign(inside));
            B::float_add(
                gate,
                B::float_mul(B::float_div_scalar(x, 6.0.into()), inside),
            )
        }
        activation::Activation::Silu => {
            let s = B::sigmoid(x.clone());
            let one_minus = B::float_add_scalar(B::float_neg(s.clone()), 1.0.into());
            let t = B::float_add_scalar(B::float_mul(x, one_minus), 1.0.into());
            B::float_mul(s, t)
        }
    };
    B::float_mul(grad, d)
}

/// [`ConvKernels::meal_shortcut_a`] from burn's ops (a stepped slice and a concatenation).
pub(crate) fn burn_shortcut_a<B: burn::backend::Backend>(
    x: FloatTensor<B>,
    stride: usize,
    pad: usize,
) -> FloatTensor<B> {
    let full = Slice::full();
    let step = Slice::new(0, None, stride as isize);
    let sub = B::float_slice(x, &[full, full, step, step]);
    if pad == 0 {
        return sub;
    }
    let shape = sub.shape();
    let zeros = B::float_zeros(
        [shape[0], pad, shape[2], shape[3]].into(),
        &sub.device(),
        sub.dtype().into(),
    );
    B::float_cat(vec![zeros.clone(), sub, zeros], 1)
}

/// [`ConvKernels::meal_shortcut_a_backward`] from burn's ops.
pub(crate) fn burn_shortcut_a_backward<B: burn::backend::Backend>(
    grad: FloatTensor<B>,
    stride: usize,
    pad: usize,
    h: usize,
    w: usize,
) -> FloatTensor<B> {
    let shape = grad.shape();
    let c = shape[1] - 2 * pad;
    let full = Slice::full();
    let middle = Slice::new(pad as isize, Some((pad + c) as isize), 1);
    let g = B::float_slice(grad, &[full, middle, full, full]);
    let dx = B::float_zeros([shape[0], c, h, w].into(), &g.device(), g.dtype().into());
    let step = Slice::new(0, None, stride as isize);
    B::float_slice_assign(dx, &[full, full, step, step], g)
}

// burn's own kernels on the Cube runtimes, CUDA and wgpu (the trait's default bodies).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl ConvKernels for burn::backend::Cube {}

/// [`ConvKernels::meal_bn_eval_affine`] in burn's tensor ops, tracked on an autodiff backend.
fn eval_affine_ops<B: burn::backend::Backend>(
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    mean: FloatTensor<B>,
    var: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let inv_std = B::float_recip(B::float_sqrt(B::float_add_scalar(var, epsilon.into())));
    let scale = B::float_mul(weight, inv_std);
    let shift = B::float_sub(bias, B::float_mul(mean, scale.clone()));
    (scale, shift)
}

static OVERRIDE: AtomicU8 = AtomicU8::new(0);

/// Whether meal's kernels are used where they apply (`MEAL_KERNELS=burn` turns them off).
pub fn enabled() -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    match OVERRIDE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => *ENV.get_or_init(|| {
            std::env::var("MEAL_KERNELS")
                .map(|v| v != "burn")
                .unwrap_or(true)
        }),
    }
}

/// Forces meal's kernels on or off for the whole process (`None`: back to `MEAL_KERNELS`), so
/// that one program can compare both.
pub fn set_enabled(on: Option<bool>) {
    OVERRIDE.store(
        match on {
            Some(true) => 1,
            Some(false) => 2,
            None => 0,
        },
        Ordering::Relaxed,
    );
}

/// `burn::tensor::module::conv2d` through meal's kernels where they apply.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if !enabled() {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let y = Tensor::<4>::from_dispatch(Dispatch::meal_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        options,
    ));
    match bias {
        Some(b) => {
            let c = b.dims()[0];
            y + b.reshape([1, c, 1, 1])
        }
        None => y,
    }
}

/// `act(conv2d(x, weight, bias) · scale[c] + shift[c])` in one pass over the output where
/// meal's kernels apply and nothing is differentiated (inference); the ops in turn otherwise.
pub fn conv2d_affine(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    (scale, shift): (Tensor<1>, Tensor<1>),
    act: activation::OutputAct,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if !enabled() || x.device().is_autodiff() {
        return affine_act(conv2d(x, weight, bias, options), scale, shift, act);
    }
    // A bias before the affine folds into its shift.
    let shift = match bias {
        Some(b) => shift + b * scale.clone(),
        None => shift,
    };
    Tensor::from_dispatch(Dispatch::meal_conv2d_affine(
        x.into_dispatch(),
        weight.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        act,
        options,
    ))
}

/// `act(y · scale[c] + shift[c])` with meal's affine and activation ops, one after the other.
fn affine_act(
    y: Tensor<4>,
    scale: Tensor<1>,
    shift: Tensor<1>,
    act: activation::OutputAct,
) -> Tensor<4> {
    let (relu, act) = act.split();
    let y = channel_affine(y, scale, shift, relu);
    match act {
        Some(a) => self::activation(y, a),
        None => y,
    }
}

/// `act(bn(depthwise(x)))` at inference, with `bn` as its eval-mode `(scale, shift)`, and the
/// mean of every output plane (`[batch, c]`), in one pass over the output where meal's
/// kernels apply; meal's separate ops (burn's with `MEAL_KERNELS=burn`) otherwise.
pub fn depthwise_affine(
    x: Tensor<4>,
    weight: Tensor<4>,
    (scale, shift): (Tensor<1>, Tensor<1>),
    act: activation::OutputAct,
    options: ConvOptions<2>,
) -> (Tensor<4>, Tensor<2>) {
    if !enabled() || x.device().is_autodiff() {
        let y = affine_act(conv2d(x, weight, None, options), scale, shift, act);
        let [b, c, _, _] = y.dims();
        let means = y.clone().mean_dim(3).mean_dim(2).reshape([b, c]);
        return (y, means);
    }
    let (y, means) = Dispatch::meal_depthwise_affine(
        x.into_dispatch(),
        weight.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        act,
        options,
    );
    (Tensor::from_dispatch(y), Tensor::from_dispatch(means))
}

/// `relu(a + b)` (same shapes): on burn-flex one pass over `a`'s buffer when nothing else
/// holds it (a residual block's output, added to its shortcut), shared across the cores,
/// instead of burn's add and ReLU, two passes on one core and a fresh buffer each; in
/// training one pass backward too, where burn's ReLU and add take two.
pub fn add_relu(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    if !enabled() || a.dims() != b.dims() {
        return burn::tensor::activation::relu(a + b);
    }
    Tensor::from_dispatch(Dispatch::meal_add_relu(
        a.into_dispatch(),
        b.into_dispatch(),
    ))
}

/// An inference linear layer, `x · weight + bias` (`weight: [d_in, d_out]`): meal's kernel
/// ([`linear`]) on burn-flex, shared across the cores at any batch; burn's op where gradients are
/// tracked and elsewhere.
pub fn linear(x: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    // A quantized weight keeps burn's path, which reads it packed.
    if !enabled() || x.device().is_autodiff() || weight.dtype() != burn::tensor::DType::F32 {
        return burn::tensor::module::linear(x, weight, bias);
    }
    let y = Tensor::from_dispatch(Dispatch::meal_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
    ));
    // After the product, as burn's `linear` adds it.
    match bias {
        Some(b) => y + b.unsqueeze(),
        None => y,
    }
}

/// `F.max_pool2d(x, kernel, stride, padding)`: meal's kernel for inference on burn-flex, burn's
/// op where gradients are tracked (it keeps the indices the backward pass needs) and elsewhere.
pub fn max_pool2d(x: Tensor<4>, kernel: usize, stride: usize, padding: usize) -> Tensor<4> {
    if !enabled() || x.device().is_autodiff() {
        return burn::tensor::module::max_pool2d(
            x,
            burn::tensor::ops::MaxPoolOptions::new([kernel, kernel])
                .with_stride([stride, stride])
                .with_padding([padding, padding]),
        );
    }
    Tensor::from_dispatch(Dispatch::meal_max_pool2d(
        x.into_dispatch(),
        [kernel; 2],
        [stride; 2],
        [padding; 2],
    ))
}

/// `x[b, c] · s[b, c]` over `(B, C, H, W)`, `s: [B, C]`: in place in one pass where meal's
/// kernels apply (burn's broadcast multiply otherwise).
pub fn plane_scale(x: Tensor<4>, s: Tensor<2>) -> Tensor<4> {
    if !enabled() {
        let [b, c] = s.dims();
        return x * s.reshape([b, c, 1, 1]);
    }
    Tensor::from_dispatch(Dispatch::meal_plane_scale(
        x.into_dispatch(),
        s.into_dispatch(),
    ))
}

/// Training-mode BatchNorm over `(B, C, ...)`, optionally followed by ReLU: the output, the batch
/// mean and the biased batch variance (both detached, for the running statistics).
pub fn batch_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    relu: bool,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    if !enabled() {
        let r = burn::tensor::module::batch_norm_train(x, gamma, beta, epsilon);
        let out = if relu {
            burn::tensor::activation::relu(r.output)
        } else {
            r.output
        };
        return (out, r.mean, r.variance);
    }
    let (y, mean, var) = Dispatch::meal_batch_norm_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
        relu,
    );
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// `(scale, shift)` of an eval-mode BatchNorm ([`ConvKernels::meal_bn_eval_affine`]): one call
/// where burn's ops took six, each a dispatch and an allocation, per BatchNorm and forward
/// (2.4% of resnet20's batch-1 forward, serial work the other cores wait through).
pub fn bn_eval_affine(
    weight: Tensor<1>,
    bias: Tensor<1>,
    mean: Tensor<1>,
    var: Tensor<1>,
    epsilon: f64,
) -> (Tensor<1>, Tensor<1>) {
    let args = (
        weight.into_dispatch(),
        bias.into_dispatch(),
        mean.into_dispatch(),
        var.into_dispatch(),
    );
    let (scale, shift) = if enabled() {
        Dispatch::meal_bn_eval_affine(args.0, args.1, args.2, args.3, epsilon)
    } else {
        eval_affine_ops::<Dispatch>(args.0, args.1, args.2, args.3, epsilon)
    };
    (Tensor::from_dispatch(scale), Tensor::from_dispatch(shift))
}

/// `relu?(x · scale[c] + shift[c])` over `(B, C, ...)`.
pub fn channel_affine<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<1>,
    shift: Tensor<1>,
    relu: bool,
) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::meal_channel_affine(
        x.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        relu,
    ))
}

/// [`ConvKernels::meal_sgd_step`] on tensors.
pub fn sgd_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    velocity: Option<Tensor<D>>,
    step: sgd::SgdStep,
) -> (Tensor<D>, Option<Tensor<D>>) {
    let first = velocity.is_none();
    let with_buffer = step.momentum != 0.0;
    // Without a buffer yet (or at all), the gradient stands in: the op does not read it then.
    let velocity = velocity.unwrap_or_else(|| grad.clone());
    let (p, v) = Dispatch::meal_sgd_step(
        param.into_dispatch(),
        grad.into_dispatch(),
        velocity.into_dispatch(),
        first,
        step,
    );
    (
        Tensor::from_dispatch(p),
        with_buffer.then(|| Tensor::from_dispatch(v)),
    )
}

/// `act(x)` (hard-swish or SiLU) in one pass each way where meal's kernels apply, burn's ops
/// otherwise.
pub fn activation<const D: usize>(x: Tensor<D>, act: activation::Activation) -> Tensor<D> {
    if !enabled() {
        return match act {
            activation::Activation::HardSwish => {
                let gate = x.clone().add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0);
                x * gate
            }
            activation::Activation::Silu => burn::tensor::activation::silu(x),
        };
    }
    Tensor::from_dispatch(Dispatch::meal_activation(x.into_dispatch(), act))
}

/// `x[:, :, ::stride, ::stride]` between `pad` zero channels on either side (the CIFAR ResNets'
/// parameter-free shortcut), in one pass each way.
pub fn shortcut_a(x: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
    if !enabled() {
        // burn's ops: a 1×1 max-pool subsamples, zero tensors pad.
        let x = burn::tensor::module::max_pool2d(
            x,
            burn::tensor::ops::MaxPoolOptions::new([1, 1]).with_stride([stride, stride]),
        );
        let [b, _, h, w] = x.dims();
        let zeros = Tensor::<4>::zeros([b, pad, h, w], &x.device());
        return Tensor::cat(vec![zeros.clone(), x, zeros], 1);
    }
    Tensor::from_dispatch(Dispatch::meal_shortcut_a(x.into_dispatch(), stride, pad))
}
