//! `meal distill`'s configuration. Every knob of the reference (spec §1, §4, §6) is here, with
//! defaults that reproduce MEAL V1's released behaviour unless a comment says otherwise; the
//! known flaws of the reference are switches (`adversarial`, `discriminator`, `teacher_bn`,
//! `schedule.reference_step_first`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::discriminator::DiscriminatorKind;
use super::pool::PoolKind;
use super::similarity::SimilarityKind;
use crate::error::{Error, Result};
use crate::train::schedule::ScheduleConfig;
use crate::train::settings::{RunConfig, Settings, run_config};

run_config! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DistillConfig {
        /// Student architecture (see `meal models`).
        pub student: String,
        /// Start the student from this checkpoint (MEAL V2 starts from a trained student);
        /// [`STUDENT_INIT_NONE`] says "from random weights" on purpose, where a recipe asks for
        /// one.
        #[serde(default)]
        pub student_init: Option<PathBuf>,
        /// Keys a run cannot do without, though each is optional in general: a recipe declares
        /// them, and the declaration travels with the TOML (a recipe copied into a config file
        /// keeps it). A fresh or resumed run refuses to start while one is unset.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub requires: Vec<Required>,
        /// May be empty with `soft_labels` (the store's teachers are used).
        #[serde(default)]
        pub teachers: Vec<TeacherSpec>,
        /// A `meal cache-teachers` store: the teachers' logits are read from it and no teacher
        /// is loaded (eval-mode teachers and the logits stage only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub soft_labels: Option<PathBuf>,
    }
    then {
        #[serde(default)]
        pub meal: MealConfig,
    }
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

impl Combine {
    /// Every rule, for help texts.
    pub const ALL: [Self; 3] = [Self::Random, Self::MeanSoftmax, Self::Weighted];
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

impl AdversarialMode {
    /// Every mode, for help texts.
    pub const ALL: [Self; 4] = [Self::Joint, Self::Grl, Self::Alternating, Self::None];
}

/// How a unit variant is spelled in a config file (its serde name), e.g. `mean-softmax`.
pub fn config_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => panic!("not a unit variant: {other:?}"),
    }
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
    /// Each discriminator layer is this many times narrower than the previous one: 2 in MEAL V1
    /// (d → d/2 → d/4 → 2), 8 in MEAL V2 (1000 → 125 → 15 → 2).
    #[serde(default = "default_d_width_divisor")]
    pub d_width_divisor: usize,
    /// Discriminator learning rate while the student runs at its base `lr`; see
    /// [`DistillConfig::d_lr_at`] for how it follows the schedule.
    #[serde(default = "default_d_lr")]
    pub d_lr: f64,
    /// Discriminator weight decay; default: the student's (the reference shares it).
    #[serde(default)]
    pub d_weight_decay: Option<f64>,
    /// Whether D's lr is scaled by the same factor as the student's (true in the reference's
    /// MultiStepLR, where both parameter groups decay together).
    #[serde(default = "yes")]
    pub d_lr_follows_schedule: bool,
    /// Discriminators of average-pooled stages read the few hundred values a stage vector is
    /// pooled from and train their first layer in the folded space (`distill::folded`): same
    /// results up to float rounding, a fraction of the work and memory. `false` pools first
    /// and trains the full first layer (for comparison). Checkpoints hold the one form they
    /// were written in: a run resumes with the setting it started with.
    #[serde(default = "yes")]
    pub fold_discriminators: bool,
}

fn yes() -> bool {
    true
}

fn default_d_width_divisor() -> usize {
    super::discriminator::V1_DIVISOR
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
            d_width_divisor: default_d_width_divisor(),
            d_lr: default_d_lr(),
            d_weight_decay: None,
            d_lr_follows_schedule: true,
            fold_discriminators: true,
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

/// The `student_init` value that asks for random weights explicitly.
pub const STUDENT_INIT_NONE: &str = "none";

/// A key that `requires` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Required {
    /// The method fine-tunes a trained student (MEAL V2: from random weights it ends about 1%
    /// lower, spec §5), so starting from scratch must be asked for with `"none"`.
    StudentInit,
}

impl DistillConfig {
    /// The checkpoint the student starts from, if any (`"none"` is no checkpoint).
    pub fn student_init_path(&self) -> Option<&std::path::Path> {
        self.student_init
            .as_deref()
            .filter(|p| p.as_os_str() != STUDENT_INIT_NONE)
    }

    /// The discriminators' learning rate while the student's is `student_lr`.
    ///
    /// `meal.d_lr` is D's lr where the student runs at `lr`; with `d_lr_follows_schedule` it is
    /// scaled by the student's factor `student_lr / lr`, so warm-up, decays and regime steps move
    /// both together (MEAL V1's MultiStepLR decays both parameter groups; MEAL V2 writes one lr
    /// into both, which is `d_lr = lr` here). Because the ratio is taken to `lr`, `lr` must be
    /// the lr the student actually runs at somewhere: `validate` refuses a `regime` schedule that
    /// never uses it.
    pub fn d_lr_at(&self, student_lr: f64) -> f64 {
        if self.meal.d_lr_follows_schedule {
            self.meal.d_lr * student_lr / self.lr
        } else {
            self.meal.d_lr
        }
    }

    /// Under a `regime` that sets the lr of every epoch, `lr` is never used by the student,
    /// yet it would still scale D's lr (see [`d_lr_at`](Self::d_lr_at)): refuse the mismatch.
    fn check_regime_base(&self) -> Result<()> {
        let ScheduleConfig::Regime { intervals } = &self.schedule else {
            return Ok(());
        };
        let covered = |e: usize| intervals.iter().any(|(s, end, _)| (*s..=*end).contains(&e));
        if !(0..self.epochs).all(covered) {
            return Ok(());
        }
        let first = self.schedule.lr(self.lr, 0, 0.0, self.epochs);
        if first != self.lr {
            return Err(Error::Config(format!(
                "lr = {} is never used: schedule.intervals set the lr of every epoch (epoch 0 \
                 runs at {first}); meal.d_lr is the discriminators' lr at the student's `lr`, so \
                 set lr = {first} (and change schedule.intervals to change the student's lr)",
                self.lr
            )));
        }
        Ok(())
    }

    /// Refuses a config that leaves unset a key its `requires` names.
    pub fn check_requires(&self) -> Result<()> {
        for r in &self.requires {
            match r {
                Required::StudentInit if self.student_init.is_none() => {
                    return Err(Error::Config(format!(
                        "student_init: this config starts from a trained student (requires = \
                         [\"student_init\"]) and none is set. Train one first, e.g. `meal train \
                         --arch {arch} --data {data} --run-dir runs/student-{arch}`, then add \
                         `--set student_init=runs/student-{arch}` (a run folder or a .ckpt; in a \
                         config file, student_init = \"...\"), or import pretrained weights \
                         (`meal import --arch {arch} --from FILE --out init.ckpt`, then \
                         `--set student_init=init.ckpt`); or add `--set \
                         student_init={STUDENT_INIT_NONE}` to start from random weights on purpose",
                        arch = self.student,
                        data = self.data.path.display(),
                    )));
                }
                Required::StudentInit => {}
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        crate::models::arch_info(&self.student)
            .map_err(|e| Error::Config(format!("student: {e}")))?;
        self.check_soft_labels()?;
        if self.teachers.is_empty() && self.soft_labels.is_none() {
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
        self.settings().validate()?;
        self.check_regime_base()?;
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
        if m.d_width_divisor == 0 {
            return Err(Error::Config(
                "meal.d_width_divisor must be at least 1 (2 = MEAL V1, 8 = MEAL V2)".into(),
            ));
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

impl DistillConfig {
    /// Why this config cannot be distilled from a soft-label store, if it cannot.
    fn check_soft_labels(&self) -> Result<()> {
        if self.soft_labels.is_none() {
            return Ok(());
        }
        if self.meal.teacher_bn == TeacherBn::Train {
            return Err(Error::Config(
                "soft_labels: meal.teacher_bn = \"train\" runs the teachers on batch statistics \
                 (MEAL V1), so their outputs depend on the rest of each batch and cannot be cached; \
                 set meal.teacher_bn = \"eval\" (MEAL V2) to use the store, or drop soft_labels to \
                 distil from live teachers"
                    .into(),
            ));
        }
        if let Some((i, _)) = self
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
}

impl RunConfig for DistillConfig {
    const WHAT: &'static str = "distill config";
    /// Field validity, then what the config's `requires` asks for: on every path into a run
    /// (recipe, config file, library), not only `--recipe`.
    fn validate(&self) -> Result<()> {
        DistillConfig::validate(self)?;
        self.check_requires()
    }
    fn default_name(&self) -> String {
        format!("distill-{}", self.student)
    }
    fn model_arch(&self) -> &str {
        &self.student
    }
    fn settings(&self) -> Settings<'_> {
        DistillConfig::settings(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(name: &str, sets: &[&str]) -> DistillConfig {
        let mut t = crate::recipes::table(name).unwrap();
        for s in sets {
            crate::config::apply_set(&mut t, s).unwrap();
        }
        crate::config::from_table(t, name).unwrap()
    }

    /// The D's lr at the start of `epoch`, as the training loop computes it.
    fn d_lr(c: &DistillConfig, epoch: usize) -> f64 {
        c.d_lr_at(c.schedule.lr(c.lr, epoch, 0.0, c.epochs))
    }

    #[test]
    fn v2_discriminator_runs_at_the_students_regime_lr() {
        let c = recipe("meal-v2", &[]);
        for (epoch, want) in [(0, 0.01), (100, 0.01), (101, 0.001), (179, 0.001)] {
            let student = c.schedule.lr(c.lr, epoch, 0.0, c.epochs);
            assert_eq!(student, want, "student lr at epoch {epoch}");
            assert!((d_lr(&c, epoch) - want).abs() < 1e-15, "epoch {epoch}");
        }
        // Halving d_lr halves D's lr at every epoch and leaves the student's alone.
        let half = recipe("meal-v2", &["meal.d_lr=0.005"]);
        assert!((d_lr(&half, 150) - 0.0005).abs() < 1e-15);
        // A constant D lr ignores the regime.
        let fixed = recipe("meal-v2", &["meal.d_lr_follows_schedule=false"]);
        assert_eq!(d_lr(&fixed, 150), 0.01);
    }

    #[test]
    fn an_lr_the_regime_never_uses_is_refused() {
        // The old trap: lr = 0.02 left the student at the regime's 0.01 but halved D's lr.
        let c = recipe("meal-v2", &["lr=0.02"]);
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("lr = 0.02") && err.contains("never used") && err.contains("0.01"),
            "{err}"
        );
        // Epochs outside every interval do run at `lr`, so there it is meaningful.
        let mut t = crate::recipes::table("meal-v2").unwrap();
        crate::config::apply_set(&mut t, "lr=0.02").unwrap();
        crate::config::apply_set(&mut t, "schedule.intervals=[[0, 9, 0.01]]").unwrap();
        let partial: DistillConfig = crate::config::from_table(t, "partial").unwrap();
        partial.validate().unwrap();
        assert!((d_lr(&partial, 0) - 0.005).abs() < 1e-15);
        assert!((d_lr(&partial, 10) - 0.01).abs() < 1e-15);
    }

    #[test]
    fn v1_discriminator_decays_with_the_multistep_schedule() {
        let c = recipe("meal-v1-single-vgg19", &[]);
        // reference_step_first: the decay reaches epoch 149, one before the milestone.
        assert!((d_lr(&c, 148) - 1e-3).abs() < 1e-15);
        assert!((d_lr(&c, 149) - 1e-4).abs() < 1e-15);
        assert!((d_lr(&c, 249) - 1e-5).abs() < 1e-15);
        // A larger student lr does not change D's lr at the base: d_lr is D's lr at `lr`.
        let c = recipe("meal-v1-single-vgg19", &["lr=0.2"]);
        assert!((d_lr(&c, 0) - 1e-3).abs() < 1e-15);
    }

    #[test]
    fn width_divisor_is_validated_and_defaults_to_v1() {
        assert_eq!(recipe("meal-v1-single-vgg19", &[]).meal.d_width_divisor, 2);
        assert_eq!(recipe("meal-v2", &[]).meal.d_width_divisor, 8);
        let err = recipe("meal-v2", &["meal.d_width_divisor=0", "student_init=none"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("meal.d_width_divisor"), "{err}");
    }
}
