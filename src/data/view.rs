//! The random part of a training transform, as a value: drawn once, recorded in a soft-label
//! store, and replayed so that the student sees exactly the pixels its teachers saw.
//!
//! 32×32 datasets draw a [`CropFlip`] (padded crop offsets and a flip); photo datasets draw a
//! [`CropBox`] (torchvision's RandomResizedCrop box in the decoded image, and a flip), as Fast
//! Knowledge Distillation (Shen & Xing) records one per image and view.

use std::path::Path;

use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::resample::{self, Interpolation, Rect};
use super::transform::{normalize_hwc, random_resized_crop_params, rgb_to_chw};
use super::{CropFlip, DataError, Normalization};

/// A RandomResizedCrop box (in the pixels of the decoded image) and a horizontal flip, with the
/// size of the image it was drawn on, so that a replay on a different image is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CropBox {
    pub top: u32,
    pub left: u32,
    pub height: u32,
    pub width: u32,
    pub flip: bool,
    pub image_height: u32,
    pub image_width: u32,
}

impl CropBox {
    /// Draws the box and flip of a `height`×`width` image exactly as the live training
    /// transform does: torchvision's ten tries (or the fallback), then the flip coin.
    pub fn draw(height: usize, width: usize, rng: &mut ChaCha8Rng) -> Self {
        let (top, left, h, w) = random_resized_crop_params(height, width, rng);
        let flip = rng.random::<f64>() < 0.5;
        CropBox {
            top: top as u32,
            left: left as u32,
            height: h as u32,
            width: w as u32,
            flip,
            image_height: height as u32,
            image_width: width as u32,
        }
    }

    /// Whether the box is non-empty and lies inside the image it was drawn on.
    pub fn is_valid(self) -> bool {
        self.height > 0
            && self.width > 0
            && self.top as u64 + self.height as u64 <= self.image_height as u64
            && self.left as u64 + self.width as u64 <= self.image_width as u64
    }

    /// The box cut from `img`, resized to `size`×`size` and flipped, as CHW uint8. `img` must
    /// be the image the box was drawn on (same size); `path` names it in the error, which is a
    /// format error, not an image one, so that `data.skip_corrupt` does not skip it.
    pub fn apply(
        self,
        img: &RgbImage,
        path: &Path,
        size: usize,
        interpolation: Interpolation,
    ) -> Result<Vec<u8>, DataError> {
        let mut out = RgbImage::from_raw(
            size as u32,
            size as u32,
            self.resized(img, path, size, interpolation)?,
        )
        .expect("buffer sized for the image");
        if self.flip {
            image::imageops::flip_horizontal_in_place(&mut out);
        }
        Ok(rgb_to_chw(&out))
    }

    /// [`CropBox::apply`], then ToTensor and Normalize (in one pass after the resize).
    pub fn sample(
        self,
        img: &RgbImage,
        path: &Path,
        size: usize,
        interpolation: Interpolation,
        norm: Normalization,
    ) -> Result<Vec<f32>, DataError> {
        let hwc = self.resized(img, path, size, interpolation)?;
        Ok(normalize_hwc(&hwc, size, self.flip, norm))
    }

    /// The box of `img`, read in place and resized to `size`×`size`, unflipped, as HWC uint8.
    fn resized(
        self,
        img: &RgbImage,
        path: &Path,
        size: usize,
        interpolation: Interpolation,
    ) -> Result<Vec<u8>, DataError> {
        if (img.height(), img.width()) != (self.image_height, self.image_width) {
            return Err(DataError::format(
                path,
                format!(
                    "the recorded crop was drawn on a {}x{} image, this one is {}x{} (the file \
                     changed since the soft-label store was made)",
                    self.image_width,
                    self.image_height,
                    img.width(),
                    img.height()
                ),
            ));
        }
        if !self.is_valid() {
            return Err(DataError::format(
                path,
                format!("the recorded crop {self:?} lies outside the image"),
            ));
        }
        let from = Rect {
            left: self.left as usize,
            top: self.top as usize,
            width: self.width as usize,
            height: self.height as usize,
        };
        Ok(resample::resize_rect(
            img,
            from,
            size,
            size,
            Rect::whole(size, size),
            interpolation,
        ))
    }
}

/// The random part of one sample's training transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// 32×32 datasets: padded crop and flip.
    Padded(CropFlip),
    /// Photos: RandomResizedCrop box and flip.
    Box(CropBox),
}

impl View {
    /// What kind of dataset the view belongs to, for messages and store headers.
    pub fn kind(self) -> ViewKind {
        match self {
            View::Padded(_) => ViewKind::Padded,
            View::Box(_) => ViewKind::Box,
        }
    }
}

/// The two kinds of [`View`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViewKind {
    /// Padded crop + flip of a 32×32 image ([`CropFlip`]).
    #[default]
    Padded,
    /// RandomResizedCrop box + flip of a photo ([`CropBox`]).
    Box,
}

impl ViewKind {
    pub fn describe(self) -> &'static str {
        match self {
            ViewKind::Padded => "padded crop + flip (32x32 datasets)",
            ViewKind::Box => "RandomResizedCrop box + flip (photos)",
        }
    }
}

/// The error of a dataset given a view of the other kind.
pub(super) fn wrong_kind(dataset: &str, want: ViewKind, got: View) -> DataError {
    DataError::Config(format!(
        "{dataset}: its training views are {}, the recorded view is a {}; the soft-label store \
         was made on another kind of dataset",
        want.describe(),
        got.kind().describe()
    ))
}
