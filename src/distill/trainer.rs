//! `meal distill`: the epoch loop around [`objective::step`], with the same run-folder,
//! checkpoint and resume guarantees as `meal train`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::config::{DistillConfig, TeacherBn, TeacherSpec};
use super::objective::{self, Discriminators, MealState, Teacher, TeacherSource};
use super::soft_labels::SoftLabelStore;
use super::stages::{self, Participant, Stage};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::{self, arch_info};
use crate::progress;
use crate::train::checkpoint::Container;
use crate::train::divergence::Guard;
use crate::train::evaluate::{Accuracy, Renorm, evaluate, evaluate_renormalized};
use crate::train::model_io::{self, ModelMeta};
use crate::train::optim::SgdSettings;
use crate::train::run_dir::{RunDir, resolve_checkpoint};
use crate::train::supervised::{RunState, STATE, load_optim_bytes, optim_bytes, save_checkpoints};
use crate::train::tensors::{batch_tensors, host_rows, topk_correct};

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
    pub train_acc: f64,
    pub test_top1: f64,
    pub test_top5: f64,
    pub test_loss: f64,
    pub images_per_sec: f64,
    pub epoch_seconds: f64,
}

/// Test accuracy of each teacher and of their ensemble, measured once at the start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeacherReport {
    pub teachers: Vec<(String, String, Accuracy)>,
    pub ensemble: Accuracy,
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
    let o = crate::train::run::open(start)?;
    distill_in(&o.config, &o.run, o.resume, o.splits.train, o.splits.test)
}

/// The checkpoint file of teacher `i` (a run folder means its best.ckpt), which must exist.
fn teacher_checkpoint(i: usize, spec: &TeacherSpec) -> Result<std::path::PathBuf> {
    let path = resolve_checkpoint(&spec.checkpoint.clone().unwrap_or_default());
    if !path.exists() {
        return Err(Error::Config(format!(
            "teachers[{i}].checkpoint: {} does not exist; train one with `meal train` (or import it)",
            path.display()
        )));
    }
    Ok(path)
}

/// What [`distill_in`] would refuse about its inputs, checked before a fresh run folder is
/// created: the soft-label store against the data (and the stages it can serve), or that every
/// teacher file exists. Loading and checking the teachers' weights is left to the run itself.
pub fn preflight(config: &DistillConfig, train_set: &dyn Dataset) -> Result<()> {
    if let Some(store) = open_soft_labels(config, train_set)? {
        let names = store.teacher_names();
        let ts: Vec<Participant> = names
            .iter()
            .map(|name| Participant { name, stages: 0 })
            .collect();
        resolve_stages_with(config, &ts, train_set.num_classes())?;
        return Ok(());
    }
    for (i, spec) in config.teachers.iter().enumerate() {
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

pub fn distill_in(
    config: &DistillConfig,
    run: &RunDir,
    resume: bool,
    train_set: Arc<dyn Dataset>,
    test_set: Arc<dyn Dataset>,
) -> Result<DistillOutcome> {
    crate::train::interrupt::install();
    let started = Instant::now();
    let device = crate::backend::autodiff_device();
    let plain = crate::backend::device();
    let num_classes = train_set.num_classes();
    let store = open_soft_labels(config, train_set.as_ref())?.map(Arc::new);
    // From a store no teacher is loaded: it holds their logits, which is all the logits stage
    // (the only one a store allows) needs.
    let (teachers, teacher_metas) = match &store {
        Some(_) => (Vec::new(), Vec::new()),
        None => load_teachers(config, train_set.as_ref())?,
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
    let (train_loader, test_loader) = crate::train::run::loaders(
        train_set.clone(),
        test_set,
        config.batch_size,
        config.eval_batch_size,
        config.seed,
        config.num_workers,
    );
    // Each image gets the crop and flip its stored logits were computed on.
    let train_loader = match &store {
        Some(s) => {
            let s = s.clone();
            train_loader.with_views(Arc::new(move |epoch, i| s.view(i, s.view_of_epoch(epoch))))
        }
        None => train_loader,
    };

    // Teachers alone and as an ensemble, in eval mode, once: the bar the student is held to.
    let report = if resume && run.path.join(TEACHERS_FILE).exists() {
        let p = run.path.join(TEACHERS_FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| Error::file(&p, e))?;
        serde_json::from_str(&text).map_err(|e| Error::file(&p, e))?
    } else if let Some(s) = &store {
        // Measured by `meal cache-teachers` on the same test split.
        let report = s.header.report.clone();
        let p = run.path.join(TEACHERS_FILE);
        std::fs::write(
            &p,
            serde_json::to_vec_pretty(&report).expect("serialisable"),
        )
        .map_err(|e| Error::file(&p, e))?;
        report
    } else {
        let evals: Vec<_> = teachers.iter().map(|t| t.net.valid()).collect();
        let refs: Vec<_> = evals.iter().collect();
        let renorms: Vec<_> = teacher_metas
            .iter()
            .map(|m| Renorm::between(train_set.normalization(), m.normalization))
            .collect();
        let (each, ensemble) = evaluate_renormalized(&refs, &renorms, &test_loader, &plain)?;
        let report = TeacherReport {
            teachers: teachers
                .iter()
                .zip(&teacher_metas)
                .zip(each)
                .map(|((t, m), a)| (m.arch.clone(), t.name.clone(), a))
                .collect(),
            ensemble,
        };
        let p = run.path.join(TEACHERS_FILE);
        std::fs::write(
            &p,
            serde_json::to_vec_pretty(&report).expect("serialisable"),
        )
        .map_err(|e| Error::file(&p, e))?;
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

    device.seed(config.seed);
    let mut student = models::build(&config.student, num_classes, &device)?;
    if let Some(init) = config.student_init_path() {
        let path = resolve_checkpoint(init);
        let (_, meta, c) = model_io::load_model(&path, &plain)?;
        if meta.arch != config.student || meta.num_classes != num_classes {
            return Err(Error::checkpoint(
                &path,
                format!(
                    "student_init holds a {} with {} classes, but the student is a {} with {num_classes}",
                    meta.arch, meta.num_classes, config.student
                ),
            ));
        }
        student = model_io::load_weights(student, c.get(&path, model_io::MODEL)?, &path)?;
    }
    let d_settings = SgdSettings {
        weight_decay: config
            .meal
            .d_weight_decay
            .unwrap_or(config.optimizer.weight_decay),
        ..config.optimizer
    };
    let fold = objective::fold_lengths(
        &student,
        &teachers,
        &stages,
        &config.meal,
        train_set.output_shape(),
        &device,
    );
    let discs = Discriminators::new(&stages, &config.meal, &device)?.fold(&fold, &d_settings);
    let mut state = MealState {
        student,
        discs,
        opt_student: config.optimizer.init(),
        opt_discs: d_settings.init(),
    };
    let mut run_state = RunState::default();
    if resume {
        let path = run.last();
        let c = Container::load(&path)?;
        state.student =
            model_io::load_weights(state.student, c.get(&path, model_io::MODEL)?, &path)?;
        let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
            c.get(&path, DISCS)?.to_vec(),
        ))
        .map_err(|e| Error::checkpoint(&path, format!("discriminators are corrupt: {e}")))?;
        state.discs = state.discs.try_load_record(record).map_err(|e| {
            Error::checkpoint(
                &path,
                format!(
                    "discriminators do not fit: {e} (a run written with another \
                         meal.fold_discriminators, or by an older meal, resumes only with the same)"
                ),
            )
        })?;
        state.opt_student = load_optim_bytes(state.opt_student, c.get(&path, OPTIM)?, &path)?;
        state.opt_discs = load_optim_bytes(state.opt_discs, c.get(&path, OPTIM_D)?, &path)?;
        run_state = c.get_json(&path, STATE)?;
        run.truncate_metrics(run_state.epochs_done)?;
        progress::say(format!(
            "resuming at epoch {} (best {:.2}%)",
            run_state.epochs_done + 1,
            run_state.best_acc
        ));
    }

    let meta = ModelMeta {
        meal_version: env!("CARGO_PKG_VERSION").to_string(),
        arch: config.student.clone(),
        num_classes,
        input_shape: train_set.output_shape(),
        normalization: train_set.normalization(),
        class_names: train_set.class_names(),
        source: "distill".into(),
        epoch: 0,
        test_acc: None,
    };
    let weights: Vec<f64> = match &store {
        Some(s) if config.teachers.is_empty() => vec![1.0; s.header.teachers.len()],
        _ => config.teachers.iter().map(|t| t.weight).collect(),
    };
    let mut last = Accuracy::default();
    for epoch in run_state.epochs_done..config.epochs {
        let t0 = Instant::now();
        let nb = train_loader.num_batches().max(1);
        let bar = progress::bar(nb, &format!("epoch {}", epoch + 1));
        let (mut sums, mut correct, mut seen, mut batches) =
            (objective::StepStats::default(), 0usize, 0usize, 0usize);
        let (mut lr, mut d_lr) = (0.0, 0.0);
        let guard = Guard {
            command: "distill",
            run_dir: &run.path,
            epochs_done: run_state.epochs_done,
            rate_keys: &["lr", "meal.d_lr"],
        };
        for (i, batch) in train_loader.epoch(epoch).enumerate() {
            if crate::train::interrupt::requested() {
                bar.abandon();
                return Err(Error::Interrupted(format!(
                    "stopped in epoch {}; `meal distill --resume {}` continues from epoch {}",
                    epoch + 1,
                    run.path.display(),
                    run_state.epochs_done + 1
                )));
            }
            let batch = batch?;
            lr = config
                .schedule
                .lr(config.lr, epoch, i as f64 / nb as f64, config.epochs);
            d_lr = config.d_lr_at(lr);
            let mut rng = batch_rng(config.seed, epoch, i);
            let chosen = objective::teacher_weights(config.meal.combine, &weights, |n| {
                rng.random_range(0..n)
            });
            let (x, y) = batch_tensors(&batch, &device);
            let cached = store.as_ref().map(|s| {
                stored_logits(s, &chosen, &batch.indices, s.view_of_epoch(epoch), &device)
            });
            let source = match &cached {
                Some(logits) => TeacherSource::Logits(logits),
                None => TeacherSource::Live(&teachers),
            };
            let (next, stats, logits) = objective::step_from(
                state,
                source,
                &chosen,
                &stages,
                &config.meal,
                x,
                y,
                lr,
                d_lr,
            );
            state = next;
            // The step has already updated the weights, but a failed step ends the run and
            // nothing of this epoch is saved, so the damage never leaves memory.
            let losses = [
                ("similarity", stats.sim),
                ("discriminator", stats.adv),
                ("cross-entropy", stats.ce),
            ];
            if let Err(e) = guard.losses(epoch, i, nb, &[("lr", lr), ("d_lr", d_lr)], &losses) {
                bar.abandon();
                return Err(e);
            }
            let (scores, k) = host_rows(&logits);
            correct += topk_correct(&scores, k, &batch.labels, 1);
            seen += batch.labels.len();
            batches += 1;
            sums.sim += stats.sim;
            sums.adv += stats.adv;
            sums.ce += stats.ce;
            sums.d_acc_student += stats.d_acc_student;
            sums.d_acc_teacher += stats.d_acc_teacher;
            bar.inc(1);
            bar.set_message(format!(
                "sim {:.3} D {:.3} acc {:.1}%",
                sums.sim / batches as f64,
                sums.adv / batches as f64,
                100.0 * correct as f64 / seen as f64
            ));
        }
        bar.finish_and_clear();
        let train_seconds = t0.elapsed().as_secs_f64();
        guard.weights(epoch, "student", &state.student)?;
        guard.weights(epoch, "discriminators", &state.discs)?;
        let (accs, _) = evaluate(&[&state.student.valid()], &test_loader, &plain)?;
        guard.outputs(epoch, "student", &accs[0])?;
        last = accs[0];
        let improved = run_state.finish_epoch(epoch, last.top1);
        let b = batches.max(1) as f64;
        let record = DistillEpochRecord {
            epoch,
            lr,
            d_lr,
            sim_loss: sums.sim / b,
            d_loss: sums.adv / b,
            ce_loss: sums.ce / b,
            d_acc_student: 100.0 * sums.d_acc_student / b,
            d_acc_teacher: 100.0 * sums.d_acc_teacher / b,
            train_acc: 100.0 * correct as f64 / seen.max(1) as f64,
            test_top1: last.top1,
            test_top5: last.top5,
            test_loss: last.loss,
            images_per_sec: seen as f64 / train_seconds,
            epoch_seconds: t0.elapsed().as_secs_f64(),
        };
        run.log_metrics(&record)?;
        progress::say(format!(
            "epoch {:>3}/{} lr {:.4} sim {:.4} D {:.4} (acc s/t {:.0}/{:.0}%) train {:.2}% test {:.2}% {:.0} img/s",
            epoch + 1,
            config.epochs,
            lr,
            record.sim_loss,
            record.d_loss,
            record.d_acc_student,
            record.d_acc_teacher,
            record.train_acc,
            last.top1,
            record.images_per_sec
        ));
        let meta = ModelMeta {
            epoch: epoch + 1,
            test_acc: Some(last.top1),
            ..meta.clone()
        };
        let discs_bytes = state
            .discs
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| Error::Other(format!("cannot serialise discriminators: {e}")))?;
        save_checkpoints(
            run,
            &meta,
            &state.student,
            improved,
            &run_state,
            vec![
                (DISCS, discs_bytes.to_vec()),
                (OPTIM, optim_bytes(&state.opt_student)?),
                (OPTIM_D, optim_bytes(&state.opt_discs)?),
            ],
        )?;
    }
    Ok(DistillOutcome {
        run_dir: run.path.clone(),
        best_acc: run_state.best_acc,
        last,
        teachers: report,
        epochs_done: run_state.epochs_done,
        seconds: started.elapsed().as_secs_f64(),
    })
}
