//! The committed PyTorch values (`tests/golden/*.json`, written by
//! `scripts/golden/make_golden.py`) and the tensor conversions of the comparisons. Errors are
//! strings naming the case: a selftest reports them, a test asserts on them.

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;

use super::Tolerance;

/// `tests/golden/losses.json`, compiled in so that the binary checks itself anywhere.
pub const LOSSES: &str = include_str!("../../tests/golden/losses.json");
/// `tests/fixtures/models/golden_outputs.json`.
pub const MODEL_OUTPUTS: &str = include_str!("../../tests/fixtures/models/golden_outputs.json");

pub fn parse(name: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))
}

/// The shape and the values of a `{"shape": [...], "data": [...]}` tensor.
pub fn shape_data(v: &Value) -> Result<(Vec<usize>, Vec<f64>), String> {
    let bad = || format!("not a golden tensor: {:.80}", v.to_string());
    let shape = v["shape"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()?;
    let data = v["data"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|x| x.as_f64().ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()?;
    if shape.iter().product::<usize>() != data.len() {
        return Err(format!(
            "golden shape {shape:?} does not match {} values",
            data.len()
        ));
    }
    Ok((shape, data))
}

/// A golden tensor as an f32 tensor on `device`.
pub fn tensor<const D: usize>(v: &Value, device: &Device) -> Result<Tensor<D>, String> {
    let (shape, data) = shape_data(v)?;
    if shape.len() != D {
        return Err(format!(
            "golden tensor of shape {shape:?} is not of rank {D}"
        ));
    }
    let data = data.into_iter().map(|x| x as f32).collect::<Vec<_>>();
    Ok(Tensor::from_data(TensorData::new(data, shape), device))
}

/// A leaf that records its gradient (on an autodiff device).
pub fn leaf<const D: usize>(v: &Value, device: &Device) -> Result<Tensor<D>, String> {
    Ok(tensor::<D>(v, device)?.require_grad())
}

pub fn values<const D: usize>(t: Tensor<D>) -> Result<(Vec<usize>, Vec<f64>), String> {
    let shape = t.dims().to_vec();
    let data = crate::backend::read::floats(t, "a result")
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(f64::from)
        .collect();
    Ok((shape, data))
}

/// Compares a tensor with a golden tensor (shape and every element); returns the max error.
pub fn check<const D: usize>(
    what: &str,
    actual: Tensor<D>,
    expected: &Value,
    tol: &Tolerance,
) -> Result<f64, String> {
    let (shape, data) = values(actual)?;
    let (eshape, edata) = shape_data(expected)?;
    if shape != eshape {
        return Err(format!("{what}: shape {shape:?}, PyTorch {eshape:?}"));
    }
    tol.compare(what, &data, &edata)
}

/// Compares a scalar tensor of shape `[1]` with a golden number.
pub fn check_scalar(
    what: &str,
    actual: Tensor<1>,
    expected: &Value,
    tol: &Tolerance,
) -> Result<f64, String> {
    let (shape, data) = values(actual)?;
    if shape != [1] {
        return Err(format!("{what}: shape {shape:?}, expected a scalar [1]"));
    }
    let e = expected
        .as_f64()
        .ok_or_else(|| format!("{what}: golden value is not a number"))?;
    tol.compare(what, &data, &[e])
}
