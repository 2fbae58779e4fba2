//! TensorFlow "same" padding, as timm's `Conv2dSame` / `pad_same` computes it for the `tf_`
//! models: the total padding makes `out = ceil(in / stride)`, and where it is odd the extra
//! row or column goes at the bottom or right. It depends on the input size, so a strided
//! convolution pads at run time; a stride-1 convolution's "same" padding is the static `k/2` on
//! every side (timm builds a plain `Conv2d` there), which the layer itself carries.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::ops::ConvOptions;

/// `(before, after)` padding of one axis of length `size` for a kernel `kernel`, stride
/// `stride`, dilation `dilation`.
pub fn same_padding(size: usize, kernel: usize, stride: usize, dilation: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let needed =
        (out.saturating_sub(1) * stride + (kernel - 1) * dilation + 1).saturating_sub(size);
    (needed / 2, needed - needed / 2)
}

/// The options a "same"-padded `conv` runs with on an input of `h × w` (computed when the layer
/// is strided, its own static padding otherwise), or `None` for a layer
/// that does not pad explicitly (the zoo's all do).
pub fn same_options(conv: &Conv2d, h: usize, w: usize) -> Option<ConvOptions<2>> {
    let padding = if conv.stride == [1, 1] {
        let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else {
            return None;
        };
        [(top, bottom), (left, right)]
    } else {
        let [_, _, kh, kw] = conv.weight.shape().dims::<4>();
        [
            same_padding(h, kh, conv.stride[0], conv.dilation[0]),
            same_padding(w, kw, conv.stride[1], conv.dilation[1]),
        ]
    };
    Some(ConvOptions::new_with_padding(
        conv.stride,
        padding,
        conv.dilation,
        conv.groups,
    ))
}

#[cfg(test)]
mod tests {
    use super::same_padding;

    #[test]
    fn matches_tensorflow() {
        // 224 → 112 with a 3×3 stride 2: one row of padding, at the bottom.
        assert_eq!(same_padding(224, 3, 2, 1), (0, 1));
        // 97 (odd) → 49: 2 rows, split evenly.
        assert_eq!(same_padding(97, 3, 2, 1), (1, 1));
        assert_eq!(same_padding(97, 5, 2, 1), (2, 2));
        assert_eq!(same_padding(224, 5, 2, 1), (1, 2));
        assert_eq!(same_padding(7, 3, 1, 1), (1, 1));
        // A map smaller than the kernel still pads to one output.
        assert_eq!(same_padding(1, 5, 2, 1), (2, 2));
    }
}
