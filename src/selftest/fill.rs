//! The deterministic weights that the golden fixtures' PyTorch scripts put in every model
//! (`scripts/models/param_counts.py`, and the interop and step scripts that reuse it): a
//! splitmix64 stream keyed by the FNV-1a hash of each tensor's PyTorch key, scaled by what the
//! tensor is. `meal selftest` and the golden tests fill their models with it, so that both
//! sides compute on bit-identical weights.

use burn::module::{ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};

/// The 64-bit FNV-1a hash of `text`.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `n` values in [-1, 1) of the splitmix64 stream keyed by `key`, exactly as `uniform` in the
/// Python scripts.
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

/// What a tensor is, which sets the scale of its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A convolution or linear weight: uniform in ±√(6 / fan-in), fan-in = elements / `shape[0]`.
    Weight,
    /// A convolution or linear bias: ±0.1.
    Bias,
    /// BatchNorm's scale γ: 1 ± 0.1.
    BnWeight,
    /// BatchNorm's shift β or running mean: ±0.1.
    BnShift,
    /// BatchNorm's running variance: 1.25 ± 0.25.
    BnVar,
}

impl Kind {
    /// The kind of the tensor `leaf` of a module of type `container` (burn's names, as a
    /// [`ModuleMapper`] sees them).
    pub fn of(leaf: &str, container: &str) -> Result<Kind, String> {
        if container == "Struct:BatchNorm2d" {
            return match leaf {
                "weight" => Ok(Kind::BnWeight),
                "bias" | "running_mean" => Ok(Kind::BnShift),
                "running_var" => Ok(Kind::BnVar),
                other => Err(format!("unexpected BatchNorm2d tensor {other}")),
            };
        }
        Ok(if leaf == "weight" {
            Kind::Weight
        } else {
            Kind::Bias
        })
    }
}

/// The values of the tensor `key` of `shape` (PyTorch's layout), in row-major order.
pub fn values(key: &str, shape: &[usize], kind: Kind) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let r = uniform(key, n);
    let (scale, offset) = match kind {
        Kind::Weight => {
            let bound = (6.0 / (n / shape[0]) as f64).sqrt();
            return r.iter().map(|v| (bound * v) as f32).collect();
        }
        Kind::Bias => return r.iter().map(|v| (0.1 * v) as f32).collect(),
        Kind::BnWeight => (0.1, 1.0),
        Kind::BnShift => (0.1, 0.0),
        Kind::BnVar => (0.25, 1.25),
    };
    r.iter().map(|v| (offset + scale * v) as f32).collect()
}

/// A tensor's place in a module as PyTorch names it: `(field, type of the struct holding it)`
/// from the root, the first `skip` entries left out of the key (1 for a zoo `Net`, whose
/// variant PyTorch does not have).
#[derive(Debug, Clone, Default)]
pub struct ModulePath {
    skip: usize,
    entries: Vec<(String, String)>,
}

impl ModulePath {
    pub fn new(skip: usize) -> Self {
        Self {
            skip,
            entries: Vec::new(),
        }
    }

    /// [`ModuleMapper::enter_module`] / `ModuleVisitor::enter_module`.
    pub fn enter(&mut self, name: &str, container_type: &str) {
        self.entries
            .push((name.to_string(), container_type.to_string()));
    }

    /// [`ModuleMapper::exit_module`] / `ModuleVisitor::exit_module`.
    pub fn exit(&mut self) {
        self.entries.pop();
    }

    /// The PyTorch key, `layer1.0.conv1.weight`.
    pub fn key(&self) -> String {
        let names: Vec<&str> = self
            .entries
            .iter()
            .skip(self.skip)
            // burn-store leaves enum variants out of tensor names too (a timm stem is one).
            .filter(|(_, container)| !container.starts_with("Enum:"))
            .map(|(n, _)| n.as_str())
            .collect();
        names.join(".")
    }

    /// `(tensor name, type of the module holding it)`.
    pub fn leaf(&self) -> (String, String) {
        self.entries
            .last()
            .cloned()
            .expect("a tensor inside a module")
    }

    /// burn stores a Linear weight as `[in, out]`; PyTorch as `[out, in]`.
    pub fn is_linear_weight(&self) -> bool {
        let (leaf, container) = self.leaf();
        container == "Struct:Linear" && leaf == "weight"
    }
}

/// Replaces every tensor of a module with the values of `prefix + its PyTorch key`, keeping each
/// parameter's gradient requirement.
#[derive(Debug, Clone)]
pub struct Filler {
    prefix: String,
    path: ModulePath,
    /// `key:[shape]` lines in PyTorch naming and layout, in module order.
    pub keys: Vec<String>,
    /// A tensor the PyTorch scripts do not know how to fill (its values are left as they were).
    pub error: Option<String>,
}

impl Filler {
    /// For a zoo `Net` (its variant is not part of the keys).
    pub fn for_net() -> Self {
        Self::new("", 1)
    }

    /// Keys `prefix + key`, the first `skip` module levels left out of `key`.
    pub fn new(prefix: &str, skip: usize) -> Self {
        Self {
            prefix: prefix.to_string(),
            path: ModulePath::new(skip),
            keys: Vec::new(),
            error: None,
        }
    }
}

impl ModuleMapper for Filler {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = format!("{}{}", self.prefix, self.path.key());
        let (leaf, container) = self.path.leaf();
        let mut shape = param.shape().to_vec();
        let transpose = self.path.is_linear_weight();
        if transpose {
            shape.swap(0, 1);
        }
        self.keys.push(format!("{key}:{shape:?}"));
        let kind = match Kind::of(&leaf, &container) {
            Ok(kind) => kind,
            Err(e) => {
                self.error.get_or_insert(e);
                return param;
            }
        };
        let values = values(&key, &shape, kind);
        let device = param.device();
        let mut tensor = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
        if transpose {
            tensor = tensor.swap_dims(0, 1);
        }
        param.map(|old| tensor.set_require_grad(old.is_require_grad()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_the_scripts() {
        // FNV-1a's published test vectors.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        let v = uniform("input", 1000);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert_ne!(uniform("a", 4), uniform("b", 4));
        // The stream is a prefix: more values do not change the first ones.
        assert_eq!(uniform("input", 10)[..], v[..10]);
    }

    #[test]
    fn kinds_follow_the_scripts() {
        assert_eq!(Kind::of("weight", "Struct:BatchNorm2d"), Ok(Kind::BnWeight));
        assert_eq!(
            Kind::of("running_mean", "Struct:BatchNorm2d"),
            Ok(Kind::BnShift)
        );
        assert_eq!(
            Kind::of("running_var", "Struct:BatchNorm2d"),
            Ok(Kind::BnVar)
        );
        assert!(Kind::of("epsilon", "Struct:BatchNorm2d").is_err());
        assert_eq!(Kind::of("weight", "Struct:Conv2d"), Ok(Kind::Weight));
        assert_eq!(Kind::of("bias", "Struct:Linear"), Ok(Kind::Bias));
        let var = values("bn.running_var", &[64], Kind::BnVar);
        assert!(var.iter().all(|&v| (1.0..=1.5).contains(&v)));
        // fan-in 3·3·3 = 27.
        let bound = (6.0f64 / 27.0).sqrt() as f32;
        let w = values("conv.weight", &[4, 3, 3, 3], Kind::Weight);
        assert!(w.iter().all(|v| v.abs() <= bound));
    }
}
