//! PyTorch module names of the zoo models.
//!
//! Two naming schemes map a burn parameter path (its module path without the `Net` variant,
//! e.g. `layers.0.1.conv1.weight`) to a PyTorch state-dict key:
//!
//! - [`NameScheme::Meal`]: the names of the PyTorch twins in `scripts/models/param_counts.py`,
//!   whose attributes mirror the Rust fields, so the key *is* the burn path. Every zoo model has
//!   it; it is what `meal export` writes by default.
//! - [`NameScheme::Kuangliu`]: the attribute names of kuangliu/pytorch-cifar, which the MEAL
//!   reference's CIFAR teachers use (`conv1`, `bn1`, `layer1.0.shortcut.0`, `linear`;
//!   `features.N`, `classifier`). Offered for `resnet18_cifar`, `preact_resnet18` and `vgg19_bn`.
//!
//! A scheme is defined in one direction (burn path → PyTorch key); importing inverts it through
//! the table of a built model, so the two directions cannot disagree.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How PyTorch names the parameters of a zoo model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NameScheme {
    /// The twins of `scripts/models/param_counts.py` (= the burn module paths).
    Meal,
    /// kuangliu/pytorch-cifar and the MEAL reference (`resnet18_cifar`, `preact_resnet18`, `vgg19_bn`).
    Kuangliu,
}

impl NameScheme {
    pub const ALL: [NameScheme; 2] = [NameScheme::Meal, NameScheme::Kuangliu];

    pub fn as_str(self) -> &'static str {
        match self {
            NameScheme::Meal => "meal",
            NameScheme::Kuangliu => "kuangliu",
        }
    }

    /// Whether `arch` can be named this way.
    pub fn supports(self, arch: &str) -> bool {
        match self {
            NameScheme::Meal => true,
            NameScheme::Kuangliu => {
                matches!(arch, "resnet18_cifar" | "preact_resnet18" | "vgg19_bn")
            }
        }
    }

    /// The schemes `arch` supports, [`NameScheme::Meal`] first.
    pub fn for_arch(arch: &str) -> Vec<NameScheme> {
        Self::ALL.into_iter().filter(|s| s.supports(arch)).collect()
    }

    /// Checks that `arch` supports this scheme, naming the ones it does.
    pub fn check(self, arch: &str) -> Result<()> {
        if self.supports(arch) {
            return Ok(());
        }
        let ok: Vec<&str> = Self::for_arch(arch).iter().map(|s| s.as_str()).collect();
        Err(Error::Model(format!(
            "`{arch}` has no {self} names; it supports: {}",
            ok.join(", ")
        )))
    }

    /// The PyTorch key of the burn parameter `path` of `arch`.
    pub fn to_pytorch(self, arch: &str, path: &str) -> String {
        match self {
            NameScheme::Meal => path.to_string(),
            NameScheme::Kuangliu => kuangliu(arch, path).unwrap_or_else(|| path.to_string()),
        }
    }
}

impl fmt::Display for NameScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NameScheme {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "meal" => Ok(NameScheme::Meal),
            "kuangliu" | "reference" => Ok(NameScheme::Kuangliu),
            other => Err(Error::Other(format!(
                "unknown name scheme `{other}`; known: meal, kuangliu"
            ))),
        }
    }
}

/// burn path → PyTorch key for every parameter of a model, and back.
#[derive(Debug, Clone)]
pub struct NameTable {
    pub scheme: NameScheme,
    /// PyTorch key → burn path.
    pub to_burn: BTreeMap<String, String>,
}

impl NameTable {
    pub fn new(
        arch: &str,
        scheme: NameScheme,
        burn_paths: impl IntoIterator<Item = String>,
    ) -> Self {
        let to_burn = burn_paths
            .into_iter()
            .map(|p| (scheme.to_pytorch(arch, &p), p))
            .collect();
        Self { scheme, to_burn }
    }
}

/// kuangliu/pytorch-cifar's name for a burn path, or `None` where the arch has none.
fn kuangliu(arch: &str, path: &str) -> Option<String> {
    match arch {
        "resnet18_cifar" | "preact_resnet18" => Some(kuangliu_resnet(path)),
        "vgg19_bn" => kuangliu_vgg(crate::models::vgg::VGG19, path),
        _ => None,
    }
}

/// `stem.conv`/`stem.bn` (ResNet) or `stem` (PreAct) → `conv1`/`bn1`/`conv1`;
/// `layers.S.B` → `layer{S+1}.B`; in a block, `shortcut.conv`/`shortcut.bn` → `shortcut.0`/
/// `shortcut.1` and a bare `shortcut` conv (PreAct) → `shortcut.0`; `fc` → `linear`.
fn kuangliu_resnet(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    let mut out: Vec<String> = Vec::new();
    match parts.as_slice() {
        ["stem", "conv", rest @ ..] => {
            out.push("conv1".into());
            out.extend(rest.iter().map(|s| s.to_string()));
        }
        ["stem", "bn", rest @ ..] => {
            out.push("bn1".into());
            out.extend(rest.iter().map(|s| s.to_string()));
        }
        ["stem", rest @ ..] => {
            out.push("conv1".into());
            out.extend(rest.iter().map(|s| s.to_string()));
        }
        ["layers", stage, block, rest @ ..] => {
            let stage: usize = stage.parse().unwrap_or(0);
            out.push(format!("layer{}", stage + 1));
            out.push(block.to_string());
            match rest {
                ["shortcut", "conv", leaf @ ..] => {
                    out.push("shortcut.0".into());
                    out.extend(leaf.iter().map(|s| s.to_string()));
                }
                ["shortcut", "bn", leaf @ ..] => {
                    out.push("shortcut.1".into());
                    out.extend(leaf.iter().map(|s| s.to_string()));
                }
                ["shortcut", leaf @ ..] => {
                    out.push("shortcut.0".into());
                    out.extend(leaf.iter().map(|s| s.to_string()));
                }
                _ => out.extend(rest.iter().map(|s| s.to_string())),
            }
        }
        ["fc", rest @ ..] => {
            out.push("linear".into());
            out.extend(rest.iter().map(|s| s.to_string()));
        }
        _ => return path.to_string(),
    }
    out.join(".")
}

/// `groups.G.U.conv`/`.bn` → `features.N`/`features.N+1` of kuangliu's flat `nn.Sequential`
/// (conv, BN, ReLU per unit and one max-pool closing each group); `fc` → `classifier`.
fn kuangliu_vgg(cfg: &[&[usize]], path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('.').collect();
    match parts.as_slice() {
        ["groups", g, u, layer, leaf @ ..] => {
            let (g, u): (usize, usize) = (g.parse().ok()?, u.parse().ok()?);
            let start: usize = cfg[..g].iter().map(|w| 3 * w.len() + 1).sum();
            let index = start
                + 3 * u
                + match *layer {
                    "conv" => 0,
                    "bn" => 1,
                    _ => return None,
                };
            Some(format!("features.{index}.{}", leaf.join(".")))
        }
        ["fc", leaf @ ..] => Some(format!("classifier.{}", leaf.join("."))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kuangliu_names() {
        let k = |arch, p| NameScheme::Kuangliu.to_pytorch(arch, p);
        assert_eq!(k("resnet18_cifar", "stem.conv.weight"), "conv1.weight");
        assert_eq!(
            k("resnet18_cifar", "stem.bn.running_var"),
            "bn1.running_var"
        );
        assert_eq!(
            k("resnet18_cifar", "layers.1.0.shortcut.conv.weight"),
            "layer2.0.shortcut.0.weight"
        );
        assert_eq!(
            k("resnet18_cifar", "layers.1.0.shortcut.bn.bias"),
            "layer2.0.shortcut.1.bias"
        );
        assert_eq!(
            k("resnet18_cifar", "layers.3.1.bn2.weight"),
            "layer4.1.bn2.weight"
        );
        assert_eq!(k("resnet18_cifar", "fc.weight"), "linear.weight");
        assert_eq!(k("preact_resnet18", "stem.weight"), "conv1.weight");
        assert_eq!(
            k("preact_resnet18", "layers.2.0.shortcut.weight"),
            "layer3.0.shortcut.0.weight"
        );
        // [64,64,M,128,128,M,...]: conv/bn of unit (0,1) at 3/4, of unit (1,0) at 7/8.
        assert_eq!(k("vgg19_bn", "groups.0.0.conv.weight"), "features.0.weight");
        assert_eq!(k("vgg19_bn", "groups.0.1.bn.weight"), "features.4.weight");
        assert_eq!(k("vgg19_bn", "groups.1.0.conv.bias"), "features.7.bias");
        assert_eq!(
            k("vgg19_bn", "groups.4.3.bn.running_mean"),
            "features.50.running_mean"
        );
        assert_eq!(k("vgg19_bn", "fc.bias"), "classifier.bias");
        assert_eq!(
            NameScheme::Meal.to_pytorch("vgg19_bn", "fc.bias"),
            "fc.bias"
        );
        assert!(NameScheme::Kuangliu.check("resnet8").is_err());
    }
}
