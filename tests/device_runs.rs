//! Runs on the test device (`MEAL_TEST_DEVICE`, flex when unset) and checkpoints that cross
//! between it and the CPU: a tiny train, resume and MEAL distillation there, and a checkpoint
//! trained on either side evaluating on the other to the accuracy its run logged. On a GPU the
//! arithmetic differs from the CPU's in the last bits, so logits are held to the GPU tolerance
//! of `meal selftest` and accuracies may differ only by images whose two best logits are that
//! close.
//!
//! The device is process-global (a run selects its config's), so the tests take turns.
//!
//! Sizes are tiny (60 training images, 30 test images): CI runs this file on lavapipe, Mesa's
//! software Vulkan driver, which trains resnet8 at about 3 images per second.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use common::*;

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

const ARCH: &str = "resnet8";
// Multiples of the class count: subsets are class-balanced.
const TRAIN_IMAGES: usize = 60;
const TEST_IMAGES: usize = 30;

/// A `meal train` / `meal distill` table of `common` cut to this file's sizes: two steps of 30
/// per epoch, the test images in one batch.
fn tiny(mut table: toml::Table) -> toml::Table {
    table.insert("batch_size".into(), 30.into());
    table.insert("eval_batch_size".into(), (TEST_IMAGES as i64).into());
    let data = table
        .get_mut("data")
        .and_then(|d| d.as_table_mut())
        .expect("a [data] table");
    data.insert("train_subset".into(), (TRAIN_IMAGES as i64).into());
    data.insert("test_subset".into(), (TEST_IMAGES as i64).into());
    table
}

/// A resnet8 trained on the test device for one epoch, then resumed to two.
fn device_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch("device_runs-teacher").join("run");
        let out = train_fresh(tiny(train_table(ARCH, &run, 1, 3))).unwrap();
        assert_eq!(out.epochs_done, 1);
        let out = train_resume(&run, &["epochs=2"]).unwrap();
        assert_eq!(out.epochs_done, 2);
        let m = metrics(&run);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(
            m[1]["lr"].as_f64(),
            Some(0.025),
            "the schedule resumed at epoch 2"
        );
        for record in &m {
            let loss = record["train_loss"].as_f64().unwrap();
            assert!(loss.is_finite() && loss > 0.0, "{record}");
        }
        run
    })
}

/// The test split of the tiny runs' data, as one batch.
fn test_images(device: &Device) -> (Tensor<4>, Vec<usize>) {
    let data = meal::data::open(&meal::data::DataConfig {
        test_subset: Some(TEST_IMAGES),
        train_subset: Some(TRAIN_IMAGES),
        ..meal::data::DataConfig::new(mini())
    })
    .unwrap();
    let loader = meal::data::Loader::new(data.test, meal::data::LoaderConfig::eval(TEST_IMAGES));
    let batch = loader.epoch(0).next().expect("one test batch").unwrap();
    let (images, _) = meal::train::tensors::batch_tensors(&batch, device);
    (images, batch.labels)
}

/// The checkpoint's logits on the test images, on `device`.
fn logits(checkpoint: &Path, device: &Device) -> Vec<Vec<f64>> {
    let (net, _, _) = meal::train::model_io::load_model(checkpoint, device).unwrap();
    let (x, _) = test_images(device);
    let values: Vec<f32> = net.forward(x).logits.try_into_vec_as::<f32>().unwrap();
    values
        .chunks(10)
        .map(|row| row.iter().map(|&v| f64::from(v)).collect())
        .collect()
}

/// Top-1 accuracy (%) of `rows` on the test labels.
fn top1(rows: &[Vec<f64>]) -> f64 {
    let (_, labels) = test_images(&Device::flex());
    let argmax = |r: &[f64]| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
    let correct = rows
        .iter()
        .zip(&labels)
        .filter(|(r, l)| argmax(r) == **l)
        .count();
    100.0 * correct as f64 / rows.len() as f64
}

/// `checkpoint` evaluated on `from` and `to`: its logits agree within the GPU tolerance, and
/// where the top-1 class differs the two best logits are within that tolerance of each other.
/// Returns the accuracy on `to`.
fn evaluates_alike(checkpoint: &Path, from: &Device, to: &Device) -> f64 {
    let a = logits(checkpoint, from);
    let b = logits(checkpoint, to);
    assert!(a.iter().flatten().all(|v| v.is_finite()), "{a:?}");
    assert!(b.iter().flatten().all(|v| v.is_finite()), "{b:?}");
    let tol = meal::selftest::Tolerance::GPU;
    let flat = |rows: &[Vec<f64>]| rows.concat();
    let err = tol
        .compare("logits across devices", &flat(&b), &flat(&a))
        .unwrap_or_else(|e| panic!("{e}"));
    // A class may only flip where the margin is within twice the largest difference seen.
    for (i, (ra, rb)) in a.iter().zip(&b).enumerate() {
        let mut sorted = ra.clone();
        sorted.sort_by(|x, y| y.total_cmp(x));
        let best = |r: &[f64]| (0..r.len()).max_by(|&p, &q| r[p].total_cmp(&r[q])).unwrap();
        if best(ra) != best(rb) {
            assert!(
                sorted[0] - sorted[1] <= 2.0 * err,
                "image {i}: class {} vs {} with a margin of {} (max logit error {err})",
                best(ra),
                best(rb),
                sorted[0] - sorted[1]
            );
        }
    }
    let (acc_a, acc_b) = (top1(&a), top1(&b));
    let flips = a
        .iter()
        .zip(&b)
        .filter(|(ra, rb)| top1(std::slice::from_ref(ra)) != top1(std::slice::from_ref(rb)))
        .count();
    assert!(
        (acc_a - acc_b).abs() <= 100.0 * flips as f64 / a.len() as f64 + 1e-9,
        "{acc_a}% vs {acc_b}% with {flips} near-tie images"
    );
    acc_b
}

#[test]
fn train_resume_and_distill_on_the_test_device() {
    let _t = turn();
    let teacher = device_run();
    let student = scratch("device_runs-student").join("run");
    let out = distill_fresh(tiny(distill_table(ARCH, &[teacher], &student, 1, ""))).unwrap();
    assert_eq!(out.epochs_done, 1);
    assert!((0.0..=100.0).contains(&out.last.top1), "{}", out.last.top1);
    let m = metrics(&student);
    assert_eq!(m.len(), 1, "{m:?}");
    let record = m[0].as_object().unwrap();
    for (key, value) in record {
        if let Some(v) = value.as_f64() {
            assert!(v.is_finite(), "{key} = {v} in {}", m[0]);
        }
    }
}

#[test]
fn a_checkpoint_trained_on_the_test_device_evaluates_alike_on_flex() {
    let _t = turn();
    let run = device_run();
    let logged = metrics(run).pop().unwrap()["test_top1"].as_f64().unwrap();
    let device = meal::selftest::test_device();
    let on_flex = evaluates_alike(&run.join("last.ckpt"), &device, &Device::flex());
    let on_device = top1(&logits(&run.join("last.ckpt"), &device));
    assert_eq!(on_device, logged, "the run logged {logged}%");
    eprintln!("trained on the test device: {logged}% there, {on_flex}% on flex");
}

#[test]
fn a_checkpoint_trained_on_flex_evaluates_alike_on_the_test_device() {
    let _t = turn();
    let run = scratch("device_runs-flex").join("run");
    let mut table = tiny(train_table(ARCH, &run, 1, 4));
    table.insert("device".into(), "flex".into());
    let out = train_fresh(table).unwrap();
    assert_eq!(out.epochs_done, 1);
    let logged = metrics(&run).pop().unwrap()["test_top1"].as_f64().unwrap();
    let device = meal::selftest::test_device();
    let on_flex = top1(&logits(&run.join("last.ckpt"), &Device::flex()));
    assert_eq!(on_flex, logged, "the run logged {logged}%");
    let on_device = evaluates_alike(&run.join("last.ckpt"), &Device::flex(), &device);
    eprintln!("trained on flex: {logged}% there, {on_device}% on the test device");
}

/// What the device holds: its allocator's bytes in use where the runtime reports them (the
/// Cube runtimes), else the process's resident set (flex allocates on the heap).
fn memory_in_use(device: &Device) -> u64 {
    if let Some(usage) = device.memory_pool_usage() {
        return usage.bytes_in_use;
    }
    let statm = std::fs::read_to_string("/proc/self/statm").expect("reading /proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn memory_after_100_training_steps_is_memory_after_10() {
    let _t = turn();
    let device = meal::selftest::test_device().autodiff();
    // A Cube runtime's allocator counts its bytes exactly, so a small batch shows a leak (and
    // lavapipe can run 100 steps of it); the resident set on flex moves by megabytes on its own,
    // so there the batch is big enough for one kept activation per step to stand out.
    let exact = device.memory_pool_usage().is_some();
    let (batch, side) = if exact { (4, 16) } else { (64, 32) };
    // One activation of resnet8's first stage (16 channels at full size).
    let activation = (batch * 16 * side * side * 4) as u64;
    let slack = if exact { 8 * activation } else { 4 << 20 };
    let (mut net, x, y) = meal::backend::seeded(&device, 5, || {
        let net = meal::models::build(ARCH, 10, &device).unwrap();
        let x = Tensor::<4>::random(
            [batch, 3, side, side],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let labels: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
        (net, x, y)
    });
    let mut optim = meal::train::optim::SgdSettings::default().init();
    let mut at = Vec::new();
    for step in 1..=100 {
        let loss = meal::train::tensors::cross_entropy(net.forward(x.clone()).logits, y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(0.01, net, grads);
        // The step's read: the device has finished the step when it returns.
        let value: f32 = loss.into_scalar();
        assert!(value.is_finite(), "step {step}: loss {value}");
        if step == 10 || step == 100 {
            at.push(memory_in_use(&device));
        }
    }
    let (ten, hundred) = (at[0], at[1]);
    // One activation kept per step would add 90 of them.
    assert!(
        hundred <= ten + ten / 50 + slack,
        "{hundred} bytes after 100 steps, {ten} after 10 (one activation: {activation})"
    );
    eprintln!("memory after 10 and 100 steps: {ten} and {hundred} bytes");
}
