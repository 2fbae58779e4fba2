//! The two inner loops every convolution kernel reduces to, with the instruction set chosen at
//! run time (AVX-512F, AVX2+FMA, or portable code the compiler vectorises as it can).
//!
//! Both loops read their right-hand operand through a table of row offsets into one slice
//! instead of a packed matrix. A stride-1 convolution then needs no im2col buffer: the row for
//! tap `(ci, ky, kx)` of a zero-padded image is the image itself shifted by
//! `ci·Hp·Wp + ky·Wp + kx` (see `conv.rs`), and an im2col buffer is the special case
//! `offs[k] = k·ld`.
//!
//! Callers guarantee that every row can be read `width()` elements past its last useful column
//! (the buffers carry zeroed slack), so the loops never need a masked tail.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::activation::{Activation, OutputAct};

/// Rows of the output one dot-product tile covers (weight-gradient kernel), and the narrow
/// gemm panel.
pub const MR: usize = 4;
/// The wide gemm panel: six rows of accumulators (12 of AVX2's 16 registers) hide the FMA
/// latency that four rows leave exposed, and read each loaded row of `B` half as often again.
/// Measured on the in-L2 micro-kernel alone (Zen 3, AVX2): 26 → 29 GMAC/s, and 35 → 40 with `B`
/// in L1.
pub const MR_WIDE: usize = 6;

/// How the rows of a gemm's left operand are cut into micro-kernel panels: `wide` panels of
/// [`MR_WIDE`] rows, then panels of [`MR`] rows. Any even row count of at least four splits
/// this way exactly (16 = 6 + 6 + 4), so the wide kernel runs almost everywhere while the
/// padding stays at one row (a channel count of 16 or 32 cut into sixes alone would waste
/// 12.5%).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PanelLayout {
    /// Rows including the padding.
    pub rows: usize,
    wide: usize,
}

impl PanelLayout {
    pub fn new(rows: usize) -> PanelLayout {
        let rows = rows.max(MR).next_multiple_of(2);
        let mut wide = rows / MR_WIDE;
        while !(rows - wide * MR_WIDE).is_multiple_of(MR) {
            wide -= 1;
        }
        PanelLayout { rows, wide }
    }

    /// `(first row, height)` of every panel, top to bottom.
    pub fn panels(self) -> impl Iterator<Item = (usize, usize)> {
        let split = self.wide * MR_WIDE;
        (0..split)
            .step_by(MR_WIDE)
            .map(|r| (r, MR_WIDE))
            .chain((split..self.rows).step_by(MR).map(|r| (r, MR)))
    }

    /// `(first row, height)` of the panel that holds row `r`.
    pub fn panel_of(self, r: usize) -> (usize, usize) {
        let split = self.wide * MR_WIDE;
        if r < split {
            (r - r % MR_WIDE, MR_WIDE)
        } else {
            (r - (r - split) % MR, MR)
        }
    }

    /// Index of element `(r, kk)` of a `rows × k` matrix packed panel after panel, each panel
    /// `[k][height]`.
    pub fn at(self, r: usize, kk: usize, k: usize) -> usize {
        let (r0, h) = self.panel_of(r);
        r0 * k + kk * h + (r - r0)
    }
}
/// Offsets one dot-product tile covers (weight-gradient kernel).
pub const JR: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// Columns (output positions) one micro-tile covers.
    pub fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 48,
            // 4×16: twelve accumulators would leave AVX2's sixteen registers one short and
            // the compiler spills one to the stack on every step of the reduction.
            Isa::Avx2 => 16,
            Isa::Portable => 8,
        }
    }

    /// Granularity of the dot-product kernel's reduction axis.
    pub fn width(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            _ => 8,
        }
    }

    /// `1` for the widest set, counting up to the portable code (never 0).
    fn code(self) -> u8 {
        match self {
            Isa::Avx512 => 1,
            Isa::Avx2 => 2,
            Isa::Portable => 3,
        }
    }

    fn from_code(code: u8) -> Option<Isa> {
        match code {
            1 => Some(Isa::Avx512),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Portable),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512f",
            Isa::Avx2 => "avx2+fma",
            Isa::Portable => "portable",
        }
    }
}

/// The instruction set the kernels run on: the best this CPU has, which `MEAL_KERNEL_ISA=avx2`
/// or `portable` caps, or the one a [`force`] guard holds. Kernels read it once per call: one
/// relaxed atomic load, no cost per element.
pub fn isa() -> Isa {
    match Isa::from_code(ACTIVE.load(Ordering::Relaxed)) {
        Some(isa) => isa,
        None => first_use(),
    }
}

/// [`isa`]'s value: an [`Isa::code`], or 0 before the first call.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

#[cold]
fn first_use() -> Isa {
    let isa = configured();
    // A guard forced meanwhile keeps its choice.
    match ACTIVE.compare_exchange(0, isa.code(), Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => isa,
        Err(code) => Isa::from_code(code).unwrap_or(isa),
    }
}

/// The choice without a guard: the best this CPU has, capped by `MEAL_KERNEL_ISA`.
fn configured() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| detect(std::env::var("MEAL_KERNEL_ISA").ok().as_deref()))
}

/// Every instruction set this CPU can run, widest first (the portable code always).
pub fn available() -> Vec<Isa> {
    let best = detect(None);
    [Isa::Avx512, Isa::Avx2, Isa::Portable]
        .into_iter()
        .filter(|&isa| isa.code() >= best.code())
        .collect()
}

/// Holds the kernels on one instruction set ([`force`]) until it is dropped.
pub struct IsaGuard {
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Drop for IsaGuard {
    fn drop(&mut self) {
        ACTIVE.store(configured().code(), Ordering::Relaxed);
    }
}

/// Runs every kernel of the process (on every thread, rayon's workers included) on `isa` until
/// the guard is dropped, so that a test can hold each path to a reference on one machine. One
/// guard exists at a time: a second call waits for the first guard to go. Refused, naming the
/// set, when this CPU cannot run it (its instructions would fault).
pub fn force(isa: Isa) -> Result<IsaGuard, String> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    if !available().contains(&isa) {
        return Err(format!("this CPU cannot run the {} kernels", isa.name()));
    }
    // A test that failed while holding a guard has restored the choice on its way out.
    let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    ACTIVE.store(isa.code(), Ordering::Relaxed);
    Ok(IsaGuard {
        _one_at_a_time: lock,
    })
}

fn detect(cap: Option<&str>) -> Isa {
    let mut best = Isa::Portable;
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            best = Isa::Avx2;
        }
        if best == Isa::Avx2 && is_x86_feature_detected!("avx512f") {
            best = Isa::Avx512;
        }
    }
    match cap {
        Some("portable") => Isa::Portable,
        Some("avx2") if best == Isa::Avx512 => Isa::Avx2,
        _ => best,
    }
}

/// `c[m·ldc + n] (+)= Σ_k a[k·mr + m] · b[offs[k] + n0 + n]` for `m < mr`, `n < nr`, over
/// `blocks` consecutive column blocks starting at `n0 = 0`.
///
/// # Safety
/// `mr` is [`MR`] or [`MR_WIDE`]; `a` holds `offs.len()·mr` values; every `b[offs[k] + j]` for
/// `j < blocks·nr` is in bounds; `c` holds `(mr-1)·ldc + blocks·nr` values.
pub struct GemmArgs<'a> {
    pub mr: usize,
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub offs: &'a [usize],
    pub c: *mut f32,
    pub ldc: usize,
    pub blocks: usize,
    pub accumulate: bool,
    /// Stores `relu?(sum · scale[m] + shift[m])` in place of each row `m`'s sums: an eval-mode
    /// BatchNorm (and its ReLU) on the last block of the reduction.
    pub epi: Option<RowAffine<'a>>,
}

/// A per-row `relu?(v · scale + shift)`, the expression of the BatchNorm kernels' eval rows:
/// a product then a sum (not fused), and a ReLU that lets NaN through.
#[derive(Clone, Copy, Debug)]
pub struct RowAffine<'a> {
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    pub relu: bool,
    /// The hard-swish or SiLU after the affine map: the tile kernels leave it to their caller,
    /// which runs it over each tile they store (`gemm::micro_tile`); the column kernel applies
    /// it value by value. The same expressions as the separate pass, so the same bits.
    pub act: Option<Activation>,
}

/// The bounds of [`GemmArgs`] for tiles `cols` columns wide (debug builds only).
fn debug_check(args: &GemmArgs, cols: usize) {
    debug_assert_eq!(args.a.len(), args.offs.len() * args.mr);
    debug_assert!(
        args.offs
            .iter()
            .all(|&o| o + args.blocks * cols <= args.b.len())
    );
}

/// Runs the gemm micro-kernel; see [`GemmArgs`].
///
/// # Safety
/// As documented on [`GemmArgs`]; bounds of `b` are checked here in debug builds only.
pub unsafe fn gemm(isa: Isa, args: &GemmArgs) {
    debug_check(args, isa.nr());
    unsafe {
        match (isa, args.mr) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, MR) => x86::gemm_avx512::<MR>(args),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, MR_WIDE) => x86::gemm_avx512::<MR_WIDE>(args),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, MR) => x86::gemm_avx2::<MR>(args),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, MR_WIDE) => x86::gemm_avx2::<MR_WIDE>(args),
            (_, MR) => gemm_portable::<MR>(args),
            (_, MR_WIDE) => gemm_portable::<MR_WIDE>(args),
            (_, mr) => panic!("no gemm micro-kernel for {mr}-row panels"),
        }
    }
}

/// [`gemm`] on micro-tiles one vector ([`Isa::width`] columns) wide: `args.blocks` of them. For
/// the columns past a product's last whole tile (a 7×7 map has 49 = 3·16 + 1), where a whole
/// tile would compute up to `nr − 1` columns that nobody reads. Each column is the same sum in
/// the same order as in [`gemm`], so the values are those of the whole tile.
///
/// # Safety
/// As for [`gemm`], with `blocks·width()` columns in place of `blocks·nr()`.
pub unsafe fn gemm_narrow(isa: Isa, args: &GemmArgs) {
    debug_check(args, isa.width());
    unsafe {
        match (isa, args.mr) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, MR) => x86::gemm_avx512_narrow::<MR>(args),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, MR_WIDE) => x86::gemm_avx512_narrow::<MR_WIDE>(args),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, MR) => x86::gemm_avx2_narrow::<MR>(args),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, MR_WIDE) => x86::gemm_avx2_narrow::<MR_WIDE>(args),
            // The portable tile is already one vector (8 columns) wide.
            _ => gemm(isa, args),
        }
    }
}

/// Tiles of `B` copied into the contiguous layout the micro-kernel then reads with offsets
/// `kk·nr`: for each row `kk` of `offs`, `widths[t]` values of `b` from `offs[kk] + t·nr` go to
/// `dst[t·tile + kk·nr ..]` (`tile = offs.len()·nr`). In whole vectors: the copy of one
/// 48-value row in four-value moves cost an eighth of the products it fed (a 7×7 stem's 147
/// rows for 64 channels).
pub fn pack_tiles(isa: Isa, b: &[f32], offs: &[usize], widths: &[usize], dst: &mut [f32]) {
    let nr = isa.nr();
    let tile = offs.len() * nr;
    let reach = offs.iter().copied().max().unwrap_or(0);
    for (t, &w) in widths.iter().enumerate() {
        assert!(
            w <= nr && w % isa.width() == 0,
            "pack_tiles: a tile of {w} columns"
        );
        if w > 0 {
            assert!(reach + t * nr + w <= b.len(), "pack_tiles: short B");
        }
    }
    assert!(dst.len() >= widths.len() * tile, "pack_tiles: short buffer");
    // SAFETY: every read and write is inside the bounds asserted above.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::pack_avx512(b.as_ptr(), offs, widths, dst.as_mut_ptr(), nr),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::pack_avx2(b.as_ptr(), offs, widths, dst.as_mut_ptr(), nr),
            _ => {
                for (kk, &o) in offs.iter().enumerate() {
                    for (t, &w) in widths.iter().enumerate() {
                        let d = &mut dst[t * tile + kk * nr..][..w];
                        d.copy_from_slice(&b[o + t * nr..][..w]);
                    }
                }
            }
        }
    }
}

/// Panels one [`gemm_tail`] call runs side by side: eight independent chains of FMAs, enough to
/// cover their latency.
pub const TAIL_PANELS: usize = 8;

/// One or two columns of up to [`TAIL_PANELS`] panels' products: `c[m][j] (+)= Σ_k a[k·h + m] ·
/// b[offs[k] + col + j]` for each panel's `h` rows, through `epi` like [`GemmArgs::epi`]. The
/// rows of a panel are one vector's lanes, so a column costs one multiply-add per step of the
/// reduction and panel, where a one-vector tile spent six (16 lanes for each row, one or two of
/// them read). Each value is the same chain of multiply-adds, in the same order, as in [`gemm`], and
/// gets the same accumulation and epilogue: the results are those of the tiles, bit for bit.
pub struct TailArgs<'a> {
    /// Each panel's slice of this block of the reduction (`offs.len() · h` values); entries
    /// past `count` are ignored.
    pub a: [&'a [f32]; TAIL_PANELS],
    /// Each panel's rows (at most 16).
    pub h: [usize; TAIL_PANELS],
    /// Where each panel's first row has the first column.
    pub c: [*mut f32; TAIL_PANELS],
    /// Each panel's epilogue (scale and shift from its first row on), if any.
    pub epi: [Option<RowAffine<'a>>; TAIL_PANELS],
    pub count: usize,
    pub b: &'a [f32],
    pub offs: &'a [usize],
    /// The first column, and how many (1 or 2).
    pub col: usize,
    pub cols: usize,
    pub ldc: usize,
    pub accumulate: bool,
}

/// Whether [`gemm_tail`] has a kernel for `isa`.
pub fn has_tail(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa == Isa::Avx512
}

/// Runs [`TailArgs`]; only where [`has_tail`] says there is a kernel.
///
/// # Safety
/// Every `c[g]` (`g < count`) is valid for `h[g]` rows `ldc` apart and `cols` columns; `b`
/// holds every `offs[k] + col + j` (asserted).
pub unsafe fn gemm_tail(isa: Isa, args: &TailArgs) {
    assert!(args.count <= TAIL_PANELS && args.count > 0);
    for g in 0..args.count {
        assert!(args.h[g] <= 16 && args.a[g].len() >= args.offs.len() * args.h[g]);
    }
    assert!(
        args.offs
            .iter()
            .all(|&o| o + args.col + args.cols <= args.b.len()),
        "gemm_tail: short B"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the bounds asserted above and the caller's contract.
        Isa::Avx512 => unsafe {
            match args.cols {
                1 => x86::tail_avx512::<1>(args),
                2 => x86::tail_avx512::<2>(args),
                n => panic!("gemm_tail: {n} columns"),
            }
        },
        _ => panic!("gemm_tail: no column kernel for {isa:?}"),
    }
}

unsafe fn gemm_portable<const M: usize>(args: &GemmArgs) {
    const NR: usize = 8;
    for nb in 0..args.blocks {
        let n0 = nb * NR;
        let mut acc = [[0f32; NR]; M];
        for (k, &off) in args.offs.iter().enumerate() {
            let brow = &args.b[off + n0..off + n0 + NR];
            for (m, accm) in acc.iter_mut().enumerate() {
                let av = args.a[k * M + m];
                for (c, b) in accm.iter_mut().zip(brow) {
                    *c += av * b;
                }
            }
        }
        for (m, row) in acc.iter().enumerate() {
            for (n, v) in row.iter().enumerate() {
                // SAFETY: the caller guarantees c's extent (GemmArgs).
                unsafe {
                    let p = args.c.add(m * args.ldc + n0 + n);
                    let v = if args.accumulate { *p + v } else { *v };
                    *p = match args.epi {
                        Some(e) => {
                            let t = v * e.scale[m] + e.shift[m];
                            if e.relu && t < 0.0 { 0.0 } else { t }
                        }
                        None => v,
                    };
                }
            }
        }
    }
}

/// `out[m·JR + j] += Σ_{n < len} d[m·ldd + n] · b[offs[j] + n]` for `m < MR`, `j < JR`.
/// `len` is a multiple of [`Isa::width`]; rows of `d` beyond the caller's real rows are zero.
pub struct DotArgs<'a> {
    pub d: &'a [f32],
    pub ldd: usize,
    pub b: &'a [f32],
    pub offs: [usize; JR],
    pub len: usize,
}

/// Runs the dot-product micro-kernel; see [`DotArgs`]. Returns the `MR × JR` sums.
pub fn dot(isa: Isa, args: &DotArgs) -> [f32; MR * JR] {
    assert!(args.len.is_multiple_of(isa.width()));
    assert!(args.d.len() >= (MR - 1) * args.ldd + args.len);
    assert!(args.offs.iter().all(|&o| o + args.len <= args.b.len()));
    // SAFETY: bounds asserted above; the feature was detected by `isa()`.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::dot_avx512(args),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::dot_avx2(args),
            _ => dot_portable(args),
        }
    }
}

fn dot_portable(args: &DotArgs) -> [f32; MR * JR] {
    const W: usize = 8;
    let mut acc = [[[0f32; W]; JR]; MR];
    let mut n = 0;
    while n < args.len {
        for (m, accm) in acc.iter_mut().enumerate() {
            let drow = &args.d[m * args.ldd + n..m * args.ldd + n + W];
            for (j, accj) in accm.iter_mut().enumerate() {
                let brow = &args.b[args.offs[j] + n..args.offs[j] + n + W];
                for l in 0..W {
                    accj[l] += drow[l] * brow[l];
                }
            }
        }
        n += W;
    }
    let mut out = [0f32; MR * JR];
    for m in 0..MR {
        for j in 0..JR {
            out[m * JR + j] = acc[m][j].iter().sum();
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{DotArgs, GemmArgs, JR, MR, OutputAct, TAIL_PANELS, TailArgs};
    use std::arch::x86_64::*;

    /// Reduction steps up to which the gemm micro-kernel also prefetches the output lines of
    /// the tile two to the right of its own.
    const SHORT_REDUCTION: usize = 32;

    /// One gemm micro-kernel per vector type: M rows × NV vectors of accumulators.
    macro_rules! gemm_kernel {
        ($name:ident, $feat:literal, $vec:ty, $lanes:expr, $nv:expr,
         $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident, $add:ident,
         $mul:ident, $max:ident) => {
            #[target_feature(enable = $feat)]
            pub unsafe fn $name<const M: usize>(args: &GemmArgs) {
                const NR: usize = $lanes * $nv;
                let a = args.a.as_ptr();
                let b = args.b.as_ptr();
                // Values of `A` ahead of the reduction's step that each step prefetches.
                const A_AHEAD: usize = 512;
                for nb in 0..args.blocks {
                    let n0 = nb * NR;
                    // The tile's output lines, asked for before its reduction runs: a layer's
                    // output rarely lies in cache (at batch 8 a 56×56 map's 256 channels are
                    // 3.2 MB an image), and the stores at the end otherwise wait on each line
                    // in turn. ResNet-50's 1×1 layers at batch 8 took 0.87–0.95 of their time.
                    // With a short reduction (16 to 32 steps: MobileNetV3's and
                    // EfficientNet-B0's 1×1 layers of few input channels, whose outputs at
                    // 112×112 are megabytes) the tile's own prefetch comes too late, so the
                    // lines of the tile two to the right are asked for too: those layers at
                    // batch 1 took 0.89–0.91 of their time on cold outputs, the networks
                    // 0.97–0.99 at batch 1 and 8. Not with longer ones: with every length,
                    // ResNet-50's batch-1 forward took 1.012–1.015 of its time.
                    let short = args.offs.len() <= SHORT_REDUCTION;
                    for m in 0..M {
                        for v in 0..$nv {
                            let at = m * args.ldc + n0 + v * $lanes;
                            // SAFETY: a prefetch does not fault; the first address is inside
                            // `c` (the caller's contract) anyway, the second may lie past it.
                            unsafe {
                                _mm_prefetch::<_MM_HINT_T0>(args.c.add(at) as *const i8);
                                if short {
                                    _mm_prefetch::<_MM_HINT_T0>(
                                        args.c.wrapping_add(at + 2 * NR) as *const i8
                                    );
                                }
                            }
                        }
                    }
                    let mut acc: [[$vec; $nv]; M] = [[$zero(); $nv]; M];
                    for (k, &off) in args.offs.iter().enumerate() {
                        // SAFETY: bounds are the caller's contract (GemmArgs).
                        unsafe {
                            let bp = b.add(off + n0);
                            let mut bv: [$vec; $nv] = [$zero(); $nv];
                            for v in 0..$nv {
                                bv[v] = $load(bp.add(v * $lanes));
                            }
                            let ap = a.add(k * M);
                            // `A` (the weights) some 2 KiB ahead: at batch 1 a deep layer's
                            // weights stream from memory and feed only a tile or two of
                            // columns each, and with the hardware's prefetch alone the
                            // multiply-adds waited on them (this one took resnet18_cifar's
                            // batch-1 forward to 0.86 of its time). A prefetch past the
                            // panel's end is harmless.
                            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(A_AHEAD) as *const i8);
                            for m in 0..M {
                                let av = $set1(*ap.add(m));
                                for v in 0..$nv {
                                    acc[m][v] = $fma(av, bv[v], acc[m][v]);
                                }
                            }
                        }
                    }
                    for m in 0..M {
                        let affine = args
                            .epi
                            .map(|e| ($set1(e.scale[m]), $set1(e.shift[m]), e.relu));
                        for v in 0..$nv {
                            // SAFETY: c's extent is the caller's contract.
                            unsafe {
                                let p = args.c.add(m * args.ldc + n0 + v * $lanes);
                                let mut r = if args.accumulate {
                                    $add($load(p), acc[m][v])
                                } else {
                                    acc[m][v]
                                };
                                if let Some((a, b, relu)) = affine {
                                    r = $add($mul(r, a), b);
                                    if relu {
                                        // max(0, r) returns r when r is NaN (its second
                                        // operand), as the scalar ReLU does.
                                        r = $max($zero(), r);
                                    }
                                }
                                $store(p, r);
                            }
                        }
                    }
                }
            }
        };
    }

    gemm_kernel!(
        gemm_avx2,
        "avx2,fma",
        __m256,
        8,
        2,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_mul_ps,
        _mm256_max_ps
    );
    gemm_kernel!(
        gemm_avx2_narrow,
        "avx2,fma",
        __m256,
        8,
        1,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_mul_ps,
        _mm256_max_ps
    );
    gemm_kernel!(
        gemm_avx512_narrow,
        "avx512f",
        __m512,
        16,
        1,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_mul_ps,
        _mm512_max_ps
    );
    gemm_kernel!(
        gemm_avx512,
        "avx512f",
        __m512,
        16,
        3,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_mul_ps,
        _mm512_max_ps
    );

    /// [`super::gemm_tail`] on AVX-512 for `R` columns: the panel's rows in a vector's lanes
    /// (masked), each step's eight loads of `A` shared by the columns, one broadcast of `B` per
    /// column.
    ///
    /// # Safety
    /// As [`super::gemm_tail`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tail_avx512<const R: usize>(args: &TailArgs) {
        let mut acc = [[_mm512_setzero_ps(); TAIL_PANELS]; R];
        let mut masks = [0u16; TAIL_PANELS];
        let mut ptrs = [args.a[0].as_ptr(); TAIL_PANELS];
        let mut steps = [0usize; TAIL_PANELS];
        // Past `count`, the first panel again (computed, never stored): the loop keeps its
        // chains in registers whatever the count.
        for g in 0..TAIL_PANELS {
            let src = if g < args.count { g } else { 0 };
            masks[g] = ((1u32 << args.h[src]) - 1) as u16;
            ptrs[g] = args.a[src].as_ptr();
            steps[g] = args.h[src];
        }
        let b = args.b.as_ptr();
        for (k, &off) in args.offs.iter().enumerate() {
            // SAFETY: the caller's bounds (asserted by `gemm_tail`).
            unsafe {
                let mut av = [_mm512_setzero_ps(); TAIL_PANELS];
                for g in 0..TAIL_PANELS {
                    av[g] = _mm512_maskz_loadu_ps(masks[g], ptrs[g].add(k * steps[g]));
                }
                for (j, acc) in acc.iter_mut().enumerate() {
                    let bv = _mm512_set1_ps(*b.add(off + args.col + j));
                    for (acc, &a) in acc.iter_mut().zip(&av) {
                        *acc = _mm512_fmadd_ps(a, bv, *acc);
                    }
                }
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            for (g, &acc) in acc.iter().enumerate().take(args.count) {
                let mut sums = [0f32; 16];
                // SAFETY: `sums` holds 16 values.
                unsafe { _mm512_storeu_ps(sums.as_mut_ptr(), acc) };
                for (m, &sum) in sums.iter().enumerate().take(args.h[g]) {
                    // SAFETY: row `m` of panel `g` at this column (the caller's contract).
                    unsafe {
                        let p = args.c[g].add(m * args.ldc + j);
                        // The tiles' expressions, lane for lane: `c + sum`, then `r·scale +
                        // shift` (not fused), then `max(0, r)` as `maxps` computes it (its
                        // second operand when they compare false: NaN and −0 pass).
                        let mut r = if args.accumulate { *p + sum } else { sum };
                        if let Some(e) = &args.epi[g] {
                            r = r * e.scale[m] + e.shift[m];
                            if e.relu {
                                r = if 0.0 > r { 0.0 } else { r };
                            }
                            if let Some(act) = e.act {
                                r = OutputAct::Fused(act).apply(r);
                            }
                        }
                        *p = r;
                    }
                }
            }
        }
    }

    /// [`super::pack_tiles`] in one vector type.
    macro_rules! pack_kernel {
        ($name:ident, $feat:literal, $lanes:expr, $load:ident, $store:ident) => {
            /// # Safety
            /// The bounds [`super::pack_tiles`] asserts.
            #[target_feature(enable = $feat)]
            pub unsafe fn $name(
                b: *const f32,
                offs: &[usize],
                widths: &[usize],
                dst: *mut f32,
                nr: usize,
            ) {
                let tile = offs.len() * nr;
                for (kk, &o) in offs.iter().enumerate() {
                    for (t, &w) in widths.iter().enumerate() {
                        // SAFETY: the caller's bounds.
                        unsafe {
                            let (src, d) = (b.add(o + t * nr), dst.add(t * tile + kk * nr));
                            let mut v = 0;
                            while v < w {
                                $store(d.add(v), $load(src.add(v)));
                                v += $lanes;
                            }
                        }
                    }
                }
            }
        };
    }

    pack_kernel!(pack_avx2, "avx2,fma", 8, _mm256_loadu_ps, _mm256_storeu_ps);
    pack_kernel!(
        pack_avx512,
        "avx512f",
        16,
        _mm512_loadu_ps,
        _mm512_storeu_ps
    );

    /// The sum of a vector's lanes by halving it in registers. Storing it and adding the lanes
    /// one by one was a chain of 15 dependent additions per sum: with rows of a few hundred
    /// values (a 16×16 map), the twelve sums of each tile cost as much as its products.
    #[target_feature(enable = "avx2,fma")]
    fn sum_avx2(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s)))
    }

    /// [`sum_avx2`] of the two halves' sum.
    #[target_feature(enable = "avx512f")]
    fn sum_avx512(v: __m512) -> f32 {
        let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v));
        sum_avx2(_mm256_add_ps(
            _mm512_castps512_ps256(v),
            _mm256_castpd_ps(hi),
        ))
    }

    macro_rules! dot_kernel {
        ($name:ident, $feat:literal, $vec:ty, $lanes:expr, $zero:ident, $load:ident,
         $fma:ident, $reduce:ident) => {
            #[target_feature(enable = $feat)]
            pub unsafe fn $name(args: &DotArgs) -> [f32; MR * JR] {
                let d = args.d.as_ptr();
                let b = args.b.as_ptr();
                let mut acc: [[$vec; JR]; MR] = [[$zero(); JR]; MR];
                let mut n = 0;
                while n < args.len {
                    // SAFETY: bounds asserted by `dot`.
                    unsafe {
                        let mut bv: [$vec; JR] = [$zero(); JR];
                        for j in 0..JR {
                            bv[j] = $load(b.add(args.offs[j] + n));
                        }
                        for m in 0..MR {
                            let dv = $load(d.add(m * args.ldd + n));
                            for j in 0..JR {
                                acc[m][j] = $fma(dv, bv[j], acc[m][j]);
                            }
                        }
                    }
                    n += $lanes;
                }
                let mut out = [0f32; MR * JR];
                for m in 0..MR {
                    for j in 0..JR {
                        out[m * JR + j] = $reduce(acc[m][j]);
                    }
                }
                out
            }
        };
    }

    dot_kernel!(
        dot_avx2,
        "avx2,fma",
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        sum_avx2
    );
    dot_kernel!(
        dot_avx512,
        "avx512f",
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_fmadd_ps,
        sum_avx512
    );
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) (the gemm's tests use them too).
    pub(in crate::kernels) fn vals(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn gemm_matches_naive_on_every_isa_and_panel() {
        for (isa, mr) in available()
            .into_iter()
            .flat_map(|i| [(i, MR), (i, MR_WIDE)])
        {
            let nr = isa.nr();
            let k = 7;
            let blocks = 2;
            let offs: Vec<usize> = (0..k).map(|i| i * 5 + (i % 3)).collect();
            let b = vals(offs[k - 1] + blocks * nr + 1, 3);
            let a = vals(k * mr, 9);
            let ldc = blocks * nr + 3;
            for accumulate in [false, true] {
                let mut c = vals(mr * ldc, 5);
                let before = c.clone();
                // SAFETY: sizes chosen to satisfy GemmArgs.
                unsafe {
                    gemm(
                        isa,
                        &GemmArgs {
                            mr,
                            a: &a,
                            b: &b,
                            offs: &offs,
                            c: c.as_mut_ptr(),
                            ldc,
                            blocks,
                            accumulate,
                            epi: None,
                        },
                    )
                };
                for m in 0..mr {
                    for n in 0..blocks * nr {
                        let mut e: f32 = (0..k).map(|kk| a[kk * mr + m] * b[offs[kk] + n]).sum();
                        if accumulate {
                            e += before[m * ldc + n];
                        }
                        let got = c[m * ldc + n];
                        assert!((got - e).abs() < 1e-5, "{isa:?} m{m} n{n}: {got} vs {e}");
                    }
                    // Columns past the blocks are untouched.
                    for n in blocks * nr..ldc {
                        assert_eq!(c[m * ldc + n], before[m * ldc + n]);
                    }
                }
            }
        }
    }

    #[test]
    fn narrow_tiles_give_the_wide_tiles_columns_bit_for_bit() {
        for (isa, mr) in available()
            .into_iter()
            .flat_map(|i| [(i, MR), (i, MR_WIDE)])
        {
            let (nr, width) = (isa.nr(), isa.width());
            let k = 300;
            let offs: Vec<usize> = (0..k).map(|i| i * 7 + (i % 5)).collect();
            let b = vals(offs[k - 1] + nr + 1, 4);
            let a = vals(k * mr, 8);
            let narrow = (nr / width - 1).max(1);
            for accumulate in [false, true] {
                let (mut wide, mut thin) = (vals(mr * nr, 6), vals(mr * nr, 6));
                let before = thin.clone();
                let args = |c: &mut Vec<f32>, blocks| GemmArgs {
                    mr,
                    a: &a,
                    b: &b,
                    offs: &offs,
                    c: c.as_mut_ptr(),
                    ldc: nr,
                    blocks,
                    accumulate,
                    epi: None,
                };
                // SAFETY: `b` holds every row's nr columns, `c` mr rows of nr.
                unsafe {
                    gemm(isa, &args(&mut wide, 1));
                    gemm_narrow(isa, &args(&mut thin, narrow));
                }
                for m in 0..mr {
                    for n in 0..nr {
                        let (w, t) = (wide[m * nr + n], thin[m * nr + n]);
                        if n < narrow * width {
                            assert_eq!(w.to_bits(), t.to_bits(), "{isa:?} m{m} n{n}");
                        } else {
                            assert_eq!(t, before[m * nr + n], "{isa:?} wrote column {n}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dot_matches_naive_on_every_isa() {
        for isa in available() {
            let len = isa.width() * 5;
            let ldd = len + 4;
            let d = vals(MR * ldd, 1);
            let offs = [0, 3, 17];
            let b = vals(17 + len, 2);
            let got = dot(
                isa,
                &DotArgs {
                    d: &d,
                    ldd,
                    b: &b,
                    offs,
                    len,
                },
            );
            for m in 0..MR {
                for j in 0..JR {
                    let e: f32 = (0..len).map(|n| d[m * ldd + n] * b[offs[j] + n]).sum();
                    assert!((got[m * JR + j] - e).abs() < 1e-4, "{isa:?}");
                }
            }
        }
    }

    #[test]
    fn panel_layout_covers_every_row_once() {
        for rows in 1..200 {
            let l = PanelLayout::new(rows);
            assert!(
                l.rows >= rows && l.rows <= rows.max(MR) + 1,
                "{rows}: {l:?}"
            );
            let mut next = 0;
            for (r0, h) in l.panels() {
                assert_eq!(r0, next, "{rows}");
                for r in r0..r0 + h {
                    assert_eq!(l.panel_of(r), (r0, h));
                }
                next = r0 + h;
            }
            assert_eq!(next, l.rows);
            let k = 5;
            let mut seen = vec![false; l.rows * k];
            for r in 0..l.rows {
                for kk in 0..k {
                    assert!(!std::mem::replace(&mut seen[l.at(r, kk, k)], true));
                }
            }
        }
        let heights = |rows| {
            PanelLayout::new(rows)
                .panels()
                .map(|p| p.1)
                .collect::<Vec<_>>()
        };
        assert_eq!(heights(16), [6, 6, 4]);
        assert_eq!(heights(32), [6, 6, 6, 6, 4, 4]);
        assert_eq!(heights(3), [4]);
    }

    #[test]
    fn isa_cap_is_respected() {
        assert_eq!(detect(Some("portable")), Isa::Portable);
        assert_ne!(detect(Some("avx2")), Isa::Avx512);
    }

    #[test]
    fn isa_codes_round_trip() {
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
            assert_eq!(Isa::from_code(isa.code()), Some(isa));
        }
        assert_eq!(Isa::from_code(0), None);
    }

    /// The affine epilogue stored by the micro-kernels is the BatchNorm rows' expression on the
    /// sums they would store without it, bit for bit: product then sum, ReLU passing NaN and
    /// keeping a negative zero, on wide and narrow tiles, with and without accumulation.
    #[test]
    fn the_stored_epilogue_is_the_affine_of_the_stored_sums() {
        for (isa, mr) in available()
            .into_iter()
            .flat_map(|i| [(i, MR), (i, MR_WIDE)])
        {
            let (nr, width) = (isa.nr(), isa.width());
            let k = 40;
            let offs: Vec<usize> = (0..k).map(|i| i * 5 + (i % 3)).collect();
            let mut b = vals(offs[k - 1] + nr + 1, 4);
            // A NaN in one column, and a column of zeros (whose sums are +0 or, scaled by a
            // negative factor and shifted by -0, -0).
            b[offs[3] + 1] = f32::NAN;
            for &o in &offs {
                b[o + 2] = 0.0;
            }
            let a = vals(k * mr, 8);
            let scale: Vec<f32> = (0..mr)
                .map(|m| if m % 2 == 0 { 1.5 } else { -0.75 })
                .collect();
            let shift: Vec<f32> = (0..mr)
                .map(|m| if m == 1 { -0.0 } else { 0.25 * m as f32 - 0.5 })
                .collect();
            for (relu, accumulate, narrow) in [
                (false, false, false),
                (true, false, false),
                (true, true, false),
                (true, false, true),
            ] {
                let blocks = if narrow { (nr / width - 1).max(1) } else { 1 };
                let (mut plain, mut fused) = (vals(mr * nr, 6), vals(mr * nr, 6));
                let epi = RowAffine {
                    scale: &scale,
                    shift: &shift,
                    relu,
                    act: None,
                };
                let args = |c: &mut Vec<f32>, epi| GemmArgs {
                    mr,
                    a: &a,
                    b: &b,
                    offs: &offs,
                    c: c.as_mut_ptr(),
                    ldc: nr,
                    blocks,
                    accumulate,
                    epi,
                };
                // SAFETY: `b` holds every row's nr columns, `c` mr rows of nr.
                unsafe {
                    if narrow {
                        gemm_narrow(isa, &args(&mut plain, None));
                        gemm_narrow(isa, &args(&mut fused, Some(epi)));
                    } else {
                        gemm(isa, &args(&mut plain, None));
                        gemm(isa, &args(&mut fused, Some(epi)));
                    }
                }
                let cols = if narrow { blocks * width } else { nr };
                for m in 0..mr {
                    for n in 0..cols {
                        let t = plain[m * nr + n] * scale[m] + shift[m];
                        let want = if relu && t < 0.0 { 0.0 } else { t };
                        let got = fused[m * nr + n];
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{isa:?} mr {mr} relu {relu} acc {accumulate} at ({m}, {n}): {got} vs {want}"
                        );
                    }
                }
                assert!(
                    fused.iter().any(|v| v.is_nan()),
                    "{isa:?}: the NaN did not pass"
                );
            }
        }
    }
}
