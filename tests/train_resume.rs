//! `meal train` checkpoints and `--resume`: a run stopped after an epoch (or interrupted in the
//! middle of one, on CIFAR or on photos) and resumed ends bit-for-bit where a straight run ends:
//! weights, BatchNorm running statistics, optimizer state, counters and the logged metrics; and
//! an interrupt never damages the last checkpoint.
//!
//! The interrupt flag is process-global, so every test that trains holds `STOP_LOCK` for reading
//! and the interrupt tests hold it for writing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

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

const ARCH: &str = "resnet8";
const SEED: u64 = 7;

/// The reference: two epochs in one go.
fn straight_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let _g = training();
        let run = scratch("train_resume").join("straight");
        let out = train_fresh(train_table(ARCH, &run, 2, SEED)).unwrap();
        assert_eq!(out.epochs_done, 2);
        let m = metrics(&run);
        assert_eq!(m.len(), 2);
        // The schedule's milestone at epoch 1 halves the lr.
        assert_eq!(m[0]["lr"].as_f64(), Some(0.05));
        assert_eq!(m[1]["lr"].as_f64(), Some(0.025));
        run
    })
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

/// Resumed run == straight run: the whole checkpoint, best.ckpt and metrics.jsonl.
fn assert_matches_straight(run: &Path) {
    let reference = straight_run();
    let (a, b) = (
        canonical_state(&reference.join("last.ckpt")),
        canonical_state(&run.join("last.ckpt")),
    );
    assert!(
        a.keys().any(|k| k.starts_with("optim/")),
        "the checkpoint holds no optimizer state"
    );
    assert!(
        a.keys().any(|k| k.contains("running_mean")),
        "the checkpoint holds no BatchNorm running statistics"
    );
    assert_same_state(&a, &b, "last.ckpt after resume");
    assert_same_state(
        &canonical_state(&reference.join("best.ckpt")),
        &canonical_state(&run.join("best.ckpt")),
        "best.ckpt after resume",
    );
    assert_same_metrics(reference, run);
    no_temp_files(run);
}

/// The `meal` binary trains on its main thread made worker 0 of rayon's pool, the other workers
/// polling for work around the steps (`kernels::hot::here`); this test thread is outside the
/// pool, so the straight run trained without them. The two agree bit for bit.
#[test]
fn a_run_on_a_pool_worker_with_the_others_polling_matches_the_straight_run() {
    straight_run();
    let _g = training();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("polled");
    let dir = run.clone();
    std::thread::spawn(move || {
        // The pool (and this thread's place in it) is leaked when the test ends.
        let _pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .use_current_thread()
            .build()
            .unwrap();
        let polled = meal::kernels::hot::here(&meal::backend::device(), meal::kernels::hot::is_hot);
        assert!(polled, "the workers do not poll around a pool worker's run");
        let out = train_fresh(train_table(ARCH, &dir, 2, SEED)).unwrap();
        assert_eq!(out.epochs_done, 2);
    })
    .join()
    .unwrap();
    assert_matches_straight(&run);
}

#[test]
fn stop_after_one_epoch_then_resume_matches_straight_run_bit_for_bit() {
    straight_run();
    let _g = training();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("split");
    let out = train_fresh(train_table(ARCH, &run, 1, SEED)).unwrap();
    assert_eq!(out.epochs_done, 1);
    let after_one = canonical_state(&run.join("last.ckpt"));

    // Negative control, on a moved copy of the run folder: a resume that changes the lr a
    // little must not compare equal (the comparison below is sensitive).
    let copy = dir.path().join("moved");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&run).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    train_resume(&copy, &["epochs=2", "lr=0.0501"]).unwrap();
    let (n, diff) = count_differences(
        &canonical_state(&straight_run().join("last.ckpt")),
        &canonical_state(&copy.join("last.ckpt")),
        "model/",
    );
    assert!(diff * 2 > n, "lr 0.0501 changed only {diff} of {n} tensors");

    let out = train_resume(&run, &["epochs=2"]).unwrap();
    assert_eq!(out.epochs_done, 2);
    let after_two = canonical_state(&run.join("last.ckpt"));

    // Not vacuous: epoch 2 changed the weights, the running statistics and the momentum.
    for prefix in ["model/", "optim/"] {
        let (n, diff) = count_differences(&after_one, &after_two, prefix);
        assert!(
            n > 0 && diff * 2 > n,
            "{prefix}: only {diff} of {n} entries changed in epoch 2"
        );
    }
    // The resumed config says 2 epochs now.
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(cfg.contains("epochs = 2"), "{cfg}");

    assert_matches_straight(&run);

    // A resume of a finished run trains nothing and changes nothing.
    let out = train_resume(&run, &[]).unwrap();
    assert_eq!(out.epochs_done, 2);
    assert_same_state(
        &after_two,
        &canonical_state(&run.join("last.ckpt")),
        "resume of a finished run",
    );
    assert_eq!(metrics(&run).len(), 2);
}

#[test]
fn checkpoint_weights_load_and_evaluate_like_the_run_reported() {
    let run = straight_run();
    let device = meal::backend::device();
    let (net, meta, container) =
        meal::train::model_io::load_model(&run.join("last.ckpt"), &device).unwrap();
    assert_eq!(meta.arch, ARCH);
    assert_eq!(meta.num_classes, 10);
    assert_eq!(meta.epoch, 2);
    assert!(container.sections.contains_key("optim"));
    // Re-serialising the loaded model gives back exactly the stored tensors. (Not their ids:
    // burn restores parameter ids on load but gives BatchNorm running statistics fresh ones,
    // which is harmless since no optimizer state refers to them.)
    let again = decode_pack(
        &meal::train::model_io::model_bytes(&net).unwrap(),
        "reloaded",
    );
    let stored = decode_pack(container.sections["model"].as_slice(), "stored");
    let names = |p: &Pack| p.tensors.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&again), names(&stored));
    let differing: Vec<_> = stored
        .tensors
        .iter()
        .filter(|(k, (_, v))| again.tensors.get(*k).map(|(_, w)| w) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    assert!(
        differing.is_empty(),
        "reloaded weights differ: {differing:?}"
    );
    // The test accuracy logged for epoch 2 is what the checkpoint gives.
    let last = metrics(run).pop().unwrap();
    let logged = last["test_top1"].as_f64().unwrap();
    assert_eq!(meta.test_acc, Some(logged));
    let loader = mini_test_loader();
    let (accs, _) = meal::train::evaluate::evaluate(&[&net], &loader, &device).unwrap();
    assert_eq!(accs[0].top1, logged);
}

#[test]
fn interrupt_before_an_epoch_keeps_last_checkpoint_and_resume_is_exact() {
    straight_run();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("interrupted");
    let _g = interrupting();
    train_fresh(train_table(ARCH, &run, 1, SEED)).unwrap();
    let before = canonical_state(&run.join("last.ckpt"));

    interrupt::set(true);
    let result = train_resume(&run, &["epochs=2"]);
    interrupt::set(false);
    let err = result.expect_err("an interrupted run must not report success");
    assert!(matches!(err, Error::Interrupted(_)), "{err:?}");
    let msg = err.to_string();
    assert_mentions(
        &msg,
        &["meal train --resume", &run.display().to_string(), "epoch 2"],
    );
    assert_same_state(
        &before,
        &canonical_state(&run.join("last.ckpt")),
        "last.ckpt after an interrupt",
    );
    assert_eq!(metrics(&run).len(), 1);
    no_temp_files(&run);

    // The --set of the interrupted resume was recorded, so a plain resume finishes the job.
    let out = train_resume(&run, &[]).unwrap();
    assert_eq!(out.epochs_done, 2);
    assert_matches_straight(&run);
}

/// Trains `table` (a fresh run in `run`) and sets the interrupt flag, as a Ctrl-C does, as soon
/// as the run logs its first epoch; returns the run's error, which must be the interrupt. The
/// caller holds [`interrupting`].
fn interrupted_once_an_epoch_is_logged(run: &Path, table: toml::Table) -> Error {
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let log = run.join("metrics.jsonl");
            while !done.load(Ordering::SeqCst) {
                if std::fs::metadata(&log).is_ok_and(|m| m.len() > 0) {
                    interrupt::set(true);
                    return true;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            false
        });
        let result = train_fresh(table);
        done.store(true, Ordering::SeqCst);
        assert!(watcher.join().unwrap(), "epoch 1 was never logged");
        result
    });
    interrupt::set(false);
    let err = result.expect_err("the run finished before the interrupt was seen");
    assert!(matches!(err, Error::Interrupted(_)), "{err:?}");
    err
}

#[test]
fn interrupt_in_the_middle_of_an_epoch_then_resume_is_exact() {
    straight_run();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("mid-epoch");
    let _g = interrupting();

    // A "Ctrl-C" as soon as epoch 1 is logged: the run stops in epoch 2 at a batch boundary.
    let err = interrupted_once_an_epoch_is_logged(&run, train_table(ARCH, &run, 2, SEED));
    assert_mentions(
        &err.to_string(),
        &["stopped in epoch 2", "--resume", "continues from epoch 2"],
    );
    // last.ckpt is epoch 1's, whole and loadable.
    let (_, meta, _) =
        meal::train::model_io::load_model(&run.join("last.ckpt"), &meal::backend::device())
            .unwrap();
    assert_eq!(meta.epoch, 1);
    no_temp_files(&run);

    let out = train_resume(&run, &[]).unwrap();
    assert_eq!(out.epochs_done, 2);
    assert_matches_straight(&run);
}

#[test]
fn interrupt_on_photos_then_resume_is_exact() {
    // The same stop and resume on the ImageNet-layout sample (decoded JPEGs, RandomResizedCrop
    // views drawn by worker threads): five epochs straight, against a run interrupted as soon
    // as its first epoch is logged and then resumed. An epoch of the sample takes about a
    // tenth of a second; the later epochs leave a slow watcher thread time to catch one.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagenet-sample");
    const EPOCHS: usize = 5;
    let extra = "interpolation = \"bicubic\"";
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    {
        let _g = training();
        train_fresh(photo_train_table(&sample, &straight, EPOCHS, extra)).unwrap();
    }
    let run = dir.path().join("interrupted");
    let _g = interrupting();
    let err =
        interrupted_once_an_epoch_is_logged(&run, photo_train_table(&sample, &run, EPOCHS, extra));
    let logged = metrics(&run).len();
    assert!((1..EPOCHS).contains(&logged), "{logged} epochs logged");
    assert_mentions(
        &err.to_string(),
        &[&format!("stopped in epoch {}", logged + 1), "--resume"],
    );
    no_temp_files(&run);

    let out = train_resume(&run, &[]).unwrap();
    assert_eq!(out.epochs_done, EPOCHS);
    assert_same_state(
        &canonical_state(&straight.join("last.ckpt")),
        &canonical_state(&run.join("last.ckpt")),
        "last.ckpt of an interrupted and resumed run on photos",
    );
    assert_same_metrics(&straight, &run);
    no_temp_files(&run);
}
