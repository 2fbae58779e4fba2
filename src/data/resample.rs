//! Pillow's resampling (`Image.resize`, which torchvision's `Resize` and `RandomResizedCrop`
//! call on PIL images), reproduced to the byte: the same antialiasing filter support, the same
//! coefficients normalised to 22-bit fixed point, the horizontal pass first into a uint8
//! intermediate, then the vertical one. The `image` crate's resize filters the other way round
//! in f32 and lands a level or two away on many pixels.

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// The resampling filter of resizes (timm's `interpolation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Pillow's BILINEAR (a triangle filter, widened when shrinking).
    #[default]
    Bilinear,
    /// Pillow's BICUBIC (Keys cubic with a = -0.5, widened when shrinking).
    Bicubic,
}

impl Interpolation {
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
        }
    }

    fn support(self) -> f64 {
        match self {
            Interpolation::Bilinear => 1.0,
            Interpolation::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Interpolation::Bilinear => (1.0 - x).max(0.0),
            Interpolation::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: the first input index and the fixed-point weights from there.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    ksize: usize,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for input `[in0, in1)` of an axis
/// of `in_size` pixels mapped onto `out_size` pixels.
fn coeffs(in_size: usize, in0: f64, in1: f64, out_size: usize, filter: Interpolation) -> Coeffs {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for x in 0..n {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let f = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        bounds,
        weights,
        ksize,
    }
}

fn clip8(v: i32) -> u8 {
    if v <= 0 {
        0
    } else if v >= (1 << PRECISION_BITS << 8) {
        255
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Pillow's `Image.resize((width, height), filter)` of an RGB image. (torchvision crops before
/// it resizes, so Pillow's `box`, which lets the filter read beyond the crop, is not needed.)
pub fn resize(img: &RgbImage, width: usize, height: usize, filter: Interpolation) -> RgbImage {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let need_h = width != iw;
    let need_v = height != ih;
    let src = img.as_raw();
    let ch = coeffs(iw, 0.0, iw as f64, width, filter);
    let cv = coeffs(ih, 0.0, ih as f64, height, filter);
    // Rows the vertical pass reads.
    let y_first = cv.bounds[0].0;
    let y_last = cv.bounds[height - 1].0 + cv.bounds[height - 1].1;
    let half = 1i32 << (PRECISION_BITS - 1);

    let (tmp, tw, row0) = if need_h {
        let rows = y_last - y_first;
        let mut tmp = vec![0u8; rows * width * 3];
        for yy in 0..rows {
            let line = &src[(yy + y_first) * iw * 3..(yy + y_first + 1) * iw * 3];
            for xx in 0..width {
                let (xmin, n) = ch.bounds[xx];
                let k = &ch.weights[xx * ch.ksize..xx * ch.ksize + n];
                let mut acc = [half; 3];
                for (x, &kx) in k.iter().enumerate() {
                    let p = &line[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += p[c] as i32 * kx;
                    }
                }
                let o = (yy * width + xx) * 3;
                for c in 0..3 {
                    tmp[o + c] = clip8(acc[c]);
                }
            }
        }
        (tmp, width, y_first)
    } else {
        (src.to_vec(), iw, 0)
    };
    if !need_v {
        // Only a horizontal pass (or none): every row was resampled.
        debug_assert_eq!(row0, 0);
        return RgbImage::from_raw(tw as u32, height as u32, tmp)
            .expect("buffer sized for the image");
    }
    let mut out = vec![0u8; height * tw * 3];
    for yy in 0..height {
        let (ymin, n) = cv.bounds[yy];
        let ymin = ymin - row0;
        let k = &cv.weights[yy * cv.ksize..yy * cv.ksize + n];
        for xx in 0..tw {
            let mut acc = [half; 3];
            for (y, &ky) in k.iter().enumerate() {
                let o = ((ymin + y) * tw + xx) * 3;
                for c in 0..3 {
                    acc[c] += tmp[o + c] as i32 * ky;
                }
            }
            let o = (yy * tw + xx) * 3;
            for c in 0..3 {
                out[o + c] = clip8(acc[c]);
            }
        }
    }
    RgbImage::from_raw(tw as u32, height as u32, out).expect("buffer sized for the image")
}
