//! Choosing the device: `--device` and the config key parse strictly, a device the build or
//! the machine lacks is a clear error (never a panic), checkpoints move between devices, and
//! `meal selftest` reports its checks.

use std::process::{Command, Output};

use burn::tensor::Tensor;
use meal::backend::DeviceSpec;
use meal::backend::limits::{max_buffer_bytes, thousands};
use meal::backend::read;
use meal::train::model_io::{self, ModelMeta};

fn meal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meal"))
        .args(args)
        .env_remove("BURN_DEVICE")
        .output()
        .expect("run meal")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn device_names_parse_and_print_back() {
    for (text, spec) in [
        ("auto", DeviceSpec::Auto),
        ("flex", DeviceSpec::Flex),
        ("cuda", DeviceSpec::Cuda(0)),
        ("CUDA:3", DeviceSpec::Cuda(3)),
        ("wgpu", DeviceSpec::Wgpu(None)),
        ("WGPU:1", DeviceSpec::Wgpu(Some(1))),
    ] {
        assert_eq!(text.parse::<DeviceSpec>().unwrap(), spec, "{text}");
        assert_eq!(
            spec.to_string().parse::<DeviceSpec>().unwrap(),
            spec,
            "{spec}"
        );
    }
    for bad in [
        "gpu", "cuda:", "cuda:-1", "cuda:x", "wgpu:", "wgpu:x", "vulkan", "tpu:0", "",
    ] {
        let err = bad.parse::<DeviceSpec>().unwrap_err();
        assert!(
            err.contains("flex") && err.contains("cuda:N") && err.contains("wgpu:N"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn config_device_key_is_checked() {
    let table: toml::Table = r#"
arch = "resnet8"
device = "tpu"
[data]
path = "data/cifar10-mini"
"#
    .parse()
    .unwrap();
    let err = meal::config::from_table::<meal::train::TrainConfig>(table, "train config")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tpu") && err.contains("device"),
        "the error must name the key and the value: {err}"
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    let o = meal(&["--device", "cuda", "models"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("built without CUDA") && e.contains("--features cuda"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
}

/// A CUDA build on a machine without a GPU (or driver) must say so, not panic in cudarc.
#[cfg(feature = "cuda")]
#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    if meal::backend::cuda_device_count() > 0 {
        let o = meal(&["--device", "cuda:99", "models"]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
        return;
    }
    let o = meal(&["--device", "cuda", "models"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("no CUDA device found"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[cfg(not(feature = "wgpu"))]
#[test]
fn wgpu_without_the_feature_is_a_clear_error() {
    let o = meal(&["--device", "wgpu", "models"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("built without wgpu") && e.contains("--features wgpu"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
}

/// An adapter index past wgpu's list is an error naming how many there are, not a panic.
#[cfg(feature = "wgpu")]
#[test]
fn missing_wgpu_adapter_is_a_clear_error() {
    let o = meal(&["--device", "wgpu:99", "models"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("wgpu:99 does not exist"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn unknown_burn_device_is_a_clear_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_meal"))
        .args(["models"])
        .env("BURN_DEVICE", "vulkan")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("BURN_DEVICE"), "{}", stderr(&o));
}

/// A checkpoint written from the test device loads on it and on the CPU with the same logits.
#[test]
fn checkpoints_load_on_any_device() {
    let device = meal::selftest::test_device();
    let net = meal::models::build("resnet8", 10, &device).unwrap();
    let meta = ModelMeta {
        meal_version: env!("CARGO_PKG_VERSION").into(),
        arch: "resnet8".into(),
        num_classes: 10,
        input_shape: [3, 32, 32],
        normalization: meal::data::Normalization::CIFAR10,
        class_names: (0..10).map(|i| format!("c{i}")).collect(),
        source: "train".into(),
        epoch: 0,
        test_acc: None,
        crop_pct: None,
        interpolation: Default::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.ckpt");
    model_io::model_container(&meta, &net)
        .unwrap()
        .save_atomic(&path)
        .unwrap();
    let summary = meal::selftest::round::across_devices(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(summary.contains("40 logits"), "{summary}");
}

/// A parameter larger than the test device holds in one buffer is refused before anything is
/// built or run, naming it, its size, the limit and what to change: MEAL V1's first
/// discriminator (10000 → 5000, a 200,000,000-byte weight) on lavapipe, which binds 128 MiB.
/// A device that holds it, or flex (no such limit), has nothing to refuse.
#[test]
fn a_parameter_over_the_buffer_limit_is_refused_up_front() {
    let Some(limit) = max_buffer_bytes(&meal::selftest::test_device()) else {
        return;
    };
    if limit >= 200_000_000 {
        return;
    }
    let device = meal::selftest::test_device_name();
    let o = meal(&[
        "--device",
        &device,
        "bench",
        "--workload",
        "meal-v1-resnet18",
        "--batch",
        "2",
        "--steps",
        "1",
        "--warmup",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    for part in [
        "error: device ",
        "discriminators.list.0.layers.0.weight (10000×5000 f32, 200,000,000 bytes)",
        &format!("larger than the {} bytes", thousands(limit)),
        "--set d_width_divisor=",
        "--device flex",
    ] {
        assert!(e.contains(part), "`{part}` missing from: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

/// A computation the device cannot run (here: a tensor one value past its buffer limit) fails
/// the read of its result as meal's error, and the device still computes afterwards.
#[test]
fn a_failed_computation_is_an_error_where_it_is_read() {
    let device = meal::selftest::test_device();
    let Some(limit) = max_buffer_bytes(&device) else {
        return;
    };
    // A real GPU's limit is gigabytes: too much to ask of a test.
    if limit > 1 << 30 {
        return;
    }
    let past = Tensor::<1>::ones([(limit / 4 + 1) as usize], &device);
    let e = read::scalar::<f32, 1, _>(past.sum(), "the sum").unwrap_err();
    assert!(matches!(e, meal::Error::Device { .. }), "{e:?}");
    assert!(e.to_string().contains("reading the sum back failed"), "{e}");
    let fine = Tensor::<1>::from_floats([1.0, 2.0], &device);
    assert_eq!(read::floats(fine, "two values").unwrap(), vec![1.0, 2.0]);
}

/// `meal selftest --golden-only` on the test device with `args`, which must pass: its stdout
/// and JSON report.
fn golden_selftest(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("selftest.json");
    let device = meal::selftest::test_device_name();
    let mut all = vec!["--device", &device, "selftest", "--golden-only", "--json"];
    all.push(json.to_str().unwrap());
    all.extend(args);
    let o = meal(&all);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (out, report)
}

#[test]
fn selftest_reports_every_golden_check() {
    let (out, report) = golden_selftest(&[]);
    let checks = report["checks"].as_array().unwrap();
    // One per zoo model plus the three loss groups.
    let cifar = meal::models::ARCHS
        .iter()
        .filter(|a| a.form == meal::models::Form::Cifar)
        .count();
    assert_eq!(checks.len(), cifar + 3, "{report:#}");
    assert_eq!(report["failed"], 0);
    assert!(checks.iter().all(|c| c["passed"] == true));
    assert_eq!(out.matches("PASS ").count(), checks.len(), "{out}");
    let name = report["device"].as_str().unwrap();
    let device = meal::selftest::test_device_name();
    assert!(
        name.starts_with(device.split(':').next().unwrap()),
        "{name}"
    );
}

/// `--models` picks the golden comparisons (CI runs these on lavapipe, where the whole zoo takes
/// minutes): residual blocks, max pooling, depthwise and dense concatenation, plus the losses.
#[test]
fn selftest_checks_the_models_named() {
    let (_, report) = golden_selftest(&["--models", "mobilenet,resnet8,densenet121,vgg8"]);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // In the zoo's order, then the three loss groups.
    assert_eq!(names.len(), 7, "{names:?}");
    for (name, arch) in names
        .iter()
        .zip(["resnet8", "vgg8", "densenet121", "mobilenet"])
    {
        assert_eq!(*name, format!("{arch} forward vs PyTorch"));
    }
    assert_eq!(report["failed"], 0, "{report:#}");

    // A model without golden outputs (ImageNet form, or unknown) is an error that lists them.
    for bad in ["resnet50", "resnet7"] {
        let o = meal(&["selftest", "--golden-only", "--models", bad]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(&format!("`{bad}`")) && e.contains("--models") && e.contains("resnet8"),
            "{e}"
        );
    }
}
