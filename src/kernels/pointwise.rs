//! 1×1 convolutions of 1×1 maps (a squeeze-excitation's two layers, a head on pooled features)
//! as dot products of the weight's rows with each image's vector.
//!
//! The panel gemm runs such a layer one output column per image: each step of its reduction
//! broadcasts six weights and fills one of sixteen lanes (`gemm_avx512_narrow`), after packing
//! the weight and copying the vector into an im2col matrix. At batch 1 MobileNetV3's eight
//! excitations and its 960→1280 head took 2.3 ms of a 10 ms forward (about 2 GMAC/s). Here
//! every lane works, the weight is read as stored, and the rows are shared out among the
//! workers when the layer is large enough ([`super::conv::min_split_macs`], or
//! [`SPLIT_WEIGHTS_HOT`] while the workers poll).
//!
//! Each output is the same sum in the same order whatever the batch, the row's block and the
//! thread count: sixteen lane sums over the whole multiples of sixteen, fused multiply-adds,
//! a fixed tree over the lanes, then the rest in order.

use rayon::prelude::*;

use super::conv::{ConvShape, Epilogue};
use super::simd;

const LANES: usize = 16;

/// Output rows per task: 64 rows of a 960-wide weight (240 KB) stay in L2 while a batch's
/// images pass over them.
const ROWS_PER_TASK: usize = 64;

/// Weight values from which a layer's rows are shared out while the workers poll
/// ([`super::hot::is_hot`]) whatever its multiply-adds: at a small batch the layer streams its
/// weight from memory, four bytes per multiply-add, so it takes far longer than
/// [`super::conv::min_split_macs`] (which prices multiply-adds in cache) assumes. MobileNetV3's
/// excitations (up to 960×240) ran on one core while the other waited: 4.5% of the batch-1
/// forward's samples.
const SPLIT_WEIGHTS_HOT: usize = 1 << 16;

/// Whether `s` is a 1×1 convolution of a 1×1 map without padding or groups.
pub fn applies(s: &ConvShape) -> bool {
    s.kh == 1 && s.kw == 1 && s.h == 1 && s.w == 1 && s.groups == 1 && s.pad == [(0, 0), (0, 0)]
}

/// `out[r] = Σ_c w[r·k + c] · x[c]` for the `R` rows of `w`.
#[inline(always)]
fn dots_inner<const R: usize>(w: &[f32], k: usize, x: &[f32], out: &mut [f32]) {
    let whole = k / LANES * LANES;
    let mut acc = [[0f32; LANES]; R];
    for c in (0..whole).step_by(LANES) {
        let xv = &x[c..c + LANES];
        for (r, a) in acc.iter_mut().enumerate() {
            let wv = &w[r * k + c..r * k + c + LANES];
            for l in 0..LANES {
                a[l] = wv[l].mul_add(xv[l], a[l]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let mut s8 = [0f32; 8];
        for l in 0..8 {
            s8[l] = a[l] + a[l + 8];
        }
        let s4 = [s8[0] + s8[4], s8[1] + s8[5], s8[2] + s8[6], s8[3] + s8[7]];
        let mut s = (s4[0] + s4[2]) + (s4[1] + s4[3]);
        for c in whole..k {
            s = w[r * k + c].mul_add(x[c], s);
        }
        out[r] = s;
    }
}

#[inline(always)]
fn dots8_inner(w: &[f32], k: usize, x: &[f32], out: &mut [f32]) {
    dots_inner::<8>(w, k, x, out)
}

#[inline(always)]
fn dots4_inner(w: &[f32], k: usize, x: &[f32], out: &mut [f32]) {
    dots_inner::<4>(w, k, x, out)
}

#[inline(always)]
fn dots1_inner(w: &[f32], k: usize, x: &[f32], out: &mut [f32]) {
    dots_inner::<1>(w, k, x, out)
}

isa_versions!(dots8, dots8_inner, (w: &[f32], k: usize, x: &[f32], out: &mut [f32]));
isa_versions!(dots4, dots4_inner, (w: &[f32], k: usize, x: &[f32], out: &mut [f32]));
isa_versions!(dots1, dots1_inner, (w: &[f32], k: usize, x: &[f32], out: &mut [f32]));

/// Whether `n` images through a `k → m` layer (a 1×1 map, or a linear layer) are worth sharing
/// out among the workers.
pub(super) fn worth_splitting(n: usize, k: usize, m: usize) -> bool {
    rayon::current_num_threads() > 1
        && (n * k * m >= super::conv::min_split_macs()
            || (super::hot::is_hot() && m * k >= SPLIT_WEIGHTS_HOT))
}

/// `y = conv(x, w)` (`[batch, cout, 1, 1]`), through `epi` when given.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32], epi: Option<Epilogue>) -> Vec<f32> {
    assert!(applies(s), "not a 1x1 convolution of a 1x1 map {s:?}");
    let (n, k, m) = (s.batch, s.cin, s.cout);
    assert_eq!(x.len(), n * k);
    assert_eq!(w.len(), m * k);
    let isa = simd::isa();
    // Per row block, `[row][image]`: each task writes its own rows.
    let mut yt = vec![0f32; m * n];
    let block = |r0: usize, out: &mut [f32]| {
        let rows = out.len() / n;
        let mut sums = [0f32; 8];
        for i in 0..n {
            let xi = &x[i * k..(i + 1) * k];
            let mut r = 0;
            while r < rows {
                let wr = &w[(r0 + r) * k..];
                // Eight rows at a time: eight weight streams in flight. With four, the layers
                // read their weights from memory at 0.85–0.94 of this speed (MobileNetV3's
                // excitations and 960→1280 head at batch 1, one thread or two).
                // SAFETY: `simd::isa` is this CPU's.
                let take = if rows - r >= 8 {
                    unsafe { dots8(isa, &wr[..8 * k], k, xi, &mut sums) };
                    8
                } else if rows - r >= 4 {
                    unsafe { dots4(isa, &wr[..4 * k], k, xi, &mut sums) };
                    4
                } else {
                    unsafe { dots1(isa, &wr[..k], k, xi, &mut sums) };
                    1
                };
                for (j, &v) in sums[..take].iter().enumerate() {
                    out[(r + j) * n + i] = v;
                }
                r += take;
            }
        }
    };
    let threads = rayon::current_num_threads();
    if worth_splitting(n, k, m) {
        // At least two tasks per thread (a layer of 168 rows ran as 64, 64, 40).
        let rows = ROWS_PER_TASK.min(m.div_ceil(2 * threads).next_multiple_of(4));
        yt.par_chunks_mut(rows * n)
            .enumerate()
            .for_each(|(b, out)| block(b * rows, out));
    } else {
        // The same blocks in order on this thread: a hand-off would cost more than the layer.
        for (b, out) in yt.chunks_mut(ROWS_PER_TASK * n).enumerate() {
            block(b * ROWS_PER_TASK, out);
        }
    }
    let mut y = vec![0f32; n * m];
    for (i, yi) in y.chunks_mut(m).enumerate() {
        for (c, v) in yi.iter_mut().enumerate() {
            *v = yt[c * n + i];
        }
        if let Some(e) = &epi {
            e.apply_in_place(yi);
        }
    }
    y
}
