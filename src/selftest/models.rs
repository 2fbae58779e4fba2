//! Every zoo model against its PyTorch twin (`scripts/models/param_counts.py --golden`): both
//! fill the model with the same deterministic weights (a splitmix64 stream keyed by the FNV-1a
//! hash of each tensor's PyTorch module path), run it in eval mode on the same batch of 2 and
//! compare the mean, mean |x| and 16 sampled values of every stage and of the logits. This
//! catches wiring errors that counts and shapes cannot see (concatenation order, which tensor
//! a shortcut reads, pooling and padding) and, on a GPU, its convolution kernels.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use super::fill::{Filler, fnv1a, uniform};
use super::golden::MODEL_OUTPUTS;
use super::{Check, Tolerance};
use crate::backend::read;
use crate::models::{self, ARCHS, Form};

#[derive(Deserialize)]
struct Summary {
    shape: Vec<usize>,
    mean: f64,
    mean_abs: f64,
    samples: Vec<f64>,
}

#[derive(Deserialize)]
struct Golden {
    keys_digest: String,
    tensors: usize,
    stages: Vec<Summary>,
    logits: Summary,
}

fn check_values(
    what: &str,
    dims: &[usize],
    data: TensorData,
    want: &Summary,
    tol: &Tolerance,
) -> Result<f64, String> {
    if dims != want.shape.as_slice() {
        return Err(format!("{what}: shape {dims:?}, PyTorch {:?}", want.shape));
    }
    let v: Vec<f32> = data
        .try_to_vec_as::<f32>()
        .map_err(|e| format!("{what}: {e:?}"))?;
    let n = v.len();
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let mean_abs = v.iter().map(|&x| f64::from(x).abs()).sum::<f64>() / n as f64;
    let bound = tol.summary * want.mean_abs + 1e-9;
    let mut worst = 0.0f64;
    let mut close = |label: &str, a: f64, b: f64| {
        let err = (a - b).abs();
        worst = worst.max(err / want.mean_abs.max(1e-12));
        if err <= bound {
            Ok(())
        } else {
            Err(format!(
                "{what}: {label} {a} vs PyTorch {b} (error {err:.3e} > bound {bound:.3e})"
            ))
        }
    };
    close("mean", mean, want.mean)?;
    close("mean |x|", mean_abs, want.mean_abs)?;
    for (j, &expected) in want.samples.iter().enumerate() {
        let got = f64::from(v[(j * (n - 1)) / 15]);
        close(&format!("sample {j}"), got, expected)?;
    }
    Ok(worst)
}

/// One architecture: names and shapes of its tensors, then every stage and the logits.
/// Returns the largest error relative to the tensor's mean |x|.
pub fn arch(
    name: &str,
    golden: &BTreeMap<String, serde_json::Value>,
    device: &Device,
    tol: &Tolerance,
) -> Result<f64, String> {
    let want: Golden = serde_json::from_value(
        golden
            .get(name)
            .ok_or_else(|| format!("golden_outputs.json has no {name}"))?
            .clone(),
    )
    .map_err(|e| format!("golden_outputs.json, {name}: {e}"))?;
    let mut filler = Filler::for_net();
    let net = models::build(name, 10, device)
        .map_err(|e| e.to_string())?
        .map(&mut filler);
    if let Some(e) = filler.error {
        return Err(format!("{name}: {e}"));
    }
    filler.keys.sort();
    if filler.keys.len() != want.tensors {
        return Err(format!(
            "{name}: {} tensors, PyTorch has {}",
            filler.keys.len(),
            want.tensors
        ));
    }
    let digest = format!("{:016x}", fnv1a(&filler.keys.join("\n")));
    if digest != want.keys_digest {
        return Err(format!("{name}: tensor names/shapes differ from PyTorch's"));
    }
    let x: Vec<f32> = uniform("input", 2 * 3 * 32 * 32)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [2, 3, 32, 32]), device);
    let out = net.forward(x);
    if out.stages.len() != want.stages.len() {
        return Err(format!(
            "{name}: {} stages, PyTorch {}",
            out.stages.len(),
            want.stages.len()
        ));
    }
    let mut worst = 0.0f64;
    for (i, (stage, w)) in out.stages.into_iter().zip(&want.stages).enumerate() {
        let dims = stage.dims();
        let err = check_values(
            &format!("{name} stage {i}"),
            &dims,
            read::data(stage, "a stage's output").map_err(|e| e.to_string())?,
            w,
            tol,
        )?;
        worst = worst.max(err);
    }
    let dims = out.logits.dims();
    let err = check_values(
        &format!("{name} logits"),
        &dims,
        read::data(out.logits, "the logits").map_err(|e| e.to_string())?,
        &want.logits,
        tol,
    )?;
    Ok(worst.max(err))
}

/// The architectures with golden outputs: the CIFAR-form zoo models (the ImageNet-form ones are
/// held to timm by the test suite, tests/models_timm.rs). `names` picks some of them, in the
/// zoo's order; a name outside them is an error that lists them.
pub fn select(names: &[String]) -> Result<Vec<&'static str>, String> {
    let cifar: Vec<&'static str> = ARCHS
        .iter()
        .filter(|info| info.form == Form::Cifar)
        .map(|info| info.name)
        .collect();
    if let Some(bad) = names.iter().find(|n| !cifar.contains(&n.as_str())) {
        return Err(format!(
            "--models: `{bad}` has no golden outputs; the models checked against PyTorch are {}",
            cifar.join(", ")
        ));
    }
    if names.is_empty() {
        return Ok(cifar);
    }
    Ok(cifar
        .into_iter()
        .filter(|a| names.iter().any(|n| n == a))
        .collect())
}

/// One check per architecture of `archs` (from [`select`]).
pub fn zoo(device: &Device, tol: &Tolerance, archs: &[&str]) -> Vec<Check> {
    let golden: BTreeMap<String, serde_json::Value> = match serde_json::from_str(MODEL_OUTPUTS) {
        Ok(g) => g,
        Err(e) => {
            return vec![Check::from_result(
                "model zoo vs PyTorch",
                Err(format!("golden_outputs.json: {e}")),
            )];
        }
    };
    archs
        .iter()
        .map(|&name| {
            Check::from_result(
                format!("{name} forward vs PyTorch"),
                arch(name, &golden, device, tol).map(|w| format!("max error {w:.2e} of mean |x|")),
            )
        })
        .collect()
}
