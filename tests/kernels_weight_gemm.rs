//! The weight gradient of 1×1 convolutions as a gemm over the output positions
//! (`kernels::weight_gemm`): against burn's autodiff on random shapes (strides 1 to 3, channel
//! counts on both sides of the transposed product, position counts across the chunks and the
//! images) on every instruction set this CPU has; that `conv::backward_weight` reaches it on
//! AVX-512; and its values against the thread count, bit for bit.

mod conv_common;
mod isa_common;

use conv_common::{assert_close, matches_burn};
use isa_common::on_every_isa;
use meal::kernels::conv::{self, ConvShape};
use meal::kernels::simd::{self, Isa};
use meal::kernels::weight_gemm;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn shape(batch: usize, cin: usize, side: (usize, usize), cout: usize, stride: usize) -> ConvShape {
    ConvShape {
        batch,
        cin,
        h: side.0,
        w: side.1,
        cout,
        kh: 1,
        kw: 1,
        stride: [stride, stride],
        pad: [(0, 0), (0, 0)],
        dilation: [1, 1],
        groups: 1,
    }
}

/// `got` is `want` bit for bit; a failure names the first value that differs, not both vectors.
fn same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: value {i} is {} where {} was expected",
            got[i], want[i]
        );
    }
}

fn random_shape(rng: &mut ChaCha8Rng) -> ConvShape {
    shape(
        rng.random_range(1..4),
        rng.random_range(64..140),
        (rng.random_range(1..14), rng.random_range(1..14)),
        rng.random_range(64..140),
        rng.random_range(1..4),
    )
}

/// Fixed cases: more input than output channels and the other way round (the two
/// orientations of the product), exactly one chunk of 256 positions, chunks that end inside an
/// image, a ResNet-50 downsampling layer's stride 2, and channel counts off the tile sizes.
fn fixed_shapes() -> Vec<ConvShape> {
    vec![
        shape(1, 130, (16, 16), 64, 1),
        shape(4, 64, (8, 8), 130, 1),
        shape(3, 97, (11, 9), 101, 1),
        shape(2, 128, (14, 14), 256, 2),
        shape(5, 256, (7, 7), 64, 1),
        shape(1, 64, (1, 1), 64, 1),
    ]
}

#[test]
fn weight_gradient_matches_burn_on_every_isa() {
    on_every_isa("weight_gemm", |isa| {
        let mut rng = ChaCha8Rng::seed_from_u64(41);
        let shapes: Vec<ConvShape> = fixed_shapes()
            .into_iter()
            .chain((0..8).map(|_| random_shape(&mut rng)))
            .collect();
        for (i, s) in shapes.iter().enumerate() {
            assert!(weight_gemm::applies(s), "{s:?} should take the gemm");
            let checked = matches_burn(s, 100 + i as u64);
            let direct = weight_gemm::backward_weight(isa, s, &checked.x, &checked.r);
            let dispatched = conv::backward_weight(s, &checked.x, &checked.r);
            if isa == Isa::Avx512 {
                // The weight gradient that burn checked is this kernel's, bit for bit.
                same_bits(&format!("{s:?}: conv2d's"), &checked.ours[2], &direct);
                same_bits(&format!("{s:?}: backward_weight's"), &dispatched, &direct);
            } else {
                // Elsewhere the dot products answer (burn checked them); the kernel's own
                // sums, in another order, must agree with theirs.
                assert_close(&format!("weight_gemm on {isa:?}"), s, &direct, &dispatched);
            }
        }
    });
}

#[test]
fn values_do_not_depend_on_the_thread_count() {
    let isa = simd::isa();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for s in [
        shape(3, 150, (13, 11), 70, 1),
        shape(2, 66, (20, 20), 200, 2),
    ] {
        let x: Vec<f32> = (0..s.batch * s.cin * s.h * s.w)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let dy: Vec<f32> = (0..s.batch * s.cout * s.ho() * s.wo())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| weight_gemm::backward_weight(isa, &s, &x, &dy))
        };
        let one = on(1);
        assert!(one.iter().all(|v| v.is_finite()));
        for threads in [2, 3, 5] {
            same_bits(&format!("{s:?} on {threads} threads"), &on(threads), &one);
        }
    }
}

#[test]
fn applies_only_to_unpadded_ungrouped_1x1_layers_with_enough_channels() {
    let base = shape(2, 64, (8, 8), 64, 1);
    assert!(weight_gemm::applies(&base));
    let no = [
        ConvShape { cin: 63, ..base },
        ConvShape { cout: 40, ..base },
        ConvShape {
            kh: 3,
            kw: 3,
            pad: [(1, 1), (1, 1)],
            ..base
        },
        ConvShape {
            pad: [(1, 0), (0, 0)],
            ..base
        },
        ConvShape { groups: 2, ..base },
        ConvShape { batch: 0, ..base },
    ];
    for s in no {
        assert!(
            !weight_gemm::applies(&s),
            "{s:?} should keep the dot products"
        );
    }
}
