//! One full MEAL step (`meal::distill::objective::step`) against PyTorch in each adversarial mode
//! (`tests/golden/step.json`, written by `scripts/golden/make_golden_step.py`, which documents the
//! setup): a resnet8 student distilled from a resnet8 + vgg8 ensemble (mean-softmax) on a batch
//! of 4, matching a pooled feature stage (γ 0.1, η 1) and the logits (γ 1, η 0.5) with the
//! reference discriminators, SGD momentum 0.9 / weight decay 5e-4, lr 0.1 / d_lr 0.01.
//!
//! Both sides fill every model with the deterministic stream of `tests/models_golden.rs` (keyed
//! by a prefix and the PyTorch module path); PyTorch computes in float64, burn in float32. Checked:
//! the teacher targets, the student features, the discriminator logits, the step's losses and D
//! accuracies, the change of every student tensor (parameters and BatchNorm running statistics;
//! sums and samples) and of every discriminator tensor (in full). Two tests pin the modes down
//! without PyTorch: grl's adversarial gradient is exactly the negation of joint's, and the
//! alternating D step does not reach the student.
//!
//! Five variants of the joint step change one thing each (documented in the script): the random
//! teacher draw (given the drawn index), eval-mode teachers (`freeze`), max pooling, MEAL V2's
//! single logits discriminator on the mean teacher logits, and the discriminator lr under a
//! decayed MultiStep schedule. Each must also miss the golden values when that one thing is
//! done the base way (or the other teacher drawn, or d_lr left unscaled).

mod golden_common;

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use golden_common::{load, shape_data, values};
use meal::data::Normalization;
use meal::distill::config::{AdversarialMode, Combine, MealConfig, StageSpec, TeacherBn};
use meal::distill::discriminator::DiscriminatorKind;
use meal::distill::objective::{self, Discriminators, MealState, StepStats, Teacher};
use meal::distill::pool::PoolKind;
use meal::distill::similarity::SimilarityKind;
use meal::distill::stages::{self, Participant, Stage, extract};
use meal::models::{self, Net, arch_info};
use meal::selftest::fill::{Filler, ModulePath, uniform};
use meal::train::optim::SgdSettings;
use meal::train::schedule::ScheduleConfig;
use serde_json::Value;

/// Relative tolerance of the changes over the step (float32 against float64); the observed
/// errors are about 3e-5 of a tensor's largest (or rms) change.
const RTOL: f64 = 1e-4;
/// Relative tolerance of the forward quantities (targets, features, logits); observed: ~1e-6.
const FORWARD_RTOL: f64 = 1e-5;
/// Relative tolerance of the losses; observed: ~1e-7.
const LOSS_RTOL: f64 = 1e-6;

/// The deterministic fill of tests/models_golden.rs (`meal::selftest::fill`) under a key prefix.
fn fill<M: Module>(module: M, prefix: &str, skip: usize) -> M {
    let mut filler = Filler::new(prefix, skip);
    let module = module.map(&mut filler);
    assert_eq!(filler.error, None, "fill {prefix}");
    module
}

/// Every tensor of a module (parameters and running statistics) by PyTorch key, in PyTorch
/// layout.
struct Collector {
    path: ModulePath,
    values: BTreeMap<String, Vec<f64>>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let mut t = param.val();
        if self.path.is_linear_weight() {
            t = t.swap_dims(0, 1);
        }
        self.values.insert(self.path.key(), values(t).1);
    }
}

/// The tensors of `module` after folding in pending running-statistics updates.
fn tensors<M: Module>(module: &M, skip: usize) -> BTreeMap<String, Vec<f64>> {
    let mut c = Collector {
        path: ModulePath::new(skip),
        values: BTreeMap::new(),
    };
    module.valid().visit(&mut c);
    c.values
}

// ---------------------------------------------------------------------------------------------
// The setup of make_golden_step.py.
// ---------------------------------------------------------------------------------------------

struct Setup {
    golden: Value,
    device: Device,
    x: Tensor<4>,
    teachers: Vec<Teacher>,
    /// The same teachers as the trainer freezes them for `teacher_bn = "eval"`.
    teachers_eval: Vec<Teacher>,
    disc_prefix: String,
    lr: f64,
    d_lr: f64,
    sgd: SgdSettings,
}

/// What one step did.
struct Outcome {
    stats: StepStats,
    logits: Tensor<2>,
    student_before: BTreeMap<String, Vec<f64>>,
    student_after: BTreeMap<String, Vec<f64>>,
    discs_before: BTreeMap<String, Vec<f64>>,
    discs_after: BTreeMap<String, Vec<f64>>,
}

impl Setup {
    fn new() -> Self {
        let golden = load("step.json");
        let device = meal::backend::autodiff_device();
        let cfg = &golden["config"];
        let batch = cfg["batch"].as_u64().unwrap() as usize;
        let x: Vec<f32> = uniform("step.input", batch * 3 * 32 * 32)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [batch, 3, 32, 32]), &device);
        let classes = cfg["classes"].as_u64().unwrap() as usize;
        let build_teachers = |bn: TeacherBn| -> Vec<Teacher> {
            cfg["teachers"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(k, arch)| {
                    let arch = arch.as_str().unwrap();
                    let net = models::build(arch, classes, &device).unwrap();
                    let net = fill(net, &format!("teacher{k}."), 1);
                    // As src/distill/trainer.rs: frozen weights; `Train` keeps BatchNorm on
                    // batch statistics, `Eval` (`freeze`) switches it to running statistics.
                    let net = match bn {
                        TeacherBn::Train => net.no_grad(),
                        TeacherBn::Eval => net.freeze(),
                    };
                    let n = Normalization::CIFAR10;
                    // On the inner device, as `meal distill` runs them.
                    Teacher::new(arch.into(), net, arch_info(arch).unwrap().stages, n, n)
                        .without_autodiff(bn)
                })
                .collect()
        };
        let teachers = build_teachers(TeacherBn::Train);
        let teachers_eval = build_teachers(TeacherBn::Eval);
        let f = |k: &str| cfg[k].as_f64().unwrap();
        let sgd = SgdSettings {
            momentum: f("momentum"),
            nesterov: false,
            weight_decay: f("weight_decay"),
        };
        Self {
            disc_prefix: cfg["disc_prefix"].as_str().unwrap().to_string(),
            lr: f("lr"),
            d_lr: f("d_lr"),
            sgd,
            device,
            x,
            teachers,
            teachers_eval,
            golden,
        }
    }

    fn config(&self, mode: AdversarialMode, zero_gamma: bool) -> MealConfig {
        let stages = self.golden["config"]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| StageSpec {
                index: s["index"].as_i64().unwrap(),
                out_dim: s["out_dim"].as_u64().map(|d| d as usize),
                gamma: if zero_gamma {
                    0.0
                } else {
                    s["gamma"].as_f64().unwrap()
                },
                eta: s["eta"].as_f64().unwrap(),
            })
            .collect();
        MealConfig {
            combine: Combine::MeanSoftmax,
            stages,
            pool: PoolKind::Avg,
            similarity: SimilarityKind::Ce,
            temperature: 1.0,
            alpha: 0.0,
            adversarial: mode,
            discriminator: DiscriminatorKind::Reference,
            d_lr: self.d_lr,
            d_weight_decay: None,
            ..MealConfig::default()
        }
    }

    fn student_arch(&self) -> &str {
        self.golden["config"]["student"].as_str().unwrap()
    }

    fn stages(&self, config: &MealConfig) -> Vec<Stage> {
        let arch = self.student_arch();
        let student = Participant {
            name: arch,
            stages: arch_info(arch).unwrap().stages,
        };
        let teachers: Vec<Participant> = self
            .teachers
            .iter()
            .map(|t| Participant {
                name: &t.name,
                stages: t.stages,
            })
            .collect();
        let classes = self.golden["config"]["classes"].as_u64().unwrap() as usize;
        stages::resolve(&config.stages, &student, &teachers, classes).unwrap()
    }

    fn chosen(&self) -> Vec<(usize, f64)> {
        objective::teacher_weights(Combine::MeanSoftmax, &[1.0, 1.0], |_| unreachable!())
    }

    /// A freshly filled student (every call gives its own running statistics).
    fn student(&self) -> Net {
        let classes = self.golden["config"]["classes"].as_u64().unwrap() as usize;
        let net = models::build(self.student_arch(), classes, &self.device).unwrap();
        fill(net, "student.", 1)
    }

    fn discs(&self, stages: &[Stage], config: &MealConfig) -> Discriminators {
        let discs = Discriminators::new(stages, config, &self.device).unwrap();
        fill(discs, &self.disc_prefix, 0)
    }

    fn run(&self, mode: AdversarialMode, zero_gamma: bool) -> Outcome {
        let config = self.config(mode, zero_gamma);
        let run = Run {
            teachers: &self.teachers,
            chosen: self.chosen(),
            sgd: self.sgd,
            lr: self.lr,
            d_lr: self.d_lr,
            disc_prefix: &self.disc_prefix,
        };
        self.run_with(&config, &run)
    }

    fn run_with(&self, config: &MealConfig, run: &Run) -> Outcome {
        let stages = self.stages(config);
        let state = MealState {
            student: self.student(),
            discs: fill(
                Discriminators::new(&stages, config, &self.device).unwrap(),
                run.disc_prefix,
                0,
            ),
            opt_student: run.sgd.init(),
            opt_discs: run.sgd.init(),
        };
        let student_before = tensors(&state.student, 1);
        let discs_before = tensors(&state.discs, 0);
        let batch = self.x.dims()[0];
        let labels = Tensor::<1, Int>::zeros([batch], &self.device);
        let (state, stats, logits) = objective::step(
            state,
            run.teachers,
            &run.chosen,
            &stages,
            config,
            self.x.clone(),
            labels,
            run.lr,
            run.d_lr,
        )
        .unwrap();
        let classes = logits.len() / batch;
        Outcome {
            stats,
            logits: Tensor::from_data(TensorData::new(logits, [batch, classes]), &self.device),
            student_after: tensors(&state.student, 1),
            discs_after: tensors(&state.discs, 0),
            student_before,
            discs_before,
        }
    }
}

/// What a step runs with, besides its `MealConfig`.
struct Run<'a> {
    teachers: &'a [Teacher],
    chosen: Vec<(usize, f64)>,
    sgd: SgdSettings,
    lr: f64,
    d_lr: f64,
    disc_prefix: &'a str,
}

// ---------------------------------------------------------------------------------------------
// Comparisons.
// ---------------------------------------------------------------------------------------------

/// The rounding of an updated float32 value: the change of a tensor element cannot be known
/// more precisely than this from two float32 snapshots.
fn ulp(before: f64, after: f64) -> f64 {
    f64::from(f32::EPSILON) * before.abs().max(after.abs())
}

/// The largest `error / tolerance` of a group of comparisons, and where it was.
#[derive(Default)]
struct Worst {
    ratio: f64,
    at: String,
}

impl Worst {
    fn see(&mut self, what: impl FnOnce() -> String, err: f64, tol: f64) {
        let ratio = err / tol;
        if ratio > self.ratio || self.at.is_empty() {
            self.ratio = ratio;
            self.at = format!("{} (error {err:e}, tolerance {tol:e})", what());
        }
    }

    /// Panics unless every comparison was within its tolerance.
    fn assert_ok(&self, group: &str) {
        assert!(self.ratio <= 1.0, "{group}: {}", self.at);
    }
}

/// Every element against a full JSON tensor: `|a − e| ≤ rtol · max|e| + slack[i]`.
fn check_full(
    what: &str,
    actual: &[f64],
    expected: &Value,
    rtol: f64,
    slack: &[f64],
    worst: &mut Worst,
) {
    let (_, e) = shape_data(expected);
    assert_eq!(actual.len(), e.len(), "{what}: length");
    let scale = e.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    for (i, (&a, &e)) in actual.iter().zip(&e).enumerate() {
        let tol = rtol * scale + slack.get(i).copied().unwrap_or(0.0);
        worst.see(
            || format!("{what}[{i}]: got {a}, PyTorch {e}"),
            (a - e).abs(),
            tol,
        );
    }
}

fn check_tensor<const D: usize>(what: &str, actual: Tensor<D>, expected: &Value) -> Worst {
    let (shape, _) = shape_data(expected);
    assert_eq!(actual.dims().to_vec(), shape, "{what}: shape");
    let a: Vec<f64> = actual
        .try_into_vec_as::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let mut worst = Worst::default();
    check_full(what, &a, expected, FORWARD_RTOL, &[], &mut worst);
    worst.assert_ok(what);
    worst
}

fn check_rel(what: &str, actual: f64, expected: f64, worst: &mut Worst) {
    let tol = LOSS_RTOL * expected.abs().max(1e-30);
    worst.see(
        || format!("{what}: got {actual}, PyTorch {expected}"),
        (actual - expected).abs(),
        tol,
    );
}

/// The change of one tensor over the step against its JSON summary (or full data): sum, sum of
/// |x| and sum of squares relative to their scale, samples relative to the tensor's rms change,
/// each with the float32 rounding of the updated values as slack.
fn check_delta(what: &str, before: &[f64], after: &[f64], expected: &Value, worst: &mut Worst) {
    assert_eq!(before.len(), after.len(), "{what}: length");
    let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let slack: Vec<f64> = before.iter().zip(after).map(|(&b, &a)| ulp(b, a)).collect();
    let shape: Vec<usize> = expected["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        shape.iter().product::<usize>(),
        delta.len(),
        "{what}: shape"
    );
    if expected.get("data").is_some() {
        return check_full(what, &delta, expected, RTOL, &slack, worst);
    }
    let n = delta.len();
    let f = |k: &str| expected[k].as_f64().unwrap();
    let (sum, sumsq, sum_abs) = (f("sum"), f("sumsq"), f("sum_abs"));
    let total_slack: f64 = slack.iter().sum();
    let mut close = |part: &str, a: f64, e: f64, scale: f64, slack: f64| {
        let tol = RTOL * scale + slack;
        worst.see(
            || format!("{what} {part}: got {a}, PyTorch {e}"),
            (a - e).abs(),
            tol,
        );
    };
    close("sum", delta.iter().sum(), sum, sum_abs, total_slack);
    let abs_sum = delta.iter().map(|d| d.abs()).sum();
    close("sum |x|", abs_sum, sum_abs, sum_abs, total_slack);
    let sq_slack: f64 = delta
        .iter()
        .zip(&slack)
        .map(|(d, s)| 2.0 * d.abs() * s)
        .sum();
    let sq_sum = delta.iter().map(|d| d * d).sum();
    close("sum x²", sq_sum, sumsq, sumsq, sq_slack);
    let rms = (sumsq / n as f64).sqrt();
    let samples = expected["samples"].as_array().unwrap();
    let k = samples.len();
    for (j, e) in samples.iter().enumerate() {
        let i = (j * (n - 1)) / (k - 1);
        let e = e.as_f64().unwrap();
        close(
            &format!("sample {j} (element {i})"),
            delta[i],
            e,
            rms,
            slack[i],
        );
    }
}

/// Every student tensor's change against one mode's golden values.
fn check_student(name: &str, o: &Outcome, expected: &Value) -> (Worst, Worst) {
    let student = expected["student"].as_object().unwrap();
    assert_eq!(
        o.student_before.keys().collect::<Vec<_>>(),
        student.keys().collect::<Vec<_>>(),
        "{name}: student tensors"
    );
    let (mut params, mut running) = (Worst::default(), Worst::default());
    for (key, want) in student {
        let worst = if key.contains("running_") {
            &mut running
        } else {
            &mut params
        };
        let what = format!("{name} student {key}");
        check_delta(
            &what,
            &o.student_before[key],
            &o.student_after[key],
            want,
            worst,
        );
    }
    (params, running)
}

/// Every discriminator tensor's change (in full) against one step's golden values.
fn check_discs(name: &str, o: &Outcome, expected: &Value) -> Worst {
    let want = expected["discs"].as_object().unwrap();
    assert_eq!(
        o.discs_before.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{name}: discriminator tensors"
    );
    let mut worst = Worst::default();
    for (key, want) in want {
        let (before, after) = (&o.discs_before[key], &o.discs_after[key]);
        let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        let slack: Vec<f64> = before.iter().zip(after).map(|(&b, &a)| ulp(b, a)).collect();
        check_full(
            &format!("{name} D {key}"),
            &delta,
            want,
            RTOL,
            &slack,
            &mut worst,
        );
    }
    worst
}

fn mode_name(mode: AdversarialMode) -> &'static str {
    match mode {
        AdversarialMode::Joint => "joint",
        AdversarialMode::Grl => "grl",
        AdversarialMode::Alternating => "alternating",
        AdversarialMode::None => "none",
    }
}

const MODES: [AdversarialMode; 4] = [
    AdversarialMode::Joint,
    AdversarialMode::Grl,
    AdversarialMode::Alternating,
    AdversarialMode::None,
];

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

/// The inputs of the objective: teacher targets (mean-softmax of two train-mode teachers), the
/// student's pooled feature and logits, and the discriminators' logits on [student; teacher].
#[test]
fn targets_features_and_discriminator_logits_match_pytorch() {
    let setup = Setup::new();
    let g = &setup.golden;
    let config = setup.config(AdversarialMode::Joint, false);
    let stages = setup.stages(&config);
    let mut report = Vec::new();

    let targets =
        objective::teacher_targets(&setup.teachers, &setup.chosen(), &setup.x, &stages, &config);
    let expected = g["targets"].as_array().unwrap();
    assert_eq!(targets.len(), expected.len());
    for (j, (t, e)) in targets.iter().zip(expected).enumerate() {
        let raw = check_tensor(&format!("stage {j} raw"), t.raw.clone(), &e["raw"]);
        report.push((format!("teacher target raw, stage {j}"), raw));
        let probs = check_tensor(&format!("stage {j} probs"), t.probs.clone(), &e["probs"]);
        report.push((format!("teacher target probs, stage {j}"), probs));
    }

    let student = setup.student();
    let out = student.forward(setup.x.clone());
    let feats: Vec<Tensor<2>> = stages
        .iter()
        .map(|s| extract(&out, s.student_pos, s, config.pool))
        .collect();
    let expected = g["student_features"].as_array().unwrap();
    for (j, (f, e)) in feats.iter().zip(expected).enumerate() {
        let w = check_tensor(&format!("student stage {j}"), f.clone(), e);
        report.push((format!("student output, stage {j}"), w));
    }

    let discs = setup.discs(&stages, &config);
    let expected = g["d_logits"].as_array().unwrap();
    assert_eq!(discs.list.len(), expected.len());
    for (j, (d, e)) in discs.list.iter().zip(expected).enumerate() {
        let logits = d.forward(Tensor::cat(
            vec![feats[j].clone(), targets[j].raw.clone()],
            0,
        ));
        let w = check_tensor(&format!("D{j} logits"), logits, e);
        report.push((format!("discriminator {j} logits"), w));
    }
    for (group, w) in report {
        println!("{group}: largest error / tolerance {:.3}", w.ratio);
    }
}

/// One `step` per mode: losses, D accuracies, the returned logits, and the change of every
/// student and discriminator tensor. Each mode's student change is also compared with the other
/// modes' golden values, which it must miss by far: the test tells the modes apart.
#[test]
fn one_step_matches_pytorch_in_every_mode() {
    let setup = Setup::new();
    let g = &setup.golden;
    let outcomes: Vec<Outcome> = MODES.iter().map(|&m| setup.run(m, false)).collect();
    let mut report = Vec::new();
    for (&mode, o) in MODES.iter().zip(&outcomes) {
        let name = mode_name(mode);
        let e = &g["modes"][name];
        let mut losses = Worst::default();
        check_rel(
            &format!("{name} sim"),
            o.stats.sim,
            e["sim"].as_f64().unwrap(),
            &mut losses,
        );
        if mode == AdversarialMode::None {
            assert_eq!(o.stats.adv, 0.0);
        } else {
            let adv = e["adv"].as_f64().unwrap();
            check_rel(&format!("{name} adv"), o.stats.adv, adv, &mut losses);
        }
        losses.assert_ok("losses");
        assert_eq!(o.stats.ce, 0.0, "{name}: no label term");
        let acc = [
            ("d_acc_student", o.stats.d_acc_student),
            ("d_acc_teacher", o.stats.d_acc_teacher),
        ];
        for (k, got) in acc {
            assert_eq!(got, e[k].as_f64().unwrap(), "{name} {k}");
        }
        let what = format!("{name} returned logits");
        let logits = check_tensor(&what, o.logits.clone(), &g["student_features"][1]);

        let (params, running) = check_student(name, o, e);
        params.assert_ok("student parameters");
        running.assert_ok("student running statistics");

        let mut discs = Worst::default();
        if mode == AdversarialMode::None {
            assert!(o.discs_before.is_empty(), "none: no discriminators");
        } else {
            discs = check_discs(name, o, e);
            discs.assert_ok("discriminators");
        }

        // Against the other modes' values: every one must be missed by a wide margin.
        let mut nearest = f64::INFINITY;
        for &other in MODES.iter().filter(|&&m| m != mode) {
            let (w, _) = check_student(name, o, &g["modes"][mode_name(other)]);
            assert!(
                w.ratio > 10.0,
                "{name}'s step is within {:.2} tolerances of {}'s golden values",
                w.ratio,
                mode_name(other)
            );
            nearest = nearest.min(w.ratio);
        }
        report.push((
            name,
            losses.ratio,
            logits.ratio,
            params.ratio,
            running.ratio,
            discs.ratio,
            nearest,
        ));
    }
    println!(
        "largest error / tolerance: losses, logits, student params, running stats, D; nearest other mode"
    );
    for (name, l, z, p, r, d, n) in report {
        println!("  {name:<12} {l:.3} {z:.3} {p:.3} {r:.3} {d:.3}; {n:.0}");
    }
}

/// With γ = 0 the student learns from the adversarial term alone, and GRL only flips the sign
/// of the gradient that reaches it: joint's and grl's student changes add up to the weight-decay
/// part `−2·lr·wd·θ` (exactly, up to the float32 rounding of the updated values), while the
/// discriminators change identically.
#[test]
fn grl_negates_the_adversarial_gradient_of_joint() {
    let setup = Setup::new();
    let joint = setup.run(AdversarialMode::Joint, true);
    let grl = setup.run(AdversarialMode::Grl, true);
    assert_eq!(joint.stats.sim, 0.0);
    assert_eq!(joint.stats.adv, grl.stats.adv);
    let decay = 2.0 * setup.lr * setup.sgd.weight_decay;
    let (mut adversarial, mut slack_total) = (0.0f64, 0.0f64);
    for (key, before) in &joint.student_before {
        assert_eq!(before, &grl.student_before[key]);
        let (a, b) = (&joint.student_after[key], &grl.student_after[key]);
        if key.contains("running_") {
            assert_eq!(a, b, "{key}: the forward pass is the same");
            continue;
        }
        for i in 0..before.len() {
            let (dj, dg) = (a[i] - before[i], b[i] - before[i]);
            let slack = 2.0 * (ulp(before[i], a[i]) + ulp(before[i], b[i]));
            let sum = dj + dg + decay * before[i];
            assert!(
                sum.abs() <= slack,
                "{key}[{i}]: joint change {dj:e} + grl change {dg:e} != -2·lr·wd·θ = {:e}",
                -decay * before[i]
            );
            adversarial += (dj - dg).abs();
            slack_total += slack;
        }
    }
    // The adversarial gradient is far above the rounding (the check above is not vacuous).
    println!(
        "sum |joint − grl change| {adversarial:e}, {:.0}× the rounding slack",
        adversarial / slack_total
    );
    assert!(
        adversarial > 100.0 * slack_total,
        "adversarial change {adversarial:e} vs rounding {slack_total:e}"
    );
    assert_eq!(joint.discs_before, grl.discs_before);
    for (key, a) in &joint.discs_after {
        assert_eq!(
            a, &grl.discs_after[key],
            "D {key}: GRL is the identity forward"
        );
        assert_ne!(
            a, &joint.discs_before[key],
            "D {key}: D trains in both modes"
        );
    }
}

/// The alternating D step is computed on detached student outputs: its loss gives gradients to
/// every discriminator tensor and to no student parameter (without the detach it would reach
/// the student, so the check can fail).
#[test]
fn alternating_discriminator_step_does_not_reach_the_student() {
    let setup = Setup::new();
    let config = setup.config(AdversarialMode::Alternating, false);
    let stages = setup.stages(&config);
    let targets =
        objective::teacher_targets(&setup.teachers, &setup.chosen(), &setup.x, &stages, &config);
    let student = setup.student();
    let discs = setup.discs(&stages, &config);
    let n_student = tensors(&student, 1)
        .keys()
        .filter(|k| !k.contains("running_"))
        .count();
    let n_discs = tensors(&discs, 0).len();
    for detach in [true, false] {
        let out = student.forward(setup.x.clone());
        let feats: Vec<Tensor<2>> = stages
            .iter()
            .map(|s| extract(&out, s.student_pos, s, config.pool))
            .collect();
        let (loss, _) =
            objective::discriminator_loss(&discs, &feats, &targets, &stages, false, detach)
                .unwrap();
        let mut grads = loss.expect("a D loss").backward();
        let gs = GradientsParams::from_module(&mut grads, &student);
        let gd = GradientsParams::from_module(&mut grads, &discs);
        assert_eq!(
            gd.len(),
            n_discs,
            "detach = {detach}: every D tensor learns"
        );
        let expected = if detach { 0 } else { n_student };
        assert_eq!(gs.len(), expected, "detach = {detach}: student gradients");
    }
}

// ---------------------------------------------------------------------------------------------
// The variants of make_golden_step.py: one joint step each, one thing changed from the setup.
// ---------------------------------------------------------------------------------------------

struct Variant {
    name: &'static str,
    /// `Some(k)`: combine = random, with teacher `k` drawn.
    draw: Option<usize>,
    teacher_bn: TeacherBn,
    pool: PoolKind,
    /// MEAL V2 as coded: one logits stage (γ = η = 1), d_lr 0.01, weight decay 0, the regime
    /// schedule of recipes/meal-v2.toml.
    v2: bool,
    /// V1's MultiStepLR with its first milestone passed (both lrs ×0.1).
    milestone_passed: bool,
}

const BASE: Variant = Variant {
    name: "",
    draw: None,
    teacher_bn: TeacherBn::Train,
    pool: PoolKind::Avg,
    v2: false,
    milestone_passed: false,
};

const VARIANTS: [Variant; 5] = [
    Variant {
        name: "random_draw",
        draw: Some(1),
        ..BASE
    },
    Variant {
        name: "eval_teachers",
        teacher_bn: TeacherBn::Eval,
        ..BASE
    },
    Variant {
        name: "max_pool",
        pool: PoolKind::Max,
        ..BASE
    },
    Variant {
        name: "v2",
        teacher_bn: TeacherBn::Eval,
        v2: true,
        ..BASE
    },
    Variant {
        name: "d_lr_schedule",
        milestone_passed: true,
        ..BASE
    },
];

impl Variant {
    fn config(&self, setup: &Setup) -> MealConfig {
        let mut c = setup.config(AdversarialMode::Joint, false);
        c.combine = match self.draw {
            Some(_) => Combine::Random,
            None => Combine::MeanSoftmax,
        };
        c.teacher_bn = self.teacher_bn;
        c.pool = self.pool;
        if self.v2 {
            c.stages = vec![StageSpec {
                index: -1,
                out_dim: None,
                gamma: 1.0,
                eta: 1.0,
            }];
            c.d_lr = 0.01;
        }
        c
    }

    /// The base lr and the schedule of the run.
    fn schedule(&self, setup: &Setup) -> (f64, ScheduleConfig) {
        if self.v2 {
            let intervals = vec![(0, 100, 0.01), (101, 300, 0.001)];
            (0.01, ScheduleConfig::Regime { intervals })
        } else if self.milestone_passed {
            let schedule = ScheduleConfig::Multistep {
                milestones: vec![1],
                gamma: 0.1,
                warmup_epochs: 0,
                reference_step_first: true,
            };
            (setup.lr, schedule)
        } else {
            (setup.lr, ScheduleConfig::Constant { warmup_epochs: 0 })
        }
    }

    /// The student's and the discriminators' lr in the first epoch, derived as
    /// src/distill/trainer.rs does: `d_lr` follows the student's schedule factor.
    fn lrs(&self, setup: &Setup, config: &MealConfig) -> (f64, f64) {
        let (base, schedule) = self.schedule(setup);
        let lr = schedule.lr(base, 0, 0.0, 2);
        let d_lr = if config.d_lr_follows_schedule {
            config.d_lr * lr / base
        } else {
            config.d_lr
        };
        (lr, d_lr)
    }

    fn teachers<'a>(&self, setup: &'a Setup) -> &'a [Teacher] {
        match self.teacher_bn {
            TeacherBn::Train => &setup.teachers,
            TeacherBn::Eval => &setup.teachers_eval,
        }
    }

    fn chosen(&self, config: &MealConfig, draw: usize) -> Vec<(usize, f64)> {
        objective::teacher_weights(config.combine, &[1.0, 1.0], |n| {
            assert_eq!(n, 2, "a draw among the two teachers");
            draw
        })
    }

    /// One step; `draw` and `d_lr` replace the variant's own when given (to show that the
    /// golden values tell them apart).
    fn run(&self, setup: &Setup, draw: Option<usize>, d_lr: Option<f64>) -> Outcome {
        let config = self.config(setup);
        let (lr, own_d_lr) = self.lrs(setup, &config);
        let weight_decay = if self.v2 { 0.0 } else { setup.sgd.weight_decay };
        let disc_prefix = setup.golden["variants"][self.name]["disc_prefix"]
            .as_str()
            .unwrap()
            .to_string();
        let run = Run {
            teachers: self.teachers(setup),
            chosen: self.chosen(&config, draw.or(self.draw).unwrap_or(0)),
            sgd: SgdSettings {
                weight_decay,
                ..setup.sgd
            },
            lr,
            d_lr: d_lr.unwrap_or(own_d_lr),
            disc_prefix: &disc_prefix,
        };
        setup.run_with(&config, &run)
    }
}

/// Each variant against PyTorch: the lrs the schedule gives, the teacher targets (of the drawn
/// teacher; of eval-mode teachers through `freeze`, which must switch BatchNorm to running
/// statistics; of max pooling; of V2's mean logits), the losses, the D accuracies and the change
/// of every student and discriminator tensor. Each variant's golden values must also reject
/// the base setup's step, and: drawing the other teacher, and a D lr that ignores the schedule.
#[test]
fn variants_match_pytorch_and_are_told_apart() {
    let setup = Setup::new();
    let g = &setup.golden;
    let variants = g["variants"].as_object().unwrap();
    assert_eq!(variants.len(), VARIANTS.len());
    let base = setup.run(AdversarialMode::Joint, false);
    let mut report = Vec::new();
    for v in &VARIANTS {
        let name = v.name;
        let e = &variants[name];
        let config = v.config(&setup);
        let (lr, d_lr) = v.lrs(&setup, &config);
        for (what, got, key) in [("lr", lr, "lr"), ("d_lr", d_lr, "d_lr")] {
            let want = e[key].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want,
                "{name}: {what} {got}, PyTorch's optimizer group {want}"
            );
        }
        let stages = setup.stages(&config);
        let chosen = v.chosen(&config, v.draw.unwrap_or(0));
        let targets =
            objective::teacher_targets(v.teachers(&setup), &chosen, &setup.x, &stages, &config);
        let expected = e["targets"].as_array().unwrap();
        assert_eq!(targets.len(), expected.len(), "{name}: stages");
        let mut forward = Worst::default();
        for (j, (t, want)) in targets.iter().zip(expected).enumerate() {
            for (part, got) in [("raw", &t.raw), ("probs", &t.probs)] {
                let w = check_tensor(
                    &format!("{name} target {j} {part}"),
                    got.clone(),
                    &want[part],
                );
                if w.ratio >= forward.ratio {
                    forward = w;
                }
            }
        }

        let o = v.run(&setup, None, None);
        let mut losses = Worst::default();
        check_rel(
            &format!("{name} sim"),
            o.stats.sim,
            e["sim"].as_f64().unwrap(),
            &mut losses,
        );
        check_rel(
            &format!("{name} adv"),
            o.stats.adv,
            e["adv"].as_f64().unwrap(),
            &mut losses,
        );
        losses.assert_ok("losses");
        assert_eq!(
            o.stats.d_acc_student,
            e["d_acc_student"].as_f64().unwrap(),
            "{name}"
        );
        assert_eq!(
            o.stats.d_acc_teacher,
            e["d_acc_teacher"].as_f64().unwrap(),
            "{name}"
        );
        let logits = &e["student_features"].as_array().unwrap().last().unwrap();
        check_tensor(&format!("{name} returned logits"), o.logits.clone(), logits);
        let (params, running) = check_student(name, &o, e);
        params.assert_ok("student parameters");
        running.assert_ok("student running statistics");
        let discs = check_discs(name, &o, e);
        discs.assert_ok("discriminators");

        // The base step differs in the one thing the variant changes: the golden values see it.
        let (against_base, _) = check_student(name, &base, e);
        let mut missed = vec![("base step", against_base.ratio)];
        if v.draw.is_some() {
            let other = v.run(&setup, Some(0), None);
            missed.push(("teacher 0 drawn", check_student(name, &other, e).0.ratio));
        }
        if v.milestone_passed {
            // The student alone cannot tell (same lr): the discriminators' change must.
            let unscaled = v.run(&setup, None, Some(config.d_lr));
            check_student(name, &unscaled, e)
                .0
                .assert_ok("student with unscaled d_lr");
            missed.push(("d_lr not scaled", check_discs(name, &unscaled, e).ratio));
        }
        for &(what, ratio) in &missed {
            assert!(
                ratio > 10.0,
                "{name}: the {what} is within {ratio:.2} tolerances of the golden values"
            );
        }
        report.push((
            name,
            forward.ratio,
            losses.ratio,
            params.ratio,
            running.ratio,
            discs.ratio,
            missed,
        ));
    }
    println!(
        "largest error / tolerance: targets, losses, student params, running stats, D; missed by"
    );
    for (name, t, l, p, r, d, missed) in report {
        let missed: Vec<String> = missed.iter().map(|(w, x)| format!("{w} {x:.0}")).collect();
        println!(
            "  {name:<14} {t:.3} {l:.3} {p:.3} {r:.3} {d:.3}; {}",
            missed.join(", ")
        );
    }
}
