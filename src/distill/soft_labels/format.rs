//! The soft-label store's file format (version 2; version 1 is still read).
//!
//! File layout of version 2 (all integers and floats little-endian):
//!
//! ```text
//! offset  size        field
//! 0       8           magic "MEALSOFT"
//! 8       4           format version (u32) = 2
//! 12      4           header length H (u32)
//! 16      H           header: UTF-8 JSON (StoreHeader: counts, k, seed, view kind, teachers
//!                     with file size and CRC-32, dataset fingerprint, teachers' test accuracy)
//! ..      n·V·(B+T·R) cells, for v in 0..V, image i in 0..n: the view (B bytes), then for
//!                     teacher t in 0..T a record of R = 6k + 4 bytes: the k largest logits
//!                     (f32, descending), their classes (u16), and the `rest` logit (f32)
//! end-4   4           CRC-32 (IEEE, as gzip) of every byte before it
//! ```
//!
//! A view is, for 32×32 datasets (`view_kind = "padded"`, B = 3): crop top, crop left (u8,
//! offsets into the image padded by 4) and flip (u8, 0 or 1); for photos (`view_kind = "box"`,
//! B = 25): the RandomResizedCrop box top, left, height, width and the decoded image's height
//! and width (u32 each), then flip (u8). Each image's view sits beside its logits, as Fast
//! Knowledge Distillation stores them, because a photo's box is known only once it is decoded.
//!
//! Version 1 (CIFAR-only stores) had a separate table of all n·V padded views (3 bytes each)
//! after the header, then the n·V·T records, then the CRC; it has no `view_kind` (padded).
//!
//! Reconstruction: the k stored classes get their logits back exactly; every other class gets
//! `rest = logsumexp(other logits) − ln(C − k)`. The softmax of the rebuilt row is then exact on
//! the k classes and spreads the remaining probability mass uniformly over the others (at
//! temperature 1; at other temperatures the rest is approximate). With k = C nothing is
//! rebuilt and the logits are the teachers' own, bit for bit. The default k is 10: every
//! logit of a 10-class dataset, and FKD's choice for ImageNet's 1000 classes.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::{CropBox, CropFlip, Dataset, Normalization, View, ViewKind, sample_rng};
use crate::distill::teachers::TeacherReport;
use crate::error::Result;

pub(super) const MAGIC: &[u8; 8] = b"MEALSOFT";
/// The version this meal writes.
pub(super) const VERSION: u32 = 2;
/// The CIFAR-only version with a separate view table, still read.
pub(super) const VERSION_1: u32 = 1;
/// Magic, version and header length.
pub(super) const PREAMBLE: usize = 16;
/// Images whose eval-transform pixels enter the dataset fingerprint, spread over the split:
/// enough to tell datasets apart without decoding 50,000 images at every start.
const FINGERPRINT_IMAGES: usize = 256;

/// Default k, capped at the class count (so CIFAR-10 and SVHN stores are exact): what FKD
/// keeps of ImageNet's 1000 classes.
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

    pub(super) fn same_data(&self, other: &Self) -> bool {
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
    /// What a view is: a padded crop + flip (32×32 datasets; version 1 stores) or a
    /// RandomResizedCrop box + flip (photos).
    #[serde(default)]
    pub view_kind: ViewKind,
    pub teachers: Vec<StoredTeacher>,
    pub dataset: DatasetFingerprint,
    /// Each teacher's and the ensemble's test accuracy, measured when the store was made.
    pub report: TeacherReport,
}

impl StoreHeader {
    pub(super) fn record_bytes(&self) -> usize {
        6 * self.top_k + 4
    }
}

/// Where the views and records of a store lie in its file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub view_bytes: usize,
    /// Offset of the view of cell 0 (cell = view · n + image) and the step between cells.
    pub views_at: usize,
    pub view_stride: usize,
    /// Offset of teacher 0's record of cell 0 and the step between cells.
    pub records_at: usize,
    pub record_stride: usize,
    pub record_bytes: usize,
    /// The file size.
    pub size: usize,
}

impl Layout {
    /// The layout `header` describes in a file of `version`; `None` when the counts overflow.
    pub fn of(version: u32, header: &StoreHeader, header_len: usize) -> Option<Self> {
        let view_bytes = view_bytes(header.view_kind);
        let cells = header.images.checked_mul(header.views)?;
        let record_bytes = header.record_bytes();
        let records = header.teachers.len().checked_mul(record_bytes)?;
        let start = PREAMBLE.checked_add(header_len)?;
        let (view_stride, records_at, record_stride, body) = if version == VERSION_1 {
            let table = cells.checked_mul(view_bytes)?;
            let body = table.checked_add(cells.checked_mul(records)?)?;
            (view_bytes, start.checked_add(table)?, records, body)
        } else {
            let cell = view_bytes.checked_add(records)?;
            (cell, start + view_bytes, cell, cells.checked_mul(cell)?)
        };
        Some(Layout {
            view_bytes,
            views_at: start,
            view_stride,
            records_at,
            record_stride,
            record_bytes,
            size: start.checked_add(body)?.checked_add(4)?,
        })
    }

    pub fn view(&self, cell: usize) -> usize {
        self.views_at + cell * self.view_stride
    }

    pub fn record(&self, cell: usize, teacher: usize) -> usize {
        self.records_at + cell * self.record_stride + teacher * self.record_bytes
    }
}

/// Bytes of one view of `kind`.
pub(super) fn view_bytes(kind: ViewKind) -> usize {
    match kind {
        ViewKind::Padded => 3,
        ViewKind::Box => 6 * 4 + 1,
    }
}

pub(super) fn encode_view(view: View, out: &mut Vec<u8>) {
    match view {
        View::Padded(v) => out.extend_from_slice(&[v.top, v.left, v.flip as u8]),
        View::Box(b) => {
            for x in [
                b.top,
                b.left,
                b.height,
                b.width,
                b.image_height,
                b.image_width,
            ] {
                out.extend_from_slice(&x.to_le_bytes());
            }
            out.push(b.flip as u8);
        }
    }
}

/// The view in `bytes` (of [`view_bytes`] length), or `None` when a flip byte is not 0 or 1 or
/// the crop lies outside its image.
pub(super) fn decode_view(kind: ViewKind, bytes: &[u8]) -> Option<View> {
    let flip = match bytes[view_bytes(kind) - 1] {
        0 => false,
        1 => true,
        _ => return None,
    };
    match kind {
        ViewKind::Padded => {
            let v = CropFlip {
                top: bytes[0],
                left: bytes[1],
                flip,
            };
            v.is_valid().then_some(View::Padded(v))
        }
        ViewKind::Box => {
            let u = |k: usize| u32::from_le_bytes(bytes[4 * k..4 * k + 4].try_into().expect("4"));
            let b = CropBox {
                top: u(0),
                left: u(1),
                height: u(2),
                width: u(3),
                image_height: u(4),
                image_width: u(5),
                flip,
            };
            b.is_valid().then_some(View::Box(b))
        }
    }
}

/// One row of logits as a record: top-k values, their classes, the rest logit.
pub(super) fn encode_row(
    row: &[f32],
    k: usize,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
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

pub(super) fn decode_row(rec: &[u8], k: usize, out: &mut [f32]) {
    let f32_at = |o: usize| f32::from_le_bytes(rec[o..o + 4].try_into().expect("4 bytes"));
    out.fill(f32_at(6 * k));
    for j in 0..k {
        let c = u16::from_le_bytes(rec[4 * k + 2 * j..4 * k + 2 * j + 2].try_into().expect("2"));
        out[c as usize] = f32_at(4 * j);
    }
}

/// Writes while computing the CRC of everything written.
pub(super) struct CrcWriter<W: Write> {
    pub(super) inner: W,
    pub(super) crc: flate2::Crc,
}

impl<W: Write> CrcWriter<W> {
    pub(super) fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.inner.write_all(bytes)
    }
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

    #[test]
    fn views_round_trip_and_impossible_ones_are_refused() {
        let b = CropBox {
            top: 3,
            left: 70_000,
            height: 9,
            width: 5,
            flip: true,
            image_height: 12,
            image_width: 70_005,
        };
        let p = CropFlip {
            top: 8,
            left: 0,
            flip: false,
        };
        for (kind, view) in [
            (ViewKind::Box, View::Box(b)),
            (ViewKind::Padded, View::Padded(p)),
        ] {
            let mut bytes = Vec::new();
            encode_view(view, &mut bytes);
            assert_eq!(bytes.len(), view_bytes(kind));
            assert_eq!(decode_view(kind, &bytes), Some(view));
            *bytes.last_mut().unwrap() = 2;
            assert_eq!(decode_view(kind, &bytes), None, "flip byte 2");
        }
        let mut bytes = Vec::new();
        encode_view(View::Box(CropBox { height: 10, ..b }), &mut bytes);
        assert_eq!(
            decode_view(ViewKind::Box, &bytes),
            None,
            "box below the image"
        );
    }
}
