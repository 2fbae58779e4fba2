//! meal's one-pass SGD (`SgdSettings::init`) against burn's own `Sgd` op by op: the same
//! weights bit for bit, and optimizer states that either one can resume from the other's bytes.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use meal::train::optim::SgdSettings;

fn burn_sgd(s: &SgdSettings) -> ModuleOptimizer {
    let momentum = (s.momentum > 0.0).then(|| {
        MomentumConfig::new()
            .with_momentum(s.momentum)
            .with_dampening(0.0)
            .with_nesterov(s.nesterov)
    });
    let decay = (s.weight_decay > 0.0).then(|| WeightDecayConfig::new(s.weight_decay as f32));
    SgdConfig::new()
        .with_momentum(momentum)
        .with_weight_decay(decay)
        .init()
}

const SETTINGS: [SgdSettings; 4] = [
    SgdSettings {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    },
    SgdSettings {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 1e-2,
    },
    SgdSettings {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 5e-4,
    },
    SgdSettings {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-3,
    },
];

/// A layer of 40,000 weights: more than one of the kernel's parallel chunks.
fn model(device: &Device) -> (Linear, Tensor<2>, Tensor<2>) {
    let layer = LinearConfig::new(250, 160).init(device);
    let x = Tensor::<2>::random([8, 250], Distribution::Normal(0.0, 1.0), device);
    let y = Tensor::<2>::random([8, 160], Distribution::Normal(0.0, 1.0), device);
    (layer, x, y)
}

fn step(opt: &mut ModuleOptimizer, m: Linear, x: &Tensor<2>, y: &Tensor<2>, lr: f64) -> Linear {
    let loss = m.forward(x.clone()).sub(y.clone()).square().mean();
    let grads = GradientsParams::from_grads(loss.backward(), &m);
    opt.step(lr, m, grads)
}

fn bits(m: &Linear) -> Vec<u32> {
    let mut v: Vec<f32> = m.weight.val().into_data().try_to_vec().unwrap();
    v.extend(
        m.bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
    );
    v.iter().map(|f| f.to_bits()).collect()
}

/// A copy with its own parameter ids (and so its own optimizer states).
fn copy(m: &Linear, device: &Device) -> Linear {
    let w: TensorData = m.weight.val().into_data();
    let b: TensorData = m.bias.as_ref().unwrap().val().into_data();
    Linear {
        weight: Param::from_tensor(Tensor::from_data(w, device)),
        bias: Some(Param::from_tensor(Tensor::from_data(b, device))),
    }
}

#[test]
fn fused_sgd_equals_burns_bit_for_bit() {
    let device = Device::default().autodiff();
    for s in SETTINGS {
        let (start, x, y) = model(&device);
        let (mut ours, mut theirs) = (copy(&start, &device), copy(&start, &device));
        let (mut o_ours, mut o_theirs) = (s.init(), burn_sgd(&s));
        for i in 0..5 {
            // A changing rate, as under a schedule.
            let lr = 0.1 / (1.0 + i as f64);
            ours = step(&mut o_ours, ours, &x, &y, lr);
            theirs = step(&mut o_theirs, theirs, &x, &y, lr);
            assert_eq!(bits(&ours), bits(&theirs), "{s:?}, step {i}");
        }
        assert_ne!(bits(&ours), bits(&start), "{s:?}: nothing was trained");
    }
}

#[test]
fn optimizer_state_moves_between_burns_sgd_and_meals() {
    let device = Device::default().autodiff();
    for s in &SETTINGS[2..] {
        for burn_first in [true, false] {
            let (start, x, y) = model(&device);
            let (first, second) = if burn_first {
                (burn_sgd(s), s.init())
            } else {
                (s.init(), burn_sgd(s))
            };
            // Reference: five steps with burn's alone.
            let mut reference = copy(&start, &device);
            let mut o = burn_sgd(s);
            for i in 0..5 {
                reference = step(&mut o, reference, &x, &y, 0.05 + i as f64 * 0.01);
            }
            // Two steps with one, the state through bytes, three with the other.
            let mut m = copy(&start, &device);
            let mut o = first;
            for i in 0..2 {
                m = step(&mut o, m, &x, &y, 0.05 + i as f64 * 0.01);
            }
            let bytes = o.into_bytes().unwrap();
            let mut o = second.from_bytes(bytes).unwrap();
            for i in 2..5 {
                m = step(&mut o, m, &x, &y, 0.05 + i as f64 * 0.01);
            }
            assert_eq!(
                bits(&m),
                bits(&reference),
                "{s:?}, burn first: {burn_first}"
            );
        }
    }
}
