//! The parameter-free "option A" shortcut of the CIFAR ResNets (He et al. 2016, §4.2): where a
//! stage halves the map and doubles the channels, the identity is subsampled (`x[:, :, ::2, ::2]`)
//! and padded with zero channels. As burn ops that was a 1×1 max-pool (whose backward scatters
//! through an index tensor, one scalar at a time) and a concatenation with two zero tensors; here
//! it is one pass each way.

use rayon::prelude::*;

/// `[batch, channels, h, w]` of the input, the subsampling stride and the zero channels on each
/// side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortcutShape {
    pub batch: usize,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ShortcutShape {
    pub fn ho(&self) -> usize {
        self.h.div_ceil(self.stride)
    }

    pub fn wo(&self) -> usize {
        self.w.div_ceil(self.stride)
    }

    pub fn out_channels(&self) -> usize {
        self.channels + 2 * self.pad
    }
}

/// `[batch, channels + 2·pad, ho, wo]`.
pub fn forward(s: &ShortcutShape, x: &[f32]) -> Vec<f32> {
    assert!(s.stride > 0);
    assert_eq!(x.len(), s.batch * s.channels * s.h * s.w);
    let (ho, wo) = (s.ho(), s.wo());
    let out_image = s.out_channels() * ho * wo;
    let mut y = vec![0f32; s.batch * out_image];
    if out_image == 0 {
        return y;
    }
    y.par_chunks_mut(out_image).enumerate().for_each(|(n, yi)| {
        for c in 0..s.channels {
            let src = &x[(n * s.channels + c) * s.h * s.w..][..s.h * s.w];
            let dst = &mut yi[(s.pad + c) * ho * wo..][..ho * wo];
            for (oy, drow) in dst.chunks_exact_mut(wo).enumerate() {
                let srow = &src[oy * s.stride * s.w..][..s.w];
                for (d, v) in drow.iter_mut().zip(srow.iter().step_by(s.stride)) {
                    *d = *v;
                }
            }
        }
    });
    y
}

/// The input gradient: `grad`'s middle channels back at the sampled positions, zero elsewhere.
pub fn backward(s: &ShortcutShape, grad: &[f32]) -> Vec<f32> {
    assert!(s.stride > 0);
    let (ho, wo) = (s.ho(), s.wo());
    let out_image = s.out_channels() * ho * wo;
    assert_eq!(grad.len(), s.batch * out_image);
    let in_image = s.channels * s.h * s.w;
    let mut dx = vec![0f32; s.batch * in_image];
    if in_image == 0 {
        return dx;
    }
    dx.par_chunks_mut(in_image)
        .enumerate()
        .for_each(|(n, dxi)| {
            for c in 0..s.channels {
                let src = &grad[n * out_image + (s.pad + c) * ho * wo..][..ho * wo];
                let dst = &mut dxi[c * s.h * s.w..][..s.h * s.w];
                for (oy, srow) in src.chunks_exact(wo).enumerate() {
                    let drow = &mut dst[oy * s.stride * s.w..][..s.w];
                    for (d, v) in drow.iter_mut().step_by(s.stride).zip(srow) {
                        *d = *v;
                    }
                }
            }
        });
    dx
}
