//! Depthwise 2-d convolution (one filter per channel: `groups == cin == cout`, MobileNet's and
//! EfficientNet's `conv_dw`) forward and both backward passes on NCHW `f32` slices.
//!
//! The gemm lowerings of [`super::conv`] would run these with one-row panels, and burn-flex runs
//! them through its generic 3-d convolution (NHWC copies both ways, and a transposed
//! convolution for the input gradient): a third of a `tf_mobilenetv3_large_100` training step
//! at 224×224 went there. Here every `(image, channel)` plane is copied into a zero-padded
//! buffer split into stride phases (the layout of `conv.rs`'s direct lowering): output
//! `(oy, ox)` is computed at flat index `oy·Wq + ox`, and tap `(ky, kx)` reads the buffer
//! shifted by one fixed offset, so a plane's output is one long row of multiply-adds over
//! `kh·kw` shifted rows, vectorised along it and accumulated in registers a block at a time.
//! The `Wq − Wo` excess columns per row are dropped on the way out. Any padding works,
//! TensorFlow's asymmetric "same" included.
//!
//! The forward pass of maps up to 28 wide runs in [`super::depthwise_lanes`] instead, sixteen
//! channels side by side in the lanes: there the flat rows' excess columns and the per-plane
//! copies cost more than the multiply-adds. Both layouts give the same bits.
//!
//! - Input gradient, stride 1: the same forward with the flipped kernel over the output
//!   gradient. Strided: each tap's row of products is added back into a phase buffer (the
//!   adjoint of the forward's reads), which is then read out without its padding.
//! - Weight gradient: per tap, a dot product of the output gradient's flat row with the shifted
//!   input row; a task owns whole channels and sums their images in order, so the result does
//!   not depend on the thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::activation::{Activation, OutputAct};
use super::copy::{copy_row, copy_row_to, split_pairs};
use super::depthwise_lanes;
use super::shape::ConvShape;
use super::simd;

/// Output columns one register block accumulates (four AVX2 registers).
const BLOCK: usize = 32;
/// Lanes per tap of the weight gradient's dot products.
const LANES: usize = 16;
/// Taps one pass of the weight gradient's dot products covers (one load of the output
/// gradient serves them all).
const TAPS: usize = 4;

/// Whether these kernels handle the shape: one filter per channel, no dilation, an output of
/// at least one position.
pub fn applies(s: &ConvShape) -> bool {
    s.well_formed() && s.cin == s.groups && s.cout == s.groups && s.dilation == [1, 1]
}

/// One plane in the phase layout: `[py][px][Hq][Wq]`, phase `(py, px)` holding padded pixels
/// `(qy·sy + py, qx·sx + px)`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plane {
    s: ConvShape,
    hq: usize,
    pub(super) wq: usize,
}

impl Plane {
    pub(super) fn new(s: &ConvShape) -> Plane {
        Plane {
            s: *s,
            hq: s.hp().div_ceil(s.stride[0]),
            wq: s.wp().div_ceil(s.stride[1]),
        }
    }

    /// Index of padded pixel `(y, x)`.
    pub(super) fn at(&self, y: usize, x: usize) -> usize {
        let [sy, sx] = self.s.stride;
        ((y % sy) * sx + x % sx) * self.hq * self.wq + (y / sy) * self.wq + x / sx
    }

    /// Offset of every tap `(ky, kx)`, row-major: output `i` of the flat row reads `offs[t] + i`.
    pub(super) fn offsets(&self) -> Vec<usize> {
        let s = &self.s;
        (0..s.kh)
            .flat_map(|ky| (0..s.kw).map(move |kx| (ky, kx)))
            .map(|(ky, kx)| self.at(ky, kx))
            .collect()
    }

    /// Length of the flat output row: `Ho` rows of `Wq`, rounded up to whole blocks.
    fn flat(&self) -> usize {
        (self.s.ho() * self.wq).next_multiple_of(BLOCK)
    }

    /// The buffer: every phase, and slack so that the last tap can read a whole flat row.
    fn len(&self) -> usize {
        self.len_for(self.flat())
    }

    /// Values of every phase of the plane.
    pub(super) fn phases(&self) -> usize {
        let [sy, sx] = self.s.stride;
        sy * sx * self.hq * self.wq
    }

    /// [`Plane::len`] for a flat row of `flat` values.
    pub(super) fn len_for(&self, flat: usize) -> usize {
        let last_tap = self.offsets().into_iter().max().unwrap_or(0);
        self.phases().max(last_tap + flat)
    }

    /// Copies plane `x` (`h × w`) into `buf`. Only the pixels inside the padding are written, so
    /// a buffer zeroed once keeps its padding at zero from plane to plane.
    pub(super) fn fill(&self, x: &[f32], buf: &mut [f32]) {
        let s = &self.s;
        let isa = simd::isa();
        let (top, left) = (s.pad[0].0, s.pad[1].0);
        for (y, src) in x.chunks_exact(s.w).enumerate() {
            let row = self.at(y + top, 0);
            match s.stride[1] {
                1 => copy_row(&mut buf[row + left..row + left + s.w], src),
                2 => {
                    // Input columns 2i and 2i + 1 land at index i of the phases `a` and `b`
                    // (which is which depends on the parity of `left`).
                    let plane = self.hq * self.wq;
                    let (p0, p1) = buf[row..].split_at_mut(plane);
                    let (a, b) = if left.is_multiple_of(2) {
                        (&mut p0[left / 2..], &mut p1[left / 2..])
                    } else {
                        (&mut p1[left / 2..], &mut p0[left.div_ceil(2)..])
                    };
                    split_pairs(isa, src, a, b);
                }
                sx => {
                    for px in 0..sx {
                        // Input columns landing in phase `px`: (x + left) % sx == px.
                        let x0 = (px + sx - left % sx) % sx;
                        let dst = row + px * self.hq * self.wq + (x0 + left) / sx;
                        let n = s.w.saturating_sub(x0).div_ceil(sx);
                        for (d, &v) in buf[dst..dst + n]
                            .iter_mut()
                            .zip(src.iter().skip(x0).step_by(sx))
                        {
                            *d = v;
                        }
                    }
                }
            }
        }
    }

    /// Reads plane `dx` (`h × w`) back out of `buf`, the inverse of [`Plane::fill`].
    fn drain(&self, buf: &[f32], dx: &mut [f32]) {
        let s = &self.s;
        let (top, left) = (s.pad[0].0, s.pad[1].0);
        for (y, dst) in dx.chunks_exact_mut(s.w).enumerate() {
            let row = self.at(y + top, 0);
            match s.stride[1] {
                1 => copy_row(dst, &buf[row + left..row + left + s.w]),
                sx => {
                    for (x, d) in dst.iter_mut().enumerate() {
                        *d = buf[row + ((x + left) % sx) * self.hq * self.wq + (x + left) / sx];
                    }
                }
            }
        }
    }
}

/// `out[i] = Σ_t w[t] · b[offs[t] + i]`, a block of [`BLOCK`] outputs at a time in registers.
/// `out.len()` is a multiple of the block, and `b` readable to `max(offs) + out.len()`.
#[inline(always)]
fn taps_inner(out: &mut [f32], b: &[f32], offs: &[usize], w: &[f32]) {
    taps_then(out, b, offs, w, |v| v);
}

/// [`taps_inner`] with `f` applied to each sum before it is stored.
#[inline(always)]
fn taps_then(out: &mut [f32], b: &[f32], offs: &[usize], w: &[f32], f: impl Fn(f32) -> f32) {
    for (blk, o) in out.chunks_exact_mut(BLOCK).enumerate() {
        let x0 = blk * BLOCK;
        let mut acc = [0f32; BLOCK];
        for (&off, &wt) in offs.iter().zip(w) {
            let src: &[f32; BLOCK] = b[off + x0..off + x0 + BLOCK].try_into().expect("a block");
            for j in 0..BLOCK {
                acc[j] += wt * src[j];
            }
        }
        for (d, &v) in o.iter_mut().zip(&acc) {
            *d = f(v);
        }
    }
}

isa_versions!(taps, taps_inner, (out: &mut [f32], b: &[f32], offs: &[usize], w: &[f32]));

/// [`taps_inner`] storing `act(sum · a + c)`: the epilogue applied while the sums are in
/// registers. One loop per activation (a `match` inside it kept it from vectorising).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn taps_affine_inner(
    out: &mut [f32],
    b: &[f32],
    offs: &[usize],
    w: &[f32],
    a: f32,
    c: f32,
    act: OutputAct,
) {
    match act {
        OutputAct::Identity => taps_then(out, b, offs, w, |v| v * a + c),
        OutputAct::Relu => taps_then(out, b, offs, w, |v| OutputAct::Relu.apply(v * a + c)),
        OutputAct::Fused(Activation::HardSwish) => taps_then(out, b, offs, w, |v| {
            OutputAct::Fused(Activation::HardSwish).apply(v * a + c)
        }),
        OutputAct::Fused(Activation::Silu) => taps_then(out, b, offs, w, |v| {
            OutputAct::Fused(Activation::Silu).apply(v * a + c)
        }),
    }
}

isa_versions!(taps_affine, taps_affine_inner, (out: &mut [f32], b: &[f32], offs: &[usize], w: &[f32], a: f32, c: f32, act: OutputAct));

/// The sum of `x` in eight running sums (a fixed order: the mean does not depend on the thread
/// count).
#[inline(always)]
fn sum_inner(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let blocks = x.chunks_exact(8);
    let tail: f32 = blocks.remainder().iter().sum();
    for blk in blocks {
        for (s, &v) in acc.iter_mut().zip(blk) {
            *s += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

isa_versions!(sum, sum_inner, (x: &[f32]) -> f32);

/// `Σ_i d[i] · b[offs[t] + i]` for each of the [`TAPS`] offsets, in [`LANES`] partial sums each
/// added in a fixed order. `d.len()` is a multiple of the lanes.
#[inline(always)]
fn dots_inner(d: &[f32], b: &[f32], offs: [usize; TAPS]) -> [f32; TAPS] {
    let mut acc = [[0f32; LANES]; TAPS];
    for (blk, dc) in d.chunks_exact(LANES).enumerate() {
        let x0 = blk * LANES;
        for t in 0..TAPS {
            let src: &[f32; LANES] = b[offs[t] + x0..offs[t] + x0 + LANES]
                .try_into()
                .expect("a block");
            for l in 0..LANES {
                acc[t][l] += dc[l] * src[l];
            }
        }
    }
    acc.map(|a| a.iter().sum())
}

isa_versions!(dots, dots_inner, (d: &[f32], b: &[f32], offs: [usize; TAPS]) -> [f32; TAPS]);

/// `b[i] += wt · d[i]`.
#[inline(always)]
fn axpy_inner(b: &mut [f32], wt: f32, d: &[f32]) {
    for (v, &g) in b.iter_mut().zip(d) {
        *v += wt * g;
    }
}

isa_versions!(axpy, axpy_inner, (b: &mut [f32], wt: f32, d: &[f32]));

/// The output shared by tasks that each write planes of their own (here and in
/// [`super::grouped`]).
#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub(super) *mut MaybeUninit<f32>);
// SAFETY: every task writes planes no other task writes.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Where value `at` goes.
    ///
    /// # Safety
    /// `at` lies inside the output.
    pub(super) unsafe fn at(&self, at: usize) -> *mut f32 {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(at).cast() }
    }
}

/// `y = conv(x, w)`, `x: [batch, c, h, w]`, `w: [c, 1, kh, kw]`, result `[batch, c, ho, wo]`.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    forward_with(s, x, w, None).0
}

/// What the inference forward does to each output value as it writes it: an eval-mode
/// BatchNorm's `y · scale[c] + shift[c]`, then `act`. Separately these were two more passes
/// over the block's widest map (a depthwise output has the expanded width).
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    pub act: OutputAct,
}

/// [`forward`] through `epi`, applied as the sums leave the registers, and the mean of every
/// output plane (`[batch, c]`, the global average pool a squeeze-excitation reads next) summed
/// while the plane is in cache. The values
/// are bit for bit those of [`forward`] followed by the affine and activation kernels.
pub fn forward_fused(s: &ConvShape, x: &[f32], w: &[f32], epi: Epilogue) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(epi.scale.len(), s.cout, "depthwise epilogue: scale length");
    assert_eq!(epi.shift.len(), s.cout, "depthwise epilogue: shift length");
    forward_with(s, x, w, Some(epi))
}

fn forward_with(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    epi: Option<Epilogue>,
) -> (Vec<f32>, Vec<f32>) {
    forward_layout(s, x, w, epi, depthwise_lanes::applies(s))
}

/// [`forward_with`] in the lane layout ([`depthwise_lanes`]) or the plane layout ([`Plane`]):
/// the same values either way.
pub(super) fn forward_layout(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    epi: Option<Epilogue>,
    lanes: bool,
) -> (Vec<f32>, Vec<f32>) {
    assert!(applies(s), "not a depthwise convolution {s:?}");
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(w.len(), s.cout * s.kh * s.kw);
    let isa = simd::isa();
    let (ho, wo) = (s.ho(), s.wo());
    let len = s.batch * s.cout * ho * wo;
    let mut y: Vec<f32> = Vec::with_capacity(len);
    let planes = s.batch * s.cin;
    let mut means = vec![0f32; if epi.is_some() { planes } else { 0 }];
    if len == 0 {
        return (y, means);
    }
    let out = OutPtr(y.spare_capacity_mut().as_mut_ptr());
    let per_plane = 1.0 / (ho * wo) as f32;
    if lanes {
        depthwise_lanes::forward(isa, s, x, w, epi, out);
        // SAFETY: every plane, so all `len` values, was written above.
        unsafe { y.set_len(len) };
        // The planes' means (the excitation's pool) as the plane layout sums them, while the
        // small planes are still in cache.
        let hw = ho * wo;
        means
            .par_iter_mut()
            .enumerate()
            .with_min_len(planes.div_ceil(2 * rayon::current_num_threads()).max(1))
            // SAFETY: the CPU has `isa`.
            .for_each(|(p, m)| *m = unsafe { sum(isa, &y[p * hw..][..hw]) } * per_plane);
        return (y, means);
    }
    let q = Plane::new(s);
    let offs = q.offsets();
    let k = s.kh * s.kw;
    // A task's buffers are allocated and zeroed once per rayon split: a few planes per split
    // keeps that small beside the planes' own work when the maps are small.
    let min_len = planes.div_ceil(8 * rayon::current_num_threads()).max(1);
    let run = |p: usize, buf: &mut Vec<f32>, flat: &mut Vec<f32>| -> f32 {
        let c = p % s.cin;
        q.fill(&x[p * s.h * s.w..][..s.h * s.w], buf);
        let wc = &w[c * k..][..k];
        // SAFETY: the CPU has `isa` (`simd::isa`); `buf` is readable to the last tap plus
        // a flat row (`Plane::len`), which the slicing in `taps_then` checks anyway.
        unsafe {
            match &epi {
                Some(e) => taps_affine(isa, flat, buf, &offs, wc, e.scale[c], e.shift[c], e.act),
                None => taps(isa, flat, buf, &offs, wc),
            }
        }
        for oy in 0..ho {
            // SAFETY: row `oy` of plane `p` lies inside `y`'s capacity (`len`), and plane
            // `p` belongs to this task alone.
            unsafe { copy_row_to(out.at((p * ho + oy) * wo), &flat[oy * q.wq..][..wo]) };
        }
        if epi.is_none() {
            return 0.0;
        }
        // SAFETY: plane `p` was written in full just above, by this task alone.
        let plane = unsafe { std::slice::from_raw_parts(out.at(p * ho * wo), ho * wo) };
        // SAFETY: the CPU has `isa`.
        unsafe { sum(isa, plane) * per_plane }
    };
    let init = || (vec![0f32; q.len()], vec![0f32; q.flat()]);
    if means.is_empty() {
        (0..planes)
            .into_par_iter()
            .with_min_len(min_len)
            .for_each_init(init, |(buf, flat), p| {
                run(p, buf, flat);
            });
    } else {
        means
            .par_iter_mut()
            .enumerate()
            .with_min_len(min_len)
            .for_each_init(init, |(buf, flat), (p, m)| *m = run(p, buf, flat));
    }
    // SAFETY: every plane, so all `len` values, was written above.
    unsafe { y.set_len(len) };
    (y, means)
}

/// `dx` of `y = conv(x, w)` given `dy: [batch, c, ho, wo]`.
pub fn backward_input(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    assert!(applies(s), "not a depthwise convolution {s:?}");
    assert_eq!(dy.len(), s.batch * s.cout * s.ho() * s.wo());
    assert_eq!(w.len(), s.cout * s.kh * s.kw);
    let (kh, kw) = (s.kh, s.kw);
    let fits = |(b, e): (usize, usize), k: usize| b < k && e < k;
    if s.stride == [1, 1] && fits(s.pad[0], kh) && fits(s.pad[1], kw) {
        // dx[iy][ix] = Σ w[ky][kx] · dy[iy + top − ky][ix + left − kx]: a forward pass of the
        // flipped kernel over `dy` padded by `k − 1 − pad`.
        let t = ConvShape {
            h: s.ho(),
            w: s.wo(),
            pad: [
                (kh - 1 - s.pad[0].0, kh - 1 - s.pad[0].1),
                (kw - 1 - s.pad[1].0, kw - 1 - s.pad[1].1),
            ],
            ..*s
        };
        let flipped: Vec<f32> = w
            .chunks_exact(kh * kw)
            .flat_map(|f| f.iter().rev().copied())
            .collect();
        return forward(&t, dy, &flipped);
    }
    backward_input_scatter(s, dy, w)
}

/// The strided input gradient: every tap adds its products back where the forward read them.
fn backward_input_scatter(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let isa = simd::isa();
    let (ho, wo) = (s.ho(), s.wo());
    let mut dx = vec![0f32; s.batch * s.cin * s.h * s.w];
    if dx.is_empty() || ho * wo == 0 {
        return dx;
    }
    let q = Plane::new(s);
    let offs = q.offsets();
    let k = s.kh * s.kw;
    let n = q.flat();
    dx.par_chunks_mut(s.h * s.w).enumerate().for_each_init(
        // The flat gradient's excess columns are never written, so they stay zero and add
        // nothing.
        || (vec![0f32; q.len()], vec![0f32; n]),
        |(buf, flat), (p, dxp)| {
            let c = p % s.cin;
            for oy in 0..ho {
                copy_row(
                    &mut flat[oy * q.wq..][..wo],
                    &dy[(p * ho + oy) * wo..][..wo],
                );
            }
            buf.fill(0.0);
            for (&off, &wt) in offs.iter().zip(&w[c * k..][..k]) {
                // SAFETY: the CPU has `isa` (`simd::isa`).
                unsafe { axpy(isa, &mut buf[off..off + n], wt, flat) };
            }
            q.drain(buf, dxp);
        },
    );
    dx
}

/// `dw` of `y = conv(x, w)`: `[c, 1, kh, kw]`.
pub fn backward_weight(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(applies(s), "not a depthwise convolution {s:?}");
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(dy.len(), s.batch * s.cout * s.ho() * s.wo());
    let isa = simd::isa();
    let (ho, wo) = (s.ho(), s.wo());
    let k = s.kh * s.kw;
    let mut dw = vec![0f32; s.cout * k];
    if s.batch == 0 || ho * wo == 0 {
        return dw;
    }
    let q = Plane::new(s);
    let offs = q.offsets();
    let n = q.flat();
    dw.par_chunks_mut(k).enumerate().for_each_init(
        || (vec![0f32; q.len()], vec![0f32; n]),
        |(buf, flat), (c, dwc)| {
            for i in 0..s.batch {
                let p = i * s.cin + c;
                q.fill(&x[p * s.h * s.w..][..s.h * s.w], buf);
                for oy in 0..ho {
                    copy_row(
                        &mut flat[oy * q.wq..][..wo],
                        &dy[(p * ho + oy) * wo..][..wo],
                    );
                }
                for t0 in (0..k).step_by(TAPS) {
                    // Past the last tap the first one stands in; its sums are dropped.
                    let o: [usize; TAPS] = std::array::from_fn(|j| offs[(t0 + j) % k]);
                    // SAFETY: the CPU has `isa` (`simd::isa`).
                    let sums = unsafe { dots(isa, flat, buf, o) };
                    for (d, v) in dwc[t0..].iter_mut().zip(sums) {
                        *d += v;
                    }
                }
            }
        },
    );
    dw
}
