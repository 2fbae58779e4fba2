//! The teachers shipped in `data/teachers/` are what `data/teachers/teachers.toml` (and the
//! README beside it) says they are: every `.ckpt` is listed and every listed file is there, with
//! its SHA-256, architecture and class count; each one's accuracy on the embedded
//! `data/cifar10-mini` test images is the recorded number; on the full CIFAR-10 test set (when
//! `../shared` is beside the repository) top-1 and top-5 are the numbers its training run
//! logged; and all of them together stay within the 15 MB the repository allows.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::sha256;
use meal::data::loader::{Loader, LoaderConfig};
use meal::data::{DataConfig, open};
use meal::train::evaluate::evaluate;
use meal::train::model_io::load_model;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Listing {
    teacher: Vec<Teacher>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // provenance fields are for readers; the test checks the measurable ones
struct Teacher {
    file: String,
    arch: String,
    sha256: String,
    mini_top1: f64,
    mini_top5: f64,
    cifar10_top1: f64,
    cifar10_top5: f64,
    command: String,
    seed: u64,
    commit: String,
    epochs: usize,
    wall_seconds: f64,
    machine: String,
    /// Training images held out (`data.train_holdout`); 5000 = the embedded ones never seen.
    #[serde(default)]
    train_holdout: usize,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dir() -> PathBuf {
    root().join("data/teachers")
}

fn listing() -> Listing {
    let p = dir().join("teachers.toml");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (top-1, top-5) of each teacher, in listing order, on the test split of `data`.
fn accuracies(data: &Path, teachers: &[Teacher]) -> Vec<(f64, f64)> {
    let device = meal::backend::device();
    let splits = open(&DataConfig::new(data)).unwrap();
    let loader = Loader::new(splits.test.clone(), LoaderConfig::eval(200));
    let nets: Vec<_> = teachers
        .iter()
        .map(|t| load_model(&dir().join(&t.file), &device).unwrap().0)
        .collect();
    let refs: Vec<_> = nets.iter().collect();
    let (each, _) = evaluate(&refs, &loader, &device).unwrap();
    each.iter().map(|a| (a.top1, a.top5)).collect()
}

#[test]
fn every_shipped_teacher_is_listed_with_its_checksum_and_architecture() {
    let list = listing();
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ckpt"))
        .collect();
    let listed: BTreeSet<String> = list.teacher.iter().map(|t| t.file.clone()).collect();
    assert_eq!(
        on_disk, listed,
        "data/teachers/*.ckpt against teachers.toml"
    );
    let archs: BTreeSet<&str> = list.teacher.iter().map(|t| t.arch.as_str()).collect();
    assert_eq!(
        archs.len(),
        list.teacher.len(),
        "one teacher per architecture"
    );
    let mut total = 0;
    for t in &list.teacher {
        let path = dir().join(&t.file);
        total += std::fs::metadata(&path).unwrap().len();
        assert_eq!(sha256(&path), t.sha256, "{}: SHA-256", t.file);
        let (_, meta, _) = load_model(&path, &meal::backend::device()).unwrap();
        assert_eq!(meta.arch, t.arch, "{}", t.file);
        assert_eq!(meta.num_classes, 10, "{}", t.file);
        assert!(
            t.cifar10_top1 > 50.0 && t.cifar10_top1 <= t.cifar10_top5,
            "{}: implausible recorded accuracy",
            t.file
        );
    }
    assert!(total <= 15_000_000, "shipped teachers take {total} bytes");
}

#[test]
fn shipped_teachers_score_the_recorded_accuracy_on_the_embedded_test_images() {
    let list = listing();
    let got = accuracies(&root().join("data/cifar10-mini"), &list.teacher);
    for (t, (top1, top5)) in list.teacher.iter().zip(got) {
        // Eval mode is deterministic; 0.05 points leaves room for the last printed digit.
        assert!(
            (top1 - t.mini_top1).abs() < 0.05 && (top5 - t.mini_top5).abs() < 0.05,
            "{}: {top1:.2}% / {top5:.2}% on data/cifar10-mini, recorded {:.2}% / {:.2}%",
            t.file,
            t.mini_top1,
            t.mini_top5
        );
    }
}

#[test]
fn shipped_teachers_score_the_recorded_accuracy_on_the_full_test_set() {
    let data = root().join("../shared/data/cifar-10-batches-bin");
    if !data.join("test_batch.bin").is_file() {
        eprintln!("skipping: no full CIFAR-10 at {}", data.display());
        return;
    }
    let list = listing();
    let got = accuracies(&data, &list.teacher);
    for (t, (top1, top5)) in list.teacher.iter().zip(got) {
        assert!(
            (top1 - t.cifar10_top1).abs() < 0.05 && (top5 - t.cifar10_top5).abs() < 0.05,
            "{}: {top1:.2}% / {top5:.2}% on the CIFAR-10 test set, recorded {:.2}% / {:.2}%",
            t.file,
            t.cifar10_top1,
            t.cifar10_top5
        );
    }
}
