//! Adaptive pooling and MEAL's stage feature against PyTorch (`tests/golden/pool.json`).

mod golden_common;

use burn::tensor::Tensor;
use golden_common::{MaxErr, check, leaf, load, pool_weights};
use meal::distill::pool::{PoolKind, adaptive_pool1d, stage_feature};

fn kinds() -> [(&'static str, PoolKind); 2] {
    [("avg", PoolKind::Avg), ("max", PoolKind::Max)]
}

#[test]
fn adaptive_pool1d_matches_pytorch() {
    let golden = load("pool.json");
    let device = golden_common::device().autodiff();
    let mut errs = MaxErr::default();
    let cases = golden["adaptive_pool1d"].as_object().unwrap();
    assert_eq!(cases.len(), 7);
    for (name, case) in cases {
        let out_len = case["out_len"].as_u64().unwrap() as usize;
        for (kname, kind) in kinds() {
            let x: Tensor<3> = leaf(&case["x"], &device);
            let [b, c, _] = x.dims();
            let out = adaptive_pool1d(x.clone(), out_len, kind);
            let what = format!("{kname} {name}");
            errs.add(
                &format!("{kname} forward"),
                check(&what, out.clone(), &case[kname]["out"]),
            );
            let loss = out.mul(pool_weights([b, c, out_len], &device)).sum();
            let grads = loss.backward();
            let grad = x.grad(&grads).expect("input gradient");
            errs.add(
                &format!("{kname} input grad"),
                check(&format!("{what} grad"), grad, &case[kname]["grad"]),
            );
        }
    }
    errs.report();
}

#[test]
fn stage_feature_matches_pytorch() {
    let golden = load("pool.json");
    let device = golden_common::device().autodiff();
    let mut errs = MaxErr::default();
    let cases = golden["stage_feature"].as_object().unwrap();
    assert_eq!(cases.len(), 6);
    for (name, case) in cases {
        let out_len = case["out_len"].as_u64().unwrap() as usize;
        for (kname, kind) in kinds() {
            let x: Tensor<4> = leaf(&case["x"], &device);
            let b = x.dims()[0];
            let out = stage_feature(x.clone(), out_len, kind);
            let what = format!("stage {kname} {name}");
            errs.add(
                &format!("stage {kname} forward"),
                check(&what, out.clone(), &case[kname]["out"]),
            );
            let grads = out
                .mul(pool_weights([b, out_len], &device))
                .sum()
                .backward();
            let grad = x.grad(&grads).expect("input gradient");
            errs.add(
                &format!("stage {kname} input grad"),
                check(&format!("{what} grad"), grad, &case[kname]["grad"]),
            );
        }
    }
    errs.report();
}

#[test]
fn pooling_works_without_autodiff_and_for_batch_one() {
    let device = golden_common::device();
    let x = Tensor::<4>::from_floats([[[[1.0, 2.0], [3.0, 4.0]]]], &device);
    let avg = stage_feature(x.clone(), 6, PoolKind::Avg);
    assert_eq!(avg.dims(), [1, 6]);
    let v = avg.try_into_vec_as::<f32>().unwrap();
    // windows of 4 → 6: [0,1), [0,2), [1,2), [2,3), [2,4), [3,4)
    assert_eq!(v, vec![1.0, 1.5, 2.0, 3.0, 3.5, 4.0]);
    let max = stage_feature(x, 3, PoolKind::Max)
        .try_into_vec_as::<f32>()
        .unwrap();
    // windows of 4 → 3: [0,2), [1,3), [2,4)
    assert_eq!(max, vec![2.0, 3.0, 4.0]);
}

/// Timing of the training hot path (forward + backward of every MEAL V1 stage of a ResNet-18
/// student at batch 128): `cargo test --release --test golden_pool -- --ignored --nocapture`.
#[test]
#[ignore]
fn stage_feature_timing() {
    use burn::tensor::Distribution;
    let device = golden_common::device().autodiff();
    let stages = [
        (64, 32, 5000),
        (128, 16, 1000),
        (256, 8, 500),
        (512, 4, 200),
        (512, 4, 10000),
    ];
    for kind in [PoolKind::Avg, PoolKind::Max] {
        for &(c, hw, n) in &stages {
            let x = Tensor::<4>::random([128, c, hw, hw], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let _ = x.clone().sum().into_scalar::<f32>();
            let start = std::time::Instant::now();
            let reps = 5;
            for _ in 0..reps {
                let out = stage_feature(x.clone(), n, kind);
                let grads = out.sum().backward();
                let _ = x.grad(&grads).unwrap().sum().into_scalar::<f32>();
            }
            println!(
                "{kind:?} (128,{c},{hw},{hw}) → {n}: {:.2} ms per forward+backward",
                start.elapsed().as_secs_f64() * 1e3 / reps as f64
            );
        }
    }
}
