//! The process's random generator, one run at a time (`meal::backend::seeded`): a seeded
//! section draws the same numbers, and a seeded model has the same weights, while another
//! thread draws. This binary holds no other test, so every draw beside them is the one made
//! here (a test that drew outside meal's functions, as burn's own `init` does, would be
//! unguarded).

use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Tensor};
use meal::backend::{seeded, unseeded};

/// Twenty draws after one seed, as a model's layers are initialised one after another.
fn seeded_draws(device: &Device) -> Vec<f32> {
    seeded(device, 7, || {
        (0..20)
            .flat_map(|_| {
                let t = Tensor::<1>::random([8], Distribution::Default, device);
                t.try_into_vec_as::<f32>().unwrap()
            })
            .collect()
    })
}

/// A seeded resnet8's weights, read after the section (burn initialises a parameter at its
/// first use, which for training is the first forward pass).
fn seeded_model(device: &Device) -> Vec<f32> {
    struct Values(Vec<f32>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(param.val().try_into_vec_as::<f32>().unwrap());
        }
    }
    let net = seeded(device, 3, || {
        meal::models::build("resnet8", 10, device).unwrap()
    });
    let mut values = Values(Vec::new());
    net.visit(&mut values);
    values.0
}

/// `run` 50 times while another thread draws: how many results differ from `run` alone.
fn differ_beside_draws(run: impl Fn() -> Vec<f32>) -> usize {
    let device = meal::backend::device();
    let alone = run();
    let stop = AtomicBool::new(false);
    let beside = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                unseeded(|| Tensor::<1>::random([4], Distribution::Default, &device));
            }
        });
        let runs: Vec<Vec<f32>> = (0..50).map(|_| run()).collect();
        stop.store(true, Ordering::Relaxed);
        runs
    });
    beside.iter().filter(|r| **r != alone).count()
}

#[test]
fn seeded_draws_and_models_are_the_same_while_another_thread_draws() {
    let device = meal::backend::device();
    let differ = differ_beside_draws(|| seeded_draws(&device));
    assert_eq!(differ, 0, "{differ} of 50 seeded runs drew other numbers");
    let differ = differ_beside_draws(|| seeded_model(&device));
    assert_eq!(differ, 0, "{differ} of 50 seeded models have other weights");
    let alone = seeded_draws(&device);
    // Nested: a draw inside a seeded section takes the lock it already holds.
    let nested = seeded(&device, 7, || unseeded(|| seeded_draws(&device)));
    assert_eq!(nested, alone);
}
