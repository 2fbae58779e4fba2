//! Similarity losses, BCE-with-logits and gradient reversal against PyTorch
//! (`tests/golden/losses.json`): values and the gradients of the student's logits.

use burn::tensor::{Device, Tensor};
use serde_json::Value;

use super::Tolerance;
use super::golden::{LOSSES, check, check_scalar, leaf, parse, tensor};
use crate::distill::adversarial::bce_with_logits;
use crate::distill::grl::gradient_reversal as reverse_gradient;
use crate::distill::similarity::{
    SimilarityKind, TeacherTarget, similarity as loss_of, teacher_probs,
};

fn kind(name: &str) -> Result<SimilarityKind, String> {
    Ok(match name {
        "ce" => SimilarityKind::Ce,
        "kl" => SimilarityKind::Kl,
        "l1" => SimilarityKind::L1,
        "l2" => SimilarityKind::L2,
        "l1_soft" => SimilarityKind::L1Soft,
        "l2_soft" => SimilarityKind::L2Soft,
        other => return Err(format!("losses.json: unknown similarity {other}")),
    })
}

fn str_of<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    v[key]
        .as_str()
        .ok_or_else(|| format!("losses.json: `{key}` is not a string"))
}

fn num_of(v: &Value, key: &str) -> Result<f64, String> {
    v[key]
        .as_f64()
        .ok_or_else(|| format!("losses.json: `{key}` is not a number"))
}

/// The target as the trainer builds it: one teacher → its softmax; several → the mean of
/// their softmaxes, with the mean of their logits as `raw`. Shared with `tests/golden_losses.rs`.
pub fn build_target(teachers: &[Tensor<2>], temperature: f64) -> TeacherTarget {
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

/// Every similarity case (6 kinds × temperatures × targets): loss, student gradient and the
/// teachers' probabilities. `device` must be an autodiff device.
pub fn similarity(device: &Device, tol: &Tolerance) -> Result<String, String> {
    let golden = parse("losses.json", LOSSES)?;
    let sim = golden["similarity"]
        .as_object()
        .ok_or("losses.json: no `similarity` table")?;
    let inputs = &golden["similarity_inputs"];
    let (mut count, mut max_err) = (0usize, 0.0f64);
    for (name, case) in sim {
        if name.starts_with("probs_") {
            continue;
        }
        count += 1;
        let t = num_of(case, "temperature")?;
        let k = kind(str_of(case, "kind")?)?;
        let (student, target) = match str_of(case, "target")? {
            "given" => (
                leaf::<2>(&case["student"], device)?,
                TeacherTarget {
                    raw: tensor(&case["raw"], device)?,
                    probs: tensor(&case["probs"], device)?,
                },
            ),
            which => {
                let input_name = str_of(case, "inputs")?;
                let inp = &inputs[input_name];
                let all = inp["teachers"]
                    .as_array()
                    .ok_or_else(|| format!("losses.json: inputs {input_name} has no teachers"))?;
                let n = if which == "one" { 1 } else { all.len() };
                let teachers = all[..n]
                    .iter()
                    .map(|v| tensor::<2>(v, device))
                    .collect::<Result<Vec<_>, _>>()?;
                let target = build_target(&teachers, t);
                let key = format!("probs_T{}_{which}_{input_name}", t as u32);
                max_err = max_err.max(check(&key, target.probs.clone(), &sim[&key], tol)?);
                (leaf::<2>(&inp["student"], device)?, target)
            }
        };
        let loss = loss_of(k, student.clone(), &target, t);
        max_err = max_err.max(check_scalar(name, loss.clone(), &case["loss"], tol)?);
        let grads = loss.backward();
        let grad = student
            .grad(&grads)
            .ok_or_else(|| format!("{name}: no gradient reached the student"))?;
        max_err = max_err.max(check(&format!("{name} grad"), grad, &case["grad"], tol)?);
    }
    // 6 kinds × 2 temperatures × 2 input sets × 2 targets, plus 8 given-target cases.
    if count != 2 * 2 * 2 * 6 + 8 {
        return Err(format!(
            "losses.json: {count} similarity cases, expected 56"
        ));
    }
    Ok(format!("{count} cases, max abs error {max_err:.2e}"))
}

/// BCE-with-logits value and gradient. `device` must be an autodiff device.
pub fn bce(device: &Device, tol: &Tolerance) -> Result<String, String> {
    let golden = parse("losses.json", LOSSES)?;
    let cases = golden["bce"]
        .as_object()
        .ok_or("losses.json: no `bce` table")?;
    let mut max_err = 0.0f64;
    for (name, case) in cases {
        let z = leaf::<2>(&case["logits"], device)?;
        let y = tensor::<2>(&case["targets"], device)?;
        let loss = bce_with_logits(z.clone(), y);
        max_err = max_err.max(check_scalar(name, loss.clone(), &case["loss"], tol)?);
        let grads = loss.backward();
        let grad = z
            .grad(&grads)
            .ok_or_else(|| format!("bce {name}: no gradient"))?;
        max_err = max_err.max(check(
            &format!("bce {name} grad"),
            grad,
            &case["grad"],
            tol,
        )?);
    }
    if cases.is_empty() {
        return Err("losses.json: no bce cases".into());
    }
    Ok(format!(
        "{} cases, max abs error {max_err:.2e}",
        cases.len()
    ))
}

/// A loss through gradient reversal: forward unchanged, gradient negated.
pub fn gradient_reversal(device: &Device, tol: &Tolerance) -> Result<String, String> {
    let golden = parse("losses.json", LOSSES)?;
    let g = &golden["grl"];
    let x = leaf::<2>(&g["x"], device)?;
    let w = tensor::<2>(&g["w"], device)?;
    let c = tensor::<2>(&g["c"], device)?;
    let e = tensor::<2>(&g["e"], device)?;
    let h = x.clone().matmul(w).tanh();
    let reversed = reverse_gradient(h.clone());
    let loss = c.mul(reversed.square()).sum().add(e.mul(h).sum());
    let err_loss = check_scalar("grl loss", loss.clone(), &g["loss"], tol)?;
    let grads = loss.backward();
    let grad = x.grad(&grads).ok_or("grl: no gradient reached x")?;
    let err_grad = check("grl grad", grad, &g["grad"], tol)?;
    Ok(format!(
        "max abs error loss {err_loss:.2e}, grad {err_grad:.2e}"
    ))
}
