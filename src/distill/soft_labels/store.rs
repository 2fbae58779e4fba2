//! A soft-label store read into memory, verified, and served to a distillation run.

use std::path::{Path, PathBuf};

use super::format::{
    DatasetFingerprint, Layout, MAGIC, PREAMBLE, StoreHeader, VERSION, VERSION_1, decode_row,
    decode_view,
};
use crate::data::transform::CROP_PADDING;
use crate::data::{Dataset, View, ViewKind};
use crate::distill::config::TeacherSpec;
use crate::distill::teachers::{file_identity, teacher_file};
use crate::error::{Error, Result};

/// A soft-label store read into memory and verified.
pub struct SoftLabelStore {
    pub path: PathBuf,
    pub header: StoreHeader,
    /// The file's format version (1 or 2).
    pub version: u32,
    bytes: Vec<u8>,
    layout: Layout,
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
        if version != VERSION && version != VERSION_1 {
            return Err(bad(format!(
                "soft-label store format version {version}, this meal reads versions \
                 {VERSION_1} and {VERSION}; {REBUILD}"
            )));
        }
        let header_len = u32_at(12) as usize;
        let header: Option<StoreHeader> = bytes
            .get(PREAMBLE..PREAMBLE.saturating_add(header_len))
            .and_then(|h| serde_json::from_slice(h).ok());
        let layout = header
            .as_ref()
            .and_then(|h| Layout::of(version, h, header_len));
        if let Some(size) = layout.map(|l| l.size)
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
        let Some(layout) = layout else {
            return Err(bad(format!("the header's counts overflow; {REBUILD}")));
        };
        if header.top_k == 0
            || header.top_k > header.classes
            || header.classes > u16::MAX as usize + 1
            || header.views == 0
            || header.teachers.is_empty()
            || (header.view_kind == ViewKind::Padded && header.crop_padding != CROP_PADDING)
            || (version == VERSION_1 && header.view_kind != ViewKind::Padded)
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
        let store = Self {
            path: path.to_path_buf(),
            header,
            version,
            bytes,
            layout,
        };
        store.check_contents()?;
        Ok(store)
    }

    /// Crops inside their images, flips of 0 or 1 and class indices below the class count, so
    /// that later lookups cannot panic on a file that passed its CRC but was written wrongly.
    fn check_contents(&self) -> Result<()> {
        let h = &self.header;
        let l = &self.layout;
        for cell in 0..h.images * h.views {
            let b = &self.bytes[l.view(cell)..][..l.view_bytes];
            if decode_view(h.view_kind, b).is_none() {
                return Err(Error::file(
                    &self.path,
                    format!(
                        "view {cell} holds an impossible {} {b:?}; {REBUILD}",
                        h.view_kind.describe()
                    ),
                ));
            }
        }
        let k = h.top_k;
        for cell in 0..h.images * h.views {
            for t in 0..h.teachers.len() {
                let rec = &self.bytes[l.record(cell, t)..][..l.record_bytes];
                for j in 0..k {
                    let c = u16::from_le_bytes([rec[4 * k + 2 * j], rec[4 * k + 2 * j + 1]]);
                    if c as usize >= h.classes {
                        return Err(Error::file(
                            &self.path,
                            format!(
                                "record {} names class {c} of {}; {REBUILD}",
                                cell * h.teachers.len() + t,
                                h.classes
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The recorded view (crop and flip) of image `index` in view `view`.
    pub fn view(&self, index: usize, view: usize) -> View {
        let l = &self.layout;
        let cell = view * self.header.images + index;
        decode_view(
            self.header.view_kind,
            &self.bytes[l.view(cell)..][..l.view_bytes],
        )
        .expect("views are checked when the store is opened")
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
        let mut out = vec![0f32; indices.len() * c];
        for (row, &i) in out.chunks_mut(c).zip(indices) {
            let at = self.layout.record(view * h.images + i, teacher);
            decode_row(&self.bytes[at..][..self.layout.record_bytes], h.top_k, row);
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
