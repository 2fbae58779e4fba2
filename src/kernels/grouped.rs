//! The forward pass of grouped 2-d convolutions with narrow groups: SENet-154's and
//! SE-ResNeXt's 3×3 layers, 64 groups of 2–16 input channels.
//!
//! [`super::conv`]'s direct lowering runs such a layer one image per task, padding every
//! channel of the image and then walking the groups, and writes the epilogue row by row: at
//! 14×14 a third of the layer's time went to 14-value epilogue rows and to the padding, and
//! groups of two input channels were left to burn-flex altogether (1.2 GMAC/s, a tenth of
//! SENet-154's eval forward). Here a task takes one `(image, group)`: it copies the group's
//! channels into zero-padded phase planes (the layout of [`super::depthwise`]), computes the
//! group's output channels as one flat row each with the gemm micro-kernel of
//! [`super::simd`] over the `cin_g·kh·kw` shifted rows (the micro-kernel storing the affine and
//! ReLU of the epilogue, a hard-swish or SiLU following over each row while it is in cache),
//! and drops the excess columns on the way out. Batch 1 has as many
//! tasks as groups, so it spreads over every core without splitting any product.
//!
//! Each output value is the micro-kernel's sum over the taps in order `(ci, ky, kx)`, whatever
//! the batch or the thread count. The backward passes stay with [`super::conv`] (or burn-flex
//! where it leaves the shape).

use rayon::prelude::*;

use super::conv::{Epilogue, pack_weight};
use super::copy::copy_row_to;
use super::depthwise::{self, OutPtr, Plane};
use super::gemm::{Walk, gemm_rows_to};
use super::shape::ConvShape;
use super::simd::{self, RowAffine};

/// Input channels per group up to which these kernels take a layer; wider groups fill
/// [`super::conv`]'s gemm tiles (ResNeXt-29 2×64d's groups of 64).
const MAX_CIN_G: usize = 16;

/// Whether these kernels handle the shape: two groups or more of at most [`MAX_CIN_G`] input
/// channels, not depthwise, no dilation, an output of at least one position.
pub fn applies(s: &ConvShape) -> bool {
    s.well_formed()
        && s.groups > 1
        && s.cin_g() <= MAX_CIN_G
        && s.dilation == [1, 1]
        && !depthwise::applies(s)
}

/// `y = conv(x, w)`, `x: [batch, cin, h, w]`, `w: [cout, cin/groups, kh, kw]`, result
/// `[batch, cout, ho, wo]`.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    forward_with(s, x, w, None)
}

/// [`forward`] followed by `act(y · scale[c] + shift[c])` per output channel, over each
/// channel's products while they are in cache; the values are those of [`forward`] followed by
/// the affine and activation kernels.
pub fn forward_affine(s: &ConvShape, x: &[f32], w: &[f32], epi: Epilogue) -> Vec<f32> {
    assert_eq!(epi.scale.len(), s.cout, "grouped epilogue: scale length");
    assert_eq!(epi.shift.len(), s.cout, "grouped epilogue: shift length");
    forward_with(s, x, w, Some(epi))
}

fn forward_with(s: &ConvShape, x: &[f32], w: &[f32], epi: Option<Epilogue>) -> Vec<f32> {
    assert!(applies(s), "not a narrow grouped convolution {s:?}");
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    assert_eq!(w.len(), s.cout * s.k());
    let isa = simd::isa();
    let (ho, wo) = (s.ho(), s.wo());
    let len = s.batch * s.cout * ho * wo;
    let mut y: Vec<f32> = Vec::with_capacity(len);
    if len == 0 {
        return y;
    }
    let (cin_g, cout_g) = (s.cin_g(), s.cout_g());
    let q = Plane::new(s);
    let cols = ho * q.wq;
    let ldc = cols.div_ceil(isa.nr()) * isa.nr();
    // Channel `ci` of the group sits `ci · per` into the buffer; the last one carries the
    // slack the micro-kernel reads past the plane (up to the last tile's end).
    let per = q.phases();
    let buf_len = (cin_g - 1) * per + q.len_for(ldc);
    let plane_offs = q.offsets();
    let offs: Vec<usize> = (0..cin_g)
        .flat_map(|ci| plane_offs.iter().map(move |&o| ci * per + o))
        .collect();
    let packed: Vec<_> = (0..s.groups).map(|g| pack_weight(s, w, g)).collect();
    let rows = packed[0].layout.rows;
    // The affine (and ReLU) is stored by the micro-kernel; its scale and shift per group,
    // padded like the panels' rows.
    let padded = |v: &[f32]| -> Vec<f32> {
        let mut out = vec![0f32; s.groups * rows];
        for (g, dst) in out.chunks_exact_mut(rows).enumerate() {
            dst[..cout_g].copy_from_slice(&v[g * cout_g..(g + 1) * cout_g]);
        }
        out
    };
    let affine = epi.map(|e| (padded(e.scale), padded(e.shift), e.act.split()));
    let out = OutPtr(y.spare_capacity_mut().as_mut_ptr());
    let units = s.batch * s.groups;
    let in_plane = s.h * s.w;
    // A task's buffers are allocated and zeroed once per rayon split.
    let min_len = units.div_ceil(8 * rayon::current_num_threads()).max(1);
    (0..units)
        .into_par_iter()
        .with_min_len(min_len)
        .for_each_init(
            || (vec![0f32; buf_len], vec![0f32; rows * ldc]),
            |(buf, prod), unit| {
                let (i, g) = (unit / s.groups, unit % s.groups);
                let c0 = i * s.cin + g * cin_g;
                for ci in 0..cin_g {
                    q.fill(&x[(c0 + ci) * in_plane..][..in_plane], &mut buf[ci * per..]);
                }
                let a = &packed[g];
                let epi = affine.as_ref().map(|(scale, shift, (relu, _))| RowAffine {
                    scale: &scale[g * rows..(g + 1) * rows],
                    shift: &shift[g * rows..(g + 1) * rows],
                    relu: *relu,
                    act: None,
                });
                // SAFETY: `prod` holds `rows` rows of `ldc ≥` the last tile's end.
                unsafe {
                    let (a, c) = ((&a.data[..], a.layout), prod.as_mut_ptr());
                    gemm_rows_to(
                        isa,
                        a,
                        0..rows,
                        s.k(),
                        buf,
                        &offs,
                        c,
                        ldc,
                        cols,
                        false,
                        epi,
                        Walk::InPlace,
                    )
                };
                for co in 0..cout_g {
                    let c = g * cout_g + co;
                    let row = &mut prod[co * ldc..co * ldc + cols];
                    if let Some((_, _, (_, Some(act)))) = &affine {
                        super::activation::forward_row(*act, row);
                    }
                    let at = (i * s.cout + c) * ho * wo;
                    for oy in 0..ho {
                        // SAFETY: row `oy` of channel `c` of image `i` lies inside `y`'s
                        // capacity (`len`), and the group's channels belong to this task alone.
                        unsafe { copy_row_to(out.at(at + oy * wo), &row[oy * q.wq..][..wo]) };
                    }
                }
            },
        );
    // SAFETY: every (image, group), so all `len` values, was written above.
    unsafe { y.set_len(len) };
    y
}
