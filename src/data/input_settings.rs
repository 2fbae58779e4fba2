//! How a photo of any size becomes a model input at evaluation: timm's `crop_pct` and
//! `interpolation` (Resize(floor(size / crop_pct)) on the shorter side, CenterCrop(size)), and
//! the values timm's `pretrained_cfg` gives the ImageNet architectures.

use serde::{Deserialize, Serialize};

use super::resample::Interpolation;
use super::{DataError, Normalization};

/// The crop fraction of the torchvision ImageNet recipe (Resize(256) + CenterCrop(224)).
pub const DEFAULT_CROP_PCT: f64 = 0.875;

/// Evaluation resize settings of image folders.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputSettings {
    /// Fraction of the resized shorter side kept by the centre crop, in (0, 1].
    pub crop_pct: f64,
    pub interpolation: Interpolation,
}

impl Default for InputSettings {
    fn default() -> Self {
        InputSettings {
            crop_pct: DEFAULT_CROP_PCT,
            interpolation: Interpolation::Bilinear,
        }
    }
}

impl InputSettings {
    /// Refuses a crop fraction outside (0, 1] or not finite, naming `key`.
    pub fn check(self, key: &str) -> Result<Self, DataError> {
        if !(self.crop_pct.is_finite() && self.crop_pct > 0.0 && self.crop_pct <= 1.0) {
            return Err(DataError::Config(format!(
                "{key} = {} must lie in (0, 1]",
                self.crop_pct
            )));
        }
        Ok(self)
    }

    /// The shorter side before the centre crop: timm's `math.floor(size / crop_pct)` (256 for
    /// 224 at 0.875).
    pub fn resize_to(self, size: usize) -> usize {
        // The same IEEE division and floor as Python's, so sizes agree with timm exactly.
        (size as f64 / self.crop_pct).floor() as usize
    }
}

/// What timm 1.0.31's `pretrained_cfg` says about an ImageNet model's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PretrainedInput {
    pub size: usize,
    pub settings: InputSettings,
    pub normalization: Normalization,
}

const INCEPTION: Normalization = Normalization {
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
};

/// The default input of timm's pretrained weights for `arch` (the default tag of each name, as
/// `timm.models.get_pretrained_cfg` reports it), or `None` for the CIFAR-form models.
pub fn pretrained_input(arch: &str) -> Option<PretrainedInput> {
    use Interpolation::{Bicubic, Bilinear};
    let (size, crop_pct, interpolation, normalization) = match arch {
        "resnet18" | "resnet34" | "resnet50" | "resnet101" | "resnet152" => {
            (224, 0.95, Bicubic, Normalization::IMAGENET)
        }
        "resnet152s" | "senet154" | "tf_efficientnet_b0" => {
            (224, 0.875, Bicubic, Normalization::IMAGENET)
        }
        "tf_efficientnet_b4" => (380, 0.922, Bicubic, Normalization::IMAGENET),
        "tf_mobilenetv3_small_075" | "tf_mobilenetv3_small_100" | "tf_mobilenetv3_large_100" => {
            (224, 0.875, Bilinear, INCEPTION)
        }
        _ => return None,
    };
    Some(PretrainedInput {
        size,
        settings: InputSettings {
            crop_pct,
            interpolation,
        },
        normalization,
    })
}
