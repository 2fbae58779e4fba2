//! The discriminator fold (`meal.fold_discriminators`): discriminators reading the channel-mean
//! maps with the pooling folded into their first layer give the losses and gradients (student
//! and discriminator parameters) of the unfolded path, which pools first, up to float rounding;
//! and a whole MEAL step in each adversarial mode moves every parameter the same way.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Gradients;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use meal::data::Normalization;
use meal::distill::config::{AdversarialMode, Combine, MealConfig, StageSpec};
use meal::distill::discriminator::DInput;
use meal::distill::objective::{self, Discriminators, MealState, Teacher};
use meal::distill::stages::{self, Participant, Stage, extract_matched};
use meal::models::{self, Net, arch_info};
use meal::train::optim::SgdSettings;

const STUDENT: &str = "resnet8";
const TEACHERS: [&str; 2] = ["resnet8", "vgg8"];
const BATCH: usize = 3;

struct Setup {
    teachers: Vec<Teacher>,
    student: Net,
    stages: Vec<Stage>,
    discs: Discriminators,
    x: Tensor<4>,
    y: Tensor<1, Int>,
}

/// resnet8 from resnet8 (+ vgg8), matching stage 1 (16×16 → 300) and stage 2 (8×8 → 100),
/// both lengthened by pooling so both fold, and the logits (10, never folded). vgg8's maps
/// have other sizes, so an ensemble with it exercises the fallback to the pooled vectors.
/// The device's generator is shared by the tests of this binary, which run on parallel threads:
/// each test holds this lock so that its seeded draws are its own.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup(config: &MealConfig) -> Setup {
    let device = Device::default().autodiff();
    device.seed(7);
    let norm = Normalization::CIFAR10;
    let teachers: Vec<Teacher> = TEACHERS
        .iter()
        .map(|a| {
            let net = models::build(a, 10, &device).unwrap().no_grad();
            Teacher::new(a.to_string(), net, arch_info(a).unwrap().stages, norm, norm)
        })
        .collect();
    let student = models::build(STUDENT, 10, &device).unwrap();
    let participants: Vec<Participant> = teachers
        .iter()
        .map(|t| Participant {
            name: &t.name,
            stages: t.stages,
        })
        .collect();
    let me = Participant {
        name: STUDENT,
        stages: arch_info(STUDENT).unwrap().stages,
    };
    let stages = stages::resolve(&config.stages, &me, &participants, 10).unwrap();
    let discs = Discriminators::new(&stages, config, &device).unwrap();
    let x = Tensor::<4>::random([BATCH, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::from_data(TensorData::new(vec![1i64, 4, 7], [BATCH]), &device);
    Setup {
        teachers,
        student,
        stages,
        discs,
        x,
        y,
    }
}

fn config(adversarial: AdversarialMode, fold: bool) -> MealConfig {
    let stage = |index, out_dim, gamma| StageSpec {
        index,
        out_dim,
        gamma,
        eta: 1.0,
    };
    MealConfig {
        combine: Combine::MeanSoftmax,
        stages: vec![
            stage(1, Some(300), 0.3),
            stage(2, Some(100), 0.5),
            stage(-1, None, 1.0),
        ],
        adversarial,
        fold_discriminators: fold,
        ..MealConfig::default()
    }
}

/// Every trainable float parameter (or its gradient) of a module, in visiting order. BatchNorm
/// running buffers are left out: clones of a module share them, and the fold cannot touch them.
struct Values<'a> {
    grads: Option<&'a Gradients>,
    out: Vec<Vec<f32>>,
}

impl ModuleVisitor for Values<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.val().is_require_grad() {
            return;
        }
        let t = match self.grads {
            None => Some(param.val()),
            Some(g) => param.val().grad(g),
        };
        self.out.push(match t {
            Some(t) => t.try_into_vec_as::<f32>().unwrap(),
            None => Vec::new(),
        });
    }
}

fn values<M: Module>(m: &M, grads: Option<&Gradients>) -> Vec<Vec<f32>> {
    let mut v = Values {
        grads,
        out: Vec::new(),
    };
    m.visit(&mut v);
    v.out
}

/// Each tensor `i` equal to `rtol` of its largest magnitude plus `atol[i]`, and not all zero.
fn assert_close(what: &str, a: &[Vec<f32>], b: &[Vec<f32>], rtol: f32, atol: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: tensor count");
    let mut nonzero = 0;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.len(), y.len(), "{what}[{i}]: size");
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        nonzero += usize::from(scale > 0.0);
        for (j, (u, v)) in x.iter().zip(y).enumerate() {
            assert!(
                (u - v).abs() <= rtol * scale + atol.get(i).copied().unwrap_or(0.0),
                "{what}[{i}][{j}]: {u} vs {v} (scale {scale})"
            );
        }
    }
    assert!(
        nonzero > a.len() / 2,
        "{what}: mostly zero, nothing compared"
    );
}

/// The rounding of a change `after − before` in float32: two ulps of the tensor's largest value.
fn ulps(before: &[Vec<f32>]) -> Vec<f32> {
    before
        .iter()
        .map(|t| 2.0 * f32::EPSILON * t.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect()
}

fn diff(after: &[Vec<f32>], before: &[Vec<f32>]) -> Vec<Vec<f32>> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| a.iter().zip(b).map(|(u, v)| u - v).collect())
        .collect()
}

/// What [`loss_and_grads`] measured.
struct Measured {
    loss: f32,
    accuracy: (f64, f64),
    student_grads: Vec<Vec<f32>>,
    disc_grads: Vec<Vec<f32>>,
    /// Stages whose discriminator read the maps.
    folded: usize,
}

/// The joint objective (similarity + discriminator loss) and its gradients, folded or not.
fn loss_and_grads(
    s: &Setup,
    config: &MealConfig,
    chosen: &[(usize, f64)],
    reverse: bool,
    fold: bool,
) -> Measured {
    let (targets, maps) =
        objective::teacher_targets_with_maps(&s.teachers, chosen, &s.x, &s.stages, config, fold);
    let out = s.student.forward(s.x.clone());
    let matched: Vec<_> = s
        .stages
        .iter()
        .map(|st| extract_matched(&out, st.student_pos, st, config.pool, fold))
        .collect();
    let feats: Vec<Tensor<2>> = matched.iter().map(|m| m.vector.clone()).collect();
    let mut folded = 0;
    let pairs: Vec<(DInput, DInput)> = matched
        .into_iter()
        .zip(&targets)
        .zip(maps)
        .map(|((m, t), tm)| match (m.map, tm) {
            (Some(a), Some(b)) => {
                folded += 1;
                (DInput::Map(a), DInput::Map(b))
            }
            _ => (DInput::Vector(m.vector), DInput::Vector(t.raw.clone())),
        })
        .collect();
    let sim = objective::similarity_loss(&feats, &targets, &s.stages, config).unwrap();
    let (adv, acc) = objective::discriminator_loss_on(&s.discs, &pairs, &s.stages, reverse, false);
    let total = sim + adv.unwrap();
    let loss: f32 = total.clone().into_scalar();
    let grads = total.backward();
    Measured {
        loss,
        accuracy: acc,
        student_grads: values(&s.student, Some(&grads)),
        disc_grads: values(&s.discs, Some(&grads)),
        folded,
    }
}

#[test]
fn folded_discriminators_give_the_same_loss_and_gradients() {
    let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let config = config(AdversarialMode::Joint, true);
    let s = setup(&config);
    // One teacher: both feature stages fold. The ensemble: vgg8's maps differ in size, so
    // the teacher side falls back to vectors and nothing folds (same numbers either way).
    for (chosen, expect_folded) in [(vec![(0, 1.0)], 2), (vec![(0, 0.5), (1, 0.5)], 0)] {
        for reverse in [false, true] {
            let on = loss_and_grads(&s, &config, &chosen, reverse, true);
            let off = loss_and_grads(&s, &config, &chosen, reverse, false);
            assert_eq!((on.folded, off.folded), (expect_folded, 0), "{chosen:?}");
            let (l1, l0) = (on.loss, off.loss);
            assert!(
                l1.is_finite() && (l1 - l0).abs() <= 1e-5 * l0.abs(),
                "{l1} vs {l0}"
            );
            assert_eq!(on.accuracy, off.accuracy);
            let what = format!("{chosen:?} reverse {reverse}");
            let (a, b) = (&on.student_grads, &off.student_grads);
            assert_close(&format!("student grads {what}"), a, b, 1e-4, &[]);
            let (a, b) = (&on.disc_grads, &off.disc_grads);
            assert_close(&format!("discriminator grads {what}"), a, b, 1e-4, &[]);
        }
    }
}

#[test]
fn a_folded_step_moves_every_parameter_like_the_unfolded_one() {
    let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    for mode in [
        AdversarialMode::Joint,
        AdversarialMode::Grl,
        AdversarialMode::Alternating,
    ] {
        let s = setup(&config(mode, true));
        let before_s = values(&s.student, None);
        let before_d = values(&s.discs, None);
        let mut after = Vec::new();
        for fold in [true, false] {
            let state = MealState {
                student: s.student.clone(),
                discs: s.discs.clone(),
                opt_student: SgdSettings::default().init(),
                opt_discs: SgdSettings::default().init(),
            };
            let (next, stats, _) = objective::step(
                state,
                &s.teachers,
                &[(0, 1.0)],
                &s.stages,
                &config(mode, fold),
                s.x.clone(),
                s.y.clone(),
                0.1,
                0.01,
            );
            after.push((
                stats,
                diff(&values(&next.student, None), &before_s),
                diff(&values(&next.discs, None), &before_d),
            ));
        }
        let ((s1, ds1, dd1), (s0, ds0, dd0)) = (&after[0], &after[1]);
        assert!(
            (s1.adv - s0.adv).abs() <= 1e-5 * s0.adv.abs(),
            "{mode:?}: {s1:?} vs {s0:?}"
        );
        assert_eq!(s1.sim, s0.sim, "{mode:?}");
        let (us, ud) = (ulps(&before_s), ulps(&before_d));
        assert_close(&format!("{mode:?} student change"), ds1, ds0, 1e-4, &us);
        assert_close(
            &format!("{mode:?} discriminator change"),
            dd1,
            dd0,
            1e-4,
            &ud,
        );
    }
}
