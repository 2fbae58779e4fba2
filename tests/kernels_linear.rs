//! Inference linear layers (`kernels::linear`: the ImageNet models' classifier heads) against a
//! float64 reference; the same bits whatever the batch, the thread count, the workers' polling
//! (`kernels::hot`) and the instruction set (each output is one chain of fused multiply-adds
//! in the same order); and the tensor-level call against burn's `linear`, bias included, with
//! burn's own op (and its gradients) where gradients are tracked.

mod isa_common;

use burn::tensor::{Device, Distribution, Tensor};
use isa_common::same_bits_at_any_batch_pool_and_isa;
use meal::kernels;
use meal::kernels::linear;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `(d_in, d_out)`: MobileNetV3's and EfficientNet's head, ResNet-50's, a CIFAR head (narrower
/// than one block of columns) and widths that leave a partial last block.
const LAYERS: [(usize, usize); 5] = [(1280, 1000), (2048, 1000), (64, 10), (37, 130), (1, 65)];

#[test]
fn linear_matches_a_float64_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (k, m) in LAYERS {
        let n = 3;
        let x = random(&mut rng, n * k, 1.0);
        let w = random(&mut rng, k * m, (k as f32).sqrt().recip());
        let y = linear::forward(&x, k, &w);
        assert_eq!(y.len(), n * m);
        for i in 0..n {
            for j in 0..m {
                let want: f64 = (0..k)
                    .map(|c| x[i * k + c] as f64 * w[c * m + j] as f64)
                    .sum();
                let got = y[i * m + j] as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{k}>{m} image {i} column {j}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn linear_gives_the_same_bits_at_any_batch_thread_count_and_isa() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for (k, m) in LAYERS {
        let x = random(&mut rng, 8 * k, 1.0);
        let w = random(&mut rng, k * m, (k as f32).sqrt().recip());
        let want = bits(&one.install(|| linear::forward(&x, k, &w)));
        same_bits_at_any_batch_pool_and_isa(&format!("linear {k}>{m}"), &want, m, |batch| {
            linear::forward(&x[..batch * k], k, &w)
        });
    }
}

#[test]
fn the_tensor_call_matches_burns_linear_and_keeps_burns_op_for_gradients() {
    let device = Device::default();
    device.seed(15);
    let x = Tensor::<2>::random([5, 300], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<2>::random([300, 130], Distribution::Normal(0.0, 0.05), &device);
    let b = Tensor::<1>::random([130], Distribution::Normal(0.0, 1.0), &device);
    for bias in [Some(b.clone()), None] {
        let ours = kernels::linear(x.clone(), w.clone(), bias.clone());
        let burn = burn::tensor::module::linear(x.clone(), w.clone(), bias.clone());
        assert_eq!(ours.dims(), [5, 130]);
        let diff: f32 = (ours - burn).abs().max().into_scalar();
        assert!(diff < 1e-4, "bias {}: {diff}", bias.is_some());
    }
    // Tracked: burn's op, bit for bit, with its gradients.
    let ad = Device::default().autodiff();
    let on = |t: Tensor<2>| Tensor::<2>::from_data(t.to_data(), &ad);
    let run = |ours: bool| {
        let wa = on(w.clone()).require_grad();
        let ba = Tensor::<1>::from_data(b.to_data(), &ad).require_grad();
        let y = if ours {
            kernels::linear(on(x.clone()), wa.clone(), Some(ba.clone()))
        } else {
            burn::tensor::module::linear(on(x.clone()), wa.clone(), Some(ba.clone()))
        };
        let g = y.clone().sum().backward();
        let v = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        (
            bits(&v(y.inner())),
            bits(&v(wa.grad(&g).unwrap())),
            bits(
                &ba.grad(&g)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap(),
            ),
        )
    };
    assert_eq!(run(true), run(false));
}
