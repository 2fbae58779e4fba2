//! Whole MEAL steps, run through the same code as `meal distill` ([`objective::step`]) on
//! random data: the figure that decides whether distillation is affordable.

use burn::module::Module;

use super::arch::{ArchRun, finite};
use super::input::Input;
use super::timing::measure;
use crate::backend::limits::Preflight;
use crate::backend::read::scalar;
use crate::data::Normalization;
use crate::distill::config::{MealConfig, StageSpec};
use crate::distill::objective::{self, Discriminators, MealState, Teacher};
use crate::distill::stages::{self, Participant};
use crate::error::{Error, Result};
use crate::models::{self, arch_info};
use crate::train::optim::SgdSettings;

/// A named MEAL setting.
pub struct Workload {
    pub name: &'static str,
    pub summary: &'static str,
    pub student: &'static str,
    pub teachers: &'static [&'static str],
    /// `(index, out_dim, γ)`; η is 1 everywhere, as in the reference's scripts.
    pub stages: &'static [(i64, Option<usize>, f64)],
    pub method: Method,
}

/// Which MEAL the step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One teacher per batch (a round robin here), teacher BatchNorm on batch statistics,
    /// discriminators d → d/2 → d/4 → 2, student lr 0.1 and D lr 1e-3, weight decay 5e-4.
    V1,
    /// The `[meal]` table and optimizer of the shipped `meal-v2` recipe: the mean of every
    /// teacher's softmax, teachers in eval mode, one discriminator 1000 → 125 → 15 → 2 on the
    /// logits, student and D at lr 0.01, no weight decay.
    V2,
}

/// MEAL V2's optimizer, as recipes/meal-v2.toml (lr, momentum, weight decay).
const V2_LR: f64 = 0.01;
const V2_SGD: SgdSettings = SgdSettings {
    momentum: 0.9,
    nesterov: false,
    weight_decay: 0.0,
};

pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "meal-v1-resnet18",
        summary: "resnet18_cifar -> resnet18_cifar, the reference's five matched stages (out_dims 10000/5000/1000/500 + logits)",
        student: "resnet18_cifar",
        teachers: &["resnet18_cifar"],
        stages: &[
            (0, Some(10000), 0.001),
            (1, Some(5000), 0.01),
            (2, Some(1000), 0.05),
            (3, Some(500), 0.1),
            (-1, None, 1.0),
        ],
        method: Method::V1,
    },
    Workload {
        name: "meal-v1-cifar-small",
        summary: "resnet20/vgg8/resnet14 -> resnet8, logits only",
        student: "resnet8",
        teachers: &["resnet20", "vgg8", "resnet14"],
        stages: &[(-1, None, 1.0)],
        method: Method::V1,
    },
    Workload {
        name: "meal-v2-resnet50",
        summary: "senet154 + resnet152s -> resnet50 at 224x224, MEAL V2 (mean softmax, one 1000-125-15-2 discriminator)",
        student: "resnet50",
        teachers: &["senet154", "resnet152s"],
        stages: &[(-1, None, 1.0)],
        method: Method::V2,
    },
];

pub fn workload(name: &str) -> Result<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name).ok_or_else(|| {
        let names: Vec<_> = WORKLOADS.iter().map(|w| w.name).collect();
        Error::Config(format!(
            "bench: unknown workload `{name}`; known: {}",
            names.join(", ")
        ))
    })
}

impl Workload {
    /// The method's MEAL config with this workload's stages. V1: random teacher per batch,
    /// teacher BatchNorm on batch statistics, average pooling, soft cross-entropy, joint
    /// adversarial loss, the reference discriminators, d_lr 1e-3. V2: the `meal-v2` recipe's.
    pub fn meal_config(&self) -> Result<MealConfig> {
        let base = match self.method {
            Method::V1 => MealConfig::default(),
            Method::V2 => {
                let mut recipe = crate::recipes::table("meal-v2")?;
                let meal = match recipe.remove("meal") {
                    Some(toml::Value::Table(t)) => t,
                    _ => {
                        return Err(Error::Config("recipe meal-v2 has no [meal] table".into()));
                    }
                };
                crate::config::from_table(meal, "recipe meal-v2 [meal]")?
            }
        };
        Ok(MealConfig {
            stages: self
                .stages
                .iter()
                .map(|&(index, out_dim, gamma)| StageSpec {
                    index,
                    out_dim,
                    gamma,
                    eta: 1.0,
                })
                .collect(),
            ..base
        })
    }

    /// The student's lr and the optimizer settings of student and discriminators.
    pub fn optimizer(&self) -> (f64, SgdSettings) {
        match self.method {
            Method::V1 => (0.1, SgdSettings::default()),
            Method::V2 => (V2_LR, V2_SGD),
        }
    }
}

/// `(MEAL step, student eval forward)` throughput on `input` (the student's natural input
/// unless `--image-size` changed it), with the student's forward MACs per image. The random
/// combine's draw is replaced by a round robin over the teachers (step `i` asks teacher
/// `i mod n`), so that the PyTorch twin does the same work in the same order.
pub fn bench_workload(
    w: &Workload,
    config: &MealConfig,
    input: Input,
    batch: usize,
    warmup: usize,
    steps: usize,
    seed: u64,
) -> Result<ArchRun> {
    preflight(w, config, input)?;
    let device = crate::backend::autodiff_device();
    // The whole bench under the seed: the models and the batch are drawn at several points.
    crate::backend::seeded(&device, seed, || {
        seeded_workload(w, config, input, batch, warmup, steps, &device)
    })
}

/// Fails before anything is built when a parameter of the workload's models or
/// discriminators is larger than the device holds in one buffer.
fn preflight(w: &Workload, config: &MealConfig, input: Input) -> Result<()> {
    let participant = |name: &'static str| -> Result<Participant<'static>> {
        Ok(Participant {
            name,
            stages: arch_info(name)?.stages,
        })
    };
    let ts = w
        .teachers
        .iter()
        .map(|&t| participant(t))
        .collect::<Result<Vec<_>>>()?;
    let stages = stages::resolve(&config.stages, &participant(w.student)?, &ts, input.classes)?;
    let mut check = Preflight::new();
    for (i, &arch) in w.teachers.iter().enumerate() {
        check.arch(&format!("teachers[{i}]"), arch, input.classes)?;
    }
    check.arch("student", w.student, input.classes)?;
    Discriminators::preflight(&mut check, &stages, config, "--set ");
    check.check()
}

fn seeded_workload(
    w: &Workload,
    config: &MealConfig,
    input: Input,
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &burn::tensor::Device,
) -> Result<ArchRun> {
    let device = device.clone();
    let norm = Normalization::CIFAR10;
    let mut teachers = Vec::new();
    for &arch in w.teachers {
        let net = models::build(arch, input.classes, &device)?;
        input.probe(arch, &net)?;
        let net = match config.teacher_bn {
            crate::distill::config::TeacherBn::Train => net.no_grad(),
            crate::distill::config::TeacherBn::Eval => net.freeze(),
        };
        let n = arch_info(arch)?.stages;
        teachers.push(
            Teacher::new(arch.to_string(), net, n, norm, norm).without_autodiff(config.teacher_bn),
        );
    }
    let student = Participant {
        name: w.student,
        stages: arch_info(w.student)?.stages,
    };
    let ts: Vec<Participant> = teachers
        .iter()
        .map(|t| Participant {
            name: &t.name,
            stages: t.stages,
        })
        .collect();
    let stages = stages::resolve(&config.stages, &student, &ts, input.classes)?;
    let (lr, settings) = w.optimizer();
    let student = models::build(w.student, input.classes, &device)?;
    let macs_per_image = input.probe(w.student, &student)?;
    let s = input.size;
    let fold = objective::fold_lengths(&student, &teachers, &stages, config, [3, s, s], &device);
    let mut state = Some(MealState {
        discs: Discriminators::new(&stages, config, &device)?.fold(&fold, &settings),
        student,
        opt_student: settings.init(),
        opt_discs: settings.init(),
    });
    let (x, y) = input.random_batch(batch, &device);
    let weights = vec![1.0; teachers.len()];
    let train = measure(batch, warmup, steps, |i| {
        let s = state
            .take()
            .expect("the state is put back after every step");
        let chosen = objective::teacher_weights(config.combine, &weights, |n| i % n);
        let (next, stats, _) = objective::step(
            s,
            &teachers,
            &chosen,
            &stages,
            config,
            x.clone(),
            y.clone(),
            lr,
            config.d_lr,
        )?;
        state = Some(next);
        finite("similarity loss", stats.sim as f32)?;
        finite("discriminator loss", stats.adv as f32)
    })?;
    let eval = state.expect("trained state").student.valid();
    let xi = x.inner();
    let infer = measure(batch, warmup, steps, |_| {
        let logits = eval.forward(xi.clone()).logits;
        finite("logit sum", scalar(logits.sum(), "the sum of the logits")?)
    })?;
    Ok(ArchRun {
        train,
        infer,
        macs_per_image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::config::{AdversarialMode, Combine, TeacherBn};

    #[test]
    fn v2_step_is_the_recipe_s_method() {
        let w = workload("meal-v2-resnet50").unwrap();
        let c = w.meal_config().unwrap();
        assert_eq!(c.combine, Combine::MeanSoftmax);
        assert_eq!(c.teacher_bn, TeacherBn::Eval);
        assert_eq!(c.adversarial, AdversarialMode::Joint);
        assert_eq!(c.d_width_divisor, 8);
        assert_eq!(c.stages.len(), 1);
        assert_eq!(c.stages[0].index, -1);
        assert_eq!(c.d_lr, V2_LR, "D trains at the student's lr");
        assert_eq!(w.optimizer().1.weight_decay, 0.0);
        let v1 = workload("meal-v1-cifar-small")
            .unwrap()
            .meal_config()
            .unwrap();
        assert_eq!(
            (v1.combine, v1.teacher_bn),
            (Combine::Random, TeacherBn::Train)
        );
    }
}
