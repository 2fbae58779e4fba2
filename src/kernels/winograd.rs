//! 3×3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(m×m, 3×3) (Lavin &
//! Gray, 2016), with output tiles of m = 4 (the default) or m = 2. A tile of m×m outputs reads an
//! α×α input patch (α = m + 2) and costs α² multiplications per channel pair instead of 9m²:
//! F(2×2, 3×3) does 2.25× fewer multiply-adds than the direct sum, F(4×4, 3×3) 4× fewer. These
//! layers are almost all of a ResNet-18 or VGG, and PyTorch's CPU path (oneDNN) computes them
//! directly, so this is arithmetic that a framework running the same network does not save.
//!
//! With `d` an α×α input patch, `g` a 3×3 kernel and `Δ` an m×m output gradient:
//! - forward: `y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A`; the channel sum of the products is, for each of the
//!   α² positions ξ, a matrix product `M_ξ = U_ξ V_ξ` (cout × cin times cin × tiles), which runs
//!   on the gemm micro-kernel of [`super::simd`];
//! - input gradient: the same transform on the flipped, transposed kernel (a stride-1 padding-1
//!   convolution of `dy`, see `conv.rs`);
//! - weight gradient: the exact adjoint of the forward, `dg = Gᵀ[Σ_tiles (A Δ Aᵀ) ⊙ (Bᵀ d B)]G`;
//!   the tile sums are again α² matrix products (cout × tiles times tiles × cin) on the same
//!   micro-kernel, accumulated chunk after chunk in a fixed order (bit-exact `--resume`).
//!
//! F(2×2) has coefficients 0, ±1 and ±½, so its rounding error stays within a few units of the
//! direct sum's. F(4×4) uses the interpolation points 0, ±1, ±2 (coefficients up to 8 and down to
//! 1/24), which costs about one more decimal digit; both are checked against burn's op in
//! `tests/kernels.rs`.
//!
//! Tiles are numbered across the batch (image, tile row, tile column) and processed in chunks,
//! so a single image still spreads over every core, and the transformed data of one chunk stays
//! in cache between the transforms and the products. The transforms gather a run of up to eight
//! tiles along an image row at a time and are compiled per instruction set (`isa_versions!`), so
//! their loops vectorise across tiles.
//!
//! `MEAL_WINOGRAD=0` turns the path off (the direct kernels of `conv.rs` take over), and
//! `MEAL_WINOGRAD=2` or `4` forces one tile size on every shape ([`tile_for`] picks per shape), for
//! comparison.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::copy::{copy_row_to, every_nth_rows, interleave_to};
use super::gemm::{Walk, gemm_panels};
use super::shape::ConvShape;
use super::simd::{self, PanelLayout};

/// Tiles per chunk of the forward pass: a multiple of every micro-tile width (8, 16, 48). The
/// same for F(4×4), whose tiles are 4× larger: with 48 the transformed kernel was read twice as
/// often, and the 8×8 layers of resnet18_cifar ran 20–40% slower.
const CHUNK: usize = 96;
/// Tiles per chunk of the weight gradient (the reduction length of its products).
const CHUNK_W: usize = 192;
/// Below this many channels on either side the transforms cost as much as they save: for F(2×2),
/// 32-channel layers measured even and 16-channel ones twice slower; F(4×4) lost 30% on
/// resnet20's 16-channel layers, and on its 32-channel ones the gain per layer (up to 10%) did
/// not show in whole training steps (`benches/conv_layers.rs`, `meal bench`).
const MIN_CHANNELS: usize = 48;
/// The largest α² (F(4×4, 3×3)).
const MAX_XI: usize = 36;

/// `MEAL_WINOGRAD`: `0` turns the path off, `2` or `4` forces that tile side; anything else (or
/// nothing) picks the tile per shape ([`tile_for`]).
fn setting() -> Option<Option<usize>> {
    static SETTING: OnceLock<Option<Option<usize>>> = OnceLock::new();
    *SETTING.get_or_init(|| match std::env::var("MEAL_WINOGRAD").as_deref() {
        Ok("0") => None,
        Ok("2") => Some(Some(2)),
        Ok("4") => Some(Some(4)),
        _ => Some(None),
    })
}

/// The output tile side for a shape: 4, which measured as fast as 2 on resnet18_cifar's 4×4 maps and
/// 15–35% faster on its larger ones (`benches/conv_layers.rs`, batch 64), except on maps under
/// 3×3, where a 6×6 patch for at most 2×2 outputs does more products than F(2×2).
pub fn tile_for(s: &ConvShape) -> usize {
    match setting() {
        Some(Some(m)) => m,
        _ if s.h.min(s.w) >= 3 => 4,
        _ => 2,
    }
}

/// Whether a convolution takes this path.
pub fn applies(s: &ConvShape) -> bool {
    setting().is_some() && shape_fits(s) && enough_tiles(s)
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

/// Below this many output pixels in the whole batch the kernel transform, paid once per call,
/// outweighs what the tiles save (single-image inference on 8×8 and 4×4 maps).
const MIN_PIXELS: usize = 256;

/// The bound for layers of at least [`WIDE_CHANNELS`] channels on both sides: with the kernel
/// transform kept between calls (`kernels::prepared`), a single 14×14 image's sixteen tiles
/// pay for the transforms there. ResNet-50's 256-channel 3×3 layers at batch 1 took 0.74 of
/// the direct path's time with their weights in cache and 0.94 with them cold (the same
/// layers at 128 channels 1.08–1.27, hence the bound); the whole batch-1 forward 0.96–1.00.
const MIN_PIXELS_WIDE: usize = 196;
const WIDE_CHANNELS: usize = 256;

fn enough_tiles(s: &ConvShape) -> bool {
    let wide = s.cin.min(s.cout) >= WIDE_CHANNELS;
    s.batch * s.h * s.w >= if wide { MIN_PIXELS_WIDE } else { MIN_PIXELS }
}

/// Tile grid of the batch: `th × tw` tiles of `m×m` outputs per image (the last row/column may
/// hang over the image).
#[derive(Clone, Copy)]
struct Tiles {
    m: usize,
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
    total: usize,
}

/// One tile: its image and the top-left output pixel.
#[derive(Clone, Copy, Default)]
struct Tile {
    img: usize,
    oy: usize,
    ox: usize,
}

impl Tiles {
    fn new(s: &ConvShape, m: usize) -> Tiles {
        let (th, tw) = (s.h.div_ceil(m), s.w.div_ceil(m));
        Tiles {
            m,
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
        let (m, per_image) = (self.m, self.th * self.tw);
        out.extend((p0..p0 + n).map(|p| {
            let (img, rem) = (p / per_image, p % per_image);
            let (oy, ox) = (m * (rem / self.tw), m * (rem % self.tw));
            Tile { img, oy, ox }
        }));
    }
}

/// Tiles from `p` on that continue one image row (at most `RUN`).
#[inline(always)]
fn run_len(tiles: &[Tile], p: usize, m: usize) -> usize {
    let first = tiles[p];
    let mut len = 1;
    while len < RUN && p + len < tiles.len() {
        let next = tiles[p + len];
        if next.img != first.img || next.oy != first.oy || next.ox != first.ox + m * len {
            break;
        }
        len += 1;
    }
    len
}

/// The one-dimensional transforms of F(m, 3) for `A = m + 2` (4 or 6); the two-dimensional ones
/// apply them to the columns, then to the rows. `A` is a compile-time constant of every caller,
/// so only one branch of each survives.
mod coef {
    use std::ops::{Add, Mul, Neg, Sub};

    /// The most tiles side by side: one AVX-512 register of each value.
    pub const LANES: usize = 16;

    /// `L` tiles' values side by side: 16 (one AVX-512 register), 8 (one AVX2 register) or 1.
    /// [`bt`], [`at`] and [`a`] compute on these; each lane's expression is the scalar one,
    /// operation for operation, so the same bits whatever the width.
    #[derive(Clone, Copy)]
    pub struct Lanes<const L: usize>(pub [f32; L]);

    impl<const L: usize> Default for Lanes<L> {
        #[inline(always)]
        fn default() -> Self {
            Lanes([0.0; L])
        }
    }

    impl<const L: usize> Add for Lanes<L> {
        type Output = Self;
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            Lanes(std::array::from_fn(|i| self.0[i] + o.0[i]))
        }
    }

    impl<const L: usize> Sub for Lanes<L> {
        type Output = Self;
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            Lanes(std::array::from_fn(|i| self.0[i] - o.0[i]))
        }
    }

    impl<const L: usize> Mul<f32> for Lanes<L> {
        type Output = Self;
        #[inline(always)]
        fn mul(self, k: f32) -> Self {
            Lanes(std::array::from_fn(|i| self.0[i] * k))
        }
    }

    impl<const L: usize> Neg for Lanes<L> {
        type Output = Self;
        #[inline(always)]
        fn neg(self) -> Self {
            Lanes(self.0.map(|v| -v))
        }
    }

    /// `[f(0), …, f(K − 1)]` built in place: `std::array::from_fn` over these 64-byte values
    /// was left out of line, as a function compiled for baseline x86-64.
    ///
    /// The transforms' callers write out their "columns, then rows" loops: one generic helper
    /// for the three (taking the input, the transform and where to put each value) compiled
    /// slower, 1.03–1.3 times the layers' time.
    #[inline(always)]
    pub fn column<const K: usize, const L: usize>(f: impl Fn(usize) -> Lanes<L>) -> [Lanes<L>; K] {
        let mut v = [Lanes::default(); K];
        for (k, x) in v.iter_mut().enumerate() {
            *x = f(k);
        }
        v
    }

    const R6: f32 = 1.0 / 6.0;
    const R12: f32 = 1.0 / 12.0;
    const R24: f32 = 1.0 / 24.0;

    /// `Bᵀ d`: the input patch.
    #[inline(always)]
    pub fn bt<const A: usize, const L: usize>(d: [Lanes<L>; A]) -> [Lanes<L>; A] {
        let mut r = [Lanes::default(); A];
        if A == 4 {
            r[0] = d[0] - d[2];
            r[1] = d[1] + d[2];
            r[2] = d[2] - d[1];
            r[3] = d[1] - d[3];
        } else {
            r[0] = d[0] * 4.0 - d[2] * 5.0 + d[4];
            r[1] = d[3] + d[4] - (d[1] + d[2]) * 4.0;
            r[2] = d[4] - d[3] + (d[1] - d[2]) * 4.0;
            r[3] = d[4] - d[2] + (d[3] - d[1]) * 2.0;
            r[4] = d[4] - d[2] + (d[1] - d[3]) * 2.0;
            r[5] = d[1] * 4.0 - d[3] * 5.0 + d[5];
        }
        r
    }

    /// `Aᵀ m`: `A` products back to `A − 2` outputs.
    #[inline(always)]
    pub fn at<const A: usize, const M: usize, const L: usize>(m: [Lanes<L>; A]) -> [Lanes<L>; M] {
        let mut y = [Lanes::default(); M];
        if A == 4 {
            y[0] = m[0] + m[1] + m[2];
            y[1] = m[1] - m[2] - m[3];
        } else {
            let (s12, d12, s34, d34) = (m[1] + m[2], m[1] - m[2], m[3] + m[4], m[3] - m[4]);
            y[0] = m[0] + s12 + s34;
            y[1] = d12 + d34 * 2.0;
            y[2] = s12 + s34 * 4.0;
            y[3] = d12 + d34 * 8.0 + m[5];
        }
        y
    }

    /// `G g`: a kernel column to `A` values.
    #[inline(always)]
    pub fn g<const A: usize>(g: [f32; 3]) -> [f32; A] {
        let mut u = [0f32; A];
        if A == 4 {
            u[0] = g[0];
            u[1] = 0.5 * (g[0] + g[1] + g[2]);
            u[2] = 0.5 * (g[0] - g[1] + g[2]);
            u[3] = g[2];
        } else {
            // Products by the reciprocals: a division per coefficient made the kernel
            // transform of a 512-channel layer cost as much as its products.
            let (even, odd) = (g[0] + g[2], g[1]);
            let (outer, middle) = (g[0] * R24 + g[2] * R6, g[1] * R12);
            u[0] = g[0] * 0.25;
            u[1] = -(even + odd) * R6;
            u[2] = -(even - odd) * R6;
            u[3] = outer + middle;
            u[4] = outer - middle;
            u[5] = g[2];
        }
        u
    }

    /// `A Δ`: `A − 2` output gradients to `A` values (the adjoint of [`at`]).
    #[inline(always)]
    pub fn a<const M: usize, const A: usize, const L: usize>(d: [Lanes<L>; M]) -> [Lanes<L>; A] {
        let mut e = [Lanes::default(); A];
        if A == 4 {
            e[0] = d[0];
            e[1] = d[0] + d[1];
            e[2] = d[0] - d[1];
            e[3] = -d[1];
        } else {
            let (s02, s13) = (d[0] + d[2], d[1] + d[3]);
            let (q02, q13) = (d[0] + d[2] * 4.0, d[1] * 2.0 + d[3] * 8.0);
            e[0] = d[0];
            e[1] = s02 + s13;
            e[2] = s02 - s13;
            e[3] = q02 + q13;
            e[4] = q02 - q13;
            e[5] = d[3];
        }
        e
    }

    /// `Gᵀ m`: `A` values to a kernel column (the adjoint of [`g`]).
    #[inline(always)]
    pub fn gt<const A: usize>(m: [f32; A]) -> [f32; 3] {
        if A == 4 {
            [
                m[0] + 0.5 * (m[1] + m[2]),
                0.5 * (m[1] - m[2]),
                0.5 * (m[1] + m[2]) + m[3],
            ]
        } else {
            let (s12, d12, s34, d34) = (m[1] + m[2], m[1] - m[2], m[3] + m[4], m[3] - m[4]);
            [
                m[0] * 0.25 - s12 * R6 + s34 * R24,
                d34 * R12 - d12 * R6,
                (s34 - s12) * R6 + m[5],
            ]
        }
    }
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

    /// The same buffer seen from `i` values on.
    fn shifted(self, i: usize) -> OutPtr {
        OutPtr(self.at(i))
    }
}

/// `U_ξ = (G g Gᵀ)_ξ` packed for the gemm: for each ξ a `cout × cin` matrix in the panels of
/// `PanelLayout::new(cout)`, zero rows past `cout`, in a buffer kept for the next call
/// ([`Pooled`]).
/// With `flipped`, `w` is the forward kernel `[cin, cout, 3, 3]` of the convolution whose input
/// gradient this is, and `g[co][ci]` is its `w[ci][co]` rotated by 180°.
fn transform_weights<const M: usize, const A: usize>(
    w: &[f32],
    cout: usize,
    cin: usize,
    flipped: bool,
) -> Pooled {
    let isa = simd::isa();
    let layout = PanelLayout::new(cout);
    let mut u = Pooled::take(A * A * layout.rows * cin);
    let up = OutPtr(u.as_mut_ptr());
    let blocks = cin.div_ceil(KERNEL_BLOCK);
    let tasks: Vec<((usize, usize), usize)> = layout
        .panels()
        .flat_map(|p| (0..blocks).map(move |b| (p, b * KERNEL_BLOCK)))
        .collect();
    tasks.into_par_iter().for_each(|(panel, ci0)| {
        let block = (ci0, KERNEL_BLOCK.min(cin - ci0));
        // SAFETY: each task writes its own panel rows of its own input channels, in bounds;
        // the ISA is this CPU's.
        unsafe {
            let dims = (cout, cin, layout.rows);
            isa_dispatch::kernels::<M>(isa, w, dims, flipped, panel, block, up)
        }
    });
    u
}

/// Input channels whose kernels one task transforms together.
const KERNEL_BLOCK: usize = 8;

/// The transforms of the kernels of panel `(r0, h)` for input channels `ci0..ci0 + cb`. They
/// are computed in the packed order `q = (ci − ci0)·h + (co − r0)`, one lane per channel pair,
/// so that each ξ's values leave as one contiguous run: written pair by pair, as α² scattered
/// stores each, the transform of a 512-channel layer cost as much as its products.
///
/// # Safety
/// `u` holds the whole packed transform, and no other thread writes these rows and channels.
#[inline(always)]
unsafe fn kernel_block<const A: usize>(
    w: &[f32],
    (cout, cin, rows): (usize, usize, usize),
    flipped: bool,
    (r0, h): (usize, usize),
    (ci0, cb): (usize, usize),
    u: OutPtr,
) {
    const Q: usize = KERNEL_BLOCK * simd::MR_WIDE;
    let n = cb * h;
    let mut g = [[0f32; Q]; 9];
    for q in 0..n {
        let (ci, co) = (ci0 + q / h, r0 + q % h);
        if co >= cout {
            continue; // a padding row: zero
        }
        if flipped {
            let src = &w[(ci * cout + co) * 9..][..9];
            for (k, gk) in g.iter_mut().enumerate() {
                gk[q] = src[8 - k];
            }
        } else {
            let src = &w[(co * cin + ci) * 9..][..9];
            for (k, gk) in g.iter_mut().enumerate() {
                gk[q] = src[k];
            }
        }
    }
    let mut out = [[0f32; Q]; MAX_XI];
    for q in 0..Q {
        // t = G g (A×3), then U = t Gᵀ (A×A).
        let cols: [[f32; A]; 3] =
            std::array::from_fn(|b| coef::g([g[b][q], g[3 + b][q], g[6 + b][q]]));
        for i in 0..A {
            let row = coef::g::<A>([cols[0][i], cols[1][i], cols[2][i]]);
            for (j, &v) in row.iter().enumerate() {
                out[i * A + j][q] = v;
            }
        }
    }
    for (xi, o) in out[..A * A].iter().enumerate() {
        // SAFETY: the run lies in rows r0.. of ξ's matrix (the function's contract).
        unsafe { copy_row_to(u.at(xi * rows * cin + r0 * cin + ci0 * h), &o[..n]) };
    }
}

/// `dg = Gᵀ M G` of output channel `co` for input channels `c0..c0 + cb`, one lane per input
/// channel (each ξ's sums are contiguous along them), into `dwc` (`[cin][3][3]`). Pair by pair
/// and unvectorised, this was a third of a 512-channel layer's weight gradient.
#[inline(always)]
fn kernel_grad_block<const A: usize>(
    msum: &[f32],
    (rows, ldc): (usize, usize),
    co: usize,
    (c0, cb): (usize, usize),
    dwc: &mut [f32],
) {
    let mut m = [[0f32; KERNEL_BLOCK]; MAX_XI];
    for (xi, mx) in m[..A * A].iter_mut().enumerate() {
        let at = (xi * rows + co) * ldc + c0;
        mx[..cb].copy_from_slice(&msum[at..at + cb]);
    }
    let mut g = [[0f32; 9]; KERNEL_BLOCK];
    for l in 0..KERNEL_BLOCK {
        // q = Gᵀ M (3×A), then dg = q G (3×3).
        let cols: [[f32; 3]; A] =
            std::array::from_fn(|j| coef::gt::<A>(std::array::from_fn(|i| m[i * A + j][l])));
        for a in 0..3 {
            let row = coef::gt::<A>(std::array::from_fn(|j| cols[j][a]));
            g[l][a * 3..a * 3 + 3].copy_from_slice(&row);
        }
    }
    for (l, gl) in g[..cb].iter().enumerate() {
        dwc[(c0 + l) * 9..][..9].copy_from_slice(gl);
    }
}

/// A buffer kept by its thread between calls. The transformed kernel of a 512-channel layer
/// (37.7 MB for F(4×4)) is above glibc's largest `mmap` threshold (`kernels::allocator`), so
/// a plain `Vec` was mapped, faulted in page by page and unmapped at every call. What a taken
/// buffer holds is unspecified: every caller writes each value it reads.
struct Pooled {
    /// Every value of the buffer has been written once (it is never truncated, so taking it
    /// again for a shorter use costs no fill).
    buf: Vec<f32>,
    len: usize,
}

thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Pooled {
    /// The smallest kept buffer of at least `len` values, else the largest one grown.
    fn take(len: usize) -> Pooled {
        let mut buf = POOL
            .with_borrow_mut(|pool| {
                let fits = (0..pool.len()).filter(|&i| pool[i].len() >= len);
                let best = fits.min_by_key(|&i| pool[i].len());
                let largest = (0..pool.len()).max_by_key(|&i| pool[i].len());
                best.or(largest).map(|i| pool.swap_remove(i))
            })
            .unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        Pooled { buf, len }
    }
}

impl std::ops::Deref for Pooled {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // Four per thread cover the most taken at once (the weight gradient's three).
        POOL.with_borrow_mut(|pool| {
            if pool.len() < 4 {
                pool.push(buf)
            }
        });
    }
}

const MAX_CHUNK: usize = if CHUNK > CHUNK_W { CHUNK } else { CHUNK_W };
/// Tiles gathered together when they are neighbours inside the image.
const RUN: usize = 8;
/// Runs of at most this many tiles are gathered and scattered value by value.
const SHORT_RUN: usize = 2;
/// Input channels transformed together before their values are interleaved into the weight
/// gradient's right operand (one short contiguous store per tile instead of one per channel).
const CHANNEL_GROUP: usize = 8;

type Rows = [[f32; MAX_CHUNK]; MAX_XI];
/// Gathered patches: rows with `RUN` values of slack, so a run is always copied whole.
type Patches = [[f32; MAX_CHUNK + RUN]; MAX_XI];

/// Per-worker buffers of the transforms, allocated once per worker rather than per call (they
/// are too large to zero on the stack for every channel).
struct Scratch {
    patches: Box<Patches>,
    out: Vec<Rows>,
    grad: Box<[[f32; MAX_CHUNK + RUN]; 16]>,
    v: Vec<f32>,
    m: Vec<f32>,
    tiles: Vec<Tile>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            patches: Box::new([[0.0; MAX_CHUNK + RUN]; MAX_XI]),
            out: vec![[[0.0; MAX_CHUNK]; MAX_XI]; CHANNEL_GROUP],
            grad: Box::new([[0.0; MAX_CHUNK + RUN]; 16]),
            v: Vec::new(),
            m: Vec::new(),
            tiles: Vec::with_capacity(MAX_CHUNK),
        }
    }
}

/// Asks for the `span` values from `start` of `line` in the next channel's plane (`plane`
/// values on) while this channel's are gathered: each channel's tiles are a short stream of
/// their own that the hardware prefetcher does not pick up in time (without it, 64- and
/// 128-channel layers at batch 32 took 1.05–1.15 of the time).
#[inline(always)]
fn prefetch_next(line: &[f32], start: isize, span: usize, plane: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let first = line.as_ptr().wrapping_offset(start).wrapping_add(plane);
        for k in (0..span).step_by(16) {
            // SAFETY: a prefetch does not fault, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(k).cast()) };
        }
        // The last value's line, when `span` is not a whole number of lines from `first`.
        // SAFETY: as above.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(span - 1).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (line, start, span, plane);
}

/// Row `c` of `rows` (`K` of them) from value `p` on: column `c` of the run's `len` tiles, value
/// `start + c + m·t` of `line` for tile `t`, zero outside it. Runs of more than `SHORT_RUN`
/// tiles go through `every_nth_rows`, which writes `RUN` tiles' columns (those past the run's
/// end are the next run's, which writes them again); shorter ones value by value, since the
/// vector gather costs the same for one tile as for eight (with it alone, 256- and 512-channel
/// layers on 8×8 and 4×4 maps took 1.3 times as long).
#[inline(always)]
fn gather_run<const K: usize>(
    isa: simd::Isa,
    (line, start): (&[f32], isize),
    m: usize,
    len: usize,
    rows: &mut [[f32; MAX_CHUNK + RUN]],
    p: usize,
) {
    assert_eq!(rows.len(), K);
    let end = line.len() as isize;
    if len <= SHORT_RUN {
        // A tile's K values, each checked against the row (K is a constant, so the checks
        // unroll): through a bounded copy of the run into a zeroed buffer, the weight
        // gradient of 64-channel 8×8 layers took 1.1–1.2 times as long, and by masked loads
        // twice as long on AMD.
        for t in 0..len {
            let from = start + (m * t) as isize;
            let mut v = [0f32; K];
            for (c, x) in v.iter_mut().enumerate() {
                let at = from + c as isize;
                if (0..end).contains(&at) {
                    *x = line[at as usize];
                }
            }
            for (row, &x) in rows.iter_mut().zip(&v) {
                row[p + t] = x;
            }
        }
        return;
    }
    // `every_nth_rows` has lane permutes with AVX-512 only; its value-by-value fallback took
    // AVX2's 64-channel layers to 1.04–1.26 of their time before. The split below lives here,
    // not as that fallback, because here the column count `K` is a constant: moved there, with
    // the count known at run time, the 64-channel 32×32 forward took 1.05–1.07 times as long.
    if isa != simd::Isa::Avx512 {
        // The run's values, read in place when they lie inside the row, else through a
        // zero-padded copy, then split: bounds checked once per row, not per value (checked
        // per value, the input transform of 8×8 maps took 1.6 times as long). The copy is a
        // loop, not `copy_from_slice`: its call to `memcpy` per row took resnet18_cifar's
        // training step to 1/0.946 of the time on one thread.
        let span = K + m * (len - 1);
        let mut buf = [0f32; 48];
        let src: &[f32] = if start >= 0 && start + span as isize <= end {
            &line[start as usize..start as usize + span]
        } else {
            let lo = start.clamp(0, end);
            let hi = (start + span as isize).clamp(lo, end);
            if hi > lo {
                // `lo` is then `start` or 0, at or after `start`.
                let at = (lo - start) as usize;
                let (lo, hi) = (lo as usize, hi as usize);
                for (b, &v) in buf[at..at + hi - lo].iter_mut().zip(&line[lo..hi]) {
                    *b = v;
                }
            }
            &buf[..span]
        };
        for (c, row) in rows.iter_mut().enumerate() {
            for (d, &v) in row[p..p + len].iter_mut().zip(src[c..].iter().step_by(m)) {
                *d = v;
            }
        }
        return;
    }
    // SAFETY: each row holds values `p..p + RUN` (`p` is below the chunk's length, at most
    // `MAX_CHUNK`), and the rows are `MAX_CHUNK + RUN` apart.
    unsafe {
        let dst = rows[0].as_mut_ptr().add(p);
        every_nth_rows(
            isa,
            (line, start),
            m,
            (rows.len(), RUN),
            dst,
            MAX_CHUNK + RUN,
        );
    }
}

/// `o[ξ][p] = (Bᵀ d B)_ξ` of channel `ci` for every tile of the chunk (and, up to the next
/// multiple of [`coef::LANES`], values nobody may read). The patches are gathered into α² rows
/// first so that the transform itself runs along contiguous rows, a tile per vector lane
/// (scalar code before; with the gathers below and the next channel prefetched, 64- to
/// 256-channel layers took 0.69–0.95 of their forward time, "meal's CPU kernels" in
/// BENCHMARKS.md).
#[inline(always)]
fn input_tiles<const M: usize, const A: usize>(
    x: &[f32],
    (cin, ci): (usize, usize),
    t: &Tiles,
    tiles: &[Tile],
    d: &mut Patches,
    o: &mut Rows,
) {
    let (h, w) = (t.h, t.w);
    let n = tiles.len();
    let isa = simd::isa();
    let mut p = 0;
    while p < n {
        let first = tiles[p];
        let len = run_len(tiles, p, M);
        let plane = &x[(first.img * cin + ci) * h * w..][..h * w];
        // A run's patches are A rows of M·len + 2 input values, zero outside the image;
        // column c of the tile at x is value x − 1 + c of its row, gathered from the image
        // itself by `gather_run` (lane permutes and masked loads took the transform to
        // 0.72–0.94 of its time on 64- and 128-channel layers; each row copied into a padded
        // buffer first and split value by value, every read waited on the copy's stores).
        for r in 0..A {
            let iy = (first.oy + r).wrapping_sub(1);
            let line = if iy < h {
                &plane[iy * w..(iy + 1) * w]
            } else {
                &[]
            };
            if !line.is_empty() {
                prefetch_next(line, first.ox as isize - 1, M * len + 2, h * w);
            }
            gather_run::<A>(
                isa,
                (line, first.ox as isize - 1),
                M,
                len,
                &mut d[r * A..r * A + A],
                p,
            );
        }
        p += len;
    }
    const { assert!(MAX_CHUNK.is_multiple_of(coef::LANES)) };
    assert!(n <= MAX_CHUNK);
    if isa == simd::Isa::Avx512 {
        input_lanes::<A, 16>(d, o, n);
    } else {
        input_lanes::<A, 8>(d, o, n);
    }
}

/// `o[ξ][p] = (Bᵀ d B)_ξ` for the gathered patches of tiles `0..n`, `L` tiles at a time, one per
/// lane: eight (one AVX2 register) without AVX-512, where sixteen spilled (64-channel layers at
/// batch 128 took 1.1 times as long). The lanes past `n` of the last block compute on stale
/// values.
#[inline(always)]
fn input_lanes<const A: usize, const L: usize>(d: &Patches, o: &mut Rows, n: usize) {
    for p in (0..n).step_by(L) {
        let lanes = |k: usize| coef::Lanes::<L>(d[k][p..p + L].try_into().unwrap());
        // The columns' transforms, then the rows'. (Arrays built by `from_fn` here compiled
        // to slower code: 64-channel layers at batch 32 took 1.02–1.11 of the time.)
        let mut tt = [[coef::Lanes::<L>::default(); A]; A];
        #[allow(clippy::needless_range_loop)]
        for c in 0..A {
            let col = coef::bt::<A, _>(coef::column(|r| lanes(r * A + c)));
            for (i, &v) in col.iter().enumerate() {
                tt[i][c] = v;
            }
        }
        for (i, row) in tt.into_iter().enumerate() {
            for (j, v) in coef::bt::<A, _>(row).into_iter().enumerate() {
                o[i * A + j][p..p + L].copy_from_slice(&v.0);
            }
        }
    }
}

/// `o[ξ][p] = (A Δ Aᵀ)_ξ` of output channel `co` for every tile (zero where a tile hangs over),
/// gathered and transformed as in [`input_tiles`]: the tiles' columns by `gather_run`, then
/// [`coef::LANES`] tiles at a time.
#[inline(always)]
fn grad_tiles<const M: usize, const A: usize>(
    dy: &[f32],
    (cout, co): (usize, usize),
    t: &Tiles,
    tiles: &[Tile],
    a: &mut [[f32; MAX_CHUNK + RUN]; 16],
    o: &mut Rows,
) {
    let (h, w) = (t.h, t.w);
    let n = tiles.len();
    let isa = simd::isa();
    let mut p = 0;
    while p < n {
        let first = tiles[p];
        let len = run_len(tiles, p, M);
        let plane = &dy[(first.img * cout + co) * h * w..][..h * w];
        // Column j of the tile at x is value x + j of its row, zero past the image.
        for i in 0..M {
            let iy = first.oy + i;
            let line = if iy < h {
                &plane[iy * w..(iy + 1) * w]
            } else {
                &[]
            };
            if !line.is_empty() {
                prefetch_next(line, first.ox as isize, M * len, h * w);
            }
            gather_run::<M>(
                isa,
                (line, first.ox as isize),
                M,
                len,
                &mut a[i * M..i * M + M],
                p,
            );
        }
        p += len;
    }
    assert!(n <= MAX_CHUNK);
    // Without AVX-512 a tile at a time: on eight lanes the 24 values of `R` and the column
    // being built spill from AVX2's sixteen registers (the 64-channel 32×32 weight gradient
    // took 1.04–1.08 times as long as a tile at a time).
    if isa == simd::Isa::Avx512 {
        grad_lanes::<M, A, 16>(a, o, n);
    } else {
        grad_lanes::<M, A, 1>(a, o, n);
    }
}

/// `o[ξ][p] = (A Δ Aᵀ)_ξ` for the gathered tiles `0..n`, `L` at a time as in [`input_lanes`]
/// (one, a tile at a time, without AVX-512).
#[inline(always)]
fn grad_lanes<const M: usize, const A: usize, const L: usize>(
    a: &[[f32; MAX_CHUNK + RUN]; 16],
    o: &mut Rows,
    n: usize,
) {
    for p in (0..n).step_by(L) {
        let lanes = |k: usize| coef::Lanes::<L>(a[k][p..p + L].try_into().unwrap());
        // R = A Δ (A×M), then E = R Aᵀ (A×A).
        let mut r = [[coef::Lanes::<L>::default(); M]; A];
        #[allow(clippy::needless_range_loop)]
        for j in 0..M {
            let col = coef::a::<M, A, _>(coef::column(|i| lanes(i * M + j)));
            for (i, &v) in col.iter().enumerate() {
                r[i][j] = v;
            }
        }
        for (i, ri) in r.into_iter().enumerate() {
            for (k, v) in coef::a::<M, A, _>(ri).into_iter().enumerate() {
                o[i * A + k][p..p + L].copy_from_slice(&v.0);
            }
        }
    }
}

/// Forward transforms of channels `cis` for one chunk: `v[ξ][ci][0..n]` rows of `ld` values,
/// each `ξ`'s rows `xs` values after the last's.
///
/// # Safety
/// `v` points to `α² · xs` writable values, and no other thread writes these channels of
/// these tiles.
#[inline(always)]
unsafe fn input_chunk<const M: usize, const A: usize>(
    x: &[f32],
    (cin, cis): (usize, std::ops::Range<usize>),
    t: &Tiles,
    tiles: &[Tile],
    sc: &mut Scratch,
    v: OutPtr,
    (ld, xs): (usize, usize),
) {
    let n = tiles.len();
    for ci in cis {
        // Through a buffer, each ξ's row then copied out whole: written straight into `v`, 16
        // values to each of the 36 rows in turn, 64- and 128-channel layers took 1.03–1.09
        // of the time at batch 32.
        input_tiles::<M, A>(x, (cin, ci), t, tiles, &mut sc.patches, &mut sc.out[0]);
        for (xi, oxi) in sc.out[0][..A * A].iter().enumerate() {
            // SAFETY: in bounds and owned by this call (the function's contract).
            unsafe { copy_row_to(v.at(xi * xs + ci * ld), &oxi[..n]) };
        }
    }
}

/// `y = Aᵀ M A` for output channels `cos` of one chunk, cropped to the image.
///
/// # Safety
/// `y` points to the `[batch, cout, h, w]` output, and no other thread writes these tiles.
#[inline(always)]
unsafe fn output_chunk<const M: usize, const A: usize>(
    m: &[f32],
    (ld, xi_stride): (usize, usize),
    (cout, cos): (usize, std::ops::Range<usize>),
    t: &Tiles,
    tiles: &[Tile],
    y: OutPtr,
) {
    let (h, w) = (t.h, t.w);
    let n = tiles.len();
    let isa = simd::isa();
    let mut o = [[0f32; MAX_CHUNK + 2 * RUN]; 16];
    for co in cos {
        let mc = &m[co * ld..];
        if isa == simd::Isa::Avx512 {
            output_lanes::<M, A, 16>(mc, xi_stride, &mut o, n);
        } else {
            output_lanes::<M, A, 8>(mc, xi_stride, &mut o, n);
        }
        // Each run of tiles along a row writes M output rows of M·len values (interleaving the
        // M column phases), cropped where the last tile hangs over the image.
        let mut p = 0;
        while p < n {
            let first = tiles[p];
            let len = run_len(tiles, p, M);
            let cols = (M * len).min(w - first.ox);
            if len <= SHORT_RUN {
                // As in `gather_run`: value by value for a tile or two.
                for r in (0..M).take_while(|r| first.oy + r < h) {
                    let at = ((first.img * cout + co) * h + first.oy + r) * w + first.ox;
                    for c in 0..cols {
                        // SAFETY: pixel `c` of this row lies in the image and in this chunk.
                        unsafe { *y.at(at + c) = o[r * M + c % M][p + c / M] };
                    }
                }
                p += len;
                continue;
            }
            for r in 0..M {
                if first.oy + r >= h {
                    break;
                }
                let at = ((first.img * cout + co) * h + first.oy + r) * w + first.ox;
                // 32 / M values of each phase, the most `interleave_to` reads at once.
                let phases: [&[f32]; M] =
                    std::array::from_fn(|k| &o[r * M + k][p..p + 4 * RUN / M]);
                // SAFETY: `cols` pixels from `at` lie in this output row, and they belong to
                // this chunk's tiles.
                unsafe { interleave_to(isa, &phases, y.at(at), cols) };
            }
            p += len;
        }
    }
}

/// `o[r·M + k][p] = (Aᵀ M A)_{r,k}` of tile `p < n`, from its products `mc[ξ·xi_stride + p]`,
/// `L` tiles at a time as in [`input_lanes`]; past the end of `mc` the last block's lanes read
/// zeros.
#[inline(always)]
fn output_lanes<const M: usize, const A: usize, const L: usize>(
    mc: &[f32],
    xi_stride: usize,
    o: &mut [[f32; MAX_CHUNK + 2 * RUN]; 16],
    n: usize,
) {
    for p in (0..n).step_by(L) {
        let lanes = |xi: usize| {
            let at = xi * xi_stride + p;
            match mc.get(at..at + L) {
                Some(v) => coef::Lanes::<L>(v.try_into().unwrap()),
                None => {
                    let mut v = coef::Lanes::<L>::default();
                    let have = &mc[at.min(mc.len())..];
                    v.0[..have.len()].copy_from_slice(have);
                    v
                }
            }
        };
        // s = Aᵀ M (M×A), then y = s A (M×M).
        let mut s = [[coef::Lanes::<L>::default(); A]; M];
        #[allow(clippy::needless_range_loop)]
        for j in 0..A {
            let col = coef::at::<A, M, _>(coef::column(|i| lanes(i * A + j)));
            for (r, &v) in col.iter().enumerate() {
                s[r][j] = v;
            }
        }
        for (r, sr) in s.into_iter().enumerate() {
            for (k, v) in coef::at::<A, M, _>(sr).into_iter().enumerate() {
                o[r * M + k][p..p + L].copy_from_slice(&v.0);
            }
        }
    }
}

/// The output gradient's transform for channels `cos` of one chunk, as the packed left operand
/// of the weight gradient's products: for each ξ a `cout × n` matrix in the panels of `layout`.
///
/// # Safety
/// `dp` holds `α² · layout.rows · n` values and no other thread writes these channels' panels.
#[inline(always)]
unsafe fn grad_operand<const M: usize, const A: usize>(
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
        grad_tiles::<M, A>(dy, (cout, co), t, tiles, &mut sc.grad, o);
        let (r0, h) = layout.panel_of(co);
        for (xi, oxi) in o[..A * A].iter().enumerate() {
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
/// `vt` holds `α² · CHUNK_W · ldc` values and no other thread writes these channels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn input_operand<const M: usize, const A: usize>(
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
        input_tiles::<M, A>(x, (cin, c0 + g), t, tiles, &mut sc.patches, o);
    }
    for xi in 0..A * A {
        for p in 0..n {
            let row = (xi * CHUNK_W + p) * ldc + c0;
            for g in 0..cg {
                // SAFETY: in bounds and owned by this call (the function's contract).
                unsafe { *vt.at(row + g) = sc.out[g][xi][p] };
            }
        }
    }
}

/// The transforms compiled for the ISA the gemm runs with (their loops vectorise across tiles),
/// once per tile size; `name::<M>` picks the instantiation for tiles of side `M`.
mod isa_dispatch {
    use super::*;

    macro_rules! per_tile {
        ($name:ident: $two:ident = $p2:path, $four:ident = $p4:path, ($($arg:ident: $ty:ty),*)) => {
            isa_versions!($two, $p2, ($($arg: $ty),*));
            isa_versions!($four, $p4, ($($arg: $ty),*));

            /// # Safety
            /// As the function it wraps; `isa` is this CPU's.
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn $name<const M: usize>(isa: simd::Isa, $($arg: $ty),*) {
                unsafe {
                    if M == 2 { $two(isa, $($arg),*) } else { $four(isa, $($arg),*) }
                }
            }
        };
    }

    per_tile!(kernels: kernels2 = kernel_block::<4>, kernels4 = kernel_block::<6>, (w: &[f32], dims: (usize, usize, usize), flipped: bool, panel: (usize, usize), block: (usize, usize), u: OutPtr));
    per_tile!(kernel_grads: kernel_grads2 = kernel_grad_block::<4>, kernel_grads4 = kernel_grad_block::<6>, (msum: &[f32], dims: (usize, usize), co: usize, block: (usize, usize), dwc: &mut [f32]));
    per_tile!(input: input2 = input_chunk::<2, 4>, input4 = input_chunk::<4, 6>, (x: &[f32], cins: (usize, std::ops::Range<usize>), t: &Tiles, tiles: &[Tile], sc: &mut Scratch, v: OutPtr, ld_xs: (usize, usize)));
    per_tile!(output: output2 = output_chunk::<2, 4>, output4 = output_chunk::<4, 6>, (m: &[f32], ld_xs: (usize, usize), couts: (usize, std::ops::Range<usize>), t: &Tiles, tiles: &[Tile], y: OutPtr));
    per_tile!(grad_op: grad_op2 = grad_operand::<2, 4>, grad_op4 = grad_operand::<4, 6>, (dy: &[f32], dims: (usize, PanelLayout), cos: std::ops::Range<usize>, t: &Tiles, tiles: &[Tile], sc: &mut Scratch, dp: OutPtr));
    per_tile!(input_op: input_op2 = input_operand::<2, 4>, input_op4 = input_operand::<4, 6>, (x: &[f32], dims: (usize, usize), group: (usize, usize), t: &Tiles, tiles: &[Tile], sc: &mut Scratch, vt: OutPtr));
}

/// `y = conv(x, w)` (`[batch, cout, h, w]`) for a shape where [`shape_fits`] holds.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    forward_tiled(tile_for(s), s, x, w)
}

/// [`forward`] with output tiles of side `m` (2 or 4).
pub fn forward_tiled(m: usize, s: &ConvShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    assert!(shape_fits(s), "not a Winograd shape: {s:?}");
    assert_eq!(w.len(), s.cout * s.cin * 9);
    tiled_conv(m, s, x, w, false)
}

/// `dx` (`[batch, cin, h, w]`) of `y = conv(x, w)` given `dy`, for a shape where
/// [`shape_fits`]: the same transform applied to `dy` with the flipped, transposed kernel.
pub fn backward_input(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    backward_input_tiled(tile_for(s), s, dy, w)
}

/// [`backward_input`] with output tiles of side `m` (2 or 4).
pub fn backward_input_tiled(m: usize, s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    assert!(shape_fits(s), "not a Winograd shape: {s:?}");
    assert_eq!(w.len(), s.cout * s.cin * 9);
    let t = ConvShape {
        cin: s.cout,
        cout: s.cin,
        ..*s
    };
    tiled_conv(m, &t, dy, w, true)
}

/// The convolution of shape `s` with tiles of side `m`, its kernel read from `w` as
/// [`transform_weights`] reads it.
fn tiled_conv(m: usize, s: &ConvShape, x: &[f32], w: &[f32], flipped: bool) -> Vec<f32> {
    let u = match m {
        2 => transform_weights::<2, 4>(w, s.cout, s.cin, flipped),
        4 => transform_weights::<4, 6>(w, s.cout, s.cin, flipped),
        _ => panic!("Winograd tiles are 2 or 4, not {m}"),
    };
    convolved(m, s, x, &u)
}

/// The forward kernel of shape `s` transformed for tiles of side `m`, as a buffer of its own:
/// at inference a layer's weight does not change between calls, and [`forward_transformed`]
/// reads this instead of redoing the transform every time.
pub(super) fn transformed_kernel(m: usize, s: &ConvShape, w: &[f32]) -> Vec<f32> {
    assert!(shape_fits(s), "not a Winograd shape: {s:?}");
    assert_eq!(w.len(), s.cout * s.cin * 9);
    match m {
        2 => transform_weights::<2, 4>(w, s.cout, s.cin, false).to_vec(),
        4 => transform_weights::<4, 6>(w, s.cout, s.cin, false).to_vec(),
        _ => panic!("Winograd tiles are 2 or 4, not {m}"),
    }
}

/// [`forward_tiled`] on a kernel from [`transformed_kernel`] (same `m` and shape): the same
/// products in the same order, so the same values.
pub(super) fn forward_transformed(m: usize, s: &ConvShape, x: &[f32], u: &[f32]) -> Vec<f32> {
    assert!(shape_fits(s), "not a Winograd shape: {s:?}");
    let rows = PanelLayout::new(s.cout).rows;
    assert_eq!(
        u.len(),
        (m + 2) * (m + 2) * rows * s.cin,
        "kernel of another shape"
    );
    convolved(m, s, x, u)
}

/// `convolve` into a new output. It is not zero-filled first: `convolve` writes every pixel of
/// every channel once (the tiles cover each image), and the fill was an extra pass over the
/// output.
fn convolved(m: usize, s: &ConvShape, x: &[f32], u: &[f32]) -> Vec<f32> {
    let len = s.batch * s.cout * s.h * s.w;
    let mut y = Vec::with_capacity(len);
    let out = &mut y.spare_capacity_mut()[..len];
    match m {
        2 => convolve::<2, 4>(s, x, u, out),
        4 => convolve::<4, 6>(s, x, u, out),
        _ => panic!("Winograd tiles are 2 or 4, not {m}"),
    }
    // SAFETY: `convolve` wrote all `len` values (see above).
    unsafe { y.set_len(len) };
    y
}

/// The distance between consecutive `ξ`s' blocks of the transformed input and of the products,
/// for blocks of `len` values: an odd number of cache lines. Each transform reads or writes
/// one row of every `ξ` at a time, 36 streams for F(4×4); at a distance of a multiple of 4 KB
/// (64 channels × 96 tiles) they all fell in one set of the L1 cache, and at 6 KB (16 × 96)
/// in two.
fn spread(len: usize) -> usize {
    (len.div_ceil(16) | 1) * 16
}

/// Layers with at most this many tiles are convolved whole ([`convolve_whole`]).
const WHOLE_TILES: usize = 4 * CHUNK;

fn convolve<const M: usize, const A: usize>(
    s: &ConvShape,
    x: &[f32],
    u: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(y.len(), s.batch * s.cout * s.h * s.w);
    let t = Tiles::new(s, M);
    if t.total <= WHOLE_TILES {
        return convolve_whole::<M, A>(s, &t, x, u, y);
    }
    let isa = simd::isa();
    let nr = isa.nr();
    let (cin, cout) = (s.cin, s.cout);
    let layout = PanelLayout::new(cout);
    let rows = layout.rows;
    let offs: Vec<usize> = (0..cin).map(|c| c * CHUNK).collect();
    let out = OutPtr(y.as_mut_ptr().cast());
    (0..t.total.div_ceil(CHUNK)).into_par_iter().for_each(|c| {
        with_scratch(|sc| {
            let p0 = c * CHUNK;
            t.chunk(p0, CHUNK.min(t.total - p0), &mut sc.tiles);
            let (sv, sm) = (spread(cin * CHUNK), spread(rows * CHUNK));
            let mut v = grown(&mut sc.v, A * A * sv + nr);
            let mut m = grown(&mut sc.m, A * A * sm);
            let tiles = std::mem::take(&mut sc.tiles);
            let vp = OutPtr(v.as_mut_ptr());
            // SAFETY: `v` is sized above and private to this closure; the ISA is this CPU's.
            unsafe {
                isa_dispatch::input::<M>(isa, x, (cin, 0..cin), &t, &tiles, sc, vp, (CHUNK, sv))
            };
            for xi in 0..A * A {
                let a = &u[xi * rows * cin..(xi + 1) * rows * cin];
                let b = &v[xi * sv..];
                let c = &mut m[xi * sm..xi * sm + rows * CHUNK];
                gemm_panels(
                    isa,
                    (a, layout),
                    cin,
                    b,
                    &offs,
                    c,
                    CHUNK,
                    tiles.len(),
                    false,
                    Walk::InPlace,
                );
            }
            // SAFETY: this chunk's tiles are written by this closure only.
            unsafe {
                isa_dispatch::output::<M>(isa, &m, (CHUNK, sm), (cout, 0..cout), &t, &tiles, out)
            };
            sc.v = v;
            sc.m = m;
            sc.tiles = tiles;
        })
    });
}

/// [`convolve`] in three passes over the whole layer (every tile's transform, then each ξ's
/// product, then every output transform) for layers of few tiles: small maps or small batches,
/// where the transformed kernel is larger than the data. Chunk by chunk it would be streamed from
/// memory once per chunk (resnet18_cifar's 4×4 layers ran at half the gemm's speed); here each `U_ξ`
/// is read once, and the products still split over the cores by ξ.
fn convolve_whole<const M: usize, const A: usize>(
    s: &ConvShape,
    t: &Tiles,
    x: &[f32],
    u: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    let isa = simd::isa();
    let nr = isa.nr();
    let (cin, cout) = (s.cin, s.cout);
    let layout = PanelLayout::new(cout);
    let rows = layout.rows;
    // Columns padded to whole micro-tiles; what the products write there is never read.
    let ld = t.total.div_ceil(nr) * nr;
    // Kept buffers: the columns past the last tile hold stale values, whose products land in
    // columns of `m` that are never read.
    let (sv, sm) = (spread(cin * ld), spread(rows * ld));
    let mut v = Pooled::take(A * A * sv);
    let mut m = Pooled::take(A * A * sm);
    let (in_groups, out_groups) = (cin.div_ceil(CHANNEL_GROUP), cout.div_ceil(CHANNEL_GROUP));
    let group = |g: usize, c: usize| g * CHANNEL_GROUP..((g + 1) * CHANNEL_GROUP).min(c);
    let vp = OutPtr(v.as_mut_ptr());
    chunk_groups(t, in_groups, |sc, tiles, p0, g| {
        let (cins, at) = ((cin, group(g, cin)), vp.shifted(p0));
        // SAFETY: each task writes its own channels of its own tiles of `v`, sized above; the
        // ISA is this CPU's.
        unsafe { isa_dispatch::input::<M>(isa, x, cins, t, tiles, sc, at, (ld, sv)) };
    });
    let offs: Vec<usize> = (0..cin).map(|c| c * ld).collect();
    m.par_chunks_mut(sm).enumerate().for_each(|(xi, c)| {
        let (a, b) = (&u[xi * rows * cin..(xi + 1) * rows * cin], &v[xi * sv..]);
        gemm_panels(
            isa,
            (a, layout),
            cin,
            b,
            &offs,
            c,
            ld,
            t.total,
            false,
            Walk::InPlace,
        );
    });
    let out = OutPtr(y.as_mut_ptr().cast());
    chunk_groups(t, out_groups, |_, tiles, p0, g| {
        let couts = (cout, group(g, cout));
        // SAFETY: each task writes its own channels of its own tiles; the ISA is this CPU's.
        unsafe { isa_dispatch::output::<M>(isa, &m[p0..], (ld, sm), couts, t, tiles, out) };
    });
}

/// `f(scratch, tiles, p0, g)` for every chunk of the layer's tiles (`tiles` numbered from
/// `p0`) and every channel group `g < groups`, spread over the cores.
fn chunk_groups(t: &Tiles, groups: usize, f: impl Fn(&mut Scratch, &[Tile], usize, usize) + Sync) {
    (0..t.total.div_ceil(CHUNK) * groups)
        .into_par_iter()
        .for_each(|task| {
            with_scratch(|sc| {
                let (c, g) = (task / groups, task % groups);
                let p0 = c * CHUNK;
                t.chunk(p0, CHUNK.min(t.total - p0), &mut sc.tiles);
                let tiles = std::mem::take(&mut sc.tiles);
                f(sc, &tiles, p0, g);
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
    backward_weight_tiled(tile_for(s), s, x, dy)
}

/// [`backward_weight`] with output tiles of side `m` (2 or 4).
pub fn backward_weight_tiled(m: usize, s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    match m {
        2 => weight_grad::<2, 4>(s, x, dy),
        4 => weight_grad::<4, 6>(s, x, dy),
        _ => panic!("Winograd tiles are 2 or 4, not {m}"),
    }
}

fn weight_grad<const M: usize, const A: usize>(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
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
    let t = Tiles::new(s, M);
    let offs: Vec<usize> = (0..CHUNK_W).map(|p| p * ldc).collect();
    // Every value is written by the first chunk's products (which do not accumulate).
    let mut msum = Pooled::take(A * A * rows * ldc);
    // Kept buffers: their padding rows and columns hold stale values, whose products land in
    // rows and columns of `msum` that are never read.
    let mut dp = Pooled::take(A * A * rows * CHUNK_W);
    let mut vt = Pooled::take(A * A * CHUNK_W * ldc);
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
                        let dims = (cout, layout);
                        isa_dispatch::grad_op::<M>(isa, dy, dims, cos, &t, &tiles, sc, dpp);
                    } else {
                        let c0 = (task - panels.len()) * CHANNEL_GROUP;
                        let group = (c0, CHANNEL_GROUP.min(cin - c0));
                        let dims = (cin, ldc);
                        isa_dispatch::input_op::<M>(isa, x, dims, group, &t, &tiles, sc, vtp);
                    }
                }
            })
        });
        msum.par_chunks_mut(rows * ldc)
            .enumerate()
            .for_each(|(xi, c)| {
                let a = &dp[xi * rows * n..(xi + 1) * rows * n];
                let b = &vt[xi * CHUNK_W * ldc..];
                gemm_panels(
                    isa,
                    (a, layout),
                    n,
                    b,
                    &offs[..n],
                    c,
                    ldc,
                    ldc,
                    p0 > 0,
                    Walk::InPlace,
                );
            });
    }
    // dg = Gᵀ M G per channel pair.
    let mut dw = vec![0f32; cout * cin * 9];
    dw.par_chunks_mut(cin * 9)
        .enumerate()
        .for_each(|(co, dwc)| {
            for c0 in (0..cin).step_by(KERNEL_BLOCK) {
                let block = (c0, KERNEL_BLOCK.min(cin - c0));
                // SAFETY: the ISA is this CPU's.
                unsafe { isa_dispatch::kernel_grads::<M>(isa, &msum, (rows, ldc), co, block, dwc) };
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
