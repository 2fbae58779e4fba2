//! Shared helpers of the `golden_*` tests: reading the JSON written by
//! `scripts/golden/make_golden.py` and comparing every element with a tolerance relative to the
//! element and to its tensor's scale, plus the means for each test to show that a perturbed
//! implementation is rejected.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use meal::selftest::ElementTolerance;
use serde_json::Value;

/// Every golden comparison accepts `|a − e| ≤ RTOL·|e| + ATOL·max|e|`, the max over the whole
/// tensor: float32 against float64 errs relative to the values summed, so a tensor whose values
/// are all tiny (a gradient of 3e-6) is held to its own scale, not to an absolute floor that any
/// value, zero included, would pass.
pub const RTOL: f64 = 1e-5;
pub const ATOL: f64 = 1e-5;

/// Reads `tests/golden/<name>`.
pub fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/golden/make_golden.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shape and the values of a `{"shape": [...], "data": [...]}` tensor.
pub fn shape_data(v: &Value) -> (Vec<usize>, Vec<f64>) {
    let shape = v["shape"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tensor: {v}"))
        .iter()
        .map(|d| d.as_u64().expect("shape entry") as usize)
        .collect::<Vec<_>>();
    let data = v["data"]
        .as_array()
        .expect("tensor data")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect::<Vec<_>>();
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape {shape:?} does not match {} values",
        data.len()
    );
    (shape, data)
}

/// A JSON tensor as an f32 tensor on `device`.
pub fn tensor<const D: usize>(v: &Value, device: &Device) -> Tensor<D> {
    let (shape, data) = shape_data(v);
    assert_eq!(shape.len(), D, "rank of {shape:?}");
    let data = data.into_iter().map(|x| x as f32).collect::<Vec<_>>();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// A leaf that records its gradient (on an autodiff device).
pub fn leaf<const D: usize>(v: &Value, device: &Device) -> Tensor<D> {
    tensor::<D>(v, device).require_grad()
}

pub fn values<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f64>) {
    let shape = t.dims().to_vec();
    let data = t
        .try_into_vec_as::<f32>()
        .expect("f32 values")
        .into_iter()
        .map(f64::from)
        .collect();
    (shape, data)
}

/// Compares every element; returns the largest absolute error.
pub fn check_values(what: &str, shape: &[usize], actual: &[f64], expected: &Value) -> f64 {
    let (eshape, edata) = shape_data(expected);
    assert_eq!(shape, eshape.as_slice(), "{what}: shape");
    check_slice(what, actual, &edata)
}

/// The comparison of every golden test: [`RTOL`] and [`ATOL`], no floor under the relative term.
pub const GOLDEN: ElementTolerance = ElementTolerance {
    relative: RTOL,
    floor: 0.0,
    of_scale: ATOL,
};

/// Every element within `RTOL·|e| + ATOL·max|e|`; the largest absolute error, or the first
/// element out of tolerance.
pub fn compare_slice(what: &str, actual: &[f64], expected: &[f64]) -> Result<f64, String> {
    GOLDEN.compare(what, actual, expected)
}

pub fn check_slice(what: &str, actual: &[f64], expected: &[f64]) -> f64 {
    compare_slice(what, actual, expected).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the comparison accepts `actual` (shape and every element) for a JSON tensor.
pub fn accepts<const D: usize>(actual: Tensor<D>, expected: &Value) -> bool {
    let (shape, data) = values(actual);
    let (eshape, edata) = shape_data(expected);
    shape == eshape && compare_slice("", &data, &edata).is_ok()
}

/// Whether the comparison accepts a scalar tensor for a JSON number.
pub fn accepts_scalar(actual: Tensor<1>, expected: &Value) -> bool {
    let (_, data) = values(actual);
    compare_slice("", &data, &[expected.as_f64().expect("a number")]).is_ok()
}

/// Counts the perturbations that the comparison must reject and panics, naming the ones it
/// accepted, unless it rejected them all (and there was at least one).
#[derive(Default)]
pub struct Rejections {
    pub tried: usize,
    pub accepted: Vec<String>,
}

impl Rejections {
    /// `accepted`: whether the golden comparison let the perturbed result through.
    pub fn see(&mut self, what: impl Into<String>, accepted: bool) {
        self.tried += 1;
        if accepted {
            self.accepted.push(what.into());
        }
    }

    pub fn assert_all_rejected(&self, min: usize) {
        assert!(
            self.tried >= min,
            "only {} perturbations tried, expected at least {min}",
            self.tried
        );
        assert!(
            self.accepted.is_empty(),
            "{} of {} perturbed implementations pass the golden comparison: {:?}",
            self.accepted.len(),
            self.tried,
            self.accepted
        );
        println!("{} perturbed implementations, all rejected", self.tried);
    }
}

/// Compares a tensor with a JSON tensor (shape and every element); returns the max abs error.
pub fn check<const D: usize>(what: &str, actual: Tensor<D>, expected: &Value) -> f64 {
    let (shape, data) = values(actual);
    check_values(what, &shape, &data, expected)
}

/// Compares a scalar tensor of shape `[1]` with a JSON number.
pub fn check_scalar(what: &str, actual: Tensor<1>, expected: &Value) -> f64 {
    let (shape, data) = values(actual);
    assert_eq!(shape, vec![1], "{what}: a scalar has shape [1]");
    let e = expected.as_f64().expect("a number");
    check_slice(what, &data, &[e])
}

/// The weighting of the pooled outputs in the pool cases, `w[k] = ((k·7919) mod 1000)/500 − 1`
/// (exact in f32; the generator uses the same formula).
pub fn pool_weights<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|k| (((k * 7919) % 1000) as f64 / 500.0 - 1.0) as f32)
        .collect::<Vec<_>>();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Largest error per case group, for the report.
#[derive(Default)]
pub struct MaxErr(pub Vec<(String, f64)>);

impl MaxErr {
    pub fn add(&mut self, group: &str, err: f64) {
        match self.0.iter_mut().find(|(g, _)| g == group) {
            Some((_, e)) => *e = e.max(err),
            None => self.0.push((group.to_string(), err)),
        }
    }

    pub fn report(&self) {
        for (g, e) in &self.0 {
            println!("max abs error {g}: {e:e}");
        }
    }
}
