//! The geometry of a 2-d convolution, shared by every lowering (`conv.rs`, `winograd.rs`).

use super::simd::MR;

/// Geometry of one convolution; the weight is `[cout, cin/groups, kh, kw]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// `(begin, end)` per spatial axis, as burn's `ConvOptions`.
    pub pad: [(usize, usize); 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvShape {
    /// A square `k×k` convolution of `hw×hw` images, the same stride and padding on both axes,
    /// no dilation, one group (the layers of the zoo's ResNets).
    pub fn square(
        batch: usize,
        (cin, hw, cout): (usize, usize, usize),
        (k, stride, pad): (usize, usize, usize),
    ) -> ConvShape {
        ConvShape {
            batch,
            cin,
            h: hw,
            w: hw,
            cout,
            kh: k,
            kw: k,
            stride: [stride, stride],
            pad: [(pad, pad), (pad, pad)],
            dilation: [1, 1],
            groups: 1,
        }
    }

    pub fn ho(&self) -> usize {
        (self.h + self.pad[0].0 + self.pad[0].1 - self.dilation[0] * (self.kh - 1) - 1)
            / self.stride[0]
            + 1
    }

    pub fn wo(&self) -> usize {
        (self.w + self.pad[1].0 + self.pad[1].1 - self.dilation[1] * (self.kw - 1) - 1)
            / self.stride[1]
            + 1
    }

    pub(super) fn cin_g(&self) -> usize {
        self.cin / self.groups
    }

    pub(super) fn cout_g(&self) -> usize {
        self.cout / self.groups
    }

    /// Taps per output channel: the gemm's reduction length.
    pub(super) fn k(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }

    pub(super) fn hp(&self) -> usize {
        self.h + self.pad[0].0 + self.pad[0].1
    }

    pub(super) fn wp(&self) -> usize {
        self.w + self.pad[1].0 + self.pad[1].1
    }

    /// Channels that split into the groups, a kernel, strides and dilations of at least one,
    /// and at least one output position: what every lowering assumes.
    pub(super) fn well_formed(&self) -> bool {
        self.groups > 0
            && self.cin.is_multiple_of(self.groups)
            && self.cout.is_multiple_of(self.groups)
            && self.kh > 0
            && self.kw > 0
            && self.stride.iter().all(|&s| s > 0)
            && self.dilation.iter().all(|&d| d > 0)
            && self.hp() > self.dilation[0] * (self.kh - 1)
            && self.wp() > self.dilation[1] * (self.kw - 1)
    }

    /// Whether these kernels handle the shape; depthwise ones go to [`super::depthwise`], the
    /// rest (other thin groups, or padding wider than the kernel) stay with burn's own
    /// implementation.
    pub fn supported(&self) -> bool {
        // Thin groups (depthwise) would leave most of each micro-tile empty.
        self.well_formed()
            && (self.groups == 1 || (self.cout_g() >= MR && self.cin_g() >= MR))
            && self.pad[0].0.max(self.pad[0].1) <= self.dilation[0] * (self.kh - 1)
            && self.pad[1].0.max(self.pad[1].1) <= self.dilation[1] * (self.kw - 1)
    }
}
