//! Shared by `models_golden.rs` (MEAL's CIFAR zoo against its PyTorch twins) and
//! `models_timm.rs` (the ImageNet models against timm): reading a golden fixture in the layout
//! of `scripts/models/make_golden_models.py`, filling a zoo model with the scripts'
//! deterministic weights, and comparing its eval and train passes with the recorded ones.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use meal::models::{self, ModelOutput};
use meal::selftest::fill::{Filler, ModulePath, fnv1a, uniform};
use serde::Deserialize;

/// Every comparison: `|a − e| ≤ RTOL·|e| + max(ATOL, SPREADS·spread)·max|e|` (max over the
/// tensor), where `spread` is how far PyTorch's own float32 result is from its float64 one,
/// relative to max|e| (recorded by the script for the train pass; 0 for eval). It is below 1e-4
/// everywhere except the train-mode gradients of the deepest models (densenets, dpn92,
/// googlenet, resnext29: 1e-2 to 5e-2, BatchNorm on 2 samples amplifying rounding), where
/// burn's float32 can only be held to the same few percent.
pub const RTOL: f64 = 1e-4;
pub const ATOL: f64 = 1e-4;
pub const SPREADS: f64 = 4.0;

#[derive(Deserialize)]
pub struct Full {
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
    #[serde(default)]
    pub spread: f64,
}

/// A stage output: in full, or per-channel [means; rms] plus samples.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Stage {
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
pub struct EvalPass {
    pub stages: Vec<Stage>,
    pub logits: Full,
}

#[derive(Deserialize)]
pub struct TrainPass {
    pub stages: Vec<Stage>,
    pub logits: Full,
    pub loss: f64,
    pub loss_spread: f64,
    pub input_grad: Full,
    pub grads: BTreeMap<String, Full>,
    pub running: BTreeMap<String, Full>,
}

#[derive(Deserialize)]
pub struct Golden {
    pub keys_digest: String,
    pub tensors: usize,
    pub eval: EvalPass,
    /// Absent for the models whose script records the eval pass only.
    pub train: Option<TrainPass>,
}

#[derive(Deserialize)]
pub struct Fixture {
    pub batch: usize,
    /// The input side (32 when absent: the CIFAR fixture) and the class count (10).
    #[serde(default = "cifar_size")]
    pub input_size: usize,
    #[serde(default = "cifar_classes")]
    pub classes: usize,
    pub models: BTreeMap<String, Golden>,
}

fn cifar_size() -> usize {
    32
}

fn cifar_classes() -> usize {
    10
}

/// `tests/fixtures/models/<stem>.<ext>`.
pub fn fixture_path(stem: &str, ext: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/models/{stem}.{ext}"))
}

/// The manifest `<stem>.json` and the float32 values of `<stem>.bin` it points into; a missing
/// file is a failure naming `script`, which writes it.
pub fn load(stem: &str, script: &str) -> (Fixture, Vec<f64>) {
    let json = fixture_path(stem, "json");
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("{}: {e} (run {script})", json.display()));
    let fixture: Fixture =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", json.display()));
    let bin = fixture_path(stem, "bin");
    let bytes =
        std::fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e} (run {script})", bin.display()));
    assert_eq!(bytes.len() % 4, 0, "{}: not float32 values", bin.display());
    let values = bytes
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    (fixture, values)
}

pub fn slice<'a>(values: &'a [f64], offset: usize, len: usize, what: &str) -> &'a [f64] {
    values.get(offset..offset + len).unwrap_or_else(|| {
        panic!("{what}: [{offset}, +{len}) past the end of the fixture's values")
    })
}

/// The values (PyTorch layout) of the tensors named in `wanted`: their gradients when `grads`
/// is given, else the tensors themselves.
pub struct Collector<'a> {
    pub path: ModulePath,
    pub wanted: Vec<&'a str>,
    pub grads: Option<&'a burn::tensor::Gradients>,
    pub found: BTreeMap<String, Vec<f64>>,
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

pub fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.try_into_vec_as::<f32>()
        .expect("f32 values")
        .into_iter()
        .map(f64::from)
        .collect()
}

/// The largest error / tolerance of one model's comparisons, and where it was.
#[derive(Default)]
pub struct Worst {
    pub ratio: f64,
    pub at: String,
}

impl Worst {
    /// Every element within `RTOL·|e| + max(ATOL, SPREADS·spread)·max|e|`.
    pub fn compare(&mut self, what: &str, actual: &[f64], expected: &[f64], spread: f64) {
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

    pub fn full<const D: usize>(
        &mut self,
        what: &str,
        got: Tensor<D>,
        want: &Full,
        values: &[f64],
    ) {
        assert_eq!(
            got.dims().as_slice(),
            want.shape.as_slice(),
            "{what}: shape"
        );
        let expected = slice(values, want.offset, want.len, what);
        self.compare(what, &to_f64(got), expected, want.spread);
    }

    pub fn stage(&mut self, what: &str, got: Tensor<4>, want: &Stage, values: &[f64]) {
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

    pub fn assert_ok(&self, arch: &str) {
        assert!(self.ratio <= 1.0, "{arch}: {}", self.at);
    }
}

/// The weighting of the backward pass, `w[k] = ((k·7919) mod 1000)/500 − 1`, as the script.
pub fn loss_weights<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|k| (((k * 7919) % 1000) as f64 / 500.0 - 1.0) as f32)
        .collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

pub fn input(batch: usize, size: usize, device: &Device) -> Tensor<4> {
    let x: Vec<f32> = uniform("input", batch * 3 * size * size)
        .iter()
        .map(|&v| v as f32)
        .collect();
    Tensor::<4>::from_data(TensorData::new(x, [batch, 3, size, size]), device)
}

/// A zoo model on `device`, filled; checks its tensor names and shapes against PyTorch's.
pub fn filled(arch: &str, classes: usize, want: &Golden, device: &Device) -> models::Net {
    let mut filler = Filler::for_net();
    let net = models::build(arch, classes, device)
        .unwrap()
        .map(&mut filler);
    assert_eq!(filler.error, None, "{arch}: fill");
    filler.keys.sort();
    assert_eq!(filler.keys.len(), want.tensors, "{arch}: tensor count");
    let digest = format!("{:016x}", fnv1a(&filler.keys.join("\n")));
    assert_eq!(digest, want.keys_digest, "{arch}: tensor names/shapes");
    net
}

/// The eval pass's stages and logits against the recorded ones.
pub fn check_eval(arch: &str, out: ModelOutput, want: &EvalPass, values: &[f64]) -> Worst {
    let mut worst = Worst::default();
    assert_eq!(out.stages.len(), want.stages.len(), "{arch}: stage count");
    for (i, (stage, w)) in out.stages.into_iter().zip(&want.stages).enumerate() {
        worst.stage(&format!("eval stage {i}"), stage, w, values);
    }
    worst.full("eval logits", out.logits, &want.logits, values);
    worst
}

/// The train pass of `net` (on an autodiff device) on `x`: stages, logits, loss, and after the
/// backward the input gradient, the watched gradients and running statistics.
pub fn check_train(
    arch: &str,
    net: &models::Net,
    x: Tensor<4>,
    t: &TrainPass,
    values: &[f64],
) -> Worst {
    let device = x.device();
    let x = x.require_grad();
    let out = net.forward(x.clone());
    let mut worst = Worst::default();
    assert_eq!(out.stages.len(), t.stages.len(), "{arch}: stage count");
    let dims = out.logits.dims();
    let mut loss = out.logits.clone().mul(loss_weights(dims, &device)).sum();
    for (i, (stage, w)) in out.stages.iter().zip(&t.stages).enumerate() {
        let dims = stage.dims();
        loss = loss.add(stage.clone().mul(loss_weights(dims, &device)).mean());
        worst.stage(&format!("train stage {i}"), stage.clone(), w, values);
    }
    worst.full("train logits", out.logits, &t.logits, values);
    worst.compare("loss", &to_f64(loss.clone()), &[t.loss], t.loss_spread);

    let grads = loss.backward();
    let gx = x.grad(&grads).expect("input gradient");
    worst.full("input grad", gx, &t.input_grad, values);
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
            "{arch}: {kind} tensors found"
        );
        for (key, w) in want {
            let what = format!("{kind} {key}");
            let expected = slice(values, w.offset, w.len, &what);
            worst.compare(&what, &collected[key], expected, w.spread);
        }
    }
    worst
}

/// Flips the kernel of one convolution (correlation read as convolution): a wiring-like bug.
pub struct FlipKernel<'a> {
    pub path: ModulePath,
    pub key: &'a str,
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

/// How far three buggy versions of `arch` land from its fixture, in tolerances: its first
/// convolution's kernel flipped (eval logits), BatchNorm left in eval mode during the train pass
/// (train logits), and a backward that leaves out the stage terms of the loss (input gradient).
/// The fixture must record a train pass for `arch`.
pub fn buggy_ratios(arch: &str, fixture: &Fixture, values: &[f64]) -> Vec<(&'static str, f64)> {
    let mut rejected = Vec::new();
    let want = &fixture.models[arch];
    let t = want.train.as_ref().unwrap();
    let first_conv = t.grads.keys().find(|k| {
        let shape = &t.grads[*k].shape;
        shape.len() == 4 && shape[1] == 3
    });
    let first_conv = first_conv.expect("the first convolution's gradient is recorded");

    let device = meal::backend::device();
    let net = filled(arch, fixture.classes, want, &device).map(&mut FlipKernel {
        path: ModulePath::new(1),
        key: first_conv,
    });
    let out = net.forward(input(fixture.batch, fixture.input_size, &device));
    let mut worst = Worst::default();
    worst.full("eval logits", out.logits, &want.eval.logits, values);
    rejected.push(("flipped first kernel", worst.ratio));

    let out = filled(arch, fixture.classes, want, &device).forward(input(
        fixture.batch,
        fixture.input_size,
        &device,
    ));
    let mut worst = Worst::default();
    worst.full("train logits", out.logits, &t.logits, values);
    rejected.push(("BatchNorm in eval mode", worst.ratio));

    let device = meal::backend::autodiff_device();
    let net = filled(arch, fixture.classes, want, &device);
    let x = input(fixture.batch, fixture.input_size, &device).require_grad();
    let logits = net.forward(x.clone()).logits;
    let dims = logits.dims();
    let loss = logits.mul(loss_weights(dims, &device)).sum();
    let mut worst = Worst::default();
    worst.full(
        "input grad",
        x.grad(&loss.backward()).unwrap(),
        &t.input_grad,
        values,
    );
    rejected.push(("stage terms left out", worst.ratio));
    rejected
}
