//! `SgdSettings` (meal's fused SGD, PyTorch semantics) and `BatchNorm2d` against PyTorch
//! (`tests/golden/optim.json`).

mod golden_common;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use golden_common::{MaxErr, Rejections, accepts, check, check_scalar, leaf, load, tensor};
use meal::models::layers::BatchNorm2d;
use meal::train::optim::SgdSettings;
use serde_json::Value;

#[test]
fn sgd_matches_torch_optim_sgd() {
    let golden = load("optim.json");
    let device = Device::default().autodiff();
    let init = &golden["sgd_init"];
    let x = tensor::<2>(&init["x"], &device);
    let y = tensor::<2>(&init["y"], &device);
    let mut errs = MaxErr::default();
    let configs = golden["sgd"].as_object().unwrap();
    assert_eq!(configs.len(), 3);
    for (name, cfg) in configs {
        let settings = SgdSettings {
            momentum: cfg["momentum"].as_f64().unwrap(),
            nesterov: cfg["nesterov"].as_bool().unwrap(),
            weight_decay: cfg["weight_decay"].as_f64().unwrap(),
        };
        let lr = cfg["lr"].as_f64().unwrap();
        // PyTorch's weight is [out, in]; burn's Linear stores [in, out].
        let mut model = Linear {
            weight: Param::from_tensor(tensor::<2>(&init["weight"], &device).transpose()),
            bias: Some(Param::from_tensor(tensor::<1>(&init["bias"], &device))),
        };
        let mut optim = settings.init();
        let steps = cfg["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 5);
        for (i, step) in steps.iter().enumerate() {
            let loss = model.forward(x.clone()).sub(y.clone()).square().mean();
            errs.add(
                "loss",
                check_scalar(
                    &format!("{name} step {i} loss"),
                    loss.clone(),
                    &step["loss"],
                ),
            );
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            errs.add(
                "weights",
                check(
                    &format!("{name} step {i} weight"),
                    model.weight.val().transpose(),
                    &step["weight"],
                ),
            );
            errs.add(
                "biases",
                check(
                    &format!("{name} step {i} bias"),
                    model.bias.as_ref().unwrap().val(),
                    &step["bias"],
                ),
            );
        }
    }
    errs.report();
}

#[test]
fn batchnorm2d_matches_pytorch() {
    let golden = load("optim.json");
    let g = &golden["batchnorm"];
    let device = Device::default().autodiff();
    let mut bn = BatchNorm2d::new(&device, 3);
    bn.weight = Param::from_tensor(tensor::<1>(&g["weight"], &device));
    bn.bias = Param::from_tensor(tensor::<1>(&g["bias"], &device));
    let mut errs = MaxErr::default();

    // Train mode: batch statistics, running stats updated with the unbiased variance.
    let x1 = leaf::<4>(&g["x1"], &device);
    let out1 = bn.forward(x1.clone());
    errs.add("train forward", check("bn out1", out1.clone(), &g["out1"]));
    let grads = out1.mul(tensor::<4>(&g["w"], &device)).sum().backward();
    errs.add(
        "input grad",
        check("bn x1 grad", x1.grad(&grads).unwrap(), &g["x1_grad"]),
    );
    errs.add(
        "weight grad",
        check(
            "bn weight grad",
            bn.weight.val().grad(&grads).unwrap(),
            &g["weight_grad"],
        ),
    );
    errs.add(
        "bias grad",
        check(
            "bn bias grad",
            bn.bias.val().grad(&grads).unwrap(),
            &g["bias_grad"],
        ),
    );
    // `value()` may lag one update behind; `value_sync()` folds the pending update in.
    errs.add(
        "running stats",
        check(
            "running_mean1",
            bn.running_mean.value_sync(),
            &g["running_mean1"],
        ),
    );
    errs.add(
        "running stats",
        check(
            "running_var1",
            bn.running_var.value_sync(),
            &g["running_var1"],
        ),
    );

    let out2 = bn.forward(tensor::<4>(&g["x2"], &device));
    errs.add("train forward", check("bn out2", out2, &g["out2"]));
    errs.add(
        "running stats",
        check(
            "running_mean2",
            bn.running_mean.value_sync(),
            &g["running_mean2"],
        ),
    );
    errs.add(
        "running stats",
        check(
            "running_var2",
            bn.running_var.value_sync(),
            &g["running_var2"],
        ),
    );

    // Eval mode: the running statistics, on the plain device.
    let eval = bn.valid();
    let out3 = eval.forward(tensor::<4>(&g["x3"], &Device::default()));
    errs.add("eval forward", check("bn eval out", out3, &g["eval_out"]));
    errs.report();
}

/// The weights after `steps` SGD steps from the golden start, with `settings` and `lr`.
fn sgd_run(golden: &Value, settings: SgdSettings, lr: f64, steps: usize) -> Linear {
    let device = Device::default().autodiff();
    let init = &golden["sgd_init"];
    let x = tensor::<2>(&init["x"], &device);
    let y = tensor::<2>(&init["y"], &device);
    let mut model = Linear {
        weight: Param::from_tensor(tensor::<2>(&init["weight"], &device).transpose()),
        bias: Some(Param::from_tensor(tensor::<1>(&init["bias"], &device))),
    };
    let mut optim = settings.init();
    for _ in 0..steps {
        let loss = model.forward(x.clone()).sub(y.clone()).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
    }
    model
}

/// Each SGD configuration rejects, after its 5 golden steps, an optimizer with one setting
/// wrong: momentum dropped, Nesterov toggled, weight decay ×10, lr ×2.
#[test]
fn sgd_comparison_rejects_wrong_settings() {
    let golden = load("optim.json");
    let mut rejections = Rejections::default();
    for (name, cfg) in golden["sgd"].as_object().unwrap() {
        let right = SgdSettings {
            momentum: cfg["momentum"].as_f64().unwrap(),
            nesterov: cfg["nesterov"].as_bool().unwrap(),
            weight_decay: cfg["weight_decay"].as_f64().unwrap(),
        };
        let lr = cfg["lr"].as_f64().unwrap();
        let last = &cfg["steps"][4];
        let mut bugs = vec![("lr doubled", right, 2.0 * lr)];
        if right.momentum > 0.0 {
            let mut s = right;
            s.momentum = 0.0;
            s.nesterov = false;
            bugs.push(("no momentum", s, lr));
            let mut s = right;
            s.nesterov = !s.nesterov;
            bugs.push(("nesterov toggled", s, lr));
        }
        if right.weight_decay > 0.0 {
            let mut s = right;
            s.weight_decay *= 10.0;
            bugs.push(("weight decay x10", s, lr));
        }
        for (bug, settings, lr) in bugs {
            let m = sgd_run(&golden, settings, lr, 5);
            let ok = accepts(m.weight.val().transpose(), &last["weight"])
                && accepts(m.bias.unwrap().val(), &last["bias"]);
            rejections.see(format!("{name} {bug}"), ok);
        }
        let m = sgd_run(&golden, right, lr, 5);
        assert!(accepts(m.weight.val().transpose(), &last["weight"]));
    }
    rejections.assert_all_rejected(1 + 4 + 4);
}

/// BatchNorm with the other momentum convention (0.9 for the running statistics' old value),
/// or ε = 1e-3, is rejected on the running statistics or the output.
#[test]
fn batchnorm_comparison_rejects_wrong_momentum_and_epsilon() {
    let golden = load("optim.json");
    let g = &golden["batchnorm"];
    let device = Device::default().autodiff();
    let mut rejections = Rejections::default();
    for (bug, momentum, epsilon) in [("momentum 0.9", 0.9, 1e-5), ("epsilon 1e-3", 0.1, 1e-3)] {
        let mut bn = BatchNorm2d::new(&device, 3);
        bn.weight = Param::from_tensor(tensor::<1>(&g["weight"], &device));
        bn.bias = Param::from_tensor(tensor::<1>(&g["bias"], &device));
        bn.momentum = momentum;
        bn.epsilon = epsilon;
        let out1 = bn.forward(tensor::<4>(&g["x1"], &device));
        let ok = accepts(out1, &g["out1"])
            && accepts(bn.running_mean.value_sync(), &g["running_mean1"])
            && accepts(bn.running_var.value_sync(), &g["running_var1"]);
        rejections.see(bug, ok);
    }
    rejections.assert_all_rejected(2);
}
