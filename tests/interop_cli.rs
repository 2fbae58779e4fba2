//! `meal import` / `meal export` from the command line: strict errors with every key, the
//! partial-load list, ONNX export and the refusal of a folder as output, and a checkpoint → PyTorch → checkpoint round trip.

mod interop_common;

use std::process::{Command, Output};

use interop_common::*;
use meal::interop::torch_save;
use meal::train::model_io::load_model;

fn meal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meal"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn import_export_round_trip_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let t7 = fixtures().join("resnet8.t7");
    let o = meal(&[
        "import",
        "--arch",
        "resnet8",
        "--from",
        t7.to_str().unwrap(),
        "--out",
        &d("t.ckpt"),
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("37 tensors loaded") && out.contains("net.module."),
        "{out}"
    );
    assert!(out.contains("acc 91.25"), "{out}");

    for format in ["pytorch", "safetensors"] {
        let file = d(&format!("t.{format}"));
        let o = meal(&[
            "export",
            "--checkpoint",
            &d("t.ckpt"),
            "--format",
            format,
            "--out",
            &file,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("44 tensors"), "{}", text(&o));
        let back = d(&format!("back-{format}.ckpt"));
        let o = meal(&[
            "import", "--arch", "resnet8", "--from", &file, "--out", &back,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let device = meal::backend::device();
        let (net, meta, _) = load_model(std::path::Path::new(&back), &device).unwrap();
        assert_logits(
            &format!("t7 → ckpt → {format} → ckpt"),
            &logits(&net, 4),
            &expected().models["resnet8"].logits,
        );
        // safetensors carries the normalisation; a .pth state dict cannot (CIFAR-10 default).
        let want = if format == "safetensors" {
            [0.5; 3]
        } else {
            [0.4914, 0.4822, 0.4465]
        };
        assert_eq!(meta.normalization.mean, want, "{format}");
    }

    // ONNX next to the checkpoint by default (tests/interop_onnx.rs runs it in ONNX Runtime).
    let o = meal(&["export", "--checkpoint", &d("t.ckpt"), "--format", "onnx"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ONNX opset 17"), "{}", text(&o));
    assert!(dir.path().join("t.onnx").is_file());
    // An --out naming a folder is refused, naming it.
    let sub = d("folder");
    std::fs::create_dir(&sub).unwrap();
    let o = meal(&[
        "export",
        "--checkpoint",
        &d("t.ckpt"),
        "--format",
        "onnx",
        "--out",
        &sub,
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&format!("{sub}: is a folder")),
        "{}",
        text(&o)
    );
    let o = meal(&[
        "export",
        "--checkpoint",
        &d("t.ckpt"),
        "--names",
        "kuangliu",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no kuangliu names"), "{}", text(&o));
}

#[test]
fn strict_by_default_partial_on_request() {
    let fx = &expected().models["vgg8"];
    let mut tensors = deterministic_state_dict(&fx.listing);
    tensors.retain(|t| !t.key.starts_with("fc."));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("no-head.pth");
    std::fs::write(&src, torch_save::encode(&tensors).unwrap()).unwrap();
    let out = dir.path().join("x.ckpt");
    let args = [
        "import",
        "--arch",
        "vgg8",
        "--from",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--classes",
        "10",
    ];
    let o = meal(&args);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("2 missing, 0 unexpected, 0 wrongly shaped")
            && t.contains("missing     fc.weight")
            && t.contains("missing     fc.bias"),
        "{t}"
    );
    assert!(!out.exists(), "nothing is written on a strict failure");
    // Without --classes the class count cannot be read off the missing classifier.
    let o = meal(&args[..7]);
    assert!(text(&o).contains("--classes"), "{}", text(&o));

    let mut partial = args.to_vec();
    partial.push("--allow-partial");
    let o = meal(&partial);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("partial import") && t.contains("missing     fc.weight"),
        "{t}"
    );
    assert!(out.exists());
}
