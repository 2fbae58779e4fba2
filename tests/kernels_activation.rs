//! meal's fused hard-swish and SiLU (`kernels::activation`) against the burn ops they replace:
//! values, and input gradients against burn's autodiff of those ops, on every instruction set
//! this CPU has, through the autodiff path (tracked) and the plain one (in place when the
//! tensor is not shared).

mod isa_common;

use burn::tensor::{Device, Distribution, Tensor};
use isa_common::on_every_isa;
use meal::kernels;
use meal::kernels::activation::Activation;

const ACTS: [Activation; 2] = [Activation::HardSwish, Activation::Silu];

/// The activation from burn's ops, as the models computed it before the fused kernel.
fn burn_ops(x: Tensor<4>, act: Activation) -> Tensor<4> {
    match act {
        Activation::HardSwish => x.clone() * x.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0),
        Activation::Silu => burn::tensor::activation::silu(x),
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, e)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - e).abs() <= tol * (1.0 + e.abs()),
            "{what} differs at {i}: {g} vs {e}"
        );
    }
}

/// A map of values spread over both kinks of hard-swish (±3) and SiLU's saturation, kept a
/// little away from ±3 where the two gradients may pick different sides.
fn input(device: &Device, shape: [usize; 4]) -> Tensor<4> {
    let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 4.0), device);
    let near = (x.clone().abs() - 3.0).abs().lower_elem(1e-3);
    x.mask_fill(near, 1.5)
}

#[test]
fn activations_and_gradients_match_burn_ops() {
    on_every_isa("activations_and_gradients_match_burn_ops", |_| {
        let device = Device::default().autodiff();
        device.seed(5);
        // One map under the parallel chunk, one over it.
        for shape in [[2, 3, 5, 7], [2, 16, 56, 56]] {
            let x = input(&device, shape);
            let r = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            for act in ACTS {
                let what = format!("{act:?} {shape:?}");
                let run = |ours: bool| {
                    let x = x.clone().require_grad();
                    let y = if ours {
                        kernels::activation(x.clone(), act)
                    } else {
                        burn_ops(x.clone(), act)
                    };
                    let g = (y.clone() * r.clone()).sum().backward();
                    (values(y), values(x.grad(&g).unwrap()))
                };
                let (y, dx) = run(true);
                let (y_burn, dx_burn) = run(false);
                assert_close(&format!("{what} output"), &y, &y_burn, 1e-6);
                assert_close(&format!("{what} input grad"), &dx, &dx_burn, 1e-5);
                assert!(
                    dx.iter().any(|&v| v != 0.0) && y.iter().all(|v| v.is_finite()),
                    "{what}: a degenerate case"
                );
            }
        }
    });
}

#[test]
fn plain_path_leaves_a_shared_input_alone() {
    on_every_isa("plain_path_leaves_a_shared_input_alone", |_| {
        let device = Device::default();
        device.seed(6);
        for act in ACTS {
            let x = input(&device, [2, 4, 40, 40]);
            let before = values(x.clone());
            // `x` is still held here, so the kernel must not write over it.
            let shared = values(kernels::activation(x.clone(), act));
            assert_eq!(
                values(x.clone()),
                before,
                "{act:?} wrote over a shared input"
            );
            // Not shared: written in place, the same values.
            let owned = values(kernels::activation(x.clone() * 1.0, act));
            assert_eq!(shared, owned, "{act:?}: in place and copied differ");
            assert_close(
                &format!("{act:?}"),
                &shared,
                &values(burn_ops(x, act)),
                1e-6,
            );
        }
    });
}

#[test]
fn hard_swish_gradient_is_pytorchs_at_known_points() {
    // torch.nn.functional.hardswish's gradient: 0 below −3, x/3 + 1/2 on [−3, 3], 1 above.
    let device = Device::default().autodiff();
    let xs = [-5.0f32, -2.5, -1.5, 0.0, 1.0, 2.5, 4.0];
    let want = [0.0f32, -1.0 / 3.0, 0.0, 0.5, 5.0 / 6.0, 4.0 / 3.0, 1.0];
    let x = Tensor::<1>::from_floats(xs, &device).require_grad();
    let y = kernels::activation(x.clone().reshape([1, 1, 1, 7]), Activation::HardSwish);
    let g = y.sum().backward();
    assert_close(
        "hard-swish gradient",
        &values(x.grad(&g).unwrap()),
        &want,
        1e-6,
    );
}
