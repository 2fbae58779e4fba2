//! Bad input gives a clear error that names the file or key and the problem — never a panic,
//! never a silent fallback: corrupt, truncated and mismatched checkpoints, configs with unknown
//! keys or impossible values, missing or mismatched teachers, stage indices that do not line
//! up, truncated dataset files, and malformed `--set`s. Several cases go through the command
//! line entry point (`meal::cli::run`) to prove that the user-facing path reports them.

mod common;

use std::path::{Path, PathBuf};

use clap::Parser;
use common::*;
use meal::cli::Cli;
use meal::data::Normalization;
use meal::train::checkpoint::Container;
use meal::train::model_io::{self, ModelMeta};

/// The message clap gives for `args`, which it must refuse.
fn parse_err(args: &[&str]) -> String {
    let argv = ["meal", "--quiet"].iter().chain(args).copied();
    match Cli::try_parse_from(argv) {
        Ok(c) => panic!("{args:?} parsed: {c:?}"),
        Err(e) => e.render().to_string(),
    }
}

/// A freshly initialised `arch` saved as a model checkpoint, as `meal train` writes one.
fn model_ckpt(dir: &Path, name: &str, arch: &str, classes: usize) -> PathBuf {
    let device = meal::backend::device();
    let net = meal::models::build(arch, classes, &device).unwrap();
    let meta = ModelMeta {
        meal_version: env!("CARGO_PKG_VERSION").into(),
        arch: arch.into(),
        num_classes: classes,
        input_shape: [3, 32, 32],
        normalization: Normalization::CIFAR10,
        class_names: (0..classes).map(|i| format!("c{i}")).collect(),
        source: "train".into(),
        epoch: 1,
        test_acc: None,
        crop_pct: None,
        interpolation: Default::default(),
    };
    let path = dir.join(name);
    model_io::model_container(&meta, &net)
        .unwrap()
        .save_atomic(&path)
        .unwrap();
    path
}

/// Rewrites the `meta` section of a checkpoint through `edit`.
fn edit_meta(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut c = Container::load(path).unwrap();
    let mut meta: serde_json::Value = c.get_json(path, model_io::META).unwrap();
    edit(&mut meta);
    c.insert_json(model_io::META, &meta).unwrap();
    c.save_atomic(path).unwrap();
}

fn load_err(path: &Path) -> String {
    message(model_io::load_model(path, &meal::backend::device()).map(|(_, m, _)| m))
}

// ---------------------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------------------

#[test]
fn checkpoint_whose_header_names_another_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_ckpt(dir.path(), "r8.ckpt", "resnet8", 10);
    assert!(model_io::load_model(&path, &meal::backend::device()).is_ok());

    edit_meta(&path, |m| m["arch"] = "resnet20".into());
    let msg = load_err(&path);
    assert_mentions(
        &msg,
        &[
            &s(&path),
            "header names a resnet20 with 10 classes",
            "do not fit",
            "Missing tensors",
        ],
    );
    // The mismatch is summarised, not a list of every tensor of the model.
    assert!(msg.len() < 600, "{} characters: {msg}", msg.len());

    edit_meta(&path, |m| m["arch"] = "resnet9000".into());
    let msg = load_err(&path);
    assert_mentions(&msg, &[&s(&path), "resnet9000"]);

    edit_meta(&path, |m| {
        m["arch"] = "resnet8".into();
        m["num_classes"] = 100.into();
    });
    let msg = load_err(&path);
    assert_mentions(&msg, &[&s(&path), "do not fit"]);

    // `meal eval` reports it too.
    edit_meta(&path, |m| m["arch"] = "vgg8".into());
    let msg = message(cli(&[
        "eval",
        "--checkpoint",
        &s(&path),
        "--data",
        &s(&mini()),
        "--test-subset",
        "10",
    ]));
    assert_mentions(&msg, &[&s(&path), "do not fit"]);
}

#[test]
fn truncated_random_empty_and_missing_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let good = model_ckpt(dir.path(), "good.ckpt", "resnet8", 10);
    let bytes = std::fs::read(&good).unwrap();

    let path = dir.path().join("truncated.ckpt");
    for cut in [bytes.len() / 2, bytes.len() - 1, 30, 10] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let msg = load_err(&path);
        assert_mentions(&msg, &[&s(&path), "truncated"]);
    }

    let path = dir.path().join("random.ckpt");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &noise).unwrap();
    assert_mentions(
        &load_err(&path),
        &[&s(&path), "not a valid meal checkpoint"],
    );

    // Trailing garbage after a complete checkpoint is not silently ignored.
    let path = dir.path().join("trailing.ckpt");
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"junk");
    std::fs::write(&path, &longer).unwrap();
    assert_mentions(&load_err(&path), &[&s(&path), "trailing bytes"]);

    // Hand-made headers: another format version, absurd counts and lengths.
    let path = dir.path().join("crafted.ckpt");
    let header = |version: u32, count: u32, rest: &[u8]| {
        let mut b = b"MEALCKPT".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(rest);
        b
    };
    std::fs::write(&path, header(2, 0, b"")).unwrap();
    assert_mentions(&load_err(&path), &[&s(&path), "format version 2"]);
    std::fs::write(&path, header(1, u32::MAX, b"")).unwrap();
    assert_mentions(&load_err(&path), &[&s(&path), "truncated in section 0"]);
    std::fs::write(&path, header(1, 1, &u32::MAX.to_le_bytes())).unwrap();
    assert_mentions(&load_err(&path), &[&s(&path), "truncated in section 0"]);
    let mut huge = 4u32.to_le_bytes().to_vec();
    huge.extend_from_slice(b"meta");
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, header(1, 1, &huge)).unwrap();
    assert_mentions(&load_err(&path), &[&s(&path), "truncated in section 0"]);

    let path = dir.path().join("empty.ckpt");
    std::fs::write(&path, b"").unwrap();
    assert_mentions(&load_err(&path), &[&s(&path), "too short"]);

    let path = dir.path().join("absent.ckpt");
    assert_mentions(&load_err(&path), &[&s(&path), "cannot read"]);

    // Through `meal eval`.
    let path = dir.path().join("truncated.ckpt");
    let msg = message(cli(&[
        "eval",
        "--checkpoint",
        &s(&path),
        "--data",
        &s(&mini()),
    ]));
    assert_mentions(&msg, &[&s(&path), "truncated"]);
}

#[test]
fn checkpoint_with_a_missing_or_corrupt_section() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_ckpt(dir.path(), "r8.ckpt", "resnet8", 10);
    let original = Container::load(&path).unwrap();

    let mut c = original.clone();
    c.sections.remove(model_io::MODEL);
    c.save_atomic(&path).unwrap();
    assert_mentions(&load_err(&path), &[&s(&path), "no `model` section", "meta"]);

    let mut c = original.clone();
    c.sections.remove(model_io::META);
    c.save_atomic(&path).unwrap();
    assert_mentions(&load_err(&path), &[&s(&path), "no `meta` section"]);

    let mut c = original.clone();
    c.insert(model_io::META, b"{ not json".to_vec());
    c.save_atomic(&path).unwrap();
    assert_mentions(
        &load_err(&path),
        &[&s(&path), "section `meta` is not valid"],
    );

    let mut c = original.clone();
    let model = c.sections.get_mut(model_io::MODEL).unwrap();
    let half = model.len() / 2;
    model.truncate(half);
    c.save_atomic(&path).unwrap();
    assert_mentions(&load_err(&path), &[&s(&path), "weights are corrupt"]);

    // Damaged bytes anywhere in the weights' own header give an error or (for bytes that only
    // hold tensor values) a model, never a panic.
    let model = original.sections[model_io::MODEL].clone();
    // burnpack: u32 magic, u16 version, u32 metadata length, then the metadata.
    let header_len = 10 + u32::from_le_bytes(model[6..10].try_into().unwrap()) as usize;
    let mut rejected = 0;
    let header_len = header_len.min(model.len());
    for i in (0..header_len).step_by((header_len / 48).max(1)) {
        for v in [0x00, 0xFF] {
            let mut c = original.clone();
            c.sections.get_mut(model_io::MODEL).unwrap()[i] = v;
            c.save_atomic(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| {
                model_io::load_model(&path, &meal::backend::device()).map(|_| ())
            });
            match outcome {
                Err(_) => panic!("byte {i} of the weights set to {v:#04x}: load panicked"),
                Ok(Err(e)) => {
                    assert_mentions(&e.to_string(), &[&s(&path)]);
                    rejected += 1;
                }
                Ok(Ok(())) => {}
            }
        }
    }
    assert!(rejected > 0, "no damaged header was rejected");

    let mut c = original.clone();
    c.insert(model_io::MODEL, vec![0xAB; 512]);
    c.save_atomic(&path).unwrap();
    assert_mentions(&load_err(&path), &[&s(&path), "weights are corrupt"]);
}

#[test]
fn resume_with_a_bad_or_foreign_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let table = train_table("resnet8", &run, 2, 0);
    std::fs::write(run.join("config.toml"), toml::to_string(&table).unwrap()).unwrap();

    // last.ckpt of another architecture than the run's config.
    let last = model_ckpt(&run, "last.ckpt", "resnet20", 10);
    let msg = message(train_resume(&run, &[]));
    assert_mentions(&msg, &[&s(&last), "do not fit"]);

    // A model-only checkpoint (no optimizer state): not a resumable run.
    model_ckpt(&run, "last.ckpt", "resnet8", 10);
    let msg = message(cli(&["train", "--resume", &s(&run)]));
    assert_mentions(&msg, &[&s(&last), "no `optim` section"]);

    // A truncated last.ckpt.
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&last, &bytes[..bytes.len() / 3]).unwrap();
    let msg = message(cli(&["train", "--resume", &s(&run)]));
    assert_mentions(&msg, &[&s(&last), "truncated"]);

    // A folder that holds no run.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let msg = message(cli(&["train", "--resume", &s(&empty)]));
    assert_mentions(&msg, &[&s(&empty), "no last.ckpt"]);
    let msg = message(cli(&["distill", "--resume", &s(&empty)]));
    assert_mentions(&msg, &[&s(&empty), "no last.ckpt"]);

    // A fresh run is not written over an existing one.
    let msg = message(cli(&[
        "train",
        "--arch",
        "resnet8",
        "--data",
        &s(&mini()),
        "--run-dir",
        &s(&run),
    ]));
    assert_mentions(&msg, &[&s(&run), "already holds a run", "--resume"]);

    // A bad --set on resume is refused and leaves config.toml alone.
    let before = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let msg = message(train_resume(&run, &["epochs=0"]));
    assert_mentions(&msg, &["epochs", "at least 1"]);
    let msg = message(train_resume(&run, &["lrr=0.1"]));
    assert_mentions(&msg, &["lrr"]);
    assert_eq!(
        before,
        std::fs::read_to_string(run.join("config.toml")).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Train configs
// ---------------------------------------------------------------------------------------------

/// Trains from `table` with `sets` applied; must fail before creating anything.
fn train_config_err(sets: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut table = train_table("resnet8", &run, 1, 0);
    for s in sets {
        if let Err(e) = meal::config::apply_set(&mut table, s) {
            return e.to_string();
        }
    }
    let msg = message(train_fresh(table));
    assert!(
        !run.exists(),
        "a rejected config still created {}",
        run.display()
    );
    msg
}

#[test]
fn train_config_unknown_keys_and_impossible_values() {
    assert_mentions(&train_config_err(&["lrr=0.1"]), &["unknown field", "lrr"]);
    assert_mentions(
        &train_config_err(&["optimizer.momentun=0.9"]),
        &["unknown field", "momentun", "optimizer"],
    );
    assert_mentions(
        &train_config_err(&["data.train_subsett=10"]),
        &["unknown field", "train_subsett"],
    );
    assert_mentions(&train_config_err(&["epochs=0"]), &["epochs", "at least 1"]);
    assert_mentions(&train_config_err(&["lr=-1"]), &["lr", "positive", "-1"]);
    assert_mentions(&train_config_err(&["lr=nan"]), &["lr", "positive"]);
    assert_mentions(
        &train_config_err(&["optimizer.momentum=1.5"]),
        &["optimizer.momentum", "1.5"],
    );
    assert_mentions(
        &train_config_err(&["optimizer.weight_decay=-0.1"]),
        &["optimizer.weight_decay", "-0.1"],
    );
    assert_mentions(
        &train_config_err(&["batch_size=0"]),
        &["batch_size", "at least 1"],
    );
    assert_mentions(
        &train_config_err(&["eval_batch_size=0"]),
        &["eval_batch_size", "at least 1"],
    );
    assert_mentions(
        &train_config_err(&["arch=resnet9000"]),
        &["arch", "resnet9000"],
    );
    assert_mentions(&train_config_err(&["epochs=many"]), &["epochs", "many"]);
    assert_mentions(&train_config_err(&["epochs=-3"]), &["epochs"]);
    assert_mentions(
        &train_config_err(&["schedule.kind=sawtooth"]),
        &["sawtooth"],
    );
    assert_mentions(
        &train_config_err(&["schedule.milestones=[5, 3]"]),
        &["schedule.milestones", "increasing"],
    );
    assert_mentions(
        &train_config_err(&["data.format=cifar11-bin"]),
        &["cifar11-bin"],
    );
    assert_mentions(&train_config_err(&["lr.x=1"]), &["lr", "not a table"]);
}

#[test]
fn train_config_errors_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs");
    let base = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "train",
            "--arch",
            "resnet8",
            "--data",
            &s(&mini()),
            "--out-dir",
            &s(&out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let args = base(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        message(cli(&refs))
    };
    assert_mentions(&run(&["--set", "lrr=0.1"]), &["lrr"]);
    assert_mentions(&run(&["--set", "lr"]), &["--set `lr`", "key=value"]);
    assert_mentions(&run(&["--set", "=3"]), &["--set `=3`", "empty key"]);
    assert_mentions(&run(&["--epochs", "0"]), &["epochs", "at least 1"]);
    assert_mentions(&run(&["--lr=-1"]), &["lr", "positive"]);
    assert_mentions(&run(&["--epochs=-1"]), &["epochs", "-1"]);
    assert_mentions(&run(&["--batch-size", "0"]), &["batch_size", "at least 1"]);
    assert_mentions(
        &run(&["--set", "optimizer.momentum=1.5"]),
        &["optimizer.momentum", "1.5"],
    );
    assert_mentions(&run(&["--set", "arch=resnet9000"]), &["arch", "resnet9000"]);

    // A config file with an unknown key names the key.
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "arch = \"resnet8\"\nlrr = 0.1\n[data]\npath = \"x\"\n",
    )
    .unwrap();
    assert_mentions(&run(&["--config", &s(&file)]), &["lrr"]);
    // A config file that is not TOML names the file.
    std::fs::write(&file, "arch = resnet8 = 3\n").unwrap();
    assert_mentions(&run(&["--config", &s(&file)]), &[&s(&file), "invalid TOML"]);
    // A missing config file names the file.
    let absent = dir.path().join("absent.toml");
    assert_mentions(
        &run(&["--config", &s(&absent)]),
        &[&s(&absent), "cannot read"],
    );

    assert!(
        !out.exists(),
        "a rejected command created {}",
        out.display()
    );
}

// ---------------------------------------------------------------------------------------------
// Distill configs
// ---------------------------------------------------------------------------------------------

fn distill_err(dir: &Path, teachers: &[&Path], meal: &str) -> String {
    let run = dir.join("distill-run");
    let _ = std::fs::remove_dir_all(&run);
    message(distill_fresh(distill_table(
        "resnet8", teachers, &run, 1, meal,
    )))
}

#[test]
fn distill_missing_and_mismatched_teachers() {
    let dir = tempfile::tempdir().unwrap();
    let good = model_ckpt(dir.path(), "t.ckpt", "resnet8", 10);

    let absent = dir.path().join("no-such-teacher.ckpt");
    let msg = distill_err(dir.path(), &[&absent], "");
    assert_mentions(&msg, &["teachers[0]", &s(&absent), "does not exist"]);
    // Refused before the run folder was made: nothing is left behind to clean up.
    assert!(
        !dir.path().join("distill-run").exists(),
        "a run folder was created for a run that was refused"
    );
    let msg = distill_err(dir.path(), &[&good, &absent], "");
    assert_mentions(&msg, &["teachers[1]", &s(&absent)]);

    // A run folder without best.ckpt.
    let empty = dir.path().join("empty-run");
    std::fs::create_dir_all(&empty).unwrap();
    let msg = distill_err(dir.path(), &[&empty], "");
    assert_mentions(&msg, &["teachers[0]", "best.ckpt", "does not exist"]);

    let c100 = model_ckpt(dir.path(), "c100.ckpt", "resnet8", 100);
    let msg = distill_err(dir.path(), &[&good, &c100], "");
    assert_mentions(&msg, &[&s(&c100), "100 classes", "dataset has 10"]);

    let bytes = std::fs::read(&good).unwrap();
    let broken = dir.path().join("broken.ckpt");
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let msg = distill_err(dir.path(), &[&broken], "");
    assert_mentions(&msg, &[&s(&broken), "truncated"]);

    let msg = distill_err(dir.path(), &[], "");
    assert_mentions(&msg, &["teachers", "at least one"]);

    // Through `meal distill`, with the teacher given on the command line.
    let msg = message(cli(&[
        "distill",
        "--recipe",
        "quickstart",
        "--teacher",
        &s(&absent),
        "--data",
        &s(&mini()),
        "--out-dir",
        &s(&dir.path().join("runs")),
    ]));
    assert_mentions(&msg, &["teachers[0]", &s(&absent), "does not exist"]);
    assert!(
        !dir.path().join("runs").exists()
            || std::fs::read_dir(dir.path().join("runs"))
                .unwrap()
                .next()
                .is_none(),
        "`meal distill` left a run folder behind for a missing teacher"
    );
}

#[test]
fn distill_stage_indices_that_do_not_exist_or_line_up() {
    use meal::distill::config::StageSpec;
    use meal::distill::stages::{Participant, resolve};
    let spec = |index: i64, out_dim: Option<usize>| StageSpec {
        index,
        out_dim,
        gamma: 1.0,
        eta: 1.0,
    };
    let student = Participant {
        name: "resnet8",
        stages: 3,
    };
    let resnet18_cifar = [Participant {
        name: "resnet18_cifar",
        stages: 4,
    }];
    // Index 3: the student's logits, a feature map of resnet18_cifar.
    let msg = message(resolve(&[spec(3, Some(64))], &student, &resnet18_cifar, 10));
    assert_mentions(
        &msg,
        &[
            "meal.stages[0].index = 3",
            "logits",
            "resnet8",
            "resnet18_cifar",
            "line up",
        ],
    );
    // Negative indices count from the end, so -1 is everyone's logits.
    assert!(resolve(&[spec(-1, None)], &student, &resnet18_cifar, 10).is_ok());
    let msg = message(resolve(
        &[spec(-1, None), spec(5, Some(8))],
        &student,
        &resnet18_cifar,
        10,
    ));
    assert_mentions(
        &msg,
        &["meal.stages[1].index = 5", "resnet8", "only 4 outputs"],
    );
    let msg = message(resolve(&[spec(-6, None)], &student, &resnet18_cifar, 10));
    assert_mentions(&msg, &["meal.stages[0].index = -6"]);
    let msg = message(resolve(&[spec(1, None)], &student, &resnet18_cifar, 10));
    assert_mentions(&msg, &["meal.stages[0]", "out_dim"]);
    let msg = message(resolve(&[spec(-1, Some(7))], &student, &resnet18_cifar, 10));
    assert_mentions(&msg, &["meal.stages[0]", "out_dim = 7", "10 classes"]);

    // The same through a whole distillation config, with a real 2-stage teacher.
    let dir = tempfile::tempdir().unwrap();
    let mobilenet = model_ckpt(dir.path(), "mobilenet.ckpt", "mobilenet", 10);
    let msg = distill_err(
        dir.path(),
        &[&mobilenet],
        "stages = [{ index = 2, out_dim = 16 }]",
    );
    assert_mentions(&msg, &["meal.stages[0].index = 2", "mobilenet", "line up"]);
    let msg = distill_err(dir.path(), &[&mobilenet], "stages = [{ index = 3 }]");
    assert_mentions(
        &msg,
        &["meal.stages[0].index = 3", "mobilenet", "only 3 outputs"],
    );
}

#[test]
fn distill_config_unknown_keys_and_impossible_values() {
    let dir = tempfile::tempdir().unwrap();
    let t = model_ckpt(dir.path(), "t.ckpt", "resnet8", 10);
    let err = |meal: &str| distill_err(dir.path(), &[&t], meal);
    assert_mentions(&err("temperature = 0"), &["meal.temperature", "> 0", "0"]);
    assert_mentions(&err("temperature = -2.5"), &["meal.temperature", "-2.5"]);
    assert_mentions(
        &err("tempurature = 4"),
        &["unknown field", "tempurature", "[meal]"],
    );
    assert_mentions(&err("combine = \"median\""), &["median"]);
    assert_mentions(&err("adversarial = \"sideways\""), &["sideways"]);
    assert_mentions(&err("teacher_bn = \"frozen\""), &["frozen"]);
    assert_mentions(&err("alpha = -1"), &["meal.alpha", "-1"]);
    assert_mentions(&err("d_lr = -0.001"), &["meal.d_lr", "-0.001"]);
    assert_mentions(&err("stages = []"), &["meal.stages", "nothing to learn"]);
    assert_mentions(
        &err("stages = [{ index = -1, gamma = -1 }]"),
        &["meal.stages[0].gamma", "-1"],
    );
    assert_mentions(
        &err("stages = [{ index = -1, zeta = 1 }]"),
        &["unknown field", "zeta"],
    );
    assert_mentions(
        &err("stages = [{ index = 1, out_dim = 0 }]"),
        &["meal.stages[0].out_dim", "at least 1"],
    );

    // Through `meal distill --config`, an unknown key under [meal] names it.
    let file = dir.path().join("d.toml");
    let mut table = distill_table(
        "resnet8",
        &[&t],
        &dir.path().join("r"),
        1,
        "tempurature = 4",
    );
    table.remove("run_dir");
    std::fs::write(&file, toml::to_string(&table).unwrap()).unwrap();
    let msg = message(cli(&["distill", "--config", &s(&file)]));
    assert_mentions(&msg, &["tempurature"]);
    let msg = message(cli(&[
        "distill",
        "--config",
        &s(&file),
        "--set",
        "meal.temperature",
    ]));
    assert_mentions(&msg, &["--set `meal.temperature`", "key=value"]);
    // Neither --config nor --recipe: clap refuses it (its help marks the pair required).
    let msg = parse_err(&["distill"]);
    assert_mentions(&msg, &["--config", "--recipe"]);
    let msg = message(cli(&["distill", "--recipe", "no-such-recipe"]));
    assert_mentions(&msg, &["no-such-recipe"]);
}

// ---------------------------------------------------------------------------------------------
// Datasets
// ---------------------------------------------------------------------------------------------

/// A copy of `data/cifar10-mini` in `dir`.
fn copy_mini(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for entry in std::fs::read_dir(mini()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), data.join(entry.file_name())).unwrap();
    }
    data
}

#[test]
fn truncated_or_corrupt_dataset_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = copy_mini(dir.path());
    let out = dir.path().join("runs");
    let train = |data: &Path| {
        message(cli(&[
            "train",
            "--arch",
            "resnet8",
            "--data",
            &s(data),
            "--epochs",
            "1",
            "--out-dir",
            &s(&out),
        ]))
    };

    // Truncated mid-record.
    let test = data.join("test_batch.bin");
    let bytes = std::fs::read(&test).unwrap();
    std::fs::write(&test, &bytes[..3073 * 10 + 100]).unwrap();
    let msg = train(&data);
    assert_mentions(&msg, &[&s(&test), "truncated", "3073-byte record"]);
    let msg = message(cli(&[
        "eval",
        "--checkpoint",
        "x.ckpt",
        "--data",
        &s(&data),
    ]));
    assert_mentions(&msg, &[&s(&test), "truncated"]);

    // Empty.
    std::fs::write(&test, b"").unwrap();
    assert_mentions(&train(&data), &[&s(&test), "empty"]);

    // A label byte out of range names the record.
    let mut bad = bytes.clone();
    bad[3073 * 7] = 42;
    std::fs::write(&test, &bad).unwrap();
    assert_mentions(&train(&data), &[&s(&test), "record 7", "42"]);

    // A directory that holds no dataset, and one that does not exist.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_mentions(
        &train(&empty),
        &[&s(&empty), "cannot detect the dataset format"],
    );
    let absent = dir.path().join("absent");
    assert_mentions(&train(&absent), &[&s(&absent), "no such data directory"]);

    // Nothing was trained, so no run folder was left behind with a checkpoint in it.
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.iter().all(|p| !p.join("last.ckpt").exists()),
        "{leftovers:?}"
    );
}

#[test]
fn quickstart_takes_the_listed_teachers_that_held_out_the_embedded_images() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    std::fs::write(t.join("a.ckpt"), b"x").unwrap();
    std::fs::write(t.join("b.ckpt"), b"x").unwrap();
    let entry = |file: &str, holdout: Option<usize>| {
        let h = holdout.map_or(String::new(), |h| format!("train_holdout = {h}\n"));
        format!("[[teacher]]\nfile = \"{file}\"\narch = \"resnet8\"\n{h}")
    };
    let listing = t.join("teachers.toml");
    // One held out the embedded images, one saw them: only the first is taken, the other named.
    std::fs::write(
        &listing,
        entry("a.ckpt", None) + &entry("b.ckpt", Some(5000)),
    )
    .unwrap();
    let c = meal::quickstart::shipped_teachers(t).unwrap();
    assert_eq!(c.files, [t.join("b.ckpt")]);
    assert!(c.note.unwrap().contains("a.ckpt"));
    // None held them out: all are taken, and the note says what to expect.
    std::fs::write(
        &listing,
        entry("a.ckpt", None) + &entry("b.ckpt", Some(100)),
    )
    .unwrap();
    let c = meal::quickstart::shipped_teachers(t).unwrap();
    assert_eq!(c.files, [t.join("a.ckpt"), t.join("b.ckpt")]);
    assert!(c.note.unwrap().contains("little"));
    // A listed file that is not there is an error naming it.
    std::fs::write(&listing, entry("c.ckpt", Some(5000))).unwrap();
    let e = meal::quickstart::shipped_teachers(t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("c.ckpt") && e.contains("teachers.toml"), "{e}");
    // Without a listing, every checkpoint by name.
    std::fs::remove_file(&listing).unwrap();
    let c = meal::quickstart::shipped_teachers(t).unwrap();
    assert_eq!(c.files, [t.join("a.ckpt"), t.join("b.ckpt")]);
    assert!(c.note.is_none());
}

#[test]
fn quickstart_without_teachers_says_how_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    // An empty teachers folder: the error names it and the `meal train` way to fill it.
    let empty = dir.path().join("teachers");
    std::fs::create_dir(&empty).unwrap();
    let e = meal::quickstart::shipped_teachers(&empty)
        .unwrap_err()
        .to_string();
    for want in [s(&empty).as_str(), "no .ckpt", "meal train"] {
        assert!(e.contains(want), "{want:?} missing from: {e}");
    }
    // A missing teacher file: named, before any run folder is made.
    let missing = dir.path().join("gone.ckpt");
    let out = dir.path().join("runs");
    let e = cli(&[
        "quickstart",
        "--teachers",
        &s(&missing),
        "--out-dir",
        &s(&out),
        "--data",
        &s(&mini()),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains(&s(&missing)), "{e}");
    assert!(!out.exists(), "a refused quickstart made {}", out.display());
}

// ---------------------------------------------------------------------------------------------
// What a new user trips over
// ---------------------------------------------------------------------------------------------

/// Whether `dir` holds anything (a refused run must leave no run folder behind).
fn holds_anything(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

#[test]
fn distill_takes_exactly_one_of_config_and_recipe_unless_resuming() {
    let msg = parse_err(&["distill", "--teacher", "t.ckpt"]);
    assert_mentions(&msg, &["required", "--config", "--recipe"]);
    let msg = parse_err(&["distill", "--config", "a.toml", "--recipe", "quickstart"]);
    assert_mentions(&msg, &["--config", "--recipe", "cannot be used with"]);
    // A resumed run reads its own config: neither is asked for, and neither is taken.
    Cli::try_parse_from(["meal", "distill", "--resume", "runs/x"]).unwrap();
    let msg = parse_err(&["distill", "--resume", "runs/x", "--recipe", "quickstart"]);
    assert_mentions(&msg, &["--resume", "--recipe", "cannot be used with"]);
    let msg = parse_err(&["distill", "--resume", "runs/x", "--config", "a.toml"]);
    assert_mentions(&msg, &["--resume", "--config", "cannot be used with"]);
}

#[test]
fn a_config_copied_from_the_meal_v2_recipe_still_needs_a_student_init() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = model_ckpt(dir.path(), "t.ckpt", "resnet8", 10);
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/meal-v2.toml");
    let file = dir.path().join("my-v2.toml");
    std::fs::copy(&recipe, &file).unwrap();
    let out = dir.path().join("runs");
    let data = mini();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "distill",
            "--config",
            file.to_str().unwrap(),
            "--teacher",
            teacher.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        message(cli(&args))
    };
    // --config, not --recipe: the rule travels in the file (`requires`).
    let msg = run(&[]);
    assert_mentions(
        &msg,
        &[
            "student_init",
            "requires",
            "meal train --arch resnet18_cifar",
            "--set student_init=none",
        ],
    );
    assert!(
        !holds_anything(&out),
        "a refused run left {}",
        out.display()
    );
    // The same through --recipe.
    let msg = message(cli(&[
        "distill",
        "--recipe",
        "meal-v2",
        "--teacher",
        teacher.to_str().unwrap(),
        "--data",
        mini().to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]));
    assert_mentions(&msg, &["student_init", "meal train --arch resnet18_cifar"]);
    assert!(
        !holds_anything(&out),
        "a refused run left {}",
        out.display()
    );

    // And through the library, with any config that declares it.
    let run_dir = dir.path().join("lib-run");
    let mut table = distill_table("resnet8", &[&teacher], &run_dir, 1, "");
    table.insert(
        "requires".into(),
        toml::Value::Array(vec!["student_init".into()]),
    );
    let msg = message(distill_fresh(table.clone()));
    assert_mentions(&msg, &["student_init", "meal train --arch resnet8"]);
    assert!(
        !run_dir.exists(),
        "a refused run made {}",
        run_dir.display()
    );
    // `none` says "from random weights" on purpose, which satisfies it.
    let mut none = table.clone();
    none.insert("student_init".into(), "none".into());
    let c: meal::distill::DistillConfig = meal::config::from_table(none, "d").unwrap();
    c.check_requires().unwrap();
    // Only keys that can be required are accepted, and the error names the one that can.
    table.insert(
        "requires".into(),
        toml::Value::Array(vec!["teachers".into()]),
    );
    let msg = message(meal::config::from_table::<meal::distill::DistillConfig>(
        table, "d",
    ));
    assert_mentions(&msg, &["teachers", "student_init"]);
}

#[test]
fn recipe_quickstart_takes_the_shipped_held_out_teachers_from_any_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The recipe's default teachers are the quickstart's own choice.
    let shipped = meal::quickstart::shipped_teachers(&root.join("data/teachers")).unwrap();
    for recipe in ["quickstart", "quickstart-kd"] {
        let table = meal::recipes::table(recipe).unwrap();
        let c: meal::distill::DistillConfig = meal::config::from_table(table, recipe).unwrap();
        let named: Vec<PathBuf> = c
            .teachers
            .iter()
            .map(|t| root.join(t.checkpoint.as_ref().unwrap()))
            .collect();
        assert_eq!(named, shipped.files, "recipe {recipe}");
    }
    // From a folder that holds other files under the same names, the run takes the shipped
    // ones (these would not load) and the embedded data.
    let dir = tempfile::tempdir().unwrap();
    let decoys = dir.path().join("data/teachers");
    std::fs::create_dir_all(&decoys).unwrap();
    for f in ["resnet20.ckpt", "resnet9_w24.ckpt", "vgg8.ckpt"] {
        std::fs::write(decoys.join(f), b"not a checkpoint").unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meal"))
        .current_dir(dir.path())
        .args([
            "--quiet",
            "distill",
            "--recipe",
            "quickstart",
            "--epochs",
            "1",
            "--set",
            "data.train_subset=20",
            "--set",
            "data.test_subset=20",
            "--set",
            "batch_size=10",
            "--set",
            "eval_batch_size=10",
            "--run-dir",
            "run",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(dir.path().join("run/config.toml")).unwrap();
    for f in ["resnet20.ckpt", "resnet9_w24.ckpt"] {
        let want = s(&root.join("data/teachers").join(f));
        assert!(config.contains(&want), "{want} not in:\n{config}");
    }
    assert!(!config.contains("vgg8"), "{config}");
    assert!(
        config.contains(&s(&root.join("data/cifar10-mini"))),
        "{config}"
    );
}

#[test]
fn a_subset_of_zero_images_is_named_by_its_flag_or_key() {
    // `meal eval --test-subset 0`: about the flag, not the config key it becomes.
    let msg = parse_err(&[
        "eval",
        "--checkpoint",
        "t.ckpt",
        "--data",
        "d",
        "--test-subset",
        "0",
    ]);
    assert_mentions(&msg, &["--test-subset", "must be at least 1"]);
    for leak in ["Some(", "holdout", "data."] {
        assert!(!msg.contains(leak), "`{leak}` in: {msg}");
    }
    let msg = parse_err(&[
        "cache-teachers",
        "--config",
        "c.toml",
        "--views",
        "2",
        "--out",
        "s.bin",
        "--train-subset",
        "0",
    ]);
    assert_mentions(&msg, &["--train-subset", "must be at least 1"]);
    // The same keys in a config: each named with its value, never as `Some(..)`.
    let open = |edit: &dyn Fn(&mut meal::data::DataConfig)| {
        let mut c = meal::data::DataConfig::new(mini());
        edit(&mut c);
        message(meal::data::open(&c).map(|_| ()).map_err(meal::Error::from))
    };
    let msg = open(&|c| c.test_subset = Some(0));
    assert_mentions(
        &msg,
        &[
            "data.test_subset = 0",
            "none of the 1000 test images",
            "at least 1",
        ],
    );
    assert!(!msg.contains("Some(") && !msg.contains("holdout"), "{msg}");
    let msg = open(&|c| c.train_subset = Some(0));
    assert_mentions(&msg, &["data.train_subset = 0", "at least 1"]);
    assert!(!msg.contains("Some("), "{msg}");
    let msg = open(&|c| c.train_holdout = Some(5000));
    assert_mentions(
        &msg,
        &["data.train_holdout = 5000 leaves none of the 5000 train images"],
    );
    assert!(
        !msg.contains("Some(") && !msg.contains("train_subset"),
        "{msg}"
    );
}
