//! Training-mode BatchNorm (optionally followed by ReLU) on NCHW `f32` slices, in two passes
//! over the data each way.
//!
//! burn's generic `batch_norm_train` and its backward are built from about twenty tensor
//! operations, four of them transposing copies; on burn-flex that cost more than the
//! convolutions around them. Here the forward pass reads the input once for the statistics and
//! once to write the output; the backward pass reads once for the two per-channel sums and once
//! to write the input gradient. The ReLU that follows most BatchNorms rides along: its mask is
//! the sign of the output.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// `(B, C, spatial)` of an NCHW tensor (any number of trailing dimensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
}

impl BnShape {
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn count(&self) -> f64 {
        (self.batch * self.spatial) as f64
    }

    fn rows(&self, ch: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        (0..self.batch).map(move |n| {
            let start = (n * self.channels + ch) * self.spatial;
            start..start + self.spatial
        })
    }
}

/// `Σ (v − shift)^p` of one row for `p` = 1 or 2, in eight independent lanes so that the
/// compiler vectorises it; the lanes are short enough (a row is one image's plane) that `f32`
/// partial sums lose nothing that matters next to the `f64` total.
#[inline(always)]
fn row_sum_inner(row: &[f32], shift: f32, square: bool) -> f64 {
    let mut acc = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            let d = c[l] - shift;
            acc[l] += if square { d * d } else { d };
        }
    }
    let mut total: f64 = acc.iter().map(|&v| v as f64).sum();
    for &v in tail {
        let d = (v - shift) as f64;
        total += if square { d * d } else { d };
    }
    total
}

isa_versions!(row_sum_isa, row_sum_inner, (row: &[f32], shift: f32, square: bool) -> f64);

fn row_sum(row: &[f32], shift: f32, square: bool) -> f64 {
    // SAFETY: `simd::isa` is this CPU's.
    unsafe { row_sum_isa(super::simd::isa(), row, shift, square) }
}

/// `Σ dy'` and `Σ dy'·(x − m)` of one row, `dy'` being `dy` through the ReLU mask when `y` is
/// given. Thirty-two lanes (four vectors of eight) so that the additions are not one long
/// dependency chain; the mask is a select, not a branch.
#[inline(always)]
fn grad_sums_inner(dy: &[f32], y: Option<&[f32]>, x: &[f32], m: f32) -> (f64, f64) {
    const L: usize = 32;
    let (mut a, mut b) = ([0f32; L], [0f32; L]);
    let full = x.len() / L * L;
    match y {
        Some(y) => {
            for ((gc, yc), xc) in dy[..full]
                .chunks_exact(L)
                .zip(y[..full].chunks_exact(L))
                .zip(x[..full].chunks_exact(L))
            {
                for l in 0..L {
                    let g = if yc[l] <= 0.0 { 0.0 } else { gc[l] };
                    a[l] += g;
                    b[l] += g * (xc[l] - m);
                }
            }
        }
        None => {
            for (gc, xc) in dy[..full].chunks_exact(L).zip(x[..full].chunks_exact(L)) {
                for l in 0..L {
                    a[l] += gc[l];
                    b[l] += gc[l] * (xc[l] - m);
                }
            }
        }
    }
    let (mut sd, mut sdx) = (0f64, 0f64);
    for i in full..x.len() {
        let g = match y {
            Some(y) if y[i] <= 0.0 => 0.0,
            _ => dy[i] as f64,
        };
        sd += g;
        sdx += g * (x[i] - m) as f64;
    }
    sd += a.iter().map(|&v| v as f64).sum::<f64>();
    sdx += b.iter().map(|&v| v as f64).sum::<f64>();
    (sd, sdx)
}

isa_versions!(grad_sums, grad_sums_inner, (dy: &[f32], y: Option<&[f32]>, x: &[f32], m: f32) -> (f64, f64));

/// `dy = a·dy' + b·x + c` over one row, `dy'` being `dy` through the ReLU mask when `y` is
/// given; zipped slices (no index bounds checks), so the loops vectorise.
#[inline(always)]
fn dx_row_in_place_inner(dy: &mut [f32], y: Option<&[f32]>, x: &[f32], abc: (f32, f32, f32)) {
    let (a, b, c) = abc;
    match y {
        Some(y) => {
            for ((g, &yv), &xv) in dy.iter_mut().zip(y).zip(x) {
                let gm = if yv > 0.0 { *g } else { 0.0 };
                *g = a * gm + b * xv + c;
            }
        }
        None => {
            for (g, &xv) in dy.iter_mut().zip(x) {
                *g = a * *g + b * xv + c;
            }
        }
    }
}

isa_versions!(dx_row_in_place, dx_row_in_place_inner, (dy: &mut [f32], y: Option<&[f32]>, x: &[f32], abc: (f32, f32, f32)));

/// `out = relu?(x·a + b)` over one row; NaN passes the ReLU.
#[inline(always)]
fn affine_row_inner(out: &mut [MaybeUninit<f32>], x: &[f32], a: f32, b: f32, relu: bool) {
    for (o, &v) in out.iter_mut().zip(x) {
        let t = v * a + b;
        o.write(if relu && t < 0.0 { 0.0 } else { t });
    }
}

isa_versions!(pub(super) affine_row, affine_row_inner, (out: &mut [MaybeUninit<f32>], x: &[f32], a: f32, b: f32, relu: bool));

/// [`affine_row_inner`] over `row` itself.
#[inline(always)]
fn affine_row_in_place_inner(row: &mut [f32], a: f32, b: f32, relu: bool) {
    for v in row.iter_mut() {
        let t = *v * a + b;
        *v = if relu && t < 0.0 { 0.0 } else { t };
    }
}

isa_versions!(affine_row_in_place, affine_row_in_place_inner, (row: &mut [f32], a: f32, b: f32, relu: bool));

/// Output, batch mean and biased batch variance.
pub fn forward(
    shape: BnShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, var, scale, shift) = statistics(shape, x, gamma, beta, epsilon);
    (channel_affine(shape, x, &scale, &shift, relu), mean, var)
}

/// [`forward`] writing the output over `x` (whose owner no longer needs it: a frozen teacher's
/// activations, or anything outside autodiff): no allocation, and one stream less through the
/// memory. Returns the batch mean and biased batch variance.
pub fn forward_in_place(
    shape: BnShape,
    x: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (mean, var, scale, shift) = statistics(shape, x, gamma, beta, epsilon);
    channel_affine_in_place(shape, x, &scale, &shift, relu);
    (mean, var)
}

/// Batch mean and biased variance, and the per-channel `scale`, `shift` that normalise with
/// them.
fn statistics(
    shape: BnShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), shape.len());
    assert_eq!(gamma.len(), shape.channels);
    assert_eq!(beta.len(), shape.channels);
    let n = shape.count();
    // Two passes (mean, then squared deviations) as PyTorch does: a one-pass E[x²] − E[x]²
    // cancels badly when the mean is large against the spread, and the error is then
    // amplified by every BatchNorm downstream.
    let stats: Vec<(f64, f64)> = (0..shape.channels)
        .into_par_iter()
        .map(|ch| {
            if n == 0.0 {
                return (f64::NAN, f64::NAN);
            }
            let mean = shape
                .rows(ch)
                .map(|r| row_sum(&x[r], 0.0, false))
                .sum::<f64>()
                / n;
            let q: f64 = shape
                .rows(ch)
                .map(|r| row_sum(&x[r], mean as f32, true))
                .sum();
            // The squared deviations were taken from the f32-rounded mean; correct for it.
            let d = mean - (mean as f32) as f64;
            (mean, (q / n - d * d).max(0.0))
        })
        .collect();
    let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
    let var: Vec<f32> = stats.iter().map(|s| s.1 as f32).collect();
    let (scale, shift): (Vec<f32>, Vec<f32>) = stats
        .iter()
        .zip(gamma.iter().zip(beta))
        .map(|(&(m, v), (&g, &b))| {
            let a = g as f64 / (v + epsilon).sqrt();
            (a as f32, (b as f64 - m * a) as f32)
        })
        .unzip();
    (mean, var, scale, shift)
}

/// Gradients of input, `gamma` and `beta`. `y` is the forward output, needed (and only read)
/// when the ReLU was fused.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    shape: BnShape,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    y: Option<&[f32]>,
    dy: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    // Only for a `dy` that someone else still holds (rare): the copy is the output buffer.
    let mut dx = dy.to_vec();
    let (dgamma, dbeta) = backward_in_place(shape, x, gamma, mean, var, y, &mut dx, epsilon);
    (dx, dgamma, dbeta)
}

/// [`backward`] writing the input gradient over `dy` (which the autodiff graph hands over and
/// no longer needs). Returns the gradients of `gamma` and `beta`.
#[allow(clippy::too_many_arguments)]
pub fn backward_in_place(
    shape: BnShape,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    y: Option<&[f32]>,
    dy: &mut [f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>) {
    let (coef, dgamma, dbeta) = grad_coefficients(shape, x, gamma, mean, var, y, dy, epsilon);
    let image = shape.channels * shape.spatial;
    let isa = super::simd::isa();
    if image > 0 {
        dy.par_chunks_mut(image).enumerate().for_each(|(img, gi)| {
            for (ch, g) in gi.chunks_exact_mut(shape.spatial).enumerate() {
                let r = img * image + ch * shape.spatial..img * image + (ch + 1) * shape.spatial;
                let ys = y.map(|y| &y[r.clone()]);
                // SAFETY: `simd::isa` is this CPU's.
                unsafe { dx_row_in_place(isa, g, ys, &x[r], coef[ch]) };
            }
        });
    }
    (dgamma, dbeta)
}

/// Per channel, `(a, b, c)` of `dx = a·dy' + b·x + c`, and the gradients of `gamma` and `beta`.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn grad_coefficients(
    shape: BnShape,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    y: Option<&[f32]>,
    dy: &[f32],
    epsilon: f64,
) -> (Vec<(f32, f32, f32)>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), shape.len());
    assert_eq!(dy.len(), shape.len());
    if let Some(y) = y {
        assert_eq!(y.len(), shape.len());
    }
    let n = shape.count();
    let isa = super::simd::isa();
    // Σ dy' and Σ dy'·(x − mean) per channel (dy' is dy through the ReLU mask).
    let sums: Vec<(f64, f64)> = (0..shape.channels)
        .into_par_iter()
        .map(|ch| {
            shape.rows(ch).fold((0f64, 0f64), |(sd, sdx), r| {
                let yr = y.map(|y| &y[r.clone()]);
                // SAFETY: `simd::isa` is this CPU's.
                let (a, b) = unsafe { grad_sums(isa, &dy[r.clone()], yr, &x[r], mean[ch]) };
                (sd + a, sdx + b)
            })
        })
        .collect();
    let mut dgamma = vec![0f32; shape.channels];
    let mut dbeta = vec![0f32; shape.channels];
    let mut coef = vec![(0f32, 0f32, 0f32); shape.channels];
    for ch in 0..shape.channels {
        let inv_std = 1.0 / (var[ch] as f64 + epsilon).sqrt();
        let (sd, sdx) = sums[ch];
        dbeta[ch] = sd as f32;
        dgamma[ch] = (sdx * inv_std) as f32;
        let a = gamma[ch] as f64 * inv_std;
        let b = -a * inv_std * inv_std * sdx / n;
        let c = -a * sd / n - b * mean[ch] as f64;
        coef[ch] = (a as f32, b as f32, c as f32);
    }
    (coef, dgamma, dbeta)
}

/// `relu?(x · scale[c] + shift[c])`; a NaN stays NaN through the ReLU, as in burn's, so that a
/// diverged model is seen as one.
pub fn channel_affine(
    shape: BnShape,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    relu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), shape.len());
    assert_eq!(scale.len(), shape.channels);
    assert_eq!(shift.len(), shape.channels);
    let mut y = Vec::with_capacity(x.len());
    let image = shape.channels * shape.spatial;
    let isa = super::simd::isa();
    if image > 0 {
        let out = &mut y.spare_capacity_mut()[..x.len()];
        out.par_chunks_mut(shape.spatial)
            .zip(x.par_chunks(shape.spatial))
            .enumerate()
            .with_min_len(rows_per_task(shape.spatial))
            .for_each(|(r, (yr, xr))| {
                let ch = r % shape.channels;
                // SAFETY: `simd::isa` is this CPU's.
                unsafe { affine_row(isa, yr, xr, scale[ch], shift[ch], relu) };
            });
        // SAFETY: every image's every channel row was written above.
        unsafe { y.set_len(x.len()) };
    } else {
        y.resize(x.len(), 0.0);
    }
    y
}

/// [`channel_affine`] over `x` itself.
pub fn channel_affine_in_place(
    shape: BnShape,
    x: &mut [f32],
    scale: &[f32],
    shift: &[f32],
    relu: bool,
) {
    assert_eq!(x.len(), shape.len());
    assert_eq!(scale.len(), shape.channels);
    assert_eq!(shift.len(), shape.channels);
    let image = shape.channels * shape.spatial;
    let isa = super::simd::isa();
    if image > 0 {
        x.par_chunks_mut(shape.spatial)
            .enumerate()
            .with_min_len(rows_per_task(shape.spatial))
            .for_each(|(r, row)| {
                let ch = r % shape.channels;
                // SAFETY: `simd::isa` is this CPU's.
                unsafe { affine_row_in_place(isa, row, scale[ch], shift[ch], relu) };
            });
    }
}

/// An eval-mode BatchNorm's `(scale, shift)` from its parameters and running statistics:
/// `scale = weight · (1 / sqrt(var + ε))`, `shift = bias − mean · scale`, each operation rounded
/// on its own as burn's tensor ops round them (no fused multiply-add), so the values are theirs
/// bit for bit.
pub fn eval_affine(
    weight: &[f32],
    bias: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>) {
    let n = weight.len();
    assert!(
        bias.len() == n && mean.len() == n && var.len() == n,
        "BatchNorm parameters of different lengths"
    );
    let scale: Vec<f32> = weight
        .iter()
        .zip(var)
        .map(|(&w, &v)| w * (1.0 / (v + epsilon).sqrt()))
        .collect();
    let shift = bias
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| b - m * s)
        .collect();
    (scale, shift)
}

/// Channel rows per task of the eval-mode affine: split by rows rather than images, so that a
/// batch of one spreads over every core, in tasks of at least `AFFINE_TASK` values so that
/// rayon's hand-off stays small beside the pass over memory.
fn rows_per_task(spatial: usize) -> usize {
    AFFINE_TASK.div_ceil(spatial.max(1))
}

const AFFINE_TASK: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 250.0
                    - 2.0
            })
            .collect()
    }

    /// The in-place forms give the allocating forms' values bit for bit (tests/kernels.rs holds
    /// both against burn through the backend, where the in-place one is the usual path).
    #[test]
    fn in_place_forms_equal_the_allocating_ones() {
        let shape = BnShape {
            batch: 3,
            channels: 5,
            spatial: 37,
        };
        let n = shape.len();
        let (x, dy) = (vals(n, 1), vals(n, 7));
        let gamma = vals(5, 3);
        let beta = vals(5, 5);
        for relu in [false, true] {
            let (y, mean, var) = forward(shape, &x, &gamma, &beta, 1e-5, relu);
            let mut y2 = x.clone();
            let (mean2, var2) = forward_in_place(shape, &mut y2, &gamma, &beta, 1e-5, relu);
            assert_eq!((&y, &mean, &var), (&y2, &mean2, &var2));
            let ys = relu.then_some(y.as_slice());
            let (dx, dg, db) = backward(shape, &x, &gamma, &mean, &var, ys, &dy, 1e-5);
            let mut dx2 = dy.clone();
            let (dg2, db2) = backward_in_place(shape, &x, &gamma, &mean, &var, ys, &mut dx2, 1e-5);
            assert_eq!((&dx, &dg, &db), (&dx2, &dg2, &db2));
            assert!(dx.iter().any(|&v| v != 0.0));
        }
    }
}
