//! What a benchmark feeds its models: square images of one side and a class count, by default
//! the architecture's own (CIFAR forms 32×32 and 10 classes, ImageNet forms 224×224 and 1000),
//! and the check that a model can take a side it was not built for.

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::models::{Form, Net, count_macs};

/// CIFAR-10's shape.
pub const CIFAR: Input = Input {
    size: 32,
    classes: 10,
};

/// ImageNet's shape at the usual evaluation side.
pub const IMAGENET: Input = Input {
    size: 224,
    classes: 1000,
};

/// Images of `size`×`size` with 3 channels, labels in `0..classes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    pub size: usize,
    pub classes: usize,
}

impl Input {
    /// The input `arch` is built for.
    pub fn natural(arch: &str) -> Result<Self> {
        Ok(match crate::models::arch_info(arch)?.form {
            Form::Cifar => CIFAR,
            Form::ImageNet => IMAGENET,
        })
    }

    /// This input with its side replaced by `size` (from `--image-size`), if one is given.
    pub fn with_size(self, size: Option<usize>) -> Result<Self> {
        match size {
            None => Ok(self),
            Some(0) => Err(Error::Config(
                "bench: --image-size must be at least 1 (pixels per side)".into(),
            )),
            Some(size) => Ok(Self { size, ..self }),
        }
    }

    /// A seeded random batch of `(batch, 3, size, size)` standard-normal images and cycling
    /// labels.
    pub fn random_batch(&self, batch: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let x = crate::backend::unseeded(|| {
            Tensor::<4>::random(
                [batch, 3, self.size, self.size],
                Distribution::Normal(0.0, 1.0),
                device,
            )
        });
        let labels: Vec<i64> = (0..batch as i64).map(|i| i % self.classes as i64).collect();
        let y = Tensor::from_data(TensorData::new(labels, [batch]), device);
        (x, y)
    }

    /// Forward MACs per image of `net` (named `arch`) at this input, from one forward pass of
    /// a blank image. A model whose pooling or classifier is fixed to another side fails inside
    /// that pass; the failure becomes an error naming the side instead of a panic mid-benchmark.
    pub fn probe(&self, arch: &str, net: &Net) -> Result<u64> {
        let s = self.size;
        let macs = crate::backend::quietly(|| count_macs(net, [1, 3, s, s])).map_err(|why| {
            Error::Config(format!(
                "bench: --image-size {s}: {arch} cannot take {s}×{s} images ({why})"
            ))
        })?;
        if macs == 0 {
            return Err(Error::Config(format!(
                "bench: --image-size {s}: {arch} does no work on {s}×{s} images"
            )));
        }
        Ok(macs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_input_follows_the_form() {
        assert_eq!(Input::natural("resnet20").unwrap(), CIFAR);
        assert_eq!(Input::natural("resnet50").unwrap(), IMAGENET);
        assert!(Input::natural("resnet9000").is_err());
        let wide = IMAGENET.with_size(Some(380)).unwrap();
        assert_eq!((wide.size, wide.classes), (380, 1000));
        assert_eq!(CIFAR.with_size(None).unwrap(), CIFAR);
        assert!(CIFAR.with_size(Some(0)).is_err());
    }
}
