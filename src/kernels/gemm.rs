//! The blocked gemm both lowerings run on the micro-kernel of [`super::simd`]: a left operand
//! packed as panels, a right operand read through a table of row offsets.

use std::ops::Range;

use super::simd::{self, GemmArgs, Isa, PanelLayout};

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

/// `c[rows][0..blocks·nr] (+)= Σ_k a · b[offs[k] + n]` for every panel of `a` (packed panel
/// after panel, each `[k][height]`), blocked over the reduction (`KC` rows at a time).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_panels(
    isa: Isa,
    (a, layout): (&[f32], PanelLayout),
    k: usize,
    b: &[f32],
    offs: &[usize],
    c: &mut [f32],
    ldc: usize,
    blocks: usize,
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
        blocks,
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
    blocks: usize,
    accumulate: bool,
) {
    assert!(a.len() >= layout.rows * k);
    assert!(c.len() >= layout.rows * ldc && ldc >= blocks * isa.nr());
    // Keep the larger operand's slice in cache across the inner loop: with many output rows
    // (wide layers, few columns) an `A` panel stays in L1 while the short `B` slices are re-read
    // from L2; otherwise one `KC × nr` slice of `B` serves every panel.
    let panels_outer = layout.rows > blocks * isa.nr();
    let cp = c.as_mut_ptr();
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let tile = |(r0, mr): (usize, usize), nb: usize| {
            let ap = &a[r0 * k + k0 * mr..r0 * k + (k0 + kc) * mr];
            // SAFETY: `c` holds every panel's mr rows of ldc ≥ blocks·nr columns (asserted);
            // `b`'s extent is checked by `simd::gemm` in debug builds and guaranteed by the
            // callers' slack.
            unsafe {
                simd::gemm(
                    isa,
                    &GemmArgs {
                        mr,
                        a: ap,
                        b: &b[nb * isa.nr()..],
                        offs: &offs[k0..k0 + kc],
                        c: cp.add(r0 * ldc + nb * isa.nr()),
                        ldc,
                        blocks: 1,
                        accumulate: accumulate || k0 > 0,
                    },
                )
            };
        };
        let panels = || layout.panels().filter(|(r0, _)| rows.contains(r0));
        if panels_outer {
            for p in panels() {
                for nb in 0..blocks {
                    tile(p, nb);
                }
            }
        } else {
            for nb in 0..blocks {
                for p in panels() {
                    tile(p, nb);
                }
            }
        }
    }
}
