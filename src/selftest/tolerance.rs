//! How close a result must be to PyTorch's. On the CPU (flex) every element is held to 1e-5
//! (relative above 1, absolute below). A GPU multiplies f32 matrices in TF32 (10-bit
//! mantissa) and reduces in another order, so its results may differ by a small fraction of
//! the *tensor's* scale even where one element is tiny: the bound adds that term.

use crate::backend::DeviceSpec;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Per element: `element · max(1, |expected|)`.
    pub element: f64,
    /// Plus `scale · max |expected|` over the whole tensor.
    pub scale: f64,
    /// Model summaries (mean, mean |x|, samples): `summary · mean |x|` of the PyTorch tensor.
    pub summary: f64,
}

impl Tolerance {
    pub const CPU: Self = Self {
        element: 1e-5,
        scale: 0.0,
        summary: 1e-3,
    };
    pub const GPU: Self = Self {
        element: 1e-5,
        scale: 5e-3,
        summary: 1e-2,
    };

    pub fn for_spec(spec: DeviceSpec) -> Self {
        match spec {
            DeviceSpec::Cuda(_) | DeviceSpec::Wgpu(_) => Self::GPU,
            DeviceSpec::Flex | DeviceSpec::Auto => Self::CPU,
        }
    }

    /// The tolerance of the device this process selected.
    pub fn for_selected() -> Self {
        Self::for_spec(crate::backend::selected_spec().unwrap_or(DeviceSpec::Flex))
    }

    /// The per-element bound: `element · max(1, |expected|) + scale · max |expected|`.
    pub fn elements(&self) -> ElementTolerance {
        ElementTolerance {
            relative: self.element,
            floor: 1.0,
            of_scale: self.scale,
        }
    }

    /// Compares every element; returns the largest absolute error, or what differed.
    pub fn compare(&self, what: &str, actual: &[f64], expected: &[f64]) -> Result<f64, String> {
        self.elements().compare(what, actual, expected)
    }
}

/// How far each element may be from PyTorch's:
/// `|a − e| ≤ relative · max(|e|, floor) + of_scale · max |e|`, the max over the whole tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElementTolerance {
    pub relative: f64,
    /// Below this magnitude the relative term stops shrinking (1: absolute below 1; 0: purely
    /// relative).
    pub floor: f64,
    pub of_scale: f64,
}

impl ElementTolerance {
    /// Compares every element; returns the largest absolute error, or the first element out of
    /// bounds.
    pub fn compare(&self, what: &str, actual: &[f64], expected: &[f64]) -> Result<f64, String> {
        if actual.len() != expected.len() {
            return Err(format!(
                "{what}: {} values, PyTorch has {}",
                actual.len(),
                expected.len()
            ));
        }
        let scale = expected.iter().fold(0.0f64, |m, e| m.max(e.abs()));
        let mut max_abs = 0.0f64;
        for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            let err = (a - e).abs();
            let bound = self.relative * e.abs().max(self.floor) + self.of_scale * scale;
            // NaN fails too: it is not within any bound.
            if err.is_nan() || err > bound {
                return Err(format!(
                    "{what}[{i}]: got {a}, PyTorch {e} (error {err:.3e} > bound {bound:.3e})"
                ));
            }
            max_abs = max_abs.max(err);
        }
        Ok(max_abs)
    }
}
