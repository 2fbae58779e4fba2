//! The discriminator against PyTorch's 1×1-conv reference (`tests/golden/discriminator.json`):
//! forward, BCE loss with the MEAL targets, and the gradient of every weight, bias and the input.

mod golden_common;

use burn::module::Param;
use burn::tensor::Tensor;
use golden_common::{MaxErr, check, check_scalar, leaf, load, tensor};
use meal::distill::adversarial::{bce_with_logits, discriminator_targets};
use meal::distill::discriminator::{Discriminator, DiscriminatorConfig, DiscriminatorKind};

#[test]
fn discriminator_matches_pytorch() {
    let golden = load("discriminator.json");
    let device = golden_common::device().autodiff();
    let mut errs = MaxErr::default();
    let cases = golden.as_object().unwrap();
    assert_eq!(cases.len(), 4);
    for (name, case) in cases {
        let dim = case["dim"].as_u64().unwrap() as usize;
        let batch = case["batch"].as_u64().unwrap() as usize;
        let kind = match case["kind"].as_str().unwrap() {
            "reference" => DiscriminatorKind::Reference,
            "fixed" => DiscriminatorKind::Fixed,
            other => panic!("kind {other}"),
        };
        let mut disc: Discriminator = DiscriminatorConfig::new(dim, kind).init(&device);
        assert_eq!(disc.final_relu, kind == DiscriminatorKind::Reference);
        assert_eq!(
            disc.num_params(),
            case["num_params"].as_u64().unwrap() as usize
        );
        let layers = case["layers"].as_array().unwrap();
        assert_eq!(disc.layers.len(), layers.len());
        // PyTorch stores [out, in]; burn's Linear stores [in, out].
        for (layer, l) in disc.layers.iter_mut().zip(layers) {
            let w: Tensor<2> = tensor(&l["weight"], &device);
            assert_eq!(
                w.dims().iter().rev().copied().collect::<Vec<_>>(),
                layer.weight.dims()
            );
            layer.weight = Param::from_tensor(w.transpose());
            layer.bias = Some(Param::from_tensor(tensor(&l["bias"], &device)));
        }
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
    let device = golden_common::device();
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

#[test]
fn pytorch_default_init_bounds() {
    let device = golden_common::device();
    let d = DiscriminatorConfig::new(400, DiscriminatorKind::Reference).init(&device);
    for layer in &d.layers {
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
            assert!(v.abs() <= bound, "{v} outside ±{bound}");
        }
        // not degenerate: the weights spread over most of the range
        let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.9 * bound);
    }
}

#[test]
fn reference_logits_are_non_negative_fixed_ones_are_not() {
    let device = golden_common::device();
    let x = Tensor::<2>::random(
        [64, 40],
        burn::tensor::Distribution::Normal(0.0, 3.0),
        &device,
    );
    let reference = DiscriminatorConfig::new(40, DiscriminatorKind::Reference).init(&device);
    let min = reference.forward(x.clone()).min().into_scalar::<f32>();
    assert!(min >= 0.0);
    let fixed = DiscriminatorConfig::new(40, DiscriminatorKind::Fixed).init(&device);
    let v = fixed.forward(x).try_into_vec_as::<f32>().unwrap();
    assert!(v.iter().any(|&z| z != 0.0));
}

#[test]
fn too_small_dims_are_rejected() {
    let device = golden_common::device();
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
