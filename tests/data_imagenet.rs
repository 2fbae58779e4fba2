//! ImageNet layouts and oddities on the committed sample (scripts/data/make_imagenet_sample.py):
//! a flat `val/` labelled by Kaggle's CSV or a plain labels file, greyscale / CMYK JPEGs and a PNG
//! named .JPEG, the errors of broken layouts, worker-count independence, and `meal train` +
//! `meal eval` end to end with the checkpoint's input settings.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meal::data::transform::decode_image;
use meal::data::{self, DataConfig, Dataset, Interpolation, Loader, LoaderConfig};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagenet-sample")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// A writable copy of the sample.
fn sample_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&sample(), dir.path());
    dir
}

fn config(path: &Path, size: usize) -> DataConfig {
    let mut c = DataConfig::new(path);
    c.image_size = Some(size);
    c
}

fn open_err(c: &DataConfig) -> String {
    match data::open(c) {
        Ok(_) => panic!("{} opened", c.path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn flat_val_with_kaggle_csv_and_plain_labels() {
    let splits = data::open(&config(&sample(), 32)).unwrap();
    assert_eq!(splits.train.len(), 18);
    assert_eq!(splits.test.len(), 6);
    assert_eq!(
        splits.train.class_names(),
        ["n01530575", "n02690373", "n02814533"]
    );
    // The CSV labels val images 1-2 n02690373, 3-4 n02814533, 5-6 n01530575 (sorted by file).
    let labels: Vec<usize> = (0..6).map(|i| splits.test.label(i)).collect();
    assert_eq!(labels, [1, 1, 2, 2, 0, 0]);

    // The same as a plain `<file> <wnid-or-index>` file named by data.val_labels.
    let dir = sample_copy();
    std::fs::remove_file(dir.path().join("LOC_val_solution.csv")).unwrap();
    let msg = open_err(&config(dir.path(), 32));
    assert!(
        msg.contains("val") && msg.contains("data.val_labels"),
        "{msg}"
    );
    let text = "ILSVRC2012_val_00000001.JPEG n02690373\nILSVRC2012_val_00000002.JPEG 1\n\
                ILSVRC2012_val_00000003.JPEG 2\nILSVRC2012_val_00000004.JPEG n02814533\n\
                ILSVRC2012_val_00000005.JPEG 0\nILSVRC2012_val_00000006.JPEG n01530575\n";
    std::fs::write(dir.path().join("labels.txt"), text).unwrap();
    let mut c = config(dir.path(), 32);
    c.val_labels = Some("labels.txt".into());
    let plain = data::open(&c).unwrap();
    assert_eq!(
        (0..6).map(|i| plain.test.label(i)).collect::<Vec<_>>(),
        labels
    );

    // Bad labels files name the file, the record and the problem.
    for (body, needle) in [
        (
            "ILSVRC2012_val_00000001.JPEG n09999999\n",
            "labels.txt: record 1: class \"n09999999\" has no folder in train/",
        ),
        (
            "ILSVRC2012_val_00000001.JPEG 3\n",
            "class index 3 is out of range",
        ),
        (
            "ILSVRC2012_val_00000001.JPEG\n",
            "expected `<file> <wnid-or-index>`",
        ),
        (
            "ILSVRC2012_val_00000001.JPEG 0\nILSVRC2012_val_00000001.JPEG 1\n",
            "record 2: ILSVRC2012_val_00000001.JPEG is labelled again (first on record 1)",
        ),
        (
            "missing.JPEG 0\n",
            "missing.JPEG: listed in the labels file but not found",
        ),
    ] {
        std::fs::write(dir.path().join("labels.txt"), body).unwrap();
        let msg = open_err(&c);
        assert!(msg.contains(needle), "{body:?}: {msg}");
    }
}

#[test]
fn broken_class_folders_are_named() {
    // A val class folder that train/ lacks.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_dir(&sample().join("train"), &root.join("train"));
    copy_dir(&sample().join("train"), &root.join("val"));
    std::fs::create_dir(root.join("val/n00000001")).unwrap();
    let msg = open_err(&config(root, 32));
    assert!(msg.contains("not in train: n00000001"), "{msg}");
    std::fs::remove_dir(root.join("val/n00000001")).unwrap();
    assert!(data::open(&config(root, 32)).is_ok());

    // An empty class folder.
    std::fs::create_dir(root.join("train/n00000002")).unwrap();
    std::fs::create_dir(root.join("val/n00000002")).unwrap();
    let msg = open_err(&config(root, 32));
    assert!(
        msg.contains("n00000002") && msg.contains("class folder holds no .png/.jpg/.jpeg images"),
        "{msg}"
    );

    // A crop fraction outside (0, 1].
    std::fs::remove_dir(root.join("train/n00000002")).unwrap();
    std::fs::remove_dir(root.join("val/n00000002")).unwrap();
    let mut c = config(root, 32);
    c.crop_pct = Some(1.25);
    assert!(open_err(&c).contains("data.crop_pct = 1.25 must lie in (0, 1]"));
}

#[test]
fn greyscale_cmyk_and_misnamed_png_decode_like_pillow() {
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sample().join("pil_rgb.json")).unwrap()).unwrap();
    let mut modes = Vec::new();
    for (name, r) in reference.as_object().unwrap() {
        let want: Vec<u8> = r["rgb"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        let got = decode_image(&sample().join(name)).unwrap().into_raw();
        assert_eq!(got.len(), want.len(), "{name}");
        let mode = r["mode"].as_str().unwrap();
        // Pillow's libjpeg and zune-jpeg round their IDCTs differently: a level or two.
        let diffs: Vec<i32> = got
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as i32 - b as i32).abs())
            .collect();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        let worst = *diffs.iter().max().unwrap();
        let (mean_tol, worst_tol) = if mode == "RGB" { (0.0, 0) } else { (1.5, 12) };
        assert!(
            mean <= mean_tol && worst <= worst_tol,
            "{name} ({mode}): mean |Δ| {mean:.3}, worst {worst}"
        );
        modes.push(mode.to_string());
    }
    modes.sort();
    assert_eq!(modes, ["CMYK", "L", "RGB"]);

    // Content, not the extension, picks the decoder; a corrupt file names itself.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("x.JPEG");
    let mut bytes = std::fs::read(sample().join("photos/imagenet_14_129.JPEG")).unwrap();
    bytes.truncate(200);
    std::fs::write(&bad, &bytes).unwrap();
    let msg = decode_image(&bad).unwrap_err().to_string();
    assert!(msg.contains("x.JPEG: cannot decode image"), "{msg}");
}

#[test]
fn real_photos_decode() {
    let labels = std::fs::read_to_string(sample().join("photos/labels.txt")).unwrap();
    let mut n = 0;
    for line in labels.lines() {
        let name = line.split_whitespace().next().unwrap();
        let img = decode_image(&sample().join("photos").join(name)).unwrap();
        assert!(img.width() >= 100 && img.height() >= 100, "{name}");
        n += 1;
    }
    assert!(n >= 6);
}

fn epoch_batches(ds: Arc<dyn Dataset>, workers: usize, epoch: usize) -> Vec<meal::data::Batch> {
    let loader = Loader::new(
        ds,
        LoaderConfig {
            batch_size: 4,
            shuffle: true,
            augment: true,
            drop_last: false,
            seed: 7,
            num_workers: workers,
            prefetch: 2,
        },
    );
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

#[test]
fn same_images_in_the_same_order_for_any_worker_count() {
    let mut c = config(&sample(), 24);
    c.interpolation = Some(Interpolation::Bicubic);
    let splits = data::open(&c).unwrap();
    let one = epoch_batches(splits.train.clone(), 1, 1);
    let two = epoch_batches(splits.train.clone(), 2, 1);
    let none = epoch_batches(splits.train.clone(), 0, 1);
    assert_eq!(one, two);
    assert_eq!(one, none);
    assert_eq!(one.iter().map(|b| b.len()).sum::<usize>(), 18);
    assert!(one.iter().all(|b| b.images.iter().all(|v| v.is_finite())));
    // Another epoch reshuffles and re-augments.
    let other = epoch_batches(splits.train, 2, 2);
    assert_ne!(one, other);
}

#[test]
fn resumed_training_on_photos_matches_a_straight_run() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "interpolation = \"bicubic\"";
    let straight = dir.path().join("straight");
    common::train_fresh(common::photo_train_table(&sample(), &straight, 2, extra)).unwrap();
    let split = dir.path().join("split");
    common::train_fresh(common::photo_train_table(&sample(), &split, 1, extra)).unwrap();
    let out = common::train_resume(&split, &["epochs=2"]).unwrap();
    assert_eq!(out.epochs_done, 2);
    common::assert_same_state(
        &common::canonical_state(&straight.join("last.ckpt")),
        &common::canonical_state(&split.join("last.ckpt")),
        "last.ckpt of a resumed run on the ImageNet sample",
    );
    common::assert_same_metrics(&straight, &split);
}

#[test]
fn train_and_eval_end_to_end_with_the_checkpoints_input_settings() {
    let data_dir = sample_copy();
    let bad = data_dir.path().join("train/n02814533/n02814533_0.JPEG");
    std::fs::write(&bad, b"\xff\xd8\xff not really a JPEG").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let table = common::photo_train_table(
        data_dir.path(),
        &run,
        1,
        "crop_pct = 0.9\ninterpolation = \"bicubic\"\nskip_corrupt = true",
    );
    common::train_fresh(table).unwrap();
    let metrics = common::metrics(&run);
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0]["skipped_corrupt"], 1, "{}", metrics[0]);
    let ckpt = run.join("best.ckpt");
    let (_, meta, _) = meal::train::model_io::load_model(&ckpt, &meal::backend::device()).unwrap();
    assert_eq!(meta.input_shape, [3, 32, 32]);
    assert_eq!(meta.crop_pct, Some(0.9));
    assert_eq!(meta.interpolation, Interpolation::Bicubic);
    assert_eq!(meta.class_names, ["n01530575", "n02690373", "n02814533"]);
    common::cli(&[
        "eval",
        "--checkpoint",
        &common::s(&ckpt),
        "--data",
        &common::s(&sample()),
    ])
    .unwrap();
    common::cli(&[
        "predict",
        "--checkpoint",
        &common::s(&ckpt),
        &common::s(&sample().join("photos/imagenet_14_129.JPEG")),
    ])
    .unwrap();
}

#[test]
fn corrupt_images_stop_or_are_skipped_and_counted() {
    let dir = sample_copy();
    let bad = dir.path().join("train/n02690373/n02690373_1.JPEG");
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&bad, &bytes).unwrap();
    let loader_of = |skip: bool| {
        let mut c = config(dir.path(), 16);
        c.skip_corrupt = skip;
        let splits = data::open(&c).unwrap();
        Loader::new(
            splits.train,
            LoaderConfig {
                batch_size: 5,
                num_workers: 2,
                ..LoaderConfig::default()
            },
        )
    };
    let strict = loader_of(false);
    let err = strict
        .epoch(0)
        .find_map(|b| b.err())
        .expect("a corrupt image is an error")
        .to_string();
    assert!(
        err.contains("n02690373_1.JPEG: cannot decode image"),
        "{err}"
    );

    let lenient = loader_of(true);
    let batches: Vec<_> = lenient.epoch(0).map(|b| b.unwrap()).collect();
    let kept: usize = batches.iter().map(|b| b.len()).sum();
    let skipped: Vec<&String> = batches.iter().flat_map(|b| &b.skipped).collect();
    assert_eq!((kept, skipped.len()), (17, 1));
    assert!(skipped[0].contains("n02690373_1.JPEG"), "{}", skipped[0]);
}

#[test]
fn webdataset_shards_hold_the_same_samples_as_the_folders() {
    let mut c = config(&sample().join("webdataset"), 24);
    c.format = meal::data::DataFormat::Webdataset;
    let msg = open_err(&c);
    assert!(msg.contains("needs data.train_shards"), "{msg}");
    c.train_shards = Some("train-{000000..000001}.tar".into());
    c.val_shards = Some("val-000000.tar".into());
    let shards = data::open(&c).unwrap();
    let folders = data::open(&config(&sample(), 24)).unwrap();
    assert_eq!((shards.train.len(), shards.test.len()), (18, 6));
    assert_eq!(shards.train.num_classes(), 3);
    // Shards list the training images in the folders' order (class, then file name), so the
    // eval transform gives the same tensors.
    let mut rng = meal::data::sample_rng(0, 0, 0);
    for i in [0, 4, 9, 17] {
        assert_eq!(
            shards.train.get(i, false, &mut rng).unwrap(),
            folders.train.get(i, false, &mut rng).unwrap(),
            "sample {i}"
        );
    }
    // Same order and augmentation for a seed, whatever the workers.
    assert_eq!(
        epoch_batches(shards.train.clone(), 1, 3),
        epoch_batches(shards.train.clone(), 2, 3)
    );
    assert_eq!(
        epoch_batches(shards.train.clone(), 2, 3),
        epoch_batches(folders.train.clone(), 2, 3)
    );

    // A missing shard and a sample without its .cls are named.
    c.train_shards = Some("train-{000000..000002}.tar".into());
    assert!(open_err(&c).contains("train-000002.tar"));
    let dir = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(dir.path().join("t.tar")).unwrap());
    let jpg = std::fs::read(sample().join("val/ILSVRC2012_val_00000001.JPEG")).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(jpg.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "k1.jpg", jpg.as_slice()).unwrap();
    b.finish().unwrap();
    drop(b);
    let mut c = config(dir.path(), 24);
    c.format = meal::data::DataFormat::Webdataset;
    c.train_shards = Some("t.tar".into());
    c.val_shards = Some("t.tar".into());
    let msg = open_err(&c);
    assert!(
        msg.contains("t.tar") && msg.contains("sample \"k1\" has no .cls member"),
        "{msg}"
    );
}
