//! Whole MEAL steps, run through the same code as `meal distill` ([`objective::step`]) on
//! random data: the figure that decides whether distillation is affordable.

use burn::module::Module;

use super::arch::{CLASSES, finite, random_batch};
use super::timing::{Throughput, measure};
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
}

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
    },
    Workload {
        name: "meal-v1-cifar-small",
        summary: "resnet20/vgg8/resnet14 -> resnet8, logits only",
        student: "resnet8",
        teachers: &["resnet20", "vgg8", "resnet14"],
        stages: &[(-1, None, 1.0)],
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
    /// MEAL V1's settings (random teacher per batch, teacher BatchNorm on batch statistics,
    /// average pooling, soft cross-entropy, joint adversarial loss, the reference
    /// discriminators, d_lr 1e-3) with this workload's stages.
    pub fn meal_config(&self) -> MealConfig {
        MealConfig {
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
            ..MealConfig::default()
        }
    }
}

/// `(MEAL step, student eval forward)` throughput. The random combine's draw is replaced by a
/// round robin over the teachers (step `i` asks teacher `i mod n`), so that the PyTorch twin
/// does the same work in the same order.
pub fn bench_workload(
    w: &Workload,
    config: &MealConfig,
    batch: usize,
    warmup: usize,
    steps: usize,
    seed: u64,
) -> Result<(Throughput, Throughput)> {
    let device = crate::backend::autodiff_device();
    device.seed(seed);
    let norm = Normalization::CIFAR10;
    let mut teachers = Vec::new();
    for &arch in w.teachers {
        let net = models::build(arch, CLASSES, &device)?;
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
    let stages = stages::resolve(&config.stages, &student, &ts, CLASSES)?;
    let settings = SgdSettings::default();
    let student = models::build(w.student, CLASSES, &device)?;
    let fold = objective::fold_lengths(&student, &teachers, &stages, config, [3, 32, 32], &device);
    let mut state = Some(MealState {
        discs: Discriminators::new(&stages, config, &device)?.fold(&fold, &settings),
        student,
        opt_student: settings.init(),
        opt_discs: settings.init(),
    });
    let (x, y) = random_batch(batch, &device);
    let train = measure(batch, warmup, steps, |i| {
        let s = state
            .take()
            .expect("the state is put back after every step");
        let chosen = [(i % teachers.len(), 1.0)];
        let (next, stats, _) = objective::step(
            s,
            &teachers,
            &chosen,
            &stages,
            config,
            x.clone(),
            y.clone(),
            0.1,
            config.d_lr,
        );
        state = Some(next);
        finite("similarity loss", stats.sim as f32)?;
        finite("discriminator loss", stats.adv as f32)
    })?;
    let eval = state.expect("trained state").student.valid();
    let xi = x.inner();
    let infer = measure(batch, warmup, steps, |_| {
        let logits = eval.forward(xi.clone()).logits;
        finite("logit sum", logits.sum().into_scalar())
    })?;
    Ok((train, infer))
}
