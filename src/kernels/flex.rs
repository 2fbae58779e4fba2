//! burn-flex's side of [`super::ConvKernels`]: `f32` tensors go through [`super::conv`], other
//! dtypes and unsupported shapes through burn-flex's own implementation.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::{Bytes, DType, Flex, TensorMetadata};

use super::ConvKernels;
use super::conv::{self, ConvShape};

fn shape_of(x: &FlexTensor, w: &FlexTensor, o: &ConvOptions<2>) -> Option<ConvShape> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return None;
    }
    let xs = x.shape();
    let ws = w.shape();
    if xs.num_dims() != 4 || ws.num_dims() != 4 {
        return None;
    }
    let s = ConvShape {
        batch: xs[0],
        cin: xs[1],
        h: xs[2],
        w: xs[3],
        cout: ws[0],
        kh: ws[2],
        kw: ws[3],
        stride: o.stride,
        pad: o.padding,
        dilation: o.dilation,
        groups: o.groups,
    };
    (s.groups > 0 && ws[1] * s.groups == s.cin && s.supported()).then_some(s)
}

fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) if t.is_contiguous() && t.layout().start_offset() == 0 => {
            std::borrow::Cow::Borrowed(&s[..t.layout().num_elements()])
        }
        _ => std::borrow::Cow::Owned(t.to_contiguous().storage::<f32>().to_vec()),
    }
}

fn tensor(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape.into()),
        DType::F32,
    )
}

impl ConvKernels for Flex {
    fn meal_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        let Some(s) = shape_of(&x, &weight, &options) else {
            return Flex::conv2d(x, weight, None, options);
        };
        let y = conv::forward(&s, &values(&x), &values(&weight));
        tensor(y, [s.batch, s.cout, s.ho(), s.wo()])
    }

    fn meal_conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(s) = shape_of(&x, &weight, &options) else {
            return Flex::conv2d_x_backward(x, weight, output_grad, options);
        };
        let dx = conv::backward_input(&s, &values(&output_grad), &values(&weight));
        tensor(dx, [s.batch, s.cin, s.h, s.w])
    }

    fn meal_conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(s) = shape_of(&x, &weight, &options) else {
            return Flex::conv2d_weight_backward(x, weight, output_grad, options);
        };
        let dw = conv::backward_weight(&s, &values(&x), &values(&output_grad));
        tensor(dw, [s.cout, s.cin / s.groups, s.kh, s.kw])
    }
}
