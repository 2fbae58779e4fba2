//! The convolution tests' shared harness: meal's `kernels::conv2d` and burn's own `conv2d`
//! through autodiff on the same seeded inputs, held to one tolerance.

use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use meal::kernels;
use meal::kernels::conv::ConvShape;

fn options(s: &ConvShape) -> ConvOptions<2> {
    ConvOptions::new_with_padding(s.stride, s.pad, s.dilation, s.groups)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Output, input gradient and weight gradient of `sum(conv(x, w) · r)`, by burn's autodiff
/// conv2d or by meal's (`kernels::conv2d`).
fn run(s: &ConvShape, ours: bool, x: &Tensor<4>, w: &Tensor<4>, r: &Tensor<4>) -> [Vec<f32>; 3] {
    let x = x.clone().require_grad();
    let w = w.clone().require_grad();
    let y = if ours {
        kernels::conv2d(x.clone(), w.clone(), None, options(s))
    } else {
        burn_conv2d(x.clone(), w.clone(), None, options(s))
    };
    let grads = (y.clone() * r.clone()).sum().backward();
    [
        values(y),
        values(x.grad(&grads).unwrap()),
        values(w.grad(&grads).unwrap()),
    ]
}

/// `got` within `1e-5` relative plus `2e-5` of `want`'s largest magnitude.
pub fn assert_close(what: &str, s: &ConvShape, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what} length for {s:?}");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (g, e)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - e).abs() <= 1e-5 * e.abs() + 2e-5 * scale,
            "{what} differs at {i} for {s:?}: {g} vs {e} (scale {scale})"
        );
    }
}

/// meal's results for `s` (output, input gradient, weight gradient of `sum(conv(x, w) · r)`)
/// and the seeded inputs they came from, as host values.
pub struct Checked {
    pub ours: [Vec<f32>; 3],
    pub x: Vec<f32>,
    /// The weight (read by the tests of kernels with forward passes of their own).
    #[allow(dead_code)]
    pub w: Vec<f32>,
    /// The output gradient (read by the tests of kernels with backward passes of their own).
    #[allow(dead_code)]
    pub r: Vec<f32>,
}

/// Holds `kernels::conv2d`'s output and both gradients on `s` to burn's through autodiff, on
/// inputs drawn from `seed`.
pub fn matches_burn(s: &ConvShape, seed: u64) -> Checked {
    let device = Device::default().autodiff();
    device.seed(seed);
    let normal = |dims: [usize; 4], std: f64| {
        Tensor::<4>::random(dims, Distribution::Normal(0.0, std), &device)
    };
    let x = normal([s.batch, s.cin, s.h, s.w], 1.0);
    let w = normal([s.cout, s.cin / s.groups, s.kh, s.kw], 0.3);
    let r = normal([s.batch, s.cout, s.ho(), s.wo()], 1.0);
    let ours = run(s, true, &x, &w, &r);
    let theirs = run(s, false, &x, &w, &r);
    for (what, (g, e)) in ["output", "input grad", "weight grad"]
        .iter()
        .zip(ours.iter().zip(&theirs))
    {
        assert_close(what, s, g, e);
    }
    Checked {
        ours,
        x: values(x.inner()),
        w: values(w.inner()),
        r: values(r.inner()),
    }
}
