//! The soft-label store: the teachers' logits for every training image under K recorded
//! augmented views, computed once by `meal cache-teachers` so that `meal distill --soft-labels`
//! trains without running (or even loading) a teacher, as Fast Knowledge Distillation does.
//!
//! Only eval-mode teachers can be cached: in `teacher_bn = "train"` (MEAL V1) a teacher's output
//! for an image depends on the rest of its batch. Only the logits are stored, so only the
//! logits stage can be matched.
//!
//! File layout (all integers and floats little-endian):
//!
//! ```text
//! offset  size        field
//! 0       8           magic "MEALSOFT"
//! 8       4           format version (u32) = 1
//! 12      4           header length H (u32)
//! 16      H           header: UTF-8 JSON (StoreHeader: counts, k, seed, teachers with file
//!                     size and CRC-32, dataset fingerprint, teachers' test accuracy)
//! ..      n·V·3       views, for v in 0..V, image i in 0..n: crop top (u8), crop left (u8),
//!                     flip (u8, 0 or 1)
//! ..      n·V·T·R     records, for v in 0..V, i in 0..n, teacher t in 0..T, R = 6k + 4 bytes:
//!                     the k largest logits (f32, descending), their classes (u16), and the
//!                     `rest` logit (f32)
//! end-4   4           CRC-32 (IEEE, as gzip) of every byte before it
//! ```
//!
//! Reconstruction: the k stored classes get their logits back exactly; every other class gets
//! `rest = logsumexp(other logits) − ln(C − k)`. The softmax of the rebuilt row is then exact on
//! the k classes and spreads the remaining probability mass uniformly over the others (at
//! temperature 1; at other temperatures the rest is approximate). With k = C nothing is
//! rebuilt and the logits are the teachers' own, bit for bit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::{DistillConfig, TeacherBn, TeacherSpec};
use super::trainer::{TeacherReport, load_teacher_specs};
use crate::data::transform::CROP_PADDING;
use crate::data::{CropFlip, DataConfig, Dataset, Loader, LoaderConfig, Normalization, sample_rng};
use crate::error::{Error, Result};
use crate::progress;
use crate::train::evaluate::{Renorm, evaluate_renormalized};
use crate::train::run_dir::resolve_checkpoint;

const MAGIC: &[u8; 8] = b"MEALSOFT";
const VERSION: u32 = 1;
/// Magic, version and header length.
const PREAMBLE: usize = 16;
const VIEW_BYTES: usize = 3;
/// Images whose eval-transform pixels enter the dataset fingerprint, spread over the split:
/// enough to tell datasets apart without decoding 50,000 images at every start.
const FINGERPRINT_IMAGES: usize = 256;

/// Default k: the FKD value, capped at the class count (so CIFAR-10 and SVHN stores are exact).
pub const DEFAULT_TOP_K: usize = 10;

/// A cached teacher: where its weights came from and how to recognise the same file again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTeacher {
    pub arch: String,
    /// The weights file as given (a run folder resolves to its best.ckpt).
    pub file: PathBuf,
    pub file_bytes: u64,
    pub file_crc32: u32,
}

/// What identifies the training split the store was computed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetFingerprint {
    pub images: usize,
    pub classes: usize,
    pub shape: [usize; 3],
    pub normalization: Normalization,
    /// CRC-32 of every label (u32 LE), in dataset order.
    pub labels_crc32: u32,
    /// CRC-32 of the eval-transform pixels (f32 LE) of up to 256 images spread over the split.
    pub pixels_crc32: u32,
    /// For messages only (paths may differ between machines).
    pub description: String,
}

impl DatasetFingerprint {
    pub fn of(ds: &dyn Dataset) -> Result<Self> {
        let n = ds.len();
        let mut labels = flate2::Crc::new();
        for i in 0..n {
            labels.update(&(ds.label(i) as u32).to_le_bytes());
        }
        let mut pixels = flate2::Crc::new();
        let picks = n.min(FINGERPRINT_IMAGES);
        // The eval transform draws nothing; the RNG is only there to satisfy `get`.
        let mut rng = sample_rng(0, 0, 0);
        for j in 0..picks {
            let (x, _) = ds.get(j * n / picks, false, &mut rng)?;
            for v in x {
                pixels.update(&v.to_le_bytes());
            }
        }
        Ok(Self {
            images: n,
            classes: ds.num_classes(),
            shape: ds.output_shape(),
            normalization: ds.normalization(),
            labels_crc32: labels.sum(),
            pixels_crc32: pixels.sum(),
            description: ds.describe(),
        })
    }

    fn same_data(&self, other: &Self) -> bool {
        Self {
            description: String::new(),
            ..self.clone()
        } == Self {
            description: String::new(),
            ..other.clone()
        }
    }
}

/// The store's header (JSON in the file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreHeader {
    pub meal_version: String,
    pub images: usize,
    pub views: usize,
    pub classes: usize,
    pub top_k: usize,
    /// View v of image i is `CropFlip::draw(sample_rng(seed, v, i))`: with the same seed, view
    /// e is what the live training loader draws in epoch e.
    pub seed: u64,
    pub crop_padding: usize,
    pub teachers: Vec<StoredTeacher>,
    pub dataset: DatasetFingerprint,
    /// Each teacher's and the ensemble's test accuracy, measured when the store was made.
    pub report: TeacherReport,
}

impl StoreHeader {
    fn record_bytes(&self) -> usize {
        6 * self.top_k + 4
    }

    fn views_offset(&self, header_len: usize) -> usize {
        PREAMBLE + header_len
    }

    /// The file size this header describes.
    fn file_size(&self, header_len: usize) -> Option<usize> {
        let cells = self.images.checked_mul(self.views)?;
        let records = cells
            .checked_mul(self.teachers.len())?
            .checked_mul(self.record_bytes())?;
        PREAMBLE
            .checked_add(header_len)?
            .checked_add(cells.checked_mul(VIEW_BYTES)?)?
            .checked_add(records)?
            .checked_add(4)
    }
}

/// The weights file of a teacher spec, as `load_teachers` reads it.
pub fn teacher_file(spec: &TeacherSpec) -> PathBuf {
    match &spec.pytorch {
        Some(p) => p.clone(),
        None => resolve_checkpoint(&spec.checkpoint.clone().unwrap_or_default()),
    }
}

fn file_identity(path: &Path) -> Result<(u64, u32)> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::file(path, format!("cannot read the teacher's weights ({e})")))?;
    let mut crc = flate2::Crc::new();
    crc.update(&bytes);
    Ok((bytes.len() as u64, crc.sum()))
}

/// One row of logits as a record: top-k values, their classes, the rest logit.
fn encode_row(row: &[f32], k: usize, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    if let Some(c) = row.iter().position(|v| !v.is_finite()) {
        return Err(format!("logit of class {c} is {}", row[c]));
    }
    let mut order: Vec<usize> = (0..row.len()).collect();
    // Stable, so ties keep the lower class first and the encoding is deterministic.
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    let rest = if k < row.len() {
        let others = &order[k..];
        let max = others
            .iter()
            .map(|&c| row[c] as f64)
            .fold(f64::MIN, f64::max);
        let sum: f64 = others.iter().map(|&c| (row[c] as f64 - max).exp()).sum();
        (max + sum.ln() - (others.len() as f64).ln()) as f32
    } else {
        0.0
    };
    for &c in &order[..k] {
        out.extend_from_slice(&row[c].to_le_bytes());
    }
    for &c in &order[..k] {
        out.extend_from_slice(&(c as u16).to_le_bytes());
    }
    out.extend_from_slice(&rest.to_le_bytes());
    Ok(())
}

fn decode_row(rec: &[u8], k: usize, out: &mut [f32]) {
    let f32_at = |o: usize| f32::from_le_bytes(rec[o..o + 4].try_into().expect("4 bytes"));
    out.fill(f32_at(6 * k));
    for j in 0..k {
        let c = u16::from_le_bytes(rec[4 * k + 2 * j..4 * k + 2 * j + 2].try_into().expect("2"));
        out[c as usize] = f32_at(4 * j);
    }
}

/// What `meal cache-teachers` is asked for.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub views: usize,
    /// None: [`DEFAULT_TOP_K`] capped at the class count.
    pub top_k: Option<usize>,
    pub seed: u64,
    pub batch_size: usize,
    pub num_workers: usize,
}

#[derive(Debug, Clone)]
pub struct CacheSummary {
    pub header: StoreHeader,
    pub bytes: u64,
    pub seconds: f64,
}

/// Writes while computing the CRC of everything written.
struct CrcWriter<W: Write> {
    inner: W,
    crc: flate2::Crc,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.inner.write_all(bytes)
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Runs the teachers (eval mode) on every training image under `views` recorded crops and
/// flips and writes the store to `out` atomically (temp file, fsync, rename).
pub fn cache_teachers(
    specs: &[TeacherSpec],
    data: &DataConfig,
    opts: &CacheOptions,
    out: &Path,
) -> Result<CacheSummary> {
    let started = Instant::now();
    if specs.is_empty() {
        return Err(Error::Config(
            "cache-teachers: give at least one teacher (--teacher CKPT ...)".into(),
        ));
    }
    for (i, s) in specs.iter().enumerate() {
        s.validate(i)?;
    }
    if opts.views == 0 {
        return Err(Error::Config("--views must be at least 1".into()));
    }
    let splits = crate::data::open(data)?;
    let train = splits.train.clone();
    let classes = train.num_classes();
    if classes > u16::MAX as usize + 1 {
        return Err(Error::Config(format!(
            "{classes} classes: a soft-label store holds at most 65536"
        )));
    }
    let top_k = opts.top_k.unwrap_or(DEFAULT_TOP_K.min(classes));
    if top_k == 0 || top_k > classes {
        return Err(Error::Config(format!(
            "--top-k must be between 1 and the class count ({classes}), got {top_k}"
        )));
    }
    // The recorded views must be applicable before hours of teacher time are spent.
    train.get_view(0, CropFlip::default())?;
    let (teachers, metas) = load_teacher_specs(specs, TeacherBn::Eval, train.as_ref())?;
    let mut stored = Vec::new();
    for (spec, meta) in specs.iter().zip(&metas) {
        let file = teacher_file(spec);
        let (file_bytes, file_crc32) = file_identity(&file)?;
        stored.push(StoredTeacher {
            arch: meta.arch.clone(),
            file,
            file_bytes,
            file_crc32,
        });
    }
    progress::say(format!(
        "meal cache-teachers: {} teacher(s) x {} view(s) of {} -> {}",
        teachers.len(),
        opts.views,
        train.describe(),
        out.display()
    ));
    let plain = crate::backend::device();
    let report = {
        let evals: Vec<_> = teachers.iter().map(|t| t.net.clone()).collect();
        let refs: Vec<_> = evals.iter().collect();
        let renorms: Vec<_> = metas
            .iter()
            .map(|m| Renorm::between(train.normalization(), m.normalization))
            .collect();
        let test_loader = Loader::new(splits.test.clone(), LoaderConfig::eval(opts.batch_size));
        let (each, ensemble) = evaluate_renormalized(&refs, &renorms, &test_loader, &plain)?;
        TeacherReport {
            teachers: teachers
                .iter()
                .zip(&metas)
                .zip(each)
                .map(|((t, m), a)| (m.arch.clone(), t.name.clone(), a))
                .collect(),
            ensemble,
        }
    };
    for (arch, _, acc) in &report.teachers {
        progress::say(format!("  teacher {arch:<16} test top-1 {:.2}%", acc.top1));
    }
    let n = train.len();
    let views: Arc<Vec<CropFlip>> = Arc::new(
        (0..opts.views)
            .flat_map(|v| (0..n).map(move |i| CropFlip::draw(&mut sample_rng(opts.seed, v, i))))
            .collect(),
    );
    let header = StoreHeader {
        meal_version: env!("CARGO_PKG_VERSION").to_string(),
        images: n,
        views: opts.views,
        classes,
        top_k,
        seed: opts.seed,
        crop_padding: CROP_PADDING,
        teachers: stored,
        dataset: DatasetFingerprint::of(train.as_ref())?,
        report,
    };
    let header_json = serde_json::to_vec(&header).expect("serialisable");

    let dir = out.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    }
    let tmp = tmp_path(out);
    let failed = |e: &dyn std::fmt::Display| {
        let _ = std::fs::remove_file(&tmp);
        Error::file(
            out,
            format!("cannot write the soft-label store ({e}); nothing was replaced"),
        )
    };
    let file = std::fs::File::create(&tmp).map_err(|e| failed(&e))?;
    let mut w = CrcWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        crc: flate2::Crc::new(),
    };
    let mut preamble = Vec::with_capacity(PREAMBLE + header_json.len());
    preamble.extend_from_slice(MAGIC);
    preamble.extend_from_slice(&VERSION.to_le_bytes());
    preamble.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
    preamble.extend_from_slice(&header_json);
    w.put(&preamble).map_err(|e| failed(&e))?;
    let view_bytes: Vec<u8> = views
        .iter()
        .flat_map(|v| [v.top, v.left, v.flip as u8])
        .collect();
    w.put(&view_bytes).map_err(|e| failed(&e))?;

    let table = views.clone();
    let loader = Loader::new(
        train.clone(),
        LoaderConfig {
            batch_size: opts.batch_size,
            shuffle: false,
            augment: true,
            drop_last: false,
            seed: opts.seed,
            num_workers: opts.num_workers,
            prefetch: 4,
        },
    )
    .with_views(Arc::new(move |v, i| table[v * n + i]));
    let bar = progress::bar(loader.num_batches() * opts.views, "teachers");
    let mut record = Vec::new();
    for v in 0..opts.views {
        for batch in loader.epoch(v) {
            if crate::train::interrupt::requested() {
                bar.abandon();
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::Interrupted(format!(
                    "{} was not written",
                    out.display()
                )));
            }
            let batch = batch.map_err(|e| failed(&e))?;
            let x = burn::tensor::Tensor::<4>::from_data(
                burn::tensor::TensorData::new(batch.images.clone(), batch.shape),
                &plain,
            );
            let rows: Vec<Vec<f32>> = teachers
                .iter()
                .map(|t| {
                    t.forward(&x)
                        .logits
                        .try_into_vec_as::<f32>()
                        .expect("f32 logits")
                })
                .collect();
            record.clear();
            for (j, &i) in batch.indices.iter().enumerate() {
                for (t, logits) in rows.iter().enumerate() {
                    encode_row(&logits[j * classes..(j + 1) * classes], top_k, &mut record)
                        .map_err(|m| {
                            let _ = std::fs::remove_file(&tmp);
                            Error::Distill(format!(
                                "teacher {} on training image {i}, view {v}: {m}; a store of \
                                 a diverged teacher would teach nothing",
                                header.teachers[t].file.display()
                            ))
                        })?;
                }
            }
            w.put(&record).map_err(|e| failed(&e))?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let crc = w.crc.sum();
    let mut inner = w.inner;
    let finish = || -> std::io::Result<()> {
        inner.write_all(&crc.to_le_bytes())?;
        let f = inner.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    };
    finish().map_err(|e| failed(&e))?;
    std::fs::rename(&tmp, out).map_err(|e| failed(&e))?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(CacheSummary {
        header,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A soft-label store read into memory and verified.
pub struct SoftLabelStore {
    pub path: PathBuf,
    pub header: StoreHeader,
    bytes: Vec<u8>,
    views_at: usize,
    records_at: usize,
}

impl std::fmt::Debug for SoftLabelStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftLabelStore")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish()
    }
}

const REBUILD: &str = "rebuild it with `meal cache-teachers`";

impl SoftLabelStore {
    /// Reads `path` and checks its magic, version, size and CRC-32.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::file(path, format!("cannot read the soft-label store ({e})")))?;
        Self::parse(path, bytes)
    }

    fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let bad = |m: String| Error::file(path, m);
        if bytes.len() < PREAMBLE + 4 {
            return Err(bad(format!(
                "{} bytes is too short for a soft-label store (truncated?); {REBUILD}",
                bytes.len()
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(bad(
                "not a meal soft-label store (wrong magic bytes); make one with `meal cache-teachers`"
                    .to_string(),
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!(
                "soft-label store format version {version}, this meal reads version {VERSION}; {REBUILD}"
            )));
        }
        let header_len = u32_at(12) as usize;
        let header: Option<StoreHeader> = bytes
            .get(PREAMBLE..PREAMBLE.saturating_add(header_len))
            .and_then(|h| serde_json::from_slice(h).ok());
        let expected = header.as_ref().and_then(|h| h.file_size(header_len));
        if let Some(size) = expected
            && size != bytes.len()
        {
            let what = if bytes.len() < size {
                "truncated"
            } else {
                "longer than its header says"
            };
            return Err(bad(format!(
                "the soft-label store is {what}: {} bytes, its header describes {size}; {REBUILD}",
                bytes.len()
            )));
        }
        let body = bytes.len() - 4;
        let stored = u32_at(body);
        let mut crc = flate2::Crc::new();
        crc.update(&bytes[..body]);
        if crc.sum() != stored {
            return Err(bad(format!(
                "checksum mismatch (CRC-32 stored {stored:08x}, computed {:08x}): the soft-label \
                 store is corrupt; {REBUILD}",
                crc.sum()
            )));
        }
        let Some(header) = header else {
            return Err(bad(format!(
                "the soft-label store's header is not valid; {REBUILD}"
            )));
        };
        if expected.is_none() {
            return Err(bad(format!("the header's counts overflow; {REBUILD}")));
        }
        if header.top_k == 0
            || header.top_k > header.classes
            || header.classes > u16::MAX as usize + 1
            || header.views == 0
            || header.teachers.is_empty()
            || header.crop_padding != CROP_PADDING
        {
            return Err(bad(format!(
                "the header is inconsistent (k = {}, {} classes, {} views, {} teachers, crop padding {}); {REBUILD}",
                header.top_k,
                header.classes,
                header.views,
                header.teachers.len(),
                header.crop_padding
            )));
        }
        let views_at = header.views_offset(header_len);
        let records_at = views_at + header.images * header.views * VIEW_BYTES;
        let store = Self {
            path: path.to_path_buf(),
            header,
            bytes,
            views_at,
            records_at,
        };
        store.check_contents()?;
        Ok(store)
    }

    /// Crop offsets inside the padded image and class indices below the class count, so that
    /// later lookups cannot panic on a file that passed its CRC but was written wrongly.
    fn check_contents(&self) -> Result<()> {
        let h = &self.header;
        for cell in 0..h.images * h.views {
            let b = &self.bytes[self.views_at + cell * VIEW_BYTES..][..VIEW_BYTES];
            let v = CropFlip {
                top: b[0],
                left: b[1],
                flip: b[2] == 1,
            };
            if !v.is_valid() || b[2] > 1 {
                return Err(Error::file(
                    &self.path,
                    format!("view {cell} holds an impossible crop/flip {b:?}; {REBUILD}"),
                ));
            }
        }
        let (k, r) = (h.top_k, h.record_bytes());
        let records = h.images * h.views * h.teachers.len();
        for n in 0..records {
            let rec = &self.bytes[self.records_at + n * r..][..r];
            for j in 0..k {
                let c = u16::from_le_bytes([rec[4 * k + 2 * j], rec[4 * k + 2 * j + 1]]);
                if c as usize >= h.classes {
                    return Err(Error::file(
                        &self.path,
                        format!("record {n} names class {c} of {}; {REBUILD}", h.classes),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The recorded crop and flip of image `index` in view `view`.
    pub fn view(&self, index: usize, view: usize) -> CropFlip {
        let o = self.views_at + (view * self.header.images + index) * VIEW_BYTES;
        let b = &self.bytes[o..o + VIEW_BYTES];
        CropFlip {
            top: b[0],
            left: b[1],
            flip: b[2] == 1,
        }
    }

    /// The view epoch `epoch` trains on: e mod K, so every view is used once before any repeats
    /// and (with the store's seed as the run's) epoch e < K sees the augmentation a live run
    /// would.
    pub fn view_of_epoch(&self, epoch: usize) -> usize {
        epoch % self.header.views
    }

    /// Teacher `teacher`'s rebuilt logits of `indices` under `view`, row-major `(N, classes)`.
    pub fn logits(&self, indices: &[usize], view: usize, teacher: usize) -> Vec<f32> {
        let h = &self.header;
        let c = h.classes;
        let r = h.record_bytes();
        let mut out = vec![0f32; indices.len() * c];
        for (row, &i) in out.chunks_mut(c).zip(indices) {
            let n = (view * h.images + i) * h.teachers.len() + teacher;
            decode_row(&self.bytes[self.records_at + n * r..][..r], h.top_k, row);
        }
        out
    }

    /// Refuses a store made on other data than `train`.
    pub fn check_dataset(&self, train: &dyn Dataset) -> Result<()> {
        let here = DatasetFingerprint::of(train)?;
        let there = &self.header.dataset;
        if there.same_data(&here) {
            return Ok(());
        }
        let detail = if there.images != here.images {
            format!(
                "it holds {} training images, the dataset has {}",
                there.images, here.images
            )
        } else if there.classes != here.classes {
            format!(
                "it holds {} classes, the dataset has {}",
                there.classes, here.classes
            )
        } else {
            "the labels, pixels or normalisation differ".to_string()
        };
        Err(Error::file(
            &self.path,
            format!(
                "this soft-label store was made on another training set ({detail}); it was made \
                 on \"{}\", this run trains on \"{}\". Use the same data.path and \
                 data.train_subset, or rebuild the store with `meal cache-teachers`",
                there.description, here.description
            ),
        ))
    }

    /// With teachers listed in the config, they must be the store's, in order (same file
    /// contents); an empty list takes the store's.
    pub fn check_teachers(&self, specs: &[TeacherSpec]) -> Result<()> {
        if specs.is_empty() {
            return Ok(());
        }
        let stored = &self.header.teachers;
        if specs.len() != stored.len() {
            return Err(Error::file(
                &self.path,
                format!(
                    "the store holds {} teacher(s), the config lists {}; list the store's \
                     teachers in its order, or no teachers at all",
                    stored.len(),
                    specs.len()
                ),
            ));
        }
        for (i, (spec, st)) in specs.iter().zip(stored).enumerate() {
            let file = teacher_file(spec);
            let same =
                file_identity(&file).is_ok_and(|(b, c)| b == st.file_bytes && c == st.file_crc32);
            if !same {
                return Err(Error::file(
                    &self.path,
                    format!(
                        "teachers[{i}] is {}, but the store's teacher {i} is {} ({} bytes, CRC-32 \
                         {:08x}) and the files differ; list the store's teachers, or none, or \
                         rebuild the store with these teachers",
                        file.display(),
                        st.file.display(),
                        st.file_bytes,
                        st.file_crc32
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Teacher names for stage resolution and logs.
    pub fn teacher_names(&self) -> Vec<String> {
        self.header
            .teachers
            .iter()
            .map(|t| format!("{}:{}", t.arch, t.file.display()))
            .collect()
    }
}

/// Why `config` cannot be distilled from a soft-label store, if it cannot.
pub fn check_config(config: &DistillConfig) -> Result<()> {
    if config.soft_labels.is_none() {
        return Ok(());
    }
    if config.meal.teacher_bn == TeacherBn::Train {
        return Err(Error::Config(
            "soft_labels: meal.teacher_bn = \"train\" runs the teachers on batch statistics \
             (MEAL V1), so their outputs depend on the rest of each batch and cannot be cached; \
             set meal.teacher_bn = \"eval\" (MEAL V2) to use the store, or drop soft_labels to \
             distil from live teachers"
                .into(),
        ));
    }
    if let Some((i, _)) = config
        .meal
        .stages
        .iter()
        .enumerate()
        .find(|(_, s)| s.index != -1 || s.out_dim.is_some())
    {
        return Err(Error::Config(format!(
            "soft_labels: meal.stages[{i}] matches an intermediate stage, but a soft-label store \
             holds only the teachers' logits; keep meal.stages = [{{ index = -1 }}] or drop \
             soft_labels to distil from live teachers"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_keep_the_probability_mass() {
        let row = [0.5f32, -1.0, 3.0, 2.0, 0.1, -4.0];
        let mut rec = Vec::new();
        encode_row(&row, row.len(), &mut rec).unwrap();
        let mut back = [0f32; 6];
        decode_row(&rec, row.len(), &mut back);
        assert_eq!(back, row);

        let softmax = |r: &[f32]| {
            let s: f64 = r.iter().map(|&v| (v as f64).exp()).sum();
            r.iter().map(|&v| (v as f64).exp() / s).collect::<Vec<_>>()
        };
        rec.clear();
        encode_row(&row, 2, &mut rec).unwrap();
        decode_row(&rec, 2, &mut back);
        assert_eq!((back[2], back[3]), (3.0, 2.0));
        let (p, q) = (softmax(&row), softmax(&back));
        for c in [2, 3] {
            assert!(
                (p[c] - q[c]).abs() < 1e-6,
                "class {c}: {} vs {}",
                p[c],
                q[c]
            );
        }
        let rest: f64 = [0, 1, 4, 5].iter().map(|&c| p[c]).sum();
        for c in [0, 1, 4, 5] {
            assert!((q[c] - rest / 4.0).abs() < 1e-6);
        }
        assert!(encode_row(&[1.0, f32::NAN], 1, &mut rec).is_err());
    }
}
