//! Teachers on the inner (non-autodiff) device (`Teacher::without_autodiff`) give the outputs of
//! the autodiff-device teacher in both BatchNorm modes, and in train mode update their running
//! buffers the same way; the outputs come back on the input's device as constants.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Tensor};
use meal::data::Normalization;
use meal::distill::config::TeacherBn;
use meal::distill::objective::Teacher;
use meal::models::{self, ModelOutput, Net, arch_info};

/// Every float tensor of a module (parameters and running buffers).
struct Floats(Vec<Vec<f32>>);

impl ModuleVisitor for Floats {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().try_into_vec_as::<f32>().unwrap());
    }
}

fn floats(net: &Net) -> Vec<Vec<f32>> {
    let mut f = Floats(Vec::new());
    net.visit(&mut f);
    f.0
}

fn flat(out: &ModelOutput) -> Vec<Vec<f32>> {
    let mut v: Vec<Vec<f32>> = out
        .stages
        .iter()
        .map(|s| s.clone().try_into_vec_as::<f32>().unwrap())
        .collect();
    v.push(out.logits.clone().try_into_vec_as::<f32>().unwrap());
    v
}

fn assert_close(what: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.len(), y.len(), "{what}[{i}]");
        let scale = x.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() <= 1e-5 * scale, "{what}[{i}]: {u} vs {v}");
        }
    }
}

#[test]
fn inner_device_teachers_match_autodiff_ones() {
    for bn in [TeacherBn::Train, TeacherBn::Eval] {
        let device = Device::default().autodiff();
        device.seed(3);
        let arch = "resnet8";
        let net = models::build(arch, 10, &device).unwrap();
        // Non-trivial running statistics first, so eval mode is not the identity.
        let warm = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.5, 2.0), &device);
        let _ = net.forward(warm);
        let frozen = |n: Net| match bn {
            TeacherBn::Train => n.no_grad(),
            TeacherBn::Eval => n.freeze(),
        };
        let norm = Normalization::CIFAR10;
        let stages = arch_info(arch).unwrap().stages;
        let reference = Teacher::new(arch.into(), frozen(net.clone()), stages, norm, norm);
        let inner =
            Teacher::new(arch.into(), frozen(net.clone()), stages, norm, norm).without_autodiff(bn);
        assert!(!inner.net.devices()[0].is_autodiff(), "{bn:?}");
        let start = floats(&inner.net.valid());
        for _ in 0..2 {
            let x = Tensor::<4>::random([3, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
            let (a, b) = (reference.forward(&x), inner.forward(&x));
            assert!(b.logits.device().is_autodiff() && !b.logits.is_require_grad());
            assert_close(&format!("{bn:?} outputs"), &flat(&a), &flat(&b));
            if bn == TeacherBn::Train {
                // Batch statistics really: the running-statistics forward differs.
                let eval = inner.net.valid().forward(x.inner());
                let (l, e) = (flat(&b).pop().unwrap(), flat(&eval).pop().unwrap());
                assert!(
                    l.iter().zip(&e).any(|(u, v)| (u - v).abs() > 1e-3),
                    "{bn:?}"
                );
            }
        }
        // `valid()` syncs the running buffers' per-thread updates before they are read.
        assert_close(
            &format!("{bn:?} parameters and running buffers"),
            &floats(&reference.net.valid()),
            &floats(&inner.net.valid()),
        );
        // Train mode moved the running buffers; eval mode left everything as it was.
        assert_eq!(floats(&inner.net.valid()) == start, bn == TeacherBn::Eval);
    }
}
