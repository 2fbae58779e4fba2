//! The data pipeline: dataset readers (CIFAR-10/100 binary and python, SVHN MAT files, image
//! folders), the MEAL reference augmentation, and a deterministic prefetching batch loader.
//!
//! Nothing here depends on the tensor library: samples and batches are plain `Vec<f32>` in
//! CHW / NCHW order; the training code turns them into tensors.

pub mod cifar;
pub mod download;
mod error;
pub mod folder;
pub mod input_settings;
#[cfg(feature = "turbojpeg")]
pub mod jpeg;
pub mod loader;
pub mod mat;
pub mod memory;
pub mod pickle;
pub mod resample;
pub mod transform;
pub mod val_labels;
pub mod view;
pub mod webdataset;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use error::DataError;
pub use folder::FolderDataset;
pub use input_settings::{InputSettings, PretrainedInput, pretrained_input};
pub use loader::{Batch, Epoch, Loader, LoaderConfig, ViewTable, epoch_order, sample_rng};
pub use memory::MemoryDataset;
pub use resample::Interpolation;
pub use transform::{CropFlip, EvalResize, load_image_for_eval, load_image_for_eval_with};
pub use view::{CropBox, View, ViewKind};

/// Per-channel mean and standard deviation of `Normalize`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// The values of the MEAL reference code for CIFAR-10.
    pub const CIFAR10: Self = Normalization {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2023, 0.1994, 0.2010],
    };
    pub const CIFAR100: Self = Normalization {
        mean: [0.5071, 0.4865, 0.4409],
        std: [0.2673, 0.2564, 0.2762],
    };
    pub const SVHN: Self = Normalization {
        mean: [0.4377, 0.4438, 0.4728],
        std: [0.1980, 0.2010, 0.1970],
    };
    pub const IMAGENET: Self = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
}

/// A dataset split of labelled images.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn num_classes(&self) -> usize;
    fn class_names(&self) -> Vec<String>;
    fn label(&self, index: usize) -> usize;
    fn normalization(&self) -> Normalization;
    /// [channels, height, width] of what `get` returns (3,32,32 for CIFAR/SVHN).
    fn output_shape(&self) -> [usize; 3];
    /// Whether samples that cannot be decoded are left out of their batch (and reported in
    /// [`Batch::skipped`]) instead of ending the epoch with an error.
    fn skips_corrupt(&self) -> bool {
        false
    }
    /// The resize settings of a dataset of photos (image folders); `None` for 32×32 datasets,
    /// whose images are used whole.
    fn input_settings(&self) -> Option<InputSettings> {
        None
    }
    /// One line for logs, e.g. "CIFAR-10 binary, train split, 50000 images, /path/to/dir".
    fn describe(&self) -> String;
    /// Decoded image, augmented when `augment` (training transform) else the eval transform,
    /// as normalised CHW f32, plus its label. All randomness comes from `rng`.
    fn get(
        &self,
        index: usize,
        augment: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize), DataError>;
    /// The training transform (as `get` with `augment`, from the same draws) with the view it
    /// drew, for a soft-label store to record. Datasets without recordable views refuse.
    fn get_drawn(
        &self,
        index: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize, View), DataError> {
        let _ = (index, rng);
        Err(DataError::Config(format!(
            "{}: this dataset cannot record its training views (soft-label stores); distil \
             from live teachers",
            self.describe()
        )))
    }
    /// The training transform with its view given instead of drawn (a view of a soft-label
    /// store): a padded crop + flip for 32×32 datasets, a RandomResizedCrop box + flip for
    /// photos; a view of the other kind is refused.
    fn get_view(&self, index: usize, view: View) -> Result<(Vec<f32>, usize), DataError> {
        let _ = (index, view);
        Err(DataError::Config(format!(
            "{}: this dataset cannot replay recorded views (soft-label stores); distil from \
             live teachers",
            self.describe()
        )))
    }
}

/// On-disk dataset layouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    #[default]
    Auto,
    Cifar10Bin,
    Cifar10Py,
    Cifar100Bin,
    Cifar100Py,
    Svhn,
    Folder,
    Webdataset,
}

impl DataFormat {
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Auto => "auto",
            DataFormat::Cifar10Bin => "cifar10-bin",
            DataFormat::Cifar10Py => "cifar10-py",
            DataFormat::Cifar100Bin => "cifar100-bin",
            DataFormat::Cifar100Py => "cifar100-py",
            DataFormat::Svhn => "svhn",
            DataFormat::Folder => "folder",
            DataFormat::Webdataset => "webdataset",
        }
    }
}

/// Which CIFAR-100 labels to train on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cifar100Labels {
    #[default]
    Fine,
    Coarse,
}

/// Where the data is and how to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub format: DataFormat,
    /// Use only a class-balanced subset of the training split: the first ceil(n / classes)
    /// images of each class, in file order (None = all).
    #[serde(default)]
    pub train_subset: Option<usize>,
    /// Leave out of the training split the images `train_subset = n` would pick (the first
    /// ceil(n / classes) of each class, in file order), before any `train_subset`. With 5000 on
    /// the full CIFAR-10, a model never sees the training images of the embedded
    /// `data/cifar10-mini` (chosen by that rule), e.g. a teacher that a quickstart student then
    /// learns from on images new to it.
    #[serde(default)]
    pub train_holdout: Option<usize>,
    /// Same for the test split.
    #[serde(default)]
    pub test_subset: Option<usize>,
    /// Side of the square crop for image folders (default 224); ignored for 32×32 formats.
    #[serde(default)]
    pub image_size: Option<usize>,
    /// Image folders: the fraction of the resized shorter side the evaluation centre crop
    /// keeps (Resize(floor(size / crop_pct)) + CenterCrop(size)); unset = 0.875.
    #[serde(default)]
    pub crop_pct: Option<f64>,
    /// Image folders: the resampling filter of both transforms; unset = bilinear.
    #[serde(default)]
    pub interpolation: Option<Interpolation>,
    /// Image folders with a flat `val/`: the labels file (see [`val_labels`]); relative paths
    /// count from `path`. Unset = `LOC_val_solution.csv` or `val_labels.txt` in `path`.
    #[serde(default)]
    pub val_labels: Option<PathBuf>,
    /// `format = "webdataset"`: the training shards, relative to `path`, e.g.
    /// `"train-{000000..000009}.tar"` (whitespace separates several patterns).
    #[serde(default)]
    pub train_shards: Option<String>,
    /// `format = "webdataset"`: the validation shards.
    #[serde(default)]
    pub val_shards: Option<String>,
    /// Image folders: leave images that cannot be decoded out of their batch, counted in the
    /// epoch's record (`skipped_corrupt`) and log, instead of stopping with an error.
    #[serde(default)]
    pub skip_corrupt: bool,
    #[serde(default)]
    pub cifar100_labels: Cifar100Labels,
}

impl DataConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataConfig {
            path: path.into(),
            format: DataFormat::Auto,
            train_subset: None,
            train_holdout: None,
            test_subset: None,
            image_size: None,
            crop_pct: None,
            interpolation: None,
            val_labels: None,
            train_shards: None,
            val_shards: None,
            skip_corrupt: false,
            cifar100_labels: Cifar100Labels::Fine,
        }
    }
}

/// The two splits of a dataset.
#[derive(Clone)]
pub struct DataSplits {
    pub train: Arc<dyn Dataset>,
    pub test: Arc<dyn Dataset>,
}

/// Default crop side for image folders.
pub const DEFAULT_IMAGE_SIZE: usize = 224;

const LOOKED_FOR: &str = "data_batch_1.bin (cifar10-bin), data_batch_1 (cifar10-py), \
    train.bin (cifar100-bin), train (cifar100-py), train_32x32.mat (svhn), \
    train/ + val/ class folders (folder), or a cifar-10-batches-bin, cifar-10-batches-py, \
    cifar-100-binary or cifar-100-python sub-folder";

/// Detects the layout of `dir` (see [`open`]); returns the format and the directory holding it
/// (which may be a well-known sub-folder).
pub fn detect_format(dir: &Path) -> Result<(DataFormat, PathBuf), DataError> {
    if !dir.is_dir() {
        return Err(DataError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such data directory"),
        ));
    }
    if let Some(f) = detect_here(dir) {
        return Ok((f, dir.to_path_buf()));
    }
    for sub in [
        "cifar-10-batches-bin",
        "cifar-10-batches-py",
        "cifar-100-binary",
        "cifar-100-python",
    ] {
        let d = dir.join(sub);
        if let Some(f) = d.is_dir().then(|| detect_here(&d)).flatten() {
            return Ok((f, d));
        }
    }
    Err(DataError::Detect {
        path: dir.to_path_buf(),
        looked_for: LOOKED_FOR.into(),
    })
}

fn detect_here(dir: &Path) -> Option<DataFormat> {
    let file = |n: &str| dir.join(n).is_file();
    if file("data_batch_1.bin") {
        Some(DataFormat::Cifar10Bin)
    } else if file("data_batch_1") {
        Some(DataFormat::Cifar10Py)
    } else if file("train.bin") {
        Some(DataFormat::Cifar100Bin)
    } else if file("train") {
        Some(DataFormat::Cifar100Py)
    } else if file("train_32x32.mat") {
        Some(DataFormat::Svhn)
    } else if dir.join("train").is_dir() && dir.join("val").is_dir() {
        Some(DataFormat::Folder)
    } else {
        None
    }
}

/// Indices of the class-balanced subset: the first `ceil(n / num_classes)` images of each class,
/// in order.
pub fn balanced_subset(
    labels: impl IntoIterator<Item = usize>,
    num_classes: usize,
    n: usize,
) -> Vec<usize> {
    let per = n.div_ceil(num_classes.max(1));
    let mut seen = vec![0usize; num_classes];
    let mut out = Vec::new();
    for (i, l) in labels.into_iter().enumerate() {
        if let Some(s) = seen.get_mut(l)
            && *s < per
        {
            *s += 1;
            out.push(i);
        }
    }
    out
}

/// The indices [`balanced_subset`] leaves out.
pub fn balanced_holdout(labels: Vec<usize>, num_classes: usize, n: usize) -> Vec<usize> {
    let held = balanced_subset(labels.iter().copied(), num_classes, n);
    let mut held = held.into_iter().peekable();
    (0..labels.len())
        .filter(|i| {
            let skip = held.peek() == Some(i);
            if skip {
                held.next();
            }
            !skip
        })
        .collect()
}

/// The training indices left after `holdout` and then `subset` (see [`DataConfig`]), or `None`
/// when both keep everything.
fn select_train(
    labels: Vec<usize>,
    classes: usize,
    holdout: Option<usize>,
    subset: Option<usize>,
) -> Option<Vec<usize>> {
    let full = labels.len();
    let mut idx: Vec<usize> = (0..full).collect();
    if let Some(h) = holdout.filter(|&h| h > 0) {
        idx = balanced_holdout(labels.clone(), classes, h);
    }
    if let Some(n) = subset.filter(|&n| n < idx.len()) {
        let kept: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
        idx = balanced_subset(kept, classes, n)
            .into_iter()
            .map(|j| idx[j])
            .collect();
    }
    (idx.len() < full).then_some(idx)
}

/// Why a split's selection is empty, naming the keys it was given by their values (not
/// `Some(..)`); the test split has no holdout.
fn nothing_selected(
    split: &str,
    full: usize,
    holdout: Option<usize>,
    subset: Option<usize>,
) -> String {
    let mut keys = Vec::new();
    if let Some(h) = holdout.filter(|&h| h > 0) {
        keys.push(format!("data.{split}_holdout = {h}"));
    }
    if let Some(n) = subset {
        keys.push(format!("data.{split}_subset = {n}"));
    }
    format!(
        "{} leaves none of the {full} {split} images{}",
        keys.join(" with "),
        if subset == Some(0) {
            " (a subset must be at least 1)"
        } else {
            ""
        }
    )
}

#[allow(clippy::too_many_arguments)]
fn memory_split(
    raw: cifar::RawSplit,
    names: &[String],
    norm: Normalization,
    title: &str,
    split: &str,
    dir: &Path,
    subset: Option<usize>,
    holdout: Option<usize>,
) -> Result<Arc<dyn Dataset>, DataError> {
    let full = raw.labels.len();
    let mut ds = MemoryDataset::new(
        String::new(),
        [3, 32, 32],
        raw.images,
        raw.labels,
        names.to_vec(),
        norm,
    )?;
    let mut note = String::new();
    if let Some(idx) = select_train(ds.labels().collect(), names.len(), holdout, subset) {
        if idx.is_empty() {
            return Err(DataError::format(
                dir,
                nothing_selected(split, full, holdout, subset),
            ));
        }
        ds = ds.select(&idx);
        note = match holdout.filter(|&h| h > 0) {
            Some(h) => format!(" (class-balanced, holding out the first {h} of {full})"),
            None => format!(" (class-balanced subset of {full})"),
        };
    }
    ds.set_description(format!(
        "{title}, {split} split, {} images{note}, {}",
        ds.len(),
        dir.display()
    ));
    Ok(Arc::new(ds))
}

/// Opens both splits; `Auto` detects the format from the directory contents
/// (data_batch_1.bin → cifar10-bin, data_batch_1 (pickle) → cifar10-py, train.bin → cifar100-bin,
/// train (pickle) → cifar100-py, train_32x32.mat → svhn, train/ + val/ subfolders → folder)
/// and the error lists what it looked for.
pub fn open(config: &DataConfig) -> Result<DataSplits, DataError> {
    let (format, dir) = match config.format {
        DataFormat::Auto => detect_format(&config.path)?,
        f => {
            if !config.path.is_dir() {
                return Err(DataError::io(
                    &config.path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such data directory"),
                ));
            }
            (f, config.path.clone())
        }
    };
    let small = |(train, test, names): (cifar::RawSplit, cifar::RawSplit, Vec<String>),
                 title: &str,
                 norm: Normalization|
     -> Result<DataSplits, DataError> {
        Ok(DataSplits {
            train: memory_split(
                train,
                &names,
                norm,
                title,
                "train",
                &dir,
                config.train_subset,
                config.train_holdout,
            )?,
            test: memory_split(
                test,
                &names,
                norm,
                title,
                "test",
                &dir,
                config.test_subset,
                None,
            )?,
        })
    };
    match format {
        DataFormat::Cifar10Bin => small(
            cifar::cifar10_bin(&dir)?,
            "CIFAR-10 binary",
            Normalization::CIFAR10,
        ),
        DataFormat::Cifar10Py => small(
            cifar::cifar10_py(&dir)?,
            "CIFAR-10 python",
            Normalization::CIFAR10,
        ),
        DataFormat::Cifar100Bin => small(
            cifar::cifar100_bin(&dir, config.cifar100_labels)?,
            "CIFAR-100 binary",
            Normalization::CIFAR100,
        ),
        DataFormat::Cifar100Py => small(
            cifar::cifar100_py(&dir, config.cifar100_labels)?,
            "CIFAR-100 python",
            Normalization::CIFAR100,
        ),
        DataFormat::Svhn => {
            let mut train = cifar::RawSplit::default();
            mat::read_svhn(&required_file(&dir, "train_32x32.mat")?, &mut train)?;
            let mut test = cifar::RawSplit::default();
            mat::read_svhn(&required_file(&dir, "test_32x32.mat")?, &mut test)?;
            let names = (0..10).map(|d| d.to_string()).collect();
            small((train, test, names), "SVHN", Normalization::SVHN)
        }
        DataFormat::Folder => open_folder(&dir, config),
        DataFormat::Webdataset => open_webdataset(&dir, config),
        DataFormat::Auto => unreachable!("detect_format never returns Auto"),
    }
}

/// Folder names for a message: `a, b`, or `none`.
fn list(names: &[&String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn required_file(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(DataError::format(dir, format!("missing file {name}")))
    }
}

/// The resize settings `config` gives photos.
fn photo_input(config: &DataConfig) -> Result<InputSettings, DataError> {
    InputSettings {
        crop_pct: config.crop_pct.unwrap_or(input_settings::DEFAULT_CROP_PCT),
        interpolation: config.interpolation.unwrap_or_default(),
    }
    .check("data.crop_pct")
}

fn open_webdataset(root: &Path, config: &DataConfig) -> Result<DataSplits, DataError> {
    let size = config.image_size.unwrap_or(DEFAULT_IMAGE_SIZE);
    if size == 0 {
        return Err(DataError::Config("image_size must be positive".into()));
    }
    if config.train_subset.is_some()
        || config.test_subset.is_some()
        || config.train_holdout.is_some()
    {
        return Err(DataError::Config(
            "data.train_subset, data.test_subset and data.train_holdout are not supported with \
             format = \"webdataset\" (write smaller shards instead)"
                .into(),
        ));
    }
    let input = photo_input(config)?;
    let shards = |key: &str, v: &Option<String>| {
        v.clone().ok_or_else(|| {
            DataError::Config(format!(
                "format = \"webdataset\" needs data.{key}, e.g. \"{}-{{000000..000009}}.tar\"",
                if key == "train_shards" {
                    "train"
                } else {
                    "val"
                }
            ))
        })
    };
    let train = webdataset::ShardDataset::open(
        root,
        "train",
        &shards("train_shards", &config.train_shards)?,
        size,
    )?
    .with_input(input, config.skip_corrupt);
    let test = webdataset::ShardDataset::open(
        root,
        "val",
        &shards("val_shards", &config.val_shards)?,
        size,
    )?
    .with_classes(train.class_names())?
    .with_input(input, config.skip_corrupt);
    Ok(DataSplits {
        train: Arc::new(train),
        test: Arc::new(test),
    })
}

fn open_folder(root: &Path, config: &DataConfig) -> Result<DataSplits, DataError> {
    let size = config.image_size.unwrap_or(DEFAULT_IMAGE_SIZE);
    if size == 0 {
        return Err(DataError::Config("image_size must be positive".into()));
    }
    for split in ["train", "val"] {
        if !root.join(split).is_dir() {
            return Err(DataError::format(root, format!("missing folder {split}/")));
        }
    }
    let classes = folder::class_dirs(&root.join("train"))?;
    if classes.is_empty() {
        return Err(DataError::format(
            root.join("train"),
            "no class sub-folders",
        ));
    }
    let input = photo_input(config)?;
    let val_classes = folder::class_dirs(&root.join("val"))?;
    let flat_val = val_classes.is_empty();
    if !flat_val && val_classes != classes {
        let extra: Vec<_> = val_classes
            .iter()
            .filter(|c| !classes.contains(c))
            .collect();
        let missing: Vec<_> = classes
            .iter()
            .filter(|c| !val_classes.contains(c))
            .collect();
        return Err(DataError::format(
            root.join("val"),
            format!(
                "class folders differ from train/: not in train: {}; missing: {}",
                list(&extra),
                list(&missing)
            ),
        ));
    }
    let split = |name: &str,
                 subset: Option<usize>,
                 holdout: Option<usize>|
     -> Result<Arc<dyn Dataset>, DataError> {
        let ds = if name == "val" && flat_val {
            let file = val_labels::locate(root, config.val_labels.as_deref())?;
            let entries = val_labels::read(&file, &classes)?;
            FolderDataset::open_flat(root, name, &entries, &classes, size)?
        } else {
            FolderDataset::open(root, name, &classes, size)?
        }
        .with_input(input)
        .with_skip_corrupt(config.skip_corrupt);
        let full = ds.len();
        let labels = (0..full).map(|i| ds.label(i)).collect();
        Ok(match select_train(labels, classes.len(), holdout, subset) {
            Some(idx) if idx.is_empty() => {
                let key = if name == "val" { "test" } else { name };
                return Err(DataError::format(
                    root.join(name),
                    nothing_selected(key, full, holdout, subset),
                ));
            }
            Some(idx) => {
                let note = match holdout.filter(|&h| h > 0) {
                    Some(h) => format!(" (class-balanced, holding out the first {h} of {full})"),
                    None => format!(" (class-balanced subset of {full})"),
                };
                Arc::new(ds.select(&idx, note))
            }
            None => Arc::new(ds),
        })
    };
    Ok(DataSplits {
        train: split("train", config.train_subset, config.train_holdout)?,
        test: split("val", config.test_subset, None)?,
    })
}
