//! 3×3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(2×2, 3×3) (Lavin &
//! Gray, 2016): every 2×2 block of outputs costs 16 multiplications per channel pair instead of
//! 36, so the three passes of such a layer do 2.25× fewer multiply-adds. These layers are almost
//! all of a ResNet-18 or VGG, and PyTorch's CPU path (oneDNN) computes them directly, so this is
//! arithmetic that a framework running the same network does not save.
//!
//! With `d` a 4×4 input patch, `g` a 3×3 kernel and `Δ` a 2×2 output gradient:
//! - forward: `y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A`; the channel sum of the products is, for each of the
//!   16 positions ξ, a matrix product `M_ξ = U_ξ V_ξ` (cout × cin times cin × tiles), which runs on
//!   the gemm micro-kernel of [`super::simd`];
//! - input gradient: the same transform on the flipped, transposed kernel (a stride-1 padding-1
//!   convolution of `dy`, see `conv.rs`);
//! - weight gradient: the exact adjoint of the forward, `dg = Gᵀ[Σ_tiles (A Δ Aᵀ) ⊙ (Bᵀ d B)]G`;
//!   the tile sums are again 16 matrix products (cout × tiles times tiles × cin) on the same
//!   micro-kernel, accumulated chunk after chunk in a fixed order (bit-exact `--resume`).
//!
//! The transform coefficients are 0, ±1 and ±½, so the rounding error stays within a few units
//! of the direct sum's (checked against burn's op in `tests/kernels.rs`).
//!
//! Tiles are numbered across the batch (image, tile row, tile column) and processed in chunks of
//! `CHUNK`, so a single image still spreads over every core, and the transformed data of one
//! chunk stays in cache between the transforms and the products. The transforms gather a run of
//! up to eight tiles along an image row at a time and are compiled per instruction set
//! (`isa_versions!`), so their loops vectorise across tiles.
//!
//! `MEAL_WINOGRAD=0` turns the path off (the direct kernels of `conv.rs` take over), for
//! comparison.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::conv::{ConvShape, copy_row, gemm_panels};
use super::simd::{self, PanelLayout};

/// Tiles per chunk of the forward pass: a multiple of every micro-tile width (8, 16, 48).
const CHUNK: usize = 96;
/// Tiles per chunk of the weight gradient (the reduction length of its products).
const CHUNK_W: usize = 192;
/// Below this many channels on either side the transforms cost as much as they save (32-channel
/// layers measured even, 16-channel ones twice slower: `benches/conv_layers.rs`).
const MIN_CHANNELS: usize = 48;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MEAL_WINOGRAD").map_or(true, |v| v != "0"))
}

/// Whether a convolution takes this path.
pub fn applies(s: &ConvShape) -> bool {
    enabled() && shape_fits(s) && enough_tiles(s)
}

/// The shapes the transforms are written for (independent of the switch, for tests).
pub fn shape_fits(s: &ConvShape) -> bool {
    s.groups == 1
        && s.kh == 3
        && s.kw == 3
        && s.stride == [1, 1]
        && s.dilation == [1, 1]
        && s.pad == [(1, 1), (1, 1)]
        && s.cin >= MIN_CHANNELS
        && s.cout >= MIN_CHANNELS
        && s.batch > 0
        && s.h > 0
        && s.w > 0
}

/// Below this many tiles in the whole batch the kernel transform, paid once per call, outweighs
/// what the tiles save (single-image inference on 8×8 and 4×4 maps).
const MIN_TILES: usize = 64;

fn enough_tiles(s: &ConvShape) -> bool {
    s.batch * s.h.div_ceil(2) * s.w.div_ceil(2) >= MIN_TILES
}

/// Tile grid of the batch: `th × tw` tiles of 2×2 outputs per image (the last row/column may
/// hang over the image).
#[derive(Clone, Copy)]
struct Tiles {
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
    total: usize,
}

/// One tile: its image and the top-left output pixel; `inside` when its 4×4 input patch and
/// its 2×2 output block lie wholly inside the image (no padding, no crop).
#[derive(Clone, Copy, Default)]
struct Tile {
    img: usize,
    oy: usize,
    ox: usize,
    inside: bool,
}

impl Tiles {
    fn new(s: &ConvShape) -> Tiles {
        let (th, tw) = (s.h.div_ceil(2), s.w.div_ceil(2));
        Tiles {
            h: s.h,
            w: s.w,
            th,
            tw,
            total: s.batch * th * tw,
        }
    }

    /// Tiles `p0..p0+n` (numbered image, tile row, tile column).
    fn chunk(&self, p0: usize, n: usize, out: &mut Vec<Tile>) {
        out.clear();
        let per_image = self.th * self.tw;
        out.extend((p0..p0 + n).map(|p| {
            let (img, rem) = (p / per_image, p % per_image);
            let (oy, ox) = (2 * (rem / self.tw), 2 * (rem % self.tw));
            Tile {
                img,
                oy,
                ox,
                inside: oy >= 1 && ox >= 1 && oy + 3 <= self.h && ox + 3 <= self.w,
            }
        }));
    }
}

/// Tiles from `p` on that continue one image row (at most `RUN`).
#[inline(always)]
fn run_len(tiles: &[Tile], p: usize) -> usize {
    let first = tiles[p];
    let mut len = 1;
    while len < RUN && p + len < tiles.len() {
        let next = tiles[p + len];
        if next.img != first.img || next.oy != first.oy || next.ox != first.ox + 2 * len {
            break;
        }
        len += 1;
    }
    len
}

/// Shares an output pointer between the workers; every chunk writes its own tiles only.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: chunks write disjoint output pixels (each tile belongs to one chunk).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The address `i` values past the start (a method, so that closures capture the whole
    /// `Send` wrapper rather than its raw-pointer field).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// `U_ξ = (G g Gᵀ)_ξ` packed for the gemm: for each ξ a `cout × cin` matrix in the panels of
/// `PanelLayout::new(cout)`, zero rows past `cout`.
/// With `flipped`, `w` is the forward kernel `[cin, cout, 3, 3]` of the convolution whose input
/// gradient this is, and `g[co][ci]` is its `w[ci][co]` rotated by 180°.
fn transform_weights(w: &[f32], cout: usize, cin: usize, flipped: bool) -> Vec<f32> {
    let layout = PanelLayout::new(cout);
    let panels: Vec<(usize, usize)> = layout.panels().collect();
    let mut u = vec![0f32; 16 * layout.rows * cin];
    let up = OutPtr(u.as_mut_ptr());
    panels.into_par_iter().for_each(|(r0, h)| {
        for co in r0..(r0 + h).min(cout) {
            for ci in 0..cin {
                let g: [f32; 9] = if flipped {
                    let src = &w[(ci * cout + co) * 9..][..9];
                    std::array::from_fn(|k| src[8 - k])
                } else {
                    w[(co * cin + ci) * 9..][..9].try_into().unwrap()
                };
                // h = G g (4×3), then U = h Gᵀ (4×4).
                let mut h = [[0f32; 3]; 4];
                for b in 0..3 {
                    let (g0, g1, g2) = (g[b], g[3 + b], g[6 + b]);
                    h[0][b] = g0;
                    h[1][b] = 0.5 * (g0 + g1 + g2);
                    h[2][b] = 0.5 * (g0 - g1 + g2);
                    h[3][b] = g2;
                }
                for (i, hi) in h.iter().enumerate() {
                    let row = [
                        hi[0],
                        0.5 * (hi[0] + hi[1] + hi[2]),
                        0.5 * (hi[0] - hi[1] + hi[2]),
                        hi[2],
                    ];
                    for (j, &v) in row.iter().enumerate() {
                        let at = (i * 4 + j) * layout.rows * cin + layout.at(co, ci, cin);
                        // SAFETY: in bounds; each panel is written by one task only.
                        unsafe { *up.at(at) = v };
                    }
                }
            }
        }
    });
    u
}

const MAX_CHUNK: usize = if CHUNK > CHUNK_W { CHUNK } else { CHUNK_W };
/// Tiles gathered together when they are neighbours inside the image.
const RUN: usize = 8;
/// Input channels transformed together before their values are interleaved into the weight
/// gradient's right operand (one short contiguous store per tile instead of one per channel).
const CHANNEL_GROUP: usize = 8;

type Rows16 = [[f32; MAX_CHUNK]; 16];
/// Gathered patches: rows with `RUN` values of slack, so a run is always copied whole.
type Patches = [[f32; MAX_CHUNK + RUN]; 16];

/// Per-worker buffers of the transforms, allocated once per worker rather than per call (they
/// are too large to zero on the stack for every channel).
struct Scratch {
    patches: Box<Patches>,
    out: Vec<Rows16>,
    grad: Box<[[f32; MAX_CHUNK]; 4]>,
    v: Vec<f32>,
    m: Vec<f32>,
    tiles: Vec<Tile>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            patches: Box::new([[0.0; MAX_CHUNK + RUN]; 16]),
            out: vec![[[0.0; MAX_CHUNK]; 16]; CHANNEL_GROUP],
            grad: Box::new([[0.0; MAX_CHUNK]; 4]),
            v: Vec::new(),
            m: Vec::new(),
            tiles: Vec::with_capacity(MAX_CHUNK),
        }
    }
}

/// `o[ξ][p] = (Bᵀ d B)_ξ` of channel `ci` for every tile of the chunk. The patches are gathered
/// into sixteen rows first so that the transform itself runs along contiguous rows.
#[inline(always)]
fn input_tiles(
    x: &[f32],
    (cin, ci): (usize, usize),
    t: &Tiles,
    tiles: &[Tile],
    d: &mut Patches,
    o: &mut Rows16,
) {
    let (h, w) = (t.h, t.w);
    let n = tiles.len();
    let mut p = 0;
    while p < n {
        let first = tiles[p];
        let len = run_len(tiles, p);
        let plane = &x[(first.img * cin + ci) * h * w..][..h * w];
        // A run's patches are four rows of 2·len + 2 contiguous input values; split into even
        // and odd columns, the four patch columns of tile t are even[t], odd[t], even[t + 1]
        // and odd[t + 1], so each becomes one vector copy.
        let whole = len == RUN && first.inside && tiles[p + RUN - 1].inside;
        for r in 0..4 {
            let mut src = [0f32; 2 * RUN + 2];
            let iy = (first.oy + r).wrapping_sub(1);
            if whole {
                src.copy_from_slice(&plane[iy * w + first.ox - 1..][..2 * RUN + 2]);
            } else if iy < h {
                // Columns first.ox − 1 .. first.ox + 2·len + 1, clipped to the image.
                let lo = first.ox.saturating_sub(1);
                let hi = (first.ox + 2 * len + 1).min(w);
                let at = lo + 1 - first.ox;
                copy_row(&mut src[at..at + hi - lo], &plane[iy * w + lo..iy * w + hi]);
            }
            let mut even = [0f32; RUN + 1];
            let mut odd = [0f32; RUN + 1];
            for t in 0..=RUN {
                even[t] = src[2 * t];
                odd[t] = src[2 * t + 1];
            }
            d[r * 4][p..p + RUN].copy_from_slice(&even[..RUN]);
            d[r * 4 + 1][p..p + RUN].copy_from_slice(&odd[..RUN]);
            d[r * 4 + 2][p..p + RUN].copy_from_slice(&even[1..]);
            d[r * 4 + 3][p..p + RUN].copy_from_slice(&odd[1..]);
        }
        p += len;
    }
    for p in 0..n {
        let mut tt = [[0f32; 4]; 4];
        for c in 0..4 {
            let (a0, a1, a2, a3) = (d[c][p], d[4 + c][p], d[8 + c][p], d[12 + c][p]);
            tt[0][c] = a0 - a2;
            tt[1][c] = a1 + a2;
            tt[2][c] = a2 - a1;
            tt[3][c] = a1 - a3;
        }
        for (i, [e0, e1, e2, e3]) in tt.into_iter().enumerate() {
            o[i * 4][p] = e0 - e2;
            o[i * 4 + 1][p] = e1 + e2;
            o[i * 4 + 2][p] = e2 - e1;
            o[i * 4 + 3][p] = e1 - e3;
        }
    }
}

/// `o[ξ][p] = (A Δ Aᵀ)_ξ` of output channel `co` for every tile (zero where a tile hangs over).
#[inline(always)]
fn grad_tiles(
    dy: &[f32],
    (cout, co): (usize, usize),
    t: &Tiles,
    tiles: &[Tile],
    a: &mut [[f32; MAX_CHUNK]; 4],
    o: &mut Rows16,
) {
    let (h, w) = (t.h, t.w);
    let n = tiles.len();
    for (p, tile) in tiles.iter().enumerate() {
        let plane = &dy[(tile.img * cout + co) * h * w..][..h * w];
        let base = tile.oy * w + tile.ox;
        if tile.inside {
            a[0][p] = plane[base];
            a[1][p] = plane[base + 1];
            a[2][p] = plane[base + w];
            a[3][p] = plane[base + w + 1];
        } else {
            let (row2, col2) = (tile.oy + 1 < h, tile.ox + 1 < w);
            a[0][p] = plane[base];
            a[1][p] = if col2 { plane[base + 1] } else { 0.0 };
            a[2][p] = if row2 { plane[base + w] } else { 0.0 };
            a[3][p] = if row2 && col2 {
                plane[base + w + 1]
            } else {
                0.0
            };
        }
    }
    for p in 0..n {
        // R = A Δ (4×2), then E = R Aᵀ (4×4).
        let (d00, d01, d10, d11) = (a[0][p], a[1][p], a[2][p], a[3][p]);
        let r = [
            [d00, d01],
            [d00 + d10, d01 + d11],
            [d00 - d10, d01 - d11],
            [-d10, -d11],
        ];
        for (i, [r0, r1]) in r.into_iter().enumerate() {
            o[i * 4][p] = r0;
            o[i * 4 + 1][p] = r0 + r1;
            o[i * 4 + 2][p] = r0 - r1;
            o[i * 4 + 3][p] = -r1;
        }
    }
}

/// Forward transforms of one chunk: `v[ξ][ci][0..n]` rows of `ld` values.
#[inline(always)]
fn input_chunk(
    x: &[f32],
    cin: usize,
    t: &Tiles,
    tiles: &[Tile],
    sc: &mut Scratch,
    v: &mut [f32],
    ld: usize,
) {
    let n = tiles.len();
    let o = &mut sc.out[0];
    for ci in 0..cin {
        input_tiles(x, (cin, ci), t, tiles, &mut sc.patches, o);
        for (xi, oxi) in o.iter().enumerate() {
            copy_row(&mut v[(xi * cin + ci) * ld..][..n], &oxi[..n]);
        }
    }
}

/// `y = Aᵀ M A` for every output channel of one chunk, cropped to the image.
///
/// # Safety
/// `y` points to the `[batch, cout, h, w]` output, and no other thread writes these tiles.
#[inline(always)]
unsafe fn output_chunk(
    m: &[f32],
    ld: usize,
    rows: usize,
    cout: usize,
    t: &Tiles,
    tiles: &[Tile],
    y: OutPtr,
) {
    let (h, w) = (t.h, t.w);
    let n = tiles.len();
    let mut o = [[0f32; MAX_CHUNK + RUN]; 4];
    for co in 0..cout {
        let ms: [&[f32]; 16] = std::array::from_fn(|xi| &m[(xi * rows + co) * ld..][..n]);
        for p in 0..n {
            // s = Aᵀ M (2×4): rows 0+1+2 and 1−2−3; then y = s A.
            let mut s = [[0f32; 4]; 2];
            for j in 0..4 {
                let (a, b, c, d) = (ms[j][p], ms[4 + j][p], ms[8 + j][p], ms[12 + j][p]);
                s[0][j] = a + b + c;
                s[1][j] = b - c - d;
            }
            for (r, sr) in s.iter().enumerate() {
                o[2 * r][p] = sr[0] + sr[1] + sr[2];
                o[2 * r + 1][p] = sr[1] - sr[2] - sr[3];
            }
        }
        // Each run of tiles along a row writes two output rows of 2·len values (interleaving
        // the even and odd columns), cropped where the last tile hangs over the image.
        let mut p = 0;
        while p < n {
            let first = tiles[p];
            let len = run_len(tiles, p);
            let cols = (2 * len).min(w - first.ox);
            for r in 0..2 {
                if first.oy + r >= h {
                    break;
                }
                let mut row = [0f32; 2 * RUN];
                for t in 0..RUN {
                    row[2 * t] = o[2 * r][p + t];
                    row[2 * t + 1] = o[2 * r + 1][p + t];
                }
                let at = ((first.img * cout + co) * h + first.oy + r) * w + first.ox;
                // SAFETY: `cols` pixels from `at` lie in this output row, and they belong to
                // this chunk's tiles. A whole run is copied with a constant length, inlined as
                // two vector moves (the variable-length copy was a `memmove` call per row).
                unsafe {
                    if cols == 2 * RUN {
                        std::ptr::copy_nonoverlapping(row.as_ptr(), y.at(at), 2 * RUN)
                    } else {
                        std::ptr::copy_nonoverlapping(row.as_ptr(), y.at(at), cols)
                    }
                };
            }
            p += len;
        }
    }
}

/// The output gradient's transform for channels `cos` of one chunk, as the packed left operand
/// of the weight gradient's products: for each ξ a `cout × n` matrix in the panels of `layout`.
///
/// # Safety
/// `dp` holds `16 · layout.rows · n` values and no other thread writes these channels' panels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn grad_operand(
    dy: &[f32],
    (cout, layout): (usize, PanelLayout),
    cos: std::ops::Range<usize>,
    t: &Tiles,
    tiles: &[Tile],
    sc: &mut Scratch,
    dp: OutPtr,
) {
    let n = tiles.len();
    for co in cos {
        let o = &mut sc.out[0];
        grad_tiles(dy, (cout, co), t, tiles, &mut sc.grad, o);
        let (r0, h) = layout.panel_of(co);
        for (xi, oxi) in o.iter().enumerate() {
            let base = xi * layout.rows * n + r0 * n + (co - r0);
            for (p, &val) in oxi[..n].iter().enumerate() {
                // SAFETY: in bounds and owned by this call (the function's contract).
                unsafe { *dp.at(base + p * h) = val };
            }
        }
    }
}

/// The input's transform for channels `c0..c0+cg` (`cg ≤ CHANNEL_GROUP`) of one chunk, as rows
/// `vt[ξ][p][0..ldc]` of the weight gradient's right operand.
///
/// # Safety
/// `vt` holds `16 · CHUNK_W · ldc` values and no other thread writes these channels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn input_operand(
    x: &[f32],
    (cin, ldc): (usize, usize),
    (c0, cg): (usize, usize),
    t: &Tiles,
    tiles: &[Tile],
    sc: &mut Scratch,
    vt: OutPtr,
) {
    let n = tiles.len();
    for (g, o) in sc.out[..cg].iter_mut().enumerate() {
        input_tiles(x, (cin, c0 + g), t, tiles, &mut sc.patches, o);
    }
    for xi in 0..16 {
        for p in 0..n {
            let row = (xi * CHUNK_W + p) * ldc + c0;
            for g in 0..cg {
                // SAFETY: in bounds and owned by this call (the function's contract).
                unsafe { *vt.at(row + g) = sc.out[g][xi][p] };
            }
        }
    }
}

/// The transforms compiled for the ISA the gemm runs with (their loops vectorise across tiles).
mod isa_dispatch {
    use super::*;

    isa_versions!(pub(super) input, input_chunk, (x: &[f32], cin: usize, t: &Tiles, tiles: &[Tile], sc: &mut Scratch, v: &mut [f32], ld: usize));
    isa_versions!(pub(super) output, output_chunk, (m: &[f32], ld: usize, rows: usize, cout: usize, t: &Tiles, tiles: &[Tile], y: OutPtr));
    isa_versions!(pub(super) grad_op, grad_operand, (dy: &[f32], dims: (usize, PanelLayout), cos: std::ops::Range<usize>, t: &Tiles, tiles: &[Tile], sc: &mut Scratch, dp: OutPtr));
    isa_versions!(pub(super) input_op, input_operand, (x: &[f32], dims: (usize, usize), group: (usize, usize), t: &Tiles, tiles: &[Tile], sc: &mut Scratch, vt: OutPtr));
}

/// `y = conv(x, w)` for a shape where [`shape_fits`] holds; `y` is `[batch, cout, h, w]`.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32], y: &mut [f32]) {
    assert!(shape_fits(s), "not a Winograd shape: {s:?}");
    assert_eq!(w.len(), s.cout * s.cin * 9);
    convolve(s, x, &transform_weights(w, s.cout, s.cin, false), y);
}

/// `dx` (`[batch, cin, h, w]`) of `y = conv(x, w)` given `dy`, for a shape where
/// [`shape_fits`]: the same transform applied to `dy` with the flipped, transposed kernel.
pub fn backward_input(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    assert!(shape_fits(s), "not a Winograd shape: {s:?}");
    assert_eq!(w.len(), s.cout * s.cin * 9);
    let t = ConvShape {
        cin: s.cout,
        cout: s.cin,
        ..*s
    };
    let mut dx = vec![0f32; s.batch * s.cin * s.h * s.w];
    convolve(&t, dy, &transform_weights(w, s.cin, s.cout, true), &mut dx);
    dx
}

fn convolve(s: &ConvShape, x: &[f32], u: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(y.len(), s.batch * s.cout * s.h * s.w);
    let isa = simd::isa();
    let nr = isa.nr();
    let (cin, cout) = (s.cin, s.cout);
    let layout = PanelLayout::new(cout);
    let rows = layout.rows;
    let t = Tiles::new(s);
    let offs: Vec<usize> = (0..cin).map(|c| c * CHUNK).collect();
    let out = OutPtr(y.as_mut_ptr());
    (0..t.total.div_ceil(CHUNK))
        .into_par_iter()
        .for_each(|chunk| {
            with_scratch(|sc| {
                let p0 = chunk * CHUNK;
                t.chunk(p0, CHUNK.min(t.total - p0), &mut sc.tiles);
                let mut v = grown(&mut sc.v, 16 * cin * CHUNK + nr);
                let mut m = grown(&mut sc.m, 16 * rows * CHUNK);
                let tiles = std::mem::take(&mut sc.tiles);
                // SAFETY: slices are sized above; the ISA is this CPU's.
                unsafe { isa_dispatch::input(isa, x, cin, &t, &tiles, sc, &mut v[..], CHUNK) };
                let blocks = tiles.len().div_ceil(nr);
                for xi in 0..16 {
                    let a = &u[xi * rows * cin..(xi + 1) * rows * cin];
                    let b = &v[xi * cin * CHUNK..];
                    let c = &mut m[xi * rows * CHUNK..(xi + 1) * rows * CHUNK];
                    gemm_panels(isa, (a, layout), cin, b, &offs, c, CHUNK, blocks, false);
                }
                // SAFETY: this chunk's tiles are written by this closure only.
                unsafe { isa_dispatch::output(isa, &m, CHUNK, rows, cout, &t, &tiles, out) };
                sc.v = v;
                sc.m = m;
                sc.tiles = tiles;
            })
        });
}

/// `dw` (`[cout, cin, 3, 3]`) of `y = conv(x, w)` given `dy`, for a shape where [`shape_fits`].
///
/// Chunks of tiles are taken in order, and within a chunk the work is split by channel (the
/// transforms) and by ξ (the products), so every sum runs in the same order whatever the thread
/// count: the result is bit-identical from run to run (`--resume` relies on it).
pub fn backward_weight(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(shape_fits(s), "not a Winograd shape: {s:?}");
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(dy.len(), s.batch * s.cout * s.h * s.w);
    let isa = simd::isa();
    let nr = isa.nr();
    let (cin, cout) = (s.cin, s.cout);
    let layout = PanelLayout::new(cout);
    let panels: Vec<(usize, usize)> = layout.panels().collect();
    let rows = layout.rows;
    // Columns of M (input channels) padded to whole micro-tiles; what lands there is dropped.
    let ldc = cin.div_ceil(nr) * nr;
    let t = Tiles::new(s);
    let offs: Vec<usize> = (0..CHUNK_W).map(|p| p * ldc).collect();
    let mut msum = vec![0f32; 16 * rows * ldc];
    let mut dp = vec![0f32; 16 * rows * CHUNK_W];
    let mut vt = vec![0f32; 16 * CHUNK_W * ldc];
    let mut tiles = Vec::with_capacity(CHUNK_W);
    for p0 in (0..t.total).step_by(CHUNK_W) {
        t.chunk(p0, CHUNK_W.min(t.total - p0), &mut tiles);
        let n = tiles.len();
        let (dpp, vtp) = (OutPtr(dp.as_mut_ptr()), OutPtr(vt.as_mut_ptr()));
        let tasks = panels.len() + cin.div_ceil(CHANNEL_GROUP);
        (0..tasks).into_par_iter().for_each(|task| {
            with_scratch(|sc| {
                // SAFETY: each task writes its own panel of `dp` or its own channels of `vt`,
                // both sized above; the ISA is this CPU's.
                unsafe {
                    if let Some(&(r0, h)) = panels.get(task) {
                        let cos = r0..(r0 + h).min(cout);
                        isa_dispatch::grad_op(isa, dy, (cout, layout), cos, &t, &tiles, sc, dpp);
                    } else {
                        let c0 = (task - panels.len()) * CHANNEL_GROUP;
                        let cg = CHANNEL_GROUP.min(cin - c0);
                        isa_dispatch::input_op(isa, x, (cin, ldc), (c0, cg), &t, &tiles, sc, vtp);
                    }
                }
            })
        });
        msum.par_chunks_mut(rows * ldc)
            .enumerate()
            .for_each(|(xi, c)| {
                let a = &dp[xi * rows * n..(xi + 1) * rows * n];
                let b = &vt[xi * CHUNK_W * ldc..];
                gemm_panels(isa, (a, layout), n, b, &offs[..n], c, ldc, ldc / nr, true);
            });
    }
    // dg = Gᵀ M G per channel pair.
    let mut dw = vec![0f32; cout * cin * 9];
    dw.par_chunks_mut(cin * 9)
        .enumerate()
        .for_each(|(co, dwc)| {
            for ci in 0..cin {
                let mm = |xi: usize| msum[(xi * rows + co) * ldc + ci];
                // q = Gᵀ M (3×4), then dg = q G (3×3).
                let col = |j: usize| {
                    let (m0, m1, m2, m3) = (mm(j), mm(4 + j), mm(8 + j), mm(12 + j));
                    [m0 + 0.5 * (m1 + m2), 0.5 * (m1 - m2), 0.5 * (m1 + m2) + m3]
                };
                let cols = [col(0), col(1), col(2), col(3)];
                let q: [[f32; 4]; 3] = std::array::from_fn(|a| cols.map(|c| c[a]));
                let g = &mut dwc[ci * 9..][..9];
                for (a, qa) in q.iter().enumerate() {
                    g[a * 3] = qa[0] + 0.5 * (qa[1] + qa[2]);
                    g[a * 3 + 1] = 0.5 * (qa[1] - qa[2]);
                    g[a * 3 + 2] = 0.5 * (qa[1] + qa[2]) + qa[3];
                }
            }
        });
    dw
}

/// `buf` taken out of its scratch slot, grown to at least `len` values. What it held before is
/// left in place: every reader reads only what this call writes, or columns whose results are
/// dropped.
fn grown(buf: &mut Vec<f32>, len: usize) -> Vec<f32> {
    let mut b = std::mem::take(buf);
    if b.len() < len {
        b.resize(len, 0.0);
    }
    b
}

thread_local! {
    /// Each worker's transform buffers, kept between calls: allocating and zeroing megabytes
    /// for every convolution cost more than some of the small layers' arithmetic.
    static SCRATCH: std::cell::RefCell<Option<Box<Scratch>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's scratch (taken out of the slot, so a nested call on the same
/// thread gets fresh buffers instead of a double borrow).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut sc = SCRATCH
        .with_borrow_mut(Option::take)
        .unwrap_or_else(|| Box::new(Scratch::new()));
    let r = f(&mut sc);
    SCRATCH.with_borrow_mut(|slot| *slot = Some(sc));
    r
}
