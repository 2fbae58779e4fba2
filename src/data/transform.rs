//! Image transforms, matching the torchvision pipelines of the MEAL reference code.
//!
//! * Small (32×32) datasets, training: `RandomCrop(32, padding=4)` (zero padding on the uint8
//!   image), `RandomHorizontalFlip()`, `ToTensor()`, `Normalize(mean, std)`.
//! * Small datasets, evaluation: `ToTensor()`, `Normalize(mean, std)`.
//! * Image folders, training: `RandomResizedCrop(size)`, `RandomHorizontalFlip()`, `ToTensor()`,
//!   `Normalize`; evaluation: `Resize(floor(size / crop_pct))`, `CenterCrop(size)`, `ToTensor()`,
//!   `Normalize`.
//!
//! Random draws are made in torchvision's order: crop row offset, crop column offset, then the
//! flip coin.

use std::path::Path;

use image::RgbImage;
use image::imageops::FilterType;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::resample::{self, Interpolation};
use super::view::CropBox;
use super::{DataError, InputSettings, Normalization};

/// Zero padding of the small-image random crop.
pub const CROP_PADDING: usize = 4;

/// `ToTensor` + `Normalize` of a CHW uint8 image: `(v / 255 - mean[c]) / std[c]`, computed in f32
/// in the same order as torchvision.
pub fn normalize_chw(src: &[u8], shape: [usize; 3], norm: Normalization) -> Vec<f32> {
    let [c, h, w] = shape;
    debug_assert_eq!(src.len(), c * h * w);
    let plane = h * w;
    let mut out = Vec::with_capacity(src.len());
    for ch in 0..c {
        let (m, s) = (norm.mean[ch % 3], norm.std[ch % 3]);
        out.extend(
            src[ch * plane..(ch + 1) * plane]
                .iter()
                .map(|&v| (v as f32 / 255.0 - m) / s),
        );
    }
    out
}

/// `RandomCrop(size, padding)` with zero padding followed by an optional horizontal flip, on a
/// CHW uint8 image, returning the transformed uint8 image (same shape). `top`/`left` are offsets
/// into the padded image, each in `0..=2·padding`.
pub fn crop_flip_chw(
    src: &[u8],
    shape: [usize; 3],
    padding: usize,
    top: usize,
    left: usize,
    flip: bool,
) -> Vec<u8> {
    let [c, h, w] = shape;
    let mut out = vec![0u8; c * h * w];
    for ch in 0..c {
        let plane = &src[ch * h * w..(ch + 1) * h * w];
        let dst = &mut out[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            // Row in the source image (None = padding).
            let sy = (y + top).checked_sub(padding).filter(|&sy| sy < h);
            let Some(sy) = sy else { continue };
            for x in 0..w {
                // Column of the cropped (unflipped) image that lands at x.
                let cx = if flip { w - 1 - x } else { x };
                if let Some(sx) = (cx + left).checked_sub(padding).filter(|&sx| sx < w) {
                    dst[y * w + x] = plane[sy * w + sx];
                }
            }
        }
    }
    out
}

/// The random part of the small-image training transform: where the padded crop starts and
/// whether the image is flipped. A soft-label store records one per image and view, so that
/// the training loader can rebuild exactly the image the teachers saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CropFlip {
    /// Row offset into the padded image, `0..=2·CROP_PADDING`.
    pub top: u8,
    /// Column offset into the padded image, `0..=2·CROP_PADDING`.
    pub left: u8,
    pub flip: bool,
}

impl CropFlip {
    /// Draws a crop and flip exactly as [`augment_small`] does (same draws, same order), so
    /// `draw` on a sample's RNG gives the view the training loader would have made of it.
    pub fn draw(rng: &mut ChaCha8Rng) -> Self {
        // usize ranges, as augment_small always drew them: another integer type would
        // consume the RNG differently and change every augmentation.
        let top: usize = rng.random_range(0..=2 * CROP_PADDING);
        let left: usize = rng.random_range(0..=2 * CROP_PADDING);
        let flip = rng.random::<f64>() < 0.5;
        CropFlip {
            top: top as u8,
            left: left as u8,
            flip,
        }
    }

    /// Whether both offsets lie inside the padded image.
    pub fn is_valid(self) -> bool {
        (self.top as usize) <= 2 * CROP_PADDING && (self.left as usize) <= 2 * CROP_PADDING
    }

    /// The small-image training transform with this crop and flip: padded crop, flip,
    /// ToTensor, Normalize.
    pub fn apply(self, src: &[u8], shape: [usize; 3], norm: Normalization) -> Vec<f32> {
        let img = crop_flip_chw(
            src,
            shape,
            CROP_PADDING,
            self.top as usize,
            self.left as usize,
            self.flip,
        );
        normalize_chw(&img, shape, norm)
    }
}

/// The full training transform of a small (CIFAR/SVHN) image: random padded crop, random
/// horizontal flip, ToTensor, Normalize.
pub fn augment_small(
    src: &[u8],
    shape: [usize; 3],
    norm: Normalization,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    CropFlip::draw(rng).apply(src, shape, norm)
}

/// An RGB image as CHW uint8.
pub fn rgb_to_chw(img: &RgbImage) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let plane = w * h;
    let mut out = vec![0u8; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        out[i] = p[0];
        out[plane + i] = p[1];
        out[2 * plane + i] = p[2];
    }
    out
}

/// Python's `int(round(x))` (round half to even).
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// The scale range of RandomResizedCrop: the crop covers 8% to 100% of the image area.
pub const RRC_SCALE: (f64, f64) = (0.08, 1.0);
/// The aspect-ratio range of RandomResizedCrop (width / height), drawn log-uniformly.
pub const RRC_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// One try of torchvision's `RandomResizedCrop.get_params`: the crop (height, width) for a
/// drawn area fraction `scale` and aspect ratio `aspect`, or `None` when it does not fit.
pub fn random_resized_crop_try(
    height: usize,
    width: usize,
    scale: f64,
    aspect: f64,
) -> Option<(usize, usize)> {
    let target_area = (height * width) as f64 * scale;
    let w = py_round((target_area * aspect).sqrt());
    let h = py_round((target_area / aspect).sqrt());
    (0 < w && w as usize <= width && 0 < h && h as usize <= height)
        .then_some((h as usize, w as usize))
}

/// torchvision's fallback after ten failed tries: a central crop of the whole image with its
/// aspect ratio clamped to [`RRC_RATIO`]; returns (top, left, height, width).
pub fn random_resized_crop_fallback(height: usize, width: usize) -> (usize, usize, usize, usize) {
    let (ratio_lo, ratio_hi) = RRC_RATIO;
    let in_ratio = width as f64 / height as f64;
    let (h, w) = if in_ratio < ratio_lo {
        (py_round(width as f64 / ratio_lo) as usize, width)
    } else if in_ratio > ratio_hi {
        (height, py_round(height as f64 * ratio_hi) as usize)
    } else {
        (height, width)
    };
    let (h, w) = (h.clamp(1, height), w.clamp(1, width));
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// torchvision `RandomResizedCrop.get_params` with scale (0.08, 1) and ratio (3/4, 4/3):
/// returns (top, left, height, width) of the crop. The draws follow torchvision's order (area
/// fraction, log aspect ratio, then the row and column offsets of an accepted try), from
/// meal's own RNG.
pub fn random_resized_crop_params(
    height: usize,
    width: usize,
    rng: &mut ChaCha8Rng,
) -> (usize, usize, usize, usize) {
    let (log_lo, log_hi) = (RRC_RATIO.0.ln(), RRC_RATIO.1.ln());
    for _ in 0..10 {
        let scale = rng.random_range(RRC_SCALE.0..RRC_SCALE.1);
        let aspect = rng.random_range(log_lo..log_hi).exp();
        if let Some((h, w)) = random_resized_crop_try(height, width, scale, aspect) {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return (top, left, h, w);
        }
    }
    random_resized_crop_fallback(height, width)
}

/// The size torchvision's `Resize(short)` gives a `width`×`height` image: the shorter side
/// becomes `short`, the longer one is scaled and truncated.
fn shorter_side_size(width: usize, height: usize, short: usize) -> (usize, usize) {
    let (w, h) = (width, height);
    let (nw, nh) = if w <= h {
        (short, (short as f64 * h as f64 / w as f64) as usize)
    } else {
        ((short as f64 * w as f64 / h as f64) as usize, short)
    };
    (nw.max(1), nh.max(1))
}

/// torchvision `Resize(short)` of a PIL image: the shorter side becomes `short`, the longer
/// one is scaled and truncated.
pub fn resize_shorter_side(img: &RgbImage, short: usize, interpolation: Interpolation) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (nw, nh) = shorter_side_size(w, h, short);
    if (nw, nh) == (w, h) {
        return img.clone();
    }
    resample::resize(img, nw, nh, interpolation)
}

/// Evaluation transform of a decoded folder image: Resize(floor(size / crop_pct)) on the
/// shorter side, then CenterCrop(size), as CHW uint8.
pub fn resize_center_crop(img: &RgbImage, size: usize, input: InputSettings) -> Vec<u8> {
    hwc_to_chw(&resize_center_crop_hwc(img, size, input), size * size)
}

/// [`resize_center_crop`] as HWC uint8. Only the pixels CenterCrop keeps are resampled.
fn resize_center_crop_hwc(img: &RgbImage, size: usize, input: InputSettings) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (nw, nh) = shorter_side_size(w, h, input.resize_to(size));
    let (top, left) = center_crop_offsets(nw, nh, size);
    if top < 0 || left < 0 {
        // A crop larger than the resized image (crop_pct above 1): CenterCrop zero-pads.
        let resized = resize_shorter_side(img, input.resize_to(size), input.interpolation);
        return center_crop(&resized, size);
    }
    let keep = resample::Rect {
        left: left as usize,
        top: top as usize,
        width: size,
        height: size,
    };
    resample::resize_rect(
        img,
        resample::Rect::whole(w, h),
        nw,
        nh,
        keep,
        input.interpolation,
    )
}

/// Where torchvision's CenterCrop(size) starts in a `width`×`height` image (negative: padded).
fn center_crop_offsets(width: usize, height: usize, size: usize) -> (i64, i64) {
    let s = size as i64;
    let top = py_round((height as i64 - s) as f64 / 2.0);
    let left = py_round((width as i64 - s) as f64 / 2.0);
    (top, left)
}

/// torchvision CenterCrop, as HWC uint8 (parts outside the image are zero-padded as torchvision
/// does).
fn center_crop(img: &RgbImage, size: usize) -> Vec<u8> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (top, left) = center_crop_offsets(w as usize, h as usize, size);
    let mut out = RgbImage::new(size as u32, size as u32);
    for y in 0..size as i64 {
        for x in 0..size as i64 {
            let (sy, sx) = (y + top, x + left);
            if (0..h).contains(&sy) && (0..w).contains(&sx) {
                out.put_pixel(x as u32, y as u32, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    out.into_raw()
}

/// HWC uint8 RGB (`plane` pixels) as CHW.
fn hwc_to_chw(hwc: &[u8], plane: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * plane);
    for c in 0..3 {
        out.extend(hwc[c..].iter().step_by(3));
    }
    out
}

/// `ToTensor` + `Normalize` of an HWC RGB image with rows of `width` pixels, mirrored left to
/// right when `flip`, straight into CHW: the values of [`normalize_chw`] (the same f32
/// expression, tabulated for the 256 levels), in one pass instead of flip, transpose and
/// normalise.
pub fn normalize_hwc(hwc: &[u8], width: usize, flip: bool, norm: Normalization) -> Vec<f32> {
    let plane = hwc.len() / 3;
    debug_assert_eq!(hwc.len(), 3 * plane);
    debug_assert_eq!(plane % width.max(1), 0);
    let mut out = Vec::with_capacity(hwc.len());
    for c in 0..3 {
        let (m, s) = (norm.mean[c], norm.std[c]);
        let lut: [f32; 256] = std::array::from_fn(|v| (v as f32 / 255.0 - m) / s);
        for row in hwc.chunks_exact(width * 3) {
            if flip {
                out.extend(row.chunks_exact(3).rev().map(|p| lut[p[c] as usize]));
            } else {
                out.extend(row.chunks_exact(3).map(|p| lut[p[c] as usize]));
            }
        }
    }
    out
}

/// The folder transforms of a decoded photo, normalised: RandomResizedCrop + flip when
/// `augment`, else Resize + CenterCrop (see [`InputSettings`]).
pub fn photo_sample(
    img: &RgbImage,
    path: &Path,
    augment: bool,
    size: usize,
    input: InputSettings,
    norm: Normalization,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<f32>, DataError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::image(path, "image has no pixels"));
    }
    if augment {
        return photo_drawn(img, path, size, input, norm, rng).map(|(x, _)| x);
    }
    let hwc = resize_center_crop_hwc(img, size, input);
    Ok(normalize_hwc(&hwc, size, false, norm))
}

/// The training transform of a decoded photo with the box and flip it drew (the same draws as
/// [`photo_sample`] with `augment`).
pub fn photo_drawn(
    img: &RgbImage,
    path: &Path,
    size: usize,
    input: InputSettings,
    norm: Normalization,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<f32>, CropBox), DataError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::image(path, "image has no pixels"));
    }
    let view = CropBox::draw(img.height() as usize, img.width() as usize, rng);
    Ok((
        view.sample(img, path, size, input.interpolation, norm)?,
        view,
    ))
}

/// How `load_image_for_eval` fits an arbitrary image to the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalResize {
    /// Resize straight to size×size (small 32×32 datasets).
    Direct,
    /// Resize(floor(size / crop_pct)) + CenterCrop(size) (image folders).
    ResizeCenterCrop(InputSettings),
}

fn resize(img: &RgbImage, width: usize, height: usize) -> RgbImage {
    if img.width() as usize == width && img.height() as usize == height {
        return img.clone();
    }
    image::imageops::resize(img, width as u32, height as u32, FilterType::Triangle)
}

/// The most memory one decoded image may take. A PNG or JPEG header states the size and the
/// decoder allocates for it before reading any pixel, so a 100-byte file can ask for gigabytes;
/// 256 MiB still holds an 8000×8000 RGB photo.
const MAX_DECODED_BYTES: u64 = 256 << 20;

/// Decodes an image file as RGB.
pub fn decode_image(path: &Path) -> Result<RgbImage, DataError> {
    decode_image_bytes(super::error::read_file(path)?, path)
}

/// Decodes an encoded image (PNG or JPEG, told apart by content) as RGB; errors name `path`.
/// The `turbojpeg` build decodes JPEGs with libjpeg-turbo (`super::jpeg`), leaving to the image
/// crate what libjpeg-turbo declines.
pub fn decode_image_bytes(bytes: Vec<u8>, path: &Path) -> Result<RgbImage, DataError> {
    #[cfg(feature = "turbojpeg")]
    if super::jpeg::is_jpeg(&bytes) {
        return match super::jpeg::decode(&bytes, path, MAX_DECODED_BYTES)? {
            super::jpeg::Decoded::Rgb(img) => Ok(img),
            super::jpeg::Decoded::Declined(why) => decode_with_image_crate(bytes)
                .map_err(|e| DataError::image(path, format!("{e} (libjpeg-turbo: {why})"))),
        };
    }
    decode_with_image_crate(bytes).map_err(|e| DataError::image(path, e))
}

fn decode_with_image_crate(bytes: Vec<u8>) -> image::ImageResult<RgbImage> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    // No copy when the decoder already gave RGB (most JPEGs).
    Ok(reader.decode()?.into_rgb8())
}

/// Eval transform of an arbitrary PNG/JPEG for `meal predict`. Inputs of `image_size` ≤ 32 are
/// taken to be small-dataset models (resize straight to size×size); larger ones get
/// Resize(floor(size / 0.875)) + CenterCrop(size). Use [`load_image_for_eval_with`] to choose.
pub fn load_image_for_eval(
    path: &Path,
    image_size: usize,
    normalization: Normalization,
) -> Result<Vec<f32>, DataError> {
    let mode = if image_size <= 32 {
        EvalResize::Direct
    } else {
        EvalResize::ResizeCenterCrop(InputSettings::default())
    };
    load_image_for_eval_with(path, image_size, normalization, mode)
}

/// [`load_image_for_eval`] with an explicit resize mode.
pub fn load_image_for_eval_with(
    path: &Path,
    image_size: usize,
    normalization: Normalization,
    mode: EvalResize,
) -> Result<Vec<f32>, DataError> {
    if image_size == 0 {
        return Err(DataError::Config("image size must be positive".into()));
    }
    let img = decode_image(path)?;
    let hwc = match mode {
        EvalResize::Direct => resize(&img, image_size, image_size).into_raw(),
        EvalResize::ResizeCenterCrop(input) => resize_center_crop_hwc(&img, image_size, input),
    };
    Ok(normalize_hwc(&hwc, image_size, false, normalization))
}
