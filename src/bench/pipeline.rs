//! The input pipeline's throughput: decode + RandomResizedCrop + flip + normalise of an image
//! folder's training split through the batch loader with N workers, timed over whole passes.
//! scripts/bench/data_pipeline.sh runs torchvision's ImageFolder + DataLoader on the same files
//! with the same transforms and workers beside it.

use std::path::PathBuf;

use serde::Serialize;

use super::timing::{Throughput, measure};
use crate::data::{self, DataConfig, DataFormat, Interpolation, Loader, LoaderConfig};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// An image folder (`train/<class>/*`).
    pub data: PathBuf,
    pub workers: usize,
    pub batch: usize,
    pub image_size: usize,
    pub interpolation: Interpolation,
    /// Untimed passes first.
    pub warmup: usize,
    /// Timed passes over the training split.
    pub passes: usize,
}

/// One measurement, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub bench: &'static str,
    pub data: String,
    pub images: usize,
    pub workers: usize,
    pub batch: usize,
    pub image_size: usize,
    pub interpolation: &'static str,
    pub images_per_s: Throughput,
    /// Decoding alone (the JPEG decoder's share), one thread, images/s over one pass.
    pub decode_per_s: f64,
    /// Which library decoded the JPEGs (the `turbojpeg` build's or the image crate's).
    pub jpeg_decoder: &'static str,
    pub cpu: String,
}

impl PipelineReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn to_text(&self) -> String {
        format!(
            "input pipeline: {} images of {}, {} workers, batch {}, {}px {}\n  {:.1} images/s \
             (median pass {:.1} ms; range {:.1} to {:.1}); decoding alone ({}) {:.1} images/s \
             on one thread; on {}",
            self.images,
            self.data,
            self.workers,
            self.batch,
            self.image_size,
            self.interpolation,
            self.images_per_s.median,
            self.images_per_s.median_ms,
            self.images_per_s.min,
            self.images_per_s.max,
            self.jpeg_decoder,
            self.decode_per_s,
            self.cpu
        )
    }
}

/// Times whole training passes of the loader (see the module documentation).
pub fn run_pipeline(o: &PipelineOptions) -> Result<PipelineReport> {
    let mut cfg = DataConfig::new(&o.data);
    cfg.format = DataFormat::Folder;
    cfg.image_size = Some(o.image_size);
    cfg.interpolation = Some(o.interpolation);
    let splits = data::open(&cfg)?;
    let images = splits.train.len();
    let files: Vec<PathBuf> = crate::data::folder::FolderDataset::open(
        &o.data,
        "train",
        &splits.train.class_names(),
        o.image_size,
    )?
    .files()
    .to_vec();
    let t = std::time::Instant::now();
    for f in &files {
        crate::data::transform::decode_image(f)?;
    }
    let decode_per_s = files.len() as f64 / t.elapsed().as_secs_f64().max(1e-9);
    let loader = Loader::new(
        splits.train,
        LoaderConfig {
            batch_size: o.batch,
            shuffle: true,
            augment: true,
            drop_last: false,
            seed: 0,
            num_workers: o.workers,
            prefetch: 2 * o.workers.max(1),
        },
    );
    let throughput = measure(images, o.warmup, o.passes, |pass| {
        let mut seen = 0;
        for b in loader.epoch(pass) {
            seen += b?.len();
        }
        if seen != images {
            return Err(Error::Other(format!(
                "bench: a pass gave {seen} of {images} images"
            )));
        }
        Ok(())
    })?;
    Ok(PipelineReport {
        bench: "input-pipeline",
        data: o.data.display().to_string(),
        images,
        workers: o.workers,
        batch: o.batch,
        image_size: o.image_size,
        interpolation: o.interpolation.name(),
        images_per_s: throughput,
        decode_per_s,
        jpeg_decoder: if cfg!(feature = "turbojpeg") {
            "libjpeg-turbo"
        } else {
            "zune-jpeg"
        },
        cpu: super::machine::cpu()
            .map(|(name, _)| name)
            .unwrap_or_else(|| "unknown CPU".into()),
    })
}
