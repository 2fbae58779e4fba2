//! 2-d max pooling for inference on NCHW `f32` slices (ResNet-50's stem, VGG, GoogLeNet,
//! resnet9). burn-flex pools through its with-indices path, one value at a time with a NaN test
//! and an index per step: 8.8% of a ResNet-50 batch-1 forward for one 3×3/2 pool. Here each
//! output row is the running maximum of the window's rows, tap after tap, with no index.

use rayon::prelude::*;

/// A max pool's geometry (dilation 1, floor rounding, padding that never wins: PyTorch's
/// `F.max_pool2d(x, kernel, stride, padding)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub batch: usize,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
}

impl PoolShape {
    /// Output side along axis `a` (0: rows, 1: columns); `None` when the window does not fit.
    fn out(&self, a: usize) -> Option<usize> {
        let side = [self.h, self.w][a] + 2 * self.pad[a];
        (self.stride[a] > 0 && side >= self.kernel[a] && self.kernel[a] > 0)
            .then(|| (side - self.kernel[a]) / self.stride[a] + 1)
    }

    /// `[ho, wo]`, when the kernel takes this shape: PyTorch's own limit, padding at most half
    /// the window, so that every window holds an input value.
    pub fn output(&self) -> Option<[usize; 2]> {
        let fits = (0..2).all(|a| 2 * self.pad[a] <= self.kernel[a]);
        Some([self.out(0)?, self.out(1)?]).filter(|_| fits)
    }
}

/// The larger of `m` and `v`, NaN winning as in PyTorch's pool.
#[inline(always)]
fn max_nan(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() { v } else { m }
}

/// `y[b, c, oy, ox] = max x[b, c, oy·sy + ky − py, ox·sx + kx − px]` over the window's taps
/// inside the image. Panics if [`PoolShape::output`] is `None` or `x` has the wrong length.
pub fn forward(s: &PoolShape, x: &[f32]) -> Vec<f32> {
    let [ho, wo] = s.output().expect("a max pool whose window fits");
    let plane = s.h * s.w;
    assert_eq!(x.len(), s.batch * s.channels * plane);
    let mut y = vec![f32::NEG_INFINITY; s.batch * s.channels * ho * wo];
    if ho * wo == 0 {
        return y;
    }
    let ([kh, kw], [sy, sx], [py, px]) = (s.kernel, s.stride, s.pad);
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(plane))
        .for_each(|(out, src)| {
            for (oy, row) in out.chunks_exact_mut(wo).enumerate() {
                for ky in 0..kh {
                    let Some(iy) = (oy * sy + ky).checked_sub(py).filter(|&iy| iy < s.h) else {
                        continue;
                    };
                    let line = &src[iy * s.w..][..s.w];
                    for kx in 0..kw {
                        // Columns ox whose input column ox·sx + kx − px lies in 0..w.
                        let lo = px.saturating_sub(kx).div_ceil(sx);
                        let hi = ((s.w + px).saturating_sub(kx)).div_ceil(sx).min(wo);
                        for (ox, m) in row.iter_mut().enumerate().take(hi).skip(lo) {
                            *m = max_nan(*m, line[ox * sx + kx - px]);
                        }
                    }
                }
            }
        });
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(s: &PoolShape, x: &[f32]) -> Vec<f32> {
        let [ho, wo] = s.output().unwrap();
        let mut y = Vec::new();
        for p in 0..s.batch * s.channels {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..s.kernel[0] {
                        for kx in 0..s.kernel[1] {
                            let iy = (oy * s.stride[0] + ky) as isize - s.pad[0] as isize;
                            let ix = (ox * s.stride[1] + kx) as isize - s.pad[1] as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w {
                                m = max_nan(m, x[p * s.h * s.w + iy as usize * s.w + ix as usize]);
                            }
                        }
                    }
                    y.push(m);
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_window_definition() {
        let shapes = [
            (2, 3, 7, 9, [3, 3], [2, 2], [1, 1]),
            (1, 2, 8, 8, [2, 2], [2, 2], [0, 0]),
            (1, 1, 5, 6, [3, 3], [1, 1], [1, 1]),
            (2, 2, 4, 5, [3, 2], [1, 2], [1, 0]),
            (1, 1, 3, 3, [3, 3], [3, 3], [0, 0]),
        ];
        for (batch, channels, h, w, kernel, stride, pad) in shapes {
            let s = PoolShape {
                batch,
                channels,
                h,
                w,
                kernel,
                stride,
                pad,
            };
            let mut x: Vec<f32> = (0..batch * channels * h * w)
                .map(|i| ((i as u32).wrapping_mul(2654435761) % 1000) as f32 / 100.0 - 5.0)
                .collect();
            x[h * w / 2] = f32::NAN;
            let (got, want) = (forward(&s, &x), naive(&s, &x));
            assert_eq!(got.len(), want.len(), "{s:?}");
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(g.to_bits() == e.to_bits(), "{s:?} at {i}: {g} vs {e}");
            }
            assert!(
                got.iter().any(|v| v.is_nan()),
                "{s:?}: the NaN did not propagate"
            );
        }
    }

    #[test]
    fn windows_that_do_not_fit_are_refused() {
        let s = |h, pad| PoolShape {
            batch: 1,
            channels: 1,
            h,
            w: 4,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [pad, pad],
        };
        assert_eq!(s(2, 0).output(), None);
        assert_eq!(s(4, 2).output(), None);
        assert_eq!(s(4, 1).output(), Some([4, 4]));
    }
}
