//! WebDataset tar shards (`data.format = "webdataset"`): samples are consecutive tar members
//! sharing a key (the member path up to the first dot of its file name), one image
//! (`.jpg`/`.jpeg`/`.png`, decoded by content) and one `.cls` (the class index as text).
//!
//! Opening reads the tar headers of every shard once (streamed, the `tar` crate; image bytes are
//! skipped) and keeps where each image lies; a sample is then read by its offset. So shuffling
//! is the loader's per-epoch permutation of all samples, keyed by the seed, as for folders: the
//! same images in the same order for a seed whatever the workers, and a stronger shuffle than
//! webdataset's shard order + in-memory buffer.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::RgbImage;
use rand_chacha::ChaCha8Rng;

use super::transform::{decode_image_bytes, photo_drawn, photo_sample};
use super::view::{View, ViewKind, wrong_kind};
use super::{DataError, Dataset, InputSettings, Normalization};

/// Expands one brace range, `train-{000000..000009}.tar` → `train-000000.tar` … (the width of
/// the first bound is kept); a pattern without braces is itself. Whitespace separates patterns.
pub fn expand_shards(patterns: &str) -> Result<Vec<String>, DataError> {
    let mut out = Vec::new();
    for p in patterns.split_whitespace() {
        let (Some(open), Some(close)) = (p.find('{'), p.find('}')) else {
            out.push(p.to_string());
            continue;
        };
        let bad = || {
            DataError::Config(format!(
                "shard pattern {p:?}: expected one range like train-{{000000..000009}}.tar"
            ))
        };
        if close < open || p[close + 1..].contains('{') {
            return Err(bad());
        }
        let (lo, hi) = p[open + 1..close].split_once("..").ok_or_else(bad)?;
        let (a, b) = (
            lo.parse::<u64>().map_err(|_| bad())?,
            hi.parse::<u64>().map_err(|_| bad())?,
        );
        if b < a {
            return Err(bad());
        }
        for i in a..=b {
            out.push(format!(
                "{}{:0width$}{}",
                &p[..open],
                i,
                &p[close + 1..],
                width = lo.len()
            ));
        }
    }
    if out.is_empty() {
        return Err(DataError::Config("no shards given".into()));
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct Sample {
    shard: usize,
    offset: u64,
    len: u64,
    /// `<shard>:<member>`, for messages.
    name: PathBuf,
    label: usize,
}

/// One split stored as WebDataset shards.
#[derive(Debug, Clone)]
pub struct ShardDataset {
    shards: Vec<PathBuf>,
    samples: Vec<Sample>,
    class_names: Vec<String>,
    split: String,
    image_size: usize,
    input: InputSettings,
    skip_corrupt: bool,
}

fn is_image_ext(ext: &str) -> bool {
    matches!(ext.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")
}

/// The samples of one shard, in member order.
fn scan(shard: &Path, index: usize) -> Result<Vec<Sample>, DataError> {
    let file = File::open(shard).map_err(|e| DataError::io(shard, e))?;
    let mut archive = tar::Archive::new(file);
    let mut out = Vec::new();
    // The key being gathered: (key, image (offset, len, member), label).
    type Pending = (String, Option<(u64, u64, String)>, Option<usize>);
    let mut pending: Option<Pending> = None;
    let finish = |p: Pending, out: &mut Vec<Sample>| -> Result<(), DataError> {
        let (key, image, label) = p;
        match (image, label) {
            (Some((offset, len, member)), Some(label)) => {
                out.push(Sample {
                    shard: index,
                    offset,
                    len,
                    name: PathBuf::from(format!("{}:{member}", shard.display())),
                    label,
                });
                Ok(())
            }
            (None, _) => Err(DataError::format(
                shard,
                format!("sample {key:?} has no .jpg/.jpeg/.png member"),
            )),
            (_, None) => Err(DataError::format(
                shard,
                format!("sample {key:?} has no .cls member"),
            )),
        }
    };
    let entries = archive
        .entries()
        .map_err(|e| DataError::format(shard, format!("not a tar file: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| DataError::format(shard, format!("corrupt tar: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = entry
            .path()
            .map_err(|e| DataError::format(shard, format!("member name: {e}")))?
            .to_string_lossy()
            .into_owned();
        let base_start = member.rfind('/').map_or(0, |i| i + 1);
        let Some(dot) = member[base_start..].find('.').map(|d| base_start + d) else {
            continue;
        };
        let (key, ext) = (&member[..dot], &member[dot + 1..]);
        if pending.as_ref().is_some_and(|p| p.0 != key) {
            finish(pending.take().expect("checked"), &mut out)?;
        }
        let p = pending.get_or_insert_with(|| (key.to_string(), None, None));
        if is_image_ext(ext) {
            p.1 = Some((entry.raw_file_position(), entry.size(), member.clone()));
        } else if ext == "cls" {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| DataError::format(shard, format!("{member}: {e}")))?;
            let label = text.trim().parse::<usize>().map_err(|_| {
                DataError::format(
                    shard,
                    format!("{member}: expected a class index, found {:?}", text.trim()),
                )
            })?;
            p.2 = Some(label);
        }
    }
    if let Some(p) = pending {
        finish(p, &mut out)?;
    }
    Ok(out)
}

impl ShardDataset {
    /// Indexes the shards `patterns` (see [`expand_shards`]; relative to `root`).
    pub fn open(
        root: &Path,
        split: &str,
        patterns: &str,
        image_size: usize,
    ) -> Result<Self, DataError> {
        let shards: Vec<PathBuf> = expand_shards(patterns)?
            .into_iter()
            .map(|s| root.join(s))
            .collect();
        let mut samples = Vec::new();
        for (i, s) in shards.iter().enumerate() {
            samples.extend(scan(s, i)?);
        }
        if samples.is_empty() {
            return Err(DataError::format(&shards[0], "the shards hold no samples"));
        }
        let k = samples.iter().map(|s| s.label).max().unwrap_or(0) + 1;
        Ok(ShardDataset {
            shards,
            samples,
            class_names: (0..k).map(|i| i.to_string()).collect(),
            split: split.to_string(),
            image_size,
            input: InputSettings::default(),
            skip_corrupt: false,
        })
    }

    /// Uses these class names (their count must cover every label).
    pub fn with_classes(mut self, names: Vec<String>) -> Result<Self, DataError> {
        if let Some(s) = self.samples.iter().find(|s| s.label >= names.len()) {
            return Err(DataError::format(
                &s.name,
                format!(
                    "class index {} is out of range: the training shards have {} classes",
                    s.label,
                    names.len()
                ),
            ));
        }
        self.class_names = names;
        Ok(self)
    }

    pub fn with_input(mut self, input: InputSettings, skip_corrupt: bool) -> Self {
        self.input = input;
        self.skip_corrupt = skip_corrupt;
        self
    }

    fn decode(&self, index: usize) -> Result<(&Sample, RgbImage), DataError> {
        let s = self.samples.get(index).ok_or(DataError::Index {
            index,
            len: self.samples.len(),
        })?;
        Ok((s, decode_image_bytes(self.read(s)?, &s.name)?))
    }

    fn read(&self, s: &Sample) -> Result<Vec<u8>, DataError> {
        let shard = &self.shards[s.shard];
        let mut f = File::open(shard).map_err(|e| DataError::io(shard, e))?;
        f.seek(SeekFrom::Start(s.offset))
            .map_err(|e| DataError::io(&s.name, e))?;
        let mut bytes = vec![0u8; s.len as usize];
        f.read_exact(&mut bytes)
            .map_err(|e| DataError::io(&s.name, e))?;
        Ok(bytes)
    }
}

impl Dataset for ShardDataset {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }

    fn label(&self, index: usize) -> usize {
        self.samples[index].label
    }

    fn normalization(&self) -> Normalization {
        Normalization::IMAGENET
    }

    fn output_shape(&self) -> [usize; 3] {
        [3, self.image_size, self.image_size]
    }

    fn skips_corrupt(&self) -> bool {
        self.skip_corrupt
    }

    fn input_settings(&self) -> Option<InputSettings> {
        Some(self.input)
    }

    fn describe(&self) -> String {
        format!(
            "webdataset, {} split, {} samples in {} shards, {} classes, {}px ({}, crop {})",
            self.split,
            self.samples.len(),
            self.shards.len(),
            self.class_names.len(),
            self.image_size,
            self.input.interpolation.name(),
            self.input.crop_pct
        )
    }

    fn get(
        &self,
        index: usize,
        augment: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize), DataError> {
        let (s, img) = self.decode(index)?;
        let x = photo_sample(
            &img,
            &s.name,
            augment,
            self.image_size,
            self.input,
            Normalization::IMAGENET,
            rng,
        )?;
        Ok((x, s.label))
    }

    fn get_drawn(
        &self,
        index: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize, View), DataError> {
        let (s, img) = self.decode(index)?;
        let (x, view) = photo_drawn(
            &img,
            &s.name,
            self.image_size,
            self.input,
            Normalization::IMAGENET,
            rng,
        )?;
        Ok((x, s.label, View::Box(view)))
    }

    fn get_view(&self, index: usize, view: View) -> Result<(Vec<f32>, usize), DataError> {
        let View::Box(view) = view else {
            return Err(wrong_kind(&self.describe(), ViewKind::Box, view));
        };
        let (s, img) = self.decode(index)?;
        let x = view.sample(
            &img,
            &s.name,
            self.image_size,
            self.input.interpolation,
            Normalization::IMAGENET,
        )?;
        Ok((x, s.label))
    }
}
