//! The soft-label store (`meal cache-teachers`, `meal distill --soft-labels`): the format round
//! trip and its reconstruction of top-k rows, distillation steps and a whole epoch from the
//! store against live eval-mode teachers on the same views, and the refusals (corrupt or
//! truncated file, train-mode teachers, intermediate stages, other data, other teachers).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use burn::tensor::{Tensor, TensorData};
use common::*;
use meal::data::{CropFlip, View, sample_rng};
use meal::distill::DistillConfig;
use meal::distill::objective::{self, Discriminators, MealState, TeacherSource};
use meal::distill::soft_labels::{CacheOptions, SoftLabelStore, cache_teachers};
use meal::distill::teachers::load_teachers;
use meal::distill::trainer::resolve_stages;
use meal::train::tensors::batch_tensors;

/// The seed of `distill_table`: with it, view e of a store is what a live run draws in epoch e.
const SEED: u64 = 11;

/// Two tiny teachers (resnet8, one epoch on 256 images each, different seeds).
fn teachers() -> &'static [PathBuf; 2] {
    static T: OnceLock<[PathBuf; 2]> = OnceLock::new();
    T.get_or_init(|| {
        let dir = scratch("soft_labels-teachers");
        [5, 6].map(|seed| {
            let run = dir.join(format!("t{seed}"));
            train_fresh(train_table("resnet8", &run, 1, seed)).unwrap();
            run.join("best.ckpt")
        })
    })
}

fn teacher_refs() -> Vec<&'static Path> {
    teachers().iter().map(PathBuf::as_path).collect()
}

/// A distill config on the teachers' data; `meal` is the body of its [meal] table.
fn config(run_dir: &Path, meal: &str, soft_labels: Option<&Path>) -> (DistillConfig, toml::Table) {
    let mut table = distill_table("resnet8", &teacher_refs(), run_dir, 1, meal);
    if let Some(p) = soft_labels {
        table.insert("soft_labels".into(), p.display().to_string().into());
    }
    let c = meal::config::from_table(table.clone(), "distill config").unwrap();
    (c, table)
}

const V2: &str = "teacher_bn = \"eval\"\ncombine = \"mean-softmax\"";

fn build(out: &Path, views: usize, top_k: Option<usize>) -> SoftLabelStore {
    meal::progress::set_quiet(true);
    let (c, _) = config(Path::new("unused"), V2, None);
    let opts = CacheOptions {
        views,
        top_k,
        seed: SEED,
        batch_size: 100,
        num_workers: 1,
    };
    cache_teachers(&c.teachers, &c.data, &opts, out).unwrap();
    SoftLabelStore::open(out).unwrap()
}

/// The exact (k = classes) store with 2 views, shared by the tests.
fn store_file() -> &'static PathBuf {
    static S: OnceLock<PathBuf> = OnceLock::new();
    S.get_or_init(|| {
        let p = scratch("soft_labels-store").join("exact.bin");
        build(&p, 2, None);
        p
    })
}

fn open_error(bytes: &[u8], name: &str) -> (PathBuf, String) {
    let dir = tempfile::tempdir().unwrap().keep();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let e = SoftLabelStore::open(&p).unwrap_err().to_string();
    (p, e)
}

#[test]
fn format_round_trip() {
    let store = SoftLabelStore::open(store_file()).unwrap();
    let h = &store.header;
    // A class-balanced subset of 256 takes ceil(256 / 10) = 26 images of each class.
    assert_eq!((h.images, h.views, h.classes, h.top_k), (260, 2, 10, 10));
    assert_eq!((h.seed, h.teachers.len(), h.dataset.images), (SEED, 2, 260));
    assert_eq!(h.teachers[0].arch, "resnet8");
    assert_eq!(h.teachers[1].file, teachers()[1]);
    assert_eq!(h.report.teachers.len(), 2);
    // The recorded views are the loader's own draws for (seed, epoch = view, image).
    for v in 0..2 {
        for i in [0, 1, 100, 255] {
            assert_eq!(
                store.view(i, v),
                View::Padded(CropFlip::draw(&mut sample_rng(SEED, v, i)))
            );
        }
    }
    assert!((0..260).any(|i| store.view(i, 0) != store.view(i, 1)));
    let rows = store.logits(&[3, 200], 1, 0);
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|v| v.is_finite()));

    // Top-3 of the same teachers and views: the 3 largest logits exactly, the others share
    // the remaining probability mass.
    let dir = tempfile::tempdir().unwrap();
    let small = build(&dir.path().join("top3.bin"), 2, Some(3));
    assert_eq!(small.header.top_k, 3);
    let softmax = |r: &[f32]| {
        let s: f64 = r.iter().map(|&v| (v as f64).exp()).sum();
        r.iter().map(|&v| (v as f64).exp() / s).collect::<Vec<_>>()
    };
    for i in [0, 77, 255] {
        let (full, top) = (store.logits(&[i], 1, 1), small.logits(&[i], 1, 1));
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&a, &b| full[b].total_cmp(&full[a]));
        let (p, q) = (softmax(&full), softmax(&top));
        for &c in &order[..3] {
            assert_eq!(top[c], full[c], "image {i} class {c}");
        }
        let rest: f64 = order[3..].iter().map(|&c| p[c]).sum();
        for &c in &order[3..] {
            assert!((q[c] - rest / 7.0).abs() < 1e-5, "image {i} class {c}");
        }
    }
}

/// The key equivalence: with k = classes, the stored logits are the live eval-mode teachers'
/// on the same crops and flips, and distillation steps from the store give the same losses
/// (to float tolerance) as the same steps with the live teachers.
#[test]
fn steps_from_the_store_match_live_teachers() {
    let store = Arc::new(SoftLabelStore::open(store_file()).unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let (c, _) = config(&tmp.path().join("run"), V2, None);
    c.validate().unwrap();
    let splits = meal::data::open(&c.data).unwrap();
    let (teachers, _) = load_teachers(&c, splits.train.as_ref()).unwrap();
    let stages = resolve_stages(&c, &teachers, 10).unwrap();
    let device = meal::backend::autodiff_device();
    let (live_loader, _) = meal::train::run::loaders(
        splits.train.clone(),
        splits.test.clone(),
        c.batch_size,
        c.eval_batch_size,
        c.seed,
        1,
    );
    let (stored_loader, _) = meal::train::run::loaders(
        splits.train.clone(),
        splits.test.clone(),
        c.batch_size,
        c.eval_batch_size,
        c.seed,
        1,
    );
    let s = store.clone();
    let stored_loader =
        stored_loader.with_views(Arc::new(move |e, i| s.view(i, s.view_of_epoch(e))));

    let student = meal::models::build(&c.student, 10, &device).unwrap();
    let fresh = || MealState {
        student: student.clone(),
        discs: Discriminators::new(&stages, &c.meal, &device).unwrap(),
        opt_student: c.optimizer.init(),
        opt_discs: c.optimizer.init(),
    };
    // The discriminators are drawn at random: both runs start from the same ones.
    let mut live = fresh();
    let mut cached = MealState {
        discs: live.discs.clone(),
        ..fresh()
    };
    let chosen = objective::teacher_weights(c.meal.combine, &[1.0, 1.0], |_| 0);
    // Epoch 1 uses view 1: the second view is served, not only the first.
    for epoch in [0, 1] {
        let live_batches = live_loader.epoch(epoch).take(2);
        let stored_batches = stored_loader.epoch(epoch).take(2);
        for (a, b) in live_batches.zip(stored_batches) {
            let (a, b) = (a.unwrap(), b.unwrap());
            // Recorded views rebuild exactly the images the live loader draws.
            assert_eq!(a, b, "epoch {epoch}");
            let (x, y) = batch_tensors(&a, &device);
            let view = store.view_of_epoch(epoch);
            let logits: Vec<Option<Tensor<2>>> = (0..2)
                .map(|t| {
                    let data = TensorData::new(store.logits(&a.indices, view, t), [a.len(), 10]);
                    Some(Tensor::from_data(data, &device))
                })
                .collect();
            for (t, teacher) in teachers.iter().enumerate() {
                let want = teacher.forward(&x).logits.try_into_vec_as::<f32>().unwrap();
                let got = logits[t].clone().unwrap().try_into_vec_as::<f32>().unwrap();
                for (u, v) in want.iter().zip(&got) {
                    assert!(
                        (u - v).abs() <= 1e-4 * (1.0 + u.abs()),
                        "teacher {t}: {u} vs {v}"
                    );
                }
            }
            let (next, sa, _) = objective::step(
                live,
                &teachers,
                &chosen,
                &stages,
                &c.meal,
                x.clone(),
                y.clone(),
                0.05,
                1e-3,
            )
            .unwrap();
            live = next;
            let (next, sb, _) = objective::step_from(
                cached,
                TeacherSource::Logits(&logits),
                &chosen,
                &stages,
                &c.meal,
                x,
                y,
                0.05,
                1e-3,
            )
            .unwrap();
            cached = next;
            for (what, u, v) in [
                ("similarity", sa.sim, sb.sim),
                ("discriminator", sa.adv, sb.adv),
            ] {
                assert!(
                    (u - v).abs() <= 1e-5 * (1.0 + u.abs()),
                    "epoch {epoch} {what}: live {u} vs store {v}"
                );
            }
        }
    }
}

/// A whole `meal distill` epoch from the store (no teacher loaded) logs the same losses and
/// accuracy as the live run.
#[test]
fn a_distill_epoch_from_the_store_matches_the_live_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, live) = config(&tmp.path().join("live"), V2, None);
    let (_, mut cached) = config(&tmp.path().join("store"), V2, Some(store_file()));
    // The store names its teachers: the config need not.
    cached.remove("teachers");
    distill_fresh(live).unwrap();
    distill_fresh(cached).unwrap();
    let (a, b) = (
        metrics(&tmp.path().join("live")),
        metrics(&tmp.path().join("store")),
    );
    for key in ["sim_loss", "d_loss", "train_acc", "test_top1"] {
        let (u, v) = (a[0][key].as_f64().unwrap(), b[0][key].as_f64().unwrap());
        assert!((u - v).abs() <= 1e-3 * (1.0 + u.abs()), "{key}: {u} vs {v}");
    }
    assert!(tmp.path().join("store/teachers.json").exists());
}

/// A version 1 store (a separate table of padded views, no `view_kind`), rebuilt here from the
/// version 2 store's own cells: it opens and serves the same views and logits.
#[test]
fn a_version_1_store_still_loads() {
    let v2 = std::fs::read(store_file()).unwrap();
    let store = SoftLabelStore::open(store_file()).unwrap();
    assert_eq!(store.version, 2);
    let h = &store.header;
    let header_len = u32::from_le_bytes(v2[12..16].try_into().unwrap()) as usize;
    let mut json: serde_json::Value = serde_json::from_slice(&v2[16..16 + header_len]).unwrap();
    assert_eq!(json["view_kind"], "padded");
    json.as_object_mut().unwrap().remove("view_kind");
    let json = serde_json::to_vec(&json).unwrap();
    let (cells, record) = (h.images * h.views, h.teachers.len() * (6 * h.top_k + 4));
    let body = &v2[16 + header_len..v2.len() - 4];
    assert_eq!(body.len(), cells * (3 + record));
    let mut v1 = b"MEALSOFT".to_vec();
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&(json.len() as u32).to_le_bytes());
    v1.extend_from_slice(&json);
    for cell in body.chunks(3 + record) {
        v1.extend_from_slice(&cell[..3]);
    }
    for cell in body.chunks(3 + record) {
        v1.extend_from_slice(&cell[3..]);
    }
    let mut crc = flate2::Crc::new();
    crc.update(&v1);
    v1.extend_from_slice(&crc.sum().to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v1.bin");
    std::fs::write(&p, &v1).unwrap();
    let old = SoftLabelStore::open(&p).unwrap();
    assert_eq!(old.version, 1);
    for v in 0..h.views {
        for i in [0, 5, 259] {
            assert_eq!(old.view(i, v), store.view(i, v));
            for t in 0..2 {
                assert_eq!(old.logits(&[i], v, t), store.logits(&[i], v, t));
            }
        }
    }
    // A version this meal does not know is named.
    v1[8] = 7;
    let (p, e) = open_error(&v1, "v7.bin");
    assert_mentions(
        &e,
        &[&p.display().to_string(), "version 7", "versions 1 and 2"],
    );
}

#[test]
fn a_corrupt_byte_fails_the_checksum() {
    let mut bytes = std::fs::read(store_file()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let (p, e) = open_error(&bytes, "corrupt.bin");
    assert_mentions(
        &e,
        &[
            &p.display().to_string(),
            "checksum",
            "corrupt",
            "cache-teachers",
        ],
    );
}

#[test]
fn a_truncated_file_is_named() {
    let bytes = std::fs::read(store_file()).unwrap();
    let (p, e) = open_error(&bytes[..bytes.len() - 100], "short.bin");
    assert_mentions(&e, &[&p.display().to_string(), "truncated"]);
    let (_, e) = open_error(&bytes[..10], "tiny.bin");
    assert_mentions(&e, &["too short"]);
    let (_, e) = open_error(
        b"PK\x03\x04 not a store at all, but long enough",
        "other.bin",
    );
    assert_mentions(&e, &["not a meal soft-label store"]);
}

#[test]
fn train_mode_teachers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let meal = "teacher_bn = \"train\"\ncombine = \"mean-softmax\"";
    let (c, table) = config(&tmp.path().join("run"), meal, Some(store_file()));
    let e = c.validate().unwrap_err().to_string();
    assert_mentions(&e, &["teacher_bn", "batch", "\"eval\""]);
    let e = message(distill_fresh(table));
    assert_mentions(&e, &["teacher_bn"]);
    assert!(
        !tmp.path().join("run").exists(),
        "refused before the run folder"
    );
}

#[test]
fn intermediate_stages_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let meal = format!("{V2}\nstages = [{{ index = -1 }}, {{ index = 1, out_dim = 16 }}]");
    let (c, _) = config(&tmp.path().join("run"), &meal, Some(store_file()));
    let e = c.validate().unwrap_err().to_string();
    assert_mentions(&e, &["meal.stages[1]", "intermediate", "logits"]);
}

#[test]
fn other_data_or_teachers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, mut table) = config(&tmp.path().join("a"), V2, Some(store_file()));
    meal::config::set_path(&mut table, "data.train_subset", 128.into()).unwrap();
    let e = message(distill_fresh(table));
    assert_mentions(
        &e,
        &[
            &store_file().display().to_string(),
            "another training set",
            "260",
            "130",
        ],
    );

    // Same count, same labels, other pixels.
    let store = SoftLabelStore::open(store_file()).unwrap();
    let c = config(&tmp.path().join("b"), V2, None).0;
    let train = meal::data::open(&c.data).unwrap().train;
    let labels: Vec<usize> = (0..train.len()).map(|i| train.label(i)).collect();
    let images: Vec<u8> = (0..train.len() * 3072)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let other = meal::data::MemoryDataset::new(
        "other pixels",
        [3, 32, 32],
        images,
        labels,
        train.class_names(),
        train.normalization(),
    )
    .unwrap();
    store.check_dataset(train.as_ref()).unwrap();
    let e = store.check_dataset(&other).unwrap_err().to_string();
    assert_mentions(&e, &["another training set", "pixels", "other pixels"]);

    // The teachers in the other order: their files differ from the store's teacher 0.
    let (_, mut table) = config(&tmp.path().join("c"), V2, Some(store_file()));
    let swapped: Vec<toml::Value> = teachers()
        .iter()
        .rev()
        .map(|p| {
            let mut t = toml::Table::new();
            t.insert("checkpoint".into(), p.display().to_string().into());
            toml::Value::Table(t)
        })
        .collect();
    table.insert("teachers".into(), swapped.into());
    let e = message(distill_fresh(table));
    assert_mentions(&e, &["teachers[0]", "files differ"]);
}

/// The command line: `meal cache-teachers` writes a store, `meal distill --soft-labels` takes
/// the store's teachers in place of the recipe's and refuses V1's train-mode teachers.
#[test]
fn command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cli.bin");
    let meal = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_meal"))
            .args(args)
            .output()
            .unwrap()
    };
    let [a, b] = teachers().clone().map(|p| p.display().to_string());
    let data = mini().display().to_string();
    let o = meal(&[
        "-q",
        "cache-teachers",
        "--teacher",
        &a,
        &b,
        "--data",
        &data,
        "--train-subset",
        "256",
        "--views",
        "1",
        "--top-k",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let store = SoftLabelStore::open(&out).unwrap();
    assert_eq!((store.header.views, store.header.top_k), (1, 4));

    let o = meal(&[
        "distill",
        "--recipe",
        "quickstart",
        "--soft-labels",
        out.to_str().unwrap(),
        "--data",
        &data,
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_mentions(&err, &["teacher_bn", "eval"]);
}
