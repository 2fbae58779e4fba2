//! `meal distill` checkpoints and `--resume`: one epoch, a stop, and a resume end bit-for-bit
//! where two straight epochs end — student, discriminators, both optimizers, counters and the
//! logged metrics — in the reference `joint` mode with one random teacher per batch and teachers
//! on batch statistics, and in the GAN-style `alternating` mode on the mean of the teachers.
//!
//! Teachers in `teacher_bn = "train"` update their BatchNorm running buffers in memory during a
//! run, and a resumed run reloads them from disk; their outputs depend only on batch statistics
//! there, so exactness must still hold, which the first test checks.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use common::*;
use meal::Error;
use meal::train::interrupt;

static STOP_LOCK: RwLock<()> = RwLock::new(());

fn training() -> RwLockReadGuard<'static, ()> {
    STOP_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

fn interrupting() -> RwLockWriteGuard<'static, ()> {
    let g = STOP_LOCK.write().unwrap_or_else(|e| e.into_inner());
    interrupt::set(false);
    g
}

/// Two tiny teachers of different families, one epoch each: (resnet8 run, vgg8 run).
fn teachers() -> &'static (PathBuf, PathBuf) {
    static T: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    T.get_or_init(|| {
        let _g = training();
        let dir = scratch("distill_resume-teachers");
        let mut runs = Vec::new();
        for (arch, seed) in [("resnet8", 1), ("vgg8", 2)] {
            let run = dir.join(arch);
            train_fresh(train_table(arch, &run, 1, seed)).unwrap();
            runs.push(run);
        }
        (runs[0].clone(), runs[1].clone())
    })
}

fn table(run: &Path, epochs: usize, meal: &str) -> toml::Table {
    let (a, b) = teachers();
    // A run folder (its best.ckpt) and an explicit checkpoint file.
    distill_table("resnet8", &[a, &b.join("last.ckpt")], run, epochs, meal)
}

fn no_temp_files(run: &Path) {
    for entry in std::fs::read_dir(run).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains(".tmp"),
            "left-over temp file {name} in {}",
            run.display()
        );
    }
}

/// Everything a straight run and a stopped-and-resumed run leave behind must agree.
fn assert_same_runs(straight: &Path, resumed: &Path) {
    let a = canonical_state(&straight.join("last.ckpt"));
    let b = canonical_state(&resumed.join("last.ckpt"));
    for prefix in [
        "model/",
        "discriminators/",
        "optim/",
        "optim_discriminators/",
    ] {
        assert!(
            a.keys().any(|k| k.starts_with(prefix) && !k.contains('#')),
            "last.ckpt holds nothing under {prefix}"
        );
    }
    assert_same_state(&a, &b, "distill last.ckpt after resume");
    assert_same_state(
        &canonical_state(&straight.join("best.ckpt")),
        &canonical_state(&resumed.join("best.ckpt")),
        "distill best.ckpt after resume",
    );
    assert_same_metrics(straight, resumed);
    let teachers_json =
        |run: &Path| std::fs::read_to_string(run.join("teachers.json")).expect("teachers.json");
    assert_eq!(teachers_json(straight), teachers_json(resumed));
    no_temp_files(resumed);
}

/// Epoch 2 of `run` changed every part of the state (so the comparison is not vacuous).
fn assert_epoch_two_moved(after_one: &std::collections::BTreeMap<String, Vec<u8>>, run: &Path) {
    let after_two = canonical_state(&run.join("last.ckpt"));
    for prefix in [
        "model/",
        "discriminators/",
        "optim/",
        "optim_discriminators/",
    ] {
        let (n, diff) = count_differences(after_one, &after_two, prefix);
        assert!(
            n > 0 && diff * 2 > n,
            "{prefix}: only {diff} of {n} entries changed in epoch 2"
        );
    }
}

#[test]
fn joint_random_teacher_train_bn_resume_and_interrupt_are_bit_exact() {
    let meal = r#"
combine = "random"
teacher_bn = "train"
adversarial = "joint"
stages = [{ index = -1 }]
"#;
    teachers();
    let _g = interrupting();
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let out = distill_fresh(table(&straight, 2, meal)).unwrap();
    assert_eq!(out.epochs_done, 2);
    assert_eq!(out.teachers.teachers.len(), 2);
    let m = metrics(&straight);
    assert_eq!(m.len(), 2);
    assert_eq!(m[1]["lr"].as_f64(), Some(0.025));

    let resumed = dir.path().join("resumed");
    distill_fresh(table(&resumed, 1, meal)).unwrap();
    let after_one = canonical_state(&resumed.join("last.ckpt"));

    // An interrupt before the first batch of epoch 2 leaves epoch 1's checkpoint untouched.
    interrupt::set(true);
    let result = distill_resume(&resumed, &["epochs=2"]);
    interrupt::set(false);
    let err = result.expect_err("an interrupted run must not report success");
    assert!(matches!(err, Error::Interrupted(_)), "{err:?}");
    assert_mentions(
        &err.to_string(),
        &[
            "meal distill --resume",
            &resumed.display().to_string(),
            "epoch 2",
        ],
    );
    assert_same_state(
        &after_one,
        &canonical_state(&resumed.join("last.ckpt")),
        "distill last.ckpt after an interrupt",
    );
    assert_eq!(metrics(&resumed).len(), 1);

    let out = distill_resume(&resumed, &[]).unwrap();
    assert_eq!(out.epochs_done, 2);
    assert_epoch_two_moved(&after_one, &resumed);
    assert_same_runs(&straight, &resumed);
}

#[test]
fn alternating_mean_softmax_with_a_feature_stage_resume_is_bit_exact() {
    let meal = r#"
combine = "mean-softmax"
teacher_bn = "eval"
adversarial = "alternating"
d_lr = 0.01
stages = [{ index = 2, out_dim = 100 }, { index = -1 }]
"#;
    teachers();
    let _g = training();
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    distill_fresh(table(&straight, 2, meal)).unwrap();

    let resumed = dir.path().join("resumed");
    distill_fresh(table(&resumed, 1, meal)).unwrap();
    let after_one = canonical_state(&resumed.join("last.ckpt"));
    // Two stages: two discriminators.
    let discs: std::collections::BTreeSet<_> = after_one
        .keys()
        .filter_map(|k| k.strip_prefix("discriminators/"))
        .filter_map(|k| k.split('.').skip_while(|s| *s != "list").nth(1))
        .collect();
    assert_eq!(
        discs.len(),
        2,
        "expected a discriminator per stage: {discs:?}"
    );
    // The feature stage's discriminator is folded: its scalars α, β must resume exactly too.
    assert!(
        after_one.keys().any(|k| k.starts_with("discriminators/")
            && k.contains("folded")
            && k.contains("scale")),
        "expected a folded discriminator: {:?}",
        after_one
            .keys()
            .filter(|k| k.starts_with("discriminators/"))
            .collect::<Vec<_>>()
    );

    let out = distill_resume(&resumed, &["epochs=2"]).unwrap();
    assert_eq!(out.epochs_done, 2);
    assert_epoch_two_moved(&after_one, &resumed);
    assert_same_runs(&straight, &resumed);
}
