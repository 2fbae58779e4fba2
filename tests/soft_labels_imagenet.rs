//! The soft-label store on ImageNet-layout data (the committed sample, folders and WebDataset
//! shards): each image's RandomResizedCrop box and flip are recorded as the live loader draws
//! them, replayed to the pixel, and a one-view store trains the same student as live teachers.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use common::*;
use meal::data::transform::decode_image;
use meal::data::{self, CropBox, DataConfig, Dataset, Loader, LoaderConfig, View, sample_rng};
use meal::distill::soft_labels::{CacheOptions, SoftLabelStore, cache_teachers};

const SEED: u64 = 11;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagenet-sample")
}

fn folder_data() -> DataConfig {
    let mut c = DataConfig::new(sample());
    c.image_size = Some(32);
    c.interpolation = Some(data::Interpolation::Bicubic);
    c
}

fn shard_data() -> DataConfig {
    let mut c = folder_data();
    c.path = sample().join("webdataset");
    c.format = data::DataFormat::Webdataset;
    c.train_shards = Some("train-{000000..000001}.tar".into());
    c.val_shards = Some("val-000000.tar".into());
    c
}

/// A `[data]` table for `c`.
fn data_toml(c: &DataConfig) -> String {
    toml::to_string(c).unwrap()
}

/// Two resnet8 teachers, one epoch each on the sample at 32 pixels.
fn teachers() -> &'static [PathBuf; 2] {
    static T: OnceLock<[PathBuf; 2]> = OnceLock::new();
    T.get_or_init(|| {
        let dir = scratch("soft_labels_imagenet-teachers");
        [5, 6].map(|seed| {
            let run = dir.join(format!("t{seed}"));
            let text = format!(
                r#"
arch = "resnet8"
epochs = 1
batch_size = 6
eval_batch_size = 6
lr = 0.05
seed = {seed}
num_workers = 1
run_dir = {run:?}
device = "{device}"

[data]
{data}
"#,
                run = s(&run),
                data = data_toml(&folder_data()),
                device = meal::selftest::test_device_name(),
            );
            train_fresh(text.parse().unwrap()).unwrap();
            run.join("best.ckpt")
        })
    })
}

/// A one-epoch `meal distill` table (V2 settings) on `data`, from the live teachers or a store.
fn distill_table(run: &Path, data: &DataConfig, store: Option<&Path>) -> toml::Table {
    let source = match store {
        Some(p) => format!("soft_labels = {:?}", s(p)),
        None => {
            let [a, b] = teachers().clone().map(|p| s(&p));
            format!("teachers = [{{ checkpoint = {a:?} }}, {{ checkpoint = {b:?} }}]")
        }
    };
    format!(
        r#"
student = "resnet8"
{source}
epochs = 1
batch_size = 6
eval_batch_size = 6
lr = 0.05
seed = {SEED}
num_workers = 1
run_dir = {run:?}
device = "{device}"

[data]
{data}

[meal]
teacher_bn = "eval"
combine = "mean-softmax"
# 3 classes: the discriminator's halving layers need a narrower step.
d_width_divisor = 1
"#,
        run = s(run),
        data = data_toml(data),
        device = meal::selftest::test_device_name(),
    )
    .parse()
    .unwrap()
}

fn cache(data: &DataConfig, views: usize, out: &Path) -> SoftLabelStore {
    meal::progress::set_quiet(true);
    let specs: Vec<_> = teachers()
        .iter()
        .map(meal::distill::config::TeacherSpec::checkpoint)
        .collect();
    let opts = CacheOptions {
        views,
        top_k: None,
        seed: SEED,
        batch_size: 5,
        num_workers: 2,
    };
    cache_teachers(&specs, data, &opts, out).unwrap();
    SoftLabelStore::open(out).unwrap()
}

/// The one-view store of the folder sample, shared by the tests.
fn store_file() -> &'static PathBuf {
    static S: OnceLock<PathBuf> = OnceLock::new();
    S.get_or_init(|| {
        let p = scratch("soft_labels_imagenet-store").join("one-view.bin");
        cache(&folder_data(), 1, &p);
        p
    })
}

fn train_loader(train: Arc<dyn Dataset>) -> Loader {
    Loader::new(
        train,
        LoaderConfig {
            batch_size: 4,
            shuffle: true,
            augment: true,
            drop_last: false,
            seed: SEED,
            num_workers: 2,
            prefetch: 2,
        },
    )
}

#[test]
fn the_store_records_the_live_loaders_boxes_and_replays_their_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let store = cache(&folder_data(), 2, &dir.path().join("two-views.bin"));
    let h = &store.header;
    assert_eq!((h.images, h.views, h.classes, h.top_k), (18, 2, 3, 3));
    assert_eq!(h.view_kind, data::ViewKind::Box);
    let train = data::open(&folder_data()).unwrap().train;
    let folder =
        meal::data::FolderDataset::open(&sample(), "train", &train.class_names(), 32).unwrap();
    let mut flips = 0;
    for v in 0..2 {
        for i in 0..18 {
            // The box torchvision's get_params draws for this image's size from the live
            // loader's RNG of (seed, epoch v, image i).
            let img = decode_image(&folder.files()[i]).unwrap();
            let (ih, iw) = (img.height() as usize, img.width() as usize);
            let want = CropBox::draw(ih, iw, &mut sample_rng(SEED, v, i));
            assert_eq!(store.view(i, v), View::Box(want), "view {v} image {i}");
            assert_eq!(
                (want.image_height, want.image_width),
                (ih as u32, iw as u32)
            );
            flips += want.flip as usize;
        }
    }
    assert!(flips > 0 && flips < 36, "{flips} flips of 36");
    assert!((0..18).any(|i| store.view(i, 0) != store.view(i, 1)));

    // Epochs 0 and 1 from the recorded views are the live loader's batches, pixel for pixel.
    let live = train_loader(train.clone());
    let s = Arc::new(store);
    let replay = {
        let s = s.clone();
        train_loader(train.clone()).with_views(Arc::new(move |e, i| s.view(i, s.view_of_epoch(e))))
    };
    for epoch in [0, 1] {
        let a: Vec<_> = live.epoch(epoch).map(Result::unwrap).collect();
        let b: Vec<_> = replay.epoch(epoch).map(Result::unwrap).collect();
        assert_eq!(a, b, "epoch {epoch}");
    }
    // A recording loader reports the views the store holds.
    let recording = train_loader(train).recording_views();
    for batch in recording.epoch(1) {
        let batch = batch.unwrap();
        for (j, &i) in batch.indices.iter().enumerate() {
            assert_eq!(batch.views[j], s.view(i, 1));
        }
    }

    // WebDataset shards list the same images in the same order: the same boxes.
    let shards = cache(&shard_data(), 2, &dir.path().join("shards.bin"));
    for v in 0..2 {
        for i in 0..18 {
            assert_eq!(
                shards.view(i, v),
                s.view(i, v),
                "shards: view {v} image {i}"
            );
        }
    }
    assert_eq!(shards.logits(&[0, 17], 1, 1), s.logits(&[0, 17], 1, 1));
}

/// One epoch of `meal distill --soft-labels` from a one-view store trains the student the live
/// teachers train, with the same seed: every weight within 1e-5 of its tensor's largest value,
/// the logged losses and accuracies within 1e-5.
#[test]
fn a_distill_epoch_from_the_store_gives_the_live_runs_student() {
    let tmp = tempfile::tempdir().unwrap();
    let (live, cached) = (tmp.path().join("live"), tmp.path().join("store"));
    distill_fresh(distill_table(&live, &folder_data(), None)).unwrap();
    distill_fresh(distill_table(&cached, &folder_data(), Some(store_file()))).unwrap();
    let (a, b) = (
        canonical_state(&live.join("last.ckpt")),
        canonical_state(&cached.join("last.ckpt")),
    );
    let (ma, mb) = (metrics(&live), metrics(&cached));
    for key in ["sim_loss", "d_loss", "train_acc", "test_top1"] {
        let (u, v) = (ma[0][key].as_f64().unwrap(), mb[0][key].as_f64().unwrap());
        assert!((u - v).abs() <= 1e-5 * (1.0 + u.abs()), "{key}: {u} vs {v}");
    }
    let model = |m: &std::collections::BTreeMap<String, Vec<u8>>| {
        m.iter()
            .filter(|(k, _)| k.starts_with("model/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (a, b) = (model(&a), model(&b));
    assert!(!a.is_empty());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    // A value is "<dtype><shape>|" and the tensor's bytes.
    let floats = |v: &[u8]| -> Vec<f32> {
        let at = v.iter().position(|&c| c == b'|').unwrap() + 1;
        assert!(
            v.starts_with(b"F32"),
            "{:?}",
            String::from_utf8_lossy(&v[..at])
        );
        v[at..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut worst = (0f32, String::new());
    for (k, va) in &a {
        let (x, y) = (floats(va), floats(&b[k]));
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let d = x
            .iter()
            .zip(&y)
            .fold(0f32, |m, (u, v)| m.max((u - v).abs()))
            / scale;
        if d > worst.0 {
            worst = (d, k.clone());
        }
    }
    // Not bit for bit: the store's logits come from batches of 5 in file order, the live
    // teachers' from the run's shuffled batches of 6, and the kernels' sums differ in their
    // last bits (1.4e-6 of a tensor's largest value on the 2-core AVX2 machine).
    assert!(
        worst.0 <= 1e-5,
        "{}: differs by {} of its largest value",
        worst.1,
        worst.0
    );
}

#[test]
fn other_data_or_another_kind_of_store_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Another split of the same folder: a class-balanced subset.
    let mut subset = folder_data();
    subset.train_subset = Some(9);
    let e = message(distill_fresh(distill_table(
        &tmp.path().join("a"),
        &subset,
        Some(store_file()),
    )));
    assert_mentions(&e, &[&s(store_file()), "another training set", "18", "9"]);
    // Another input size: other pixels.
    let mut bigger = folder_data();
    bigger.image_size = Some(40);
    let e = message(distill_fresh(distill_table(
        &tmp.path().join("b"),
        &bigger,
        Some(store_file()),
    )));
    assert_mentions(&e, &["another training set", "pixels"]);
    // A box replayed on another image, or on a 32x32 dataset; a padded view on photos.
    let store = SoftLabelStore::open(store_file()).unwrap();
    let train = data::open(&folder_data()).unwrap().train;
    let other = (0..18)
        .find(|&i| {
            let (View::Box(a), View::Box(b)) = (store.view(0, 0), store.view(i, 0)) else {
                unreachable!()
            };
            (a.image_height, a.image_width) != (b.image_height, b.image_width)
        })
        .expect("the sample has images of several sizes");
    let e = train
        .get_view(other, store.view(0, 0))
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["recorded crop was drawn on", "changed"]);
    let cifar = data::open(&{
        let mut c = DataConfig::new(mini());
        c.train_subset = Some(10);
        c
    })
    .unwrap()
    .train;
    let e = cifar.get_view(0, store.view(0, 0)).unwrap_err().to_string();
    assert_mentions(&e, &["padded crop", "RandomResizedCrop box"]);
    let padded = View::Padded(meal::data::CropFlip::default());
    let e = train.get_view(0, padded).unwrap_err().to_string();
    assert_mentions(
        &e,
        &["image folder", "RandomResizedCrop box", "padded crop"],
    );

    // data.skip_corrupt would leave holes in the store.
    let mut skipping = folder_data();
    skipping.skip_corrupt = true;
    let specs: Vec<_> = teachers()
        .iter()
        .map(meal::distill::config::TeacherSpec::checkpoint)
        .collect();
    let opts = CacheOptions {
        views: 1,
        top_k: None,
        seed: SEED,
        batch_size: 5,
        num_workers: 1,
    };
    let out = tmp.path().join("skip.bin");
    let e = cache_teachers(&specs, &skipping, &opts, &out)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["skip_corrupt", "every training image"]);
    assert!(!out.exists());
}

/// `meal cache-teachers --config` takes a distill config's teachers and [data] (here photos at
/// 32 pixels from the sample) and records the same boxes as the library call.
#[test]
fn the_command_line_caches_photos_from_a_distill_config() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("distill.toml");
    let table = distill_table(&tmp.path().join("run"), &folder_data(), None);
    std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();
    let out = tmp.path().join("cli.bin");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_meal"))
        .args([
            "-q",
            "cache-teachers",
            "--config",
            &s(&config),
            "--views",
            "1",
        ])
        .args(["--out", &s(&out)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (cli, lib) = (
        SoftLabelStore::open(&out).unwrap(),
        SoftLabelStore::open(store_file()).unwrap(),
    );
    assert_eq!(cli.header.seed, SEED, "the config's seed");
    assert_eq!(cli.header.view_kind, data::ViewKind::Box);
    for i in 0..18 {
        assert_eq!(cli.view(i, 0), lib.view(i, 0), "image {i}");
        for t in 0..2 {
            for (u, v) in cli.logits(&[i], 0, t).iter().zip(lib.logits(&[i], 0, t)) {
                assert!(
                    (u - v).abs() <= 1e-5 * (1.0 + v.abs()),
                    "image {i}: {u} vs {v}"
                );
            }
        }
    }
}
