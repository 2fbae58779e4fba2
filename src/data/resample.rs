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

/// A rectangle of pixels: the part of an image a resize reads, or the part of its result it
/// computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
}

impl Rect {
    /// The whole of a `width`×`height` image.
    pub fn whole(width: usize, height: usize) -> Self {
        Rect {
            left: 0,
            top: 0,
            width,
            height,
        }
    }

    /// Whether the rectangle holds a pixel and lies within a `width`×`height` image.
    pub fn is_inside(self, width: usize, height: usize) -> bool {
        self.width > 0
            && self.height > 0
            && self.left + self.width <= width
            && self.top + self.height <= height
    }
}

/// Pillow's `Image.resize((width, height), filter)` of an RGB image. (torchvision crops before
/// it resizes, so Pillow's `box`, which lets the filter read beyond the crop, is not needed.)
pub fn resize(img: &RgbImage, width: usize, height: usize, filter: Interpolation) -> RgbImage {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let out = resize_rect(
        img,
        Rect::whole(iw, ih),
        width,
        height,
        Rect::whole(width, height),
        filter,
    );
    RgbImage::from_raw(width as u32, height as u32, out).expect("buffer sized for the image")
}

/// Pillow's resize of the crop `from` of `img` to `width`×`height` (torchvision's `crop` then
/// `resize`), computing only the pixels of the result inside `keep` (a later `CenterCrop`'s),
/// as `keep.height` rows of `keep.width` RGB pixels. Every output pixel is the sum Pillow
/// computes for it, so the kept window is byte-identical to the same window of the whole
/// result; the crop is read in place, not copied.
pub fn resize_rect(
    img: &RgbImage,
    from: Rect,
    width: usize,
    height: usize,
    keep: Rect,
    filter: Interpolation,
) -> Vec<u8> {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    // The callers' contract (CropBox checks recorded boxes before it calls).
    assert!(
        from.is_inside(iw, ih),
        "resize: crop {from:?} outside the {iw}x{ih} image"
    );
    assert!(
        keep.is_inside(width, height),
        "resize: window {keep:?} outside the {width}x{height} result"
    );
    let src = img.as_raw();
    let stride = iw * 3;
    let need_h = width != from.width;
    let need_v = height != from.height;
    let ch = coeffs(from.width, 0.0, from.width as f64, width, filter);
    let cv = coeffs(from.height, 0.0, from.height as f64, height, filter);
    let cols = keep.left..keep.left + keep.width;
    let rows = keep.top..keep.top + keep.height;
    // Rows of the crop the vertical pass reads (all of the kept rows without one).
    let (y_first, y_last) = if need_v {
        let last = cv.bounds[rows.end - 1];
        (cv.bounds[rows.start].0, last.0 + last.1)
    } else {
        (rows.start, rows.end)
    };
    let tw = keep.width;
    let mut tmp = Vec::with_capacity((y_last - y_first) * tw * 3);
    for y in y_first..y_last {
        let at = (from.top + y) * stride + from.left * 3;
        if need_h {
            horizontal(src, at, &ch, cols.clone(), &mut tmp);
        } else {
            tmp.extend_from_slice(&src[at + cols.start * 3..at + cols.end * 3]);
        }
    }
    if !need_v {
        return tmp;
    }
    let mut out = Vec::with_capacity(keep.height * tw * 3);
    for yy in rows {
        let (ymin, n) = cv.bounds[yy];
        let k = &cv.weights[yy * cv.ksize..yy * cv.ksize + n];
        vertical(&tmp, (ymin - y_first) * tw * 3, tw * 3, k, &mut out);
    }
    out
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// One row of the horizontal pass: output columns `cols`, reading the input row that starts at
/// `src[at]`, appended to `out`. Integer sums, so the order of the taps, and so the vector
/// width, cannot change a value.
fn horizontal(src: &[u8], at: usize, c: &Coeffs, cols: std::ops::Range<usize>, out: &mut Vec<u8>) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::isa() != crate::kernels::simd::Isa::Portable {
        // SAFETY: a non-portable ISA is only reported where AVX2 is present.
        return unsafe { x86::horizontal(src, at, c, cols, out) };
    }
    for xx in cols {
        let (xmin, n) = c.bounds[xx];
        let k = &c.weights[xx * c.ksize..xx * c.ksize + n];
        let mut acc = [HALF; 3];
        for (x, &kx) in k.iter().enumerate() {
            let p = &src[at + (xmin + x) * 3..at + (xmin + x) * 3 + 3];
            for ch in 0..3 {
                acc[ch] += p[ch] as i32 * kx;
            }
        }
        out.extend(acc.map(clip8));
    }
}

/// One output row of the vertical pass: the weighted sum of the `k.len()` rows of `len` values
/// of `tmp` starting at `tmp[at]`, appended to `out`.
fn vertical(tmp: &[u8], at: usize, len: usize, k: &[i32], out: &mut Vec<u8>) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::isa() != crate::kernels::simd::Isa::Portable {
        // SAFETY: as in `horizontal`.
        return unsafe { x86::vertical(tmp, at, len, k, out) };
    }
    vertical_scalar(tmp, at, 0..len, len, k, out);
}

/// Values `range` of one output row of the vertical pass (see [`vertical`]).
fn vertical_scalar(
    tmp: &[u8],
    at: usize,
    range: std::ops::Range<usize>,
    len: usize,
    k: &[i32],
    out: &mut Vec<u8>,
) {
    for i in range {
        let mut acc = HALF;
        for (y, &ky) in k.iter().enumerate() {
            acc += tmp[at + y * len + i] as i32 * ky;
        }
        out.push(clip8(acc));
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Coeffs, HALF, PRECISION_BITS, clip8, vertical_scalar};
    use std::arch::x86_64::*;

    /// [`super::horizontal`] with one pixel's three channels (and a fourth lane that is
    /// ignored) in a 128-bit vector per tap.
    #[target_feature(enable = "avx2")]
    pub unsafe fn horizontal(
        src: &[u8],
        at: usize,
        c: &Coeffs,
        cols: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) {
        let half = _mm_set1_epi32(HALF);
        for xx in cols {
            let (xmin, n) = c.bounds[xx];
            let k = &c.weights[xx * c.ksize..xx * c.ksize + n];
            let first = at + xmin * 3;
            // Each tap loads four bytes; the last pixel of the image has only three.
            if first + n * 3 + 1 > src.len() {
                let mut acc = [HALF; 3];
                for (x, &kx) in k.iter().enumerate() {
                    for ch in 0..3 {
                        acc[ch] += src[first + x * 3 + ch] as i32 * kx;
                    }
                }
                out.extend(acc.map(clip8));
                continue;
            }
            let mut acc = half;
            for (x, &kx) in k.iter().enumerate() {
                // SAFETY: first + x·3 + 4 ≤ src.len(), checked above.
                let px = unsafe {
                    _mm_cvtsi32_si128(
                        (src.as_ptr().add(first + x * 3) as *const i32).read_unaligned(),
                    )
                };
                acc = _mm_add_epi32(
                    acc,
                    _mm_mullo_epi32(_mm_cvtepu8_epi32(px), _mm_set1_epi32(kx)),
                );
            }
            // clip8 = the shifted sum saturated to 0..=255, which the two packs do.
            let v = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(acc);
            let b = _mm_packus_epi16(_mm_packs_epi32(v, v), _mm_setzero_si128());
            let px = (_mm_cvtsi128_si32(b) as u32).to_le_bytes();
            out.extend_from_slice(&px[..3]);
        }
    }

    /// [`super::vertical`], 32 values at a time in four 8-lane accumulators.
    #[target_feature(enable = "avx2")]
    pub unsafe fn vertical(tmp: &[u8], at: usize, len: usize, k: &[i32], out: &mut Vec<u8>) {
        assert!(at + k.len() * len <= tmp.len());
        let base = tmp.as_ptr();
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut i = 0;
        while i + 32 <= len {
            let mut acc = [_mm256_set1_epi32(HALF); 4];
            for (y, &ky) in k.iter().enumerate() {
                let w = _mm256_set1_epi32(ky);
                for (v, a) in acc.iter_mut().enumerate() {
                    // SAFETY: at + y·len + i + 32 ≤ at + k.len()·len ≤ tmp.len() (asserted).
                    let p = unsafe {
                        _mm_loadl_epi64(base.add(at + y * len + i + v * 8) as *const __m128i)
                    };
                    *a = _mm256_add_epi32(*a, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(p), w));
                }
            }
            let [a, b, c, d] = acc.map(|v| _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(v));
            // The packs saturate to 0..=255 (clip8) and interleave 128-bit lanes; the
            // permutation puts the 32 bytes back in order.
            let bytes = _mm256_permutevar8x32_epi32(
                _mm256_packus_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d)),
                order,
            );
            let mut row = [0u8; 32];
            // SAFETY: `row` holds 32 bytes.
            unsafe { _mm256_storeu_si256(row.as_mut_ptr() as *mut __m256i, bytes) };
            out.extend_from_slice(&row);
            i += 32;
        }
        vertical_scalar(tmp, at, i..len, len, k, out);
    }
}
