//! Faults around a run, through the built binary: a checkpoint write that fails halfway (the
//! `MEAL_TEST_FAIL_WRITE` hook: root ignores read-only folders), a device read that fails
//! mid-epoch (the `MEAL_TEST_FAIL_READ` hook), SIGTERM, a second process on the same run
//! folder, a stale lock, and a corrupt `last.ckpt` on `--resume`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn meal() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meal"));
    c.env_remove("MEAL_TEST_FAIL_WRITE");
    c.env_remove("MEAL_TEST_FAIL_READ");
    c
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn run(c: &mut Command) -> Output {
    c.output().expect("runs meal")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_mentions(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "`{p}` missing from:\n{text}");
    }
}

/// A config file for a tiny `meal train` run into `dir/run`.
fn config(dir: &Path, epochs: usize) -> (PathBuf, PathBuf) {
    let run = dir.join("run");
    let file = dir.join("train.toml");
    std::fs::write(
        &file,
        toml::to_string(&train_table("resnet8", &run, epochs, 3)).unwrap(),
    )
    .unwrap();
    (file, run)
}

fn train_ok(file: &Path) {
    let o = run(meal().args(["-q", "train", "--config", &s(file)]));
    assert!(o.status.success(), "{}", stderr(&o));
}

fn no_temp_files(run: &Path) {
    for e in std::fs::read_dir(run).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "left-over {name}");
    }
}

/// `meal train --resume RUN --set epochs=2` with the fault that `env` injects.
fn resume_to_epoch_2_with(run_dir: &Path, env: (&str, &str)) -> Output {
    run(meal().env(env.0, env.1).args([
        "-q",
        "train",
        "--resume",
        &s(run_dir),
        "--set",
        "epochs=2",
    ]))
}

/// Without the fault, the run resumes from its intact checkpoint and logs epoch 2.
fn resumes_to_epoch_2(run_dir: &Path) {
    let o = run(meal().args(["-q", "train", "--resume", &s(run_dir)]));
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
}

fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("meal exited ({status}) before writing {}", path.display());
        }
        assert!(start.elapsed() < Duration::from_secs(120), "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_failing_checkpoint_write_keeps_the_previous_one_and_stops_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (file, run_dir) = config(dir.path(), 1);
    train_ok(&file);
    let last = run_dir.join("last.ckpt");
    let before = std::fs::read(&last).unwrap();

    let o = resume_to_epoch_2_with(&run_dir, ("MEAL_TEST_FAIL_WRITE", "last.ckpt"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_mentions(
        &stderr(&o),
        &[
            &s(&last),
            "No space left on device",
            "previous version is left as it was",
        ],
    );
    assert_eq!(std::fs::read(&last).unwrap(), before, "last.ckpt changed");
    no_temp_files(&run_dir);
    assert!(!run_dir.join("meal.lock").exists(), "lock left behind");

    // Once the disk is fine again, the run resumes from the intact checkpoint.
    resumes_to_epoch_2(&run_dir);
}

/// A step whose read from the device fails (as a kernel the device could not run makes it)
/// ends the run with meal's error, not a panic, and writes nothing of the epoch: the
/// checkpoints and metrics stay those of the last finished epoch, from which the run resumes.
#[test]
fn a_failed_device_read_mid_epoch_keeps_the_checkpoints_and_stops_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (file, run_dir) = config(dir.path(), 1);
    train_ok(&file);
    let kept = ["last.ckpt", "best.ckpt", "metrics.jsonl"]
        .map(|name| (name, std::fs::read(run_dir.join(name)).unwrap()));

    // Four steps an epoch: the third read fails, after two updates of epoch 2.
    let o = resume_to_epoch_2_with(&run_dir, ("MEAL_TEST_FAIL_READ", "3"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert_mentions(
        &e,
        &[
            "error: device ",
            "reading the step's losses and outputs back failed",
            "injected by MEAL_TEST_FAIL_READ",
            "--device flex",
        ],
    );
    assert!(!e.contains("panicked"), "{e}");
    for (name, bytes) in &kept {
        assert!(
            std::fs::read(run_dir.join(name)).unwrap() == *bytes,
            "{name} changed"
        );
    }
    no_temp_files(&run_dir);
    assert!(!run_dir.join("meal.lock").exists(), "lock left behind");

    resumes_to_epoch_2(&run_dir);

    // A fresh run that fails so, before it saved an epoch, leaves no folder.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let (file, run_dir) = config(&fresh, 1);
    let o =
        run(meal()
            .env("MEAL_TEST_FAIL_READ", "1")
            .args(["-q", "train", "--config", &s(&file)]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!run_dir.exists(), "the failed run left its folder");
}

#[test]
fn sigterm_stops_like_ctrl_c_and_a_second_writer_is_refused_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let (file, run_dir) = config(dir.path(), 200);
    let mut first = meal()
        .args(["-q", "train", "--config", &s(&file)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = run_dir.join("meal.lock");
    wait_for(&run_dir.join("last.ckpt"), &mut first);
    let pid = first.id().to_string();
    assert_eq!(std::fs::read_to_string(&lock).unwrap().trim(), pid);

    let second = run(meal().args(["-q", "train", "--resume", &s(&run_dir)]));
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    assert_mentions(&stderr(&second), &[&s(&lock), "in use by process", &pid]);
    let fresh = run(meal().args(["-q", "train", "--config", &s(&file)]));
    assert!(!fresh.status.success());
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run was disturbed"
    );

    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_mentions(&stderr(&out), &["interrupted", "--resume"]);
    assert!(!lock.exists(), "lock left behind");
    no_temp_files(&run_dir);
    meal::train::checkpoint::Container::load(&run_dir.join("last.ckpt")).unwrap();
}

#[test]
fn a_live_lock_is_refused_and_a_stale_one_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let (file, run_dir) = config(dir.path(), 1);
    std::fs::create_dir_all(&run_dir).unwrap();
    let lock = run_dir.join("meal.lock");

    let mut holder = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(&lock, format!("{}\n", holder.id())).unwrap();
    let o = run(meal().args(["-q", "train", "--config", &s(&file)]));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_mentions(&stderr(&o), &[&s(&lock), &holder.id().to_string()]);
    assert!(
        !run_dir.join("config.toml").exists(),
        "wrote into a locked folder"
    );

    // The holder is gone now: its lock is stale, taken over with a message.
    let o = run(meal().args(["-q", "train", "--config", &s(&file)]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_mentions(&stderr(&o), &["taking over the lock", "no longer running"]);
    assert!(run_dir.join("last.ckpt").exists());
    assert!(!lock.exists());
}

#[test]
fn a_corrupt_last_checkpoint_is_refused_on_resume_pointing_at_best() {
    let dir = tempfile::tempdir().unwrap();
    let (file, run_dir) = config(dir.path(), 1);
    train_ok(&file);
    let last = run_dir.join("last.ckpt");
    let mut bytes = std::fs::read(&last).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&last, &bytes).unwrap();

    let o = run(meal().args(["-q", "train", "--resume", &s(&run_dir), "--set", "epochs=2"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let best = run_dir.join("best.ckpt");
    assert_mentions(
        &stderr(&o),
        &[
            &s(&last),
            "CRC-32 checksum mismatch",
            &s(&best),
            "meal eval",
        ],
    );
    // Nothing was written: the damaged file is still there to inspect.
    assert_eq!(std::fs::read(&last).unwrap(), bytes);
    assert!(!run_dir.join("meal.lock").exists());
    // The pointer is good advice: best.ckpt loads.
    meal::train::checkpoint::Container::load(&best).unwrap();
}
