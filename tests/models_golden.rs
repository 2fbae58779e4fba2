//! Numerical agreement of every zoo model with its PyTorch twin in
//! `scripts/models/param_counts.py`: both sides fill the model with the same deterministic
//! weights, run it in eval mode on the same batch of 2 and compare the mean, mean |x| and 16
//! sampled values of every stage and of the logits (PyTorch in float64, burn in float32; the
//! tolerance is 1e-3 of the tensor's mean |x| on the CPU, 1e-2 on a GPU). The comparison is
//! `meal::selftest::models`, which `meal selftest` runs as well; this test runs it on the
//! device `MEAL_TEST_DEVICE` names.
//!
//! The fixture is `tests/fixtures/models/golden_outputs.json` (regenerate with the script's
//! `--golden`).

use meal::selftest::{Tolerance, models, test_device};

#[test]
fn zoo_matches_pytorch_numerically() {
    let device = test_device();
    let checks = models::zoo(&device, &Tolerance::for_selected());
    assert_eq!(checks.len(), meal::models::ARCHS.len());
    for c in &checks {
        eprintln!("{}: {}", c.name, c.detail);
    }
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
