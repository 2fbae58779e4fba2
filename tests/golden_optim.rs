//! `SgdSettings` (burn's SGD, PyTorch semantics) and `BatchNorm2d` against PyTorch
//! (`tests/golden/optim.json`).

mod golden_common;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::GradientsParams;
use golden_common::{MaxErr, check, check_scalar, leaf, load, tensor};
use meal::models::layers::BatchNorm2d;
use meal::train::optim::SgdSettings;

#[test]
fn sgd_matches_torch_optim_sgd() {
    let golden = load("optim.json");
    let device = golden_common::device().autodiff();
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
    let device = golden_common::device().autodiff();
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
    let out3 = eval.forward(tensor::<4>(&g["x3"], &golden_common::device()));
    errs.add("eval forward", check("bn eval out", out3, &g["eval_out"]));
    errs.report();
}
