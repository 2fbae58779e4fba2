//! What the run skeleton promises every kind of run: a flag given with `--resume` takes effect
//! or is refused with the reason, a refused or failed command leaves the run folder
//! byte-identical, and a fresh run that fails or is stopped before it saved an epoch leaves no
//! folder behind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use meal::train::interrupt;

/// The stop request is process-wide: the tests of this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Asserts that `result` failed, mentioning `needles`, and that `run` is as `before`.
fn refused<T: std::fmt::Debug>(
    result: meal::Result<T>,
    needles: &[&str],
    run: &Path,
    before: &BTreeMap<PathBuf, Vec<u8>>,
) {
    let msg = message(result);
    assert_mentions(&msg, needles);
    assert!(
        snapshot(run) == *before,
        "the run folder changed after a refused command: {msg}"
    );
}

/// A one-epoch resnet8 run in a fresh folder, trained through the CLI.
fn one_epoch_run(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    let table = train_table("resnet8", &run, 1, 3);
    let config = dir.join("train.toml");
    std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();
    cli(&["train", "--config", &s(&config)]).unwrap();
    assert!(run.join("last.ckpt").exists());
    run
}

#[test]
fn flags_given_with_resume_take_effect_or_are_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = one_epoch_run(dir.path());
    let before = snapshot(&run);

    // A finished run: resuming it trains and writes nothing, and reports what it measured.
    let out = train_resume(&run, &[]).unwrap();
    assert_eq!(out.epochs_done, 1);
    let m = metrics(&run);
    assert_eq!(out.last.top1, m[0]["test_top1"].as_f64().unwrap());
    assert!(
        snapshot(&run) == before,
        "resuming a finished run changed its folder"
    );
    // A change that could only apply to epochs not asked for is refused, not ignored.
    refused(
        cli(&["train", "--resume", &s(&run), "--lr", "0.01"]),
        &[
            "lr = 0.01 would not take effect",
            "nothing left to train",
            "--epochs 2",
        ],
        &run,
        &before,
    );
    // Flags a resumed run cannot take are refused, naming them and why.
    refused(
        cli(&["train", "--resume", &s(&run), "--arch", "resnet14"]),
        &["--arch", "--resume"],
        &run,
        &before,
    );
    refused(
        cli(&[
            "train",
            "--resume",
            &s(&run),
            "--epochs",
            "3",
            "--set",
            "arch=resnet14",
        ]),
        &["arch cannot change", "resnet8", "resnet14"],
        &run,
        &before,
    );
    let other = dir.path().join("other-data");
    refused(
        cli(&[
            "train",
            "--resume",
            &s(&run),
            "--epochs",
            "3",
            "--data",
            &s(&other),
        ]),
        &["data.path cannot change", "other-data"],
        &run,
        &before,
    );
    refused(
        cli(&[
            "train",
            "--resume",
            &s(&run),
            "--epochs",
            "3",
            "--seed",
            "9",
        ]),
        &["seed cannot change"],
        &run,
        &before,
    );
    let config = dir.path().join("train.toml");
    refused(
        cli(&["train", "--resume", &s(&run), "--config", &s(&config)]),
        &["--config cannot be given with --resume"],
        &run,
        &before,
    );

    // --epochs extends the schedule and trains the new epochs; --lr takes effect too.
    cli(&[
        "train",
        "--resume",
        &s(&run),
        "--epochs",
        "2",
        "--lr",
        "0.02",
    ])
    .unwrap();
    let m = metrics(&run);
    assert_eq!(m.len(), 2, "the resumed run trained one more epoch");
    // The multistep schedule halves the lr after epoch 1: 0.02 × 0.5.
    assert!(
        (m[1]["lr"].as_f64().unwrap() - 0.01).abs() < 1e-12,
        "{:?}",
        m[1]
    );
    let recorded = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert_mentions(&recorded, &["epochs = 2", "lr = 0.02"]);
}

#[test]
fn distill_refuses_flags_of_a_fresh_run_on_resume() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let teacher = one_epoch_run(dir.path());
    let run = dir.path().join("distill");
    let table = distill_table("resnet8", &[&teacher], &run, 1, "");
    distill_fresh(table).unwrap();
    let before = snapshot(&run);
    refused(
        cli(&["distill", "--resume", &s(&run), "--teacher", &s(&teacher)]),
        &["--teacher cannot be given with --resume"],
        &run,
        &before,
    );
    refused(
        cli(&[
            "distill",
            "--resume",
            &s(&run),
            "--epochs",
            "2",
            "--set",
            "student=resnet14",
        ]),
        &["student cannot change"],
        &run,
        &before,
    );
    refused(
        distill_resume(
            &run,
            &["epochs=2", "meal.stages=[{ index = -1 }, { index = 1 }]"],
        ),
        &["meal.stages cannot change"],
        &run,
        &before,
    );
    // A change the run can take: two more epochs at another discriminator lr.
    let out = distill_resume(&run, &["epochs=3", "meal.d_lr=1e-4"]).unwrap();
    assert_eq!(out.epochs_done, 3);
    assert_eq!(metrics(&run).len(), 3);
    let before = snapshot(&run);
    refused(
        distill_resume(&run, &["epochs=2"]),
        &[
            "epochs = 2",
            "already holds 3 finished epochs",
            "cannot be shortened",
        ],
        &run,
        &before,
    );
    // Resuming the finished run reports its teachers as measured when it started.
    let again = distill_resume(&run, &[]).unwrap();
    assert_eq!(again.teachers.ensemble.top1, out.teachers.ensemble.top1);
    assert!(snapshot(&run) == before);
}

#[test]
fn a_resume_that_fails_to_load_leaves_the_folder_as_it_was() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = one_epoch_run(dir.path());
    // Hand-edit the recorded architecture: the config is accepted, the weights do not fit.
    let path = run.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"resnet8\"", "\"resnet14\"")).unwrap();
    let before = snapshot(&run);
    let msg = message(train_resume(&run, &["epochs=2"]));
    assert!(!msg.is_empty());
    assert!(
        snapshot(&run) == before,
        "a failed resume changed the folder: {msg}"
    );
}

#[test]
fn a_fresh_run_that_saves_nothing_leaves_no_folder() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // A teacher file that exists (the preflight passes) but is no checkpoint: the run fails
    // while loading it, after its folder was made.
    let teacher = dir.path().join("teacher.ckpt");
    std::fs::write(&teacher, b"not a checkpoint").unwrap();
    let out_dir = dir.path().join("runs");
    let mut table = distill_table("resnet8", &[&teacher], &out_dir.join("unused"), 1, "");
    table.remove("run_dir");
    table.insert("out_dir".into(), s(&out_dir).into());
    let msg = message(distill_fresh(table));
    assert_mentions(&msg, &["teacher.ckpt"]);
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a failed run left {left:?}");

    // A stop request in the first epoch: nothing to resume, so nothing is left, and the
    // message does not suggest a --resume that would fail.
    let run = dir.path().join("stopped");
    interrupt::set(true);
    let result = train_fresh(train_table("resnet8", &run, 1, 3));
    interrupt::set(false);
    let msg = message(result);
    assert_mentions(&msg, &["before any epoch was saved", "nothing to resume"]);
    assert!(!msg.contains("--resume"), "{msg}");
    assert!(!run.exists(), "the stopped run left its folder");

    // A --run-dir that is a file is named as such.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let msg = message(train_fresh(train_table("resnet8", &file, 1, 3)));
    assert_mentions(&msg, &["a-file", "is a file, not a folder", "run_dir"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}
