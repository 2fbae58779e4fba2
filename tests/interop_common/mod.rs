//! Shared helpers of the interop tests: the fixtures of `scripts/interop/make_fixtures.py`,
//! its fixed inputs, and the deterministic state dicts of the models without weight files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use meal::interop::state::{StateTensor, TorchDtype};
use meal::models::Net;
use meal::selftest::fill::{self, Kind, uniform};
use serde::Deserialize;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop")
}

#[derive(Deserialize)]
pub struct Expected {
    pub inputs: Inputs,
    pub models: BTreeMap<String, ModelFixture>,
}

#[derive(Deserialize)]
pub struct Inputs {
    pub key: String,
    pub shape: [usize; 4],
}

#[derive(Deserialize)]
pub struct ModelFixture {
    pub arch: String,
    pub names: String,
    #[serde(default)]
    pub files: Vec<String>,
    /// `[key, shape, kind]` of PyTorch's state dict (models without weight files).
    #[serde(default)]
    pub listing: Vec<(String, Vec<usize>, String)>,
    pub logits: Vec<Vec<f64>>,
}

pub fn expected() -> Expected {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The first `n` fixed inputs (`torch_models.fixed_inputs`).
pub fn inputs(n: usize) -> Tensor<4> {
    let x: Vec<f32> = uniform("input", n * 3 * 32 * 32)
        .iter()
        .map(|&v| v as f32)
        .collect();
    Tensor::<4>::from_data(TensorData::new(x, [n, 3, 32, 32]), &meal::backend::device())
}

/// The logits of `net` on the first `n` fixed inputs, row by row.
pub fn logits(net: &Net, n: usize) -> Vec<Vec<f32>> {
    let out = net.forward(inputs(n)).logits;
    let [rows, k] = out.dims();
    let v: Vec<f32> = out.into_data().try_to_vec().unwrap();
    (0..rows).map(|r| v[r * k..(r + 1) * k].to_vec()).collect()
}

/// Largest |a − b| over all logits.
pub fn max_diff(got: &[Vec<f32>], want: &[Vec<f64>]) -> f64 {
    assert_eq!(got.len(), want.len(), "rows");
    got.iter()
        .zip(want)
        .flat_map(|(g, w)| {
            assert_eq!(g.len(), w.len(), "classes");
            g.iter().zip(w).map(|(&a, &b)| (f64::from(a) - b).abs())
        })
        .fold(0.0, f64::max)
}

/// Asserts every logit within 1e-4 of PyTorch's (float32 here, float64 there).
pub fn assert_logits(what: &str, got: &[Vec<f32>], want: &[Vec<f64>]) {
    let d = max_diff(got, want);
    assert!(
        d <= 1e-4,
        "{what}: logits differ by up to {d:e} (tolerance 1e-4)"
    );
    eprintln!("{what}: max |Δlogit| {d:.2e}");
}

/// The deterministic state dict of a fixture listing, as `torch_models.fill_deterministic`
/// makes it (float32; `num_batches_tracked` int64 zero).
pub fn deterministic_state_dict(listing: &[(String, Vec<usize>, String)]) -> Vec<StateTensor> {
    listing
        .iter()
        .map(|(key, shape, kind)| {
            if kind == "counter" {
                return StateTensor {
                    key: key.clone(),
                    dtype: TorchDtype::I64,
                    shape: shape.clone(),
                    bytes: 0i64.to_le_bytes().to_vec(),
                };
            }
            let kind = match kind.as_str() {
                "bn_weight" => Kind::BnWeight,
                "bn_bias" | "bn_mean" => Kind::BnShift,
                "bn_var" => Kind::BnVar,
                "bias" => Kind::Bias,
                "weight" => Kind::Weight,
                other => panic!("unknown kind {other}"),
            };
            let v = fill::values(key, shape, kind);
            StateTensor {
                key: key.clone(),
                dtype: TorchDtype::F32,
                shape: shape.clone(),
                bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            }
        })
        .collect()
}
