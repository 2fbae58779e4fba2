//! `meal distill`'s configuration. Every knob of the reference (spec §1, §4, §6) is here, with
//! defaults that reproduce MEAL V1's released behaviour unless a comment says otherwise; the
//! known flaws of the reference are switches (`adversarial`, `discriminator`, `teacher_bn`,
//! `schedule.reference_step_first`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::discriminator::DiscriminatorKind;
use super::pool::PoolKind;
use super::similarity::SimilarityKind;
use crate::backend::DeviceSpec;
use crate::data::DataConfig;
use crate::error::{Error, Result};
use crate::train::config::{
    check_common, default_batch, default_epochs, default_eval_batch, default_lr, default_out_dir,
    default_workers,
};
use crate::train::optim::SgdSettings;
use crate::train::schedule::ScheduleConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Prefix of the run folder name.
    #[serde(default)]
    pub name: Option<String>,
    /// Student architecture (see `meal models`).
    pub student: String,
    /// Start the student from this checkpoint (MEAL V2 starts from a trained student).
    #[serde(default)]
    pub student_init: Option<PathBuf>,
    pub teachers: Vec<TeacherSpec>,
    pub data: DataConfig,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    /// Student learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Student optimizer (the reference shares momentum and weight decay with the D's).
    #[serde(default)]
    pub optimizer: SgdSettings,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_workers")]
    pub num_workers: usize,
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
    /// Use exactly this run folder instead of `<out_dir>/<name>-<timestamp>`.
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
    /// Compute device (`--device` overrides it); checkpoints load on any device.
    #[serde(default)]
    pub device: DeviceSpec,
    #[serde(default)]
    pub meal: MealConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherSpec {
    /// A `meal train` checkpoint (or run folder: its best.ckpt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<PathBuf>,
    /// A PyTorch state dict or checkpoint (.pth/.pt/.t7/.safetensors) to import, with `arch`
    /// (instead of `checkpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pytorch: Option<PathBuf>,
    /// Zoo architecture of `pytorch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Input normalisation `pytorch` was trained with (default: the dataset's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<[f32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<[f32; 3]>,
    /// Weight in `combine = "weighted"` (ignored otherwise).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

impl TeacherSpec {
    /// A teacher from a meal checkpoint.
    pub fn checkpoint(path: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint: Some(path.into()),
            pytorch: None,
            arch: None,
            mean: None,
            std: None,
            weight: 1.0,
        }
    }

    /// Exactly one of `checkpoint` and `pytorch`; `arch` (and `mean`/`std`) only with `pytorch`.
    pub fn validate(&self, i: usize) -> Result<()> {
        let err = |m: String| Err(Error::Config(format!("teachers[{i}]: {m}")));
        match (&self.checkpoint, &self.pytorch, &self.arch) {
            (Some(_), Some(_), _) => {
                return err("give either `checkpoint` or `pytorch`, not both".into());
            }
            (None, None, _) => {
                return err("needs `checkpoint = \"...\"` or `arch` + `pytorch = \"...\"`".into());
            }
            (None, Some(_), None) => {
                return err("`pytorch` needs `arch` (the zoo architecture of the weights)".into());
            }
            (None, Some(_), Some(arch)) => {
                crate::models::arch_info(arch)
                    .map_err(|e| Error::Config(format!("teachers[{i}].arch: {e}")))?;
                if self.mean.is_some() != self.std.is_some() {
                    return err("give both `mean` and `std`, or neither".into());
                }
                if self
                    .std
                    .is_some_and(|s| s.iter().any(|&v| v.is_nan() || v <= 0.0))
                {
                    return err("`std` values must be positive".into());
                }
            }
            (Some(_), None, _) => {
                if self.arch.is_some() || self.mean.is_some() || self.std.is_some() {
                    return err("`arch`, `mean` and `std` go with `pytorch`; a meal checkpoint carries its own".into());
                }
            }
        }
        Ok(())
    }
}

/// How several teachers become one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Combine {
    /// One teacher drawn uniformly per mini-batch (MEAL V1).
    #[default]
    Random,
    /// Mean of the teachers' probabilities; D sees the mean of their outputs (MEAL V2).
    MeanSoftmax,
    /// Fixed weights from `teachers[].weight`, normalised to sum to one.
    Weighted,
}

/// Teacher BatchNorm during distillation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeacherBn {
    /// Batch statistics (and running-buffer updates), as the V1 reference (`--teacher_eval 0`).
    #[default]
    Train,
    /// Running statistics (V2, and `--teacher_eval 1`).
    Eval,
}

/// How the discriminators' objective reaches the student.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdversarialMode {
    /// The reference: student and D jointly minimise similarity + D loss with one backward.
    #[default]
    Joint,
    /// Gradient reversal on the discriminator input: the paper's min-max.
    Grl,
    /// GAN-style: a D step on detached outputs, then a student step that tries to fool D.
    Alternating,
    /// No discriminators (similarity loss only).
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MealConfig {
    #[serde(default)]
    pub combine: Combine,
    #[serde(default)]
    pub teacher_bn: TeacherBn,
    /// Matched outputs. Default: the logits only (the released ensemble recipe).
    #[serde(default = "default_stages")]
    pub stages: Vec<StageSpec>,
    /// Spatial pooling and channel reduction of stage features (`--pool_out`).
    #[serde(default)]
    pub pool: PoolKind,
    #[serde(default)]
    pub similarity: SimilarityKind,
    /// Softmax temperature of the similarity loss (ce/kl are scaled by T²). 1 = reference.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Weight of a hard-label cross-entropy term (0 = reference: no labels).
    #[serde(default)]
    pub alpha: f64,
    #[serde(default)]
    pub adversarial: AdversarialMode,
    #[serde(default)]
    pub discriminator: DiscriminatorKind,
    /// Discriminator learning rate (`--d_lr`; the released scripts use 1e-3).
    #[serde(default = "default_d_lr")]
    pub d_lr: f64,
    /// Discriminator weight decay; default: the student's (the reference shares it).
    #[serde(default)]
    pub d_weight_decay: Option<f64>,
    /// Whether the student's schedule also scales d_lr (true in the reference's MultiStepLR).
    #[serde(default = "yes")]
    pub d_lr_follows_schedule: bool,
}

fn yes() -> bool {
    true
}

fn default_d_lr() -> f64 {
    1e-3
}

fn default_stages() -> Vec<StageSpec> {
    vec![StageSpec {
        index: -1,
        out_dim: None,
        gamma: 1.0,
        eta: 1.0,
    }]
}

impl Default for MealConfig {
    fn default() -> Self {
        Self {
            combine: Combine::default(),
            teacher_bn: TeacherBn::default(),
            stages: default_stages(),
            pool: PoolKind::default(),
            similarity: SimilarityKind::default(),
            temperature: 1.0,
            alpha: 0.0,
            adversarial: AdversarialMode::default(),
            discriminator: DiscriminatorKind::default(),
            d_lr: default_d_lr(),
            d_weight_decay: None,
            d_lr_follows_schedule: true,
        }
    }
}

/// One matched output. `index` counts in the model's output list (stage feature maps, then
/// the logits); negative values count from the end, so -1 is the logits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub index: i64,
    /// Pooled length of a feature stage (the reference's `out_dims`); must be omitted or equal
    /// to the class count for the logits.
    #[serde(default)]
    pub out_dim: Option<usize>,
    /// Similarity weight γ.
    #[serde(default = "one")]
    pub gamma: f64,
    /// Discriminator weight η.
    #[serde(default = "one")]
    pub eta: f64,
}

impl DistillConfig {
    pub fn validate(&self) -> Result<()> {
        crate::models::arch_info(&self.student)
            .map_err(|e| Error::Config(format!("student: {e}")))?;
        if self.teachers.is_empty() {
            return Err(Error::Config(
                "teachers: at least one teacher checkpoint is required ([[teachers]] checkpoint = \"...\")".into(),
            ));
        }
        for (i, t) in self.teachers.iter().enumerate() {
            t.validate(i)?;
            if !(t.weight >= 0.0 && t.weight.is_finite()) {
                return Err(Error::Config(format!(
                    "teachers[{i}].weight must be >= 0, got {}",
                    t.weight
                )));
            }
        }
        if self.meal.combine == Combine::Weighted
            && self.teachers.iter().map(|t| t.weight).sum::<f64>() <= 0.0
        {
            return Err(Error::Config(
                "teachers[].weight: combine = \"weighted\" needs a positive total weight".into(),
            ));
        }
        check_common(
            self.epochs,
            self.batch_size,
            self.eval_batch_size,
            self.lr,
            &self.optimizer,
            "",
        )?;
        self.schedule.validate(self.epochs)?;
        let m = &self.meal;
        if m.stages.is_empty() && m.alpha == 0.0 {
            return Err(Error::Config(
                "meal.stages: empty and alpha = 0 leaves nothing to learn from".into(),
            ));
        }
        for (i, s) in m.stages.iter().enumerate() {
            for (key, v) in [("gamma", s.gamma), ("eta", s.eta)] {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(Error::Config(format!(
                        "meal.stages[{i}].{key} must be >= 0, got {v}"
                    )));
                }
            }
            if s.out_dim == Some(0) {
                return Err(Error::Config(format!(
                    "meal.stages[{i}].out_dim must be at least 1"
                )));
            }
        }
        if !(m.temperature > 0.0 && m.temperature.is_finite()) {
            return Err(Error::Config(format!(
                "meal.temperature must be > 0, got {}",
                m.temperature
            )));
        }
        if !(m.alpha >= 0.0 && m.alpha.is_finite()) {
            return Err(Error::Config(format!(
                "meal.alpha must be >= 0, got {}",
                m.alpha
            )));
        }
        if !(m.d_lr >= 0.0 && m.d_lr.is_finite()) {
            return Err(Error::Config(format!(
                "meal.d_lr must be >= 0, got {}",
                m.d_lr
            )));
        }
        if let Some(wd) = m.d_weight_decay
            && !(wd >= 0.0 && wd.is_finite())
        {
            return Err(Error::Config(format!(
                "meal.d_weight_decay must be >= 0, got {wd}"
            )));
        }
        Ok(())
    }
}

impl crate::train::run::RunConfig for DistillConfig {
    const WHAT: &'static str = "distill config";
    fn validate(&self) -> Result<()> {
        DistillConfig::validate(self)
    }
    fn run_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("distill-{}", self.student))
    }
    fn run_dir(&self) -> Option<&std::path::Path> {
        self.run_dir.as_deref()
    }
    fn out_dir(&self) -> &std::path::Path {
        &self.out_dir
    }
    fn seed(&self) -> u64 {
        self.seed
    }
    fn data(&self) -> &DataConfig {
        &self.data
    }
    fn device(&self) -> DeviceSpec {
        self.device
    }
}
