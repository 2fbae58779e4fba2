//! 1×1 convolutions of 1×1 maps (`kernels::pointwise`: squeeze-excitations, heads on pooled
//! features) against a float64 reference, with and without the eval epilogue; and the same
//! bits whatever the batch, the thread count, the workers' polling (`kernels::hot`) and the
//! instruction set (the sums are the same fused multiply-adds in the same order on each).

mod isa_common;

use isa_common::same_bits_at_any_batch_pool_and_isa;
use meal::kernels::activation::{Activation, OutputAct};
use meal::kernels::conv::{self, ConvShape};
use meal::kernels::pointwise;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn shape(batch: usize, cin: usize, cout: usize) -> ConvShape {
    ConvShape {
        batch,
        cin,
        h: 1,
        w: 1,
        cout,
        kh: 1,
        kw: 1,
        stride: [1, 1],
        pad: [(0, 0), (0, 0)],
        dilation: [1, 1],
        groups: 1,
    }
}

fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `(cin, cout)`: MobileNetV3's widest excitation, its head, EfficientNet's narrowest
/// excitation, and widths that leave a tail past the sixteen lanes and past four rows.
const LAYERS: [(usize, usize); 6] = [
    (960, 240),
    (960, 1280),
    (672, 170),
    (32, 8),
    (17, 5),
    (240, 67),
];

#[test]
fn pointwise_matches_a_float64_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (cin, cout) in LAYERS {
        let s = shape(3, cin, cout);
        assert!(pointwise::applies(&s));
        let x = random(&mut rng, 3 * cin, 1.0);
        let w = random(&mut rng, cout * cin, (cin as f32).sqrt().recip());
        let scale = random(&mut rng, cout, 2.0);
        let shift = random(&mut rng, cout, 1.0);
        let plain = conv::forward(&s, &x, &w);
        let act = OutputAct::Fused(Activation::HardSwish);
        let fused = conv::forward_affine(&s, &x, &w, &scale, &shift, act);
        let relu = conv::forward_affine(&s, &x, &w, &scale, &shift, OutputAct::Relu);
        for i in 0..3 {
            for c in 0..cout {
                let want: f64 = (0..cin)
                    .map(|k| w[c * cin + k] as f64 * x[i * cin + k] as f64)
                    .sum();
                let got = plain[i * cout + c] as f64;
                let tol = 1e-5 * (1.0 + want.abs());
                assert!(
                    (got - want).abs() < tol,
                    "{cin}>{cout} [{i},{c}]: {got} vs {want}"
                );
                // The epilogue on the kernel's own sum: the same expressions as the ops.
                let t = plain[i * cout + c] * scale[c] + shift[c];
                assert_eq!(relu[i * cout + c].to_bits(), t.max(0.0).to_bits());
                let hs = t * ((t + 3.0).clamp(0.0, 6.0) / 6.0);
                let f = fused[i * cout + c];
                assert!((f - hs).abs() <= 1e-6 * (1.0 + hs.abs()), "{f} vs {hs}");
            }
        }
    }
}

#[test]
fn pointwise_gives_the_same_bits_at_any_batch_thread_count_and_isa() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for (cin, cout) in LAYERS {
        let x = random(&mut rng, 8 * cin, 1.0);
        let w = random(&mut rng, cout * cin, (cin as f32).sqrt().recip());
        let want = bits(&one.install(|| conv::forward(&shape(8, cin, cout), &x, &w)));
        let test = format!("pointwise {cin}>{cout}");
        same_bits_at_any_batch_pool_and_isa(&test, &want, cout, |batch| {
            conv::forward(&shape(batch, cin, cout), &x[..batch * cin], &w)
        });
    }
}
