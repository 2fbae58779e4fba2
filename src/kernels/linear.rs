//! Inference `y = x · W` of a linear layer stored as burn stores it (`W: [d_in, d_out]`):
//! the models' classifier heads.
//!
//! burn-flex hands such a product to the `gemm` crate, which splits it across the cores only
//! from 192³ multiply-adds: at batch 1 a 1280→1000 head (5 MB of weights, read once per image)
//! ran on one core while the others waited, 2.2% of MobileNetV3's batch-1 forward. Here each
//! task owns a block of output columns, reads its columns of `W` row by row as stored, and
//! keeps one sum per column and image in registers; the blocks are shared out among the
//! workers as [`super::pointwise`] shares its rows. One image on one thread takes all columns
//! as one block, which reads `W` in one stream, row after row, its sums in the first-level
//! cache.
//!
//! Each output is one chain of fused multiply-adds over `d_in` in order: the same whatever
//! the batch, the block and the thread count.

use rayon::prelude::*;

use super::simd;

/// Output columns one task's block holds (four AVX-512 registers per image).
const COLS: usize = 64;

/// `y[i][j] = Σ_c x[i][c] · w[c][j]` for the `cols` columns of `w` from `j0` (`w` row-major,
/// `m` wide), into `y`'s rows (`ldy` apart, `cols` written); a block of other than [`COLS`]
/// columns keeps its sums in `y` itself.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block_inner(
    x: &[f32],
    k: usize,
    w: &[f32],
    m: usize,
    j0: usize,
    cols: usize,
    y: &mut [f32],
    ldy: usize,
) {
    let n = x.len() / k;
    for i in 0..n {
        let xi = &x[i * k..(i + 1) * k];
        let yi = &mut y[i * ldy..i * ldy + cols];
        if cols == COLS {
            let mut acc = [0f32; COLS];
            for (c, &xv) in xi.iter().enumerate() {
                let wr: &[f32; COLS] = w[c * m + j0..c * m + j0 + COLS]
                    .try_into()
                    .expect("a block");
                for l in 0..COLS {
                    acc[l] = xv.mul_add(wr[l], acc[l]);
                }
            }
            yi.copy_from_slice(&acc);
        } else {
            yi.fill(0.0);
            for (c, &xv) in xi.iter().enumerate() {
                for (a, &wv) in yi.iter_mut().zip(&w[c * m + j0..c * m + j0 + cols]) {
                    *a = xv.mul_add(wv, *a);
                }
            }
        }
    }
}

isa_versions!(block, block_inner, (x: &[f32], k: usize, w: &[f32], m: usize, j0: usize, cols: usize, y: &mut [f32], ldy: usize));

/// `x · w` for `x: [n, k]`, `w: [k, m]`: `[n, m]`.
pub fn forward(x: &[f32], k: usize, w: &[f32]) -> Vec<f32> {
    assert!(k > 0, "linear: no inputs");
    assert_eq!(x.len() % k, 0, "linear: input not a whole number of rows");
    assert_eq!(w.len() % k, 0, "linear: weight not {k} rows");
    let (n, m) = (x.len() / k, w.len() / k);
    let isa = simd::isa();
    // Per column block, `[image][column]` of its own: each task writes its own buffer.
    let blocks = m.div_ceil(COLS);
    let split = blocks > 1 && super::pointwise::worth_splitting(n, k, m);
    // One image on one thread: all `m` columns as one block, whose sums `block` keeps in `y`
    // (the first-level cache) and whose rows of `w` it reads in one stream, row after row,
    // the same chains of multiply-adds. In blocks of 64 columns each row gives 256 bytes, in
    // another page each time, and MobileNetV3's 1280→1000 head read its weights at 8–15 GB/s
    // that way, where one stream runs at 23 (0.56–0.66 of the time this way). Shared out, each
    // task's columns are a strided piece of every row either way, and the blocks read as fast.
    if n == 1 && !split {
        let mut y = vec![0f32; m];
        // SAFETY: `simd::isa` is this CPU's.
        unsafe { block(isa, x, k, w, m, 0, m, &mut y, m) };
        return y;
    }
    let run = |b: usize, out: &mut [f32]| {
        let j0 = b * COLS;
        let cols = COLS.min(m - j0);
        // SAFETY: `simd::isa` is this CPU's.
        unsafe { block(isa, x, k, w, m, j0, cols, out, COLS) };
    };
    let mut yt = vec![0f32; blocks * n * COLS];
    if split {
        yt.par_chunks_mut(n * COLS)
            .enumerate()
            .for_each(|(b, out)| run(b, out));
    } else {
        for (b, out) in yt.chunks_mut(n * COLS).enumerate() {
            run(b, out);
        }
    }
    let mut y = vec![0f32; n * m];
    for (i, yi) in y.chunks_mut(m).enumerate() {
        for (b, part) in yi.chunks_mut(COLS).enumerate() {
            part.copy_from_slice(&yt[(b * n + i) * COLS..][..part.len()]);
        }
    }
    y
}
