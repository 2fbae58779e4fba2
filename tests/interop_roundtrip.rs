//! meal → PyTorch: `meal export` output loads into the matching PyTorch model with
//! `load_state_dict(strict=True)` and gives the same logits (1e-4), for safetensors and
//! torch.save files, under meal and kuangliu names. Needs PyTorch: the interpreter is
//! `$MEAL_PYTHON` or `python3`; where `import torch` fails the test says so and passes
//! without checking. The torch-free half (meal reads back its own exports) always runs.

mod interop_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use interop_common::*;
use meal::interop::{ExportFormat, ImportOptions, NameScheme, export, import_pytorch, safetensors};
use meal::models::Net;
use meal::train::model_io::ModelMeta;
use serde_json::json;

fn python() -> String {
    std::env::var("MEAL_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn has_torch() -> bool {
    Command::new(python())
        .args(["-c", "import torch, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn meta(arch: &str, k: usize) -> ModelMeta {
    meal::interop::import::imported_meta(
        arch,
        k,
        meal::data::Normalization::CIFAR10,
        [3, 32, 32],
        (0..k).map(|i| i.to_string()).collect(),
    )
}

struct Job {
    what: String,
    arch: String,
    names: NameScheme,
    weights: PathBuf,
    n: usize,
    /// Logits of the exported model in meal.
    ours: Vec<Vec<f32>>,
    /// PyTorch's logits of the original weights, when known.
    reference: Option<Vec<Vec<f64>>>,
}

struct Roundtrip {
    dir: PathBuf,
    jobs: Vec<Job>,
}

impl Roundtrip {
    /// Exports `net` in both containers and reads each back with meal itself.
    fn export_both(
        &mut self,
        what: &str,
        net: &Net,
        arch: &str,
        names: NameScheme,
        n: usize,
        reference: Option<&Vec<Vec<f64>>>,
    ) {
        let device = meal::backend::device();
        let ours = logits(net, n);
        for (format, ext) in [
            (ExportFormat::Safetensors, "safetensors"),
            (ExportFormat::Pytorch, "pth"),
        ] {
            let path = self.dir.join(format!("{what}.{ext}"));
            let summary = export(net, &meta(arch, 10), names, format, &path).unwrap();
            assert_eq!(summary.scheme, names);
            // meal reads its own export back (names detected) to the same logits.
            let back = import_pytorch(&path, &ImportOptions::new(arch), &device)
                .unwrap_or_else(|e| panic!("{what}.{ext}: {e}"));
            assert!(back.report.is_complete(), "{}", back.report);
            assert_eq!(back.report.scheme, Some(names));
            assert_eq!(
                back.report.loaded + back.report.batch_counters,
                summary.tensors
            );
            let again = logits(&back.net, n);
            assert!(
                max_diff(&again, &to_f64(&ours)) == 0.0,
                "{what}.{ext}: re-import differs"
            );
            self.jobs.push(Job {
                what: format!("{what}.{ext}"),
                arch: arch.to_string(),
                names,
                weights: path,
                n,
                ours: ours.clone(),
                reference: reference.cloned(),
            });
        }
    }
}

fn to_f64(v: &[Vec<f32>]) -> Vec<Vec<f64>> {
    v.iter()
        .map(|r| r.iter().map(|&x| f64::from(x)).collect())
        .collect()
}

#[test]
fn exports_load_strictly_in_pytorch_with_the_same_logits() {
    let expected = expected();
    let device = meal::backend::device();
    let dir = tempfile::tempdir().unwrap();
    let mut rt = Roundtrip {
        dir: dir.path().to_path_buf(),
        jobs: Vec::new(),
    };

    // A PyTorch-made resnet8, through meal and back.
    let fx = &expected.models["resnet8"];
    let net = import_pytorch(
        &fixtures().join("resnet8.t7"),
        &ImportOptions::new("resnet8"),
        &device,
    )
    .unwrap()
    .net;
    rt.export_both(
        "resnet8",
        &net,
        "resnet8",
        NameScheme::Meal,
        4,
        Some(&fx.logits),
    );

    // kuangliu names: the deterministic reference ResNet-18, exported as kuangliu names again.
    let fx = &expected.models["kuangliu_resnet18"];
    let src = dir.path().join("src_resnet18.safetensors");
    std::fs::write(
        &src,
        safetensors::encode(&deterministic_state_dict(&fx.listing), &[]).unwrap(),
    )
    .unwrap();
    let net = import_pytorch(&src, &ImportOptions::new("resnet18_cifar"), &device)
        .unwrap()
        .net;
    rt.export_both(
        "kuangliu_resnet18",
        &net,
        "resnet18_cifar",
        NameScheme::Kuangliu,
        2,
        Some(&fx.logits),
    );
    // Fresh students of a few more architectures (grouped convolutions,
    // pre-activation blocks), meal names.
    for arch in ["vgg8", "preact_resnet18", "resnext29_2x64d"] {
        device.seed(7);
        let net = meal::models::build(arch, 10, &device).unwrap();
        let path = dir.path().join(format!("{arch}.pth"));
        export(
            &net,
            &meta(arch, 10),
            NameScheme::Meal,
            ExportFormat::Pytorch,
            &path,
        )
        .unwrap();
        rt.jobs.push(Job {
            what: format!("{arch}.pth"),
            arch: arch.into(),
            names: NameScheme::Meal,
            weights: path,
            n: 2,
            ours: logits(&net, 2),
            reference: None,
        });
    }

    if !has_torch() {
        eprintln!(
            "SKIPPED the PyTorch half of interop_roundtrip: `{} -c 'import torch, numpy'` failed. \
             Install PyTorch (CPU wheels) and numpy, or point MEAL_PYTHON at an interpreter that \
             has them, to check that exports load with load_state_dict(strict=True).",
            python()
        );
        return;
    }
    let jobs = rt.jobs;
    let spec: Vec<_> = jobs
        .iter()
        .map(|j| {
            json!({"arch": j.arch, "names": j.names.as_str(), "weights": j.weights,
                   "classes": 10, "n": j.n})
        })
        .collect();
    let spec_path = dir.path().join("jobs.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/interop/check_export.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(&spec_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PyTorch could not load meal's exports:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), jobs.len());
    for (job, r) in jobs.iter().zip(results) {
        let torch: Vec<Vec<f64>> = serde_json::from_value(r["logits"].clone()).unwrap();
        assert_logits(
            &format!("{} in PyTorch vs meal", job.what),
            &job.ours,
            &torch,
        );
        if let Some(reference) = &job.reference {
            assert_logits(
                &format!("{} vs the original", job.what),
                &job.ours,
                reference,
            );
        }
        if job.what.ends_with(".pth") {
            assert_eq!(r["container"], "OrderedDict", "{}", job.what);
        }
    }
}
