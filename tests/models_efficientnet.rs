//! timm's `tf_mobilenetv3_*` and `tf_efficientnet_*` in meal: trainable parameter counts equal
//! timm 1.0.31's (`sum(p.numel() for p in timm.create_model(name).parameters())`, stated
//! independently of any fixture), the stage maps are timm's `feature_info` entries of
//! reduction ≥ 4 at an input size that is not a multiple of 32 (TensorFlow "same" padding:
//! every side is `ceil(side / reduction)`), and drop path and dropout act only in training.
//! The numerics against timm itself are in the golden tests of the ImageNet-form models.

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use meal::models::efficientnet::EfficientNetConfig;
use meal::models::mobilenetv3::MobileNetV3Config;
use meal::models::{self, Net, trainable_params};

/// (name, params at 1000 classes, classifier input width, stage channels).
const TIMM: &[(&str, usize, usize, [usize; 4])] = &[
    (
        "tf_mobilenetv3_small_075",
        2_041_872,
        1024,
        [16, 24, 40, 432],
    ),
    (
        "tf_mobilenetv3_small_100",
        2_542_856,
        1024,
        [16, 24, 48, 576],
    ),
    (
        "tf_mobilenetv3_large_100",
        5_483_032,
        1280,
        [24, 40, 112, 960],
    ),
    ("tf_efficientnet_b0", 5_288_548, 1280, [24, 40, 112, 320]),
    ("tf_efficientnet_b4", 19_341_616, 1792, [32, 56, 160, 448]),
];

#[test]
fn parameter_counts_are_timms() {
    let device = meal::backend::device();
    for &(name, params, features, _) in TIMM {
        let net = models::build(name, 1000, &device).unwrap();
        assert_eq!(trainable_params(&net), params, "{name} at 1000 classes");
        // Only the classifier depends on the class count.
        let net = models::build(name, 10, &device).unwrap();
        assert_eq!(
            trainable_params(&net),
            params - 990 * (features + 1),
            "{name} at 10 classes"
        );
    }
}

#[test]
fn stages_follow_timms_feature_info_at_an_odd_size() {
    let device = meal::backend::device();
    let side: usize = 97;
    for &(name, _, _, channels) in TIMM {
        let net = models::build(name, 7, &device).unwrap();
        let x = Tensor::<4>::random([1, 3, side, side], Distribution::Normal(0.0, 1.0), &device);
        let out = net.forward(x);
        assert_eq!(out.logits.dims(), [1, 7], "{name}");
        let dims: Vec<[usize; 4]> = out.stages.iter().map(|s| s.dims()).collect();
        let want: Vec<[usize; 4]> = channels
            .iter()
            .zip([4, 8, 16, 32])
            .map(|(&c, r)| [1, c, side.div_ceil(r), side.div_ceil(r)])
            .collect();
        assert_eq!(dims, want, "{name}");
        assert_eq!(
            models::arch_info(name).unwrap().stages,
            4,
            "{name}: ArchInfo stages"
        );
        let logits: Vec<f32> = out.logits.into_data().try_to_vec().unwrap();
        assert!(logits.iter().all(|v| v.is_finite()), "{name}");
    }
}

fn logits(net: &Net, x: Tensor<4>) -> Vec<f32> {
    net.forward(x).logits.into_data().try_to_vec().unwrap()
}

#[test]
fn drop_path_and_dropout_only_in_training() {
    let device = meal::backend::device();
    device.seed(5);
    let train = device.clone().autodiff();
    let x = Tensor::<4>::random([4, 3, 40, 40], Distribution::Normal(0.0, 1.0), &device);
    // `to_device` keeps a tensor off the autodiff graph; rebuilt from its data it is on it.
    let xt = Tensor::<4>::from_data(x.to_data(), &train);
    let nets = [
        Net::MobileNetV3(
            MobileNetV3Config::small(0.75, 10)
                .with_drop_rate(0.5)
                .with_drop_path_rate(0.5)
                .init(&device),
        ),
        Net::EfficientNet(
            EfficientNetConfig::new(1.0, 1.0, 10)
                .with_drop_rate(0.5)
                .with_drop_path_rate(0.5)
                .init(&device),
        ),
    ];
    // Without them, two training passes agree (BatchNorm uses each batch's own statistics).
    let plain = Net::MobileNetV3(MobileNetV3Config::small(0.75, 10).init(&device)).fork(&train);
    assert_eq!(logits(&plain, xt.clone()), logits(&plain, xt.clone()));
    for net in nets {
        // Eval (no autodiff): deterministic.
        assert_eq!(logits(&net, x.clone()), logits(&net, x.clone()));
        // Training: two passes draw different masks.
        let net = net.fork(&train);
        let a = logits(&net, xt.clone());
        let b = logits(&net, xt.clone());
        assert_ne!(a, b, "drop path / dropout had no effect in training");
        assert!(a.iter().chain(&b).all(|v| v.is_finite()));
    }
}
