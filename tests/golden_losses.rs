//! Similarity losses, BCE-with-logits and gradient reversal against PyTorch
//! (`tests/golden/losses.json`), plus the discriminator targets and accuracy.

mod golden_common;

use burn::tensor::{Device, Tensor};
use golden_common::{
    MaxErr, Rejections, accepts, accepts_scalar, check, check_scalar, leaf, load, tensor,
};
use meal::distill::adversarial::{bce_with_logits, discriminator_accuracy, discriminator_targets};
use meal::distill::grl::gradient_reversal;
use meal::distill::similarity::{SimilarityKind, TeacherTarget, similarity};
use meal::selftest::losses::build_target;
use serde_json::Value;

fn kind(name: &str) -> SimilarityKind {
    match name {
        "ce" => SimilarityKind::Ce,
        "kl" => SimilarityKind::Kl,
        "l1" => SimilarityKind::L1,
        "l2" => SimilarityKind::L2,
        "l1_soft" => SimilarityKind::L1Soft,
        "l2_soft" => SimilarityKind::L2Soft,
        other => panic!("unknown similarity {other}"),
    }
}

/// The student (a gradient-recording leaf) and the teacher target of one similarity case; the
/// mean target's probabilities are checked against PyTorch on the way.
fn case_inputs(
    case: &Value,
    golden: &Value,
    device: &Device,
    errs: &mut MaxErr,
) -> (Tensor<2>, TeacherTarget) {
    let sim = &golden["similarity"];
    let t = case["temperature"].as_f64().unwrap();
    match case["target"].as_str().unwrap() {
        "given" => (
            leaf::<2>(&case["student"], device),
            TeacherTarget {
                raw: tensor(&case["raw"], device),
                probs: tensor(&case["probs"], device),
            },
        ),
        which => {
            let inp = &golden["similarity_inputs"][case["inputs"].as_str().unwrap()];
            let all = inp["teachers"].as_array().unwrap();
            let n = if which == "one" { 1 } else { all.len() };
            let teachers = all[..n]
                .iter()
                .map(|v| tensor::<2>(v, device))
                .collect::<Vec<_>>();
            let target = build_target(&teachers, t);
            let key = format!(
                "probs_T{}_{which}_{}",
                t as u32,
                case["inputs"].as_str().unwrap()
            );
            errs.add(
                "teacher probs",
                check(&key, target.probs.clone(), &sim[&key]),
            );
            (leaf::<2>(&inp["student"], device), target)
        }
    }
}

/// The loss cases (not the `probs_*` entries) of `losses.json`.
fn similarity_cases(golden: &Value) -> Vec<(&String, &Value)> {
    golden["similarity"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| !name.starts_with("probs_"))
        .collect()
}

#[test]
fn similarity_losses_match_pytorch() {
    let golden = load("losses.json");
    let device = Device::default().autodiff();
    let mut errs = MaxErr::default();
    let cases = similarity_cases(&golden);
    assert_eq!(cases.len(), 2 * 2 * 2 * 6 + 8);
    for (name, case) in cases {
        let t = case["temperature"].as_f64().unwrap();
        let k = kind(case["kind"].as_str().unwrap());
        let (student, target) = case_inputs(case, &golden, &device, &mut errs);
        let loss = similarity(k, student.clone(), &target, t);
        errs.add(
            &format!("{} loss", case["kind"].as_str().unwrap()),
            check_scalar(name, loss.clone(), &case["loss"]),
        );
        let grads = loss.backward();
        let grad = student.grad(&grads).expect("student gradient");
        errs.add(
            &format!("{} student grad", case["kind"].as_str().unwrap()),
            check(&format!("{name} grad"), grad, &case["grad"]),
        );
    }
    errs.report();
}

/// A similarity loss with one deliberate bug.
#[derive(Debug, Clone, Copy)]
enum Bug {
    /// The loss (and so the gradient) with the wrong sign.
    Sign,
    /// Twice the loss.
    Double,
    /// The T² factor of ce/kl left out (or, for the others, added).
    TSquared,
    /// The student's logits not divided by T.
    NoTemperature,
}

fn buggy_similarity(
    bug: Bug,
    k: SimilarityKind,
    s: Tensor<2>,
    target: &TeacherTarget,
    t: f64,
) -> Tensor<1> {
    let scaled = matches!(k, SimilarityKind::Ce | SimilarityKind::Kl);
    match bug {
        Bug::Sign => similarity(k, s, target, t).neg(),
        Bug::Double => similarity(k, s, target, t).mul_scalar(2.0),
        Bug::TSquared if scaled => similarity(k, s, target, t).div_scalar(t * t),
        Bug::TSquared => similarity(k, s, target, t).mul_scalar(t * t),
        Bug::NoTemperature => similarity(k, s.mul_scalar(t), target, t),
    }
}

/// Every similarity case rejects each bug in its loss or its gradient (the bugs that leave a
/// case unchanged, such as T² at T = 1, are skipped), and rejects a zero or halved gradient: the
/// comparison holds each tensor to its own scale, even the 3e-6 gradients of l2_soft at T = 4.
#[test]
fn similarity_comparison_rejects_buggy_implementations() {
    let golden = load("losses.json");
    let device = Device::default().autodiff();
    let mut errs = MaxErr::default();
    let mut rejections = Rejections::default();
    for (name, case) in similarity_cases(&golden) {
        let t = case["temperature"].as_f64().unwrap();
        let k = kind(case["kind"].as_str().unwrap());
        let (student, target) = case_inputs(case, &golden, &device, &mut errs);
        for bug in [Bug::Sign, Bug::Double, Bug::TSquared, Bug::NoTemperature] {
            let same = t == 1.0 && matches!(bug, Bug::TSquared | Bug::NoTemperature);
            if same {
                continue;
            }
            let loss = buggy_similarity(bug, k, student.clone(), &target, t);
            let loss_ok = accepts_scalar(loss.clone(), &case["loss"]);
            let grad = student.grad(&loss.backward()).unwrap();
            let grad_ok = accepts(grad, &case["grad"]);
            rejections.see(format!("{name} {bug:?}"), loss_ok && grad_ok);
        }
        let loss = similarity(k, student.clone(), &target, t);
        let grad = student.grad(&loss.backward()).unwrap();
        rejections.see(
            format!("{name} zero gradient"),
            accepts(grad.zeros_like(), &case["grad"]),
        );
        rejections.see(
            format!("{name} halved gradient"),
            accepts(grad.div_scalar(2.0), &case["grad"]),
        );
    }
    rejections.assert_all_rejected(56 * 4);
}

#[test]
fn bce_with_logits_matches_pytorch() {
    let golden = load("losses.json");
    let device = Device::default().autodiff();
    let mut errs = MaxErr::default();
    let cases = golden["bce"].as_object().unwrap();
    assert_eq!(cases.len(), 2, "the bce cases of make_golden.py");
    for (name, case) in cases {
        let z = leaf::<2>(&case["logits"], &device);
        let y = tensor::<2>(&case["targets"], &device);
        let loss = bce_with_logits(z.clone(), y);
        errs.add("bce loss", check_scalar(name, loss.clone(), &case["loss"]));
        let grads = loss.backward();
        errs.add(
            "bce grad",
            check(
                &format!("bce {name} grad"),
                z.grad(&grads).unwrap(),
                &case["grad"],
            ),
        );
    }
    errs.report();
}

#[test]
fn gradient_reversal_matches_pytorch() {
    let golden = load("losses.json");
    let g = &golden["grl"];
    let device = Device::default().autodiff();
    let x = leaf::<2>(&g["x"], &device);
    let w = tensor::<2>(&g["w"], &device);
    let c = tensor::<2>(&g["c"], &device);
    let e = tensor::<2>(&g["e"], &device);
    let h = x.clone().matmul(w).tanh();
    let reversed = gradient_reversal(h.clone());
    let loss = c.mul(reversed.square()).sum().add(e.mul(h).sum());
    let err_loss = check_scalar("grl loss", loss.clone(), &g["loss"]);
    let grads = loss.backward();
    let err_grad = check("grl grad", x.grad(&grads).unwrap(), &g["grad"]);
    println!("max abs error grl loss: {err_loss:e}, grad: {err_grad:e}");
}

/// A BCE with a bug: (logits, targets, element count) → loss.
type BuggyBce = fn(Tensor<2>, Tensor<2>, f64) -> Tensor<1>;

/// BCE with its classic bugs (targets swapped, summed instead of averaged, a sign, a factor 2)
/// and a gradient "reversal" that does not reverse are all rejected.
#[test]
fn bce_and_grl_comparisons_reject_buggy_implementations() {
    let golden = load("losses.json");
    let device = Device::default().autodiff();
    let mut rejections = Rejections::default();
    for (name, case) in golden["bce"].as_object().unwrap() {
        let y = tensor::<2>(&case["targets"], &device);
        let numel = y.dims().iter().product::<usize>() as f64;
        let bugs: [(&str, BuggyBce); 4] = [
            ("targets swapped", |z, y, _| {
                bce_with_logits(z, y.neg().add_scalar(1.0))
            }),
            ("summed", |z, y, n| bce_with_logits(z, y).mul_scalar(n)),
            ("sign", |z, y, _| bce_with_logits(z, y).neg()),
            ("doubled", |z, y, _| bce_with_logits(z, y).mul_scalar(2.0)),
        ];
        for (bug, f) in bugs {
            let z = leaf::<2>(&case["logits"], &device);
            let loss = f(z.clone(), y.clone(), numel);
            let loss_ok = accepts_scalar(loss.clone(), &case["loss"]);
            let grad_ok = accepts(z.grad(&loss.backward()).unwrap(), &case["grad"]);
            rejections.see(format!("bce {name} {bug}"), loss_ok && grad_ok);
        }
    }
    let g = &golden["grl"];
    let x = leaf::<2>(&g["x"], &device);
    let h = x.clone().matmul(tensor::<2>(&g["w"], &device)).tanh();
    let c = tensor::<2>(&g["c"], &device);
    let e = tensor::<2>(&g["e"], &device);
    // The identity in place of the reversal: the same loss, a different gradient.
    let loss = c.mul(h.clone().square()).sum().add(e.mul(h).sum());
    assert!(accepts_scalar(loss.clone(), &g["loss"]));
    rejections.see(
        "grl without reversal",
        accepts(x.grad(&loss.backward()).unwrap(), &g["grad"]),
    );
    rejections.assert_all_rejected(9);
}

#[test]
fn gradient_reversal_is_exact_identity_forward() {
    let device = Device::default();
    let values = [1.5f32, -3.25e-7, 1e30, -1e-38, 7.0, 0.1, f32::MAX / 4.0];
    let x = Tensor::<1>::from_floats(values, &device);
    let y = gradient_reversal(x).try_into_vec_as::<f32>().unwrap();
    assert_eq!(y, values.to_vec());
}

#[test]
fn discriminator_targets_layout() {
    let device = Device::default();
    let y = discriminator_targets(3, &device);
    assert_eq!(y.dims(), [6, 2]);
    assert_eq!(
        y.try_into_vec_as::<f32>().unwrap(),
        vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    );
}

#[test]
fn discriminator_accuracy_counts_ties_as_index_zero() {
    let device = Device::default();
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
    let (student, teacher) = discriminator_accuracy(logits, 4).unwrap();
    assert_eq!(student, 0.75);
    assert_eq!(teacher, 0.5);
}
