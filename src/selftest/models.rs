//! Every zoo model against its PyTorch twin (`scripts/models/param_counts.py --golden`): both
//! fill the model with the same deterministic weights (a splitmix64 stream keyed by the FNV-1a
//! hash of each tensor's PyTorch module path), run it in eval mode on the same batch of 2 and
//! compare the mean, mean |x| and 16 sampled values of every stage and of the logits. This
//! catches wiring errors that counts and shapes cannot see (concatenation order, which tensor
//! a shortcut reads, pooling and padding) and, on a GPU, its convolution kernels.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use super::golden::MODEL_OUTPUTS;
use super::{Check, Tolerance};
use crate::models::{self, ARCHS};

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

pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `n` values in [-1, 1), exactly as `uniform` in the Python script.
pub fn uniform(key: &str, n: usize) -> Vec<f64> {
    let seed = fnv1a(key);
    (1..=n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// Replaces every tensor with the deterministic values the Python script uses.
#[derive(Default)]
pub struct Filler {
    /// `(field name, type of the struct holding it)` from the root.
    path: Vec<(String, String)>,
    /// `key:[shape]` lines in PyTorch naming and layout.
    pub keys: Vec<String>,
    /// A tensor the PyTorch script does not know how to fill.
    pub error: Option<String>,
}

impl ModuleMapper for Filler {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // The first entry is the `Net` variant, which PyTorch does not have.
        let names: Vec<&str> = self.path[1..].iter().map(|(n, _)| n.as_str()).collect();
        let key = names.join(".");
        let (leaf, container) = self.path.last().cloned().unwrap_or_default();
        let mut shape = param.shape().to_vec();
        // burn stores a Linear weight as [in, out]; PyTorch as [out, in].
        let transpose = container == "Struct:Linear" && leaf == "weight";
        if transpose {
            shape.swap(0, 1);
        }
        self.keys.push(format!("{key}:{shape:?}"));
        let n: usize = shape.iter().product();
        let r = uniform(&key, n);
        let values: Vec<f32> = if container == "Struct:BatchNorm2d" {
            let (scale, offset) = match leaf.as_str() {
                "weight" => (0.1, 1.0),
                "bias" | "running_mean" => (0.1, 0.0),
                "running_var" => (0.25, 1.25),
                other => {
                    self.error = Some(format!("unexpected BatchNorm2d tensor {other}"));
                    (0.0, 0.0)
                }
            };
            r.iter().map(|v| (offset + scale * v) as f32).collect()
        } else if leaf == "weight" {
            let bound = (6.0 / (n / shape[0]) as f64).sqrt();
            r.iter().map(|v| (bound * v) as f32).collect()
        } else {
            r.iter().map(|v| (0.1 * v) as f32).collect()
        };
        let device = param.device();
        let mut tensor = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
        if transpose {
            tensor = tensor.swap_dims(0, 1);
        }
        param.map(|_| tensor)
    }
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
    let mut filler = Filler::default();
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
            stage.into_data(),
            w,
            tol,
        )?;
        worst = worst.max(err);
    }
    let dims = out.logits.dims();
    let err = check_values(
        &format!("{name} logits"),
        &dims,
        out.logits.into_data(),
        &want.logits,
        tol,
    )?;
    Ok(worst.max(err))
}

/// One check per zoo architecture.
pub fn zoo(device: &Device, tol: &Tolerance) -> Vec<Check> {
    let golden: BTreeMap<String, serde_json::Value> = match serde_json::from_str(MODEL_OUTPUTS) {
        Ok(g) => g,
        Err(e) => {
            return vec![Check::from_result(
                "model zoo vs PyTorch",
                Err(format!("golden_outputs.json: {e}")),
            )];
        }
    };
    ARCHS
        .iter()
        .map(|info| {
            Check::from_result(
                format!("{} forward vs PyTorch", info.name),
                arch(info.name, &golden, device, tol)
                    .map(|w| format!("max error {w:.2e} of mean |x|")),
            )
        })
        .collect()
}
