//! The discriminator against PyTorch's 1×1-conv reference (`tests/golden/discriminator.json`):
//! forward, BCE loss with the MEAL targets, and the gradient of every weight, bias and the input.

mod golden_common;

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use golden_common::{
    MaxErr, Rejections, accepts, accepts_scalar, check, check_scalar, leaf, load, tensor,
};
use meal::distill::adversarial::{bce_with_logits, discriminator_targets};
use meal::distill::discriminator::{Discriminator, DiscriminatorConfig, DiscriminatorKind};
use serde_json::Value;

/// The discriminator of a golden case, with PyTorch's weights.
fn golden_disc(case: &Value, device: &Device) -> Discriminator {
    let dim = case["dim"].as_u64().unwrap() as usize;
    let kind = match case["kind"].as_str().unwrap() {
        "reference" => DiscriminatorKind::Reference,
        "fixed" => DiscriminatorKind::Fixed,
        other => panic!("kind {other}"),
    };
    let mut disc: Discriminator = DiscriminatorConfig::new(dim, kind).init(device);
    let layers = case["layers"].as_array().unwrap();
    assert_eq!(disc.layers.len(), layers.len());
    // PyTorch stores [out, in]; burn's Linear stores [in, out].
    for (layer, l) in disc.layers.iter_mut().zip(layers) {
        let w: Tensor<2> = tensor(&l["weight"], device);
        assert_eq!(
            w.dims().iter().rev().copied().collect::<Vec<_>>(),
            layer.weight.dims()
        );
        layer.weight = Param::from_tensor(w.transpose());
        layer.bias = Some(Param::from_tensor(tensor(&l["bias"], device)));
    }
    disc
}

#[test]
fn discriminator_matches_pytorch() {
    let golden = load("discriminator.json");
    let device = Device::default().autodiff();
    let mut errs = MaxErr::default();
    let cases = golden.as_object().unwrap();
    assert_eq!(cases.len(), 4);
    for (name, case) in cases {
        let batch = case["batch"].as_u64().unwrap() as usize;
        let kind = match case["kind"].as_str().unwrap() {
            "reference" => DiscriminatorKind::Reference,
            "fixed" => DiscriminatorKind::Fixed,
            other => panic!("kind {other}"),
        };
        let disc = golden_disc(case, &device);
        assert_eq!(disc.final_relu, kind == DiscriminatorKind::Reference);
        assert_eq!(
            disc.num_params(),
            case["num_params"].as_u64().unwrap() as usize
        );
        let layers = case["layers"].as_array().unwrap();
        let x = leaf::<2>(&case["x"], &device);
        let out = disc.forward(x.clone());
        errs.add(
            "forward",
            check(&format!("{name} out"), out.clone(), &case["out"]),
        );
        let loss = bce_with_logits(out, discriminator_targets(batch, &device));
        errs.add(
            "loss",
            check_scalar(&format!("{name} loss"), loss.clone(), &case["loss"]),
        );
        let grads = loss.backward();
        errs.add(
            "input grad",
            check(
                &format!("{name} x grad"),
                x.grad(&grads).unwrap(),
                &case["x_grad"],
            ),
        );
        for (i, (layer, l)) in disc.layers.iter().zip(layers).enumerate() {
            let gw = layer
                .weight
                .val()
                .grad(&grads)
                .expect("weight grad")
                .transpose();
            errs.add(
                "weight grads",
                check(
                    &format!("{name} layer {i} weight grad"),
                    gw,
                    &l["weight_grad"],
                ),
            );
            let gb = layer
                .bias
                .as_ref()
                .unwrap()
                .val()
                .grad(&grads)
                .expect("bias grad");
            errs.add(
                "bias grads",
                check(&format!("{name} layer {i} bias grad"), gb, &l["bias_grad"]),
            );
        }
    }
    errs.report();
}

#[test]
fn widths_and_parameter_counts_follow_the_spec() {
    let device = Device::default();
    for (dim, widths, params) in [
        (10, [10, 5, 2, 2], 73),
        (500, [500, 250, 125, 2], 156_877),
        (1000, [1000, 500, 250, 2], 626_252),
    ] {
        let config = DiscriminatorConfig::new(dim, DiscriminatorKind::Reference);
        assert_eq!(config.widths(), widths);
        let d = config.init(&device);
        assert_eq!(d.num_params(), params, "d = {dim}");
        let fixed = DiscriminatorConfig::new(dim, DiscriminatorKind::Fixed).init(&device);
        assert_eq!(fixed.num_params(), params);
        assert!(!fixed.final_relu);
        let out = d.forward(Tensor::ones([3, dim], &device));
        assert_eq!(out.dims(), [3, 2]);
    }
}

/// PyTorch's default: weights and biases both `U(±1/√fan_in)`. Each tensor must stay in the
/// bound and fill it (a largest |value| near the bound, a mean |value| near bound/2, values of
/// both signs), so all-zero or one-signed biases fail.
#[test]
fn pytorch_default_init_bounds() {
    let device = Device::default();
    let d = DiscriminatorConfig::new(400, DiscriminatorKind::Reference).init(&device);
    // Biases of the last layer (2 values) say little alone: judge them with the weights' bound
    // pooled over layers, as values scaled to ±1.
    let mut scaled_biases = Vec::new();
    for (i, layer) in d.layers.iter().enumerate() {
        let fan_in = layer.weight.dims()[0] as f32;
        let bound = 1.0 / fan_in.sqrt();
        let w = layer.weight.val().try_into_vec_as::<f32>().unwrap();
        let b = layer
            .bias
            .as_ref()
            .unwrap()
            .val()
            .try_into_vec_as::<f32>()
            .unwrap();
        for v in w.iter().chain(&b) {
            assert!(v.abs() <= bound, "layer {i}: {v} outside ±{bound}");
        }
        assert_fills_bound(&format!("layer {i} weight"), &w, bound);
        if b.len() >= 50 {
            assert_fills_bound(&format!("layer {i} bias"), &b, bound);
        }
        scaled_biases.extend(b.iter().map(|v| v / bound));
    }
    assert_fills_bound("all biases / bound", &scaled_biases, 1.0);
}

/// `values` look like `U(±bound)`: largest |v| above 0.9·bound, mean |v| within 0.4..0.6 of
/// bound, and both signs present in about equal numbers.
fn assert_fills_bound(what: &str, values: &[f32], bound: f32) {
    let n = values.len() as f32;
    let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mean_abs = values.iter().map(|v| v.abs()).sum::<f32>() / n;
    let negative = values.iter().filter(|&&v| v < 0.0).count() as f32 / n;
    assert!(
        max > 0.9 * bound,
        "{what}: largest |v| {max} of bound {bound}"
    );
    assert!(
        (0.4 * bound..0.6 * bound).contains(&mean_abs),
        "{what}: mean |v| {mean_abs}, uniform gives {}",
        0.5 * bound
    );
    assert!(
        (0.3..0.7).contains(&negative),
        "{what}: {negative} of the values negative"
    );
}

/// The reference keeps a ReLU after the last layer, so its logits are never negative; the fixed
/// discriminator drops it, so on the same input (and the same weights) some logits are negative
/// and equal the reference's pre-activation.
#[test]
fn reference_logits_are_non_negative_fixed_ones_are_not() {
    let device = Device::default();
    let x = Tensor::<2>::random(
        [64, 40],
        burn::tensor::Distribution::Normal(0.0, 3.0),
        &device,
    );
    let reference = DiscriminatorConfig::new(40, DiscriminatorKind::Reference).init(&device);
    let r = reference
        .forward(x.clone())
        .try_into_vec_as::<f32>()
        .unwrap();
    assert!(r.iter().all(|&z| z >= 0.0), "reference logits: {r:?}");
    let mut fixed = DiscriminatorConfig::new(40, DiscriminatorKind::Fixed).init(&device);
    fixed.layers = reference.layers.clone();
    let v = fixed.forward(x).try_into_vec_as::<f32>().unwrap();
    let negative = v.iter().filter(|&&z| z < 0.0).count();
    assert!(
        negative > 0,
        "no negative logit without the final ReLU: {v:?}"
    );
    for (f, r) in v.iter().zip(&r) {
        assert_eq!(f.max(0.0), *r, "fixed {f} vs reference {r}");
    }
}

/// Each golden case rejects a discriminator with one bug: the final ReLU toggled (where it
/// changes some output), the BCE targets swapped, or the weights of one layer scaled by 2.
#[test]
fn discriminator_comparison_rejects_buggy_implementations() {
    let golden = load("discriminator.json");
    let device = Device::default().autodiff();
    let mut rejections = Rejections::default();
    for (name, case) in golden.as_object().unwrap() {
        let batch = case["batch"].as_u64().unwrap() as usize;
        let disc = golden_disc(case, &device);
        for bug in ["relu toggled", "targets swapped", "layer 1 doubled"] {
            let mut d = disc.clone();
            let mut y = discriminator_targets(batch, &device);
            match bug {
                "relu toggled" => d.final_relu = !d.final_relu,
                "targets swapped" => y = y.neg().add_scalar(1.0),
                _ => {
                    d.layers[1].weight =
                        Param::from_tensor(d.layers[1].weight.val().mul_scalar(2.0).detach())
                }
            }
            let x = leaf::<2>(&case["x"], &device);
            let out = d.forward(x.clone());
            let out_ok = accepts(out.clone(), &case["out"]);
            if bug == "relu toggled" && out_ok {
                // Only a negative pre-activation tells the two apart; the fixed cases have some.
                assert_eq!(case["kind"], "reference", "{name}: fixed logits all ≥ 0");
                continue;
            }
            let loss = bce_with_logits(out, y);
            let loss_ok = accepts_scalar(loss.clone(), &case["loss"]);
            let grad_ok = accepts(x.grad(&loss.backward()).unwrap(), &case["x_grad"]);
            rejections.see(format!("{name} {bug}"), out_ok && loss_ok && grad_ok);
        }
    }
    rejections.assert_all_rejected(10);
}

#[test]
fn too_small_dims_are_rejected() {
    let device = Device::default();
    for dim in 0..4 {
        let err = DiscriminatorConfig::new(dim, DiscriminatorKind::Reference)
            .try_init(&device)
            .unwrap_err();
        assert!(err.contains(&dim.to_string()), "{err}");
    }
    let d = DiscriminatorConfig::new(4, DiscriminatorKind::Fixed)
        .try_init(&device)
        .unwrap();
    assert_eq!(d.num_params(), 4 * 2 + 2 + 2 + 1 + 2 + 2);
}
