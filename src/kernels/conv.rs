//! 2-d convolution forward and both backward passes on NCHW `f32` slices.
//!
//! Two lowerings share the micro-kernels of [`super::simd`]:
//! - **direct** (wide outputs): each image is copied once into a zero-padded buffer of `Hp×Wp`
//!   per channel. Output position `(y, x)` is computed at flat index `y·Wp + x`, so the input row
//!   of tap `(ci, ky, kx)` is that buffer shifted by `ci·Hp·Wp + ky·Wp + kx`, and no im2col
//!   matrix is ever written. The `Wp − Wo` columns per row this computes in excess are dropped
//!   when the result is copied out (about 6% at 32×32, 11% at 16×16). A strided convolution
//!   reads the same way from the image split into stride phases (`Phases`).
//! - **im2col** (small outputs, where the excess columns would cost more than the copy, and
//!   dilated strided convolutions): several images' patches side by side in one matrix, so that
//!   the micro-tiles stay full when each image has only a few output positions (a 4×4 map has
//!   16). Not for 1×1 layers without stride or padding, which have no excess columns: those
//!   read the image itself at any size.
//!
//! The input gradient of a stride-1 convolution is itself a stride-1 convolution of the output
//! gradient with the flipped, transposed kernel, so it takes the same direct path; a strided
//! one is a gemm into an im2col-shaped buffer followed by a scatter-add (col2im). The weight
//! gradient is a sum of dot products over output positions.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::activation::OutputAct;
use super::copy::{copy_row, copy_row_to, split_pairs};
use super::gemm::{Panels, Walk, gemm_panels, gemm_rows_to};
pub use super::shape::ConvShape;
use super::simd::{self, DotArgs, Isa, JR, MR, RowAffine};

/// The direct lowering's view of a shape.
impl ConvShape {
    /// Wide enough that the excess columns (`Wq − Wo` per row, see [`Phases`]) cost less than
    /// writing an im2col matrix; a strided convolution only without dilation.
    fn direct(&self) -> bool {
        (self.stride == [1, 1] || self.dilation == [1, 1]) && self.wo() >= 8
    }

    /// A 1×1 convolution without stride or padding: the layout of [`Phases`] is then the
    /// image itself, which the direct kernel reads in place.
    fn reads_input(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.pad == [(0, 0), (0, 0)]
    }

    /// The layout the direct kernels read the input in.
    fn phases(&self) -> Phases {
        let [sy, sx] = self.stride;
        Phases {
            ny: sy.min(self.kh),
            nx: sx.min(self.kw),
            hq: self.hp().div_ceil(sy),
            wq: self.wp().div_ceil(sx),
        }
    }

    /// The stride-1 convolution whose output is this one's input gradient.
    fn transposed(&self) -> ConvShape {
        let (dh, dw) = (self.dilation[0], self.dilation[1]);
        ConvShape {
            batch: self.batch,
            cin: self.cout,
            h: self.ho(),
            w: self.wo(),
            cout: self.cin,
            kh: self.kh,
            kw: self.kw,
            stride: [1, 1],
            pad: [
                (
                    dh * (self.kh - 1) - self.pad[0].0,
                    dh * (self.kh - 1) - self.pad[0].1,
                ),
                (
                    dw * (self.kw - 1) - self.pad[1].0,
                    dw * (self.kw - 1) - self.pad[1].1,
                ),
            ],
            dilation: self.dilation,
            groups: self.groups,
        }
    }
}

/// Output channels of one group packed as panels, zero rows past the group's end. Panel by
/// panel and in parallel: at batch 1 the serial packing of a 512-channel layer's weight took as
/// long as its products on one core.
pub(super) fn pack_weight(s: &ConvShape, w: &[f32], g: usize) -> Panels {
    let (k, cout_g) = (s.k(), s.cout_g());
    let mut a = Panels::zeroed(cout_g, k);
    let mut panels = Vec::new();
    let mut rest = &mut a.data[..];
    for (r0, h) in a.layout.panels() {
        let (panel, tail) = rest.split_at_mut(h * k);
        panels.push((r0, h, panel));
        rest = tail;
    }
    let pack = |(r0, h, panel): (usize, usize, &mut [f32])| {
        for r in 0..h.min(cout_g.saturating_sub(r0)) {
            let row = &w[(g * cout_g + r0 + r) * k..][..k];
            for (kk, &v) in row.iter().enumerate() {
                panel[kk * h + r] = v;
            }
        }
    };
    if cout_g * k >= PAR_PACK {
        panels.into_par_iter().for_each(pack);
    } else {
        panels.into_iter().for_each(pack);
    }
    a
}

/// Weights below this many values are packed on the calling thread (rayon's hand-off would
/// cost more than the copy).
const PAR_PACK: usize = 1 << 16;

/// Below this many multiply-adds per unit a split costs more than it saves: resnet20's layers
/// (2.4M MACs per image) ran their batch-1 forward 25% slower split in two, resnet18_cifar's
/// (38M and up) 1.4-1.7x faster. Most of a split's cost is waking a parked worker; inside a
/// [`super::hot`] scope no worker is parked, and [`MIN_SPLIT_MACS_HOT`] applies.
const MIN_SPLIT_MACS: usize = 8 << 20;

/// [`MIN_SPLIT_MACS`] while the workers poll for work ([`super::hot::is_hot`]).
const MIN_SPLIT_MACS_HOT: usize = 1 << 20;

/// [`MIN_SPLIT_MACS`] (or [`MIN_SPLIT_MACS_HOT`]), or `MEAL_SPLIT_MACS` when set: where a split
/// starts to pay depends on how fast the machine hands a task to another thread, so it is
/// measured per machine (`MEAL_SPLIT_MACS=1000000 meal bench --arch resnet20 --latency` against
/// the default). The results do not depend on it.
pub(super) fn min_split_macs() -> usize {
    static MIN: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let set = *MIN.get_or_init(|| {
        let v = std::env::var("MEAL_SPLIT_MACS").ok()?;
        let n = v.trim().parse().ok();
        if n.is_none() {
            tracing::warn!("MEAL_SPLIT_MACS={v:?} is not a count of multiply-adds; ignoring it");
        }
        n
    });
    set.unwrap_or(if super::hot::is_hot() {
        MIN_SPLIT_MACS_HOT
    } else {
        MIN_SPLIT_MACS
    })
}

/// Multiply-adds of one image of `s`.
fn image_macs(s: &ConvShape) -> usize {
    s.cout * s.ho() * s.wo() * (s.cin / s.groups) * s.kh * s.kw
}

/// Tasks per unit of parallel work (an image or a chunk of images) when there are fewer units
/// than threads and each is worth splitting, else 1, and never more than `most`: a batch of 1
/// then still spreads over every core. Each task computes its share of the same products, so
/// the result does not depend on the split.
fn parts_per(units: usize, most: usize, unit_macs: usize) -> usize {
    let threads = rayon::current_num_threads();
    if units >= threads || unit_macs < min_split_macs() {
        1
    } else {
        threads.div_ceil(units.max(1)).min(most).max(1)
    }
}

/// The output shared by tasks that each write their own rows of it.
#[derive(Clone, Copy)]
struct OutRows(*mut MaybeUninit<f32>);
// SAFETY: every task writes rows (channel, output row, image) no other task writes.
unsafe impl Send for OutRows {}
unsafe impl Sync for OutRows {}

impl OutRows {
    /// Where value `at` goes, for writes through the micro-kernel.
    ///
    /// # Safety
    /// `at` lies inside the output.
    unsafe fn at(&self, at: usize) -> *mut f32 {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(at).cast() }
    }

    /// The `len` values from `at` on.
    ///
    /// # Safety
    /// They lie inside the output, and no other task touches them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows(&self, at: usize, len: usize) -> &mut [MaybeUninit<f32>] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

/// `w'[g·cin_g + ci][co][ky][kx] = w[g·cout_g + co][ci][kh-1-ky][kw-1-kx]`.
fn flip_transpose(s: &ConvShape, w: &[f32]) -> Vec<f32> {
    let (cin_g, cout_g, kh, kw) = (s.cin_g(), s.cout_g(), s.kh, s.kw);
    let mut out = vec![0f32; w.len()];
    for g in 0..s.groups {
        for co in 0..cout_g {
            for ci in 0..cin_g {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let src = (((g * cout_g + co) * cin_g + ci) * kh + ky) * kw + kx;
                        let dst = (((g * cin_g + ci) * cout_g + co) * kh + (kh - 1 - ky)) * kw
                            + (kw - 1 - kx);
                        out[dst] = w[src];
                    }
                }
            }
        }
    }
    out
}

/// The zero-padded image as the direct kernels read it: with stride `(sy, sx)`, split into
/// phase planes `[ci][py][px][Hq][Wq]`, plane `(py, px)` holding padded pixels
/// `(qy·sy + py, qx·sx + px)`. Tap `(ky, kx)` of output `(oy, ox)` reads padded pixel
/// `(oy·sy + ky, ox·sx + kx)`, which is `(oy + ky/sy, ox + kx/sx)` of plane `(ky % sy, kx % sx)`:
/// at flat index `oy·Wq + ox` every tap is again one shifted row, as for stride 1, so a strided
/// convolution needs no im2col matrix either (only `min(s, k)` phases per axis are ever read).
/// With stride 1 this is the padded image itself.
#[derive(Clone, Copy, Debug)]
struct Phases {
    ny: usize,
    nx: usize,
    hq: usize,
    wq: usize,
}

impl Phases {
    fn plane(&self) -> usize {
        self.hq * self.wq
    }

    /// Values of one channel's planes.
    fn channel(&self) -> usize {
        self.ny * self.nx * self.plane()
    }
}

/// Input rows of every tap of one group, relative to the group's first channel.
fn direct_offsets(s: &ConvShape) -> Vec<usize> {
    let q = s.phases();
    let [sy, sx] = s.stride;
    let [dy, dx] = s.dilation;
    let taps: Vec<usize> = (0..s.kh)
        .flat_map(|ky| (0..s.kw).map(move |kx| (ky * dy, kx * dx)))
        .map(|(ty, tx)| {
            let phase = (ty % sy) * q.nx + tx % sx;
            phase * q.plane() + (ty / sy) * q.wq + tx / sx
        })
        .collect();
    // One channel's taps, then the same shifted by whole channels: the divisions per tap, not
    // per tap and channel (a 64-channel 3×3 layer has 576 offsets, computed on every call).
    let mut offs = Vec::with_capacity(s.k());
    for ci in 0..s.cin_g() {
        offs.extend(taps.iter().map(|&t| ci * q.channel() + t));
    }
    offs
}

/// Copies image `x` (`cin × h × w`) into `buf` in the layout of [`Phases`]. `buf` must have
/// been zeroed when allocated and used for this shape only: the padding and the slack after it
/// are never written, so they stay zero without a fill per image.
fn pad_image(s: &ConvShape, x: &[f32], buf: &mut [f32]) {
    pad_image_rows(s, x, buf, 0..s.h);
}

/// [`pad_image`] of input rows `ys` only: a task that computes some of an image's output rows
/// copies the rows their taps read (what its products read past them lands in columns it
/// drops).
fn pad_image_rows(s: &ConvShape, x: &[f32], buf: &mut [f32], ys: std::ops::Range<usize>) {
    let isa = simd::isa();
    let q = s.phases();
    let [sy, sx] = s.stride;
    let (top, left) = (s.pad[0].0, s.pad[1].0);
    for c in 0..s.cin {
        for y in ys.clone() {
            let src = &x[(c * s.h + y) * s.w..(c * s.h + y + 1) * s.w];
            let py = (y + top) % sy;
            if py >= q.ny {
                continue;
            }
            let row = c * q.channel() + py * q.nx * q.plane() + (y + top) / sy * q.wq;
            if sx == 1 {
                copy_row(&mut buf[row + left..row + left + s.w], src);
                continue;
            }
            if sx == 2 {
                // Input column `x` is padded column `x + left`: phase `(x + left) % 2`, at
                // `(x + left) / 2` in it.
                if q.nx == 2 {
                    let (e, o) = buf[row..].split_at_mut(q.plane());
                    let (first, second) = if left.is_multiple_of(2) {
                        (&mut e[left / 2..], &mut o[left / 2..])
                    } else {
                        (&mut o[left / 2..], &mut e[left.div_ceil(2)..])
                    };
                    split_pairs(isa, src, first, second);
                } else {
                    // One phase (a kernel one column wide): the row's even or odd columns,
                    // split a block at a time.
                    let dst = &mut buf[row + left.div_ceil(2)..];
                    let mut halves = [[0f32; 32]; 2];
                    for (k, block) in src.chunks(64).enumerate() {
                        let [even, odd] = &mut halves;
                        split_pairs(isa, block, even, odd);
                        let kept = match left % 2 {
                            0 => &even[..block.len().div_ceil(2)],
                            _ => &odd[..block.len() / 2],
                        };
                        copy_row(&mut dst[k * 32..k * 32 + kept.len()], kept);
                    }
                }
                continue;
            }
            for (x, &v) in src.iter().enumerate() {
                let px = (x + left) % sx;
                if px < q.nx {
                    buf[row + px * q.plane() + (x + left) / sx] = v;
                }
            }
        }
    }
}

fn padded_len(s: &ConvShape, nr: usize) -> usize {
    s.cin * s.phases().channel() + (s.kw - 1) * s.dilation[1] + nr.max(16)
}

/// Images per im2col chunk: enough columns to fill the micro-tiles, not so many that the
/// matrix leaves the cache.
fn chunk_images(s: &ConvShape) -> usize {
    let per_image = s.ho() * s.wo();
    (512 / per_image.max(1)).clamp(1, s.batch.max(1))
}

/// Output columns `ox` whose input column `ox·stride + off − pad` lies inside `0..w`.
fn valid_range(out: usize, stride: usize, off: usize, pad: usize, w: usize) -> (usize, usize) {
    // ox·stride + off ≥ pad  and  ox·stride + off < pad + w
    let lo = pad.saturating_sub(off).div_ceil(stride);
    let hi = if pad + w > off {
        (pad + w - off).div_ceil(stride)
    } else {
        0
    };
    (lo.min(out), hi.clamp(lo.min(out), out))
}

/// `col[(ci, ky, kx)][j]` for the chunk's images side by side (`j = img·Ho·Wo + oy·Wo + ox`)
/// for channels `c0..c0+cin_g`; columns past the images are zero.
fn im2col(s: &ConvShape, x: &[f32], imgs: usize, c0: usize, col: &mut [f32], ld: usize) {
    let (ho, wo) = (s.ho(), s.wo());
    let plane = s.h * s.w;
    let (sy, sx) = (s.stride[0], s.stride[1]);
    for ci in 0..s.cin_g() {
        for ky in 0..s.kh {
            let (oy_lo, oy_hi) = valid_range(ho, sy, ky * s.dilation[0], s.pad[0].0, s.h);
            for kx in 0..s.kw {
                let offx = kx * s.dilation[1];
                let (ox_lo, ox_hi) = valid_range(wo, sx, offx, s.pad[1].0, s.w);
                let row = (ci * s.kh + ky) * s.kw + kx;
                let dst = &mut col[row * ld..(row + 1) * ld];
                dst[imgs * ho * wo..].fill(0.0);
                for img in 0..imgs {
                    let src = &x[(img * s.cin + c0 + ci) * plane..][..plane];
                    for oy in 0..ho {
                        let drow = &mut dst[(img * ho + oy) * wo..][..wo];
                        if oy < oy_lo || oy >= oy_hi {
                            drow.fill(0.0);
                            continue;
                        }
                        let iy = oy * sy + ky * s.dilation[0] - s.pad[0].0;
                        let srow = &src[iy * s.w..][..s.w];
                        drow[..ox_lo].fill(0.0);
                        drow[ox_hi..].fill(0.0);
                        let base = ox_lo * sx + offx - s.pad[1].0;
                        if sx == 1 {
                            copy_row(&mut drow[ox_lo..ox_hi], &srow[base..base + ox_hi - ox_lo]);
                        } else {
                            for (j, d) in drow[ox_lo..ox_hi].iter_mut().enumerate() {
                                *d = srow[base + j * sx];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The scatter-add inverse of [`im2col`] into `dx` (the chunk's images, all channels).
fn col2im(s: &ConvShape, col: &[f32], ld: usize, imgs: usize, c0: usize, dx: &mut [f32]) {
    let (ho, wo) = (s.ho(), s.wo());
    let plane = s.h * s.w;
    let (sy, sx) = (s.stride[0], s.stride[1]);
    for ci in 0..s.cin_g() {
        for ky in 0..s.kh {
            let (oy_lo, oy_hi) = valid_range(ho, sy, ky * s.dilation[0], s.pad[0].0, s.h);
            for kx in 0..s.kw {
                let offx = kx * s.dilation[1];
                let (ox_lo, ox_hi) = valid_range(wo, sx, offx, s.pad[1].0, s.w);
                let row = (ci * s.kh + ky) * s.kw + kx;
                let src = &col[row * ld..row * ld + imgs * ho * wo];
                for img in 0..imgs {
                    let dst = &mut dx[(img * s.cin + c0 + ci) * plane..][..plane];
                    for oy in oy_lo..oy_hi {
                        let iy = oy * sy + ky * s.dilation[0] - s.pad[0].0;
                        let drow = &mut dst[iy * s.w..][..s.w];
                        let srow = &src[(img * ho + oy) * wo..][..wo];
                        let base = ox_lo * sx + offx - s.pad[1].0;
                        let srow = &srow[ox_lo..ox_hi];
                        if sx == 1 {
                            // Contiguous: zipped slices vectorise (the strided form stays scalar).
                            let drow = &mut drow[base..base + srow.len()];
                            drow.iter_mut().zip(srow).for_each(|(d, v)| *d += v);
                        } else if let Some((last, head)) = srow.split_last() {
                            // Strided: exact chunks let LLVM vectorise the interleaved access.
                            let span = &mut drow[base..base + head.len() * sx + 1];
                            let (body, tail) = span.split_at_mut(head.len() * sx);
                            body.chunks_exact_mut(sx)
                                .zip(head)
                                .for_each(|(d, v)| d[0] += v);
                            tail[0] += last;
                        }
                    }
                }
            }
        }
    }
}

/// `y = conv(x, w)`, `x: [batch, cin, h, w]`, result `[batch, cout, ho, wo]`.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    forward_with(s, x, w, None)
}

/// A per-output-channel `act(y · scale + shift)` applied as the convolution writes its result:
/// an eval-mode BatchNorm and its activation after the convolution without a pass of their own.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    pub act: OutputAct,
}

impl Epilogue<'_> {
    /// `dst = relu?(src · scale[c] + shift[c])` for output channel `c`: the affine map and the
    /// ReLU if any; a hard-swish or SiLU follows in [`Epilogue::activate`].
    fn write(&self, c: usize, dst: &mut [MaybeUninit<f32>], src: &[f32]) {
        let (a, b) = (self.scale[c], self.shift[c]);
        let (relu, _) = self.act.split();
        // SAFETY: `simd::isa` is this CPU's. (Outside an ISA-specific function this loop was
        // compiled for the baseline: SSE, 7% of a MobileNetV3 forward at batch 1.)
        // BatchNorm's own eval row writer: the same expression.
        unsafe { super::batch_norm::affine_row(simd::isa(), dst, src, a, b, relu) }
    }

    /// [`Epilogue::write`] and [`Epilogue::activate`] over one image of a 1×1 map (a value per
    /// channel), in place: the same expressions, value by value ([`OutputAct::apply`]).
    pub(super) fn apply_in_place(&self, y: &mut [f32]) {
        for ((v, &a), &b) in y.iter_mut().zip(self.scale).zip(self.shift) {
            *v = self.act.apply(*v * a + b);
        }
    }

    /// The hard-swish or SiLU after [`Epilogue::write`], over a block it wrote while the
    /// values are still in cache (a separate pass over a 1×1 expansion's output was a sixth of
    /// an EfficientNet-B0 forward). Called once per channel block, not per row: rows of 7 or 14
    /// values left it mostly per-call overhead and padded tails.
    ///
    /// # Safety
    /// Every value of `block` was written.
    unsafe fn activate(&self, block: &mut [MaybeUninit<f32>]) {
        if let (_, Some(act)) = self.act.split() {
            // SAFETY: the caller vouches for the values; `MaybeUninit<f32>` has `f32`'s layout.
            let block = unsafe { &mut *(block as *mut [MaybeUninit<f32>] as *mut [f32]) };
            super::activation::forward_row(act, block);
        }
    }
}

/// [`forward`] followed by `act(y · scale[c] + shift[c])` per output channel, in the same pass.
pub fn forward_affine(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    scale: &[f32],
    shift: &[f32],
    act: OutputAct,
) -> Vec<f32> {
    assert_eq!(scale.len(), s.cout);
    assert_eq!(shift.len(), s.cout);
    forward_with(s, x, w, Some(Epilogue { scale, shift, act }))
}

fn forward_with(s: &ConvShape, x: &[f32], w: &[f32], epi: Option<Epilogue>) -> Vec<f32> {
    assert!(s.supported(), "unsupported convolution {s:?}");
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(w.len(), s.cout * s.k());
    let isa = simd::isa();
    let (ho, wo) = (s.ho(), s.wo());
    let len = s.batch * s.cout * ho * wo;
    if len == 0 {
        return Vec::new();
    }
    if super::pointwise::applies(s) {
        return super::pointwise::forward(s, x, w, epi);
    }
    if super::winograd::applies(s) {
        return winograd_epilogue(s, super::winograd::forward(s, x, w), epi);
    }
    let packed: Vec<Panels> = (0..s.groups).map(|g| pack_weight(s, w, g)).collect();
    forward_panels(isa, s, x, &packed, epi)
}

/// The epilogue over a finished Winograd result (its tiles are written by transforms that know
/// nothing of channels' affine maps).
pub(super) fn winograd_epilogue(s: &ConvShape, mut y: Vec<f32>, epi: Option<Epilogue>) -> Vec<f32> {
    if let Some(e) = epi {
        let shape = super::batch_norm::BnShape {
            batch: s.batch,
            channels: s.cout,
            spatial: s.ho() * s.wo(),
        };
        let (relu, act) = e.act.split();
        super::batch_norm::channel_affine_in_place(shape, &mut y, e.scale, e.shift, relu);
        if let Some(act) = act {
            super::activation::forward_in_place(act, &mut y);
        }
    }
    y
}

/// The direct or im2col forward on a weight packed by [`pack_weight`] (one per group).
pub(super) fn forward_panels(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    packed: &[Panels],
    epi: Option<Epilogue>,
) -> Vec<f32> {
    let len = s.batch * s.cout * s.ho() * s.wo();
    // Both paths write every output element exactly once (every channel, row and image), so
    // the result is not zero-filled first: that fill was a full extra pass over the output.
    let mut y = Vec::with_capacity(len);
    let out = &mut y.spare_capacity_mut()[..len];
    // A 1×1 layer read in place has no excess columns whatever its width, so small maps go
    // direct too: through im2col, which copied the input once per task row by row (7 values at
    // 7×7), MobileNetV3's and EfficientNet-B0's 7×7 1×1 layers took 1/0.65–1/0.93 of the time
    // at batch 1 and 1/0.70–1/0.98 at batch 8.
    if s.direct() || s.reads_input() {
        forward_direct(isa, s, x, packed, out, epi);
    } else {
        forward_im2col(isa, s, x, packed, out, epi);
    }
    // SAFETY: `out` (the first `len` elements of the capacity) was written in full above.
    unsafe { y.set_len(len) };
    y
}

/// Channel `c`'s run of output values into uninitialised memory, through the epilogue if any.
fn emit(epi: Option<&Epilogue>, c: usize, dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    match epi {
        Some(e) => e.write(c, dst, src),
        None => write(dst, src),
    }
}

/// `dst = src` into uninitialised memory.
fn write(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    // SAFETY: `dst` holds `src.len()` values (`MaybeUninit<f32>` has `f32`'s layout).
    unsafe { copy_row_to(dst.as_mut_ptr().cast::<f32>(), src) }
}

fn forward_direct(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    packed: &[Panels],
    y: &mut [MaybeUninit<f32>],
    epi: Option<Epilogue>,
) {
    let parts = parts_per(s.batch, s.ho(), image_macs(s));
    // A 1×1 layer's tasks each read all of what is not shared out: with more output channels
    // than positions the weight is the larger, so the tasks share the channels instead of the
    // rows (MobileNetV3's 112→672 and 80→480 layers at 14×14, batch 1: 0.89–0.91 of the time;
    // with fewer channels it is the input, and 24→72 at 56×56 took 1.76 times as long).
    if parts > 1
        && s.reads_input()
        && packed[0].layout.rows == s.cout_g()
        && s.cout_g() > s.ho() * s.wo()
    {
        let panels = packed[0].layout.panels().count();
        let parts = parts_per(s.batch, panels, image_macs(s));
        return forward_bare_panels(isa, s, x, packed, y, epi, parts);
    }
    forward_direct_rows(isa, s, x, packed, y, epi, parts);
}

/// A 1×1 convolution read in place, each image's output channels shared out among `parts`
/// tasks by whole panels of the packed weight (each value is the same sum as in
/// [`forward_direct_rows`]: every column is its own).
fn forward_bare_panels(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    packed: &[Panels],
    y: &mut [MaybeUninit<f32>],
    epi: Option<Epilogue>,
    parts: usize,
) {
    let nr = isa.nr();
    let rows = packed[0].layout.rows;
    let offs = direct_offsets(s);
    let tail_offs: Vec<usize> = (0..s.k()).map(|k| k * nr).collect();
    let in_image = s.cin * s.h * s.w;
    let out = OutRows(y.as_mut_ptr());
    assert_eq!(y.len(), s.batch * s.cout * s.ho() * s.wo());
    let share = |p: usize| rows * p / parts..rows * (p + 1) / parts;
    (0..s.batch * parts).into_par_iter().for_each_init(
        || vec![0f32; (s.k() + 1) * nr],
        |tail, task| {
            let (i, p) = (task / parts, task % parts);
            let image = &x[i * in_image..(i + 1) * in_image];
            // SAFETY: the channels of `share(p)` of image `i` are this task's alone.
            unsafe {
                direct_to_output(
                    isa,
                    s,
                    image,
                    packed,
                    &out,
                    i,
                    (0, s.ho()),
                    share(p),
                    epi,
                    tail,
                    (&offs, &tail_offs),
                )
            };
        },
    );
}

/// The direct convolution with each image's output rows shared out among `parts` tasks (1: one
/// task per image): a task computes output rows `oy0..oy1` as the columns `oy0·Wq..oy1·Wq` of
/// the same product (every column is its own sum, so the values are those of the whole-image
/// product).
fn forward_direct_rows(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    packed: &[Panels],
    y: &mut [MaybeUninit<f32>],
    epi: Option<Epilogue>,
    parts: usize,
) {
    let (ho, wo, q) = (s.ho(), s.wo(), s.phases());
    let wp = q.wq;
    let nr = isa.nr();
    let ldc = (ho.div_ceil(parts) * wp).div_ceil(nr) * nr;
    let offs = direct_offsets(s);
    let last_tap = offs.iter().copied().max().unwrap_or(0);
    let rows = packed[0].layout.rows;
    let in_image = s.cin * s.h * s.w;
    let out_image = s.cout * ho * wo;
    let span = |p: usize| ho * p / parts;
    let bare = s.reads_input();
    // With `bare`, the last `cols % nr` columns of every tap's row are copied here, `nr` apart,
    // so that the micro-kernel's reads past them stay inside a buffer.
    let tail_offs: Vec<usize> = (0..s.k()).map(|k| k * nr).collect();
    let out = OutRows(y.as_mut_ptr());
    assert_eq!(y.len(), s.batch * out_image);
    // One task: output rows `oy0..oy1` of image `i`, whose (padded, or in place) input is
    // `image`.
    let rows_task = |image: &[f32], tail: &mut [f32], i: usize, oy0: usize, oy1: usize| {
        let cols = (oy1 - oy0) * wp;
        // Every epilogue, a hard-swish or SiLU included, is applied by the gemm to each tile
        // as it stores it (`RowAffine::act`), so the output is written once, in place. With
        // those layers sent through the product buffer, a copy and a pass per channel,
        // EfficientNet-B0's forward took 1/0.95 of the time at batch 1 and 8.
        if bare && rows == s.cout_g() {
            // SAFETY: rows `oy0..oy1` of image `i` are this task's alone.
            unsafe {
                direct_to_output(
                    isa,
                    s,
                    image,
                    packed,
                    &out,
                    i,
                    (oy0, oy1),
                    0..rows,
                    epi,
                    tail,
                    (&offs, &tail_offs),
                )
            };
            return;
        }
        with_products(rows * ldc, |ypw| {
            for (g, a) in packed.iter().enumerate() {
                let b = &image[g * s.cin_g() * q.channel() + oy0 * wp..];
                // In place, only whole tiles: the image ends where the last row does.
                let whole = if bare { cols / nr * nr } else { cols };
                let tiles = whole.div_ceil(nr) * nr;
                // The micro-kernel reads `b` unchecked in release builds.
                assert!(
                    b.len() >= last_tap + tiles,
                    "direct conv {s:?}: short input"
                );
                let a = (&a.data[..], a.layout);
                // A 1×1 layer's taps are whole planes, each its own stream; the taps of a
                // larger kernel overlap, so their tile is a few cache lines read in place,
                // and a copy only cost time (ResNet-50's 7×7 stem 1.12–1.16× slower).
                let walk = if s.kh * s.kw == 1 {
                    Walk::Packed
                } else {
                    Walk::InPlace
                };
                gemm_panels(isa, a, s.k(), b, &offs, ypw, ldc, whole, false, walk);
                if whole < cols {
                    let rest = cols - whole;
                    for (t, &o) in tail.chunks_exact_mut(nr).zip(&offs) {
                        t[..rest].copy_from_slice(&b[o + whole..o + cols]);
                    }
                    let c = &mut ypw[whole..];
                    gemm_panels(
                        isa,
                        a,
                        s.k(),
                        tail,
                        &tail_offs,
                        c,
                        ldc,
                        rest,
                        false,
                        Walk::InPlace,
                    );
                }
                // Without excess columns a channel's rows are one run in both buffers:
                // one call instead of one per row (rows of 7 or 14 values at batch 1).
                let (run, runs) = if wp == wo {
                    ((oy1 - oy0) * wo, 1)
                } else {
                    (wo, oy1 - oy0)
                };
                for co in 0..s.cout_g() {
                    let c = g * s.cout_g() + co;
                    for r in 0..runs {
                        let (oy, src) = (oy0 + r, co * ldc + r * wp);
                        // SAFETY: rows `oy..` of channel `c` of image `i` are inside `y`
                        // (asserted length) and belong to this task's rows alone.
                        let dst = unsafe { out.rows(i * out_image + (c * ho + oy) * wo, run) };
                        emit(epi.as_ref(), c, dst, &ypw[src..src + run]);
                    }
                    if let Some(e) = &epi {
                        let at = i * out_image + (c * ho + oy0) * wo;
                        // SAFETY: as above; the loop above wrote all these rows.
                        unsafe { e.activate(out.rows(at, (oy1 - oy0) * wo)) };
                    }
                }
            }
        })
    };
    (0..s.batch * parts).into_par_iter().for_each_init(
        || match bare {
            true => vec![0f32; (s.k() + 1) * nr],
            false => Vec::new(),
        },
        |tail, task| {
            let (i, p) = (task / parts, task % parts);
            let (oy0, oy1) = (span(p), span(p + 1));
            if oy0 == oy1 {
                return;
            }
            if bare {
                return rows_task(&x[i * in_image..(i + 1) * in_image], tail, i, oy0, oy1);
            }
            with_padded(s, nr, |xpad| {
                // Padded rows `oy0·sy ..= (oy1 − 1)·sy + (kh − 1)·dy` hold every tap of rows
                // `oy0..oy1`.
                let reach = (oy1 - 1) * s.stride[0] + (s.kh - 1) * s.dilation[0] + 1;
                let ys = (oy0 * s.stride[0]).saturating_sub(s.pad[0].0)
                    ..reach.saturating_sub(s.pad[0].0).min(s.h);
                let ys = if parts == 1 { 0..s.h } else { ys };
                pad_image_rows(s, &x[i * in_image..(i + 1) * in_image], xpad, ys);
                rows_task(xpad, tail, i, oy0, oy1)
            })
        },
    );
}

/// A 1×1 convolution read in place ([`ConvShape::reads_input`]) whose panels have no padding
/// rows: its product's rows are the output's channels and its columns the output's positions
/// (no excess columns), so the micro-kernel stores the whole tiles straight into `out`, through
/// the affine epilogue if any, instead of into a buffer copied out afterwards (at 56×56 that
/// buffer, 3 MB for 256 channels, left the cache and came back for the epilogue's pass, a
/// sixth of the layer). Not for a hard-swish or SiLU epilogue, whose own pass over the rows
/// would then read them back from memory (EfficientNet-B0's eval 22% slower). The input is
/// packed tile by tile ([`Walk::Packed`]), so it is read once whatever its size: read in
/// place once per panel, inputs over 1 MB (ResNet-50's 256-channel 56×56 maps) had to keep
/// the buffer, and take 0.87–0.97 of that time this way. The last `cols % nr` columns go
/// through a tile-sized buffer as before. Image `i`, output rows `oy0..oy1`, the channels of
/// each group's panels that start in `mine`; `offs` are the taps' rows in the image and
/// `tail_offs` in `tail`, as the caller reads them.
///
/// # Safety
/// Those rows of those channels of image `i` are inside `out` and belong to the caller alone.
#[allow(clippy::too_many_arguments)]
unsafe fn direct_to_output(
    isa: Isa,
    s: &ConvShape,
    image: &[f32],
    packed: &[Panels],
    out: &OutRows,
    i: usize,
    (oy0, oy1): (usize, usize),
    mine: std::ops::Range<usize>,
    epi: Option<Epilogue>,
    tail: &mut [f32],
    (offs, tail_offs): (&[usize], &[usize]),
) {
    let (hw, nr) = (s.ho() * s.wo(), isa.nr());
    let (cin_g, cout_g) = (s.cin_g(), s.cout_g());
    let cols = (oy1 - oy0) * s.wo();
    let whole = cols / nr * nr;
    let rest = cols - whole;
    let (relu, act) = epi.map_or((false, None), |e| e.act.split());
    for (g, a) in packed.iter().enumerate() {
        let b = &image[(g * cin_g * s.h + oy0) * s.w..];
        let first = (i * s.cout + g * cout_g) * hw + oy0 * s.wo();
        let affine = epi.map(|e| RowAffine {
            scale: &e.scale[g * cout_g..(g + 1) * cout_g],
            shift: &e.shift[g * cout_g..(g + 1) * cout_g],
            relu,
            act,
        });
        let a = (&a.data[..], a.layout);
        if whole > 0 {
            assert!(
                b.len() >= offs[cin_g - 1] + whole,
                "direct conv {s:?}: short input"
            );
            // SAFETY: channel `co`'s columns `0..whole` from `first + co·hw` are this task's
            // rows (the caller's contract); whole tiles write no column past `whole`.
            unsafe {
                let c = out.at(first);
                gemm_rows_to(
                    isa,
                    a,
                    mine.clone(),
                    cin_g,
                    b,
                    offs,
                    c,
                    hw,
                    whole,
                    false,
                    affine,
                    Walk::Packed,
                );
            }
        }
        if rest > 0 {
            for (t, &o) in tail.chunks_exact_mut(nr).zip(offs) {
                t[..rest].copy_from_slice(&b[o + whole..o + cols]);
            }
            with_products(cout_g * nr, |tp| {
                // SAFETY: `tp` holds every row's tile.
                unsafe {
                    let c = tp.as_mut_ptr();
                    gemm_rows_to(
                        isa,
                        a,
                        mine.clone(),
                        cin_g,
                        tail,
                        tail_offs,
                        c,
                        nr,
                        rest,
                        false,
                        affine,
                        Walk::PanelsFirst,
                    );
                }
                for (r0, h) in a.1.panels().filter(|(r0, _)| mine.contains(r0)) {
                    for co in r0..r0 + h {
                        // SAFETY: as above, the columns `whole..cols` of channel `co`.
                        let dst = unsafe { out.rows(first + co * hw + whole, rest) };
                        write(dst, &tp[co * nr..co * nr + rest]);
                    }
                }
            });
        }
    }
}

thread_local! {
    /// Each thread's product buffer, kept between calls: a fresh zeroed one per call cost as
    /// much as a tenth of a 1×1 layer's products at batch 1 (a 56×56 map's rows for 256
    /// channels are 1.6 MB).
    static PRODUCTS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

thread_local! {
    /// Each thread's padded inputs of the direct kernels, by layout ([`PaddedKey`]), the most
    /// recently used first. [`pad_image_rows`] writes only the image's own positions, so the
    /// padding a buffer was zeroed with stays zero for every later input of its layout: at
    /// batch 1 with a layer's rows split in two, zeroing a fresh buffer per task cost more than
    /// the copy of the task's rows into it.
    static PADDED: std::cell::RefCell<Vec<(PaddedKey, Vec<f32>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Layouts each thread keeps a padded buffer for: a whole network's, so that a forward meets
/// none afresh. Its layers visit their layouts in a cycle (resnet20 six, ResNet-50's 3×3
/// layers and stem eight), which a shorter list lost every time: with four, every direct
/// layer that changed layout zeroed a new buffer (resnet20 batch 1 took 1/0.94–1/0.98 of
/// the time). A thread's buffers hold one image each: ResNet-50's eight about 5.5 MB.
const PADDED_KEPT: usize = 12;

/// What the layout of [`pad_image_rows`]'s buffer depends on: the shape but for its batch,
/// output channels and groups, and the micro-kernel's tile width ([`padded_len`]'s slack).
type PaddedKey = (ConvShape, usize);

/// `f` on this thread's padded buffer for `s`'s input: zero outside the image, and inside it
/// whatever rows earlier calls wrote (taken out of its slot, so a nested call on the same
/// thread gets a buffer of its own).
fn with_padded<R>(s: &ConvShape, nr: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let layout = ConvShape {
        batch: 0,
        cout: 0,
        groups: 1,
        ..*s
    };
    let key = (layout, nr);
    let kept = PADDED.with_borrow_mut(|kept| {
        let at = kept.iter().position(|(k, _)| *k == key)?;
        Some(kept.remove(at).1)
    });
    let mut buf = kept.unwrap_or_else(|| vec![0f32; padded_len(s, nr)]);
    let r = f(&mut buf);
    PADDED.with_borrow_mut(|kept| {
        kept.insert(0, (key, buf));
        kept.truncate(PADDED_KEPT);
    });
    r
}

/// `f` on `len` values of this thread's product buffer, whatever earlier calls left there
/// (taken out of its slot, so a nested call on the same thread gets a buffer of its own).
fn with_products<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = PRODUCTS.with_borrow_mut(std::mem::take);
    if buf.len() < len {
        buf = vec![0f32; len];
    }
    let r = f(&mut buf[..len]);
    PRODUCTS.with_borrow_mut(|slot| {
        if slot.len() < buf.len() {
            *slot = buf;
        }
    });
    r
}

fn forward_im2col(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    packed: &[Panels],
    y: &mut [MaybeUninit<f32>],
    epi: Option<Epilogue>,
) {
    let chunk = chunk_images(s);
    let panels = packed[0].layout.panels().count();
    let parts = parts_per(s.batch.div_ceil(chunk), panels, chunk * image_macs(s));
    forward_im2col_panels(isa, s, x, packed, y, epi, parts);
}

/// The im2col convolution with each chunk's output channels shared out among `parts` tasks (1:
/// one task per chunk), by whole panels of the packed weight (the products are the same, see [`gemm_rows`]). Each task
/// writes the chunk's patch matrix itself: a copy of the input, small beside its share of the
/// products when there are enough channels to share.
fn forward_im2col_panels(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    packed: &[Panels],
    y: &mut [MaybeUninit<f32>],
    epi: Option<Epilogue>,
    parts: usize,
) {
    let (ho, wo) = (s.ho(), s.wo());
    let nr = isa.nr();
    let chunk = chunk_images(s);
    let chunks = s.batch.div_ceil(chunk);
    let in_image = s.cin * s.h * s.w;
    let out_image = s.cout * ho * wo;
    let rows = packed[0].layout.rows;
    let ld = (chunk * ho * wo).div_ceil(nr) * nr;
    let offs: Vec<usize> = (0..s.k()).map(|k| k * ld).collect();
    // Panels go to the part their first row falls in: contiguous runs of about rows / parts.
    let share = |p: usize| rows * p / parts..rows * (p + 1) / parts;
    let out = OutRows(y.as_mut_ptr());
    assert_eq!(y.len(), s.batch * out_image);
    let col_len = s.k() * ld + nr;
    // The epilogue runs in the gemm, on each tile as it is stored, and the copy out is a plain
    // one: through the affine and a separate activation pass per channel and image (49 values
    // at 7×7), EfficientNet-B0's batch-8 forward took 1/0.977 of the time. Each group's
    // affine spans the panels' rows, zero past its channels where they pad.
    let scales = epi
        .as_ref()
        .map_or(Vec::new(), |e| per_group(e.scale, s, rows));
    let shifts = epi
        .as_ref()
        .map_or(Vec::new(), |e| per_group(e.shift, s, rows));
    let affines: Vec<Option<RowAffine>> = (0..s.groups)
        .map(|g| {
            epi.as_ref().map(|e| {
                let (relu, act) = e.act.split();
                RowAffine {
                    scale: &scales[g],
                    shift: &shifts[g],
                    relu,
                    act,
                }
            })
        })
        .collect();
    (0..chunks * parts).into_par_iter().for_each(|task| {
        // `im2col` writes every column of every row it reads, so neither buffer needs zeros.
        with_products(col_len + rows * ld, |buf| {
            let (col, tmp) = buf.split_at_mut(col_len);
            let (ci, p) = (task / parts, task % parts);
            let imgs = chunk.min(s.batch - ci * chunk);
            let xs = &x[ci * chunk * in_image..][..imgs * in_image];
            let mine = share(p);
            for (g, a) in packed.iter().enumerate() {
                im2col(s, xs, imgs, g * s.cin_g(), col, ld);
                let affine = affines[g];
                assert!(tmp.len() >= rows * ld);
                // SAFETY: `tmp` holds every panel's rows of `ld` values, `ld` a whole number
                // of tiles; the task owns it.
                unsafe {
                    gemm_rows_to(
                        isa,
                        (&a.data, a.layout),
                        mine.clone(),
                        s.k(),
                        col,
                        &offs,
                        tmp.as_mut_ptr(),
                        ld,
                        imgs * ho * wo,
                        false,
                        affine,
                        Walk::Packed,
                    )
                };
                for (r0, h) in a.layout.panels().filter(|(r0, _)| mine.contains(r0)) {
                    for co in r0..(r0 + h).min(s.cout_g()) {
                        let c = g * s.cout_g() + co;
                        for img in 0..imgs {
                            let at = ((ci * chunk + img) * s.cout + c) * ho * wo;
                            let src = co * ld + img * ho * wo;
                            // SAFETY: channel `c` of this image is inside `y` (asserted length)
                            // and its panel belongs to this task alone.
                            let dst = unsafe { out.rows(at, ho * wo) };
                            write(dst, &tmp[src..src + ho * wo]);
                        }
                    }
                }
            }
        })
    });
}

/// Each group's slice of `v`, padded with zeros to the panels' rows where they pad.
fn per_group<'v>(v: &'v [f32], s: &ConvShape, rows: usize) -> Vec<Cow<'v, [f32]>> {
    v.chunks(s.cout_g())
        .take(s.groups)
        .map(|v| {
            if rows == v.len() {
                Cow::Borrowed(v)
            } else {
                let mut p = v.to_vec();
                p.resize(rows, 0.0);
                Cow::Owned(p)
            }
        })
        .collect()
}

/// `dx` of `y = conv(x, w)` given `dy: [batch, cout, ho, wo]`.
pub fn backward_input(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    assert!(s.supported(), "unsupported convolution {s:?}");
    assert_eq!(dy.len(), s.batch * s.cout * s.ho() * s.wo());
    if s.stride == [1, 1] {
        let t = s.transposed();
        if super::winograd::applies(s) {
            return super::winograd::backward_input(s, dy, w);
        }
        if t.direct() {
            return forward(&t, dy, &flip_transpose(s, w));
        }
    }
    backward_input_col2im(s, dy, w)
}

fn backward_input_col2im(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let isa = simd::isa();
    let nr = isa.nr();
    let (ho, wo) = (s.ho(), s.wo());
    let (k, cout_g) = (s.k(), s.cout_g());
    let mut dx = vec![0f32; s.batch * s.cin * s.h * s.w];
    if dx.is_empty() {
        return dx;
    }
    // A = wᵀ per group: rows are the taps (ci, ky, kx), the reduction runs over cout_g.
    let packed: Vec<Panels> = (0..s.groups)
        .map(|g| {
            let mut a = Panels::zeroed(k, cout_g);
            for co in 0..cout_g {
                let row = &w[(g * cout_g + co) * k..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    let at = a.layout.at(kk, co, cout_g);
                    a.data[at] = v;
                }
            }
            a
        })
        .collect();
    // At least one chunk per thread: a 7×7 map's eight images made one chunk, one task, while
    // the other core waited. Each column of the product is its own sum, so how the images are
    // chunked does not change a value.
    let chunk = chunk_images(s).min(s.batch.div_ceil(rayon::current_num_threads()));
    let ld_for = |imgs: usize| (imgs * ho * wo).div_ceil(nr) * nr;
    let offs: Vec<usize> = (0..cout_g).map(|co| co * ld_for(chunk)).collect();
    let in_image = s.cin * s.h * s.w;
    let rows = packed[0].layout.rows;
    dx.par_chunks_mut(chunk * in_image)
        .enumerate()
        .for_each_init(
            || {
                (
                    vec![0f32; cout_g * ld_for(chunk) + nr],
                    vec![0f32; rows * ld_for(chunk)],
                )
            },
            |(dyb, dcol), (ci, dxchunk)| {
                let imgs = dxchunk.len() / in_image;
                let ld = ld_for(chunk);
                for (g, a) in packed.iter().enumerate() {
                    dyb.fill(0.0);
                    for co in 0..cout_g {
                        for img in 0..imgs {
                            let src = ((ci * chunk + img) * s.cout + g * cout_g + co) * ho * wo;
                            let dst = co * ld + img * ho * wo;
                            dyb[dst..dst + ho * wo].copy_from_slice(&dy[src..src + ho * wo]);
                        }
                    }
                    gemm_panels(
                        isa,
                        (&a.data, a.layout),
                        cout_g,
                        dyb,
                        &offs,
                        dcol,
                        ld,
                        imgs * ho * wo,
                        false,
                        Walk::Packed,
                    );
                    col2im(s, dcol, ld, imgs, g * s.cin_g(), dxchunk);
                }
            },
        );
    dx
}

/// `dw` of `y = conv(x, w)`: `[cout, cin/groups, kh, kw]`.
pub fn backward_weight(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(s.supported(), "unsupported convolution {s:?}");
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(dy.len(), s.batch * s.cout * s.ho() * s.wo());
    let isa = simd::isa();
    let total = s.cout * s.k();
    if s.batch == 0 {
        return vec![0f32; total];
    }
    if super::winograd::applies(s) {
        return super::winograd::backward_weight(s, x, dy);
    }
    // AVX-512 only: with AVX2's 16-column tiles (forced on the AVX-512 machine) the gemm read
    // 0.81–1.34× the dot products' speed across ResNet-50's 1×1 layers, so AVX2 machines keep
    // the dot products, and their values.
    if isa == Isa::Avx512 && super::weight_gemm::applies(s) {
        return super::weight_gemm::backward_weight(isa, s, x, dy);
    }
    // Short rows make the dot products' horizontal sums dominate: below 16 output columns the
    // im2col layout, with several images per row, is faster.
    if s.direct() && s.wo() >= 16 {
        sum_partials(backward_weight_direct(isa, s, x, dy), total)
    } else {
        sum_partials(backward_weight_im2col(isa, s, x, dy), total)
    }
}

/// Sums the partial gradients in a fixed order: rayon's `reduce` pairs them as work was stolen,
/// and a different rounding on every run would break bit-exact `--resume`.
pub(super) fn sum_partials(
    partials: impl IndexedParallelIterator<Item = Vec<f32>>,
    len: usize,
) -> Vec<f32> {
    let parts: Vec<Vec<f32>> = partials.collect();
    let mut total = vec![0f32; len];
    for p in &parts {
        total.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    total
}

/// Weight-gradient work is split into this many fixed groups of images (not one per thread), so
/// that the summation order, and so the result, is the same whatever the thread count.
pub(super) const WEIGHT_GRAD_GROUPS: usize = 4;

/// Adds `Σ_n d[co][n] · b[offs[k] + n]` into `dw` for every output channel and tap of group `g`.
#[allow(clippy::too_many_arguments)]
fn accumulate_dots(
    isa: Isa,
    s: &ConvShape,
    g: usize,
    d: &[f32],
    ldd: usize,
    b: &[f32],
    offs: &[usize],
    len: usize,
    dw: &mut [f32],
) {
    let (k, cout_g) = (s.k(), s.cout_g());
    for p in 0..cout_g.div_ceil(MR) {
        let drows = &d[(g * cout_g + p * MR) * ldd..];
        for j0 in (0..k).step_by(JR) {
            let mut o = [0usize; JR];
            for (j, oj) in o.iter_mut().enumerate() {
                *oj = offs[(j0 + j).min(k - 1)];
            }
            let sums = simd::dot(
                isa,
                &DotArgs {
                    d: drows,
                    ldd,
                    b,
                    offs: o,
                    len,
                },
            );
            for m in 0..MR.min(cout_g - p * MR) {
                for j in 0..JR.min(k - j0) {
                    dw[(g * cout_g + p * MR + m) * k + j0 + j] += sums[m * JR + j];
                }
            }
        }
    }
}

fn backward_weight_direct<'a>(
    isa: Isa,
    s: &'a ConvShape,
    x: &'a [f32],
    dy: &'a [f32],
) -> impl IndexedParallelIterator<Item = Vec<f32>> + 'a {
    let (ho, wo, q) = (s.ho(), s.wo(), s.phases());
    let wp = q.wq;
    let nr = isa.nr();
    let len = (ho * wp).div_ceil(isa.width()) * isa.width();
    let offs = direct_offsets(s);
    let in_image = s.cin * s.h * s.w;
    let out_image = s.cout * ho * wo;
    let total = s.cout * s.k();
    // Rows past the last channel stay zero so a partial last panel reads zeros.
    let d_len = (s.cout + MR) * len;
    let per = s.batch.div_ceil(WEIGHT_GRAD_GROUPS);
    (0..s.batch.div_ceil(per)).into_par_iter().map(move |grp| {
        let mut dw = vec![0f32; total];
        let mut xpad = vec![0f32; padded_len(s, nr)];
        let mut dpw = vec![0f32; d_len];
        for i in grp * per..((grp + 1) * per).min(s.batch) {
            pad_image(s, &x[i * in_image..][..in_image], &mut xpad);
            let dyi = &dy[i * out_image..][..out_image];
            for co in 0..s.cout {
                for oy in 0..ho {
                    let dst = co * len + oy * wp;
                    copy_row(&mut dpw[dst..dst + wo], &dyi[(co * ho + oy) * wo..][..wo]);
                }
            }
            for g in 0..s.groups {
                let b = &xpad[g * s.cin_g() * q.channel()..];
                accumulate_dots(isa, s, g, &dpw, len, b, &offs, len, &mut dw);
            }
        }
        dw
    })
}

fn backward_weight_im2col<'a>(
    isa: Isa,
    s: &'a ConvShape,
    x: &'a [f32],
    dy: &'a [f32],
) -> impl IndexedParallelIterator<Item = Vec<f32>> + 'a {
    let (ho, wo) = (s.ho(), s.wo());
    let width = isa.width();
    // A batch that fits one chunk (eight images of a 7×7 map) would be one group, one task:
    // cut it into up to `WEIGHT_GRAD_GROUPS` chunks instead (by the batch alone, so the values
    // still do not depend on the thread count).
    let chunk = match chunk_images(s) {
        c if s.batch <= c => s.batch.div_ceil(WEIGHT_GRAD_GROUPS),
        c => c,
    };
    let ld = (chunk * ho * wo).div_ceil(width) * width;
    let offs: Vec<usize> = (0..s.k()).map(|k| k * ld).collect();
    let in_image = s.cin * s.h * s.w;
    let total = s.cout * s.k();
    let chunks = s.batch.div_ceil(chunk);
    let per = chunks.div_ceil(WEIGHT_GRAD_GROUPS);
    (0..chunks.div_ceil(per)).into_par_iter().map(move |grp| {
        let mut dw = vec![0f32; total];
        let mut col = vec![0f32; s.k() * ld + width];
        let mut dcols = vec![0f32; (s.cout + MR) * ld];
        for c in grp * per..((grp + 1) * per).min(chunks) {
            let imgs = chunk.min(s.batch - c * chunk);
            let xs = &x[c * chunk * in_image..][..imgs * in_image];
            dcols.fill(0.0);
            for co in 0..s.cout {
                for img in 0..imgs {
                    let src = ((c * chunk + img) * s.cout + co) * ho * wo;
                    let dst = co * ld + img * ho * wo;
                    dcols[dst..dst + ho * wo].copy_from_slice(&dy[src..src + ho * wo]);
                }
            }
            let len = (imgs * ho * wo).div_ceil(width) * width;
            for g in 0..s.groups {
                im2col(s, xs, imgs, g * s.cin_g(), &mut col, ld);
                accumulate_dots(isa, s, g, &dcols, ld, &col, &offs, len, &mut dw);
            }
        }
        dw
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task reads only the padded rows it wrote: NaN that an earlier input of the same layout
    /// left inside the thread's kept buffer never reaches the output. On one thread, so that
    /// every task finds the NaN rows its predecessors did not overwrite.
    #[test]
    fn stale_rows_of_a_kept_padded_buffer_never_reach_the_output() {
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let isa = simd::isa();
        for (cin, hw, cout, k, stride, pad) in [
            (16, 32, 16, 3, 1, 1),
            (16, 32, 32, 3, 2, 1),
            (3, 40, 16, 7, 2, 3),
            (8, 16, 16, 1, 2, 0),
        ] {
            let s = ConvShape::square(1, (cin, hw, cout), (k, stride, pad));
            assert!(s.direct() && !s.reads_input(), "{s:?}");
            let x: Vec<f32> = (0..cin * hw * hw)
                .map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let w: Vec<f32> = (0..cout * s.k())
                .map(|i| (i * 104_729 % 1000) as f32 / 5000.0 - 0.1)
                .collect();
            let packed = [pack_weight(&s, &w, 0)];
            let nan = vec![f32::NAN; x.len()];
            let run = |parts| {
                let mut y = vec![MaybeUninit::uninit(); s.cout * s.ho() * s.wo()];
                forward_direct_rows(isa, &s, &x, &packed, &mut y, None, parts);
                // SAFETY: the forward writes every output value.
                y.into_iter()
                    .map(|v| unsafe { v.assume_init() })
                    .collect::<Vec<f32>>()
            };
            one.install(|| {
                let want = run(1);
                assert!(want.iter().all(|v| v.is_finite()), "{s:?}");
                for parts in [2, 3, s.ho()] {
                    with_padded(&s, isa.nr(), |b| pad_image(&s, &nan, b));
                    let got = run(parts);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{s:?} in {parts} parts");
                }
            });
        }
    }
}
