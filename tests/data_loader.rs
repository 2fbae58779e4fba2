//! The batch loader: determinism across worker counts, per-epoch permutations, coverage,
//! drop_last, early drop, error propagation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meal::data::{Batch, DataError, Dataset, Loader, LoaderConfig, MemoryDataset, Normalization};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn dataset(n: usize) -> Arc<dyn Dataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let images: Vec<u8> = (0..n * 3072).map(|_| rng.random()).collect();
    let labels: Vec<usize> = (0..n).map(|i| (i * 7) % 10).collect();
    let names = (0..10).map(|i| format!("c{i}")).collect();
    Arc::new(
        MemoryDataset::new(
            "synthetic",
            [3, 32, 32],
            images,
            labels,
            names,
            Normalization::CIFAR10,
        )
        .unwrap(),
    )
}

fn config(workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 10,
        shuffle: true,
        augment: true,
        drop_last: false,
        seed: 7,
        num_workers: workers,
        prefetch: 3,
    }
}

fn collect(loader: &Loader, epoch: usize) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

#[test]
fn same_seed_and_epoch_give_identical_batches_for_any_worker_count() {
    let ds = dataset(103);
    let reference = collect(&Loader::new(ds.clone(), config(1)), 3);
    for workers in [0, 3, 8] {
        let got = collect(&Loader::new(ds.clone(), config(workers)), 3);
        assert_eq!(got, reference, "{workers} workers");
    }
    // And across repeated calls.
    assert_eq!(collect(&Loader::new(ds, config(1)), 3), reference);
}

#[test]
fn epochs_differ_and_cover_every_index_once() {
    let ds = dataset(103);
    let loader = Loader::new(ds.clone(), config(2));
    assert_eq!(loader.num_batches(), 11);
    let e0 = collect(&loader, 0);
    let e1 = collect(&loader, 1);
    let order = |e: &[Batch]| e.iter().flat_map(|b| b.indices.clone()).collect::<Vec<_>>();
    assert_ne!(order(&e0), order(&e1));
    for e in [&e0, &e1] {
        assert_eq!(e.len(), 11);
        let mut idx = order(e);
        assert_ne!(idx, (0..103).collect::<Vec<_>>(), "shuffled");
        idx.sort();
        assert_eq!(idx, (0..103).collect::<Vec<_>>());
        for b in e.iter() {
            assert_eq!(b.shape, [b.indices.len(), 3, 32, 32]);
            assert_eq!(b.images.len(), b.indices.len() * 3072);
            for (k, &i) in b.indices.iter().enumerate() {
                assert_eq!(b.labels[k], ds.label(i));
            }
        }
        assert_eq!(e[10].len(), 3);
    }
    // The same image gets a different augmentation in another epoch (with high probability
    // over 103 images), but identical data for the same (seed, epoch, index).
    let find = |e: &[Batch], i: usize| -> Vec<f32> {
        let b = e.iter().find(|b| b.indices.contains(&i)).unwrap();
        let k = b.indices.iter().position(|&j| j == i).unwrap();
        b.images[k * 3072..(k + 1) * 3072].to_vec()
    };
    let differing = (0..103).filter(|&i| find(&e0, i) != find(&e1, i)).count();
    assert!(differing > 80, "{differing}");
    // A different seed gives a different order.
    let mut other = config(2);
    other.seed = 8;
    assert_ne!(order(&collect(&Loader::new(ds, other), 0)), order(&e0));
}

#[test]
fn sample_augmentation_depends_only_on_seed_epoch_index() {
    let ds = dataset(30);
    let loader = Loader::new(ds.clone(), config(2));
    let e = collect(&loader, 5);
    for b in &e {
        for (k, &i) in b.indices.iter().enumerate() {
            let mut rng = meal::data::sample_rng(7, 5, i);
            let (x, _) = ds.get(i, true, &mut rng).unwrap();
            assert_eq!(&b.images[k * 3072..(k + 1) * 3072], &x[..]);
        }
    }
    assert_eq!(
        e.iter().flat_map(|b| b.indices.clone()).collect::<Vec<_>>(),
        meal::data::epoch_order(30, true, 7, 5)
    );
}

#[test]
fn drop_last_and_no_shuffle_eval() {
    let ds = dataset(103);
    let mut cfg = config(2);
    cfg.drop_last = true;
    let loader = Loader::new(ds.clone(), cfg);
    assert_eq!(loader.num_batches(), 10);
    let e = collect(&loader, 0);
    assert_eq!(e.len(), 10);
    assert!(e.iter().all(|b| b.len() == 10));

    let loader = Loader::new(ds.clone(), LoaderConfig::eval(25));
    assert_eq!(loader.num_batches(), 5);
    let e = collect(&loader, 9);
    let idx: Vec<usize> = e.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(idx, (0..103).collect::<Vec<_>>());
    assert_eq!(e[4].shape, [3, 3, 32, 32]);
    // Eval batches hold exactly the eval transform.
    let (x, y) = ds
        .get(26, false, &mut ChaCha8Rng::seed_from_u64(0))
        .unwrap();
    assert_eq!(&e[1].images[3072..2 * 3072], &x[..]);
    assert_eq!(e[1].labels[1], y);
    assert!(Arc::ptr_eq(loader.dataset(), &ds));

    // Fewer images than a batch.
    let small = dataset(4);
    let mut cfg = config(3);
    cfg.drop_last = true;
    assert_eq!(Loader::new(small.clone(), cfg.clone()).epoch(0).count(), 0);
    cfg.drop_last = false;
    let e = collect(&Loader::new(small, cfg), 0);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].shape[0], 4);
}

#[test]
fn dropping_the_iterator_early_does_not_hang() {
    let ds = dataset(400);
    let mut cfg = config(3);
    cfg.batch_size = 4;
    cfg.prefetch = 16;
    let loader = Loader::new(ds, cfg);
    let start = Instant::now();
    for _ in 0..20 {
        let mut it = loader.epoch(0);
        let first = it.next().unwrap().unwrap();
        assert_eq!(first.len(), 4);
        drop(it);
        // Not even started.
        drop(loader.epoch(1));
    }
    assert!(start.elapsed() < Duration::from_secs(20));
    // The loader is still usable afterwards.
    assert_eq!(loader.epoch(2).count(), 100);
}

/// A dataset that fails (or panics) at one index.
struct Faulty {
    inner: Arc<dyn Dataset>,
    bad: usize,
    panic: bool,
}

impl Dataset for Faulty {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn class_names(&self) -> Vec<String> {
        self.inner.class_names()
    }
    fn label(&self, index: usize) -> usize {
        self.inner.label(index)
    }
    fn normalization(&self) -> Normalization {
        self.inner.normalization()
    }
    fn output_shape(&self) -> [usize; 3] {
        self.inner.output_shape()
    }
    fn describe(&self) -> String {
        "faulty".into()
    }
    fn get(
        &self,
        index: usize,
        augment: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, usize), DataError> {
        if index == self.bad {
            if self.panic {
                panic!("boom at {index}");
            }
            return Err(DataError::record("faulty.bin", index, "bad record"));
        }
        self.inner.get(index, augment, rng)
    }
}

#[test]
fn errors_and_panics_end_the_epoch_with_an_error() {
    for panic in [false, true] {
        for workers in [0, 1, 3] {
            let ds: Arc<dyn Dataset> = Arc::new(Faulty {
                inner: dataset(50),
                bad: 23,
                panic,
            });
            let mut cfg = LoaderConfig::eval(5);
            cfg.num_workers = workers;
            let loader = Loader::new(ds, cfg);
            let results: Vec<_> = loader.epoch(0).collect();
            // Batches 0..4 are fine, batch 4 (indices 20..25) fails, then the iterator ends.
            assert_eq!(results.len(), 5, "panic {panic} workers {workers}");
            assert!(results[..4].iter().all(|r| r.is_ok()));
            let msg = results[4].as_ref().unwrap_err().to_string();
            if panic {
                assert!(
                    msg.contains("panicked") && msg.contains("boom at 23"),
                    "{msg}"
                );
            } else {
                assert_eq!(msg, "faulty.bin: record 23: bad record");
            }
        }
    }
}
