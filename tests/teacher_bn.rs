//! Teachers in `teacher_bn = "eval"` rely on burn's `freeze()` clearing the BatchNorm training
//! mode: after a distillation epoch through `objective::step`, their running buffers must be
//! exactly the checkpoint's, and their outputs exactly what `meal eval` computes from the
//! checkpoint. `teacher_bn = "train"` is the contrast that proves both checks can fail: batch
//! statistics move the buffers and change the outputs.
//!
//! The same run checks the discriminators' learning rate the loop logs against
//! `DistillConfig::d_lr_at`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::Tensor;
use common::*;
use meal::distill::DistillConfig;
use meal::distill::objective::{self, Discriminators, MealState, Teacher};
use meal::distill::teachers::load_teachers;
use meal::distill::trainer::resolve_stages;
use meal::train::model_io;
use meal::train::tensors::batch_tensors;

fn teacher() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let run = scratch("teacher_bn-teacher");
        train_fresh(train_table("resnet8", &run, 1, 5)).unwrap();
        run.join("best.ckpt")
    })
}

fn config(bn: &str) -> DistillConfig {
    let dir = tempfile::tempdir().unwrap();
    let table = distill_table(
        "resnet8",
        &[teacher()],
        &dir.path().join("run"),
        1,
        &format!("teacher_bn = \"{bn}\""),
    );
    meal::config::from_table(table, "distill config").unwrap()
}

/// Every tensor of a model by module path (values only: ids differ between loads).
fn tensors(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    decode_pack(bytes, "model")
        .tensors
        .into_iter()
        .map(|(name, (_, value))| (name, value))
        .collect()
}

/// The teacher after one epoch of `objective::step` on the training data, as `meal distill`
/// runs it.
fn teacher_after_an_epoch(config: &DistillConfig) -> Teacher {
    let device = meal::backend::autodiff_device();
    let splits = meal::data::open(&config.data).unwrap();
    let (mut teachers, _) = load_teachers(config, splits.train.as_ref()).unwrap();
    let stages = resolve_stages(config, &teachers, 10).unwrap();
    let mut state = MealState {
        student: meal::models::build(&config.student, 10, &device).unwrap(),
        discs: Discriminators::new(&stages, &config.meal, &device).unwrap(),
        opt_student: config.optimizer.init(),
        opt_discs: config.optimizer.init(),
    };
    let (loader, _) = meal::train::run::loaders(
        splits.train.clone(),
        splits.test.clone(),
        config.batch_size,
        config.eval_batch_size,
        config.seed,
        1,
    );
    let mut batches = 0;
    for batch in loader.epoch(0) {
        let (x, y) = batch_tensors(&batch.unwrap(), &device);
        state = objective::step(
            state,
            &teachers,
            &[(0, 1.0)],
            &stages,
            &config.meal,
            x,
            y,
            0.05,
            0.001,
        )
        .unwrap()
        .0;
        batches += 1;
    }
    assert!(batches >= 4, "{batches} batches");
    teachers.pop().unwrap()
}

/// Teacher logits on a test batch, and `meal eval`'s logits for the checkpoint on it.
fn logits_vs_eval(teacher: &Teacher, path: &Path, config: &DistillConfig) -> (Vec<f32>, Vec<f32>) {
    let splits = meal::data::open(&config.data).unwrap();
    let (_, loader) =
        meal::train::run::loaders(splits.train.clone(), splits.test.clone(), 64, 16, 0, 1);
    let batch = loader.epoch(0).next().unwrap().unwrap();
    let ad = meal::backend::autodiff_device();
    let plain = meal::backend::device();
    let (x, _) = batch_tensors(&batch, &ad);
    let ours: Tensor<2> = teacher.forward(&x).logits;
    // What `meal eval` does: the checkpoint on the plain device, forward on the test batch.
    let (net, _, _) = model_io::load_model(path, &plain).unwrap();
    let (x, _) = batch_tensors(&batch, &plain);
    let theirs = net.forward(x).logits;
    (
        ours.try_into_vec_as::<f32>().unwrap(),
        theirs.try_into_vec_as::<f32>().unwrap(),
    )
}

#[test]
fn eval_mode_teachers_keep_their_buffers_and_match_meal_eval() {
    meal::progress::set_quiet(true);
    let path = teacher();
    let saved = tensors(
        meal::train::checkpoint::Container::load(path)
            .unwrap()
            .get(path, model_io::MODEL)
            .unwrap(),
    );
    assert!(
        saved.keys().any(|k| k.ends_with("running_mean")),
        "{:?}",
        saved.keys()
    );

    let eval_bn = config("eval");
    let t = teacher_after_an_epoch(&eval_bn);
    let after = tensors(&model_io::model_bytes(&t.net).unwrap());
    assert_eq!(
        after, saved,
        "eval-mode teacher changed during distillation"
    );
    let (ours, eval) = logits_vs_eval(&t, path, &eval_bn);
    assert_eq!(
        ours, eval,
        "eval-mode teacher outputs differ from meal eval's"
    );

    // The contrast: batch statistics move the buffers and the outputs.
    let train_bn = config("train");
    let t = teacher_after_an_epoch(&train_bn);
    let after = tensors(&model_io::model_bytes(&t.net).unwrap());
    let moved: Vec<_> = saved
        .iter()
        .filter(|(k, v)| k.ends_with("running_mean") && after.get(*k) != Some(v))
        .collect();
    assert!(!moved.is_empty(), "train-mode teacher buffers did not move");
    let (ours, eval) = logits_vs_eval(&t, path, &train_bn);
    assert_ne!(ours, eval);
}

#[test]
fn the_loop_logs_the_discriminator_lr_of_d_lr_at() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut table = distill_table("resnet8", &[teacher()], &run, 2, "d_lr = 0.004");
    meal::config::apply_set(&mut table, "lr=0.08").unwrap();
    let config: DistillConfig = meal::config::from_table(table.clone(), "distill").unwrap();
    distill_fresh(table).unwrap();
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    // milestones = [1], gamma 0.5: the student runs at 0.08 then 0.04, D at 0.004 then 0.002.
    for (epoch, (student, d)) in [(0.08, 0.004), (0.04, 0.002)].into_iter().enumerate() {
        let logged_lr = lines[epoch]["lr"].as_f64().unwrap();
        let logged_d = lines[epoch]["d_lr"].as_f64().unwrap();
        assert!(
            (logged_lr - student).abs() < 1e-12,
            "epoch {epoch}: lr {logged_lr}"
        );
        assert!(
            (logged_d - d).abs() < 1e-12,
            "epoch {epoch}: d_lr {logged_d}"
        );
        assert_eq!(logged_d, config.d_lr_at(logged_lr));
    }
}
