//! Importing the files users download for timm and torchvision models: a timm resnet18 with
//! seeded random weights and 7 classes, written at test time by
//! `scripts/interop/timm_files.py` as a hub `model.safetensors`, a `pytorch_model.bin`, a
//! torchvision `.pth` and a MEAL V2 checkpoint (every key under `module.`), is imported with
//! no class count given and must give timm's eval logits (64×64, batch 2) to 1e-4 of their
//! scale. The class count comes from the head, the `module.` prefix is stripped and reported.
//!
//! Needs timm and torchvision in `$MEAL_PYTHON` (or `python3`): under CI (`CI=true`) a missing
//! interpreter or package fails the test, elsewhere it prints SKIPPED.

mod common;

use std::path::Path;
use std::process::Command;

use burn::tensor::{Tensor, TensorData};
use meal::interop::{ImportOptions, NameScheme, import_pytorch};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    size: usize,
    classes: usize,
    logits: Vec<Vec<f64>>,
}

#[test]
fn timm_and_torchvision_files_import_with_timms_logits() {
    let Some(python) = common::python_with("timm, torchvision, safetensors, numpy", "interop_timm")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/interop/timm_files.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Expected =
        serde_json::from_slice(&std::fs::read(dir.path().join("logits.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.path().join("input.f32")).unwrap();
    let x: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let n = expected.logits.len();
    let device = meal::backend::device();
    let input = Tensor::<4>::from_data(
        TensorData::new(x, [n, 3, expected.size, expected.size]),
        &device,
    );
    let scale = expected
        .logits
        .iter()
        .flatten()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);

    for (file, prefix) in [
        ("model.safetensors", ""),
        ("pytorch_model.bin", ""),
        ("resnet18-torchvision.pth", ""),
        ("meal_v2.pth", "module."),
    ] {
        let imported = import_pytorch(
            &dir.path().join(file),
            &ImportOptions::new("resnet18"),
            &device,
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        let report = &imported.report;
        assert_eq!(
            imported.num_classes, expected.classes,
            "{file}: class count"
        );
        assert_eq!(report.prefix, prefix, "{file}: stripped prefix");
        assert_eq!(report.scheme, Some(NameScheme::Meal), "{file}: key names");
        assert!(report.is_complete(), "{file}: {:?}", report.problems());
        let logits = imported.net.forward(input.clone()).logits;
        assert_eq!(logits.dims(), [n, expected.classes], "{file}");
        let got: Vec<f32> = logits.into_data().try_to_vec().unwrap();
        let worst = got
            .iter()
            .zip(expected.logits.iter().flatten())
            .map(|(&a, &e)| (f64::from(a) - e).abs())
            .fold(0.0, f64::max)
            / scale;
        assert!(
            worst <= 1e-4,
            "{file}: meal's logits differ from timm's by {worst:.2e} of their scale"
        );
        eprintln!("{file}: {report}; logits within {worst:.1e} of timm's scale");
    }
}
