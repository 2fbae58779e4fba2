//! `meal cache-teachers`: runs the teachers once over K recorded views of every training image
//! and writes a soft-label store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::format::{
    CrcWriter, DEFAULT_TOP_K, DatasetFingerprint, MAGIC, PREAMBLE, StoreHeader, StoredTeacher,
    VERSION, encode_row, encode_view,
};
use crate::data::transform::CROP_PADDING;
use crate::data::{DataConfig, Loader, LoaderConfig, sample_rng};
use crate::distill::config::{TeacherBn, TeacherSpec};
use crate::distill::teachers::{file_identity, load_teacher_specs, measure_teachers, teacher_file};
use crate::error::{Error, Result};
use crate::progress;

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

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Runs the teachers (eval mode) on every training image under `views` recorded crops and
/// flips and writes the store to `out` atomically (temp file, fsync, rename). View v of image
/// i is the training transform drawn from `sample_rng(seed, v, i)`, as the live loader draws it
/// in epoch v: a padded crop + flip for 32×32 data, a RandomResizedCrop box + flip for photos.
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
    // The dataset must record its views before hours of teacher time are spent.
    let (_, _, probe) = train.get_drawn(0, &mut sample_rng(opts.seed, 0, 0))?;
    if train.skips_corrupt() {
        return Err(Error::Config(
            "data.skip_corrupt: a soft-label store needs every training image; remove or \
             replace the corrupt files, then cache the teachers"
                .into(),
        ));
    }
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
        let names: Vec<_> = teachers.iter().map(|t| t.name.clone()).collect();
        let test_loader = Loader::new(splits.test.clone(), LoaderConfig::eval(opts.batch_size));
        measure_teachers(
            &names,
            &evals,
            &metas,
            train.normalization(),
            &test_loader,
            &plain,
        )?
    };
    for (arch, _, acc) in &report.teachers {
        progress::say(format!("  teacher {arch:<16} test top-1 {:.2}%", acc.top1));
    }
    let n = train.len();
    let header = StoreHeader {
        meal_version: env!("CARGO_PKG_VERSION").to_string(),
        images: n,
        views: opts.views,
        classes,
        top_k,
        seed: opts.seed,
        crop_padding: CROP_PADDING,
        view_kind: probe.kind(),
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
    .recording_views();
    let bar = progress::bar(loader.num_batches() * opts.views, "teachers");
    let mut record = Vec::new();
    for v in 0..opts.views {
        let mut next = 0;
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
            let rows = teachers
                .iter()
                .map(|t| crate::backend::read::floats(t.forward(&x).logits, "a teacher's logits"))
                .collect::<Result<Vec<_>>>()
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })?;
            record.clear();
            for (j, &i) in batch.indices.iter().enumerate() {
                // Cells are written in dataset order: each batch must continue the last one.
                if i != next || batch.views.len() != batch.len() {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(Error::Distill(format!(
                        "cache-teachers: the loader gave training image {i} where {next} was \
                         due; {} was not written",
                        out.display()
                    )));
                }
                next += 1;
                encode_view(batch.views[j], &mut record);
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
