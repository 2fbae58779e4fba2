//! ONNX nodes of the zoo's building blocks, in eval mode: what `forward` computes at inference
//! (BatchNorm on its running statistics), with the same weights. Shapes are checked as they
//! go, so a model that does not fit its declared input is refused while writing.

use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::Tensor;

use super::graph::{Graph, Value, attr_float, attr_int, attr_ints};
use crate::error::{Error, Result};
use crate::models::layers::{BatchNorm2d, ConvBn, ConvBnRelu};

/// A layer (or block, or model) that can append its inference graph.
pub trait ToOnnx {
    /// Appends the nodes computing `self.forward(x)` in eval mode, named under `name` (the
    /// layer's module path), and returns their output.
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value>;
}

fn refuse(name: &str, what: impl std::fmt::Display) -> Error {
    Error::Model(format!("ONNX export: {name}: {what}"))
}

/// The values of a parameter or buffer as float32.
fn floats<const D: usize>(t: Tensor<D>, name: &str) -> Result<Vec<f32>> {
    crate::backend::read::floats(t, name)
}

/// Output side of a convolution or pooling window, or an error when the window does not fit.
fn window_out(name: &str, side: usize, pad: usize, extent: usize, stride: usize) -> Result<usize> {
    (side + pad)
        .checked_sub(extent)
        .map(|r| r / stride + 1)
        .ok_or_else(|| {
            refuse(
                name,
                format!("a window of {extent} does not fit a side of {side} (padding {pad})"),
            )
        })
}

impl ToOnnx for Conv2d {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let [c, h, w] = x.chw(name)?;
        let [out, in_per_group, kh, kw] = self.weight.shape().dims::<4>();
        if c != in_per_group * self.groups {
            return Err(refuse(
                name,
                format!(
                    "expects {} input channels, gets {c}",
                    in_per_group * self.groups
                ),
            ));
        }
        let (top, left, bottom, right) = match self.padding {
            PaddingConfig2d::Explicit(t, l, b, r) => (t, l, b, r),
            PaddingConfig2d::Valid => (0, 0, 0, 0),
            // burn computes "same" padding per input size (asymmetric for even kernels);
            // nothing in the zoo uses it, and a guessed ONNX `auto_pad` could differ.
            PaddingConfig2d::Same => {
                return Err(refuse(
                    name,
                    "a convolution with `Same` padding cannot be written (only explicit or \
                     valid padding)",
                ));
            }
        };
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let oh = window_out(name, h, top + bottom, dh * (kh - 1) + 1, sh)?;
        let ow = window_out(name, w, left + right, dw * (kw - 1) + 1, sw)?;
        let weight = g.weight(
            &format!("{name}.weight"),
            &[out, in_per_group, kh, kw],
            &floats(self.weight.val(), name)?,
        )?;
        let mut inputs = vec![x.name, weight];
        if let Some(bias) = &self.bias {
            inputs.push(g.weight(&format!("{name}.bias"), &[out], &floats(bias.val(), name)?)?);
        }
        let attrs = vec![
            attr_ints("kernel_shape", &[kh, kw]),
            attr_ints("strides", &[sh, sw]),
            attr_ints("pads", &[top, left, bottom, right]),
            attr_ints("dilations", &[dh, dw]),
            attr_int("group", self.groups as i64),
        ];
        Ok(g.node("Conv", name, inputs, attrs, vec![out, oh, ow]))
    }
}

impl ToOnnx for BatchNorm2d {
    /// `BatchNormalization` on the running statistics (inference mode), PyTorch's eval().
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let [c, _, _] = x.chw(name)?;
        let n = self.weight.shape().dims::<1>()[0];
        if c != n {
            return Err(refuse(name, format!("normalises {n} channels, gets {c}")));
        }
        let mut inputs = vec![x.name];
        for (part, t) in [
            ("weight", self.weight.val()),
            ("bias", self.bias.val()),
            ("running_mean", self.running_mean.value()),
            ("running_var", self.running_var.value()),
        ] {
            let tensor = format!("{name}.{part}");
            let values = floats(t, &tensor)?;
            inputs.push(g.weight(&tensor, &[n], &values)?);
        }
        let attrs = vec![attr_float("epsilon", self.epsilon as f32)];
        Ok(g.node("BatchNormalization", name, inputs, attrs, x.dims))
    }
}

impl ToOnnx for ConvBnRelu {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let y = self.conv.to_onnx(g, &format!("{name}.conv"), x)?;
        let y = self.bn.to_onnx(g, &format!("{name}.bn"), y)?;
        Ok(relu(g, &format!("{name}.relu"), y))
    }
}

impl ToOnnx for ConvBn {
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let y = self.conv.to_onnx(g, &format!("{name}.conv"), x)?;
        self.bn.to_onnx(g, &format!("{name}.bn"), y)
    }
}

impl ToOnnx for Linear {
    /// `Gemm(x, W)` with burn's `[in, out]` weight as it is (no transpose), plus the bias.
    fn to_onnx(&self, g: &mut Graph, name: &str, x: Value) -> Result<Value> {
        let [d_in, d_out] = self.weight.shape().dims::<2>();
        if x.dims != [d_in] {
            return Err(refuse(
                name,
                format!(
                    "takes {d_in} features, gets a value of shape {:?} (batch axis left out; \
                     is the input size the one the model was built for?)",
                    x.dims
                ),
            ));
        }
        let weight = g.weight(
            &format!("{name}.weight"),
            &[d_in, d_out],
            &floats(self.weight.val(), name)?,
        )?;
        let mut inputs = vec![x.name, weight];
        if let Some(bias) = &self.bias {
            inputs.push(g.weight(
                &format!("{name}.bias"),
                &[d_out],
                &floats(bias.val(), name)?,
            )?);
        }
        Ok(g.node("Gemm", name, inputs, vec![], vec![d_out]))
    }
}

/// Conv → BN, with the ReLU when `relu` (the zoo's `conv_bn`), for layers held as loose fields.
pub fn conv_bn(
    g: &mut Graph,
    (conv_name, conv): (&str, &Conv2d),
    (bn_name, bn): (&str, &BatchNorm2d),
    x: Value,
    with_relu: bool,
) -> Result<Value> {
    let y = conv.to_onnx(g, conv_name, x)?;
    let y = bn.to_onnx(g, bn_name, y)?;
    Ok(if with_relu {
        relu(g, &format!("{bn_name}.relu"), y)
    } else {
        y
    })
}

/// BN → ReLU (pre-activation units).
pub fn bn_relu(g: &mut Graph, name: &str, bn: &BatchNorm2d, x: Value) -> Result<Value> {
    let y = bn.to_onnx(g, name, x)?;
    Ok(relu(g, &format!("{name}.relu"), y))
}

pub fn relu(g: &mut Graph, name: &str, x: Value) -> Value {
    g.node("Relu", name, vec![x.name], vec![], x.dims)
}

pub fn add(g: &mut Graph, name: &str, a: Value, b: Value) -> Result<Value> {
    if a.dims != b.dims {
        return Err(refuse(
            name,
            format!("adds values of shapes {:?} and {:?}", a.dims, b.dims),
        ));
    }
    Ok(g.node("Add", name, vec![a.name, b.name], vec![], a.dims))
}

/// `Tensor::cat(parts, 1)`.
pub fn concat_channels(g: &mut Graph, name: &str, parts: Vec<Value>) -> Result<Value> {
    let mut channels = 0;
    let mut spatial = None;
    for p in &parts {
        let [c, h, w] = p.chw(name)?;
        if *spatial.get_or_insert((h, w)) != (h, w) {
            return Err(refuse(name, "concatenates maps of different sizes"));
        }
        channels += c;
    }
    let (h, w) = spatial.ok_or_else(|| refuse(name, "concatenates nothing"))?;
    let inputs = parts.into_iter().map(|p| p.name).collect();
    Ok(g.node(
        "Concat",
        name,
        inputs,
        vec![attr_int("axis", 1)],
        vec![channels, h, w],
    ))
}

/// `x.narrow(1, start, len)`.
pub fn narrow_channels(
    g: &mut Graph,
    name: &str,
    x: Value,
    start: usize,
    len: usize,
) -> Result<Value> {
    let [c, h, w] = x.chw(name)?;
    if start + len > c {
        return Err(refuse(
            name,
            format!("takes channels {start}..{} of {c}", start + len),
        ));
    }
    let starts = g.ints(&format!("{name}.starts"), &[start as i64]);
    let ends = g.ints(&format!("{name}.ends"), &[(start + len) as i64]);
    let axes = g.ints(&format!("{name}.axes"), &[1]);
    Ok(g.node(
        "Slice",
        name,
        vec![x.name, starts, ends, axes],
        vec![],
        vec![len, h, w],
    ))
}

/// The CIFAR ResNets' option-A shortcut: `x[:, :, ::stride, ::stride]` between `pad` zero
/// channels on either side.
pub fn shortcut_a(g: &mut Graph, name: &str, x: Value, stride: usize, pad: usize) -> Result<Value> {
    let [c, h, w] = x.chw(name)?;
    let mut y = x;
    if stride > 1 {
        let starts = g.ints(&format!("{name}.starts"), &[0, 0]);
        let ends = g.ints(&format!("{name}.ends"), &[i64::MAX, i64::MAX]);
        let axes = g.ints(&format!("{name}.axes"), &[2, 3]);
        let steps = g.ints(&format!("{name}.steps"), &[stride as i64, stride as i64]);
        let dims = vec![c, h.div_ceil(stride), w.div_ceil(stride)];
        y = g.node(
            "Slice",
            &format!("{name}.subsample"),
            vec![y.name, starts, ends, axes, steps],
            vec![],
            dims,
        );
    }
    if pad > 0 {
        // `pads` lists the starts of every axis, then the ends: (B, C, H, W).
        let p = pad as i64;
        let pads = g.ints(&format!("{name}.pads"), &[0, p, 0, 0, 0, p, 0, 0]);
        let dims = vec![c + 2 * pad, y.dims[1], y.dims[2]];
        y = g.node(
            "Pad",
            &format!("{name}.pad"),
            vec![y.name, pads],
            vec![],
            dims,
        );
    }
    Ok(y)
}

/// `F.max_pool2d(x, kernel, stride, padding)` (floor mode; padding never wins the max).
pub fn max_pool(
    g: &mut Graph,
    name: &str,
    x: Value,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Value> {
    let [c, h, w] = x.chw(name)?;
    let oh = window_out(name, h, 2 * padding, kernel, stride)?;
    let ow = window_out(name, w, 2 * padding, kernel, stride)?;
    let attrs = vec![
        attr_ints("kernel_shape", &[kernel, kernel]),
        attr_ints("strides", &[stride, stride]),
        attr_ints("pads", &[padding; 4]),
    ];
    Ok(g.node("MaxPool", name, vec![x.name], attrs, vec![c, oh, ow]))
}

/// `F.avg_pool2d(x, kernel)`: stride `kernel`, no padding.
pub fn avg_pool(g: &mut Graph, name: &str, x: Value, kernel: usize) -> Result<Value> {
    let [c, h, w] = x.chw(name)?;
    let oh = window_out(name, h, 0, kernel, kernel)?;
    let ow = window_out(name, w, 0, kernel, kernel)?;
    let attrs = vec![
        attr_ints("kernel_shape", &[kernel, kernel]),
        attr_ints("strides", &[kernel, kernel]),
    ];
    Ok(g.node("AveragePool", name, vec![x.name], attrs, vec![c, oh, ow]))
}

/// `(B, C, H, W)` → `(B, C·H·W)` in PyTorch's `view(B, -1)` order.
pub fn flatten(g: &mut Graph, name: &str, x: Value) -> Result<Value> {
    let [c, h, w] = x.chw(name)?;
    Ok(g.node(
        "Flatten",
        name,
        vec![x.name],
        vec![attr_int("axis", 1)],
        vec![c * h * w],
    ))
}

/// The mean over H and W, kept as `(B, C, 1, 1)` (squeeze-excitation, a 1×1 conv head).
pub fn global_avg_pool_keep(g: &mut Graph, name: &str, x: Value) -> Result<Value> {
    let [c, _, _] = x.chw(name)?;
    Ok(g.node(
        "GlobalAveragePool",
        name,
        vec![x.name],
        vec![],
        vec![c, 1, 1],
    ))
}

/// The mean over H and W, flattened to `(B, C)` (`x.mean_dim(3).mean_dim(2).flatten(1, 3)`).
pub fn global_avg_pool(g: &mut Graph, name: &str, x: Value) -> Result<Value> {
    let pooled = global_avg_pool_keep(g, name, x)?;
    flatten(g, &format!("{name}.flatten"), pooled)
}

/// The max over H and W, flattened to `(B, C)`.
pub fn global_max_pool(g: &mut Graph, name: &str, x: Value) -> Result<Value> {
    let [c, _, _] = x.chw(name)?;
    let pooled = g.node("GlobalMaxPool", name, vec![x.name], vec![], vec![c, 1, 1]);
    flatten(g, &format!("{name}.flatten"), pooled)
}

/// `x · factor`.
pub fn scale(g: &mut Graph, name: &str, x: Value, factor: f32) -> Result<Value> {
    let factor = g.weight(&format!("{name}.factor"), &[], &[factor])?;
    Ok(g.node("Mul", name, vec![x.name, factor], vec![], x.dims))
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::Conv2dConfig;

    use super::*;

    fn input(g: &mut Graph) -> Value {
        g.input(&[3, 8, 8])
    }

    #[test]
    fn same_padding_is_refused_by_name() {
        let device = crate::backend::device();
        let conv = Conv2dConfig::new([3, 4], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device);
        let mut g = Graph::default();
        let x = input(&mut g);
        let e = conv
            .to_onnx(&mut g, "stem.conv", x)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stem.conv") && e.contains("`Same` padding"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_weights_are_refused_by_name() {
        let mut g = Graph::default();
        let e = g
            .weight("fc.weight", &[2], &[1.0, f32::NAN])
            .unwrap_err()
            .to_string();
        assert!(e.contains("fc.weight") && e.contains("non-finite"), "{e}");
    }

    #[test]
    fn shapes_follow_the_layers() {
        let device = crate::backend::device();
        let conv = Conv2dConfig::new([3, 4], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let mut g = Graph::default();
        let x = input(&mut g);
        let y = conv.to_onnx(&mut g, "c", x.clone()).unwrap();
        assert_eq!(y.dims, [4, 4, 4]);
        let y = max_pool(&mut g, "p", y, 3, 2, 1).unwrap();
        assert_eq!(y.dims, [4, 2, 2]);
        let y = shortcut_a(&mut g, "s", y, 2, 2).unwrap();
        assert_eq!(y.dims, [8, 1, 1]);
        let e = avg_pool(&mut g, "a", y, 4).unwrap_err().to_string();
        assert!(
            e.contains("a: a window of 4 does not fit a side of 1"),
            "{e}"
        );
        // Names stay unique when a layer name repeats.
        let r1 = relu(&mut g, "r", x.clone());
        let r2 = relu(&mut g, "r", x);
        assert_ne!(r1.name, r2.name);
    }
}
