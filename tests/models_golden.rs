//! Numerical agreement of every zoo model with its PyTorch twin in
//! `scripts/models/param_counts.py`. Both sides fill the model with the same deterministic
//! weights (a splitmix64 stream keyed by the FNV-1a hash of each tensor's module path; the
//! Python attribute names mirror the Rust fields) and run it on the same batch of 2, PyTorch in
//! float64, burn in float32:
//! - eval mode (BatchNorm on running statistics): every stage output and the logits;
//! - train mode (BatchNorm on batch statistics): the same outputs, then the backward of a fixed
//!   weighting of the logits and of every stage, compared on the gradient of the input, of the
//!   first and last weights, the last bias, and two BatchNorms' affine parameters, and on those
//!   BatchNorms' running statistics after the pass.
//!
//! Logits, gradients and running statistics are compared in full; stage outputs too for the
//! small models (resnet8, vgg8), and for the others, where a full stage would make the fixture
//! tens of MB, by the per-channel mean and rms (which sees a channel order or a shortcut wiring
//! error anywhere in the map) plus 2048 values sampled across the tensor. This catches wiring
//! errors that counts and shapes cannot see (concatenation order, which tensor a shortcut reads,
//! pooling and padding) and BatchNorm's train-mode statistics and backward.
//!
//! A third test shows the comparisons can fail: a flipped kernel, BatchNorm left in eval mode,
//! and a backward missing the stage terms are each rejected by far.
//!
//! The fixture is `tests/fixtures/models/golden.{json,bin}` (written by
//! `scripts/models/make_golden_models.py`, which documents the layout).

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use meal::models::{self, ARCHS};
use meal::selftest::fill::{Filler, ModulePath, fnv1a, uniform};
use serde::Deserialize;

/// Every comparison: `|a − e| ≤ RTOL·|e| + max(ATOL, SPREADS·spread)·max|e|` (max over the
/// tensor), where `spread` is how far PyTorch's own float32 result is from its float64 one,
/// relative to max|e| (recorded by the script for the train pass; 0 for eval). It is below 1e-4
/// everywhere except the train-mode gradients of the deepest models (densenets, dpn92,
/// googlenet, resnext29: 1e-2 to 5e-2, BatchNorm on 2 samples amplifying rounding), where
/// burn's float32 can only be held to the same few percent.
const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-4;
const SPREADS: f64 = 4.0;

#[derive(Deserialize)]
struct Full {
    shape: Vec<usize>,
    offset: usize,
    len: usize,
    #[serde(default)]
    spread: f64,
}

/// A stage output: in full, or per-channel [means; rms] plus samples.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stage {
    Full(Full),
    Summary {
        shape: Vec<usize>,
        channels: (usize, usize),
        samples: (usize, usize),
        #[serde(default)]
        spread: f64,
    },
}

#[derive(Deserialize)]
struct EvalPass {
    stages: Vec<Stage>,
    logits: Full,
}

#[derive(Deserialize)]
struct TrainPass {
    stages: Vec<Stage>,
    logits: Full,
    loss: f64,
    loss_spread: f64,
    input_grad: Full,
    grads: BTreeMap<String, Full>,
    running: BTreeMap<String, Full>,
}

#[derive(Deserialize)]
struct Golden {
    keys_digest: String,
    tensors: usize,
    eval: EvalPass,
    train: TrainPass,
}

#[derive(Deserialize)]
struct Fixture {
    batch: usize,
    models: BTreeMap<String, Golden>,
}

fn fixture_path(ext: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/models/golden.{ext}"))
}

/// The manifest and the float32 values it points into.
fn load() -> (Fixture, Vec<f64>) {
    let json = fixture_path("json");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/models/make_golden_models.py)",
            json.display()
        )
    });
    let fixture: Fixture =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", json.display()));
    let bin = fixture_path("bin");
    let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert_eq!(bytes.len() % 4, 0, "{}: not float32 values", bin.display());
    let values = bytes
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    (fixture, values)
}

fn slice<'a>(values: &'a [f64], offset: usize, len: usize, what: &str) -> &'a [f64] {
    values
        .get(offset..offset + len)
        .unwrap_or_else(|| panic!("{what}: [{offset}, +{len}) past the end of golden.bin"))
}

/// The values (PyTorch layout) of the tensors named in `wanted`: their gradients when `grads`
/// is given, else the tensors themselves.
struct Collector<'a> {
    path: ModulePath,
    wanted: Vec<&'a str>,
    grads: Option<&'a burn::tensor::Gradients>,
    found: BTreeMap<String, Vec<f64>>,
}

impl ModuleVisitor for Collector<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let key = self.path.key();
        if !self.wanted.contains(&key.as_str()) {
            return;
        }
        let mut t = match self.grads {
            Some(grads) => param
                .val()
                .grad(grads)
                .unwrap_or_else(|| panic!("{key}: no gradient")),
            None => param.val(),
        };
        if self.path.is_linear_weight() {
            t = t.swap_dims(0, 1);
        }
        self.found.insert(key, to_f64(t));
    }
}

fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.try_into_vec_as::<f32>()
        .expect("f32 values")
        .into_iter()
        .map(f64::from)
        .collect()
}

/// The largest error / tolerance of one model's comparisons, and where it was.
#[derive(Default)]
struct Worst {
    ratio: f64,
    at: String,
}

impl Worst {
    /// Every element within `RTOL·|e| + max(ATOL, SPREADS·spread)·max|e|`.
    fn compare(&mut self, what: &str, actual: &[f64], expected: &[f64], spread: f64) {
        assert_eq!(actual.len(), expected.len(), "{what}: length");
        let scale = expected.iter().fold(0.0f64, |m, e| m.max(e.abs()));
        assert!(scale > 0.0, "{what}: all-zero golden values test nothing");
        let atol = ATOL.max(SPREADS * spread);
        for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            let tol = RTOL * e.abs() + atol * scale;
            let ratio = (a - e).abs() / tol;
            let ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
            if ratio > self.ratio || self.at.is_empty() {
                self.ratio = ratio;
                self.at = format!("{what}[{i}]: got {a}, PyTorch {e} (tolerance {tol:e})");
            }
        }
    }

    fn full<const D: usize>(&mut self, what: &str, got: Tensor<D>, want: &Full, values: &[f64]) {
        assert_eq!(
            got.dims().as_slice(),
            want.shape.as_slice(),
            "{what}: shape"
        );
        let expected = slice(values, want.offset, want.len, what);
        self.compare(what, &to_f64(got), expected, want.spread);
    }

    fn stage(&mut self, what: &str, got: Tensor<4>, want: &Stage, values: &[f64]) {
        let (shape, channels, samples, spread) = match want {
            Stage::Full(full) => return self.full(what, got, full, values),
            Stage::Summary {
                shape,
                channels,
                samples,
                spread,
            } => (shape, channels, samples, *spread),
        };
        let dims = got.dims();
        assert_eq!(dims.as_slice(), shape.as_slice(), "{what}: shape");
        let v = to_f64(got);
        let [b, c, h, w] = dims;
        let plane = h * w;
        let count = (b * plane) as f64;
        let mut stats = vec![0.0; 2 * c];
        for n in 0..b {
            for ch in 0..c {
                let start = (n * c + ch) * plane;
                for &x in &v[start..start + plane] {
                    stats[ch] += x;
                    stats[c + ch] += x * x;
                }
            }
        }
        for ch in 0..c {
            stats[ch] /= count;
            stats[c + ch] = (stats[c + ch] / count).sqrt();
        }
        let expected = slice(values, channels.0, channels.1, what);
        self.compare(
            &format!("{what} channel mean/rms"),
            &stats,
            expected,
            spread,
        );
        let k = samples.1;
        let n = v.len();
        let got: Vec<f64> = (0..k).map(|j| v[(j * (n - 1)) / (k - 1)]).collect();
        let expected = slice(values, samples.0, k, what);
        self.compare(&format!("{what} samples"), &got, expected, spread);
    }

    fn assert_ok(&self, arch: &str) {
        assert!(self.ratio <= 1.0, "{arch}: {}", self.at);
    }
}

/// The weighting of the backward pass, `w[k] = ((k·7919) mod 1000)/500 − 1`, as the script.
fn loss_weights<const D: usize>(shape: [usize; D], device: &burn::tensor::Device) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|k| (((k * 7919) % 1000) as f64 / 500.0 - 1.0) as f32)
        .collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

fn input(batch: usize, device: &burn::tensor::Device) -> Tensor<4> {
    let x: Vec<f32> = uniform("input", batch * 3 * 32 * 32)
        .iter()
        .map(|&v| v as f32)
        .collect();
    Tensor::<4>::from_data(TensorData::new(x, [batch, 3, 32, 32]), device)
}

/// A zoo model on `device`, filled; checks its tensor names and shapes against PyTorch's.
fn filled(arch: &str, want: &Golden, device: &burn::tensor::Device) -> models::Net {
    let mut filler = Filler::for_net();
    let net = models::build(arch, 10, device).unwrap().map(&mut filler);
    assert_eq!(filler.error, None, "{arch}: fill");
    filler.keys.sort();
    assert_eq!(filler.keys.len(), want.tensors, "{arch}: tensor count");
    let digest = format!("{:016x}", fnv1a(&filler.keys.join("\n")));
    assert_eq!(digest, want.keys_digest, "{arch}: tensor names/shapes");
    net
}

#[test]
fn zoo_eval_forward_matches_pytorch() {
    let (fixture, values) = load();
    let device = meal::backend::device();
    let x = input(fixture.batch, &device);
    assert_eq!(fixture.models.len(), ARCHS.len());
    for info in ARCHS {
        let want = &fixture.models[info.name];
        let out = filled(info.name, want, &device).forward(x.clone());
        let mut worst = Worst::default();
        assert_eq!(out.stages.len(), want.eval.stages.len(), "{}", info.name);
        for (i, (stage, w)) in out.stages.into_iter().zip(&want.eval.stages).enumerate() {
            worst.stage(&format!("eval stage {i}"), stage, w, &values);
        }
        worst.full("eval logits", out.logits, &want.eval.logits, &values);
        worst.assert_ok(info.name);
        println!(
            "{}: eval, largest error / tolerance {:.3}",
            info.name, worst.ratio
        );
    }
}

#[test]
fn zoo_train_forward_and_backward_match_pytorch() {
    // The model definitions against PyTorch, through burn's own ops: with batch-2 BatchNorm the
    // deepest nets amplify float rounding past any useful tolerance (resnet56's input gradient
    // lands on another branch under any 1e-7 perturbation, meal's kernels or burn's alike), so
    // meal's kernels are held to burn's ops instead, in tests/kernels.rs.
    meal::kernels::set_enabled(Some(false));
    let (fixture, values) = load();
    let device = meal::backend::autodiff_device();
    for info in ARCHS {
        let want = &fixture.models[info.name];
        let t = &want.train;
        let net = filled(info.name, want, &device);
        let x = input(fixture.batch, &device).require_grad();
        let out = net.forward(x.clone());
        let mut worst = Worst::default();
        assert_eq!(out.stages.len(), t.stages.len(), "{}", info.name);
        let dims = out.logits.dims();
        let mut loss = out.logits.clone().mul(loss_weights(dims, &device)).sum();
        for (i, (stage, w)) in out.stages.iter().zip(&t.stages).enumerate() {
            let dims = stage.dims();
            loss = loss.add(stage.clone().mul(loss_weights(dims, &device)).mean());
            worst.stage(&format!("train stage {i}"), stage.clone(), w, &values);
        }
        worst.full("train logits", out.logits, &t.logits, &values);
        worst.compare("loss", &to_f64(loss.clone()), &[t.loss], t.loss_spread);

        let grads = loss.backward();
        let gx = x.grad(&grads).expect("input gradient");
        worst.full("input grad", gx, &t.input_grad, &values);
        let mut collector = Collector {
            path: ModulePath::new(1),
            wanted: t.grads.keys().map(String::as_str).collect(),
            grads: Some(&grads),
            found: BTreeMap::new(),
        };
        net.visit(&mut collector);
        let mut running = Collector {
            path: ModulePath::new(1),
            wanted: t.running.keys().map(String::as_str).collect(),
            grads: None,
            found: BTreeMap::new(),
        };
        // `valid` folds in the running-statistics update of the pass.
        net.valid().visit(&mut running);
        for (kind, collected, want) in [
            ("grad", collector.found, &t.grads),
            ("running", running.found, &t.running),
        ] {
            assert_eq!(
                collected.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{}: {kind} tensors found",
                info.name
            );
            for (key, w) in want {
                let what = format!("{kind} {key}");
                let expected = slice(&values, w.offset, w.len, &what);
                worst.compare(&what, &collected[key], expected, w.spread);
            }
        }
        worst.assert_ok(info.name);
        println!(
            "{}: train + backward, largest error / tolerance {:.3}",
            info.name, worst.ratio
        );
    }
}

/// Flips the kernel of one convolution (correlation read as convolution): a wiring-like bug.
struct FlipKernel<'a> {
    path: ModulePath,
    key: &'a str,
}

impl ModuleMapper for FlipKernel<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 4 || self.path.key() != self.key {
            return param;
        }
        param.map(|t| t.flip([2, 3]))
    }
}

/// The comparisons reject, for the small models: a model with its first convolution's kernel
/// flipped (eval outputs), BatchNorm left in eval mode during the train pass (train outputs),
/// and a backward that leaves out the stage terms of the loss (gradients).
#[test]
fn zoo_comparisons_reject_buggy_models() {
    let (fixture, values) = load();
    let mut rejected = Vec::new();
    for arch in ["resnet8", "vgg8"] {
        let want = &fixture.models[arch];
        let t = &want.train;
        let first_conv = t.grads.keys().find(|k| {
            let shape = &t.grads[*k].shape;
            shape.len() == 4 && shape[1] == 3
        });
        let first_conv = first_conv.expect("the first convolution's gradient is recorded");

        let device = meal::backend::device();
        let net = filled(arch, want, &device).map(&mut FlipKernel {
            path: ModulePath::new(1),
            key: first_conv,
        });
        let out = net.forward(input(fixture.batch, &device));
        let mut worst = Worst::default();
        worst.full("eval logits", out.logits, &want.eval.logits, &values);
        rejected.push((arch, "flipped first kernel", worst.ratio));

        let out = filled(arch, want, &device).forward(input(fixture.batch, &device));
        let mut worst = Worst::default();
        worst.full("train logits", out.logits, &t.logits, &values);
        rejected.push((arch, "BatchNorm in eval mode", worst.ratio));

        let device = meal::backend::autodiff_device();
        let net = filled(arch, want, &device);
        let x = input(fixture.batch, &device).require_grad();
        let logits = net.forward(x.clone()).logits;
        let dims = logits.dims();
        let loss = logits.mul(loss_weights(dims, &device)).sum();
        let mut worst = Worst::default();
        worst.full(
            "input grad",
            x.grad(&loss.backward()).unwrap(),
            &t.input_grad,
            &values,
        );
        rejected.push((arch, "stage terms left out", worst.ratio));
    }
    for (arch, bug, ratio) in &rejected {
        println!("{arch} with {bug}: {ratio:.1} tolerances off");
        assert!(*ratio > 10.0, "{arch} with {bug} passes: {ratio:.2}");
    }
}
