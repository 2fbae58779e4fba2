//! The teachers of a distillation run: where their weights are, loading them frozen on the
//! training device, and their test accuracy (alone and as an ensemble), the bar the student is
//! held to.

use std::path::{Path, PathBuf};

use burn::module::Module;
use serde::{Deserialize, Serialize};

use super::config::{DistillConfig, TeacherBn, TeacherSpec};
use super::objective::Teacher;
use crate::data::{Dataset, Loader, Normalization};
use crate::error::{Error, Result};
use crate::models::{Net, arch_info};
use crate::train::evaluate::{Accuracy, Renorm, evaluate_renormalized};
use crate::train::model_io::{self, ModelMeta};
use crate::train::run_dir::resolve_checkpoint;

/// Test accuracy of each teacher and of their ensemble, measured once at the start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeacherReport {
    pub teachers: Vec<(String, String, Accuracy)>,
    pub ensemble: Accuracy,
}

/// The weights file of a teacher spec, as `load_teachers` reads it.
pub fn teacher_file(spec: &TeacherSpec) -> PathBuf {
    match &spec.pytorch {
        Some(p) => p.clone(),
        None => resolve_checkpoint(&spec.checkpoint.clone().unwrap_or_default()),
    }
}

/// The size and CRC-32 of a teacher's weights file: how a soft-label store recognises it.
pub fn file_identity(path: &Path) -> Result<(u64, u32)> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::file(path, format!("cannot read the teacher's weights ({e})")))?;
    let mut crc = flate2::Crc::new();
    crc.update(&bytes);
    Ok((bytes.len() as u64, crc.sum()))
}

fn teacher_checkpoint(i: usize, spec: &TeacherSpec) -> Result<PathBuf> {
    let path = resolve_checkpoint(&spec.checkpoint.clone().unwrap_or_default());
    if !path.exists() {
        return Err(Error::Config(format!(
            "teachers[{i}].checkpoint: {} does not exist; train one with `meal train` (or import it)",
            path.display()
        )));
    }
    Ok(path)
}

/// Checks that every teacher's weights file exists, before a run folder is created; loading
/// and checking the weights themselves is left to [`load_teachers`].
pub fn check_files(specs: &[TeacherSpec]) -> Result<()> {
    for (i, spec) in specs.iter().enumerate() {
        match (&spec.pytorch, &spec.arch) {
            (Some(file), Some(_)) if spec.checkpoint.is_none() => {
                if !file.exists() {
                    return Err(Error::Config(format!(
                        "teachers[{i}].pytorch: {} does not exist",
                        file.display()
                    )));
                }
            }
            _ => {
                teacher_checkpoint(i, spec)?;
            }
        }
    }
    Ok(())
}

/// Loads the teachers on the training device, frozen, in the configured BatchNorm mode.
pub fn load_teachers(
    config: &DistillConfig,
    train_set: &dyn Dataset,
) -> Result<(Vec<Teacher>, Vec<ModelMeta>)> {
    load_teacher_specs(&config.teachers, config.meal.teacher_bn, train_set)
}

/// [`load_teachers`] of a list of teachers, in BatchNorm mode `bn`.
pub fn load_teacher_specs(
    specs: &[TeacherSpec],
    bn: TeacherBn,
    train_set: &dyn Dataset,
) -> Result<(Vec<Teacher>, Vec<ModelMeta>)> {
    let device = crate::backend::autodiff_device();
    let mut teachers = Vec::new();
    let mut metas = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (net, meta, path) = match (&spec.checkpoint, &spec.pytorch, &spec.arch) {
            (None, Some(file), Some(arch)) => {
                let own = spec
                    .mean
                    .zip(spec.std)
                    .map(|(mean, std)| crate::data::Normalization { mean, std });
                let own = own.or(Some(train_set.normalization()));
                let (net, meta) = crate::interop::load_pytorch_teacher(arch, file, own, &device)
                    .map_err(|e| Error::Config(format!("teachers[{i}].pytorch: {e}")))?;
                (net, meta, file.clone())
            }
            _ => {
                let path = teacher_checkpoint(i, spec)?;
                let (net, meta, _) = model_io::load_model(&path, &device)?;
                (net, meta, path)
            }
        };
        if meta.num_classes != train_set.num_classes() {
            return Err(Error::checkpoint(
                &path,
                format!(
                    "teacher has {} classes but the dataset has {}",
                    meta.num_classes,
                    train_set.num_classes()
                ),
            ));
        }
        let net = match bn {
            // Frozen weights, BatchNorm still on batch statistics (MEAL V1's default).
            TeacherBn::Train => net.no_grad(),
            TeacherBn::Eval => net.freeze(),
        };
        let stages = arch_info(&meta.arch)?.stages;
        teachers.push(
            Teacher::new(
                format!("{}:{}", meta.arch, path.display()),
                net,
                stages,
                train_set.normalization(),
                meta.normalization,
            )
            .without_autodiff(bn),
        );
        metas.push(meta);
    }
    Ok((teachers, metas))
}

/// Each teacher's and the ensemble's accuracy on `test`, each teacher seeing the inputs in its
/// own normalisation. `evals` are the teachers' networks in evaluation form, in `metas` order.
pub fn measure_teachers(
    names: &[String],
    evals: &[Net],
    metas: &[ModelMeta],
    data: Normalization,
    test: &Loader,
    device: &burn::tensor::Device,
) -> Result<TeacherReport> {
    let refs: Vec<_> = evals.iter().collect();
    let renorms: Vec<_> = metas
        .iter()
        .map(|m| Renorm::between(data, m.normalization))
        .collect();
    let (each, ensemble) = evaluate_renormalized(&refs, &renorms, test, device)?;
    Ok(TeacherReport {
        teachers: names
            .iter()
            .zip(metas)
            .zip(each)
            .map(|((name, m), a)| (m.arch.clone(), name.clone(), a))
            .collect(),
        ensemble,
    })
}

/// A report written by [`measure_teachers`]' caller into a run folder (`teachers.json`).
pub fn read_report(path: &Path) -> Result<TeacherReport> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, e))
}
