//! Numerical agreement of every zoo model with its PyTorch twin in
//! `scripts/models/param_counts.py`. Both sides fill the model with the same deterministic
//! weights (a splitmix64 stream keyed by the FNV-1a hash of each tensor's module path; the
//! Python attribute names mirror the Rust fields) and run it on the same batch of 2, PyTorch in
//! float64, burn in float32:
//! - eval mode (BatchNorm on running statistics): every stage output and the logits;
//! - train mode (BatchNorm on batch statistics): the same outputs, then the backward of a fixed
//!   weighting of the logits and of every stage, compared on the gradient of the input, of the
//!   first and last weights, the last bias, and two BatchNorms' affine parameters, and on those
//!   BatchNorms' running statistics after the pass.
//!
//! Logits, gradients and running statistics are compared in full; stage outputs too for the
//! small models (resnet8, vgg8), and for the others, where a full stage would make the fixture
//! tens of MB, by the per-channel mean and rms (which sees a channel order or a shortcut wiring
//! error anywhere in the map) plus 2048 values sampled across the tensor. This catches wiring
//! errors that counts and shapes cannot see (concatenation order, which tensor a shortcut reads,
//! pooling and padding) and BatchNorm's train-mode statistics and backward.
//!
//! A third test shows the comparisons can fail: a flipped kernel, BatchNorm left in eval mode,
//! and a backward missing the stage terms are each rejected by far.
//!
//! The fixture is `tests/fixtures/models/golden.{json,bin}` (written by
//! `scripts/models/make_golden_models.py`, which documents the layout); the reading and the
//! comparisons are shared with `models_timm.rs` (tests/models_common/).

mod models_common;

use meal::models::{ARCHS, Form};
use models_common::{Fixture, buggy_ratios, check_eval, check_train, filled, input, load};

const SCRIPT: &str = "scripts/models/make_golden_models.py";

fn fixture() -> (Fixture, Vec<f64>) {
    load("golden", SCRIPT)
}

/// The CIFAR-form zoo (the ImageNet models are held to timm in `models_timm.rs`).
fn cifar_archs() -> impl Iterator<Item = &'static meal::models::ArchInfo> {
    ARCHS.iter().filter(|a| a.form == Form::Cifar)
}

#[test]
fn zoo_eval_forward_matches_pytorch() {
    let (fixture, values) = fixture();
    let device = meal::backend::device();
    let x = input(fixture.batch, fixture.input_size, &device);
    assert_eq!(fixture.models.len(), cifar_archs().count());
    for info in cifar_archs() {
        let want = &fixture.models[info.name];
        let out = filled(info.name, fixture.classes, want, &device).forward(x.clone());
        let worst = check_eval(info.name, out, &want.eval, &values);
        worst.assert_ok(info.name);
        println!(
            "{}: eval, largest error / tolerance {:.3}",
            info.name, worst.ratio
        );
    }
}

#[test]
fn zoo_train_forward_and_backward_match_pytorch() {
    // The model definitions against PyTorch, through burn's own ops: with batch-2 BatchNorm the
    // deepest nets amplify float rounding past any useful tolerance (resnet56's input gradient
    // lands on another branch under any 1e-7 perturbation, meal's kernels or burn's alike), so
    // meal's kernels are held to burn's ops instead, in tests/kernels.rs.
    meal::kernels::set_enabled(Some(false));
    let (fixture, values) = fixture();
    let device = meal::backend::autodiff_device();
    for info in cifar_archs() {
        let want = &fixture.models[info.name];
        let t = want
            .train
            .as_ref()
            .expect("a train pass for every CIFAR model");
        let net = filled(info.name, fixture.classes, want, &device);
        let x = input(fixture.batch, fixture.input_size, &device);
        let worst = check_train(info.name, &net, x, t, &values);
        worst.assert_ok(info.name);
        println!(
            "{}: train + backward, largest error / tolerance {:.3}",
            info.name, worst.ratio
        );
    }
}

/// The comparisons reject, for the small models: a model with its first convolution's kernel
/// flipped (eval outputs), BatchNorm left in eval mode during the train pass (train outputs),
/// and a backward that leaves out the stage terms of the loss (gradients).
#[test]
fn zoo_comparisons_reject_buggy_models() {
    let (fixture, values) = fixture();
    for arch in ["resnet8", "vgg8"] {
        for (bug, ratio) in buggy_ratios(arch, &fixture, &values) {
            println!("{arch} with {bug}: {ratio:.1} tolerances off");
            assert!(ratio > 10.0, "{arch} with {bug} passes: {ratio:.2}");
        }
    }
}
