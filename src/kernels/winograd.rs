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
//! - weight gradient: the exact adjoint of the forward, `dg = Gᵀ[Σ_tiles (A Δ Aᵀ) ⊙ (Bᵀ d B)]G`,
//!   whose tile sums are dot products on the micro-kernel of the direct path.
//!
//! The transform coefficients are 0, ±1 and ±½, so the rounding error stays within a few units
//! of the direct sum's (checked against burn's op in `tests/kernels.rs`).
//!
//! Tiles are numbered across the batch (image, tile row, tile column) and processed in chunks of
//! [`CHUNK`], so a single image still spreads over every core, and the transformed data of one
//! chunk stays in cache between the transforms and the products.
//!
//! `MEAL_WINOGRAD=0` turns the path off (the direct kernels of `conv.rs` take over), for
//! comparison.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::conv::{ConvShape, gemm_panels};
use super::simd::{self, Isa, MR};

/// Tiles per chunk of the forward pass: a multiple of every micro-tile width (8, 16, 48).
const CHUNK: usize = 96;
/// Tiles per chunk of the weight gradient (the reduction length of its products).
const CHUNK_W: usize = 192;
/// Below this many channels on either side the transforms cost about as much as they save.
const MIN_CHANNELS: usize = 32;
/// Fixed split of the weight-gradient tile sum, as in `conv.rs`: the summation order, and so the
/// result, does not depend on the thread count (bit-exact `--resume`).
const WEIGHT_GRAD_GROUPS: usize = 4;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MEAL_WINOGRAD").map_or(true, |v| v != "0"))
}

/// Whether a convolution takes this path.
pub fn applies(s: &ConvShape) -> bool {
    enabled() && shape_fits(s)
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

/// Shares an output pointer between the workers; every chunk writes its own tiles only.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: chunks write disjoint output pixels (each tile belongs to one chunk).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `U_ξ = (G g Gᵀ)_ξ` packed for the gemm: `[ξ][panel][cin][MR]`, zero rows past `cout`.
fn transform_weights(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let panels = cout.div_ceil(MR);
    let mut u = vec![0f32; 16 * panels * cin * MR];
    for co in 0..cout {
        for ci in 0..cin {
            let g = &w[(co * cin + ci) * 9..][..9];
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
                    let xi = i * 4 + j;
                    u[((xi * panels + co / MR) * cin + ci) * MR + co % MR] = v;
                }
            }
        }
    }
    u
}

const MAX_CHUNK: usize = if CHUNK > CHUNK_W { CHUNK } else { CHUNK_W };
/// Input channels transformed together before their values are interleaved into the weight
/// gradient's right operand (one short contiguous store per tile instead of one per channel).
const CHANNEL_GROUP: usize = 8;

type Rows16 = [[f32; MAX_CHUNK]; 16];

/// Per-worker buffers of the transforms, allocated once per worker rather than per call (they
/// are too large to zero on the stack for every channel).
struct Scratch {
    patches: Box<Rows16>,
    out: Vec<Rows16>,
    grad: Box<[[f32; MAX_CHUNK]; 4]>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            patches: Box::new([[0.0; MAX_CHUNK]; 16]),
            out: vec![[[0.0; MAX_CHUNK]; 16]; CHANNEL_GROUP],
            grad: Box::new([[0.0; MAX_CHUNK]; 4]),
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
    d: &mut Rows16,
    o: &mut Rows16,
) {
    let (h, w) = (t.h, t.w);
    let n = tiles.len();
    for (p, tile) in tiles.iter().enumerate() {
        let plane = &x[(tile.img * cin + ci) * h * w..][..h * w];
        if tile.inside {
            let base = (tile.oy - 1) * w + tile.ox - 1;
            for r in 0..4 {
                let row = &plane[base + r * w..][..4];
                for c in 0..4 {
                    d[r * 4 + c][p] = row[c];
                }
            }
        } else {
            for r in 0..4 {
                let iy = (tile.oy + r).wrapping_sub(1);
                for c in 0..4 {
                    let ix = (tile.ox + c).wrapping_sub(1);
                    d[r * 4 + c][p] = if iy < h && ix < w {
                        plane[iy * w + ix]
                    } else {
                        0.0
                    };
                }
            }
        }
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
            v[(xi * cin + ci) * ld..][..n].copy_from_slice(&oxi[..n]);
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
    let mut o = [[0f32; MAX_CHUNK]; 4];
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
        for (p, tile) in tiles.iter().enumerate() {
            let at = ((tile.img * cout + co) * h + tile.oy) * w + tile.ox;
            // SAFETY: the pixels are inside the output (checked against h and w) and belong to
            // this chunk's tiles.
            unsafe {
                let q = y.0.add(at);
                *q = o[0][p];
                let col2 = tile.ox + 1 < w;
                if col2 {
                    *q.add(1) = o[1][p];
                }
                if tile.oy + 1 < h {
                    *q.add(w) = o[2][p];
                    if col2 {
                        *q.add(w + 1) = o[3][p];
                    }
                }
            }
        }
    }
}

/// Weight-gradient operands of one chunk, laid out for the gemm micro-kernel: the output
/// gradient's transform as its packed left operand `dp[ξ][panel][p][MR]`, the input's as rows
/// `vt[ξ][p][0..ldc]` of its right operand.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn weight_operands_chunk(
    x: &[f32],
    dy: &[f32],
    (cin, cout, panels, ldc): (usize, usize, usize, usize),
    t: &Tiles,
    tiles: &[Tile],
    sc: &mut Scratch,
    dp: &mut [f32],
    vt: &mut [f32],
) {
    let n = tiles.len();
    for co in 0..cout {
        let o = &mut sc.out[0];
        grad_tiles(dy, (cout, co), t, tiles, &mut sc.grad, o);
        let (panel, m) = (co / MR, co % MR);
        for (xi, oxi) in o.iter().enumerate() {
            let base = (xi * panels + panel) * n * MR + m;
            for (p, &val) in oxi[..n].iter().enumerate() {
                dp[base + p * MR] = val;
            }
        }
    }
    for c0 in (0..cin).step_by(CHANNEL_GROUP) {
        let cg = CHANNEL_GROUP.min(cin - c0);
        for (g, o) in sc.out[..cg].iter_mut().enumerate() {
            input_tiles(x, (cin, c0 + g), t, tiles, &mut sc.patches, o);
        }
        for xi in 0..16 {
            for p in 0..n {
                let dst = &mut vt[(xi * CHUNK_W + p) * ldc + c0..][..cg];
                for (g, d) in dst.iter_mut().enumerate() {
                    *d = sc.out[g][xi][p];
                }
            }
        }
    }
}

/// The transforms compiled for the ISA the gemm runs with (their loops vectorise across tiles).
mod isa_dispatch {
    use super::*;

    macro_rules! dispatch {
        ($name:ident, $inner:ident, ($($arg:ident: $ty:ty),*)) => {
            /// # Safety
            /// As the function it wraps.
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn $name(isa: Isa, $($arg: $ty),*) {
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn avx2($($arg: $ty),*) { unsafe { $inner($($arg),*) } }
                    #[target_feature(enable = "avx512f,avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn avx512($($arg: $ty),*) { unsafe { $inner($($arg),*) } }
                    match isa {
                        // SAFETY: the ISA was detected on this CPU (`simd::isa`).
                        Isa::Avx512 => return unsafe { avx512($($arg),*) },
                        Isa::Avx2 => return unsafe { avx2($($arg),*) },
                        Isa::Portable => {}
                    }
                }
                let _ = isa;
                unsafe { $inner($($arg),*) }
            }
        };
    }

    #[inline(always)]
    unsafe fn input_inner(
        x: &[f32],
        cin: usize,
        t: &Tiles,
        tiles: &[Tile],
        sc: &mut Scratch,
        v: &mut [f32],
        ld: usize,
    ) {
        input_chunk(x, cin, t, tiles, sc, v, ld);
    }

    #[inline(always)]
    unsafe fn output_inner(
        m: &[f32],
        ld: usize,
        rows: usize,
        cout: usize,
        t: &Tiles,
        tiles: &[Tile],
        y: OutPtr,
    ) {
        // SAFETY: forwarded contract.
        unsafe { output_chunk(m, ld, rows, cout, t, tiles, y) };
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn weight_inner(
        x: &[f32],
        dy: &[f32],
        dims: (usize, usize, usize, usize),
        t: &Tiles,
        tiles: &[Tile],
        sc: &mut Scratch,
        dp: &mut [f32],
        vt: &mut [f32],
    ) {
        weight_operands_chunk(x, dy, dims, t, tiles, sc, dp, vt);
    }

    dispatch!(input, input_inner, (x: &[f32], cin: usize, t: &Tiles, tiles: &[Tile], sc: &mut Scratch, v: &mut [f32], ld: usize));
    dispatch!(output, output_inner, (m: &[f32], ld: usize, rows: usize, cout: usize, t: &Tiles, tiles: &[Tile], y: OutPtr));
    dispatch!(weight_operands, weight_inner, (x: &[f32], dy: &[f32], dims: (usize, usize, usize, usize), t: &Tiles, tiles: &[Tile], sc: &mut Scratch, dp: &mut [f32], vt: &mut [f32]));
}

/// `y = conv(x, w)` for a shape where [`shape_fits`] holds; `y` is `[batch, cout, h, w]`.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32], y: &mut [f32]) {
    assert!(shape_fits(s), "not a Winograd shape: {s:?}");
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(w.len(), s.cout * s.cin * 9);
    assert_eq!(y.len(), s.batch * s.cout * s.h * s.w);
    let isa = simd::isa();
    let nr = isa.nr();
    let (cin, cout) = (s.cin, s.cout);
    let rows = cout.div_ceil(MR) * MR;
    let u = transform_weights(w, cout, cin);
    let t = Tiles::new(s);
    let offs: Vec<usize> = (0..cin).map(|c| c * CHUNK).collect();
    let out = OutPtr(y.as_mut_ptr());
    (0..t.total.div_ceil(CHUNK)).into_par_iter().for_each_init(
        || {
            (
                vec![0f32; 16 * cin * CHUNK + nr],
                vec![0f32; 16 * rows * CHUNK],
                Vec::with_capacity(CHUNK),
                Scratch::new(),
            )
        },
        |(v, m, tiles, sc), chunk| {
            let p0 = chunk * CHUNK;
            t.chunk(p0, CHUNK.min(t.total - p0), tiles);
            // SAFETY: slices are sized above; the ISA is this CPU's.
            unsafe { isa_dispatch::input(isa, x, cin, &t, tiles, sc, v, CHUNK) };
            let blocks = tiles.len().div_ceil(nr);
            for xi in 0..16 {
                let a = &u[xi * rows * cin..(xi + 1) * rows * cin];
                let b = &v[xi * cin * CHUNK..];
                let c = &mut m[xi * rows * CHUNK..(xi + 1) * rows * CHUNK];
                gemm_panels(isa, a, cin, b, &offs, c, CHUNK, blocks, false);
            }
            // SAFETY: this chunk's tiles are written by this closure only.
            unsafe { isa_dispatch::output(isa, m, CHUNK, rows, cout, &t, tiles, out) };
        },
    );
}

/// `dw` (`[cout, cin, 3, 3]`) of `y = conv(x, w)` given `dy`, for a shape where [`shape_fits`].
pub fn backward_weight(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(shape_fits(s), "not a Winograd shape: {s:?}");
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(dy.len(), s.batch * s.cout * s.h * s.w);
    let isa = simd::isa();
    let nr = isa.nr();
    let (cin, cout) = (s.cin, s.cout);
    let panels = cout.div_ceil(MR);
    let rows = panels * MR;
    // Columns of M (input channels) padded to whole micro-tiles; the padding stays zero.
    let ldc = cin.div_ceil(nr) * nr;
    let t = Tiles::new(s);
    let chunks = t.total.div_ceil(CHUNK_W);
    let per = chunks.div_ceil(WEIGHT_GRAD_GROUPS);
    let offs: Vec<usize> = (0..CHUNK_W).map(|p| p * ldc).collect();
    let mlen = 16 * rows * ldc;
    let partials: Vec<Vec<f32>> = (0..chunks.div_ceil(per))
        .into_par_iter()
        .map(|grp| {
            let mut msum = vec![0f32; mlen];
            let mut dp = vec![0f32; 16 * rows * CHUNK_W];
            let mut vt = vec![0f32; 16 * CHUNK_W * ldc];
            let mut tiles = Vec::with_capacity(CHUNK_W);
            let mut sc = Scratch::new();
            for chunk in grp * per..((grp + 1) * per).min(chunks) {
                let p0 = chunk * CHUNK_W;
                t.chunk(p0, CHUNK_W.min(t.total - p0), &mut tiles);
                let n = tiles.len();
                // SAFETY: slices are sized above; the ISA is this CPU's.
                unsafe {
                    isa_dispatch::weight_operands(
                        isa,
                        x,
                        dy,
                        (cin, cout, panels, ldc),
                        &t,
                        &tiles,
                        &mut sc,
                        &mut dp,
                        &mut vt,
                    )
                };
                for xi in 0..16 {
                    let a = &dp[xi * panels * n * MR..(xi + 1) * panels * n * MR];
                    let b = &vt[xi * CHUNK_W * ldc..];
                    let c = &mut msum[xi * rows * ldc..(xi + 1) * rows * ldc];
                    gemm_panels(isa, a, n, b, &offs[..n], c, ldc, ldc / nr, true);
                }
            }
            msum
        })
        .collect();
    let mut msum = vec![0f32; mlen];
    for p in &partials {
        msum.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    // dg = Gᵀ M G per channel pair.
    let mut dw = vec![0f32; cout * cin * 9];
    for co in 0..cout {
        for ci in 0..cin {
            let mm = |xi: usize| msum[(xi * rows + co) * ldc + ci];
            // q = Gᵀ M (3×4), then dg = q G (3×3).
            let col = |j: usize| {
                let (m0, m1, m2, m3) = (mm(j), mm(4 + j), mm(8 + j), mm(12 + j));
                [m0 + 0.5 * (m1 + m2), 0.5 * (m1 - m2), 0.5 * (m1 + m2) + m3]
            };
            let cols = [col(0), col(1), col(2), col(3)];
            let q: [[f32; 4]; 3] = std::array::from_fn(|a| cols.map(|c| c[a]));
            let g = &mut dw[(co * cin + ci) * 9..][..9];
            for (a, qa) in q.iter().enumerate() {
                g[a * 3] = qa[0] + 0.5 * (qa[1] + qa[2]);
                g[a * 3 + 1] = 0.5 * (qa[1] - qa[2]);
                g[a * 3 + 2] = 0.5 * (qa[1] + qa[2]) + qa[3];
            }
        }
    }
    dw
}
