//! The blocked gemm both lowerings run on the micro-kernel of [`super::simd`]: a left operand
//! packed as panels, a right operand read through a table of row offsets.

use std::ops::Range;

use super::simd::{self, GemmArgs, Isa, PanelLayout, RowAffine};

/// The left operand of a gemm: `rows × k` packed panel after panel (see [`PanelLayout`]), zero
/// rows past the end.
pub(super) struct Panels {
    pub data: Vec<f32>,
    pub layout: PanelLayout,
}

impl Panels {
    pub fn zeroed(rows: usize, k: usize) -> Panels {
        let layout = PanelLayout::new(rows);
        Panels {
            data: vec![0f32; layout.rows * k],
            layout,
        }
    }
}

const KC: usize = 256;

/// `c[rows][0..cols] (+)= Σ_k a · b[offs[k] + n]` for every panel of `a` (packed panel after
/// panel, each `[k][height]`), blocked over the reduction (`KC` rows at a time). Columns up to
/// the next micro-tile boundary past `cols` may be written too (never past `ldc`).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_panels(
    isa: Isa,
    (a, layout): (&[f32], PanelLayout),
    k: usize,
    b: &[f32],
    offs: &[usize],
    c: &mut [f32],
    ldc: usize,
    cols: usize,
    accumulate: bool,
) {
    gemm_rows(
        isa,
        (a, layout),
        0..layout.rows,
        k,
        b,
        offs,
        c,
        ldc,
        cols,
        accumulate,
    );
}

/// [`gemm_panels`] for the panels that start in `rows` only (their rows of `c`; the others are
/// left as they were). Each output value is the same sum in the same order as in the full
/// product, so tasks that share one product out by panels give its exact result.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_rows(
    isa: Isa,
    (a, layout): (&[f32], PanelLayout),
    rows: Range<usize>,
    k: usize,
    b: &[f32],
    offs: &[usize],
    c: &mut [f32],
    ldc: usize,
    cols: usize,
    accumulate: bool,
) {
    let tiles = cols.div_ceil(isa.nr()) * isa.nr();
    // The last panel's last row ends at the last tile's end, not at `ldc`: a caller may pass `c`
    // from a column on.
    assert!(ldc >= tiles && c.len() >= (layout.rows - 1) * ldc + tiles);
    // SAFETY: `c`'s extent is asserted just above.
    unsafe {
        gemm_rows_to(
            isa,
            (a, layout),
            rows,
            k,
            b,
            offs,
            c.as_mut_ptr(),
            ldc,
            cols,
            accumulate,
            None,
            false,
        )
    }
}

/// [`gemm_rows`] into `c` given as a pointer, and with `epi` (indexed by the rows of `a`)
/// applied to the finished sums as the last block of the reduction stores them: the caller's
/// output itself can then be `c`, in place of a buffer copied out through the epilogue. With
/// `panels_first`, each panel's rows are finished left to right before the next panel's: the
/// order in which an output that is not in cache is written fastest (a column block at a time
/// down hundreds of channels read each cache line from memory out of order), at the cost of
/// reading all of `B` once per panel, which the caller keeps small.
///
/// # Safety
/// `c` is valid for writes to every panel's rows up to the last tile's end
/// (`(layout.rows - 1)·ldc + ⌈cols/nr⌉·nr` values; only whole tiles are written, so with `cols`
/// a multiple of `nr` exactly the `cols` columns of each row), and no one else touches them
/// meanwhile.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_rows_to(
    isa: Isa,
    (a, layout): (&[f32], PanelLayout),
    rows: Range<usize>,
    k: usize,
    b: &[f32],
    offs: &[usize],
    cp: *mut f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
    epi: Option<RowAffine>,
    panels_first: bool,
) {
    let (nr, width) = (isa.nr(), isa.width());
    // A last tile that would be mostly unread runs on one-vector tiles instead: at batch 1 a
    // 7×7 map's 49 columns filled four 16-column tiles (23% of their products wasted), and a
    // 14×14 map split between two tasks seven.
    let rest = cols % nr;
    let narrow = rest.div_ceil(width);
    let (blocks, narrow) = if rest > 0 && narrow * width < nr {
        (cols / nr, narrow)
    } else {
        (cols.div_ceil(nr), 0)
    };
    assert!(a.len() >= layout.rows * k);
    assert!(ldc >= cols.div_ceil(nr) * nr);
    if let Some(e) = &epi {
        assert!(e.scale.len() >= layout.rows && e.shift.len() >= layout.rows);
    }
    // Keep the larger operand's slice in cache across the inner loop: with many output rows
    // (wide layers, few columns) an `A` panel stays in L1 while the short `B` slices are re-read
    // from L2; otherwise one `KC × nr` slice of `B` serves every panel.
    let panels_outer = panels_first || layout.rows > cols.div_ceil(nr) * nr;
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let tile = |(r0, mr): (usize, usize), nb: usize| {
            let ap = &a[r0 * k + k0 * mr..r0 * k + (k0 + kc) * mr];
            let n0 = nb * nr;
            let args = GemmArgs {
                mr,
                a: ap,
                b: &b[n0..],
                offs: &offs[k0..k0 + kc],
                // SAFETY: `c` holds every panel's mr rows up to the last tile (the contract).
                c: unsafe { cp.add(r0 * ldc + n0) },
                ldc,
                blocks: if nb < blocks { 1 } else { narrow },
                accumulate: accumulate || k0 > 0,
                epi: epi.filter(|_| k0 + kc == k).map(|e| RowAffine {
                    scale: &e.scale[r0..],
                    shift: &e.shift[r0..],
                    relu: e.relu,
                }),
            };
            // SAFETY: `b`'s extent is checked by `simd::gemm` in debug builds and guaranteed
            // by the callers' slack; `c`'s is the contract.
            unsafe {
                if nb < blocks {
                    simd::gemm(isa, &args)
                } else {
                    simd::gemm_narrow(isa, &args)
                }
            };
        };
        // The narrow tiles, if any, as one more column block.
        let all = blocks + usize::from(narrow > 0);
        let panels = || layout.panels().filter(|(r0, _)| rows.contains(r0));
        if panels_outer {
            for p in panels() {
                for nb in 0..all {
                    tile(p, nb);
                }
            }
        } else {
            for nb in 0..all {
                for p in panels() {
                    tile(p, nb);
                }
            }
        }
    }
}
