//! `meal distill`: MEAL as a kind of run. Building it loads (or reads from a soft-label store)
//! the teachers, measures them, and sets up the student and discriminators; each batch is one
//! [`objective::step_then`]. The run skeleton (`crate::train::runner`) does the rest, with the
//! same run-folder, checkpoint and resume guarantees as `meal train`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::config::DistillConfig;
use super::objective::{self, Discriminators, MealState, StepStats, Teacher, TeacherSource};
use super::soft_labels::SoftLabelStore;
use super::stages::{self, Participant, Stage};
use super::teachers::{self, TeacherReport};
use crate::backend::limits::{Preflight, param_sizes};
use crate::data::{Batch, DataSplits, Dataset};
use crate::error::{Error, Result};
use crate::models::{self, Net, arch_info};
use crate::progress;
use crate::train::checkpoint::Container;
use crate::train::divergence::Guard;
use crate::train::evaluate::Accuracy;
use crate::train::model_io;
use crate::train::optim::SgdSettings;
use crate::train::prefetch::Input;
use crate::train::run_dir::resolve_checkpoint;
use crate::train::runner::{self, EpochEnd, Measured, Setup, Step, Task};

const DISCS: &str = "discriminators";
const OPTIM: &str = "optim";
const OPTIM_D: &str = "optim_discriminators";
pub const TEACHERS_FILE: &str = "teachers.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistillEpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub d_lr: f64,
    pub sim_loss: f64,
    pub d_loss: f64,
    pub ce_loss: f64,
    pub d_acc_student: f64,
    pub d_acc_teacher: f64,
    #[serde(flatten)]
    pub measured: Measured,
}

#[derive(Debug, Clone)]
pub struct DistillOutcome {
    pub run_dir: PathBuf,
    pub best_acc: f64,
    pub last: Accuracy,
    pub teachers: TeacherReport,
    pub epochs_done: usize,
    pub seconds: f64,
}

/// Where a distillation run starts from.
pub type DistillStart = crate::train::run::Start<DistillConfig>;

pub fn distill(start: DistillStart) -> Result<DistillOutcome> {
    let mut report = None;
    let out = runner::run(start, preflight, |setup| {
        let (task, r) = Meal::build(setup)?;
        report = Some(r);
        Ok(task)
    })?;
    let teachers = match report {
        Some(r) => r,
        // A finished run trains nothing and builds nothing: its teachers were measured when
        // it started.
        None => teachers::read_report(&out.run_dir.join(TEACHERS_FILE))?,
    };
    Ok(DistillOutcome {
        run_dir: out.run_dir,
        best_acc: out.best_acc,
        last: out.last,
        teachers,
        epochs_done: out.epochs_done,
        seconds: out.seconds,
    })
}

/// What a distillation run would refuse about its inputs, checked before a fresh run folder is
/// created: the soft-label store against the data (and the stages it can serve), or that every
/// teacher file exists. Loading and checking the teachers' weights is left to the run itself.
pub fn preflight(config: &DistillConfig, splits: &DataSplits) -> Result<()> {
    let train_set = splits.train.as_ref();
    if let Some(store) = open_soft_labels(config, train_set)? {
        let names = store.teacher_names();
        let ts: Vec<Participant> = names
            .iter()
            .map(|name| Participant { name, stages: 0 })
            .collect();
        resolve_stages_with(config, &ts, train_set.num_classes())?;
        return Ok(());
    }
    teachers::check_files(&config.teachers)
}

/// MEAL's student, discriminators and their optimizers, with what feeds them: live teachers or
/// a soft-label store.
struct Meal {
    state: MealState,
    config: DistillConfig,
    teachers: Vec<Teacher>,
    store: Option<Arc<SoftLabelStore>>,
    stages: Vec<Stage>,
    /// Each teacher's weight in the combination.
    weights: Vec<f64>,
    device: burn::tensor::Device,
    /// This epoch's summed step statistics, batch count and last D learning rate.
    sums: StepStats,
    batches: usize,
    d_lr: f64,
}

impl Meal {
    fn build(setup: &mut Setup<'_, DistillConfig>) -> Result<(Self, TeacherReport)> {
        let config = setup.config;
        let run = setup.run;
        let train_set = setup.splits.train.clone();
        let device = crate::backend::autodiff_device();
        let plain = crate::backend::device();
        let num_classes = train_set.num_classes();
        let store = open_soft_labels(config, train_set.as_ref())?.map(Arc::new);
        // From a store no teacher is loaded: it holds their logits, which is all the logits
        // stage (the only one a store allows) needs.
        let (teachers, teacher_metas) = match &store {
            Some(_) => (Vec::new(), Vec::new()),
            None => teachers::load_teachers(config, train_set.as_ref())?,
        };
        let stages = match &store {
            Some(s) => {
                let names = s.teacher_names();
                let ts: Vec<Participant> = names
                    .iter()
                    .map(|name| Participant { name, stages: 0 })
                    .collect();
                resolve_stages_with(config, &ts, num_classes)?
            }
            None => resolve_stages(config, &teachers, num_classes)?,
        };
        buffer_preflight(config, &teachers, &stages, num_classes)?;
        progress::say(format!(
            "meal distill: {} -> {} on {} -> {}",
            match &store {
                Some(s) => format!(
                    "{} teacher(s) from soft-label store {} ({} views, top-{})",
                    s.header.teachers.len(),
                    s.path.display(),
                    s.header.views,
                    s.header.top_k
                ),
                None => format!("{} teacher(s)", teachers.len()),
            },
            config.student,
            train_set.describe(),
            run.path.display()
        ));
        // Each image gets the crop and flip its stored logits were computed on.
        if let Some(s) = &store {
            let s = s.clone();
            setup
                .train
                .set_views(Arc::new(move |epoch, i| s.view(i, s.view_of_epoch(epoch))));
        }

        // Teachers alone and as an ensemble, in eval mode, once: the bar the student is held
        // to.
        let report_path = run.path.join(TEACHERS_FILE);
        let report = if setup.resume && report_path.exists() {
            teachers::read_report(&report_path)?
        } else {
            let report = match &store {
                // Measured by `meal cache-teachers` on the same test split.
                Some(s) => s.header.report.clone(),
                None => {
                    let evals: Vec<_> = teachers.iter().map(|t| t.net.valid()).collect();
                    let names: Vec<_> = teachers.iter().map(|t| t.name.clone()).collect();
                    teachers::measure_teachers(
                        &names,
                        &evals,
                        &teacher_metas,
                        train_set.normalization(),
                        &setup.test,
                        &plain,
                    )?
                }
            };
            std::fs::write(
                &report_path,
                serde_json::to_vec_pretty(&report).expect("serialisable"),
            )
            .map_err(|e| Error::file(&report_path, e))?;
            report
        };
        for (arch, _, acc) in &report.teachers {
            progress::say(format!("  teacher {arch:<16} test top-1 {:.2}%", acc.top1));
        }
        progress::say(format!(
            "  ensemble ({} teachers)  test top-1 {:.2}%",
            report.teachers.len(),
            report.ensemble.top1
        ));

        let d_settings = SgdSettings {
            weight_decay: config
                .meal
                .d_weight_decay
                .unwrap_or(config.optimizer.weight_decay),
            ..config.optimizer
        };
        let (student, discs) = crate::backend::seeded(&device, config.seed, || -> Result<_> {
            let mut student = models::build(&config.student, num_classes, &device)?;
            if let Some(init) = config.student_init_path() {
                student = load_student_init(student, init, config, num_classes)?;
            }
            let fold = objective::fold_lengths(
                &student,
                &teachers,
                &stages,
                &config.meal,
                train_set.output_shape(),
                &device,
            );
            let discs =
                Discriminators::new(&stages, &config.meal, &device)?.fold(&fold, &d_settings);
            Ok((student, discs))
        })?;
        let weights: Vec<f64> = match &store {
            Some(s) if config.teachers.is_empty() => vec![1.0; s.header.teachers.len()],
            _ => config.teachers.iter().map(|t| t.weight).collect(),
        };
        let meal = Self {
            state: MealState {
                student,
                discs,
                opt_student: config.optimizer.init(),
                opt_discs: d_settings.init(),
            },
            config: config.clone(),
            teachers,
            store,
            stages,
            weights,
            device,
            sums: StepStats::default(),
            batches: 0,
            d_lr: 0.0,
        };
        Ok((meal, report))
    }
}

/// Fails before the teachers are measured and anything else is built when a parameter of the
/// teachers, the student or the discriminators is larger than the device holds in one buffer.
fn buffer_preflight(
    config: &DistillConfig,
    teachers: &[Teacher],
    stages: &[Stage],
    num_classes: usize,
) -> Result<()> {
    let mut check = Preflight::new();
    for (i, t) in teachers.iter().enumerate() {
        let name = t.name.clone();
        check.add(
            param_sizes(&format!("teachers[{i}]"), &t.net),
            move |_, _| {
                format!(
                    "the teacher {name} cannot run on this device; use a device with a larger \
                 limit (discrete GPUs under Vulkan bind up to 4 GiB) or --device flex"
                )
            },
        );
    }
    check.arch("student", &config.student, num_classes)?;
    Discriminators::preflight(&mut check, stages, &config.meal, "--set meal.");
    check.check()
}

/// The student's starting weights from `init` (a checkpoint or run folder).
fn load_student_init(
    student: Net,
    init: &Path,
    config: &DistillConfig,
    num_classes: usize,
) -> Result<Net> {
    let path = resolve_checkpoint(init);
    let (_, meta, c) = model_io::load_model(&path, &crate::backend::device())?;
    if meta.arch != config.student || meta.num_classes != num_classes {
        return Err(Error::checkpoint(
            &path,
            format!(
                "student_init holds a {} with {} classes, but the student is a {} with {num_classes}",
                meta.arch, meta.num_classes, config.student
            ),
        ));
    }
    model_io::load_weights(student, c.get(&path, model_io::MODEL)?, &path)
}

impl Task for Meal {
    type Record = DistillEpochRecord;
    const COMMAND: &'static str = "distill";
    const MODEL: &'static str = "student";
    const RATE_KEYS: &'static [&'static str] = &["lr", "meal.d_lr"];

    fn model(&self) -> &Net {
        &self.state.student
    }

    fn load(mut self, c: &Container, path: &Path) -> Result<Self> {
        let s = self.state;
        let student = runner::load_model_section(s.student, c, path)?;
        let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
            c.get(path, DISCS)?.to_vec(),
        ))
        .map_err(|e| Error::checkpoint(path, format!("discriminators are corrupt: {e}")))?;
        let discs = s.discs.try_load_record(record).map_err(|e| {
            Error::checkpoint(
                path,
                format!(
                    "discriminators do not fit: {e} (a run written with another \
                     meal.fold_discriminators, or by an older meal, resumes only with the same)"
                ),
            )
        })?;
        self.state = MealState {
            student,
            discs,
            opt_student: runner::load_optim_bytes(s.opt_student, c.get(path, OPTIM)?, path)?,
            opt_discs: runner::load_optim_bytes(s.opt_discs, c.get(path, OPTIM_D)?, path)?,
        };
        Ok(self)
    }

    fn step(
        mut self,
        batch: &Batch,
        input: Input,
        epoch: usize,
        index: usize,
        lr: f64,
        ahead: &mut dyn FnMut(),
    ) -> Result<(Self, Step)> {
        let d_lr = self.config.d_lr_at(lr);
        let mut rng = batch_rng(self.config.seed, epoch, index);
        let chosen = objective::teacher_weights(self.config.meal.combine, &self.weights, |n| {
            rng.random_range(0..n)
        });
        let (x, y) = (input.images, input.labels);
        let cached = self.store.as_ref().map(|s| {
            stored_logits(
                s,
                &chosen,
                &batch.indices,
                s.view_of_epoch(epoch),
                &self.device,
            )
        });
        let source = match &cached {
            Some(logits) => TeacherSource::Logits(logits),
            None => TeacherSource::Live(&self.teachers),
        };
        let (state, stats, scores) = objective::step_then(
            self.state,
            source,
            &chosen,
            &self.stages,
            &self.config.meal,
            (x, y),
            (lr, d_lr),
            ahead,
        )?;
        self.state = state;
        self.d_lr = d_lr;
        self.batches += 1;
        self.sums.sim += stats.sim;
        self.sums.adv += stats.adv;
        self.sums.ce += stats.ce;
        self.sums.d_acc_student += stats.d_acc_student;
        self.sums.d_acc_teacher += stats.d_acc_teacher;
        let step = Step {
            rates: vec![("lr", lr), ("d_lr", d_lr)],
            losses: vec![
                ("similarity", stats.sim),
                ("discriminator", stats.adv),
                ("cross-entropy", stats.ce),
            ],
            classes: scores.len() / batch.labels.len().max(1),
            scores,
        };
        Ok((self, step))
    }

    fn progress(&self) -> String {
        let b = self.batches.max(1) as f64;
        format!("sim {:.3} D {:.3}", self.sums.sim / b, self.sums.adv / b)
    }

    fn check_weights(&self, guard: &Guard, epoch: usize) -> Result<()> {
        guard.weights(epoch, "student", &self.state.student)?;
        guard.weights(epoch, "discriminators", &self.state.discs)
    }

    fn end_epoch(&mut self, end: EpochEnd) -> (DistillEpochRecord, String) {
        let b = self.batches.max(1) as f64;
        let sums = std::mem::take(&mut self.sums);
        self.batches = 0;
        let m = &end.measured;
        let line = format!(
            "epoch {:>3}/{} lr {:.4} sim {:.4} D {:.4} (acc s/t {:.0}/{:.0}%) train {:.2}% test {:.2}% {:.0} img/s",
            end.epoch + 1,
            end.epochs,
            end.lr,
            sums.sim / b,
            sums.adv / b,
            100.0 * sums.d_acc_student / b,
            100.0 * sums.d_acc_teacher / b,
            m.train_acc,
            m.test_top1,
            m.images_per_sec
        );
        let record = DistillEpochRecord {
            epoch: end.epoch,
            lr: end.lr,
            d_lr: self.d_lr,
            sim_loss: sums.sim / b,
            d_loss: sums.adv / b,
            ce_loss: sums.ce / b,
            d_acc_student: 100.0 * sums.d_acc_student / b,
            d_acc_teacher: 100.0 * sums.d_acc_teacher / b,
            measured: end.measured,
        };
        (record, line)
    }

    fn sections(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let discs = self
            .state
            .discs
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| Error::Other(format!("cannot serialise discriminators: {e}")))?;
        Ok(vec![
            (DISCS, discs.to_vec()),
            (OPTIM, runner::optim_bytes(&self.state.opt_student)?),
            (OPTIM_D, runner::optim_bytes(&self.state.opt_discs)?),
        ])
    }
}

/// A per-batch RNG that depends only on (seed, epoch, batch), so resume draws the same teachers.
fn batch_rng(seed: u64, epoch: usize, batch: usize) -> ChaCha8Rng {
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    for v in [epoch as u64, batch as u64] {
        s = s
            .wrapping_mul(0xBF58_476D_1CE4_E5B9)
            .wrapping_add(v ^ 0x94D0_49BB_1331_11EB);
        s ^= s >> 31;
    }
    ChaCha8Rng::seed_from_u64(s)
}

pub fn resolve_stages(
    config: &DistillConfig,
    teachers: &[Teacher],
    num_classes: usize,
) -> Result<Vec<Stage>> {
    let ts: Vec<Participant> = teachers
        .iter()
        .map(|t| Participant {
            name: &t.name,
            stages: t.stages,
        })
        .collect();
    resolve_stages_with(config, &ts, num_classes)
}

fn resolve_stages_with(
    config: &DistillConfig,
    teachers: &[Participant],
    num_classes: usize,
) -> Result<Vec<Stage>> {
    let student = Participant {
        name: &config.student,
        stages: arch_info(&config.student)?.stages,
    };
    stages::resolve(&config.meal.stages, &student, teachers, num_classes)
}

/// Opens `config.soft_labels` and checks it against the run: same training data and class
/// count, and the config's teachers (if it lists any) are the store's.
pub fn open_soft_labels(
    config: &DistillConfig,
    train_set: &dyn Dataset,
) -> Result<Option<SoftLabelStore>> {
    let Some(path) = &config.soft_labels else {
        return Ok(None);
    };
    let store = SoftLabelStore::open(path)?;
    store.check_dataset(train_set)?;
    store.check_teachers(&config.teachers)?;
    Ok(Some(store))
}

/// Each teacher's logits for `indices` from the store, on `device`; only the chosen teachers'.
fn stored_logits(
    store: &SoftLabelStore,
    chosen: &[(usize, f64)],
    indices: &[usize],
    view: usize,
    device: &burn::tensor::Device,
) -> Vec<Option<burn::tensor::Tensor<2>>> {
    let classes = store.header.classes;
    (0..store.header.teachers.len())
        .map(|t| {
            chosen.iter().any(|&(k, _)| k == t).then(|| {
                burn::tensor::Tensor::from_data(
                    burn::tensor::TensorData::new(
                        store.logits(indices, view, t),
                        [indices.len(), classes],
                    ),
                    device,
                )
            })
        })
        .collect()
}
