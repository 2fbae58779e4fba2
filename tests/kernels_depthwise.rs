//! meal's depthwise convolution (`kernels::depthwise`) against burn's own `conv2d` and its
//! autodiff gradients: random kernels (1, 3, 5, 7), strides 1 and 2, symmetric and asymmetric
//! paddings (TensorFlow "same" among them), maps narrower and wider than a register block, on
//! every instruction set this CPU has.

mod conv_common;
mod isa_common;

use conv_common::matches_burn;
use isa_common::on_every_isa;
use meal::kernels::conv::ConvShape;
use meal::kernels::depthwise;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn depthwise_shape(batch: usize, c: usize, h: usize, w: usize, k: usize) -> ConvShape {
    ConvShape {
        batch,
        cin: c,
        h,
        w,
        cout: c,
        kh: k,
        kw: k,
        stride: [1, 1],
        pad: [(k / 2, k / 2), (k / 2, k / 2)],
        dilation: [1, 1],
        groups: c,
    }
}

fn random_shape(rng: &mut ChaCha8Rng) -> ConvShape {
    let k = [1, 3, 3, 5, 5, 7][rng.random_range(0..6)];
    let pad = |rng: &mut ChaCha8Rng| {
        let b = rng.random_range(0..k);
        let e = if rng.random_bool(0.5) {
            b
        } else {
            rng.random_range(0..k)
        };
        (b, e)
    };
    let mut s = depthwise_shape(
        rng.random_range(1..4),
        rng.random_range(1..13),
        rng.random_range(k..30),
        rng.random_range(k..70),
        k,
    );
    s.stride = [rng.random_range(1..3), rng.random_range(1..3)];
    s.pad = [pad(rng), pad(rng)];
    s
}

/// TensorFlow "same" padding of one axis (as `models::same_pad`).
fn same(size: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let needed = ((out - 1) * stride + k).saturating_sub(size);
    (needed / 2, needed - needed / 2)
}

/// The depthwise layers of tf_mobilenetv3_large_100 and tf_efficientnet_b0 at 224×224 (fewer
/// channels and images), the strided ones with their asymmetric "same" padding.
fn model_shapes() -> Vec<ConvShape> {
    let mut v = Vec::new();
    for (c, side, k, stride) in [
        (4, 112, 3, 1),
        (5, 112, 3, 2),
        (3, 56, 5, 2),
        (6, 28, 5, 1),
        (6, 28, 3, 2),
        (7, 14, 5, 1),
        (9, 14, 5, 2),
        (8, 7, 5, 1),
        (8, 7, 3, 1),
    ] {
        let mut s = depthwise_shape(2, c, side, side, k);
        if stride == 2 {
            s.stride = [2, 2];
            s.pad = [same(side, k, 2), same(side, k, 2)];
        }
        v.push(s);
    }
    v
}

/// Holds `s` to burn through autodiff, and checks that `kernels::conv2d` reached the depthwise
/// kernels (its output is theirs, bit for bit) and that the direct calls give the same
/// gradients.
fn check(s: &ConvShape, rng_seed: u64) {
    assert!(depthwise::applies(s), "{s:?} should be depthwise");
    let c = matches_burn(s, rng_seed);
    assert_eq!(
        depthwise::forward(s, &c.x, &c.w),
        c.ours[0],
        "kernels::conv2d did not run the depthwise kernel for {s:?}"
    );
    assert_eq!(
        depthwise::backward_input(s, &c.r, &c.w),
        c.ours[1],
        "input grad {s:?}"
    );
    assert_eq!(
        depthwise::backward_weight(s, &c.x, &c.r),
        c.ours[2],
        "weight grad {s:?}"
    );
}

#[test]
fn depthwise_matches_burn_on_random_shapes() {
    on_every_isa("depthwise_matches_burn_on_random_shapes", |_| {
        let mut rng = ChaCha8Rng::seed_from_u64(24);
        let mut strided = 0;
        for i in 0..40 {
            let s = random_shape(&mut rng);
            strided += usize::from(s.stride != [1, 1]);
            check(&s, i);
        }
        assert!(strided >= 10, "only {strided} strided shapes were drawn");
    });
}

#[test]
fn depthwise_matches_burn_on_model_shapes() {
    on_every_isa("depthwise_matches_burn_on_model_shapes", |_| {
        for (i, s) in model_shapes().iter().enumerate() {
            check(s, 100 + i as u64);
        }
    });
}

#[test]
fn other_grouped_convolutions_are_not_depthwise() {
    let mut s = depthwise_shape(1, 8, 9, 9, 3);
    assert!(depthwise::applies(&s));
    s.cout = 16;
    assert!(!depthwise::applies(&s), "a channel multiplier of 2");
    let mut s = depthwise_shape(1, 8, 9, 9, 3);
    s.groups = 4;
    assert!(!depthwise::applies(&s), "groups of two channels");
    let mut s = depthwise_shape(1, 8, 9, 9, 3);
    s.dilation = [2, 2];
    assert!(!depthwise::applies(&s), "dilated");
}
