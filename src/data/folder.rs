//! Image folders in the ImageNet layout: `<root>/<split>/<class>/*.{png,jpg,jpeg}`, decoded on
//! the fly.

use std::path::{Path, PathBuf};

use image::RgbImage;
use rand_chacha::ChaCha8Rng;

use super::transform::{decode_image, photo_drawn, photo_sample};
use super::view::{View, ViewKind, wrong_kind};
use super::{DataError, Dataset, InputSettings, Normalization};

/// One split of an image folder.
#[derive(Debug, Clone)]
pub struct FolderDataset {
    root: PathBuf,
    split: String,
    files: Vec<PathBuf>,
    labels: Vec<usize>,
    class_names: Vec<String>,
    image_size: usize,
    input: InputSettings,
    skip_corrupt: bool,
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
            if these.is_empty() {
                return Err(DataError::format(
                    &cdir,
                    "class folder holds no .png/.jpg/.jpeg images",
                ));
            }
            these.sort();
            labels.extend(std::iter::repeat_n(label, these.len()));
            files.extend(these);
        }
        Self::from_files(root, split, files, labels, class_names, image_size)
    }

    /// A flat `<root>/<split>/` labelled by `entries` (`(file name, label)`, see
    /// [`super::val_labels`]); a listed file that is missing is an error naming it.
    pub fn open_flat(
        root: &Path,
        split: &str,
        entries: &[(String, usize)],
        class_names: &[String],
        image_size: usize,
    ) -> Result<Self, DataError> {
        let dir = root.join(split);
        let mut files = Vec::with_capacity(entries.len());
        let mut labels = Vec::with_capacity(entries.len());
        for (name, label) in entries {
            let p = dir.join(name);
            if !p.is_file() {
                return Err(DataError::io(
                    &p,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "listed in the labels file but not found",
                    ),
                ));
            }
            files.push(p);
            labels.push(*label);
        }
        Self::from_files(root, split, files, labels, class_names, image_size)
    }

    fn from_files(
        root: &Path,
        split: &str,
        files: Vec<PathBuf>,
        labels: Vec<usize>,
        class_names: &[String],
        image_size: usize,
    ) -> Result<Self, DataError> {
        if files.is_empty() {
            return Err(DataError::format(
                root.join(split),
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
            input: InputSettings::default(),
            skip_corrupt: false,
            normalization: Normalization::IMAGENET,
            note: String::new(),
        })
    }

    /// Sets the resize settings of both transforms (crop fraction of the evaluation crop; the
    /// interpolation of both).
    pub fn with_input(mut self, input: InputSettings) -> Self {
        self.input = input;
        self
    }

    /// Leaves undecodable images out of their batch instead of failing (see
    /// [`Dataset::skips_corrupt`]).
    pub fn with_skip_corrupt(mut self, skip: bool) -> Self {
        self.skip_corrupt = skip;
        self
    }

    pub fn input(&self) -> InputSettings {
        self.input
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn decode(&self, index: usize) -> Result<(&Path, RgbImage), DataError> {
        let path = self.files.get(index).ok_or(DataError::Index {
            index,
            len: self.files.len(),
        })?;
        Ok((path, decode_image(path)?))
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

    fn input_settings(&self) -> Option<InputSettings> {
        Some(self.input)
    }

    fn skips_corrupt(&self) -> bool {
        self.skip_corrupt
    }

    fn describe(&self) -> String {
        format!(
            "image folder, {} split, {} images{}, {} classes, {}px ({}, crop {}), {}",
            self.split,
            self.files.len(),
            self.note,
            self.class_names.len(),
            self.image_size,
            self.input.interpolation.name(),
            self.input.crop_pct,
            self.root.display()
        )
    }

    fn get(
        &self,
        index: usize,
        augment: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize), DataError> {
        let (path, img) = self.decode(index)?;
        Ok((
            photo_sample(
                &img,
                path,
                augment,
                self.image_size,
                self.input,
                self.normalization,
                rng,
            )?,
            self.labels[index],
        ))
    }

    fn get_drawn(
        &self,
        index: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize, View), DataError> {
        let (path, img) = self.decode(index)?;
        let (x, view) = photo_drawn(
            &img,
            path,
            self.image_size,
            self.input,
            self.normalization,
            rng,
        )?;
        Ok((x, self.labels[index], View::Box(view)))
    }

    fn get_view(&self, index: usize, view: View) -> Result<(Vec<f32>, usize), DataError> {
        let View::Box(view) = view else {
            return Err(wrong_kind(&self.describe(), ViewKind::Box, view));
        };
        let (path, img) = self.decode(index)?;
        let x = view.sample(
            &img,
            path,
            self.image_size,
            self.input.interpolation,
            self.normalization,
        )?;
        Ok((x, self.labels[index]))
    }
}
