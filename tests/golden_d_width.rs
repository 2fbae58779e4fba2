//! The discriminator's width divisor (`meal.d_width_divisor`) against PyTorch
//! (`tests/golden/d_width.json`, from `scripts/golden/make_golden_d_width.py`): MEAL V2's
//! `K = 8` narrowing (1000 → 125 → 15 → 2) and a divisor of 3, forward, BCE loss with MEAL's
//! targets, and the gradients of the input and of every weight and bias.
//!
//! Each tensor is compared relative to its own scale, `|a − e| ≤ RTOL·|e| + ATOL·max|e|`, so
//! tiny gradients are held to their own size; the last test checks that a wrong divisor or a
//! dropped final ReLU is rejected by the same comparison.

mod golden_common;

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use golden_common::{leaf, load, shape_data, tensor, values};
use meal::distill::adversarial::{bce_with_logits, discriminator_targets};
use meal::distill::discriminator::{Discriminator, DiscriminatorConfig, DiscriminatorKind};
use serde_json::Value;

const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

/// The largest error in units of the allowed error (≤ 1 passes), or `None` on a shape mismatch.
fn excess(shape: &[usize], actual: &[f64], expected: &Value) -> Option<f64> {
    let (eshape, e) = shape_data(expected);
    if eshape != shape {
        return None;
    }
    let scale = e.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "an all-zero golden tensor proves nothing");
    Some(actual.iter().zip(&e).fold(0.0f64, |m, (a, e)| {
        m.max((a - e).abs() / (RTOL * e.abs() + ATOL * scale))
    }))
}

fn close<const D: usize>(what: &str, t: Tensor<D>, expected: &Value) -> bool {
    let (shape, data) = values(t);
    match excess(&shape, &data, expected) {
        Some(x) if x <= 1.0 => true,
        Some(x) => {
            eprintln!("{what}: error {x:.3e} × tolerance");
            false
        }
        None => {
            eprintln!("{what}: shape {shape:?} differs");
            false
        }
    }
}

/// A discriminator built by meal for `case`, with the golden weights loaded; `divisor` and
/// `kind` may differ from the case's, to prove that the comparison notices.
fn built(case: &Value, divisor: usize, kind: DiscriminatorKind, device: &Device) -> Discriminator {
    let dim = case["dim"].as_u64().unwrap() as usize;
    let mut disc = DiscriminatorConfig::new(dim, kind)
        .with_divisor(divisor)
        .init(device);
    for (layer, l) in disc
        .layers
        .iter_mut()
        .zip(case["layers"].as_array().unwrap())
    {
        let w: Tensor<2> = tensor(&l["weight"], device);
        if w.dims().iter().rev().copied().collect::<Vec<_>>() == layer.weight.dims() {
            // PyTorch stores [out, in]; burn's Linear stores [in, out].
            layer.weight = Param::from_tensor(w.transpose());
            layer.bias = Some(Param::from_tensor(tensor(&l["bias"], device)));
        }
    }
    disc
}

/// Forward, loss and every gradient of `disc` against `case`; true when all match.
fn matches(name: &str, case: &Value, disc: &Discriminator, device: &Device) -> bool {
    let batch = case["batch"].as_u64().unwrap() as usize;
    let x = leaf::<2>(&case["x"], device);
    let out = disc.forward(x.clone());
    let mut ok = close(&format!("{name} out"), out.clone(), &case["out"]);
    let loss = bce_with_logits(out, discriminator_targets(batch, device));
    let want = case["loss"].as_f64().unwrap();
    let got = f64::from(loss.clone().into_scalar::<f32>());
    if (got - want).abs() > RTOL * want.abs() {
        eprintln!("{name} loss {got} vs {want}");
        ok = false;
    }
    let grads = loss.backward();
    ok &= close(
        &format!("{name} x grad"),
        x.grad(&grads).unwrap(),
        &case["x_grad"],
    );
    for (i, (layer, l)) in disc
        .layers
        .iter()
        .zip(case["layers"].as_array().unwrap())
        .enumerate()
    {
        let gw = layer.weight.val().grad(&grads).unwrap().transpose();
        ok &= close(
            &format!("{name} layer {i} weight grad"),
            gw,
            &l["weight_grad"],
        );
        let gb = layer.bias.as_ref().unwrap().val().grad(&grads).unwrap();
        ok &= close(&format!("{name} layer {i} bias grad"), gb, &l["bias_grad"]);
    }
    ok
}

fn divisor(case: &Value) -> usize {
    case["divisor"].as_u64().unwrap() as usize
}

#[test]
fn divided_discriminators_match_pytorch() {
    let golden = load("d_width.json");
    let device = Device::default().autodiff();
    let cases = golden["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 3);
    for (name, case) in cases {
        let k = divisor(case);
        let disc = built(case, k, DiscriminatorKind::Reference, &device);
        let widths: Vec<usize> = case["widths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_u64().unwrap() as usize)
            .collect();
        let config = DiscriminatorConfig::new(
            case["dim"].as_u64().unwrap() as usize,
            DiscriminatorKind::Reference,
        )
        .with_divisor(k);
        assert_eq!(config.widths().to_vec(), widths, "{name}");
        assert_eq!(
            disc.num_params() as u64,
            case["num_params"].as_u64().unwrap(),
            "{name}"
        );
        assert!(
            matches(name, case, &disc, &device),
            "{name} differs from PyTorch"
        );
    }
}

#[test]
fn widths_and_parameter_counts_match_pytorch() {
    let golden = load("d_width.json");
    let device = Device::default();
    let counts = golden["counts"].as_object().unwrap();
    // MEAL V2's ImageNet discriminator: 1000 → 125 → 15 → 2, 127,047 parameters (spec §4.1).
    assert_eq!(counts["d1000_k8"]["num_params"], 127_047);
    for (name, c) in counts {
        let dim = c["dim"].as_u64().unwrap() as usize;
        let config =
            DiscriminatorConfig::new(dim, DiscriminatorKind::Reference).with_divisor(divisor(c));
        let widths: Vec<u64> = config.widths().iter().map(|&w| w as u64).collect();
        assert_eq!(serde_json::json!(widths), c["widths"], "{name}");
        let d = config.init(&device);
        assert_eq!(
            d.num_params() as u64,
            c["num_params"].as_u64().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_wrong_divisor_or_head_is_rejected() {
    let golden = load("d_width.json");
    let device = Device::default().autodiff();
    for (name, case) in golden["cases"].as_object().unwrap() {
        let k = divisor(case);
        // V1's divisor on a V2 case: other widths, so other outputs and gradients.
        let v1 = built(
            case,
            if k == 2 { 3 } else { 2 },
            DiscriminatorKind::Reference,
            &device,
        );
        assert!(
            !matches(name, case, &v1, &device),
            "{name}: wrong divisor accepted"
        );
        // The same widths without the reference's final ReLU.
        let fixed = built(case, k, DiscriminatorKind::Fixed, &device);
        assert!(
            !matches(name, case, &fixed, &device),
            "{name}: missing ReLU accepted"
        );
    }
}

#[test]
fn a_divisor_that_leaves_no_units_is_refused_naming_the_key() {
    let device = Device::default();
    // CIFAR-10's 10 logits under V2's divisor: 10 → 1 → 0 → 2.
    let err = DiscriminatorConfig::new(10, DiscriminatorKind::Reference)
        .with_divisor(8)
        .try_init(&device)
        .unwrap_err();
    for part in ["meal.d_width_divisor = 8", "10 → 1 → 0 → 2", "64"] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
    assert!(
        DiscriminatorConfig::new(63, DiscriminatorKind::Reference)
            .with_divisor(8)
            .try_init(&device)
            .is_err()
    );
    assert!(
        DiscriminatorConfig::new(64, DiscriminatorKind::Reference)
            .with_divisor(8)
            .try_init(&device)
            .is_ok()
    );
}
