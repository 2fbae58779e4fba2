//! Image folders in the ImageNet layout: `<root>/<split>/<class>/*.{png,jpg,jpeg}`, decoded on
//! the fly.

use std::path::{Path, PathBuf};

use rand_chacha::ChaCha8Rng;

use super::transform::{decode_image, normalize_chw, random_resized_crop_flip, resize_center_crop};
use super::{DataError, Dataset, Normalization};

/// One split of an image folder.
#[derive(Debug, Clone)]
pub struct FolderDataset {
    root: PathBuf,
    split: String,
    files: Vec<PathBuf>,
    labels: Vec<usize>,
    class_names: Vec<String>,
    image_size: usize,
    normalization: Normalization,
    note: String,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        .unwrap_or(false)
}

/// Sorted names of the sub-directories of `dir`.
pub fn class_dirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if entry.path().is_dir() {
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| {
                DataError::format(dir, format!("class folder name {name:?} is not UTF-8"))
            })?;
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

impl FolderDataset {
    /// Lists `<root>/<split>/<class>/*` for the given classes (labels in their order). Files are
    /// sorted by name within each class.
    pub fn open(
        root: &Path,
        split: &str,
        class_names: &[String],
        image_size: usize,
    ) -> Result<Self, DataError> {
        let dir = root.join(split);
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (label, class) in class_names.iter().enumerate() {
            let cdir = dir.join(class);
            let mut these = Vec::new();
            for entry in std::fs::read_dir(&cdir).map_err(|e| DataError::io(&cdir, e))? {
                let entry = entry.map_err(|e| DataError::io(&cdir, e))?;
                let p = entry.path();
                if p.is_file() && is_image(&p) {
                    these.push(p);
                }
            }
            these.sort();
            labels.extend(std::iter::repeat_n(label, these.len()));
            files.extend(these);
        }
        if files.is_empty() {
            return Err(DataError::format(
                &dir,
                "no .png/.jpg/.jpeg images in any class folder",
            ));
        }
        Ok(FolderDataset {
            root: root.to_path_buf(),
            split: split.to_string(),
            files,
            labels,
            class_names: class_names.to_vec(),
            image_size,
            normalization: Normalization::IMAGENET,
            note: String::new(),
        })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Keeps only the images at `indices`, in that order; `note` is added to `describe`.
    pub fn select(mut self, indices: &[usize], note: String) -> Self {
        self.files = indices.iter().map(|&i| self.files[i].clone()).collect();
        self.labels = indices.iter().map(|&i| self.labels[i]).collect();
        self.note = note;
        self
    }
}

impl Dataset for FolderDataset {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }

    fn label(&self, index: usize) -> usize {
        self.labels[index]
    }

    fn normalization(&self) -> Normalization {
        self.normalization
    }

    fn output_shape(&self) -> [usize; 3] {
        [3, self.image_size, self.image_size]
    }

    fn describe(&self) -> String {
        format!(
            "image folder, {} split, {} images{}, {} classes, {}px, {}",
            self.split,
            self.files.len(),
            self.note,
            self.class_names.len(),
            self.image_size,
            self.root.display()
        )
    }

    fn get(
        &self,
        index: usize,
        augment: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize), DataError> {
        let path = self.files.get(index).ok_or(DataError::Index {
            index,
            len: self.files.len(),
        })?;
        let img = decode_image(path)?;
        if img.width() == 0 || img.height() == 0 {
            return Err(DataError::image(path, "image has no pixels"));
        }
        let chw = if augment {
            random_resized_crop_flip(&img, self.image_size, rng)
        } else {
            resize_center_crop(&img, self.image_size)
        };
        let s = self.image_size;
        Ok((
            normalize_chw(&chw, [3, s, s], self.normalization),
            self.labels[index],
        ))
    }
}
