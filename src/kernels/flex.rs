//! burn-flex's side of [`super::ConvKernels`]: `f32` tensors go through [`super::conv`], other
//! dtypes and unsupported shapes through burn-flex's own implementation.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ActivationOps, ConvOptions, FloatTensorOps, ModuleOps};
use burn::backend::{Bytes, DType, Flex, TensorMetadata};
use rayon::prelude::*;

use super::ConvKernels;
use super::activation::{self, Activation};
use super::batch_norm::{self, BnShape};
use super::conv::{self, ConvShape};
use super::depthwise;
use super::grouped;
use super::linear;
use super::max_pool;
use super::plane_scale;
use super::prepared;
use super::sgd;
use super::shortcut::{self, ShortcutShape};
use super::simd;

fn shape_of(x: &FlexTensor, w: &FlexTensor, o: &ConvOptions<2>) -> Option<ConvShape> {
    geometry(x, w, o).filter(|s| s.supported())
}

/// The shape when [`grouped`] handles its forward pass.
fn grouped_shape(x: &FlexTensor, w: &FlexTensor, o: &ConvOptions<2>) -> Option<ConvShape> {
    geometry(x, w, o).filter(grouped::applies)
}

/// The shape when [`depthwise`] handles it.
fn depthwise_shape(x: &FlexTensor, w: &FlexTensor, o: &ConvOptions<2>) -> Option<ConvShape> {
    geometry(x, w, o).filter(depthwise::applies)
}

fn geometry(x: &FlexTensor, w: &FlexTensor, o: &ConvOptions<2>) -> Option<ConvShape> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return None;
    }
    let xs = x.shape();
    let ws = w.shape();
    if xs.num_dims() != 4 || ws.num_dims() != 4 {
        return None;
    }
    let s = ConvShape {
        batch: xs[0],
        cin: xs[1],
        h: xs[2],
        w: xs[3],
        cout: ws[0],
        kh: ws[2],
        kw: ws[3],
        stride: o.stride,
        pad: o.padding,
        dilation: o.dilation,
        groups: o.groups,
    };
    (s.groups > 0 && ws[1] * s.groups == s.cin).then_some(s)
}

fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) if t.is_contiguous() && t.layout().start_offset() == 0 => {
            std::borrow::Cow::Borrowed(&s[..t.layout().num_elements()])
        }
        _ => std::borrow::Cow::Owned(t.to_contiguous().storage::<f32>().to_vec()),
    }
}

/// `t`'s values, writable, when nothing else holds them (no autodiff graph, no clone) and they
/// are laid out contiguously from the start of the buffer: an op can then write its result over
/// its input instead of allocating (and zero-filling) a new one.
fn owned_values(t: &mut FlexTensor) -> Option<&mut [f32]> {
    if t.dtype() != DType::F32 || !t.is_contiguous() || t.layout().start_offset() != 0 {
        return None;
    }
    let n = t.layout().num_elements();
    t.try_storage_mut::<f32>().map(|s| &mut s[..n])
}

/// `f(&mut x[i], y[i])` for every `i`, shared across the cores above 256K values (one pass of
/// a CIFAR ResNet's activation at batch 128 is 2M; below, splitting costs more than it saves).
/// The loop is compiled per instruction set: built for baseline x86-64, ReLU's backward mask
/// ran four lanes at a time with a scalar branch per lane, 5% of a resnet20 training step.
fn elementwise<F: Fn(&mut f32, f32) + Sync>(x: &mut [f32], y: &[f32], f: F) {
    const CHUNK: usize = 1 << 16;
    assert_eq!(x.len(), y.len());
    let isa = simd::isa();
    // SAFETY: `simd::isa` is this CPU's.
    let run = |x: &mut [f32], y: &[f32]| unsafe { elementwise_isa(isa, x, y, &f) };
    if x.len() < 4 * CHUNK || rayon::current_num_threads() < 2 {
        run(x, y);
        return;
    }
    x.par_chunks_mut(CHUNK)
        .zip(y.par_chunks(CHUNK))
        .for_each(|(x, y)| run(x, y));
}

/// [`elementwise`]'s loop on `isa`.
///
/// # Safety
/// The CPU has `isa`.
unsafe fn elementwise_isa<F: Fn(&mut f32, f32)>(isa: simd::Isa, x: &mut [f32], y: &[f32], f: &F) {
    #[inline(always)]
    fn inner<F: Fn(&mut f32, f32)>(x: &mut [f32], y: &[f32], f: &F) {
        x.iter_mut().zip(y).for_each(|(x, &y)| f(x, y));
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512<F: Fn(&mut f32, f32)>(x: &mut [f32], y: &[f32], f: &F) {
            inner(x, y, f)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<F: Fn(&mut f32, f32)>(x: &mut [f32], y: &[f32], f: &F) {
            inner(x, y, f)
        }
        match isa {
            // SAFETY: the caller's contract.
            simd::Isa::Avx512 => return unsafe { avx512(x, y, f) },
            simd::Isa::Avx2 => return unsafe { avx2(x, y, f) },
            simd::Isa::Portable => {}
        }
    }
    let _ = isa;
    inner(x, y, f)
}

/// `t` itself when [`owned_values`] can write to it, else a contiguous copy that can be.
fn owned_or_copy(mut t: FlexTensor) -> FlexTensor {
    if owned_values(&mut t).is_some() {
        return t;
    }
    let copy = values(&t).into_owned();
    like(copy, &t)
}

fn tensor<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape.into()),
        DType::F32,
    )
}

fn like(data: Vec<f32>, t: &FlexTensor) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(t.shape()),
        DType::F32,
    )
}

fn bn_shape(x: &FlexTensor, params: &[&FlexTensor]) -> Option<BnShape> {
    let s = x.shape();
    if x.dtype() != DType::F32 || params.iter().any(|p| p.dtype() != DType::F32) {
        return None;
    }
    if s.num_dims() < 2 {
        return None;
    }
    let channels = s[1];
    Some(BnShape {
        batch: s[0],
        channels,
        spatial: (2..s.num_dims()).map(|d| s[d]).product(),
    })
}

impl ConvKernels for Flex {
    fn meal_channel_affine(
        x: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        relu: bool,
    ) -> FlexTensor {
        let Some(shape) = bn_shape(&x, &[&scale, &shift]) else {
            let shape = x.shape();
            let mut per_channel = vec![1; shape.num_dims()];
            per_channel[1] = shape[1];
            let scale = Flex::float_reshape(scale, per_channel.clone().into());
            let shift = Flex::float_reshape(shift, per_channel.into());
            let y = Flex::float_add(Flex::float_mul(x, scale), shift);
            return if relu { Flex::relu(y) } else { y };
        };
        let mut x = x;
        if let Some(v) = owned_values(&mut x) {
            batch_norm::channel_affine_in_place(shape, v, &values(&scale), &values(&shift), relu);
            return x;
        }
        let y =
            batch_norm::channel_affine(shape, &values(&x), &values(&scale), &values(&shift), relu);
        like(y, &x)
    }

    fn meal_bn_eval_affine(
        weight: FlexTensor,
        bias: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor) {
        let n = weight.shape().num_elements();
        let all = [&weight, &bias, &mean, &var];
        let fits = all
            .iter()
            .all(|t| t.dtype() == DType::F32 && t.shape().num_dims() == 1)
            && all.iter().all(|t| t.shape().num_elements() == n);
        if !fits {
            return super::eval_affine_ops::<Flex>(weight, bias, mean, var, epsilon);
        }
        let (scale, shift) = batch_norm::eval_affine(
            &values(&weight),
            &values(&bias),
            &values(&mean),
            &values(&var),
            // burn-flex adds an `f64` scalar to `f32` values as an `f32`.
            epsilon as f32,
        );
        (tensor(scale, [n]), tensor(shift, [n]))
    }

    fn meal_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let Some(shape) = bn_shape(&x, &[&gamma, &beta]) else {
            let r = Flex::batch_norm_train(x, gamma, beta, epsilon);
            let out = if relu { Flex::relu(r.output) } else { r.output };
            return (out, r.mean, r.variance);
        };
        let mut x = x;
        if let Some(v) = owned_values(&mut x) {
            let (gamma, beta) = (values(&gamma), values(&beta));
            let (mean, var) = batch_norm::forward_in_place(shape, v, &gamma, &beta, epsilon, relu);
            return (
                x,
                tensor(mean, [shape.channels]),
                tensor(var, [shape.channels]),
            );
        }
        let (y, mean, var) = batch_norm::forward(
            shape,
            &values(&x),
            &values(&gamma),
            &values(&beta),
            epsilon,
            relu,
        );
        (
            like(y, &x),
            tensor(mean, [shape.channels]),
            tensor(var, [shape.channels]),
        )
    }

    fn meal_batch_norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        output: FlexTensor,
        output_grad: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let Some(shape) = bn_shape(&x, &[&gamma, &mean, &variance, &output, &output_grad]) else {
            let grad = if relu {
                Flex::relu_backward(output, output_grad)
            } else {
                output_grad
            };
            let b = Flex::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
            return (b.x_grad, b.gamma_grad, b.beta_grad);
        };
        let y = relu.then(|| values(&output));
        // The input gradient is written over the incoming one (a copy when that is shared).
        let mut dx = owned_or_copy(output_grad);
        let dy = owned_values(&mut dx).expect("a fresh or owned tensor");
        let (dg, db) = batch_norm::backward_in_place(
            shape,
            &values(&x),
            &values(&gamma),
            &values(&mean),
            &values(&variance),
            y.as_deref(),
            dy,
            epsilon,
        );
        (
            dx,
            tensor(dg, [shape.channels]),
            tensor(db, [shape.channels]),
        )
    }

    fn meal_activation(x: FlexTensor, act: Activation) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return super::burn_activation::<Flex>(x, act);
        }
        let mut x = x;
        if let Some(v) = owned_values(&mut x) {
            activation::forward_in_place(act, v);
            return x;
        }
        like(activation::forward(act, &values(&x)), &x)
    }

    fn meal_activation_backward(x: FlexTensor, grad: FlexTensor, act: Activation) -> FlexTensor {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 || x.shape() != grad.shape() {
            return super::burn_activation_backward::<Flex>(x, grad, act);
        }
        // The input gradient is written over the incoming one (a copy when that is shared).
        let mut dx = owned_or_copy(grad);
        let dy = owned_values(&mut dx).expect("a fresh or owned tensor");
        activation::backward_in_place(act, &values(&x), dy);
        dx
    }

    fn meal_sgd_step(
        param: FlexTensor,
        grad: FlexTensor,
        velocity: FlexTensor,
        first: bool,
        s: sgd::SgdStep,
    ) -> (FlexTensor, FlexTensor) {
        let f32s = [&param, &grad, &velocity]
            .iter()
            .all(|t| t.dtype() == DType::F32);
        if !f32s || param.shape() != grad.shape() || param.shape() != velocity.shape() {
            return super::burn_sgd_step::<Flex>(param, grad, velocity, first, s);
        }
        // Write over the parameter and the buffer when nothing else holds them (the usual case:
        // the optimizer owns both), else over fresh copies.
        let mut param = owned_or_copy(param);
        let g = values(&grad);
        let p = owned_values(&mut param).expect("a fresh or owned tensor");
        if s.momentum == 0.0 {
            sgd::step(s, p, &g, None, first);
            return (param, velocity);
        }
        let mut velocity = if first {
            like(vec![0f32; p.len()], &grad)
        } else {
            owned_or_copy(velocity)
        };
        let v = owned_values(&mut velocity).expect("a fresh or owned tensor");
        sgd::step(s, p, &g, Some(v), first);
        (param, velocity)
    }

    fn meal_shortcut_a(x: FlexTensor, stride: usize, pad: usize) -> FlexTensor {
        let d = x.shape();
        if x.dtype() != DType::F32 || d.num_dims() != 4 || stride == 0 {
            return super::burn_shortcut_a::<Flex>(x, stride, pad);
        }
        let s = ShortcutShape {
            batch: d[0],
            channels: d[1],
            h: d[2],
            w: d[3],
            stride,
            pad,
        };
        let y = shortcut::forward(&s, &values(&x));
        tensor(y, [s.batch, s.out_channels(), s.ho(), s.wo()])
    }

    fn meal_shortcut_a_backward(
        grad: FlexTensor,
        stride: usize,
        pad: usize,
        h: usize,
        w: usize,
    ) -> FlexTensor {
        let d = grad.shape();
        if grad.dtype() != DType::F32 || d.num_dims() != 4 || stride == 0 {
            return super::burn_shortcut_a_backward::<Flex>(grad, stride, pad, h, w);
        }
        let s = ShortcutShape {
            batch: d[0],
            channels: d[1] - 2 * pad,
            h,
            w,
            stride,
            pad,
        };
        let dx = shortcut::backward(&s, &values(&grad));
        tensor(dx, [s.batch, s.channels, h, w])
    }

    fn meal_conv2d_affine(
        x: FlexTensor,
        weight: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        act: activation::OutputAct,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let f32s = scale.dtype() == DType::F32 && shift.dtype() == DType::F32;
        if let Some(s) = grouped_shape(&x, &weight, &options).filter(|_| f32s) {
            let (scale, shift) = (values(&scale), values(&shift));
            let epi = conv::Epilogue {
                scale: &scale,
                shift: &shift,
                act,
            };
            let y = grouped::forward_affine(&s, &values(&x), &values(&weight), epi);
            return tensor(y, [s.batch, s.cout, s.ho(), s.wo()]);
        }
        let Some(s) = shape_of(&x, &weight, &options).filter(|_| f32s) else {
            let y = Flex::meal_conv2d(x, weight, options);
            return super::burn_affine_act::<Flex>(y, scale, shift, act);
        };
        let (scale, shift) = (values(&scale), values(&shift));
        let y = match prepared::lookup(&weight, &s) {
            Some(p) => {
                let epi = conv::Epilogue {
                    scale: &scale,
                    shift: &shift,
                    act,
                };
                assert_eq!((scale.len(), shift.len()), (s.cout, s.cout));
                prepared::forward(&s, &values(&x), &p, Some(epi))
            }
            None => conv::forward_affine(&s, &values(&x), &values(&weight), &scale, &shift, act),
        };
        tensor(y, [s.batch, s.cout, s.ho(), s.wo()])
    }

    fn meal_depthwise_affine(
        x: FlexTensor,
        weight: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        act: activation::OutputAct,
        options: ConvOptions<2>,
    ) -> (FlexTensor, FlexTensor) {
        let f32s = scale.dtype() == DType::F32 && shift.dtype() == DType::F32;
        let Some(s) = depthwise_shape(&x, &weight, &options).filter(|_| f32s) else {
            return super::burn_depthwise_affine::<Flex>(x, weight, scale, shift, act, options);
        };
        let (scale, shift) = (values(&scale), values(&shift));
        let epi = depthwise::Epilogue {
            scale: &scale,
            shift: &shift,
            act,
        };
        let (y, means) = depthwise::forward_fused(&s, &values(&x), &values(&weight), epi);
        (
            tensor(y, [s.batch, s.cout, s.ho(), s.wo()]),
            tensor(means, [s.batch, s.cout]),
        )
    }

    fn meal_add_relu(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        let fits = a.dtype() == DType::F32 && b.dtype() == DType::F32 && a.shape() == b.shape();
        if !fits {
            return Flex::relu(Flex::float_add(a, b));
        }
        let mut a = owned_or_copy(a);
        let v = owned_values(&mut a).expect("a fresh or owned tensor");
        elementwise(v, &values(&b), |x, y| {
            let s = *x + y;
            // Not `max(0.0)`: a NaN stays NaN, as in burn's and PyTorch's ReLU.
            *x = if s < 0.0 { 0.0 } else { s };
        });
        a
    }

    fn meal_relu_backward(output: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let fits = output.dtype() == DType::F32
            && grad.dtype() == DType::F32
            && output.shape() == grad.shape();
        if !fits {
            return Flex::relu_backward(output, grad);
        }
        let mut g = owned_or_copy(grad);
        let v = owned_values(&mut g).expect("a fresh or owned tensor");
        // burn's mask is `output <= 0`: a NaN output keeps its gradient.
        elementwise(v, &values(&output), |g, o| {
            // A select, not a conditional store: it vectorises as a blend.
            *g = if o <= 0.0 { 0.0 } else { *g };
        });
        g
    }

    fn meal_max_pool2d(
        x: FlexTensor,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FlexTensor {
        let d = x.shape();
        let s = (x.dtype() == DType::F32 && d.num_dims() == 4).then(|| max_pool::PoolShape {
            batch: d[0],
            channels: d[1],
            h: d[2],
            w: d[3],
            kernel,
            stride,
            pad: padding,
        });
        match s.and_then(|s| Some((s, s.output()?))) {
            Some((s, [ho, wo])) => tensor(max_pool::forward(&s, &values(&x)), [d[0], d[1], ho, wo]),
            None => Flex::max_pool2d(x, kernel, stride, padding, [1, 1], false),
        }
    }

    fn meal_plane_scale(x: FlexTensor, s: FlexTensor) -> FlexTensor {
        let (xs, ss) = (x.shape(), s.shape());
        let fits = x.dtype() == DType::F32
            && s.dtype() == DType::F32
            && xs.num_dims() == 4
            && ss.num_dims() == 2
            && xs[0] == ss[0]
            && xs[1] == ss[1];
        if !fits {
            let s = Flex::float_reshape(s, [ss[0], ss[1], 1, 1].into());
            return Flex::float_mul(x, s);
        }
        let spatial = xs[2] * xs[3];
        let mut x = owned_or_copy(x);
        let v = owned_values(&mut x).expect("a fresh or owned tensor");
        plane_scale::scale_in_place(v, spatial, &values(&s));
        x
    }

    fn meal_linear(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let (xs, ws) = (x.shape(), weight.shape());
        let fits = x.dtype() == DType::F32
            && weight.dtype() == DType::F32
            && xs.num_dims() == 2
            && ws.num_dims() == 2
            && xs[1] == ws[0]
            && ws[0] > 0;
        if !fits {
            return Flex::linear(x, weight, None);
        }
        let y = linear::forward(&values(&x), ws[0], &values(&weight));
        tensor(y, [xs[0], ws[1]])
    }

    fn meal_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        if let Some(s) = depthwise_shape(&x, &weight, &options) {
            let y = depthwise::forward(&s, &values(&x), &values(&weight));
            return tensor(y, [s.batch, s.cout, s.ho(), s.wo()]);
        }
        if let Some(s) = grouped_shape(&x, &weight, &options) {
            let y = grouped::forward(&s, &values(&x), &values(&weight));
            return tensor(y, [s.batch, s.cout, s.ho(), s.wo()]);
        }
        let Some(s) = shape_of(&x, &weight, &options) else {
            return Flex::conv2d(x, weight, None, options);
        };
        let y = match prepared::lookup(&weight, &s) {
            Some(p) => prepared::forward(&s, &values(&x), &p, None),
            None => conv::forward(&s, &values(&x), &values(&weight)),
        };
        tensor(y, [s.batch, s.cout, s.ho(), s.wo()])
    }

    fn meal_conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if let Some(s) = depthwise_shape(&x, &weight, &options) {
            let dx = depthwise::backward_input(&s, &values(&output_grad), &values(&weight));
            return tensor(dx, [s.batch, s.cin, s.h, s.w]);
        }
        let Some(s) = shape_of(&x, &weight, &options) else {
            return Flex::conv2d_x_backward(x, weight, output_grad, options);
        };
        let dx = conv::backward_input(&s, &values(&output_grad), &values(&weight));
        tensor(dx, [s.batch, s.cin, s.h, s.w])
    }

    fn meal_conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if let Some(s) = depthwise_shape(&x, &weight, &options) {
            let dw = depthwise::backward_weight(&s, &values(&x), &values(&output_grad));
            return tensor(dw, [s.cout, 1, s.kh, s.kw]);
        }
        let Some(s) = shape_of(&x, &weight, &options) else {
            return Flex::conv2d_weight_backward(x, weight, output_grad, options);
        };
        let dw = conv::backward_weight(&s, &values(&x), &values(&output_grad));
        tensor(dw, [s.cout, s.cin / s.groups, s.kh, s.kw])
    }
}
