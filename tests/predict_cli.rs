//! `meal predict` on CIFAR test images written as files: a 32×32 PNG gives exactly the
//! probabilities the model gives the dataset's own eval tensor (same resize and normalisation),
//! a 100×80 JPEG is fitted to the input, the output lists the top classes in descending order,
//! and an unreadable image fails naming the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::tensor::{Tensor, TensorData};
use meal::data::DataConfig;
use meal::train::model_io::{ModelMeta, load_model, model_container};
use meal::train::tensors::{host_rows, softmax_rows};
use rand::SeedableRng;

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini")
}

fn meal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meal"))
        .args(args)
        .output()
        .expect("runs meal")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    run_dir: PathBuf,
    ckpt: PathBuf,
    /// 32×32 PNGs of test images 0..3 and their eval tensors.
    pngs: Vec<(PathBuf, Vec<f32>)>,
    /// The same images upscaled to 100×80 JPEGs.
    jpegs: Vec<PathBuf>,
    class_names: Vec<String>,
}

/// An untrained resnet8 checkpoint with CIFAR-10's metadata, and images from the test split.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = DataConfig::new(mini());
    cfg.test_subset = Some(30);
    let splits = meal::data::open(&cfg).unwrap();
    let test = splits.test;
    let device = meal::backend::device();
    let net = meal::models::build("resnet8", test.num_classes(), &device).unwrap();
    let meta = ModelMeta {
        meal_version: env!("CARGO_PKG_VERSION").into(),
        arch: "resnet8".into(),
        num_classes: test.num_classes(),
        input_shape: test.output_shape(),
        normalization: test.normalization(),
        class_names: test.class_names(),
        source: "train".into(),
        epoch: 0,
        test_acc: None,
        crop_pct: None,
        interpolation: Default::default(),
    };
    let run_dir = tmp.path().join("run");
    let ckpt = run_dir.join("best.ckpt");
    model_container(&meta, &net)
        .unwrap()
        .save_atomic(&ckpt)
        .unwrap();

    let norm = test.normalization();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut pngs = Vec::new();
    let mut jpegs = Vec::new();
    for i in [0usize, 7, 19] {
        let (chw, _) = test.get(i, false, &mut rng).unwrap();
        let mut img = image::RgbImage::new(32, 32);
        for y in 0..32 {
            for x in 0..32 {
                let px = std::array::from_fn(|c| {
                    let v = chw[c * 1024 + y * 32 + x] * norm.std[c] + norm.mean[c];
                    (v * 255.0).round().clamp(0.0, 255.0) as u8
                });
                img.put_pixel(x as u32, y as u32, image::Rgb(px));
            }
        }
        let png = tmp.path().join(format!("cifar-{i}.png"));
        img.save(&png).unwrap();
        let big = image::imageops::resize(&img, 100, 80, image::imageops::FilterType::Triangle);
        let jpg = tmp.path().join(format!("cifar-{i} large.jpg"));
        big.save(&jpg).unwrap();
        pngs.push((png, chw));
        jpegs.push(jpg);
    }
    Fixture {
        _tmp: tmp,
        run_dir,
        ckpt,
        pngs,
        jpegs,
        class_names: test.class_names(),
    }
}

/// `(class, index, probability)` of one listed class.
type Ranked = (String, usize, f64);

/// `(image, its listed classes)` of every JSON line.
fn parse_json(stdout: &str) -> Vec<(String, Vec<Ranked>)> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let top = v["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["class"].as_str().unwrap().to_string(),
                        c["index"].as_u64().unwrap() as usize,
                        c["prob"].as_f64().unwrap(),
                    )
                })
                .collect();
            (v["image"].as_str().unwrap().to_string(), top)
        })
        .collect()
}

fn assert_top5(top: &[Ranked], names: &[String]) {
    assert_eq!(top.len(), 5);
    let sum: f64 = top.iter().map(|t| t.2).sum();
    assert!(sum <= 1.0 + 1e-5 && sum > 0.0, "top-5 sum {sum}");
    for w in top.windows(2) {
        assert!(w[0].2 >= w[1].2, "not descending: {top:?}");
    }
    for (class, index, p) in top {
        assert_eq!(&names[*index], class);
        assert!((0.0..=1.0).contains(p));
    }
    let mut idx: Vec<usize> = top.iter().map(|t| t.1).collect();
    idx.sort();
    idx.dedup();
    assert_eq!(idx.len(), 5, "a class listed twice: {top:?}");
}

#[test]
fn predict_matches_the_eval_transform_and_lists_top5() {
    let f = fixture();
    let mut args = vec![
        "predict",
        "--json",
        "--checkpoint",
        f.ckpt.to_str().unwrap(),
    ];
    args.extend(f.pngs.iter().map(|p| p.0.to_str().unwrap()));
    args.extend(f.jpegs.iter().map(|p| p.to_str().unwrap()));
    let o = meal(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let preds = parse_json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(preds.len(), 6);

    // The model run directly on the dataset's eval tensors.
    let device = meal::backend::device();
    let (net, _, _) = load_model(&f.ckpt, &device).unwrap();
    let flat: Vec<f32> = f.pngs.iter().flat_map(|p| p.1.clone()).collect();
    let x = Tensor::<4>::from_data(TensorData::new(flat, [3, 3, 32, 32]), &device);
    let (scores, k) = host_rows(&net.forward(x).logits).unwrap();
    let probs = softmax_rows(&scores, k);

    for (i, (image, top)) in preds.iter().enumerate() {
        assert_top5(top, &f.class_names);
        if i < 3 {
            assert_eq!(Path::new(image), f.pngs[i].0);
            let row = &probs[i * k..(i + 1) * k];
            for (_, index, p) in top {
                assert!(
                    (row[*index] as f64 - p).abs() < 1e-5,
                    "image {i} class {index}: predict {p} vs eval {}",
                    row[*index]
                );
            }
            let best = (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            assert_eq!(top[0].1, best);
        } else {
            assert_eq!(Path::new(image), f.jpegs[i - 3]);
        }
    }
}

#[test]
fn run_folder_and_table_output() {
    let f = fixture();
    let o = meal(&[
        "predict",
        "--checkpoint",
        f.run_dir.to_str().unwrap(),
        f.jpegs[0].to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("resnet8 (10 classes, input 32x32)"),
        "{out}"
    );
    assert!(lines[0].contains("best.ckpt"), "{out}");
    assert!(lines[1].ends_with("cifar-0 large.jpg"), "{out}");
    let ranks = &lines[2..];
    assert_eq!(ranks.len(), 5, "{out}");
    let mut last = f64::INFINITY;
    for (r, line) in ranks.iter().enumerate() {
        let line = line.trim();
        assert!(line.starts_with(&format!("{}. ", r + 1)), "{line}");
        let pct: f64 = line
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!(pct <= last && (0.0..=100.0).contains(&pct), "{out}");
        last = pct;
        let class = line.split_whitespace().nth(1).unwrap();
        assert!(f.class_names.iter().any(|c| c == class), "{class}");
    }
}

#[test]
fn unreadable_images_are_named() {
    let f = fixture();
    let broken = f.run_dir.join("broken.png");
    std::fs::write(&broken, b"this is not a PNG").unwrap();
    let missing = f.run_dir.join("missing.jpg");
    for bad in [&broken, &missing] {
        let o = meal(&[
            "predict",
            "--checkpoint",
            f.ckpt.to_str().unwrap(),
            f.pngs[0].0.to_str().unwrap(),
            bad.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(stderr.contains(bad.to_str().unwrap()), "{stderr}");
        assert!(o.stdout.is_empty(), "printed before failing");
    }
    // A checkpoint that is not one is named too.
    let o = meal(&[
        "predict",
        "--checkpoint",
        broken.to_str().unwrap(),
        f.pngs[0].0.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken.png"));
}

#[test]
fn eval_accepts_a_run_folder_like_its_best_checkpoint() {
    let f = fixture();
    let o = meal(&[
        "eval",
        "--checkpoint",
        f.run_dir.to_str().unwrap(),
        f.ckpt.to_str().unwrap(),
        "--data",
        mini().to_str().unwrap(),
        "--test-subset",
        "50",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("best.ckpt (resnet8)"))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    fn acc(row: &str) -> Vec<&str> {
        row.split_whitespace().rev().take(2).collect()
    }
    assert_eq!(acc(rows[0]), acc(rows[1]), "{out}");
    assert!(out.contains("ensemble of 2"), "{out}");
}

/// The number before " images/s" in the summary line on stderr, and the image count.
fn summary(stderr: &str) -> (usize, f64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("predicted "))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    let count = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let rate = line
        .split(" images/s")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    (count, rate)
}

#[test]
fn a_folder_is_predicted_in_batches_with_the_same_results() {
    let f = fixture();
    // Six images, two of them in a subfolder, beside a file that is not an image.
    let dir = f.run_dir.parent().unwrap().join("images");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut expected = Vec::new();
    for (i, src) in f.pngs.iter().map(|p| &p.0).chain(&f.jpegs).enumerate() {
        let name = src.file_name().unwrap();
        let dst = if i % 3 == 2 {
            dir.join("sub").join(name)
        } else {
            dir.join(name)
        };
        std::fs::copy(src, &dst).unwrap();
        expected.push(dst);
    }
    expected.sort();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();

    let run = |batch: &str| {
        let o = meal(&[
            "predict",
            "--json",
            "--batch-size",
            batch,
            "--checkpoint",
            f.ckpt.to_str().unwrap(),
            dir.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{stderr}");
        let (count, rate) = summary(&stderr);
        assert_eq!(count, 6, "{stderr}");
        assert!(rate.is_finite() && rate > 0.0, "{stderr}");
        assert!(stderr.contains(&format!("batch size {batch}")), "{stderr}");
        parse_json(&String::from_utf8_lossy(&o.stdout))
    };
    let by4 = run("4");
    let by1 = run("1");
    let images: Vec<PathBuf> = by4.iter().map(|p| PathBuf::from(&p.0)).collect();
    assert_eq!(images, expected);
    assert_eq!(by4.len(), by1.len());
    for ((img, a), (_, b)) in by4.iter().zip(&by1) {
        assert_top5(a, &f.class_names);
        for (x, y) in a.iter().zip(b) {
            assert_eq!(
                (&x.0, x.1),
                (&y.0, y.1),
                "{img}: batch 4 {a:?} vs batch 1 {b:?}"
            );
            assert!((x.2 - y.2).abs() < 1e-5, "{img}: {a:?} vs {b:?}");
        }
    }

    // The same image named directly and found in the folder gets the same classes.
    let o = meal(&[
        "predict",
        "--json",
        "--checkpoint",
        f.ckpt.to_str().unwrap(),
        expected[0].to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let single = parse_json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        single[0].1.iter().map(|t| t.1).collect::<Vec<_>>(),
        by1[0].1.iter().map(|t| t.1).collect::<Vec<_>>()
    );

    // A folder without images, and a batch size of zero, are refused by name.
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = meal(&[
        "predict",
        "--checkpoint",
        f.ckpt.to_str().unwrap(),
        empty.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains(empty.to_str().unwrap()) && stderr.contains("no image"),
        "{stderr}"
    );
    let o = meal(&[
        "predict",
        "--batch-size",
        "0",
        "--checkpoint",
        f.ckpt.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--batch-size"));
}
