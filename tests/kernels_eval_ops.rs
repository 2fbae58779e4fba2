//! meal's inference-only ops on burn-flex against burn's ops on the same values, bit for bit (a
//! maximum does not round; one addition rounds the same way in both), NaN included:
//! - the max pool (`kernels::max_pool2d`): the zoo's pools (ResNet-50's 3×3/2 padded stem pool,
//!   VGG's 2×2/2, GoogLeNet's 3×3/1 padded) and odd sides;
//! - a residual block's end, `relu(a + b)` (`kernels::add_relu`), in place when `a` is not
//!   shared and leaving a shared `a` as it was; and in training, its gradients against burn's
//!   autodiff of its add and ReLU, on every instruction set of the CPU (their loops are
//!   compiled per set);
//! - an eval-mode BatchNorm's running statistics folded into `(scale, shift)`
//!   (`kernels::bn_eval_affine`), against burn's ops, and its gradients on an autodiff device.

use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Distribution, Tensor};
use meal::kernels;
use meal::kernels::simd;

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn max_pool_matches_burn_bit_for_bit() {
    let device = Device::default();
    device.seed(11);
    let cases = [
        ([2, 8, 112, 112], 3, 2, 1),
        ([2, 4, 32, 32], 2, 2, 0),
        ([1, 3, 13, 9], 3, 1, 1),
        ([3, 2, 7, 11], 3, 2, 0),
        ([1, 1, 5, 5], 5, 5, 2),
    ];
    for (shape, k, s, p) in cases {
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        // One NaN: PyTorch's pool passes it on, and burn's does too.
        let nan = Tensor::<4>::full([1, 1, 1, 1], f32::NAN, &device);
        let x = x.slice_assign([0..1, 0..1, 1..2, 1..2], nan);
        let ours = values(kernels::max_pool2d(x.clone(), k, s, p));
        let opts = MaxPoolOptions::new([k, k])
            .with_stride([s, s])
            .with_padding([p, p]);
        let want = values(max_pool2d(x, opts));
        assert_eq!(ours.len(), want.len(), "{shape:?} k{k} s{s} p{p}");
        assert!(ours[0].is_nan(), "{shape:?}: the NaN was not passed on");
        for (i, (a, b)) in ours.iter().zip(&want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{shape:?} k{k} s{s} p{p} at {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn add_relu_matches_burn_and_leaves_a_shared_input_alone() {
    let device = Device::default();
    device.seed(12);
    let shape = [2, 8, 9, 7];
    let a = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let b = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let nan = Tensor::<4>::full([1, 1, 1, 1], f32::NAN, &device);
    let a = a.slice_assign([0..1, 0..1, 0..1, 0..1], nan);
    let want = values(burn::tensor::activation::relu(a.clone() + b.clone()));
    let a_before = values(a.clone());
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    for isa in simd::available() {
        let _forced = simd::force(isa).unwrap();
        // `a` is shared here (its clone above and below): the op must copy, not write over it.
        let shared = values(kernels::add_relu(a.clone(), b.clone()));
        assert!(
            bits(values(a.clone())) == bits(a_before.clone()),
            "{isa:?}: a shared input was written"
        );
        // Unshared: the op may write over the buffer of `a`'s copy.
        let owned = values(kernels::add_relu(a.clone() * 1.0, b.clone()));
        for got in [&shared, &owned] {
            assert!(got[0].is_nan(), "{isa:?}: the NaN was not passed on");
            assert!(
                got.iter().skip(1).all(|v| *v >= 0.0),
                "{isa:?}: a negative value passed the ReLU"
            );
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{isa:?} at {i}: {g} vs {w}");
            }
        }
    }
}

#[test]
fn add_relu_gradients_match_burn_bit_for_bit() {
    let device = Device::default().autodiff();
    device.seed(13);
    // One map under the size that is shared across cores, one over it.
    for shape in [[2, 8, 9, 7], [2, 16, 96, 96]] {
        let a = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let r = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        // A NaN sum passes its gradient on in burn's ReLU (its mask is `output <= 0`).
        let nan = Tensor::<4>::full([1, 1, 1, 1], f32::NAN, &device);
        let a = a.slice_assign([0..1, 0..1, 0..1, 0..1], nan);
        // Both terms tracked, then only one (a shortcut from a constant).
        for (track_b, isa) in [true, false]
            .into_iter()
            .flat_map(|t| simd::available().into_iter().map(move |i| (t, i)))
        {
            let _forced = simd::force(isa).unwrap();
            let run = |ours: bool| {
                let a = a.clone().require_grad();
                let b = if track_b {
                    b.clone().require_grad()
                } else {
                    b.clone()
                };
                let y = if ours {
                    kernels::add_relu(a.clone(), b.clone())
                } else {
                    burn::tensor::activation::relu(a.clone() + b.clone())
                };
                let g = (y.clone() * r.clone()).sum().backward();
                let gb = track_b.then(|| values(b.grad(&g).unwrap()));
                let ga = values(a.grad(&g).unwrap());
                (values(y), ga, gb)
            };
            let what = format!("{shape:?}, b tracked: {track_b}, {isa:?}");
            let (y, ga, gb) = run(true);
            let (y_burn, ga_burn, gb_burn) = run(false);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&y_burn), "{what}: output");
            assert_eq!(bits(&ga), bits(&ga_burn), "{what}: gradient of a");
            assert_eq!(
                gb.as_deref().map(bits),
                gb_burn.as_deref().map(bits),
                "{what}: of b"
            );
            assert!(
                ga[0].is_nan() || ga[0] != 0.0,
                "{what}: the NaN's gradient was masked"
            );
            let zeros = ga.iter().filter(|&&v| v == 0.0).count();
            assert!(
                zeros > ga.len() / 4 && zeros < 3 * ga.len() / 4,
                "{what}: {zeros} of {} gradients masked (a degenerate case)",
                ga.len()
            );
        }
    }
}

/// `(scale, shift)` as burn's ops give them: `weight / sqrt(var + ε)`, `bias − mean · scale`.
fn eval_affine_burn(
    w: Tensor<1>,
    b: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    eps: f64,
) -> (Tensor<1>, Tensor<1>) {
    let scale = w * v.add_scalar(eps).sqrt().recip();
    let shift = b - m * scale.clone();
    (scale, shift)
}

#[test]
fn bn_eval_affine_matches_burn_bit_for_bit_and_passes_gradients_on() {
    let bits = |t: Tensor<1>| {
        t.into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    let device = Device::default();
    device.seed(14);
    let n = 517;
    let normal = || Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
    let (w, b, m) = (normal(), normal(), normal());
    // Variances from near zero (ε dominates) to large, and one NaN that must come through.
    let v =
        Tensor::<1>::random([n], Distribution::Uniform(0.0, 1.0), &device).powf_scalar(8.0) * 50.0;
    let v = v.slice_assign(
        burn::tensor::s![3..4],
        Tensor::<1>::full([1], f32::NAN, &device),
    );
    for eps in [1e-5, 1e-3] {
        let (s, t) = kernels::bn_eval_affine(w.clone(), b.clone(), m.clone(), v.clone(), eps);
        let (s_burn, t_burn) = eval_affine_burn(w.clone(), b.clone(), m.clone(), v.clone(), eps);
        let (s, t) = (bits(s), bits(t));
        assert!(f32::from_bits(s[3]).is_nan() && f32::from_bits(t[3]).is_nan());
        assert_eq!(s, bits(s_burn), "scale, eps {eps}");
        assert_eq!(t, bits(t_burn), "shift, eps {eps}");
    }
    // On an autodiff device the weight and bias receive burn's gradients.
    let ad = Device::default().autodiff();
    let on = |t: &Tensor<1>| Tensor::<1>::from_data(t.to_data(), &ad);
    let v = on(&v).slice_assign(burn::tensor::s![3..4], Tensor::<1>::ones([1], &ad));
    let r = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &ad);
    let grads = |ours: bool| {
        let (w, b) = (on(&w).require_grad(), on(&b).require_grad());
        let (s, t) = if ours {
            kernels::bn_eval_affine(w.clone(), b.clone(), on(&m), v.clone(), 1e-5)
        } else {
            eval_affine_burn(w.clone(), b.clone(), on(&m), v.clone(), 1e-5)
        };
        let g = (s * r.clone() + t * r.clone() * 3.0).sum().backward();
        (bits(w.grad(&g).unwrap()), bits(b.grad(&g).unwrap()))
    };
    let (gw, gb) = grads(true);
    assert_eq!((&gw, &gb), (&grads(false).0, &grads(false).1));
    assert!(
        gb.iter().any(|&x| f32::from_bits(x) != 0.0),
        "no gradient reached the bias"
    );
}
