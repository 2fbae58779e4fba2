//! Divergence on the embedded data: a non-finite loss stops `train`, `distill` and
//! `quickstart` with one error naming the epoch, the batch and the loss, nothing non-finite is
//! ever written, `--resume` continues from the last good epoch, and evaluation (`evaluate`, the
//! ensemble, `meal eval`, `meal predict`) counts non-finite outputs as wrong and says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use common::*;
use meal::Error;
use meal::data::{DataConfig, Loader, LoaderConfig};
use meal::train::divergence::nonfinite_params;
use meal::train::evaluate::evaluate;
use meal::train::model_io::{ModelMeta, model_container};

/// Far beyond any sane rate: the first update sends the weights to infinity.
const HUGE_LR: f64 = 1e20;

/// The files a run folder holds, with their bytes, but for the two that record each
/// invocation (`config.toml` with its `--set`s, and `run.txt`).
fn results(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| !p.ends_with("config.toml") && !p.ends_with("run.txt"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            (name, bytes)
        })
        .collect();
    out.sort();
    out
}

fn checkpoint(run: &Path, name: &str) -> Vec<u8> {
    std::fs::read(run.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_no_checkpoints(run: &Path) {
    for name in ["last.ckpt", "best.ckpt"] {
        assert!(
            !run.join(name).exists(),
            "{name} was written by a run that diverged in its first epoch"
        );
    }
}

fn assert_diverged<T: std::fmt::Debug>(r: meal::Result<T>) -> String {
    match r {
        Err(Error::Diverged(_)) => message(r),
        other => panic!("expected a divergence error, got {other:?}"),
    }
}

/// A one-epoch resnet8 teacher trained at a sane rate, shared by the distillation tests.
fn teacher() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch("divergence_teacher");
        train_fresh(train_table("resnet8", &run, 1, 3)).unwrap();
        run
    })
}

#[test]
fn train_stops_at_the_first_nonfinite_loss_and_writes_nothing() {
    let run = scratch("divergence_train_fresh");
    let mut table = train_table("resnet8", &run, 1, 1);
    table.insert("lr".into(), HUGE_LR.into());
    let text = assert_diverged(train_fresh(table));
    assert_mentions(
        &text,
        &[
            "in epoch 1, batch ",
            " (lr 1.000e20): ",
            "cross-entropy loss is non-finite",
            "no checkpoint was written",
            "lower the learning rate (lr)",
        ],
    );
    assert_no_checkpoints(&run);
    assert!(metrics_lines(&run) == 0, "a diverged epoch was logged");
}

fn metrics_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn train_divergence_keeps_the_last_good_epoch_and_resume_continues_from_it() {
    let run = scratch("divergence_train_resume");
    train_fresh(train_table("resnet8", &run, 1, 5)).unwrap();
    let before = results(&run);
    let (last, best) = (checkpoint(&run, "last.ckpt"), checkpoint(&run, "best.ckpt"));

    let text = assert_diverged(train_resume(&run, &["epochs=2", "lr=1e20"]));
    let resume = format!(
        "`meal train --resume {}` with --set lr=<lower> continues",
        run.display()
    );
    assert_mentions(
        &text,
        &[
            "in epoch 2, batch ",
            "non-finite",
            "last.ckpt (epoch 1) and best.ckpt",
            &resume,
            "continues from epoch 2",
        ],
    );
    assert!(checkpoint(&run, "last.ckpt") == last, "last.ckpt changed");
    assert!(checkpoint(&run, "best.ckpt") == best, "best.ckpt changed");
    assert_eq!(metrics_lines(&run), 1);
    assert!(results(&run) == before, "the run folder changed");

    let out = train_resume(&run, &["lr=0.05"]).unwrap();
    assert_eq!(out.epochs_done, 2);
    let m = metrics(&run);
    assert_eq!(m.len(), 2);
    assert_eq!(m[1]["epoch"].as_u64(), Some(1));
    assert!(m[1]["train_loss"].as_f64().is_some_and(f64::is_finite));
    assert!(checkpoint(&run, "last.ckpt") != last);
}

#[test]
fn distill_names_the_similarity_term_and_writes_nothing() {
    let run = scratch("divergence_distill_sim");
    let mut table = distill_table("resnet8", &[teacher()], &run, 1, "adversarial = \"joint\"");
    table.insert("lr".into(), HUGE_LR.into());
    let text = assert_diverged(distill_fresh(table));
    assert_mentions(
        &text,
        &[
            "in epoch 1, batch ",
            "similarity loss is non-finite",
            "no checkpoint was written",
            "lower the learning rate",
        ],
    );
    assert_no_checkpoints(&run);
}

#[test]
fn distill_divergence_of_the_discriminator_keeps_checkpoints_and_resume_continues() {
    let run = scratch("divergence_distill_resume");
    let table = distill_table("resnet8", &[teacher()], &run, 1, "adversarial = \"joint\"");
    distill_fresh(table).unwrap();
    let before = results(&run);
    let (last, best) = (checkpoint(&run, "last.ckpt"), checkpoint(&run, "best.ckpt"));

    let text = assert_diverged(distill_resume(&run, &["epochs=2", "meal.d_lr=1e20"]));
    assert_mentions(
        &text,
        &[
            "in epoch 2, batch ",
            ", d_lr ",
            "discriminator loss is non-finite",
            "last.ckpt (epoch 1) and best.ckpt",
            "`meal distill --resume",
            "with --set lr=<lower> and/or --set meal.d_lr=<lower> continues from epoch 2",
            "lower the learning rate (lr or meal.d_lr)",
        ],
    );
    assert!(checkpoint(&run, "last.ckpt") == last, "last.ckpt changed");
    assert!(checkpoint(&run, "best.ckpt") == best, "best.ckpt changed");
    assert_eq!(metrics_lines(&run), 1);
    assert!(results(&run) == before, "the run folder changed");

    let out = distill_resume(&run, &["meal.d_lr=1e-3"]).unwrap();
    assert_eq!(out.epochs_done, 2);
    assert_eq!(metrics(&run).len(), 2);
    assert!(out.last.top1.is_finite() && out.last.nonfinite == 0);
}

#[test]
fn quickstart_stops_naming_the_phase() {
    meal::progress::set_quiet(true);
    let out_dir = scratch("divergence_quickstart");
    let q = meal::quickstart::QuickstartConfig {
        data: mini(),
        out_dir: out_dir.clone(),
        teachers: vec![teacher().to_path_buf()],
        student: "resnet8".into(),
        student_epochs: 1,
        train_subset: Some(256),
        test_subset: Some(100),
        seed: 0,
        lr: HUGE_LR,
        kd: true,
    };
    let text = assert_diverged(meal::quickstart::run(&q));
    assert_mentions(
        &text,
        &[
            "quickstart labels resnet8: in epoch 1, batch ",
            "non-finite",
        ],
    );
    let root = std::fs::read_dir(&out_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_no_checkpoints(&root.path().join("labels-resnet8"));
}

/// Fills the first float tensor a module visits with NaN and remembers its path.
#[derive(Default)]
struct Poison {
    path: Vec<String>,
    poisoned: Option<String>,
}

impl ModuleMapper for Poison {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.poisoned.is_some() {
            return param;
        }
        self.poisoned = Some(self.path.join("."));
        param.map(|t| t.mul_scalar(f32::NAN))
    }
}

/// An untrained resnet8 with one NaN weight tensor, and that tensor's path.
fn poisoned_model(classes: usize) -> (meal::models::Net, String) {
    let device = meal::backend::device();
    let net = meal::models::build("resnet8", classes, &device).unwrap();
    assert!(nonfinite_params(&net).unwrap().is_empty());
    let mut poison = Poison::default();
    let net = net.map(&mut poison);
    (net, poison.poisoned.unwrap())
}

fn test_split() -> std::sync::Arc<dyn meal::data::Dataset> {
    let mut cfg = DataConfig::new(mini());
    cfg.test_subset = Some(100);
    meal::data::open(&cfg).unwrap().test
}

#[test]
fn weights_check_names_the_nonfinite_tensor() {
    let (net, path) = poisoned_model(10);
    assert_eq!(nonfinite_params(&net).unwrap(), vec![path]);
}

#[test]
fn evaluation_counts_nonfinite_outputs_as_wrong_alone_and_in_an_ensemble() {
    let test = test_split();
    let device = meal::backend::device();
    let loader = Loader::new(
        test.clone(),
        LoaderConfig {
            batch_size: 50,
            shuffle: false,
            augment: false,
            drop_last: false,
            seed: 0,
            num_workers: 1,
            prefetch: 2,
        },
    );
    let healthy = meal::models::build("resnet8", test.num_classes(), &device).unwrap();
    let (sick, _) = poisoned_model(test.num_classes());
    let (alone, _) = evaluate(&[&healthy], &loader, &device).unwrap();
    let (each, ensemble) = evaluate(&[&healthy, &sick], &loader, &device).unwrap();
    assert_eq!(alone[0].nonfinite, 0);
    assert_eq!(each[0], alone[0], "the healthy model's numbers changed");
    for (what, acc) in [("poisoned model", each[1]), ("ensemble", ensemble)] {
        assert_eq!(acc.images, 100, "{what}");
        assert_eq!(acc.nonfinite, 100, "{what}");
        assert_eq!((acc.top1, acc.top5), (0.0, 0.0), "{what}");
        assert!(acc.loss.is_finite(), "{what}: loss {}", acc.loss);
    }
}

fn meal_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meal"))
        .args(args)
        .output()
        .expect("runs meal");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eval_and_predict_cli_report_nonfinite_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let test = test_split();
    let (net, _) = poisoned_model(test.num_classes());
    let meta = ModelMeta {
        meal_version: env!("CARGO_PKG_VERSION").into(),
        arch: "resnet8".into(),
        num_classes: test.num_classes(),
        input_shape: test.output_shape(),
        normalization: test.normalization(),
        class_names: test.class_names(),
        source: "train".into(),
        epoch: 1,
        test_acc: None,
        crop_pct: None,
        interpolation: Default::default(),
    };
    let ckpt = tmp.path().join("nan.ckpt");
    model_container(&meta, &net)
        .unwrap()
        .save_atomic(&ckpt)
        .unwrap();
    let ckpt_s = ckpt.display().to_string();
    let data = mini().display().to_string();

    let (ok, stdout, stderr) = meal_cli(&[
        "eval",
        "--checkpoint",
        &ckpt_s,
        "--data",
        &data,
        "--test-subset",
        "100",
    ]);
    assert!(ok, "{stderr}");
    assert_mentions(
        &stdout,
        &["0.00%    0.00%", "NON-FINITE OUTPUTS on 100 of 100 images"],
    );
    assert_mentions(
        &stderr,
        &["warning: ", "100 of 100 test images", "non-finite"],
    );

    let png = tmp.path().join("img.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([120, 60, 200]))
        .save(&png)
        .unwrap();
    let png_s = png.display().to_string();
    let (ok, stdout, stderr) = meal_cli(&["predict", "--checkpoint", &ckpt_s, "--json", &png_s]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["nonfinite"], serde_json::Value::Bool(true), "{stdout}");
    assert_eq!(v["top"].as_array().map(Vec::len), Some(0), "{stdout}");
    assert_mentions(&stderr, &["non-finite", "1 of 1 images"]);

    let (ok, stdout, _) = meal_cli(&["predict", "--checkpoint", &ckpt_s, &png_s]);
    assert!(ok);
    assert_mentions(
        &stdout,
        &["no prediction: the model's outputs are non-finite"],
    );
    assert!(!stdout.contains('%'), "a probability was printed: {stdout}");
}
