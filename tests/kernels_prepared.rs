//! Convolution weights kept packed inside an inference scope (`meal::kernels::prepared`): the
//! results must be bit for bit those of the forward that packs its weight on every call, on
//! every lowering (Winograd F(2×2) and F(4×4), direct, im2col), with and without the
//! BatchNorm+activation epilogue (ReLU, SiLU), on every instruction set this CPU has; and a kept form must never
//! be used once the weight has changed (arithmetic on it, written in place or not, a new model).

mod isa_common;

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use isa_common::on_every_isa;
use meal::kernels::activation::{Activation, OutputAct};
use meal::kernels::{self, prepared};

/// `(batch, cin, hw, cout, k, stride, pad)`.
type Case = (usize, usize, usize, usize, usize, usize, usize);

const CASES: [Case; 8] = [
    // Winograd F(4×4) (64 channels, 8×8 maps, 512 pixels).
    (8, 64, 8, 64, 3, 1, 1),
    // Winograd F(2×2) (maps under 3×3).
    (64, 48, 2, 48, 3, 1, 1),
    // The same layer at batch 1: too few pixels for Winograd, direct/im2col instead.
    (1, 64, 8, 64, 3, 1, 1),
    // Direct, stride 1 and 2; resnet20's stem.
    (1, 3, 32, 16, 3, 1, 1),
    (2, 16, 32, 32, 3, 2, 1),
    // im2col (narrow output) and a strided 1×1 shortcut.
    (8, 128, 4, 128, 3, 1, 1),
    (1, 64, 16, 128, 1, 2, 0),
    // A 7×7/2 stem at 56×56.
    (1, 3, 56, 16, 7, 2, 3),
];

fn options((_, _, _, _, _, stride, pad): Case) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1)
}

struct Inputs {
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Tensor<1>,
    scale: Tensor<1>,
    shift: Tensor<1>,
}

fn inputs(c: Case, device: &Device) -> Inputs {
    let (batch, cin, hw, cout, k, _, _) = c;
    let normal = |sd| Distribution::Normal(0.0, sd);
    Inputs {
        x: Tensor::random([batch, cin, hw, hw], normal(1.0), device),
        w: Tensor::random([cout, cin, k, k], normal(0.2), device),
        bias: Tensor::random([cout], normal(0.5), device),
        scale: Tensor::random([cout], Distribution::Uniform(0.5, 1.5), device),
        shift: Tensor::random([cout], normal(0.5), device),
    }
}

/// `conv2d` and `conv2d_affine` (with a bias; with ReLU, then with SiLU, one after the other in
/// the second vector) of one case.
fn both(c: Case, i: &Inputs, w: &Tensor<4>) -> (Vec<f32>, Vec<f32>) {
    let plain = kernels::conv2d(i.x.clone(), w.clone(), None, options(c));
    let affine = |act| {
        host(kernels::conv2d_affine(
            i.x.clone(),
            w.clone(),
            Some(i.bias.clone()),
            (i.scale.clone(), i.shift.clone()),
            act,
            options(c),
        ))
    };
    let relu = affine(OutputAct::Relu);
    let silu = affine(OutputAct::Fused(Activation::Silu));
    (host(plain), [relu, silu].concat())
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 values")
}

fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    assert!(!want.is_empty(), "{what}: no values");
    assert!(
        want.iter().all(|v| v.is_finite()),
        "{what}: non-finite reference"
    );
    let differ = got
        .iter()
        .zip(want)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        differ,
        0,
        "{what}: {differ} of {} values differ",
        want.len()
    );
}

#[test]
fn kept_weights_give_the_packed_per_call_results() {
    on_every_isa("kept_weights_give_the_packed_per_call_results", |isa| {
        let device = Device::default();
        for c in CASES {
            let i = inputs(c, &device);
            let (plain, affine) = both(c, &i, &i.w);
            let scope = prepared::inference();
            assert!(prepared::active());
            // The first call packs and keeps, the second reads what the first kept.
            for call in ["first", "second"] {
                let (p, a) = both(c, &i, &i.w);
                assert_bits(&format!("{isa:?} {c:?} conv, {call} call"), &p, &plain);
                assert_bits(&format!("{isa:?} {c:?} conv+bn, {call} call"), &a, &affine);
            }
            drop(scope);
            assert!(!prepared::active());
        }
    });
}

#[test]
fn a_changed_weight_is_never_read_from_the_kept_form() {
    let device = Device::default();
    let c = CASES[0];
    let mut i = inputs(c, &device);
    let scope = prepared::inference();
    let (before, _) = both(c, &i, &i.w);
    // The last handle of the weight outside the scope's cache: burn-flex writes a scalar op
    // over a buffer it alone holds, so a kept form keyed on the address alone would be stale.
    let w = std::mem::replace(&mut i.w, Tensor::zeros([1, 1, 1, 1], &device));
    let w = w.mul_scalar(-1.5).add_scalar(0.25);
    let (after, after_affine) = both(c, &i, &w);
    drop(scope);
    let (want, want_affine) = both(c, &i, &w);
    assert_bits("changed weight inside the scope", &after, &want);
    assert_bits(
        "changed weight inside the scope, conv+bn",
        &after_affine,
        &want_affine,
    );
    let differ = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(
        differ > before.len() / 2,
        "the change did not change the result ({differ} values)"
    );
}

#[test]
fn a_new_model_in_the_same_scope_is_packed_anew() {
    let device = Device::default();
    let x = Tensor::<4>::random([1, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let build = || meal::models::build("resnet20", 10, &device).expect("resnet20");
    let logits = |net: &meal::models::Net| host(net.forward(x.clone()).logits);
    let net1 = build();
    let want1 = logits(&net1);
    let scope = prepared::inference();
    let got1 = logits(&net1);
    // The first model is gone (its buffers freed); the next is built into new ones.
    drop(net1);
    let net2 = build();
    let got2 = logits(&net2);
    drop(scope);
    let want2 = logits(&net2);
    assert_bits("model 1 in the scope", &got1, &want1);
    assert_bits("model 2 after model 1 in the scope", &got2, &want2);
    assert_ne!(want1, want2, "two models gave the same logits");
}

#[test]
fn models_at_batch_1_and_8_give_the_same_logits_in_a_scope() {
    on_every_isa(
        "models_at_batch_1_and_8_give_the_same_logits_in_a_scope",
        |isa| {
            let device = Device::default();
            for arch in ["resnet20", "resnet18_cifar"] {
                device.seed(3);
                let net = meal::models::build(arch, 10, &device).expect(arch);
                for batch in [1, 8] {
                    let x = Tensor::<4>::random(
                        [batch, 3, 32, 32],
                        Distribution::Normal(0.0, 1.0),
                        &device,
                    );
                    let want = host(net.forward(x.clone()).logits);
                    let _scope = prepared::inference();
                    for call in 0..2 {
                        let got = host(net.forward(x.clone()).logits);
                        assert_bits(
                            &format!("{isa:?} {arch} batch {batch} call {call}"),
                            &got,
                            &want,
                        );
                    }
                }
            }
        },
    );
}
