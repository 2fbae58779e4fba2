//! The inference-only depthwise epilogue (`depthwise::forward_fused`, `kernels::depthwise_affine`)
//! and the squeeze-excitation gate (`kernels::plane_scale`): the fused values are bit for bit
//! those of meal's separate passes (depthwise, affine, activation) on every instruction set,
//! within float rounding of burn's own ops, and the plane means are the output's.

mod isa_common;

use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use isa_common::on_every_isa;
use meal::kernels;
use meal::kernels::activation::{self, Activation, OutputAct};
use meal::kernels::batch_norm::{BnShape, channel_affine_in_place};
use meal::kernels::conv::ConvShape;
use meal::kernels::depthwise::{self, Epilogue};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ACTS: [OutputAct; 4] = [
    OutputAct::Identity,
    OutputAct::Relu,
    OutputAct::Fused(Activation::HardSwish),
    OutputAct::Fused(Activation::Silu),
];

/// TensorFlow "same" padding of one axis (as `models::same_pad`).
fn same(size: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let needed = ((out - 1) * stride + k).saturating_sub(size);
    (needed / 2, needed - needed / 2)
}

/// Random depthwise shapes: kernels 1 to 7, strides 1 to 3 (2 with "same" padding, as the
/// `tf_` models' strided blocks), odd and even sides, planes narrower and wider than a block.
fn shapes() -> Vec<ConvShape> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut v = Vec::new();
    for i in 0..24 {
        let k = [1, 3, 5, 7][i % 4];
        let (h, w) = (rng.random_range(k..40), rng.random_range(k..70));
        let stride = [1, 2, 3][rng.random_range(0..3)];
        let pad = if stride == 2 {
            [same(h, k, 2), same(w, k, 2)]
        } else {
            let p = rng.random_range(0..k);
            [(p, k / 2), (k / 2, p)]
        };
        let c = rng.random_range(1..20);
        v.push(ConvShape {
            batch: rng.random_range(1..4),
            cin: c,
            h,
            w,
            cout: c,
            kh: k,
            kw: k,
            stride: [stride, stride],
            pad,
            dilation: [1, 1],
            groups: c,
        });
    }
    v
}

fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect()
}

/// meal's separate passes: the depthwise forward, the eval affine (with its ReLU), the
/// activation kernel.
fn separate(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    scale: &[f32],
    shift: &[f32],
    act: OutputAct,
) -> Vec<f32> {
    let mut y = depthwise::forward(s, x, w);
    let shape = BnShape {
        batch: s.batch,
        channels: s.cout,
        spatial: s.ho() * s.wo(),
    };
    channel_affine_in_place(shape, &mut y, scale, shift, act == OutputAct::Relu);
    if let OutputAct::Fused(a) = act {
        activation::forward_in_place(a, &mut y);
    }
    y
}

#[test]
fn fused_depthwise_is_the_separate_passes_bit_for_bit() {
    on_every_isa("fused_depthwise_is_the_separate_passes_bit_for_bit", |_| {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (i, s) in shapes().iter().enumerate() {
            let x = random(&mut rng, s.batch * s.cin * s.h * s.w, 2.0);
            let w = random(&mut rng, s.cout * s.kh * s.kw, 0.5);
            let scale = random(&mut rng, s.cout, 1.5);
            let shift = random(&mut rng, s.cout, 1.0);
            let act = ACTS[i % ACTS.len()];
            let epi = Epilogue {
                scale: &scale,
                shift: &shift,
                act,
            };
            let (y, means) = depthwise::forward_fused(s, &x, &w, epi);
            let want = separate(s, &x, &w, &scale, &shift, act);
            assert_eq!(y, want, "{act:?} on {s:?}");
            let spatial = s.ho() * s.wo();
            assert_eq!(means.len(), s.batch * s.cout);
            for (p, m) in means.iter().enumerate() {
                let exact: f64 = want[p * spatial..][..spatial]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>()
                    / spatial as f64;
                let size: f64 = want[p * spatial..][..spatial]
                    .iter()
                    .map(|&v| (v as f64).abs())
                    .sum::<f64>()
                    / spatial as f64;
                assert!(
                    (*m as f64 - exact).abs() <= 1e-6 * size + 1e-7,
                    "mean of plane {p} for {s:?}: {m} vs {exact}"
                );
            }
        }
    });
}

fn options(s: &ConvShape) -> ConvOptions<2> {
    ConvOptions::new_with_padding(s.stride, s.pad, s.dilation, s.groups)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (g, e)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - e).abs() <= 1e-5 * e.abs() + 2e-5 * scale,
            "{what} differs at {i}: {g} vs {e} (scale {scale})"
        );
    }
}

/// burn's ops: conv2d, the affine as a broadcast multiply-add, the activation's formula.
fn burn_ops(
    x: Tensor<4>,
    w: Tensor<4>,
    scale: Tensor<1>,
    shift: Tensor<1>,
    s: &ConvShape,
    act: OutputAct,
) -> Tensor<4> {
    let c = s.cout;
    let y = burn_conv2d(x, w, None, options(s));
    let y = y * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1]);
    match act {
        OutputAct::Identity => y,
        OutputAct::Relu => relu(y),
        OutputAct::Fused(Activation::HardSwish) => {
            y.clone() * y.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0)
        }
        OutputAct::Fused(Activation::Silu) => y.clone() * sigmoid(y),
    }
}

#[test]
fn depthwise_affine_matches_burn_ops() {
    let device = Device::default();
    for (i, s) in shapes().iter().enumerate().take(12) {
        device.seed(40 + i as u64);
        let x = Tensor::<4>::random(
            [s.batch, s.cin, s.h, s.w],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let w = Tensor::<4>::random(
            [s.cout, 1, s.kh, s.kw],
            Distribution::Normal(0.0, 0.3),
            &device,
        );
        let scale = Tensor::<1>::random([s.cout], Distribution::Normal(1.0, 0.3), &device);
        let shift = Tensor::<1>::random([s.cout], Distribution::Normal(0.0, 0.5), &device);
        let act = ACTS[i % ACTS.len()];
        let (y, means) = kernels::depthwise_affine(
            x.clone(),
            w.clone(),
            (scale.clone(), shift.clone()),
            act,
            options(s),
        );
        let want = burn_ops(x, w, scale, shift, s, act);
        let want_means = want
            .clone()
            .mean_dim(3)
            .mean_dim(2)
            .reshape([s.batch, s.cout]);
        assert_eq!(means.dims(), [s.batch, s.cout]);
        assert_close(
            &format!("{act:?} output on {s:?}"),
            &values(y),
            &values(want),
        );
        assert_close(
            &format!("{act:?} means on {s:?}"),
            &values(means),
            &values(want_means),
        );
    }
}

#[test]
fn plane_scale_is_a_broadcast_multiply_and_leaves_a_shared_input_alone() {
    let device = Device::default();
    device.seed(3);
    for (b, c, h, w) in [
        (1, 5, 7, 7),
        (3, 17, 13, 11),
        (2, 1, 1, 1),
        (2, 4, 112, 112),
    ] {
        let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let s = Tensor::<2>::random([b, c], Distribution::Uniform(0.0, 1.0), &device);
        let want = values(x.clone() * s.clone().reshape([b, c, 1, 1]));
        let before = values(x.clone());
        // `x` is shared here (the clone above lives on): the kernel must copy, not write over it.
        let kept = x.clone();
        let got = values(kernels::plane_scale(x, s));
        assert_eq!(got, want, "{b}x{c}x{h}x{w}");
        assert_eq!(values(kept), before, "the shared input was written");
    }
}

#[test]
fn plane_scale_and_depthwise_affine_differentiate_on_autodiff() {
    // Outside inference the same calls are burn's ops, so gradients flow (a training step runs
    // the squeeze-excitation through `plane_scale`).
    let device = Device::default().autodiff();
    device.seed(5);
    let x =
        Tensor::<4>::random([2, 3, 5, 5], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let s = Tensor::<2>::random([2, 3], Distribution::Uniform(0.5, 1.0), &device).require_grad();
    let y = kernels::plane_scale(x.clone(), s.clone());
    let grads = y.sum().backward();
    let gx = values(x.grad(&grads).expect("a gradient for x"));
    let gs = values(s.grad(&grads).expect("a gradient for s"));
    let (sv, xv) = (values(s.inner()), values(x.inner()));
    for (i, g) in gx.iter().enumerate() {
        assert_eq!(*g, sv[i / 25], "d/dx at {i}");
    }
    for (p, g) in gs.iter().enumerate() {
        let want: f32 = xv[p * 25..][..25].iter().sum();
        assert!(
            (g - want).abs() <= 1e-5 * want.abs().max(1.0),
            "d/ds at {p}: {g} vs {want}"
        );
    }
}
