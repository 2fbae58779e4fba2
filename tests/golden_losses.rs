//! Similarity losses, BCE-with-logits and gradient reversal against PyTorch
//! (`tests/golden/losses.json`), plus the discriminator targets and accuracy.

mod golden_common;

use burn::tensor::Tensor;
use meal::distill::adversarial::{discriminator_accuracy, discriminator_targets};
use meal::distill::grl::gradient_reversal;
use meal::selftest::{Tolerance, losses};

fn pass(result: Result<String, String>) {
    match result {
        Ok(summary) => println!("{summary}"),
        Err(e) => panic!("{e}"),
    }
}

/// The comparisons live in the library so that `meal selftest` runs them too.
#[test]
fn similarity_losses_match_pytorch() {
    let device = golden_common::device().autodiff();
    pass(losses::similarity(&device, &Tolerance::for_selected()));
}

#[test]
fn bce_with_logits_matches_pytorch() {
    let device = golden_common::device().autodiff();
    pass(losses::bce(&device, &Tolerance::for_selected()));
}

#[test]
fn gradient_reversal_matches_pytorch() {
    let device = golden_common::device().autodiff();
    pass(losses::gradient_reversal(
        &device,
        &Tolerance::for_selected(),
    ));
}

#[test]
fn gradient_reversal_is_exact_identity_forward() {
    let device = golden_common::device();
    let values = [1.5f32, -3.25e-7, 1e30, -1e-38, 7.0, 0.1, f32::MAX / 4.0];
    let x = Tensor::<1>::from_floats(values, &device);
    let y = gradient_reversal(x).try_into_vec_as::<f32>().unwrap();
    assert_eq!(y, values.to_vec());
}

#[test]
fn discriminator_targets_layout() {
    let device = golden_common::device();
    let y = discriminator_targets(3, &device);
    assert_eq!(y.dims(), [6, 2]);
    assert_eq!(
        y.try_into_vec_as::<f32>().unwrap(),
        vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    );
}

#[test]
fn discriminator_accuracy_counts_ties_as_index_zero() {
    let device = golden_common::device();
    // student rows (target 0): correct, wrong, tie → 0 (correct), correct
    // teacher rows (target 1): correct, tie → 0 (wrong), wrong, correct
    let logits = Tensor::<2>::from_floats(
        [
            [2.0, 1.0],
            [0.0, 3.0],
            [0.5, 0.5],
            [-1.0, -2.0],
            [0.0, 1.0],
            [0.0, 0.0],
            [4.0, 1.0],
            [-5.0, -4.0],
        ],
        &device,
    );
    let (student, teacher) = discriminator_accuracy(logits, 4);
    assert_eq!(student, 0.75);
    assert_eq!(teacher, 0.5);
}
