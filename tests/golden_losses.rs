//! Similarity losses, BCE-with-logits and gradient reversal against PyTorch
//! (`tests/golden/losses.json`), plus the discriminator targets and accuracy.

mod golden_common;

use burn::tensor::{Device, Tensor};
use golden_common::{MaxErr, check, check_scalar, leaf, load, tensor};
use meal::distill::adversarial::{bce_with_logits, discriminator_accuracy, discriminator_targets};
use meal::distill::grl::gradient_reversal;
use meal::distill::similarity::{SimilarityKind, TeacherTarget, similarity, teacher_probs};

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

/// The target as the trainer builds it: one teacher → its softmax; several → the mean of
/// their softmaxes, with the mean of their logits as `raw`.
fn build_target(teachers: &[Tensor<2>], temperature: f64) -> TeacherTarget {
    let k = teachers.len() as f64;
    let mut raw = teachers[0].clone();
    let mut probs = teacher_probs(teachers[0].clone(), temperature);
    for t in &teachers[1..] {
        raw = raw.add(t.clone());
        probs = probs.add(teacher_probs(t.clone(), temperature));
    }
    if teachers.len() > 1 {
        raw = raw.div_scalar(k);
        probs = probs.div_scalar(k);
    }
    TeacherTarget { raw, probs }
}

#[test]
fn similarity_losses_match_pytorch() {
    let golden = load("losses.json");
    let device = Device::default().autodiff();
    let sim = golden["similarity"].as_object().unwrap();
    let inputs = &golden["similarity_inputs"];
    let mut errs = MaxErr::default();
    let mut count = 0;
    for (name, case) in sim {
        if name.starts_with("probs_") {
            continue;
        }
        count += 1;
        let t = case["temperature"].as_f64().unwrap();
        let k = kind(case["kind"].as_str().unwrap());
        let (student, target) = match case["target"].as_str().unwrap() {
            "given" => (
                leaf::<2>(&case["student"], &device),
                TeacherTarget {
                    raw: tensor(&case["raw"], &device),
                    probs: tensor(&case["probs"], &device),
                },
            ),
            which => {
                let inp = &inputs[case["inputs"].as_str().unwrap()];
                let all = inp["teachers"].as_array().unwrap();
                let n = if which == "one" { 1 } else { all.len() };
                let teachers = all[..n]
                    .iter()
                    .map(|v| tensor::<2>(v, &device))
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
                (leaf::<2>(&inp["student"], &device), target)
            }
        };
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
    assert_eq!(count, 2 * 2 * 2 * 6 + 8);
    errs.report();
}

#[test]
fn bce_with_logits_matches_pytorch() {
    let golden = load("losses.json");
    let device = Device::default().autodiff();
    let mut errs = MaxErr::default();
    for (name, case) in golden["bce"].as_object().unwrap() {
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
    let (student, teacher) = discriminator_accuracy(logits, 4);
    assert_eq!(student, 0.75);
    assert_eq!(teacher, 0.5);
}
