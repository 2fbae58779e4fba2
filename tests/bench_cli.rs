//! `meal bench`: the JSON line carries the fields scripts/bench/compare.sh reads, with rates
//! that agree with the step times, and bad requests fail with a message naming the problem.

use std::process::{Command, Output};

use serde_json::Value;

fn meal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meal"))
        .arg("bench")
        .args(args)
        .output()
        .expect("runs meal")
}

fn json(args: &[&str]) -> Value {
    let o = meal(args);
    assert!(
        o.status.success(),
        "meal bench {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON line: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn check_rates(v: &Value, batch: f64) {
    for part in ["train", "infer"] {
        let t = &v[part];
        let (median, min, max) = (
            t["median"].as_f64().unwrap(),
            t["min"].as_f64().unwrap(),
            t["max"].as_f64().unwrap(),
        );
        assert!(min > 0.0 && min <= median && median <= max, "{part}: {t}");
        assert_eq!(v[format!("{part}_img_per_s")].as_f64().unwrap(), median);
        let from_ms = batch / (t["median_ms"].as_f64().unwrap() / 1e3);
        assert!((from_ms - median).abs() < 1e-6 * median, "{part}: {t}");
    }
    if cfg!(target_os = "linux") {
        assert!(v["peak_rss_mb"].as_f64().unwrap() > 10.0, "{v}");
        assert!(v["cpu"].is_string(), "{v}");
    }
    assert!(v["simd"].is_array(), "{v}");
}

#[test]
fn arch_and_workload_report_their_fields() {
    let v = json(&[
        "--arch", "resnet8", "--batch", "4", "--steps", "2", "--warmup", "1", "--json",
    ]);
    assert_eq!(v["arch"], "resnet8");
    assert!(v.get("workload").is_none(), "{v}");
    assert_eq!(v["batch"], 4);
    assert_eq!(v["steps"], 2);
    assert!(v["device"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    check_rates(&v, 4.0);

    // Three steps: the round robin asks each of the three teachers once.
    let v = json(&[
        "--workload",
        "meal-v1-cifar-small",
        "--batch",
        "4",
        "--steps",
        "3",
        "--warmup",
        "0",
        "--json",
    ]);
    assert_eq!(v["workload"], "meal-v1-cifar-small");
    assert!(v.get("arch").is_none(), "{v}");
    // The MEAL step also runs teachers and discriminators: no GFLOP/s from the student's MACs.
    assert!(v.get("gflops").is_none(), "{v}");
    check_rates(&v, 4.0);
}

#[test]
fn latency_reports_batch_1_and_8_per_image_and_saves_the_timed_model() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("timed.ckpt");
    let v = json(&[
        "--arch",
        "resnet8",
        "--latency",
        "--steps",
        "4",
        "--warmup",
        "1",
        "--save-model",
        ckpt.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["arch"], "resnet8");
    assert_eq!(v["steps"], 4);
    let rows = v["latency"].as_array().unwrap();
    let batches: Vec<u64> = rows.iter().map(|r| r["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 8], "{v}");
    for r in rows {
        let median = r["median_ms_per_image"].as_f64().unwrap();
        let p90 = r["p90_ms_per_image"].as_f64().unwrap();
        assert_eq!(r["runs"], 4, "{r}");
        // A resnet8 forward takes more than a microsecond and less than a second per image.
        assert!(median > 1e-3 && median <= p90 && p90 < 1e3, "{r}");
    }
    // The saved checkpoint is the model that was timed: it loads as resnet8 on CIFAR-10.
    let device = meal::backend::device();
    let (_, meta, _) = meal::train::model_io::load_model(&ckpt, &device).unwrap();
    assert_eq!((meta.arch.as_str(), meta.num_classes), ("resnet8", 10));
    assert_eq!(meta.input_shape, [3, 32, 32]);

    let text = meal(&["--arch", "resnet8", "--latency", "--steps", "2"]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("batch 1 ") && text.contains("batch 8 ") && text.contains("ms/image p90"),
        "{text}"
    );
}

#[test]
fn bad_requests_name_the_problem() {
    let err = |args: &[&str]| {
        let o = meal(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8(o.stderr).unwrap()
    };
    let e = err(&["--workload", "meal-v3"]);
    assert!(
        e.contains("meal-v3") && e.contains("meal-v1-resnet18"),
        "{e}"
    );
    let e = err(&["--arch", "resnet9000"]);
    assert!(e.contains("resnet9000"), "{e}");
    let e = err(&["--arch", "resnet8", "--batch", "0"]);
    assert!(e.contains("--batch"), "{e}");
    let e = err(&["--arch", "resnet8", "--steps", "0"]);
    assert!(e.contains("--steps"), "{e}");
    let e = err(&["--arch", "resnet8", "--set", "alpha=1"]);
    assert!(e.contains("--set") && e.contains("--arch"), "{e}");
    let e = err(&["--workload", "meal-v1-cifar-small", "--set", "temperatur=2"]);
    assert!(e.contains("temperatur"), "{e}");
    let e = err(&["--workload", "meal-v1-cifar-small", "--latency"]);
    assert!(e.contains("--latency") && e.contains("--workload"), "{e}");
    let e = err(&["--arch", "resnet8", "--latency", "--batch", "4"]);
    assert!(e.contains("--latency") && e.contains("--batch"), "{e}");
    let e = err(&["--arch", "resnet8", "--latency", "--steps", "0"]);
    assert!(e.contains("--steps"), "{e}");
    let e = err(&["--arch", "resnet8", "--save-model", "x.ckpt"]);
    assert!(e.contains("--latency"), "{e}");
    let e = err(&["--arch", "resnet8", "--workload", "meal-v1-cifar-small"]);
    assert!(e.contains("--arch") || e.contains("--workload"), "{e}");
}

#[test]
fn image_size_reaches_the_model_and_a_bad_one_is_refused() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--arch", "resnet8", "--batch", "2", "--steps", "1", "--warmup", "0", "--json",
        ];
        args.extend_from_slice(extra);
        json(&args)
    };
    // The CIFAR form's own input by default; a side twice as long is four times the work of
    // every convolution (the 64→10 classifier's 640 MACs do not grow with the side).
    let natural = run(&[]);
    assert_eq!(
        (natural["image_size"].clone(), natural["classes"].clone()),
        (32.into(), 10.into())
    );
    let wide = run(&["--image-size", "64"]);
    assert_eq!(wide["image_size"], 64, "{wide}");
    let macs = |v: &Value| v["macs_per_image"].as_u64().unwrap();
    assert!(macs(&natural) > 1_000_000, "{natural}");
    assert_eq!(
        macs(&wide) - 640,
        4 * (macs(&natural) - 640),
        "{natural}\n{wide}"
    );
    // Achieved GFLOP/s: 2 flops per MAC, the training step three forwards.
    for v in [&natural, &wide] {
        let f = |key: &str| v[key].as_f64().unwrap();
        let (train, infer) = (f("train_img_per_s"), f("infer_img_per_s"));
        let g = &v["gflops"];
        let close = |got: &Value, want: f64| (got.as_f64().unwrap() / want - 1.0).abs() < 1e-9;
        assert!(
            close(&g["train"], 6.0 * macs(v) as f64 * train / 1e9),
            "{v}"
        );
        assert!(
            close(&g["infer"], 2.0 * macs(v) as f64 * infer / 1e9),
            "{v}"
        );
    }
    // An ImageNet form keeps its 1000 classes at a side other than its own 224.
    let timm = json(&[
        "--arch",
        "resnet18",
        "--image-size",
        "32",
        "--batch",
        "2",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    assert_eq!(
        (timm["image_size"].clone(), timm["classes"].clone()),
        (32.into(), 1000.into())
    );

    let err = |args: &[&str]| {
        let o = meal(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let e = String::from_utf8(o.stderr).unwrap();
        assert!(!e.contains("panicked"), "{e}");
        e
    };
    let e = err(&["--arch", "resnet8", "--image-size", "0"]);
    assert!(
        e.contains("--image-size") && e.contains("at least 1"),
        "{e}"
    );
    // resnet18_cifar pools a fixed 4×4 window: at 64×64 its classifier would get 4× the
    // features. The probe says so before any timing.
    let e = err(&[
        "--arch",
        "resnet18_cifar",
        "--image-size",
        "64",
        "--steps",
        "1",
    ]);
    assert!(
        e.contains("--image-size 64") && e.contains("resnet18_cifar cannot take 64×64"),
        "{e}"
    );
    // --latency takes the same side, checked the same way.
    let e = err(&["--arch", "resnet8", "--latency", "--image-size", "0"]);
    assert!(
        e.contains("--image-size") && e.contains("at least 1"),
        "{e}"
    );
}
