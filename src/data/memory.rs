//! A dataset of small images held in memory as CHW uint8 (CIFAR-10/100, SVHN).

use rand_chacha::ChaCha8Rng;

use super::transform::{CropFlip, augment_small, normalize_chw};
use super::view::{View, ViewKind, wrong_kind};
use super::{DataError, Dataset, Normalization};

/// Small images held in memory as CHW uint8, `shape[0]·shape[1]·shape[2]` bytes per image.
/// Training samples get the MEAL small-image augmentation (padded random crop + flip).
#[derive(Debug, Clone)]
pub struct MemoryDataset {
    description: String,
    shape: [usize; 3],
    images: Vec<u8>,
    labels: Vec<u32>,
    class_names: Vec<String>,
    normalization: Normalization,
}

impl MemoryDataset {
    /// `images` holds `labels.len()` CHW images of `shape`; every label must be below
    /// `class_names.len()`.
    pub fn new(
        description: impl Into<String>,
        shape: [usize; 3],
        images: Vec<u8>,
        labels: Vec<usize>,
        class_names: Vec<String>,
        normalization: Normalization,
    ) -> Result<Self, DataError> {
        let per = shape.iter().product::<usize>();
        if per == 0 || images.len() != per * labels.len() {
            return Err(DataError::Config(format!(
                "in-memory dataset: {} bytes of images for {} labels of shape {:?}",
                images.len(),
                labels.len(),
                shape
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l >= class_names.len())
        {
            return Err(DataError::Config(format!(
                "in-memory dataset: label {l} of image {i} is not below {} classes",
                class_names.len()
            )));
        }
        Ok(MemoryDataset {
            description: description.into(),
            shape,
            images,
            labels: labels.into_iter().map(|l| l as u32).collect(),
            class_names,
            normalization,
        })
    }

    /// The raw CHW uint8 bytes of image `index`.
    pub fn raw_image(&self, index: usize) -> &[u8] {
        let per = self.bytes_per_image();
        &self.images[index * per..(index + 1) * per]
    }

    pub fn bytes_per_image(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn labels(&self) -> impl Iterator<Item = usize> + '_ {
        self.labels.iter().map(|&l| l as usize)
    }

    /// Keeps only the images at `indices` (in that order) and appends `note` to the description.
    pub fn select(mut self, indices: &[usize]) -> Self {
        let per = self.bytes_per_image();
        let mut images = Vec::with_capacity(indices.len() * per);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(&self.images[i * per..(i + 1) * per]);
            labels.push(self.labels[i]);
        }
        self.images = images;
        self.labels = labels;
        self
    }

    pub(crate) fn set_description(&mut self, description: String) {
        self.description = description;
    }
}

impl Dataset for MemoryDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }

    fn label(&self, index: usize) -> usize {
        self.labels[index] as usize
    }

    fn normalization(&self) -> Normalization {
        self.normalization
    }

    fn output_shape(&self) -> [usize; 3] {
        self.shape
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn get(
        &self,
        index: usize,
        augment: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize), DataError> {
        if index >= self.len() {
            return Err(DataError::Index {
                index,
                len: self.len(),
            });
        }
        let img = self.raw_image(index);
        let x = if augment {
            augment_small(img, self.shape, self.normalization, rng)
        } else {
            normalize_chw(img, self.shape, self.normalization)
        };
        Ok((x, self.labels[index] as usize))
    }

    fn get_drawn(
        &self,
        index: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize, View), DataError> {
        let view = View::Padded(CropFlip::draw(rng));
        let (x, label) = self.get_view(index, view)?;
        Ok((x, label, view))
    }

    fn get_view(&self, index: usize, view: View) -> Result<(Vec<f32>, usize), DataError> {
        if index >= self.len() {
            return Err(DataError::Index {
                index,
                len: self.len(),
            });
        }
        let View::Padded(view) = view else {
            return Err(wrong_kind(&self.description, ViewKind::Padded, view));
        };
        if !view.is_valid() {
            return Err(DataError::Config(format!(
                "crop offsets ({}, {}) of image {index} lie outside the padded image",
                view.top, view.left
            )));
        }
        let x = view.apply(self.raw_image(index), self.shape, self.normalization);
        Ok((x, self.labels[index] as usize))
    }
}
