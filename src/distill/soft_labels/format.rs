//! The soft-label store's file format (version 1).
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
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Normalization, sample_rng};
use crate::distill::teachers::TeacherReport;
use crate::error::Result;

pub(super) const MAGIC: &[u8; 8] = b"MEALSOFT";
pub(super) const VERSION: u32 = 1;
/// Magic, version and header length.
pub(super) const PREAMBLE: usize = 16;
pub(super) const VIEW_BYTES: usize = 3;
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
    pub teachers: Vec<StoredTeacher>,
    pub dataset: DatasetFingerprint,
    /// Each teacher's and the ensemble's test accuracy, measured when the store was made.
    pub report: TeacherReport,
}

impl StoreHeader {
    pub(super) fn record_bytes(&self) -> usize {
        6 * self.top_k + 4
    }

    pub(super) fn views_offset(&self, header_len: usize) -> usize {
        PREAMBLE + header_len
    }

    /// The file size this header describes.
    pub(super) fn file_size(&self, header_len: usize) -> Option<usize> {
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
}
