//! The weight gradient of a 1×1 convolution as one gemm over the output positions.
//!
//! `dw[co][ci] = Σ_p dy[co][p] · x[ci][p]`, summed over every output position `p` of every
//! image. `conv::backward_weight` computes such sums as dot products along both rows, each tile
//! ending in horizontal sums: for 1×1 layers that ran at half the forward's speed per
//! multiply-add (ResNet-50's `2048 → 512` at 7×7, batch 8: 19.8 ms for the weight gradient
//! against 8.6 for the forward, one thread), and a 7×7 map's few image chunks left the second
//! core idle. Here the positions are the gemm micro-kernel's reduction instead: one operand
//! is packed into panels, the other transposed into rows of channels, a chunk of
//! [`CHUNK`] positions at a time.
//!
//! The operand with more channels gives the panels (the rows of the product) and the other is
//! transposed into the columns, so the more expensive copy is the smaller one. The chunks are
//! shared out in fixed groups whose partial sums are added in group order, so the result does
//! not depend on the thread count.

use rayon::prelude::*;

use super::conv::{WEIGHT_GRAD_GROUPS, sum_partials};
use super::gemm::{Walk, gemm_rows};
use super::shape::ConvShape;
use super::simd::{Isa, PanelLayout};

/// Positions per pass of the micro-kernel over the reduction: the gemm's own block, so that
/// each chunk is one block of it.
const CHUNK: usize = 256;

/// Below this many channels on either side the copies into the gemm's layouts cost about as
/// much as the products they serve (MobileNetV3's `40 → 120` at 28×28 ran 0.57–0.85× the dot
/// products' speed), and the dot products stay.
const MIN_CHANNELS: usize = 64;

/// Whether [`backward_weight`] computes this shape's weight gradient: 1×1 kernels without
/// padding or groups, at any stride, with at least [`MIN_CHANNELS`] on both sides.
/// `conv::backward_weight` takes it on AVX-512 only (see there); the kernel itself runs, and is
/// tested, on every instruction set.
pub fn applies(s: &ConvShape) -> bool {
    s.well_formed()
        && s.cin.min(s.cout) >= MIN_CHANNELS
        && s.groups == 1
        && s.kh == 1
        && s.kw == 1
        && s.pad == [(0, 0), (0, 0)]
        && s.batch * s.ho() * s.wo() > 0
}

/// One side of the product: the rows of `x` or of `dy`, with position `p` of a channel at
/// `plane · (image · channels + c) + at[p]` (`at` is `None` for `p` itself).
struct Operand<'a> {
    data: &'a [f32],
    channels: usize,
    plane: usize,
    positions: usize,
    at: Option<Vec<usize>>,
}

impl Operand<'_> {
    /// Chunk positions `p0..p0 + len` of channels `cs`, row after row `len` apart, into `out`.
    fn gather(&self, cs: std::ops::Range<usize>, p0: usize, len: usize, out: &mut [f32]) {
        let hw = self.positions;
        for (c, row) in cs.zip(out.chunks_exact_mut(len)) {
            let mut p = p0;
            while p < p0 + len {
                let (i, q) = (p / hw, p % hw);
                let n = (hw - q).min(p0 + len - p);
                let plane = &self.data[(i * self.channels + c) * self.plane..][..self.plane];
                let dst = &mut row[p - p0..p - p0 + n];
                match &self.at {
                    None => dst.copy_from_slice(&plane[q..q + n]),
                    Some(at) => {
                        for (d, &o) in dst.iter_mut().zip(&at[q..q + n]) {
                            *d = plane[o];
                        }
                    }
                }
                p += n;
            }
        }
    }
}

/// `dst[k·ld + r] = src[r·len + k]` for `r < rows`, `k < len`: rows of positions into rows of
/// channels, eight by eight so that both sides are read and written a line at a time.
fn transpose_into(src: &[f32], rows: usize, len: usize, dst: &mut [f32], ld: usize) {
    let mut r0 = 0;
    while r0 < rows {
        let rh = 8.min(rows - r0);
        let src = &src[r0 * len..(r0 + rh) * len];
        let whole = len / 8 * 8;
        // Eight, six or four rows go eight positions at a time; the rest value by value.
        let done = match rh {
            8 => block::<8>(src, len, whole, dst, ld, r0),
            6 => block::<6>(src, len, whole, dst, ld, r0),
            4 => block::<4>(src, len, whole, dst, ld, r0),
            _ => 0,
        };
        block_any(src, rh, len, done, dst, ld, r0);
        r0 += rh;
    }
}

/// [`transpose_into`]'s positions `0..whole` (a multiple of 8) for `R` rows from row `r0`;
/// returns `whole`, the positions done.
fn block<const R: usize>(
    src: &[f32],
    len: usize,
    whole: usize,
    dst: &mut [f32],
    ld: usize,
    r0: usize,
) -> usize {
    for k0 in (0..whole).step_by(8) {
        let mut t = [[0f32; 8]; R];
        for (r, tr) in t.iter_mut().enumerate() {
            tr.copy_from_slice(&src[r * len + k0..][..8]);
        }
        for k in 0..8 {
            let d = &mut dst[(k0 + k) * ld + r0..][..R];
            for (r, dv) in d.iter_mut().enumerate() {
                *dv = t[r][k];
            }
        }
    }
    whole
}

/// [`transpose_into`]'s positions `from..len` for `rows` rows from row `r0`, one value at a
/// time.
fn block_any(
    src: &[f32],
    rows: usize,
    len: usize,
    from: usize,
    dst: &mut [f32],
    ld: usize,
    r0: usize,
) {
    for k in from..len {
        for r in 0..rows {
            dst[k * ld + r0 + r] = src[r * len + k];
        }
    }
}

/// `dw` of `y = conv(x, w)` for a shape [`applies`] accepts, `[cout][cin]`.
pub fn backward_weight(isa: Isa, s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(applies(s), "weight_gemm: unsupported convolution {s:?}");
    let (ho, wo) = (s.ho(), s.wo());
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(dy.len(), s.batch * s.cout * ho * wo);
    let [sy, sx] = s.stride;
    let xs = Operand {
        data: x,
        channels: s.cin,
        plane: s.h * s.w,
        positions: ho * wo,
        // A unit stride reads each channel's positions as they are stored.
        at: (s.stride != [1, 1]).then(|| {
            (0..ho * wo)
                .map(|p| (p / wo) * sy * s.w + (p % wo) * sx)
                .collect()
        }),
    };
    let dys = Operand {
        data: dy,
        channels: s.cout,
        plane: ho * wo,
        positions: ho * wo,
        at: None,
    };
    // The product is `rows × cols`; with more input than output channels it is `dwᵀ`.
    let transposed = s.cin > s.cout;
    let (rows, cols) = if transposed { (&xs, &dys) } else { (&dys, &xs) };
    let positions = s.batch * ho * wo;
    let chunks = positions.div_ceil(CHUNK);
    // Fixed groups of chunks, as the dot products' groups of images: the result is the same
    // whatever the thread count.
    let groups = chunks.min(WEIGHT_GRAD_GROUPS);
    let span = |g: usize| {
        (chunks * g / groups) * CHUNK..((chunks * (g + 1) / groups) * CHUNK).min(positions)
    };
    let ldc = cols.channels.div_ceil(isa.nr()) * isa.nr();
    let sum = sum_partials(
        (0..groups)
            .into_par_iter()
            .map(|g| product(isa, rows, cols, span(g))),
        rows.channels * ldc,
    );
    let mut dw = vec![0f32; s.cout * s.cin];
    for (r, row) in sum.chunks(ldc).enumerate() {
        for (col, &v) in row[..cols.channels].iter().enumerate() {
            let at = if transposed {
                col * s.cin + r
            } else {
                r * s.cin + col
            };
            dw[at] = v;
        }
    }
    dw
}

/// `Σ_p rows[r][p] · cols[c][p]` over positions `ps`, chunk by chunk, as rows of `cols`'
/// channels rounded up to whole micro-tiles.
fn product(isa: Isa, rows: &Operand, cols: &Operand, ps: std::ops::Range<usize>) -> Vec<f32> {
    let (nrows, ncols) = (rows.channels, cols.channels);
    let layout = PanelLayout::new(nrows);
    let ldb = ncols.div_ceil(isa.nr()) * isa.nr();
    let mut a = vec![0f32; layout.rows * CHUNK];
    // The micro-kernel reads whole tiles: the slack past the last row stays zero.
    let mut b = vec![0f32; CHUNK * ldb + isa.nr()];
    let mut c = vec![0f32; layout.rows * ldb];
    let mut g = vec![0f32; nrows.max(ncols) * CHUNK];
    let offs: Vec<usize> = (0..CHUNK).map(|k| k * ldb).collect();
    for (n, p0) in ps.clone().step_by(CHUNK).enumerate() {
        let len = CHUNK.min(ps.end - p0);
        rows.gather(0..nrows, p0, len, &mut g);
        for (r0, h) in layout.panels() {
            // The padding rows of the last panel are computed and dropped.
            let valid = h.min(nrows.saturating_sub(r0));
            let panel = &mut a[r0 * len..(r0 + h) * len];
            transpose_into(&g[r0 * len..], valid, len, panel, h);
        }
        cols.gather(0..ncols, p0, len, &mut g);
        transpose_into(&g, ncols, len, &mut b, ldb);
        gemm_rows(
            isa,
            (&a[..layout.rows * len], layout),
            0..layout.rows,
            len,
            &b,
            &offs[..len],
            &mut c,
            ldb,
            ncols,
            n > 0,
            Walk::InPlace,
        );
    }
    c.truncate(nrows * ldb);
    c
}
