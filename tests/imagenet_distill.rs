//! MEAL V2 end to end on ImageNet-layout data with timm models: a timm student and two timm
//! teachers with seeded random weights, written at test time by
//! `scripts/interop/timm_ensemble.py` in three of the formats users download (hub
//! `model.safetensors`, `pytorch_model.bin`, a MEAL V2 `module.` file), go through `meal import`
//! (class count from the head), then `meal distill` with the shipped
//! `meal-v2-mobilenetv3-small` recipe (tiny overrides) on the committed ImageNet sample
//! (`tests/fixtures/imagenet-sample`: class folders in train, flat val with Kaggle's CSV),
//! then `meal eval` on the student it wrote.
//!
//! Needs timm in `$MEAL_PYTHON` (or `python3`): under CI (`CI=true`) a missing interpreter or
//! package fails the test, elsewhere it prints SKIPPED.

mod common;

use std::path::Path;
use std::process::Command;

use common::{cli, s};
use meal::train::model_io;

#[test]
fn meal_v2_recipe_distils_imported_timm_models_on_the_imagenet_sample() {
    let Some(python) = common::python_with("timm, safetensors", "imagenet_distill") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = root.join("tests/fixtures/imagenet-sample");
    let classes = std::fs::read_dir(sample.join("train")).unwrap().count();
    assert_eq!(classes, 3, "the sample's class count changed");
    let dir = tempfile::tempdir().unwrap();
    let script = root.join("scripts/interop/timm_ensemble.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .arg(classes.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    // Import each file with no class count: it must come from the head.
    let imported = |arch: &str, file: &str, name: &str| {
        let ckpt = dir.path().join(name);
        cli(&[
            "import",
            "--arch",
            arch,
            "--from",
            &s(&dir.path().join(file)),
            "--out",
            &s(&ckpt),
        ])
        .unwrap_or_else(|e| panic!("meal import {file}: {e}"));
        ckpt
    };
    let student = imported(
        "tf_mobilenetv3_small_075",
        "student.safetensors",
        "student.ckpt",
    );
    let resnet = imported("resnet18", "teacher_resnet18.bin", "t_resnet18.ckpt");
    let mnv3 = imported(
        "tf_mobilenetv3_small_100",
        "teacher_mnv3.pth",
        "t_mnv3.ckpt",
    );
    let device = meal::backend::device();
    for (ckpt, arch) in [
        (&student, "tf_mobilenetv3_small_075"),
        (&resnet, "resnet18"),
        (&mnv3, "tf_mobilenetv3_small_100"),
    ] {
        let (_, meta, _) = model_io::load_model(ckpt, &device).unwrap();
        assert_eq!(meta.arch, arch);
        assert_eq!(
            meta.num_classes, classes,
            "{arch}: class count from the head"
        );
    }

    // The shipped recipe, shrunk to the sample: the method's settings stay the recipe's.
    let run_dir = dir.path().join("run");
    let teachers = format!(
        "teachers=[{{ checkpoint = {:?} }}, {{ checkpoint = {:?} }}]",
        s(&resnet),
        s(&mnv3)
    );
    let sets = [
        "student=tf_mobilenetv3_small_075".to_string(),
        format!("student_init={}", s(&student)),
        teachers,
        format!("data.path={}", s(&sample)),
        "data.image_size=64".to_string(),
        "epochs=2".to_string(),
        "batch_size=6".to_string(),
        "eval_batch_size=6".to_string(),
        "num_workers=1".to_string(),
        // 3 classes cannot narrow by 8 (V2's 1000 -> 125 -> 15 -> 2).
        "meal.d_width_divisor=1".to_string(),
        format!("run_dir={}", s(&run_dir)),
    ];
    let mut args = vec!["distill", "--recipe", "meal-v2-mobilenetv3-small"];
    for set in &sets {
        args.push("--set");
        args.push(set);
    }
    cli(&args).unwrap_or_else(|e| panic!("meal distill: {e}"));

    let metrics = common::metrics(&run_dir);
    assert_eq!(metrics.len(), 2, "two epochs recorded");
    for m in &metrics {
        let loss = m["train_loss"].as_f64().or(m["loss"].as_f64());
        if let Some(loss) = loss {
            assert!(loss.is_finite(), "{m}");
        }
    }
    let best = run_dir.join("best.ckpt");
    let (_, meta, _) = model_io::load_model(&best, &device).unwrap();
    assert_eq!(meta.arch, "tf_mobilenetv3_small_075");
    assert_eq!(meta.input_shape, [3, 64, 64]);
    // The student moved away from its imported weights.
    let before = common::canonical_state(&student);
    let after = common::canonical_state(&best);
    let changed = before
        .iter()
        .filter(|(k, v)| after.get(*k).is_some_and(|w| w != *v))
        .count();
    assert!(
        changed > 10,
        "only {changed} tensors changed after 2 epochs"
    );

    cli(&["eval", "--checkpoint", &s(&best), "--data", &s(&sample)])
        .unwrap_or_else(|e| panic!("meal eval: {e}"));
}
