//! Model checkpoints: the architecture, class count and input normalisation travel with the
//! weights, so `meal eval`, `meal distill` and `meal predict` rebuild the right model from the
//! file alone.

use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use super::checkpoint::Container;
use crate::data::{EvalResize, InputSettings, Interpolation, Normalization};
use crate::error::{Error, Result};
use crate::models::{self, Net};

pub const META: &str = "meta";
pub const MODEL: &str = "model";

/// What a model checkpoint says about its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub meal_version: String,
    pub arch: String,
    pub num_classes: usize,
    /// `[channels, height, width]` the model was trained on.
    pub input_shape: [usize; 3],
    pub normalization: Normalization,
    pub class_names: Vec<String>,
    /// `train`, `distill` or `import`.
    pub source: String,
    /// Completed epochs when the checkpoint was written.
    pub epoch: usize,
    /// Test top-1 accuracy (%) at that epoch, if measured.
    pub test_acc: Option<f64>,
    /// Crop fraction of the evaluation transform (Resize(floor(size / crop_pct)) +
    /// CenterCrop(size)) of a model trained on photos; `None` for a model of 32×32 datasets,
    /// which takes whole images resized to its input (checkpoints before this field were all
    /// one or the other: those with inputs over 32 pixels used 0.875).
    #[serde(default)]
    pub crop_pct: Option<f64>,
    /// The resampling filter of that transform (checkpoints before this field: bilinear).
    #[serde(default)]
    pub interpolation: Interpolation,
}

impl ModelMeta {
    /// How `meal eval` and `meal predict` fit an image to this model's input.
    pub fn eval_resize(&self) -> EvalResize {
        match self.crop_pct {
            Some(crop_pct) => EvalResize::ResizeCenterCrop(InputSettings {
                crop_pct,
                interpolation: self.interpolation,
            }),
            None if self.input_shape[1] <= 32 => EvalResize::Direct,
            None => EvalResize::ResizeCenterCrop(InputSettings {
                interpolation: self.interpolation,
                ..InputSettings::default()
            }),
        }
    }
}

pub fn model_bytes(model: &Net) -> Result<Vec<u8>> {
    // `valid()` first: it applies any pending BatchNorm running-stat update, which a plain
    // record of the training module could miss by one batch.
    let bytes = model
        .valid()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Other(format!("cannot serialise model: {e}")))?;
    Ok(bytes.to_vec())
}

/// Loads weights into a freshly built `arch` model, naming the file on any mismatch.
pub fn load_weights(model: Net, bytes: &[u8], path: &Path) -> Result<Net> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| Error::checkpoint(path, format!("weights are corrupt: {e}")))?;
    check_float_dtypes(bytes, path)?;
    model.try_load_record(record).map_err(|e| {
        Error::checkpoint(
            path,
            format!(
                "the stored weights do not fit the model they are loaded into (another \
                 architecture or class count?): {}",
                abbreviate_lists(&e.to_string())
            ),
        )
    })
}

/// Every parameter and buffer of the zoo is floating point. burn panics when it loads a tensor
/// of another dtype into a float parameter, which a crafted checkpoint (valid checksum, one
/// dtype byte changed) can ask for: refuse it here, naming the tensor.
fn check_float_dtypes(bytes: &[u8], path: &Path) -> Result<()> {
    let corrupt =
        |e: &dyn std::fmt::Display| Error::checkpoint(path, format!("weights are corrupt: {e}"));
    let reader = burn::store::burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| corrupt(&e))?;
    for t in reader.into_tensors().map_err(|e| corrupt(&e))? {
        if !t.dtype.is_float() {
            return Err(corrupt(&format!(
                "tensor `{}` has dtype {:?}, where every weight is floating point",
                t.name, t.dtype
            )));
        }
    }
    Ok(())
}

/// Shortens every list of quoted names (`["a", "b", ...]`, as burn reports missing, unused or
/// misshapen tensors) of more than four items to its first three and a count, so that a
/// mismatch does not print every tensor of the model. Brackets inside the quotes (shapes) are
/// left alone.
fn abbreviate_lists(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(open) = rest.find("[\"") {
        out.push_str(&rest[..open]);
        let body = &rest[open + 1..];
        let (mut items, mut start, mut in_str, mut escaped, mut close) =
            (Vec::new(), 0, false, false, None);
        for (i, c) in body.char_indices() {
            if in_str {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_str = false,
                    _ => {}
                }
            } else {
                match c {
                    '"' => in_str = true,
                    ',' => {
                        items.push(body[start..i].trim());
                        start = i + 1;
                    }
                    ']' => {
                        items.push(body[start..i].trim());
                        close = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
        }
        let Some(close) = close else {
            rest = &rest[open..];
            break;
        };
        out.push('[');
        if items.len() > 4 {
            out.push_str(&items[..3].join(", "));
            out.push_str(&format!(", ... ({} in all)", items.len()));
        } else {
            out.push_str(&items.join(", "));
        }
        out.push(']');
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The architecture a checkpoint's header means. meal 0.1 called the CIFAR ResNet-18 of the
/// MEAL reference `resnet18`; since 0.2 that name is timm's and torchvision's ImageNet ResNet-18
/// and the CIFAR form is `resnet18_cifar`.
pub fn current_arch_name<'a>(meal_version: &str, arch: &'a str) -> &'a str {
    if arch == "resnet18" && meal_version.starts_with("0.1.") {
        "resnet18_cifar"
    } else {
        arch
    }
}

/// Reads the header and builds + loads the model on `device`.
pub fn load_model(path: &Path, device: &Device) -> Result<(Net, ModelMeta, Container)> {
    let container = Container::load(path)?;
    let mut meta: ModelMeta = container.get_json(path, META)?;
    meta.arch = current_arch_name(&meta.meal_version, &meta.arch).to_string();
    if let Some(p) = meta.crop_pct
        && !(p.is_finite() && p > 0.0 && p <= 1.0)
    {
        return Err(Error::checkpoint(
            path,
            format!("its header's crop_pct {p} does not lie in (0, 1]"),
        ));
    }
    fits_buffers(
        path,
        &meta,
        crate::backend::limits::max_buffer_bytes(device),
    )?;
    let model = models::build(&meta.arch, meta.num_classes, device)
        .map_err(|e| Error::checkpoint(path, e))?;
    let model = load_weights(model, container.get(path, MODEL)?, path).map_err(|e| match e {
        Error::Checkpoint { path, message } => Error::checkpoint(
            path,
            format!(
                "its header names a {} with {} classes, but {message}",
                meta.arch, meta.num_classes
            ),
        ),
        e => e,
    })?;
    Ok((model, meta, container))
}

/// Refuses a model with a parameter larger than the device's `limit` on one buffer before
/// anything is built there (the load would fail inside the GPU runtime): `eval`, `predict`,
/// `export`, the teachers of `distill` and `cache-teachers` all load through here.
fn fits_buffers(path: &Path, meta: &ModelMeta, limit: Option<u64>) -> Result<()> {
    if limit.is_none() {
        return Ok(());
    }
    let mut check = crate::backend::limits::Preflight::new();
    check
        .arch("model", &meta.arch, meta.num_classes)
        .map_err(|e| Error::checkpoint(path, e))?;
    check.check_against(limit).map_err(|e| match e {
        Error::Device { message, .. } => {
            Error::device(format!("the model in {}: {message}", path.display()))
        }
        e => e,
    })
}

/// A checkpoint with only the model (what `meal export`/`import` and the best-model file need).
pub fn model_container(meta: &ModelMeta, model: &Net) -> Result<Container> {
    let mut c = Container::default();
    c.insert_json(META, meta)?;
    c.insert(MODEL, model_bytes(model)?);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_past_the_buffer_limit_is_refused_before_it_loads() {
        let meta = ModelMeta {
            meal_version: env!("CARGO_PKG_VERSION").into(),
            arch: "resnet20".into(),
            num_classes: 10,
            input_shape: [3, 32, 32],
            normalization: crate::data::Normalization::CIFAR10,
            class_names: Vec::new(),
            source: "train".into(),
            epoch: 1,
            test_acc: None,
            crop_pct: None,
            interpolation: Default::default(),
        };
        let path = Path::new("runs/a/best.ckpt");
        assert!(fits_buffers(path, &meta, None).is_ok());
        assert!(fits_buffers(path, &meta, Some(1 << 20)).is_ok());
        // resnet20's largest parameter: a 64×64×3×3 convolution, 147,456 bytes.
        let e = fits_buffers(path, &meta, Some(100_000)).unwrap_err();
        assert!(matches!(e, Error::Device { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("the model in runs/a/best.ckpt: model."),
            "{text}"
        );
        assert!(text.contains("(64×64×3×3 f32, 147,456 bytes)"), "{text}");
        let bad = ModelMeta {
            arch: "no_such_net".into(),
            ..meta
        };
        let e = fits_buffers(path, &bad, Some(100_000)).unwrap_err();
        assert!(matches!(e, Error::Checkpoint { .. }), "{e:?}");
    }

    #[test]
    fn long_tensor_lists_are_abbreviated() {
        let names = (0..6).map(|i| format!("\"t{i}\"")).collect::<Vec<_>>();
        let msg = format!("Missing tensors: [{}] after", names.join(", "));
        assert_eq!(
            abbreviate_lists(&msg),
            "Missing tensors: [\"t0\", \"t1\", \"t2\", ... (6 in all)] after"
        );
        // Shapes inside the names stay whole; short lists stay as they are.
        let shape = |n: &str| format!("\"{n}: expected Shape {{ dims: [16, 3, 3, 3] }}\"");
        let five = (0..5).map(|i| shape(&format!("w{i}"))).collect::<Vec<_>>();
        let msg = format!("Apply errors: [{}]", five.join(", "));
        assert_eq!(
            abbreviate_lists(&msg),
            format!("Apply errors: [{}, ... (5 in all)]", five[..3].join(", "))
        );
        let two = format!("[{}, {}] and [1, 2, 3, 4, 5]", shape("a"), shape("b"));
        assert_eq!(abbreviate_lists(&two), two);
        assert_eq!(abbreviate_lists("no list [\"open"), "no list [\"open");
    }
}
