//! The depthwise forward of small maps, sixteen channels side by side in the vector lanes.
//!
//! [`super::depthwise`]'s plane layout vectorises along a plane's flat row of `Ho·Wq` values in
//! blocks of 32: a 7×7 output with a 5×5 kernel is 77 values of which 49 are kept, computed as
//! 96, and each plane also pays its copies and calls. EfficientNet-B0's 5×5 layer over 1152
//! planes of 7×7 took 116 µs at batch 1 on two cores, ONNX Runtime's 33 µs (its layout keeps
//! channels in the lanes throughout). Here a task takes sixteen planes of one image, moves them
//! into a zero-padded buffer position by position (`[y][x][16]`, eight planes by eight
//! positions at a time, [`transpose::block8`]), and sums every tap for several output positions
//! at once, one channel per lane: no lane computes a value nobody reads, but in a block of
//! fewer than sixteen channels and a last partial group of positions. The epilogue works on
//! whole vectors too, and the results go back to the planes the way the input came.
//!
//! Each output is the same sum as in the plane layout (the taps in the same order from zero, a
//! product then a sum, the padding read as zeros) through the same epilogue expressions, so
//! the values are bit for bit the same; `tests` holds the two layouts to that.

use rayon::prelude::*;

use super::activation::{self, OutputAct};
use super::depthwise::{Epilogue, OutPtr};
use super::shape::ConvShape;
use super::simd::Isa;
use super::transpose;

/// Channels a task computes side by side, one per lane.
const LANES: usize = 16;

/// Widest input this layout takes. In-process alternation on the Zen 4 machine (two cores,
/// EfficientNet-B0's and MobileNetV3's layers, lanes / planes): 0.47–0.58 at 7×7, 0.70–0.91 at
/// 14×14, 0.71–0.88 from 28×28; from 56×56 0.86–1.05 at batch 8 but 1.08–1.51 at batch 1,
/// where a block's buffers outgrow the second-level cache and a few blocks leave a core idle.
const MAX_W: usize = 28;

/// Whether the lane layout computes `s` (a depthwise shape, [`super::depthwise::applies`]):
/// a small map, and at least a block of channels for every thread. The plane layout gives the
/// same values, so the choice is speed's alone.
pub(super) fn applies(s: &ConvShape) -> bool {
    s.w <= MAX_W && s.batch * s.cin.div_ceil(LANES) >= rayon::current_num_threads()
}

/// A zeroed buffer whose values start on a cache line: every vector of [`LANES`] values then
/// lies in one line (from the allocator's 16-byte alignment, each load of a position's vector
/// touched two).
struct Aligned {
    buf: Vec<f32>,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        Aligned {
            buf: vec![0f32; len + LANES],
            len,
        }
    }

    fn get(&mut self) -> &mut [f32] {
        let skip = self.buf.as_ptr().align_offset(64).min(LANES);
        &mut self.buf[skip..skip + self.len]
    }
}

/// Where the taps and the output positions read the padded buffer (`[yp][xp][LANES]`).
struct Layout {
    /// Start of tap `(ky, kx)` relative to an output position's window.
    offs: Vec<usize>,
    /// Start of the window of output position `q` (row-major), repeated past the last one to
    /// fill the last group.
    bases: Vec<usize>,
    /// Where input position `q` (row-major) of a plane goes: its lane 0 in the padded buffer.
    fill: Vec<usize>,
    /// Values of the padded buffer: every window lies inside the padded image.
    len: usize,
}

impl Layout {
    fn new(s: &ConvShape, step: usize) -> Layout {
        let (ho, wo, wp) = (s.ho(), s.wo(), s.wp());
        let [sy, sx] = s.stride;
        let offs = (0..s.kh)
            .flat_map(|ky| (0..s.kw).map(move |kx| (ky * wp + kx) * LANES))
            .collect();
        let n = ho * wo;
        let bases = (0..n.next_multiple_of(step))
            .map(|q| q.min(n - 1))
            .map(|q| ((q / wo) * sy * wp + (q % wo) * sx) * LANES)
            .collect();
        let (top, left) = (s.pad[0].0, s.pad[1].0);
        let fill = (0..s.h * s.w)
            .map(|q| ((q / s.w + top) * wp + q % s.w + left) * LANES)
            .collect();
        Layout {
            offs,
            bases,
            fill,
            len: s.hp() * wp * LANES,
        }
    }
}

/// `y = conv(x, w)` into `out` (`[batch, c, ho, wo]`, every value written), through `epi` if
/// given. `out` is `batch·c·ho·wo` values that this call alone writes.
pub(super) fn forward(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    epi: Option<Epilogue>,
    out: OutPtr,
) {
    let (c, k, hw) = (s.cin, s.kh * s.kw, s.ho() * s.wo());
    let plane_in = s.h * s.w;
    let at = Layout::new(s, positions_per(isa));
    let blocks = c.div_ceil(LANES);
    // Each block's taps lane by lane (`[block][tap][LANES]`) and its affine, packed once per
    // call rather than once per image; lanes past the last channel stay zero.
    let mut packed = Aligned::new(blocks * k * LANES);
    let wt_all = packed.get();
    let mut affines = vec![([0f32; LANES], [0f32; LANES]); if epi.is_some() { blocks } else { 0 }];
    for (ch, taps) in w.chunks_exact(k).enumerate() {
        let (b, l) = (ch / LANES, ch % LANES);
        for (t, &v) in taps.iter().enumerate() {
            wt_all[(b * k + t) * LANES + l] = v;
        }
        if let Some(e) = &epi {
            affines[b].0[l] = e.scale[ch];
            affines[b].1[l] = e.shift[ch];
        }
    }
    let wt_all: &[f32] = wt_all;
    let (relu, act) = epi.map_or((false, None), |e| e.act.split());
    let init = || (Aligned::new(at.len), Aligned::new(at.bases.len() * LANES));
    (0..s.batch * blocks)
        .into_par_iter()
        .for_each_init(init, |(padded, tile), task| {
            let (padded, tile) = (padded.get(), tile.get());
            let (i, b) = (task / blocks, task % blocks);
            let c0 = b * LANES;
            let n = LANES.min(c - c0);
            let first = i * c + c0;
            // Lanes `n..` keep whatever an earlier block left there: they are computed and
            // dropped. The padding is never written, so it stays zero.
            to_lanes(isa, &x[first * plane_in..], n, &at.fill, padded);
            let wt = &wt_all[b * k * LANES..][..k * LANES];
            let affine = affines.get(b).map(|(scale, shift)| (scale, shift, relu));
            positions(isa, padded, &at.bases, &at.offs, wt, tile, affine);
            if let Some(act) = act {
                // The hard-swish or SiLU over the whole tile, in cache: the same expressions
                // as the plane layout's, value by value.
                activation::forward_row(act, &mut tile[..hw * LANES]);
            }
            // SAFETY: planes `first..first + n` lie inside `out` and belong to this task alone.
            unsafe { from_lanes(isa, tile, n, hw, out, first) };
        });
}

/// Calls `block(l0, q)` for every whole block of eight lanes `l0..l0 + 8` by eight positions
/// `q..q + 8` of `n` lanes by `len` positions, and `one(l, q)` for every value outside them:
/// the walk both moves between planes and lanes take.
fn by_blocks(
    n: usize,
    len: usize,
    mut block: impl FnMut(usize, usize),
    mut one: impl FnMut(usize, usize),
) {
    let whole = len / 8 * 8;
    for l0 in (0..n).step_by(8) {
        let from = if n - l0 >= 8 {
            for q in (0..whole).step_by(8) {
                block(l0, q);
            }
            whole
        } else {
            0
        };
        for l in l0..n.min(l0 + 8) {
            for q in from..len {
                one(l, q);
            }
        }
    }
}

/// The `n ≤ LANES` planes `x` (`fill.len()` values each) into lanes `0..n` of `padded`, value
/// `q` of plane `l` at `fill[q] + l`, eight planes by eight positions at a time
/// ([`transpose::block8`]).
fn to_lanes(isa: Isa, x: &[f32], n: usize, fill: &[usize], padded: &mut [f32]) {
    let plane = fill.len();
    assert!(n <= LANES && x.len() >= n * plane);
    assert!(fill.iter().all(|&f| f + LANES <= padded.len()));
    let (src, dst) = (x.as_ptr(), padded.as_mut_ptr());
    by_blocks(
        n,
        plane,
        // SAFETY: planes `l0..l0 + 8` hold positions `q..q + 8`, and each `fill[q + j] + l0 +
        // 8 ≤ fill[q + j] + LANES` lies inside `padded` (asserted); positions are `LANES`
        // apart there, so no two rows overlap.
        |l0, q| unsafe {
            transpose::block8(
                isa,
                std::array::from_fn(|i| src.add((l0 + i) * plane + q)),
                std::array::from_fn(|j| dst.add(fill[q + j] + l0)),
            )
        },
        // SAFETY: as above, one value.
        |l, q| unsafe { *dst.add(fill[q] + l) = *src.add(l * plane + q) },
    );
}

/// Lanes `0..n` of `tile` (`hw` positions of [`LANES`]) out to planes `first..first + n` of
/// `out`, the inverse of [`to_lanes`] without padding.
///
/// # Safety
/// Planes `first..first + n` (`hw` values each) lie inside `out`, and nothing else writes them.
unsafe fn from_lanes(isa: Isa, tile: &[f32], n: usize, hw: usize, out: OutPtr, first: usize) {
    assert!(n <= LANES && tile.len() >= hw * LANES);
    let src = tile.as_ptr();
    by_blocks(
        n,
        hw,
        // SAFETY: positions `q..q + 8` of `tile` hold lanes `l0..l0 + 8`; planes `first +
        // l0..` hold positions `q..q + 8` (the caller's contract).
        |l0, q| unsafe {
            transpose::block8(
                isa,
                std::array::from_fn(|j| src.add((q + j) * LANES + l0)),
                std::array::from_fn(|i| out.at((first + l0 + i) * hw + q)),
            )
        },
        // SAFETY: as above, one value.
        |l, q| unsafe { *out.at((first + l) * hw + q) = *src.add(q * LANES + l) },
    );
}

/// Every output position's sums: `tile[q·LANES + l] = Σ_t wt[t·LANES + l] ·
/// padded[bases[q] + offs[t] + l]`, the taps summed in order from zero, then `· scale[l] +
/// shift[l]` and the ReLU if `affine` says so. `bases.len()` is a multiple of
/// [`positions_per`]`(isa)`.
#[allow(clippy::too_many_arguments)]
fn positions(
    isa: Isa,
    padded: &[f32],
    bases: &[usize],
    offs: &[usize],
    wt: &[f32],
    tile: &mut [f32],
    affine: Option<(&[f32; LANES], &[f32; LANES], bool)>,
) {
    let reach = bases.iter().max().copied().unwrap_or(0) + offs.iter().max().copied().unwrap_or(0);
    assert!(
        reach + LANES <= padded.len(),
        "depthwise lanes: a window past the buffer"
    );
    assert!(wt.len() >= offs.len() * LANES && tile.len() >= bases.len() * LANES);
    assert!(bases.len().is_multiple_of(positions_per(isa)));
    // SAFETY: `simd::isa` detected `isa` on this CPU; every read lies inside `padded` and `wt`
    // and every write inside `tile` (asserted above).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        let (p, w, t) = (padded.as_ptr(), wt.as_ptr(), tile.as_mut_ptr());
        match isa {
            Isa::Avx512 => return x86::positions_avx512(p, bases, offs, w, t, affine),
            Isa::Avx2 => return x86::positions_avx2(p, bases, offs, w, t, affine),
            Isa::Portable => {}
        }
    }
    positions_portable(padded, bases, offs, wt, tile, affine);
}

/// Output positions one step of [`positions`] sums on `isa`: as many accumulators as the
/// registers hold beside a tap's weights and one loaded vector (AVX2's sixteen registers take
/// six positions of two vectors each).
fn positions_per(isa: Isa) -> usize {
    match isa {
        Isa::Avx2 => 6,
        Isa::Avx512 | Isa::Portable => 8,
    }
}

/// [`positions`] in portable code (one position at a time, the compiler vectorising the lanes).
fn positions_portable(
    padded: &[f32],
    bases: &[usize],
    offs: &[usize],
    wt: &[f32],
    tile: &mut [f32],
    affine: Option<(&[f32; LANES], &[f32; LANES], bool)>,
) {
    for (&b, out) in bases.iter().zip(tile.chunks_exact_mut(LANES)) {
        let mut acc = [0f32; LANES];
        for (t, &off) in offs.iter().enumerate() {
            let wv = &wt[t * LANES..][..LANES];
            let v = &padded[b + off..][..LANES];
            for l in 0..LANES {
                acc[l] += wv[l] * v[l];
            }
        }
        for l in 0..LANES {
            out[l] = match affine {
                Some((a, c, relu)) => {
                    let r = acc[l] * a[l] + c[l];
                    if relu { OutputAct::Relu.apply(r) } else { r }
                }
                None => acc[l],
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// One kernel per vector type: `$p` positions × `$nv` vectors of `$w` lanes accumulated in
    /// registers, one tap after another.
    macro_rules! positions_kernel {
        ($name:ident, $feat:literal, $vec:ty, $w:expr, $nv:expr, $p:expr,
         $zero:ident, $load:ident, $store:ident, $mul:ident, $add:ident, $max:ident) => {
            /// # Safety
            /// The CPU has the features; `padded` is readable at every `base + off + LANES`,
            /// `wt` at `offs.len()·LANES` values and `tile` writable at `bases.len()·LANES`;
            /// `bases.len()` is a multiple of the positions per step.
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $name(
                padded: *const f32,
                bases: &[usize],
                offs: &[usize],
                wt: *const f32,
                tile: *mut f32,
                affine: Option<(&[f32; LANES], &[f32; LANES], bool)>,
            ) {
                for (g, bs) in bases.chunks_exact($p).enumerate() {
                    let mut acc: [[$vec; $nv]; $p] = [[$zero(); $nv]; $p];
                    for (t, &off) in offs.iter().enumerate() {
                        // SAFETY: the caller's contract.
                        unsafe {
                            let mut w: [$vec; $nv] = [$zero(); $nv];
                            for v in 0..$nv {
                                w[v] = $load(wt.add(t * LANES + v * $w));
                            }
                            for p in 0..$p {
                                let src = padded.add(bs[p] + off);
                                for v in 0..$nv {
                                    // `acc + w·x`, a product then a sum: the plane layout's
                                    // rounding.
                                    acc[p][v] = $add(acc[p][v], $mul(w[v], $load(src.add(v * $w))));
                                }
                            }
                        }
                    }
                    for p in 0..$p {
                        for v in 0..$nv {
                            let mut r = acc[p][v];
                            // SAFETY: the caller's contract; `scale` and `shift` hold LANES.
                            unsafe {
                                if let Some((a, c, relu)) = affine {
                                    r = $add(
                                        $mul(r, $load(a.as_ptr().add(v * $w))),
                                        $load(c.as_ptr().add(v * $w)),
                                    );
                                    if relu {
                                        // max(0, r) returns r when r is NaN or −0 (its second
                                        // operand), as the scalar ReLU does.
                                        r = $max($zero(), r);
                                    }
                                }
                                $store(tile.add((g * $p + p) * LANES + v * $w), r);
                            }
                        }
                    }
                }
            }
        };
    }

    positions_kernel!(
        positions_avx512,
        "avx512f",
        __m512,
        16,
        1,
        8,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_mul_ps,
        _mm512_add_ps,
        _mm512_max_ps
    );
    positions_kernel!(
        positions_avx2,
        "avx2,fma",
        __m256,
        8,
        2,
        6,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_mul_ps,
        _mm256_add_ps,
        _mm256_max_ps
    );
}

#[cfg(test)]
mod tests {
    use super::super::activation::Activation;
    use super::super::depthwise::{self, Epilogue, forward_layout};
    use super::super::simd;
    use super::*;

    /// Depthwise shapes around the layout's edges: channel counts below, at and past a block
    /// and its halves, maps from 1×1 to the widest taken, every kernel size the models use and
    /// 1 and 7, both strides on either axis, symmetric, asymmetric and no padding.
    fn shapes() -> Vec<ConvShape> {
        let mut v = Vec::new();
        let mut seed = 7u32;
        let mut pick = |n: usize| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as usize % n
        };
        for c in [1, 7, 8, 9, 16, 21, 40] {
            for (h, w) in [(1, 1), (5, 9), (7, 7), (14, 14), (13, MAX_W)] {
                for k in [1, 3, 5, 7] {
                    let pad = |p: usize| match p {
                        0 => (k / 2, k / 2),
                        1 => (k / 2 - k / 2 % 2, k - 1 - (k / 2 - k / 2 % 2)),
                        _ => (0, 0),
                    };
                    let s = ConvShape {
                        batch: 1 + pick(3),
                        cin: c,
                        h,
                        w,
                        cout: c,
                        kh: k,
                        kw: k,
                        stride: [1 + pick(2), 1 + pick(2)],
                        pad: [pad(pick(3)), pad(pick(3))],
                        dilation: [1, 1],
                        groups: c,
                    };
                    if depthwise::applies(&s) {
                        v.push(s);
                    }
                }
            }
        }
        v
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0)
            .collect()
    }

    #[test]
    fn lanes_give_the_plane_layouts_bits_on_every_instruction_set() {
        let acts = [
            None,
            Some(OutputAct::Identity),
            Some(OutputAct::Relu),
            Some(OutputAct::Fused(Activation::HardSwish)),
            Some(OutputAct::Fused(Activation::Silu)),
        ];
        let shapes = shapes();
        assert!(shapes.len() > 100, "only {} shapes", shapes.len());
        for isa in simd::available() {
            let _on = simd::force(isa).expect("an available instruction set");
            for (i, s) in shapes.iter().enumerate() {
                let x = values(s.batch * s.cin * s.h * s.w, i);
                let w = values(s.cout * s.kh * s.kw, i + 1);
                let (scale, shift) = (values(s.cout, i + 2), values(s.cout, i + 3));
                for act in acts {
                    let epi = act.map(|act| Epilogue {
                        scale: &scale,
                        shift: &shift,
                        act,
                    });
                    let (y, means) = forward_layout(s, &x, &w, epi, true);
                    let (want, want_means) = forward_layout(s, &x, &w, epi, false);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&y), bits(&want), "{isa:?} {act:?} {s:?}: outputs");
                    assert_eq!(
                        bits(&means),
                        bits(&want_means),
                        "{isa:?} {act:?} {s:?}: means"
                    );
                }
            }
        }
    }
}
