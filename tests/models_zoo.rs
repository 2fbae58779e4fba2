//! The model zoo against its PyTorch twins (`scripts/models/param_counts.py`, whose output is
//! `tests/fixtures/models/param_counts.json`): exact trainable parameter counts, forward MACs at
//! 32×32, the stage list of spec §1.4 and the logits' shape, plus registry errors and
//! PyTorch-style default initialisation.
//!
//! Reference table (PyTorch, num_classes = 10; MACs per 32×32 image, convs + linears):
//!
//! | arch            |     params |          MACs | stages [C×H×W]                               |
//! |-----------------|-----------:|--------------:|----------------------------------------------|
//! | resnet8         |     75,290 |    12,239,488 | 16×32×32, 32×16×16, 64×8×8                   |
//! | resnet14        |    172,506 |    26,395,264 | same                                         |
//! | resnet20        |    269,722 |    40,551,040 | same                                         |
//! | resnet32        |    464,154 |    68,862,592 | same                                         |
//! | resnet56        |    853,018 |   125,485,696 | same                                         |
//! | vgg8            |  1,167,434 |    43,354,624 | 32×16×16, 64×8×8, 128×4×4                    |
//! | vgg19_bn        | 20,040,522 |   398,136,320 | 64×16×16, 128×8×8, 256×4×4, 512×2×2          |
//! | resnet18_cifar        | 11,173,962 |   555,422,720 | 64×32×32, 128×16×16, 256×8×8, 512×4×4        |
//! | preact_resnet18 | 11,171,146 |   555,422,720 | same as resnet18_cifar                             |
//! | densenet_cifar  | 10,961,010 | 2,363,412,640 | 580×8×8, 1540×8×8                            |
//! | densenet121     |  6,956,298 |   888,350,720 | 256×32×32, 512×16×16, 1024×8×8, 1024×4×4     |
//! | dpn92           | 34,236,634 | 2,042,422,272 | 320×32×32, 672×16×16, 1528×8×8, 2560×4×4     |
//! | googlenet       |  6,166,250 | 1,521,756,160 | 480×16×16, 832×8×8                           |
//! | resnext29_2x64d |  9,128,778 | 1,409,492,992 | 256×32×32, 512×16×16, 1024×8×8               |
//! | mobilenet       |  3,217,226 |    46,354,432 | 32×32×32, 1024×2×2                           |
//! | resnet9_w24     |    927,000 |    53,749,632 | 48×16×16, 96×8×8, 192×4×4                    |
//! | resnet9         |  6,573,120 |   379,261,952 | 128×16×16, 256×8×8, 512×4×4                  |

use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use meal::models::{self, ARCHS, Form, Net, flops, trainable_params};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    params_k10: usize,
    params_k100: usize,
    macs: u64,
    macs_k100: u64,
    stages: Vec<[usize; 3]>,
}

fn reference() -> BTreeMap<String, Reference> {
    serde_json::from_str(include_str!("fixtures/models/param_counts.json")).unwrap()
}

/// The counts the brief states for the MEAL zoo, independently of the fixture.
const SPEC_PARAMS: &[(&str, usize)] = &[
    ("resnet20", 269_722),
    ("vgg19_bn", 20_040_522),
    ("resnet18_cifar", 11_173_962),
    ("preact_resnet18", 11_171_146),
    ("densenet_cifar", 10_961_010),
    ("densenet121", 6_956_298),
    ("dpn92", 34_236_634),
    ("googlenet", 6_166_250),
    ("resnext29_2x64d", 9_128_778),
    ("mobilenet", 3_217_226),
];

/// The CIFAR-sized models; the others are the MEAL zoo's large teachers. Both groups are built
/// and run at k = 10 and k = 100: on burn-flex a batch-2 forward of the largest (dpn92,
/// densenet_cifar) takes about 0.3 s, so the whole file runs in seconds.
const CHEAP: &[&str] = &[
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet56",
    "vgg8",
    "mobilenet",
    "resnet9_w24",
];

#[test]
fn fixture_agrees_with_spec() {
    let refs = reference();
    for &(name, params) in SPEC_PARAMS {
        assert_eq!(refs[name].params_k10, params, "{name}");
    }
    let names: Vec<&str> = ARCHS
        .iter()
        .filter(|a| a.form == Form::Cifar)
        .map(|a| a.name)
        .collect();
    let mut fixture: Vec<&str> = refs.keys().map(String::as_str).collect();
    let mut registered = names.clone();
    fixture.sort();
    registered.sort();
    assert_eq!(
        fixture, registered,
        "fixture and registry list different models"
    );
}

/// Builds, counts and runs a model on a batch of 2, checking everything against the reference.
fn check(name: &str, num_classes: usize, refs: &Reference, stages: usize) {
    let device = meal::backend::device();
    let t = Instant::now();
    let net = models::build(name, num_classes, &device).unwrap();
    let params = trainable_params(&net);
    let expected = match num_classes {
        10 => refs.params_k10,
        100 => refs.params_k100,
        _ => unreachable!(),
    };
    assert_eq!(params, expected, "{name} k={num_classes}: trainable params");
    let macs_per_image = match num_classes {
        10 => refs.macs,
        _ => refs.macs_k100,
    };
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let (out, macs) = flops::counting(|| net.forward(x));
    assert_eq!(macs, 2 * macs_per_image, "{name}: MACs for a batch of 2");
    assert_eq!(out.logits.dims(), [2, num_classes], "{name}: logits shape");
    assert_eq!(out.stages.len(), stages, "{name}: stage count vs ArchInfo");
    assert_eq!(out.stages.len(), refs.stages.len(), "{name}: stage count");
    for (i, (stage, want)) in out.stages.iter().zip(&refs.stages).enumerate() {
        let [b, c, h, w] = stage.dims();
        assert_eq!(
            [b, c, h, w],
            [2, want[0], want[1], want[2]],
            "{name}: stage {i}"
        );
    }
    let logits: Vec<f32> = out.logits.into_data().try_to_vec().unwrap();
    assert!(
        logits.iter().all(|v| v.is_finite()),
        "{name}: non-finite logits"
    );
    eprintln!(
        "{name:<16} k={num_classes:<3} params {params:>11} MACs/img {:>14} {:>6.2}s",
        macs / 2,
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn cheap_models_k10_and_k100() {
    let refs = reference();
    for info in ARCHS.iter().filter(|a| CHEAP.contains(&a.name)) {
        check(info.name, 10, &refs[info.name], info.stages);
        check(info.name, 100, &refs[info.name], info.stages);
    }
}

#[test]
fn large_models_k10_and_k100() {
    let refs = reference();
    let large = ARCHS
        .iter()
        .filter(|a| a.form == Form::Cifar && !CHEAP.contains(&a.name));
    for info in large {
        check(info.name, 10, &refs[info.name], info.stages);
        check(info.name, 100, &refs[info.name], info.stages);
    }
}

/// timm 1.0.31's trainable parameter counts at 1000 classes (`sum(p.numel() for p in
/// timm.create_model(name).parameters())`); the forward passes of these models are held to timm
/// in models_timm.rs.
const TIMM_PARAMS: &[(&str, usize)] = &[
    ("resnet18", 11_689_512),
    ("resnet34", 21_797_672),
    ("resnet50", 25_557_032),
    ("resnet101", 44_549_160),
    ("resnet152", 60_192_808),
    ("resnet152s", 60_316_584),
    ("senet154", 115_088_984),
];

#[test]
fn imagenet_models_have_timms_parameter_counts() {
    let device = meal::backend::device();
    let imagenet: Vec<&str> = ARCHS
        .iter()
        .filter(|a| a.form == Form::ImageNet)
        .map(|a| a.name)
        .collect();
    for &(name, params) in TIMM_PARAMS {
        assert!(
            imagenet.contains(&name),
            "{name}: not an ImageNet-form model"
        );
        let net = models::build(name, 1000, &device).unwrap();
        assert_eq!(trainable_params(&net), params, "{name}: trainable params");
    }
}

#[test]
fn count_macs_matches_reference() {
    let refs = reference();
    let device = meal::backend::device();
    for name in ["resnet20", "resnet18_cifar"] {
        let net = models::build(name, 10, &device).unwrap();
        assert_eq!(
            models::count_macs(&net, [1, 3, 32, 32]),
            refs[name].macs,
            "{name}"
        );
    }
    // resnet20 ≈ 40.6M and resnet18_cifar ≈ 555M MACs, the usual CIFAR figures.
    assert_eq!(refs["resnet20"].macs, 40_551_040);
    assert_eq!(refs["resnet18_cifar"].macs, 555_422_720);
    // An autodiff model is counted on its plain twin.
    let net = models::build("resnet8", 10, &device.clone().autodiff()).unwrap();
    assert_eq!(
        models::count_macs(&net, [3, 3, 32, 32]),
        3 * refs["resnet8"].macs
    );
    // Nothing is counted outside `counting`.
    assert!(!flops_active());
}

fn flops_active() -> bool {
    flops::counting(|| ()).1 != 0
}

#[test]
fn registry_errors() {
    let device = meal::backend::device();
    let err = models::build("nope", 10, &device).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    for info in ARCHS {
        assert!(err.contains(info.name), "{err} does not list {}", info.name);
    }
    let err = models::build("resnet20", 0, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("num_classes"), "{err}");
}

/// Values of a float tensor as a vector.
fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec().unwrap()
}

fn assert_uniform_within(name: &str, v: &[f32], fan_in: usize) {
    let bound = 1.0 / (fan_in as f32).sqrt();
    assert!(
        v.iter().all(|x| x.abs() <= bound * (1.0 + 1e-6)),
        "{name}: value outside ±1/√{fan_in}"
    );
    let (min, max) = v
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(max > min, "{name}: all values equal");
    // A uniform sample of this size reaches well into both halves of the range.
    if v.len() >= 100 {
        assert!(
            max > 0.5 * bound && min < -0.5 * bound,
            "{name}: range too narrow"
        );
    }
}

#[test]
fn default_init_follows_pytorch() {
    let device = meal::backend::device();
    // Dense conv (bias-free), conv with bias, grouped conv, linear.
    let Net::ResNet(r) = models::build("resnet18_cifar", 10, &device).unwrap() else {
        panic!("resnet18_cifar is a ResNet")
    };
    let w = &r.layers[1][0].conv1.weight;
    assert_eq!(w.shape().dims::<4>(), [128, 64, 3, 3]);
    assert_uniform_within("resnet18_cifar conv", &values(w.val()), 64 * 9);
    assert_uniform_within("resnet18_cifar fc.weight", &values(r.fc.weight.val()), 512);
    assert_uniform_within(
        "resnet18_cifar fc.bias",
        &values(r.fc.bias.as_ref().unwrap().val()),
        512,
    );
    let bn = &r.layers[1][0].bn1;
    assert!(values(bn.weight.val()).iter().all(|&g| g == 1.0));
    assert!(values(bn.bias.val()).iter().all(|&b| b == 0.0));

    let Net::Vgg(v) = models::build("vgg8", 10, &device).unwrap() else {
        panic!("vgg8 is a Vgg")
    };
    let conv = &v.groups[1][0].conv;
    assert_uniform_within("vgg8 conv.weight", &values(conv.weight.val()), 32 * 9);
    assert_uniform_within(
        "vgg8 conv.bias",
        &values(conv.bias.as_ref().unwrap().val()),
        32 * 9,
    );

    let Net::MobileNet(m) = models::build("mobilenet", 10, &device).unwrap() else {
        panic!("mobilenet is a MobileNet")
    };
    // Depthwise: fan_in = (in/groups)·3·3 = 9.
    let dw = &m.blocks[3].depthwise.conv.weight;
    assert_eq!(dw.shape().dims::<4>(), [128, 1, 3, 3]);
    assert_uniform_within("mobilenet depthwise", &values(dw.val()), 9);

    // ResNet-9's classifier has no bias (Page's), and its init is still U(±1/√fan_in).
    let Net::ResNet9(r9) = models::build("resnet9_w24", 10, &device).unwrap() else {
        panic!("resnet9_w24 is a ResNet9")
    };
    assert!(r9.fc.bias.is_none());
    assert_uniform_within("resnet9_w24 fc.weight", &values(r9.fc.weight.val()), 192);
}
