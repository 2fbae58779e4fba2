//! meal's forward pass for narrow grouped convolutions (`kernels::grouped`, SENet-154's 64
//! groups of 2–16 channels) against burn's own `conv2d` and its autodiff gradients, on random
//! shapes (kernels 1, 3 and 5, strides 1 to 3, asymmetric paddings, groups of one input channel
//! and up to sixteen) on every instruction set this CPU has; the fused epilogue against meal's
//! separate passes, and the values against the batch and the thread count, bit for bit.

mod conv_common;
mod isa_common;

use conv_common::matches_burn;
use isa_common::on_every_isa;
use meal::kernels::activation::{self, Activation, OutputAct};
use meal::kernels::batch_norm::{BnShape, channel_affine_in_place};
use meal::kernels::conv::{ConvShape, Epilogue};
use meal::kernels::grouped;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_shape(rng: &mut ChaCha8Rng) -> ConvShape {
    let k = [1, 3, 3, 5][rng.random_range(0..4)];
    let groups = rng.random_range(2..7);
    let cin_g = [1, 2, 3, 4, 8, 16][rng.random_range(0..6)];
    // One input and one output channel per group is depthwise: at least two outputs then.
    let cout_g = rng.random_range(if cin_g == 1 { 2 } else { 1 }..13);
    let pad = |rng: &mut ChaCha8Rng| (rng.random_range(0..k), rng.random_range(0..k));
    let stride = rng.random_range(1..4);
    ConvShape {
        batch: rng.random_range(1..4),
        cin: groups * cin_g,
        h: rng.random_range(k..24),
        w: rng.random_range(k..40),
        cout: groups * cout_g,
        kh: k,
        kw: k,
        stride: [stride, rng.random_range(1..3)],
        pad: [pad(rng), pad(rng)],
        dilation: [1, 1],
        groups,
    }
}

/// SENet-154's grouped 3×3 layers at a fraction of their channels and sides: groups of 2, 4, 8
/// and 16 input channels and twice as many outputs, stride 1 and 2.
fn model_shapes() -> Vec<ConvShape> {
    [
        (2, 28, 1),
        (4, 28, 2),
        (4, 14, 1),
        (8, 14, 2),
        (8, 7, 1),
        (16, 7, 1),
    ]
    .into_iter()
    .map(|(cin_g, side, stride)| ConvShape {
        batch: 2,
        cin: 8 * cin_g,
        h: side,
        w: side,
        cout: 16 * cin_g,
        kh: 3,
        kw: 3,
        stride: [stride, stride],
        pad: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 8,
    })
    .collect()
}

fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect()
}

/// Holds `s` to burn through autodiff, and checks that `kernels::conv2d` reached the grouped
/// kernel (its output is the kernel's, bit for bit).
fn check(s: &ConvShape, seed: u64) {
    assert!(
        grouped::applies(s),
        "{s:?} should be a narrow grouped convolution"
    );
    let c = matches_burn(s, seed);
    assert_eq!(
        grouped::forward(s, &c.x, &c.w),
        c.ours[0],
        "kernels::conv2d did not run the grouped kernel for {s:?}"
    );
}

#[test]
fn grouped_matches_burn_on_random_shapes() {
    on_every_isa("grouped_matches_burn_on_random_shapes", |_| {
        let mut rng = ChaCha8Rng::seed_from_u64(154);
        let (mut strided, mut thin) = (0, 0);
        for i in 0..30 {
            let s = random_shape(&mut rng);
            strided += usize::from(s.stride != [1, 1]);
            thin += usize::from(s.cin / s.groups < 4);
            check(&s, i);
        }
        assert!(strided >= 8, "only {strided} strided shapes were drawn");
        assert!(
            thin >= 8,
            "only {thin} shapes with groups under four channels"
        );
    });
}

#[test]
fn grouped_matches_burn_on_senet154_shapes() {
    on_every_isa("grouped_matches_burn_on_senet154_shapes", |_| {
        for (i, s) in model_shapes().iter().enumerate() {
            check(s, 100 + i as u64);
        }
    });
}

#[test]
fn grouped_epilogue_is_the_separate_passes_bit_for_bit() {
    let acts = [
        OutputAct::Identity,
        OutputAct::Relu,
        OutputAct::Fused(Activation::HardSwish),
        OutputAct::Fused(Activation::Silu),
    ];
    on_every_isa(
        "grouped_epilogue_is_the_separate_passes_bit_for_bit",
        |_| {
            let mut rng = ChaCha8Rng::seed_from_u64(16);
            for i in 0..12 {
                let s = random_shape(&mut rng);
                let x = random(&mut rng, s.batch * s.cin * s.h * s.w, 2.0);
                let w = random(&mut rng, s.cout * s.cin / s.groups * s.kh * s.kw, 0.5);
                let scale = random(&mut rng, s.cout, 1.5);
                let shift = random(&mut rng, s.cout, 1.0);
                let act = acts[i % acts.len()];
                let epi = Epilogue {
                    scale: &scale,
                    shift: &shift,
                    act,
                };
                let fused = grouped::forward_affine(&s, &x, &w, epi);
                let mut want = grouped::forward(&s, &x, &w);
                let shape = BnShape {
                    batch: s.batch,
                    channels: s.cout,
                    spatial: s.ho() * s.wo(),
                };
                channel_affine_in_place(shape, &mut want, &scale, &shift, act == OutputAct::Relu);
                if let OutputAct::Fused(a) = act {
                    activation::forward_in_place(a, &mut want);
                }
                assert_eq!(fused, want, "{act:?} on {s:?}");
            }
        },
    );
}

/// Each image alone gives its slice of the batch's output, and one thread gives the pool's:
/// no value depends on how the work was shared.
#[test]
fn grouped_values_do_not_depend_on_the_batch_or_the_threads() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for _ in 0..8 {
        let mut s = random_shape(&mut rng);
        s.batch = 3;
        let x = random(&mut rng, s.batch * s.cin * s.h * s.w, 1.0);
        let w = random(&mut rng, s.cout * s.cin / s.groups * s.kh * s.kw, 0.5);
        let all = grouped::forward(&s, &x, &w);
        assert_eq!(one.install(|| grouped::forward(&s, &x, &w)), all, "{s:?}");
        let (in_image, out_image) = (s.cin * s.h * s.w, s.cout * s.ho() * s.wo());
        let single = ConvShape { batch: 1, ..s };
        for i in 0..s.batch {
            let y = grouped::forward(&single, &x[i * in_image..][..in_image], &w);
            assert_eq!(y, all[i * out_image..][..out_image], "image {i} of {s:?}");
        }
    }
}

#[test]
fn grouped_applies_to_narrow_groups_only() {
    let s = model_shapes()[0];
    assert!(grouped::applies(&s));
    assert!(
        !grouped::applies(&ConvShape { groups: 1, ..s }),
        "one group"
    );
    let wide = ConvShape {
        cin: 8 * 17,
        cout: 8 * 34,
        ..s
    };
    assert!(!grouped::applies(&wide), "groups of 17 input channels");
    let depthwise = ConvShape {
        cin: 8,
        cout: 8,
        ..s
    };
    assert!(!grouped::applies(&depthwise), "depthwise");
    let dilated = ConvShape {
        dilation: [2, 2],
        ..s
    };
    assert!(!grouped::applies(&dilated), "dilated");
    let uneven = ConvShape { cin: 17, ..s };
    assert!(
        !grouped::applies(&uneven),
        "channels not a multiple of the groups"
    );
}
