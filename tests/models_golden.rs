//! Numerical agreement of every zoo model with its PyTorch twin in
//! `scripts/models/param_counts.py`. Both sides fill the model with the same deterministic
//! weights (a splitmix64 stream keyed by the FNV-1a hash of each tensor's module path; the
//! Python attribute names mirror the Rust fields), run it in eval mode on the same batch of 2
//! and compare the mean, mean |x| and 16 sampled values of every stage and of the logits.
//! PyTorch runs in float64, burn in float32; the tolerance is 1e-3 of the tensor's mean |x|.
//! This catches wiring errors that counts and shapes cannot see: concatenation order, which
//! tensor a shortcut reads, pooling and padding.
//!
//! The fixture is `tests/fixtures/models/golden_outputs.json` (regenerate with the script's
//! `--golden`).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use meal::models::{self, ARCHS};
use serde::Deserialize;

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

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `n` values in [-1, 1), exactly as `uniform` in the Python script.
fn uniform(key: &str, n: usize) -> Vec<f64> {
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
struct Filler {
    /// `(field name, type of the struct holding it)` from the root.
    path: Vec<(String, String)>,
    /// `key:[shape]` lines in PyTorch naming and layout.
    keys: Vec<String>,
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
        let (leaf, container) = self.path.last().cloned().unwrap();
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
                other => panic!("unexpected BatchNorm2d tensor {other}"),
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

fn check_summary(what: &str, got: Tensor<4>, want: &Summary) {
    check_values(what, &got.dims(), got.into_data(), want)
}

fn check_values(what: &str, dims: &[usize], data: TensorData, want: &Summary) {
    assert_eq!(dims, want.shape.as_slice(), "{what}: shape");
    let v: Vec<f32> = data.try_to_vec().unwrap();
    let n = v.len();
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let mean_abs = v.iter().map(|&x| f64::from(x).abs()).sum::<f64>() / n as f64;
    let tol = 1e-3 * want.mean_abs + 1e-9;
    let close = |a: f64, b: f64| (a - b).abs() <= tol;
    assert!(
        close(mean, want.mean),
        "{what}: mean {mean} vs {}",
        want.mean
    );
    assert!(
        close(mean_abs, want.mean_abs),
        "{what}: mean |x| {mean_abs} vs {}",
        want.mean_abs
    );
    for (j, &expected) in want.samples.iter().enumerate() {
        let got = f64::from(v[(j * (n - 1)) / 15]);
        assert!(
            close(got, expected),
            "{what}: sample {j}: {got} vs {expected}"
        );
    }
}

#[test]
fn zoo_matches_pytorch_numerically() {
    let golden: BTreeMap<String, Golden> =
        serde_json::from_str(include_str!("fixtures/models/golden_outputs.json")).unwrap();
    let device = meal::backend::device();
    for info in ARCHS {
        let want = &golden[info.name];
        let mut filler = Filler::default();
        let net = models::build(info.name, 10, &device)
            .unwrap()
            .map(&mut filler);
        filler.keys.sort();
        assert_eq!(
            filler.keys.len(),
            want.tensors,
            "{}: tensor count",
            info.name
        );
        let digest = format!("{:016x}", fnv1a(&filler.keys.join("\n")));
        assert_eq!(
            digest, want.keys_digest,
            "{}: tensor names/shapes",
            info.name
        );

        let x: Vec<f32> = uniform("input", 2 * 3 * 32 * 32)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [2, 3, 32, 32]), &device);
        let out = net.forward(x);
        assert_eq!(out.stages.len(), want.stages.len(), "{}", info.name);
        for (i, (stage, w)) in out.stages.into_iter().zip(&want.stages).enumerate() {
            check_summary(&format!("{} stage {i}", info.name), stage, w);
        }
        let dims = out.logits.dims();
        check_values(
            &format!("{} logits", info.name),
            &dims,
            out.logits.into_data(),
            &want.logits,
        );
        eprintln!("{}: matches PyTorch", info.name);
    }
}
