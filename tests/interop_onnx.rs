//! meal → ONNX: every zoo model exported with `--format onnx` passes `onnx.checker` (full
//! check) and gives meal's logits in ONNX Runtime (CPU) on a fixed batch, at batch 1 and 8,
//! to 1e-4 of the logits' scale; the file carries opset 17, a symbolic batch axis and the input
//! settings in its metadata. The Python half needs `onnx`, `onnxruntime` and `numpy` in
//! `$MEAL_PYTHON` (or `python3`): under CI (`CI=true`) a missing interpreter or package fails
//! the test, elsewhere it prints SKIPPED. The Rust half (the graph decoded back and checked
//! for well-formedness) always runs.

mod common;

mod interop_common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use interop_common::{inputs, logits};
use meal::data::Normalization;
use meal::interop::TorchDtype;
use meal::interop::onnx::{self, proto};
use meal::interop::{ExportFormat, ImportOptions, NameScheme, export, import_pytorch, safetensors};
use meal::models::{ARCHS, Net};
use meal::selftest::fill::uniform;
use meal::train::model_io::ModelMeta;
use prost::Message;
use serde_json::json;

const CLASSES: usize = 10;
const BATCHES: [usize; 2] = [1, 8];
const NORM: Normalization = Normalization {
    mean: [0.5, 0.25, 0.125],
    std: [0.2, 0.3, 0.4],
};

fn meta(arch: &str) -> ModelMeta {
    meal::interop::import::imported_meta(
        arch,
        CLASSES,
        NORM,
        [3, 32, 32],
        (0..CLASSES).map(|i| format!("c{i}")).collect(),
    )
}

/// A fresh `arch` whose BatchNorm layers hold non-trivial statistics and affine parameters
/// and whose biases are non-zero, so that a swapped or dropped buffer shows in the logits.
fn model(arch: &str, dir: &Path) -> Net {
    let device = meal::backend::device();
    device.seed(11);
    let net = meal::models::build(arch, CLASSES, &device).unwrap();
    let mut tensors = meal::interop::state_dict(&net, arch, NameScheme::Meal).unwrap();
    let batch_norms: HashSet<String> = tensors
        .iter()
        .filter_map(|t| t.key.strip_suffix(".running_var").map(str::to_string))
        .collect();
    for t in tensors.iter_mut().filter(|t| t.dtype == TorchDtype::F32) {
        let (owner, leaf) = t.key.rsplit_once('.').unwrap();
        let bn = batch_norms.contains(owner);
        let f: fn(f64) -> f64 = match leaf {
            "running_mean" | "bias" => |u| 0.1 * u,
            "running_var" => |u| 1.0 + 0.5 * u,
            "weight" if bn => |u| 1.0 + 0.2 * u,
            _ => continue,
        };
        let n: usize = t.shape.iter().product();
        t.bytes = uniform(&t.key, n)
            .into_iter()
            .flat_map(|u| (f(u) as f32).to_le_bytes())
            .collect();
    }
    let path = dir.join(format!("{arch}-src.safetensors"));
    std::fs::write(&path, safetensors::encode(&tensors, &[]).unwrap()).unwrap();
    let net = import_pytorch(&path, &ImportOptions::new(arch), &device)
        .unwrap()
        .net;
    std::fs::remove_file(&path).unwrap();
    net
}

/// The graph's structure, decoded back with the same messages: opset, input and output
/// shapes, metadata, and every node input defined before use.
fn check_structure(arch: &str, bytes: &[u8]) {
    let m = proto::ModelProto::decode(bytes).unwrap();
    assert_eq!(m.opset_import.len(), 1, "{arch}");
    assert_eq!(m.opset_import[0].version, onnx::OPSET, "{arch}");
    assert_eq!(m.producer_name, "meal");
    let g = m.graph.unwrap();
    let shape = |v: &proto::ValueInfoProto| -> Vec<String> {
        let t = v.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
        assert_eq!(t.elem_type, proto::FLOAT);
        let dims = &t.shape.as_ref().unwrap().dim;
        dims.iter()
            .map(|d| match (&d.dim_param, d.dim_value) {
                (Some(p), None) => p.clone(),
                (None, Some(v)) => v.to_string(),
                other => panic!("{arch}: dimension {other:?}"),
            })
            .collect()
    };
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.output.len(), 1);
    assert_eq!(shape(&g.input[0]), ["batch", "3", "32", "32"], "{arch}");
    assert_eq!(shape(&g.output[0]), ["batch", "10"], "{arch}");
    assert_eq!(g.output[0].name, onnx::OUTPUT);
    let mut defined: HashSet<&str> = HashSet::from([g.input[0].name.as_str()]);
    for t in &g.initializer {
        assert!(defined.insert(&t.name), "{arch}: {} defined twice", t.name);
    }
    for n in &g.node {
        for i in &n.input {
            assert!(
                defined.contains(i.as_str()),
                "{arch}: {} reads {i} before it exists",
                n.name
            );
        }
        for o in &n.output {
            assert!(defined.insert(o), "{arch}: {o} defined twice");
        }
    }
    assert!(defined.contains(onnx::OUTPUT), "{arch}");
    let props: BTreeMap<_, _> = m
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(props["arch"], arch);
    assert_eq!(props["input_shape"], "3,32,32");
    assert_eq!(props["mean"], "0.5,0.25,0.125");
    assert_eq!(props["std"], "0.2,0.3,0.4");
}

/// Largest |a − b| over the logits, relative to the largest |logit| of meal's.
fn relative_error(ours: &[Vec<f32>], theirs: &[Vec<f64>]) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "rows");
    let scale = ours
        .iter()
        .flatten()
        .fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    assert!(scale > 0.0 && scale.is_finite(), "logit scale {scale}");
    let diff = ours
        .iter()
        .zip(theirs)
        .flat_map(|(a, b)| {
            assert_eq!(a.len(), b.len(), "classes");
            a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - y).abs())
        })
        .fold(0.0, f64::max);
    diff / scale
}

struct Exported {
    arch: &'static str,
    path: PathBuf,
    /// meal's logits per batch size.
    ours: Vec<Vec<Vec<f32>>>,
}

#[test]
fn every_zoo_model_runs_in_onnx_runtime_with_meals_logits() {
    let started = std::time::Instant::now();
    let python = common::python_with(
        "onnx, onnxruntime, numpy",
        "the ONNX Runtime half of interop_onnx",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut exported = Vec::new();
    // Every zoo model, the 60M- to 115M-parameter ImageNet ones too (a quarter to half a GB
    // each: about a minute and a half more than the others).
    for info in ARCHS.iter() {
        let arch = info.name;
        let net = model(arch, dir.path());
        let path = dir.path().join(format!("{arch}.onnx"));
        let summary = export(
            &net,
            &meta(arch),
            NameScheme::Meal,
            ExportFormat::Onnx,
            &path,
        )
        .unwrap_or_else(|e| panic!("{arch}: {e}"));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(summary.bytes, bytes.len() as u64);
        check_structure(arch, &bytes);
        let ours = BATCHES.iter().map(|&b| logits(&net, b)).collect();
        exported.push(Exported { arch, path, ours });
    }
    eprintln!(
        "exported {} models in {:.1}s: {}",
        exported.len(),
        started.elapsed().as_secs_f64(),
        exported
            .iter()
            .map(|e| e.arch)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Some(python) = python else { return };

    let n = *BATCHES.iter().max().unwrap();
    let x: Vec<f32> = inputs(n).into_data().try_to_vec().unwrap();
    let input = dir.path().join("input.f32");
    std::fs::write(
        &input,
        x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
    let jobs = json!({
        "input": input,
        "shape": [n, 3, 32, 32],
        "models": exported.iter().map(|e| json!({"path": e.path, "batches": BATCHES})).collect::<Vec<_>>(),
    });
    let jobs_path = dir.path().join("jobs.json");
    std::fs::write(&jobs_path, serde_json::to_vec(&jobs).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/interop/check_onnx.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&jobs_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the ONNX checker or ONNX Runtime refused meal's exports:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("versions: {}", reply["versions"]);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), exported.len());
    for (e, r) in exported.iter().zip(results) {
        let arch = e.arch;
        assert_eq!(r["opset"], json!([onnx::OPSET]), "{arch}");
        assert_eq!(r["input"]["dims"], json!(["batch", 3, 32, 32]), "{arch}");
        assert_eq!(r["output"]["dims"], json!(["batch", CLASSES]), "{arch}");
        assert_eq!(r["output"]["name"], onnx::OUTPUT, "{arch}");
        let md = &r["metadata"];
        assert_eq!(md["arch"], arch);
        assert_eq!(md["num_classes"], CLASSES.to_string());
        assert_eq!(md["input_shape"], "3,32,32");
        let floats = |key: &str| -> Vec<f32> {
            md[key]
                .as_str()
                .unwrap()
                .split(',')
                .map(|v| v.parse().unwrap())
                .collect()
        };
        assert_eq!(floats("mean"), NORM.mean, "{arch}");
        assert_eq!(floats("std"), NORM.std, "{arch}");
        let mut worst = Vec::new();
        for (b, ours) in BATCHES.iter().zip(&e.ours) {
            let theirs: Vec<Vec<f64>> =
                serde_json::from_value(r["logits"][b.to_string()].clone()).unwrap();
            let rel = relative_error(ours, &theirs);
            assert!(
                rel <= 1e-4,
                "{arch} at batch {b}: ONNX Runtime's logits differ from meal's by {rel:.2e} of \
                 their scale (tolerance 1e-4)"
            );
            worst.push(format!("batch {b}: {rel:.1e}"));
        }
        eprintln!(
            "{arch}: ONNX Runtime vs meal, max relative error {}",
            worst.join(", ")
        );
    }
    eprintln!("interop_onnx: {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn an_output_folder_or_an_input_size_the_model_cannot_take_is_a_clear_error() {
    let device = meal::backend::device();
    let dir = tempfile::tempdir().unwrap();
    let net = meal::models::build("resnet8", CLASSES, &device).unwrap();
    for format in [ExportFormat::Onnx, ExportFormat::Safetensors] {
        let e = export(&net, &meta("resnet8"), NameScheme::Meal, format, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&dir.path().display().to_string()) && e.contains("is a folder"),
            "{e}"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // densenet_cifar's classifier is sized for 32×32 inputs: at 64×64 the graph cannot be
    // written, and nothing is.
    let net = meal::models::build("densenet_cifar", CLASSES, &device).unwrap();
    let mut big = meta("densenet_cifar");
    big.input_shape = [3, 64, 64];
    let path = dir.path().join("d.onnx");
    let e = export(&net, &big, NameScheme::Meal, ExportFormat::Onnx, &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ONNX export of densenet_cifar: fc: takes 6160 features"),
        "{e}"
    );
    assert!(!path.exists());
}
