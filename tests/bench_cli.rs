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
    check_rates(&v, 4.0);
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
    let e = err(&["--arch", "resnet8", "--workload", "meal-v1-cifar-small"]);
    assert!(e.contains("--arch") || e.contains("--workload"), "{e}");
}
