//! The convolution tests' shared harness: meal's `kernels::conv2d` and burn's own `conv2d`
//! through autodiff on the same inputs, and the tolerance they are held to.

use burn::tensor::Tensor;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use meal::kernels;
use meal::kernels::conv::ConvShape;

pub fn options(s: &ConvShape) -> ConvOptions<2> {
    ConvOptions::new_with_padding(s.stride, s.pad, s.dilation, s.groups)
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Output, input gradient and weight gradient of `sum(conv(x, w) · r)`, by burn's autodiff
/// conv2d or by meal's (`kernels::conv2d`).
pub fn run(
    s: &ConvShape,
    ours: bool,
    x: &Tensor<4>,
    w: &Tensor<4>,
    r: &Tensor<4>,
) -> [Vec<f32>; 3] {
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
