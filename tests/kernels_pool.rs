//! meal's inference max pool (`kernels::max_pool2d`) against burn's op on the same values: the
//! pools of the zoo (ResNet-50's 3×3/2 padded stem pool, VGG's 2×2/2, GoogLeNet's 3×3/1 padded)
//! and odd sides, bit for bit (a maximum does not round), NaN included.

use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Distribution, Tensor};
use meal::kernels;

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
