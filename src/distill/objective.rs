//! The MEAL objective (spec §1.1, §1.8, §4.1): teacher targets, the γ-weighted similarity
//! loss, the η-weighted discriminator loss in its three adversarial modes, and one update.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor};

use super::adversarial::{
    accuracy_of_rows, bce_with_logits, discriminator_accuracy, discriminator_targets,
};
use super::config::{AdversarialMode, Combine, MealConfig, TeacherBn};
use super::discriminator::{DInput, Discriminator, DiscriminatorConfig};
use super::grl::gradient_reversal;
use super::similarity::{TeacherTarget, similarity, teacher_probs};
use super::stages::{Stage, extract_matched};
use crate::backend::limits::{Preflight, param_sizes};
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::models::Net;
use crate::train::evaluate::Renorm;
use crate::train::optim::SgdSettings;
use crate::train::readback::{Readback, Slot, Values};
use crate::train::tensors::cross_entropy;

/// One discriminator per matched stage, as one module so that one optimizer holds them.
#[derive(Module, Debug)]
pub struct Discriminators {
    pub list: Vec<Discriminator>,
}

impl Discriminators {
    pub fn new(
        stages: &[Stage],
        config: &MealConfig,
        device: &burn::tensor::Device,
    ) -> Result<Self> {
        if config.adversarial == AdversarialMode::None {
            return Ok(Self { list: Vec::new() });
        }
        let init = || {
            stages
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    DiscriminatorConfig::new(s.dim, config.discriminator)
                        .with_divisor(config.d_width_divisor)
                        .try_init(device)
                        .map_err(|e| Error::Config(format!("meal.stages[{i}]: {e}")))
                })
                .collect::<Result<Vec<_>>>()
                .map(|list| crate::backend::drawn(Self { list }))
        };
        crate::backend::unseeded(init)
    }

    /// Adds to `check` the parameters the discriminators of `stages` will have when
    /// [`new`](Self::new) builds them (before any folding, which reads the full first layer),
    /// without allocating them, each with what to change when it does not fit. `set` is how the
    /// command takes a MEAL key: `--set meal.` for `meal distill`, `--set ` for `meal bench`.
    pub fn preflight(check: &mut Preflight, stages: &[Stage], config: &MealConfig, set: &str) {
        if config.adversarial == AdversarialMode::None {
            return;
        }
        let k = config.d_width_divisor;
        for (j, s) in stages.iter().enumerate() {
            let built = DiscriminatorConfig::new(s.dim, config.discriminator)
                .with_divisor(k)
                // flex: the shapes cost no device memory, and a lazy parameter is never drawn.
                .try_init(&burn::tensor::Device::flex());
            // A width the divisor cannot take is refused by `new`, naming the stage.
            let Ok(d) = built else { continue };
            // A stage's pooled length is a key of a distillation config; a bench workload's
            // stages are fixed.
            let feature = !s.is_logits() && set == "--set meal.";
            let (dim, set) = (s.dim, set.to_string());
            check.add(
                param_sizes(&format!("discriminators.list.{j}"), &d),
                move |_, limit| discriminator_advice(j, dim, k, feature, &set, limit),
            );
        }
    }

    /// Folds the discriminator of every stage that has map lengths (see [`fold_lengths`]):
    /// its first layer is trained in the folded space from now on ([`FoldedLinear`]).
    ///
    /// [`FoldedLinear`]: super::folded::FoldedLinear
    pub fn fold(self, lengths: &[Option<Vec<usize>>], sgd: &SgdSettings) -> Self {
        let list = self
            .list
            .into_iter()
            .zip(lengths)
            .map(|(d, l)| match l {
                Some(l) => d.fold(l, sgd),
                None => d,
            })
            .collect();
        Self { list }
    }

    /// One optimizer step over all discriminators, then the folded layers' scalars.
    pub fn step(self, opt: &mut ModuleOptimizer, lr: f64, grads: GradientsParams) -> Result<Self> {
        let list = opt.step(lr, self, grads).list;
        Ok(Self {
            list: list
                .into_iter()
                .map(|d| d.after_step(lr))
                .collect::<Result<_>>()?,
        })
    }

    fn folded(&self, stage: usize) -> bool {
        self.list.get(stage).is_some_and(|d| d.folded.is_some())
    }
}

/// What makes the discriminator of stage `j` (input width `dim`, narrowing by `k`) fit in
/// `limit` bytes: its first layer, `dim × dim/k` values, is the largest.
fn discriminator_advice(
    j: usize,
    dim: usize,
    k: usize,
    feature: bool,
    set: &str,
    limit: u64,
) -> String {
    let bytes = |d: usize, k: usize| (d as u64) * ((d / k.max(1)) as u64) * 4;
    let mut ways = Vec::new();
    if let Some(k2) = (k + 1..=dim).find(|&k2| bytes(dim, k2) <= limit) {
        ways.push(format!(
            "`{set}d_width_divisor={k2}` (layers {dim} → {} → …)",
            dim / k2
        ));
    }
    if feature && let Some(d2) = (1..dim).rev().find(|&d2| bytes(d2, k) <= limit) {
        ways.push(format!("meal.stages[{j}].out_dim = {d2} or less"));
    }
    let fit = if ways.is_empty() {
        String::new()
    } else {
        format!(
            "it fits with {} (a departure from the reference's discriminator); ",
            ways.join(" or ")
        )
    };
    format!(
        "the discriminator of meal.stages[{j}] is {dim} → {} → … wide; {fit}or use a device \
         with a larger limit (discrete GPUs under Vulkan bind up to 4 GiB) or --device flex",
        dim / k.max(1)
    )
}

/// For every stage whose discriminator can be trained in the folded space, the distinct
/// lengths of the channel-mean maps that reach it, student's first: a feature stage with
/// average pooling that lengthens the map of every participant (`H·W < out_dim`). `None`
/// elsewhere, and everywhere when `meal.fold_discriminators` is off or there is no
/// discriminator. The map sizes come from one forward pass of each model on two blank images of
/// `input` shape (`[C, H, W]`), without gradients or BatchNorm updates of the student.
pub fn fold_lengths(
    student: &Net,
    teachers: &[Teacher],
    stages: &[Stage],
    config: &MealConfig,
    input: [usize; 3],
    device: &burn::tensor::Device,
) -> Vec<Option<Vec<usize>>> {
    let candidate = |s: &Stage| {
        config.fold_discriminators
            && config.adversarial != AdversarialMode::None
            && config.pool == super::pool::PoolKind::Avg
            && s.out_dim.is_some()
    };
    if !stages.iter().any(candidate) || teachers.is_empty() {
        return vec![None; stages.len()];
    }
    let [c, h, w] = input;
    let x = Tensor::<4>::zeros([2, c, h, w], device);
    let map_len = |t: &Tensor<4>| {
        let [_, _, h, w] = t.dims();
        h * w
    };
    let own = if x.device().is_autodiff() {
        student.valid().forward(x.clone().inner())
    } else {
        student.forward(x.clone())
    };
    let theirs: Vec<_> = teachers.iter().map(|t| t.forward(&x)).collect();
    stages
        .iter()
        .map(|s| {
            let d = s.out_dim.filter(|_| candidate(s))?;
            let mut lengths = vec![map_len(&own.stages[s.student_pos])];
            for (out, &pos) in theirs.iter().zip(&s.teacher_pos) {
                let l = map_len(&out.stages[pos]);
                if !lengths.contains(&l) {
                    lengths.push(l);
                }
            }
            lengths.iter().all(|&l| l < d).then_some(lengths)
        })
        .collect()
}

/// A frozen teacher. When its normalisation differs from the dataset's, its input is
/// re-normalised per channel, so teachers of mixed origin see what they were trained on.
pub struct Teacher {
    pub name: String,
    pub net: Net,
    pub stages: usize,
    renorm: Option<Renorm>,
    /// Set by [`Teacher::without_autodiff`]: the net lives on the inner device, and runs on
    /// batch statistics when `Some(Train)`.
    inner: Option<TeacherBn>,
}

impl Teacher {
    pub fn new(
        name: String,
        net: Net,
        stages: usize,
        data: Normalization,
        own: Normalization,
    ) -> Self {
        Self {
            name,
            net,
            stages,
            renorm: Renorm::between(data, own),
            inner: None,
        }
    }

    /// The same teacher on the inner (non-autodiff) device: its outputs are constants of the
    /// step anyway, so recording its operations for a backward pass is wasted work. `bn` keeps
    /// its BatchNorm semantics: `Train` normalises with the batch's statistics and updates the
    /// running buffers (of the teacher's own copy of them) exactly as on the autodiff device;
    /// `Eval` uses the running statistics.
    pub fn without_autodiff(self, bn: TeacherBn) -> Self {
        Self {
            net: self.net.valid(),
            inner: Some(bn),
            ..self
        }
    }

    /// The teacher's outputs, on the device of `x`.
    pub fn forward(&self, x: &Tensor<4>) -> crate::models::ModelOutput {
        let Some(bn) = self.inner else {
            return self.net.forward(self.renormed(x.clone()));
        };
        let back = x.device().is_autodiff();
        let xi = self.renormed(x.clone().inner());
        let out = match bn {
            TeacherBn::Train => {
                crate::models::layers::with_batch_statistics(|| self.net.forward(xi))
            }
            TeacherBn::Eval => self.net.forward(xi),
        };
        if !back {
            return out;
        }
        crate::models::ModelOutput {
            stages: out.stages.into_iter().map(Tensor::from_inner).collect(),
            logits: Tensor::from_inner(out.logits),
        }
    }

    fn renormed(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.renorm {
            None => x,
            Some(r) => r.apply(x),
        }
    }
}

/// Where the teachers' outputs for a batch come from.
#[derive(Clone, Copy)]
pub enum TeacherSource<'a> {
    /// The frozen teachers run on the batch.
    Live(&'a [Teacher]),
    /// Each teacher's logits for exactly the images of the batch, `(N, classes)`, read from a
    /// soft-label store; only the logits stage can be served this way. `None` for a teacher
    /// that no chosen weight needs.
    Logits(&'a [Option<Tensor<2>>]),
}

impl TeacherSource<'_> {
    fn output(&self, k: usize, x: &Tensor<4>) -> crate::models::ModelOutput {
        match self {
            TeacherSource::Live(teachers) => teachers[k].forward(x),
            TeacherSource::Logits(logits) => crate::models::ModelOutput {
                stages: Vec::new(),
                logits: logits[k]
                    .clone()
                    .expect("the logits of every chosen teacher are given"),
            },
        }
    }
}

/// Which teachers speak for this batch, with weights summing to one.
pub fn teacher_weights(
    combine: Combine,
    weights: &[f64],
    draw: impl FnOnce(usize) -> usize,
) -> Vec<(usize, f64)> {
    match combine {
        Combine::Random => vec![(draw(weights.len()), 1.0)],
        Combine::MeanSoftmax => {
            let w = 1.0 / weights.len() as f64;
            (0..weights.len()).map(|i| (i, w)).collect()
        }
        Combine::Weighted => {
            let total: f64 = weights.iter().sum();
            weights
                .iter()
                .enumerate()
                .filter(|(_, w)| **w > 0.0)
                .map(|(i, w)| (i, w / total))
                .collect()
        }
    }
}

/// Teacher targets for every stage: raw = Σ w·output, probs = Σ w·softmax(output/T). The mean
/// of probabilities, not the softmax of mean logits (spec §7).
pub fn teacher_targets(
    teachers: &[Teacher],
    chosen: &[(usize, f64)],
    x: &Tensor<4>,
    stages: &[Stage],
    config: &MealConfig,
) -> Vec<TeacherTarget> {
    teacher_targets_with_maps(teachers, chosen, x, stages, config, false).0
}

/// [`teacher_targets`], and with `fold` for every stage the combined channel-mean maps
/// Σ w·map that pool to `raw` (pooling is linear), grouped by length: one map per distinct
/// length, or `None` where some chosen teacher has none (see [`extract_matched`]).
pub fn teacher_targets_with_maps(
    teachers: &[Teacher],
    chosen: &[(usize, f64)],
    x: &Tensor<4>,
    stages: &[Stage],
    config: &MealConfig,
    fold: bool,
) -> (Vec<TeacherTarget>, Vec<Option<Vec<Tensor<2>>>>) {
    targets_from(
        TeacherSource::Live(teachers),
        chosen,
        x,
        stages,
        config,
        fold,
    )
}

fn targets_from(
    source: TeacherSource,
    chosen: &[(usize, f64)],
    x: &Tensor<4>,
    stages: &[Stage],
    config: &MealConfig,
    fold: bool,
) -> (Vec<TeacherTarget>, Vec<Option<Vec<Tensor<2>>>>) {
    let mut raws: Vec<Option<Tensor<2>>> = vec![None; stages.len()];
    let mut probs: Vec<Option<Tensor<2>>> = vec![None; stages.len()];
    let mut maps: Vec<Option<Vec<Tensor<2>>>> =
        vec![if fold { Some(Vec::new()) } else { None }; stages.len()];
    let single = chosen.len() == 1;
    let weigh = |t: Tensor<2>, w: f64| if single { t } else { t.mul_scalar(w) };
    let sum = |acc: Option<Tensor<2>>, t: Tensor<2>| match acc {
        None => t,
        Some(acc) => acc + t,
    };
    for &(k, w) in chosen {
        let out = source.output(k, x);
        for (j, stage) in stages.iter().enumerate() {
            let want_map = maps[j].is_some();
            let m = extract_matched(&out, stage.teacher_pos[k], stage, config.pool, want_map);
            let raw = m.vector.detach();
            let p = teacher_probs(raw.clone(), config.temperature);
            raws[j] = Some(sum(raws[j].take(), weigh(raw, w)));
            probs[j] = Some(sum(probs[j].take(), weigh(p, w)));
            maps[j] = match (maps[j].take(), m.map) {
                (Some(mut group), Some(map)) => {
                    let map = weigh(map.detach(), w);
                    match group.iter_mut().find(|g| g.dims() == map.dims()) {
                        Some(g) => *g = g.clone() + map,
                        None => group.push(map),
                    }
                    Some(group)
                }
                _ => None,
            };
        }
    }
    let targets = raws
        .into_iter()
        .zip(probs)
        .map(|(raw, probs)| TeacherTarget {
            raw: raw.expect("at least one teacher"),
            probs: probs.expect("at least one teacher"),
        })
        .collect();
    (targets, maps)
}

/// Σ_j γ_j · sim(s_j, t_j).
pub fn similarity_loss(
    student: &[Tensor<2>],
    targets: &[TeacherTarget],
    stages: &[Stage],
    config: &MealConfig,
) -> Option<Tensor<1>> {
    let mut total: Option<Tensor<1>> = None;
    for ((s, t), stage) in student.iter().zip(targets).zip(stages) {
        if stage.gamma == 0.0 {
            continue;
        }
        let l = similarity(config.similarity, s.clone(), t, config.temperature);
        let l = if stage.gamma == 1.0 {
            l
        } else {
            l.mul_scalar(stage.gamma)
        };
        total = Some(match total {
            None => l,
            Some(acc) => acc + l,
        });
    }
    total
}

/// Σ_j η_j · BCE(D_j([s_j; t_j]), Y) with student rows `[1,0]` and teacher rows `[0,1]` (spec §1.7).
/// `reverse` puts a gradient-reversal layer in front of D (the min-max); `detach_student`
/// trains D alone. Also returns D's accuracy on (student rows, teacher rows) averaged over stages.
pub fn discriminator_loss(
    discs: &Discriminators,
    student: &[Tensor<2>],
    targets: &[TeacherTarget],
    stages: &[Stage],
    reverse: bool,
    detach_student: bool,
) -> Result<(Option<Tensor<1>>, (f64, f64))> {
    let pairs: Vec<(DInput, DInput)> = student
        .iter()
        .zip(targets)
        .map(|(s, t)| (DInput::Vector(s.clone()), DInput::Vector(t.raw.clone())))
        .collect();
    discriminator_loss_on(discs, &pairs, stages, reverse, detach_student)
}

/// [`discriminator_loss`] on (student, teacher) inputs per stage, each a matched vector or,
/// folded, the map that pools to it.
pub fn discriminator_loss_on(
    discs: &Discriminators,
    pairs: &[(DInput, DInput)],
    stages: &[Stage],
    reverse: bool,
    detach_student: bool,
) -> Result<(Option<Tensor<1>>, (f64, f64))> {
    let (total, outputs) = discriminator_outputs_on(discs, pairs, stages, reverse, detach_student);
    let mut acc = (0.0, 0.0);
    for (logits, batch) in &outputs {
        let (a_s, a_t) = discriminator_accuracy(logits.clone(), *batch)?;
        acc = (acc.0 + a_s, acc.1 + a_t);
    }
    let n = outputs.len().max(1) as f64;
    Ok((total, (acc.0 / n, acc.1 / n)))
}

/// [`discriminator_loss_on`]'s loss, with each discriminator's detached outputs and batch
/// size left on the device, so that the step reads them with everything else at once.
fn discriminator_outputs_on(
    discs: &Discriminators,
    pairs: &[(DInput, DInput)],
    stages: &[Stage],
    reverse: bool,
    detach_student: bool,
) -> (Option<Tensor<1>>, Vec<(Tensor<2>, usize)>) {
    let mut total: Option<Tensor<1>> = None;
    let mut outputs = Vec::with_capacity(discs.list.len());
    for ((d, (s, t)), stage) in discs.list.iter().zip(pairs).zip(stages) {
        let batch = s.rows();
        let s = if detach_student {
            s.clone().map_tensor(Tensor::detach)
        } else {
            s.clone()
        };
        let (s, t) = if reverse {
            (
                s.map_tensor(gradient_reversal),
                t.clone().map_tensor(gradient_reversal),
            )
        } else {
            (s, t.clone())
        };
        let logits = d.forward_inputs(vec![s, t]);
        outputs.push((logits.clone().detach(), batch));
        let y = discriminator_targets(batch, &logits.device());
        let l = bce_with_logits(logits, y).mul_scalar(stage.eta);
        total = Some(match total {
            None => l,
            Some(acc) => acc + l,
        });
    }
    (total, outputs)
}

/// The student's GAN loss in alternating mode: Σ_j η_j · BCE(D_j(s_j), `[0,1]`), i.e. make D
/// take student rows for teacher rows.
pub fn fooling_loss(
    discs: &Discriminators,
    student: &[Tensor<2>],
    stages: &[Stage],
) -> Option<Tensor<1>> {
    let inputs: Vec<DInput> = student.iter().cloned().map(DInput::Vector).collect();
    fooling_loss_on(discs, &inputs, stages)
}

/// [`fooling_loss`] on student inputs that may be folded maps.
pub fn fooling_loss_on(
    discs: &Discriminators,
    student: &[DInput],
    stages: &[Stage],
) -> Option<Tensor<1>> {
    let mut total: Option<Tensor<1>> = None;
    for ((d, s), stage) in discs.list.iter().zip(student).zip(stages) {
        let batch = s.rows();
        let logits = d.forward_inputs(vec![s.clone()]);
        // Rows [0,1]: the teacher label (the second half of the D targets).
        let y = discriminator_targets(batch, &logits.device()).slice([batch..2 * batch, 0..2]);
        let l = bce_with_logits(logits, y).mul_scalar(stage.eta);
        total = Some(match total {
            None => l,
            Some(acc) => acc + l,
        });
    }
    total
}

/// Everything that changes during distillation.
pub struct MealState {
    pub student: Net,
    pub discs: Discriminators,
    pub opt_student: ModuleOptimizer,
    pub opt_discs: ModuleOptimizer,
}

/// What one step measured (host values, for logging).
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStats {
    pub sim: f64,
    pub adv: f64,
    pub ce: f64,
    pub d_acc_student: f64,
    pub d_acc_teacher: f64,
}

fn add(a: Option<Tensor<1>>, b: Option<Tensor<1>>) -> Option<Tensor<1>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The discriminators' mean accuracy on (student rows, teacher rows) from their outputs read
/// back in `slots`.
fn mean_accuracy(values: &Values, slots: &[(Slot, usize)]) -> (f64, f64) {
    let mut acc = (0.0, 0.0);
    for &(slot, batch) in slots {
        let (a_s, a_t) = accuracy_of_rows(values.get(slot), batch);
        acc = (acc.0 + a_s, acc.1 + a_t);
    }
    let n = slots.len().max(1) as f64;
    (acc.0 / n, acc.1 / n)
}

/// One MEAL update on a batch. Returns the new state, the stats and the student logits (host
/// copy, row-major), all read from the device at once after the update is queued; a
/// computation the device could not run is an error there.
#[allow(clippy::too_many_arguments)]
pub fn step(
    state: MealState,
    teachers: &[Teacher],
    chosen: &[(usize, f64)],
    stages: &[Stage],
    config: &MealConfig,
    x: Tensor<4>,
    labels: Tensor<1, Int>,
    lr: f64,
    d_lr: f64,
) -> Result<(MealState, StepStats, Vec<f32>)> {
    step_from(
        state,
        TeacherSource::Live(teachers),
        chosen,
        stages,
        config,
        x,
        labels,
        lr,
        d_lr,
    )
}

/// [`step`] with the teachers' outputs from `source` (live teachers or a soft-label store).
#[allow(clippy::too_many_arguments)]
pub fn step_from(
    state: MealState,
    source: TeacherSource,
    chosen: &[(usize, f64)],
    stages: &[Stage],
    config: &MealConfig,
    x: Tensor<4>,
    labels: Tensor<1, Int>,
    lr: f64,
    d_lr: f64,
) -> Result<(MealState, StepStats, Vec<f32>)> {
    let inputs = (x, labels);
    step_then(
        state,
        source,
        chosen,
        stages,
        config,
        inputs,
        (lr, d_lr),
        &mut || {},
    )
}

/// [`step_from`] on `(images, labels)` at rates `(lr, d_lr)` that calls `ahead` once the
/// update is queued, before its read (the run skeleton uploads the next batch there).
#[allow(clippy::too_many_arguments)]
pub fn step_then(
    mut state: MealState,
    source: TeacherSource,
    chosen: &[(usize, f64)],
    stages: &[Stage],
    config: &MealConfig,
    (x, labels): (Tensor<4>, Tensor<1, Int>),
    (lr, d_lr): (f64, f64),
    ahead: &mut dyn FnMut(),
) -> Result<(MealState, StepStats, Vec<f32>)> {
    let fold = (0..stages.len()).any(|j| state.discs.folded(j));
    let (targets, teacher_maps) = targets_from(source, chosen, &x, stages, config, fold);
    let out = state.student.forward(x);
    let matched: Vec<_> = stages
        .iter()
        .enumerate()
        .map(|(j, s)| extract_matched(&out, s.student_pos, s, config.pool, state.discs.folded(j)))
        .collect();
    let feats: Vec<Tensor<2>> = matched.iter().map(|m| m.vector.clone()).collect();
    // A folded discriminator reads the maps (fold_lengths made sure every participant has one).
    let d_inputs: Vec<(DInput, DInput)> = matched
        .into_iter()
        .zip(&targets)
        .zip(teacher_maps)
        .enumerate()
        .map(|(j, ((m, t), tm))| {
            if !state.discs.folded(j) {
                return (DInput::Vector(m.vector), DInput::Vector(t.raw.clone()));
            }
            let missing = "a folded discriminator lacks a map";
            (
                DInput::Maps(vec![m.map.expect(missing)]),
                DInput::Maps(tm.expect(missing)),
            )
        })
        .collect();
    let mut readback = Readback::new();
    let logits = readback.push(out.logits.clone());
    let sim = similarity_loss(&feats, &targets, stages, config);
    let ce = (config.alpha > 0.0)
        .then(|| cross_entropy(out.logits.clone(), labels).mul_scalar(config.alpha));
    let (sim_slot, ce_slot) = (
        readback.push_opt(sim.as_ref()),
        readback.push_opt(ce.as_ref()),
    );
    let (mut adv_slot, mut d_slots) = (None, Vec::new());
    let base = add(sim, ce);
    match config.adversarial {
        AdversarialMode::None => {
            if let Some(total) = base {
                let grads = GradientsParams::from_grads(total.backward(), &state.student);
                state.student = state.opt_student.step(lr, state.student, grads);
            }
        }
        AdversarialMode::Joint | AdversarialMode::Grl => {
            let reverse = config.adversarial == AdversarialMode::Grl;
            let (adv, outputs) =
                discriminator_outputs_on(&state.discs, &d_inputs, stages, reverse, false);
            adv_slot = readback.push_opt(adv.as_ref());
            d_slots = push_outputs(&mut readback, outputs);
            if let Some(total) = add(base, adv) {
                let mut grads = total.backward();
                let gs = GradientsParams::from_module(&mut grads, &state.student);
                let gd = GradientsParams::from_module(&mut grads, &state.discs);
                state.student = state.opt_student.step(lr, state.student, gs);
                state.discs = state.discs.step(&mut state.opt_discs, d_lr, gd)?;
            }
        }
        AdversarialMode::Alternating => {
            let (adv, outputs) =
                discriminator_outputs_on(&state.discs, &d_inputs, stages, false, true);
            adv_slot = readback.push_opt(adv.as_ref());
            d_slots = push_outputs(&mut readback, outputs);
            if let Some(adv) = adv {
                let gd = GradientsParams::from_grads(adv.backward(), &state.discs);
                state.discs = state.discs.step(&mut state.opt_discs, d_lr, gd)?;
            }
            let students: Vec<DInput> = d_inputs.into_iter().map(|(s, _)| s).collect();
            let fool = fooling_loss_on(&state.discs, &students, stages);
            if let Some(total) = add(base, fool) {
                let grads = GradientsParams::from_grads(total.backward(), &state.student);
                state.student = state.opt_student.step(lr, state.student, grads);
            }
        }
    }
    ahead();
    let values = readback.read()?;
    let (d_acc_student, d_acc_teacher) = mean_accuracy(&values, &d_slots);
    let stats = StepStats {
        sim: values.scalar(sim_slot),
        ce: values.scalar(ce_slot),
        adv: values.scalar(adv_slot),
        d_acc_student,
        d_acc_teacher,
    };
    Ok((state, stats, values.get(logits).to_vec()))
}

fn push_outputs(readback: &mut Readback, outputs: Vec<(Tensor<2>, usize)>) -> Vec<(Slot, usize)> {
    outputs
        .into_iter()
        .map(|(logits, batch)| (readback.push(logits), batch))
        .collect()
}
