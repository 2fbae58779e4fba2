//! The blocked gemm both lowerings run on the micro-kernel of [`super::simd`]: a left operand
//! packed as panels, a right operand read through a table of row offsets.

use std::ops::Range;

use super::activation;
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

/// The order in which a gemm meets its operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Walk {
    /// `B` read in place, the larger operand's slice kept in cache across the inner loop.
    InPlace,
    /// `B` read in place, each panel's rows finished left to right before the next panel's
    /// (see [`gemm_rows_to`]).
    PanelsFirst,
    /// `B` copied tile by tile into a contiguous buffer that every panel then passes over
    /// (see [`gemm_packed`]); [`Walk::InPlace`] for calls with few panels.
    Packed,
}

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
    walk: Walk,
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
        walk,
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
    walk: Walk,
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
            walk,
        )
    }
}

/// [`gemm_rows`] into `c` given as a pointer, and with `epi` (indexed by the rows of `a`)
/// applied to the finished sums as the last block of the reduction stores them: the caller's
/// output itself can then be `c`, in place of a buffer copied out through the epilogue. With
/// [`Walk::PanelsFirst`], each panel's rows are finished left to right before the next
/// panel's, at the cost of reading all of `B` once per panel, which the caller keeps small.
/// Every walk computes each value as the same sum in the same order.
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
    walk: Walk,
) {
    let (nr, width) = (isa.nr(), isa.width());
    // A last tile that would be mostly unread runs on one-vector tiles instead: at batch 1 a
    // 7×7 map's 49 columns filled four 16-column tiles (23% of their products wasted), and a
    // 14×14 map split between two tasks seven.
    let rest = cols % nr;
    let narrow = rest.div_ceil(width);
    // Up to `TAIL_COLS` last columns go to the column kernel instead, where there is one.
    let (blocks, narrow, tail) = if rest > 0 && rest <= TAIL_COLS && simd::has_tail(isa) {
        (cols / nr, 0, rest)
    } else if rest > 0 && narrow * width < nr {
        (cols / nr, narrow, 0)
    } else {
        (cols.div_ceil(nr), 0, 0)
    };
    assert!(a.len() >= layout.rows * k);
    assert!(ldc >= cols.div_ceil(nr) * nr);
    if let Some(e) = &epi {
        assert!(e.scale.len() >= layout.rows && e.shift.len() >= layout.rows);
    }
    if tail > 0 {
        // SAFETY: the tail's columns are inside the caller's rows (the contract).
        unsafe {
            tail_columns(
                isa,
                (a, layout),
                &rows,
                k,
                (b, offs),
                cp,
                ldc,
                (blocks * nr, tail),
                accumulate,
                epi,
            )
        };
    }
    // The narrow tiles, if any, as one more column block.
    let all = blocks + usize::from(narrow > 0);
    // One micro-kernel call: `panel` over the reduction block from `k0`, column tile `nb`.
    let tile = |panel: (usize, usize), k0: usize, nb: usize| {
        let kc = KC.min(k - k0);
        let n0 = nb * nr;
        // SAFETY: `b`'s extent is checked by `simd::gemm` in debug builds and guaranteed by the
        // callers' slack; `c`'s is the contract.
        unsafe {
            micro_tile(
                isa,
                (a, k, panel),
                (k0, kc),
                (&b[n0..], &offs[k0..k0 + kc]),
                (cp, ldc, n0),
                (nb >= blocks).then_some(narrow),
                accumulate,
                epi,
            )
        };
    };
    // One or two column tiles against a long reduction (a deep layer's small map at batch 1):
    // the weights are the stream, each value used for those few tiles only. Each panel then
    // runs its whole reduction before the next, so `A` is read in one run per panel, which the
    // kernel's prefetch and the hardware's follow; block by block across the panels, every
    // block's first lines came unasked (resnet18_cifar batch 1: 0.945 of the time this way,
    // its 512-channel 4×4 layers with cold weights 0.86). The same sums in the same order.
    if all <= 2 && k > KC {
        for panel in panels_in(layout, &rows) {
            for k0 in (0..k).step_by(KC) {
                for nb in 0..all {
                    tile(panel, k0, nb);
                }
            }
        }
        return;
    }
    if walk == Walk::Packed && panels_in(layout, &rows).count() >= PACK_MIN_PANELS {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            gemm_packed(
                isa,
                (a, layout),
                rows,
                k,
                (b, offs),
                cp,
                ldc,
                (blocks, narrow),
                accumulate,
                epi,
            )
        };
        return;
    }
    // Keep the larger operand's slice in cache across the inner loop: with many output rows
    // (wide layers, few columns) an `A` panel stays in L1 while the short `B` slices are re-read
    // from L2; otherwise one `KC × nr` slice of `B` serves every panel.
    let panels_outer = walk == Walk::PanelsFirst || layout.rows > cols.div_ceil(nr) * nr;
    for k0 in (0..k).step_by(KC) {
        let panels = || panels_in(layout, &rows);
        if panels_outer {
            for p in panels() {
                for nb in 0..all {
                    tile(p, k0, nb);
                }
            }
        } else {
            for nb in 0..all {
                for p in panels() {
                    tile(p, k0, nb);
                }
            }
        }
    }
}

/// `epi` from panel row `r0` on, on the reduction's `last` block only.
fn panel_epilogue(epi: Option<RowAffine>, r0: usize, last: bool) -> Option<RowAffine> {
    epi.filter(|_| last).map(|e| RowAffine {
        scale: &e.scale[r0..],
        shift: &e.shift[r0..],
        relu: e.relu,
        act: e.act,
    })
}

/// One micro-kernel call: `panel` `(r0, mr)` of `a` (`k` columns, packed) over the reduction
/// rows `k0..k0 + kc`, against `b` read through `offs` from the tile's first column, into `c`
/// from row `r0` and column `n0`: one whole tile, or with `narrow` that many one-vector tiles
/// (see [`simd::gemm_narrow`]); accumulating past the first block, the epilogue on the last.
///
/// # Safety
/// As [`simd::gemm`] for these arguments.
#[allow(clippy::too_many_arguments)]
unsafe fn micro_tile(
    isa: Isa,
    (a, k, (r0, mr)): (&[f32], usize, (usize, usize)),
    (k0, kc): (usize, usize),
    (b, offs): (&[f32], &[usize]),
    (cp, ldc, n0): (*mut f32, usize, usize),
    narrow: Option<usize>,
    accumulate: bool,
    epi: Option<RowAffine>,
) {
    let args = GemmArgs {
        mr,
        a: &a[r0 * k + k0 * mr..r0 * k + (k0 + kc) * mr],
        b,
        offs,
        // SAFETY: `c` holds every panel's mr rows up to the last tile (the contract).
        c: unsafe { cp.add(r0 * ldc + n0) },
        ldc,
        blocks: narrow.unwrap_or(1),
        accumulate: accumulate || k0 > 0,
        epi: panel_epilogue(epi, r0, k0 + kc == k),
    };
    // SAFETY: the caller's contract.
    unsafe {
        match narrow {
            None => simd::gemm(isa, &args),
            Some(_) => simd::gemm_narrow(isa, &args),
        }
    };
    if let Some(act) = args.epi.and_then(|e| e.act) {
        let width = narrow.map_or(isa.nr(), |n| n * isa.width());
        // SAFETY: the kernel has just stored these `mr` runs of `width` values (whole tiles),
        // which the caller's contract gives to this call alone.
        unsafe { activation::forward_tile(isa, act, args.c, ldc, mr, width) };
    }
}

/// The most last columns (past the whole tiles) [`tail_columns`] computes: a 7×7 map's 49th, the
/// last two of half a 14×14 map at batch 1. Its cost grows with each column where a one-vector
/// tile's does not: with four (a Winograd product of four tiles) it took 1.3× the tile's time.
const TAIL_COLS: usize = 2;

/// Columns `n0..n0 + count` (one or two) of the panels that start in `rows`, with the panels'
/// rows in the lanes ([`simd::gemm_tail`], eight panels side by side), in `KC` blocks
/// as [`gemm_rows_to`]: the same values, for a fraction of the one-vector tiles' work. In
/// ResNet-50's batch-1 forward those tiles were 9.8% of the time, mostly spent on lanes nobody
/// reads.
///
/// # Safety
/// As [`gemm_rows_to`], for these columns.
#[allow(clippy::too_many_arguments)]
unsafe fn tail_columns(
    isa: Isa,
    (a, layout): (&[f32], PanelLayout),
    rows: &Range<usize>,
    k: usize,
    (b, offs): (&[f32], &[usize]),
    cp: *mut f32,
    ldc: usize,
    (n0, count): (usize, usize),
    accumulate: bool,
    epi: Option<RowAffine>,
) {
    let panels: Vec<(usize, usize)> = panels_in(layout, rows).collect();
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for group in panels.chunks(simd::TAIL_PANELS) {
            let mut args = simd::TailArgs {
                a: [&[][..]; simd::TAIL_PANELS],
                h: [0; simd::TAIL_PANELS],
                c: [std::ptr::null_mut(); simd::TAIL_PANELS],
                epi: [None; simd::TAIL_PANELS],
                count: group.len(),
                b,
                offs: &offs[k0..k0 + kc],
                col: n0,
                cols: count,
                ldc,
                accumulate: accumulate || k0 > 0,
            };
            for (g, &(r0, h)) in group.iter().enumerate() {
                args.a[g] = &a[r0 * k + k0 * h..r0 * k + (k0 + kc) * h];
                args.h[g] = h;
                // SAFETY: row `r0`'s column `n0` is inside `c` (the contract).
                args.c[g] = unsafe { cp.add(r0 * ldc + n0) };
                args.epi[g] = panel_epilogue(epi, r0, k0 + kc == k);
            }
            // SAFETY: each panel's `h` rows at these columns are the caller's (the contract).
            unsafe { simd::gemm_tail(isa, &args) };
        }
    }
}

/// The panels of `layout` that start in `rows` (a task's share), as `(first row, height)`.
fn panels_in(
    layout: PanelLayout,
    rows: &Range<usize>,
) -> impl Iterator<Item = (usize, usize)> + '_ {
    layout.panels().filter(move |(r0, _)| rows.contains(r0))
}

/// Tiles of `B` copied per pass of [`gemm_packed`]: rows of 8·48 values read in a run from
/// each of `B`'s rows.
const PACK_TILES: usize = 8;

/// Fewest panels of `A` for which [`gemm_packed`] copies `B`: each copied value then serves at
/// least this many passes of the micro-kernel.
const PACK_MIN_PANELS: usize = 4;

thread_local! {
    /// Each thread's buffer of packed `B` tiles, kept between calls.
    static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`gemm_rows_to`] in the order of a blocked BLAS: `B`'s columns are copied [`PACK_TILES`]
/// tiles at a time into a buffer where each tile's `kc × nr` values lie in one run, and each
/// tile then meets every panel of `A` before the next. The tile (48 KiB for AVX-512) stays in
/// L1 while the panels, 6 KiB each, stream from L2. Read in place, a 56×56 or 14×14 map's
/// rows lie one image plane apart, so each of the `kc` rows of a tile is its own stream (and
/// rows 12.5 KB apart share L1's sets); and whichever of the two operands the other walks kept
/// in cache, the second was read from L2 at 192 bytes per nine cycles of multiply-adds.
/// ResNet-50's 1×1 layers at batch 8 on two threads took 0.72–0.93 of their time the other
/// way. Each tile reads exactly the columns the in-place kernel would, and each value is the
/// same sum in the same order (`KC`-row blocks as there).
///
/// # Safety
/// As [`gemm_rows_to`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_packed(
    isa: Isa,
    (a, layout): (&[f32], PanelLayout),
    rows: Range<usize>,
    k: usize,
    (b, offs): (&[f32], &[usize]),
    cp: *mut f32,
    ldc: usize,
    (blocks, narrow): (usize, usize),
    accumulate: bool,
    epi: Option<RowAffine>,
) {
    let (nr, width) = (isa.nr(), isa.width());
    let all = blocks + usize::from(narrow > 0);
    let read = |nb: usize| if nb < blocks { nr } else { narrow * width };
    let kmax = KC.min(k);
    let packed_offs: Vec<usize> = (0..kmax).map(|kk| kk * nr).collect();
    let mut buf = PACKED_B.with_borrow_mut(std::mem::take);
    let need = kmax * nr * PACK_TILES.min(all);
    if buf.len() < need {
        buf = vec![0f32; need];
    }
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for t0 in (0..all).step_by(PACK_TILES) {
            let t1 = (t0 + PACK_TILES).min(all);
            let mut widths = [0; PACK_TILES];
            for (w, nb) in widths.iter_mut().zip(t0..t1) {
                *w = read(nb);
            }
            let widths = &widths[..t1 - t0];
            simd::pack_tiles(isa, &b[t0 * nr..], &offs[k0..k0 + kc], widths, &mut buf);
            for nb in t0..t1 {
                let tile = &buf[(nb - t0) * kc * nr..][..kc * nr];
                for panel in panels_in(layout, &rows) {
                    let narrow = (nb >= blocks).then_some(narrow);
                    // SAFETY: the tile's `kc` rows of `read(nb)` values are inside `tile`;
                    // `c`'s extent is the contract.
                    unsafe {
                        micro_tile(
                            isa,
                            (a, k, panel),
                            (k0, kc),
                            (tile, &packed_offs[..kc]),
                            (cp, ldc, nb * nr),
                            narrow,
                            accumulate,
                            epi,
                        )
                    };
                }
            }
        }
    }
    PACKED_B.with_borrow_mut(|slot| {
        if slot.len() < buf.len() {
            *slot = buf;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::simd::tests::vals;
    use super::*;

    /// `gemm_rows_to` of `rows` into a fresh `c` of `layout.rows × ldc` values (seeded, so that
    /// accumulation has something to add to), the epilogue `(scale, shift)` with a ReLU if any.
    #[allow(clippy::too_many_arguments)]
    fn product(
        isa: Isa,
        a: (&[f32], PanelLayout),
        rows: Range<usize>,
        k: usize,
        (b, offs): (&[f32], &[usize]),
        (ldc, cols): (usize, usize),
        accumulate: bool,
        epi: Option<(&[f32], &[f32])>,
        walk: Walk,
    ) -> Vec<f32> {
        let nr = isa.nr();
        let mut c = vals(a.1.rows * ldc, 5);
        assert!(c.len() >= (a.1.rows - 1) * ldc + cols.div_ceil(nr) * nr);
        let epi = epi.map(|(scale, shift)| RowAffine {
            scale,
            shift,
            relu: true,
            act: None,
        });
        // SAFETY: `c` holds every panel's rows up to the last tile (asserted).
        unsafe {
            gemm_rows_to(
                isa,
                a,
                rows,
                k,
                b,
                offs,
                c.as_mut_ptr(),
                ldc,
                cols,
                accumulate,
                epi,
                walk,
            )
        };
        c
    }

    /// The last columns through the column kernel against the same columns of a whole tile,
    /// bit for bit: one to `TAIL_COLS` columns, 6- and 4-row panels, groups of eight panels and
    /// fewer, several `KC` blocks, accumulation, the epilogue (with values around zero for
    /// the ReLU), both walks.
    #[test]
    fn column_tail_gives_the_tiles_values() {
        for isa in simd::available() {
            let nr = isa.nr();
            for (rows, k) in [(6, 7), (16, 40), (100, 300), (64, 600)] {
                let layout = PanelLayout::new(rows);
                let a = vals(layout.rows * k, 11);
                let scale = vals(layout.rows, 12);
                let shift: Vec<f32> = vals(layout.rows, 13).iter().map(|v| v * 0.01).collect();
                for rest in 1..=TAIL_COLS {
                    let cols = nr + rest;
                    let plane = 2 * nr + 5;
                    let offs: Vec<usize> = (0..k).map(|kk| kk * plane).collect();
                    let b = vals(k * plane + nr, 14);
                    let ldc = 2 * nr + 3;
                    for (accumulate, epi) in
                        [(false, false), (true, false), (false, true), (true, true)]
                    {
                        for walk in [Walk::InPlace, Walk::Packed] {
                            let run = |cols: usize| {
                                product(
                                    isa,
                                    (&a, layout),
                                    0..layout.rows,
                                    k,
                                    (&b, &offs),
                                    (ldc, cols),
                                    accumulate,
                                    epi.then_some((&scale[..], &shift[..])),
                                    walk,
                                )
                            };
                            let (got, want) = (run(cols), run(2 * nr));
                            for r in 0..layout.rows {
                                for n in 0..cols {
                                    let (g, w) = (got[r * ldc + n], want[r * ldc + n]);
                                    assert_eq!(
                                        g.to_bits(),
                                        w.to_bits(),
                                        "{isa:?} {rows}x{k} +{rest} acc {accumulate} epi {epi} {walk:?}: ({r}, {n}) {g} vs {w}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The packed walk against the in-place ones, bit for bit, and against a plain sum: several
    /// `KC` blocks with a short last one, narrow last tiles, more than [`PACK_TILES`] tiles, one
    /// or two tiles (panel by panel whatever the walk), a share of the panels, accumulation and
    /// the affine epilogue.
    #[test]
    fn packed_walk_gives_the_in_place_values() {
        for isa in simd::available() {
            let (nr, width) = (isa.nr(), isa.width());
            for (rows, k, cols) in [
                (30, 7, 3 * nr),
                (64, 300, 9 * nr + width),
                (100, 600, 10 * nr + 5),
                (24, 256, PACK_TILES * nr + 2 * width),
                (6, 40, 2 * nr),
                // One or two tiles over several blocks: each panel's whole reduction in turn.
                (40, 600, nr + width),
                (30, 520, width),
            ] {
                let packed = Panels {
                    data: vals(PanelLayout::new(rows).rows * k, 1),
                    layout: PanelLayout::new(rows),
                };
                let a = (&packed.data[..], packed.layout);
                // Rows of `B` a plane apart, as an image's channels.
                let plane = cols + 37;
                let offs: Vec<usize> = (0..k).map(|kk| kk * plane).collect();
                let b = vals(k * plane + nr, 2);
                let ldc = cols.div_ceil(nr) * nr + 5;
                let scale = vals(packed.layout.rows, 3);
                let shift = vals(packed.layout.rows, 4);
                let panels: Vec<usize> = packed.layout.panels().map(|(r0, _)| r0).collect();
                let share = panels[panels.len() / 3]..packed.layout.rows;
                for (accumulate, epi, part) in [(false, false, false), (true, true, true)] {
                    let run = |walk: Walk| {
                        let rows = if part {
                            share.clone()
                        } else {
                            0..packed.layout.rows
                        };
                        product(
                            isa,
                            a,
                            rows,
                            k,
                            (&b, &offs),
                            (ldc, cols),
                            accumulate,
                            epi.then_some((&scale[..], &shift[..])),
                            walk,
                        )
                    };
                    let want = run(Walk::InPlace);
                    let got = run(Walk::Packed);
                    let what = format!("{isa:?} {rows}x{k}x{cols} acc {accumulate} epi {epi}");
                    assert_eq!(run(Walk::PanelsFirst), want, "{what}");
                    for r in 0..rows {
                        for n in 0..cols {
                            let (w, g) = (want[r * ldc + n], got[r * ldc + n]);
                            assert_eq!(w.to_bits(), g.to_bits(), "{what}: ({r}, {n})");
                        }
                    }
                    // A plain sum of the first row checks that both are the product at all.
                    if !part && !accumulate {
                        for n in 0..cols {
                            let e: f32 = (0..k)
                                .map(|kk| packed.data[packed.layout.at(0, kk, k)] * b[offs[kk] + n])
                                .sum();
                            assert!((got[n] - e).abs() <= 1e-4 * (1.0 + e.abs()), "{what}: {n}");
                        }
                    }
                }
            }
        }
    }
}
