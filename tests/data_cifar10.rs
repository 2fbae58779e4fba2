//! The embedded `data/cifar10-mini` set and, when present beside the repository, the complete
//! real CIFAR-10 at `../shared/data/cifar-10-batches-bin`.

mod common;

use std::path::PathBuf;

use common::sha256;
use meal::data::{DataConfig, DataFormat, Dataset, Normalization, open};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mini() -> PathBuf {
    root().join("data/cifar10-mini")
}

fn shared() -> Option<PathBuf> {
    let p = root().join("../shared/data/cifar-10-batches-bin");
    if p.join("test_batch.bin").is_file() {
        Some(p)
    } else {
        eprintln!(
            "skipping: the full CIFAR-10 is not at {} (expected ../shared beside the repo)",
            p.display()
        );
        None
    }
}

fn class_counts(ds: &dyn Dataset) -> Vec<usize> {
    let mut c = vec![0; ds.num_classes()];
    for i in 0..ds.len() {
        c[ds.label(i)] += 1;
    }
    c
}

const RECORD: usize = 3073;

#[test]
fn mini_files_have_the_documented_checksums() {
    let want = [
        (
            "data_batch_1.bin",
            "bf8e2e6b9e381140badf8be7d1755e1397c2141221aeec58a41af45b5ef906a7",
        ),
        (
            "test_batch.bin",
            "2874326af7bc2185faa47540a6da15a077e5b66659f8e479abb9ab628170fa86",
        ),
        (
            "batches.meta.txt",
            "558e74b5e208382e186da55784b4bac2cd52e558448e1b5800990fdb28ed8033",
        ),
    ];
    let readme = std::fs::read_to_string(mini().join("README.md")).unwrap();
    for (file, hash) in want {
        assert_eq!(sha256(&mini().join(file)), hash, "{file}");
        assert!(readme.contains(hash), "README lacks the checksum of {file}");
    }
}

#[test]
fn mini_opens_with_auto_detection_and_is_balanced() {
    let s = open(&DataConfig::new(mini())).unwrap();
    assert_eq!(s.train.len(), 5000);
    assert_eq!(s.test.len(), 1000);
    assert_eq!(class_counts(s.train.as_ref()), vec![500; 10]);
    assert_eq!(class_counts(s.test.as_ref()), vec![100; 10]);
    assert_eq!(s.train.class_names()[0], "airplane");
    assert_eq!(s.train.class_names()[9], "truck");
    assert_eq!(s.train.normalization(), Normalization::CIFAR10);
    assert!(
        s.train
            .describe()
            .starts_with("CIFAR-10 binary, train split, 5000 images, "),
        "{}",
        s.train.describe()
    );
    // The first test images are the first test images of CIFAR-10 (every class is still short
    // of 100 there): labels 3 8 8 0 6 6 1 6 3 1 ...
    let first: Vec<usize> = (0..20).map(|i| s.test.label(i)).collect();
    assert_eq!(
        first,
        [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    );

    // Class-balanced subsets: the first ceil(n/10) of each class, in file order.
    let mut cfg = DataConfig::new(mini());
    cfg.format = DataFormat::Cifar10Bin;
    cfg.train_subset = Some(1000);
    cfg.test_subset = Some(95);
    let sub = open(&cfg).unwrap();
    assert_eq!(class_counts(sub.train.as_ref()), vec![100; 10]);
    assert_eq!(class_counts(sub.test.as_ref()), vec![10; 10]);
    assert!(
        sub.train
            .describe()
            .contains("class-balanced subset of 5000")
    );
    // Subset image k is the k-th kept image of the full set.
    let mut seen = [0usize; 10];
    let kept: Vec<usize> = (0..5000)
        .filter(|&i| {
            let l = s.train.label(i);
            seen[l] += 1;
            seen[l] <= 100
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for k in [0, 1, 517, 999] {
        assert_eq!(
            sub.train.get(k, false, &mut rng).unwrap(),
            s.train.get(kept[k], false, &mut rng).unwrap()
        );
    }
}

/// The selection rule of scripts/data/make_cifar10_mini.py.
fn select(files: &[PathBuf], per_class: usize) -> Vec<u8> {
    let mut counts = [0usize; 10];
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).unwrap();
        for rec in bytes.chunks_exact(RECORD) {
            let l = rec[0] as usize;
            if counts[l] < per_class {
                counts[l] += 1;
                out.extend_from_slice(rec);
            }
        }
    }
    out
}

#[test]
fn mini_equals_the_selection_from_the_full_set() {
    let Some(full) = shared() else { return };
    let train: Vec<PathBuf> = (1..=5)
        .map(|i| full.join(format!("data_batch_{i}.bin")))
        .collect();
    assert!(select(&train, 500) == std::fs::read(mini().join("data_batch_1.bin")).unwrap());
    assert!(
        select(&[full.join("test_batch.bin")], 100)
            == std::fs::read(mini().join("test_batch.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read(full.join("batches.meta.txt")).unwrap(),
        std::fs::read(mini().join("batches.meta.txt")).unwrap()
    );
}

#[test]
fn real_cifar10_counts_labels_and_mean() {
    let Some(full) = shared() else { return };
    let s = open(&DataConfig::new(&full)).unwrap();
    assert_eq!(s.train.len(), 50000);
    assert_eq!(s.test.len(), 10000);
    assert_eq!(class_counts(s.train.as_ref()), vec![5000; 10]);
    assert_eq!(class_counts(s.test.as_ref()), vec![1000; 10]);
    let first: Vec<usize> = (0..20).map(|i| s.test.label(i)).collect();
    assert_eq!(
        first,
        [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    );
    assert!(s.train.describe().contains("50000 images"));

    // Per-channel mean of the raw pixels, recovered from the normalised eval output.
    let n = s.train.normalization();
    let mut sums = [0f64; 3];
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for i in 0..s.train.len() {
        let (x, _) = s.train.get(i, false, &mut rng).unwrap();
        for (c, sum) in sums.iter_mut().enumerate() {
            *sum += x[c * 1024..(c + 1) * 1024]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>();
        }
    }
    let count = 50000.0 * 1024.0;
    let want = [0.4914, 0.4822, 0.4465];
    for c in 0..3 {
        let mean = sums[c] / count * n.std[c] as f64 + n.mean[c] as f64;
        assert!((mean - want[c]).abs() < 1e-3, "channel {c}: {mean}");
    }
}

#[test]
fn train_holdout_leaves_out_exactly_the_embedded_training_images() {
    // On the mini set itself: holding out everything is an error that names the key.
    let mut all = DataConfig::new(mini());
    all.train_holdout = Some(5000);
    let e = open(&all)
        .err()
        .expect("an empty training split")
        .to_string();
    assert!(e.contains("data.train_holdout = 5000"), "{e}");
    // Holdout, then subset: 100 per class held out, then the first 50 per class of the rest.
    let mut cfg = DataConfig::new(mini());
    cfg.train_holdout = Some(1000);
    cfg.train_subset = Some(500);
    let rest = open(&cfg).unwrap().train;
    assert_eq!(rest.len(), 500);
    assert_eq!(class_counts(&*rest), vec![50; 10]);

    let Some(full) = shared() else { return };
    let mut cfg = DataConfig::new(&full);
    cfg.train_holdout = Some(5000);
    let train = open(&cfg).unwrap().train;
    assert_eq!(train.len(), 45_000);
    assert_eq!(class_counts(&*train), vec![4_500; 10]);
    // None of the embedded training images is among the 45,000 (compared pixel for pixel).
    let mini_train = open(&DataConfig::new(mini())).unwrap().train;
    let pixels = |ds: &dyn Dataset, i: usize| {
        let (x, _) = ds.get(i, false, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        x.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
    };
    let held: std::collections::HashSet<Vec<u32>> = (0..mini_train.len())
        .map(|i| pixels(&*mini_train, i))
        .collect();
    let leaked = (0..train.len())
        .filter(|&i| held.contains(&pixels(&*train, i)))
        .count();
    assert_eq!(
        leaked, 0,
        "embedded training images left in the held-out split"
    );
}
