//! Mixed-origin ensembles: a model whose checkpoint says it was trained with other input
//! statistics than the dataset's sees its input re-normalised, in `meal eval`'s ensemble
//! ([`evaluate_renormalized`]) and for an imported teacher named in a distill config.

mod interop_common;

use std::sync::Arc;

use interop_common::*;
use meal::data::memory::MemoryDataset;
use meal::data::{Dataset, Loader, LoaderConfig, Normalization};
use meal::interop::{ImportOptions, import_pytorch};
use meal::train::evaluate::{Renorm, evaluate, evaluate_renormalized};
use rand::{Rng, SeedableRng};

const OTHER: Normalization = Normalization {
    mean: [0.5, 0.45, 0.4],
    std: [0.3, 0.25, 0.2],
};

fn loader(norm: Normalization) -> Loader {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let n = 40;
    let images: Vec<u8> = (0..n * 3 * 32 * 32).map(|_| rng.random()).collect();
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let names = (0..10).map(|i| i.to_string()).collect();
    let ds = MemoryDataset::new("random", [3, 32, 32], images, labels, names, norm).unwrap();
    Loader::new(
        Arc::new(ds) as Arc<dyn Dataset>,
        LoaderConfig {
            batch_size: 16,
            shuffle: false,
            augment: false,
            drop_last: false,
            seed: 0,
            num_workers: 1,
            prefetch: 2,
        },
    )
}

#[test]
fn eval_renormalises_each_model_to_its_own_statistics() {
    let device = meal::backend::device();
    let net = import_pytorch(
        &fixtures().join("resnet8.pth"),
        &ImportOptions::new("resnet8"),
        &device,
    )
    .unwrap()
    .net;
    assert_eq!(
        Renorm::between(Normalization::CIFAR10, Normalization::CIFAR10),
        None
    );
    let renorm = Renorm::between(Normalization::CIFAR10, OTHER).unwrap();

    // The model trained with OTHER, on data normalised with CIFAR-10's statistics and
    // re-normalised, must score as on data normalised with OTHER directly.
    let (renormed, ens_renormed) = evaluate_renormalized(
        &[&net, &net],
        &[Some(renorm), None],
        &loader(Normalization::CIFAR10),
        &device,
    )
    .unwrap();
    let (direct, _) = evaluate(&[&net], &loader(OTHER), &device).unwrap();
    let (plain, _) = evaluate(&[&net], &loader(Normalization::CIFAR10), &device).unwrap();
    assert_eq!(renormed[0].images, 40);
    assert!(
        (renormed[0].loss - direct[0].loss).abs() < 1e-5,
        "renormalised {} vs direct {}",
        renormed[0].loss,
        direct[0].loss
    );
    assert_eq!(renormed[0].top1, direct[0].top1);
    // Without it the model sees other inputs (so the check above is not vacuous), and the
    // second, un-renormalised member is that plain model.
    assert!(
        (plain[0].loss - direct[0].loss).abs() > 1e-3,
        "{} vs {}",
        plain[0].loss,
        direct[0].loss
    );
    assert!((renormed[1].loss - plain[0].loss).abs() < 1e-6);
    assert_eq!(ens_renormed.images, 40);
}

/// `teachers = [{ arch, pytorch, mean, std }]` in a distill config: validated, imported
/// strictly, with its own normalisation (the dataset's by default).
#[test]
fn distill_config_takes_a_pytorch_teacher() {
    use meal::distill::config::DistillConfig;
    let pth = fixtures().join("resnet8.t7");
    let parse = |teachers: &str| -> meal::Result<DistillConfig> {
        let text = format!(
            "student = \"resnet8\"\nteachers = [{teachers}]\n[data]\npath = \"data/cifar10-mini\"\n\
             [meal]\nteacher_bn = \"eval\"\n"
        );
        let config: DistillConfig =
            meal::config::from_table(toml::from_str(&text).unwrap(), "distill config")?;
        config.validate()?;
        Ok(config)
    };
    let ok = parse(&format!(
        "{{ arch = \"resnet8\", pytorch = {pth:?}, mean = [0.5, 0.45, 0.4], std = [0.3, 0.25, 0.2] }}, \
         {{ arch = \"resnet8\", pytorch = {pth:?} }}"
    ))
    .unwrap();
    for (bad, why) in [
        (format!("{{ pytorch = {pth:?} }}"), "needs `arch`"),
        (
            format!("{{ arch = \"resnet8\", pytorch = {pth:?}, checkpoint = \"x.ckpt\" }}"),
            "not both",
        ),
        ("{ weight = 1.0 }".to_string(), "needs `checkpoint"),
        (
            format!("{{ arch = \"nope\", pytorch = {pth:?} }}"),
            "unknown architecture",
        ),
        (
            format!("{{ arch = \"resnet8\", pytorch = {pth:?}, mean = [0.5, 0.5, 0.5] }}"),
            "both `mean` and `std`",
        ),
        (
            "{ checkpoint = \"x.ckpt\", arch = \"resnet8\" }".to_string(),
            "go with `pytorch`",
        ),
        (
            format!("{{ arch = \"resnet8\", pytroch = {pth:?} }}"),
            "pytroch",
        ),
    ] {
        let err = parse(&bad)
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"))
            .to_string();
        assert!(err.contains(why), "{bad}: `{why}` not in {err}");
    }

    let ds = MemoryDataset::new(
        "tiny",
        [3, 32, 32],
        vec![0u8; 3 * 32 * 32],
        vec![0],
        (0..10).map(|i| i.to_string()).collect(),
        Normalization::CIFAR10,
    )
    .unwrap();
    let (teachers, metas) = meal::distill::teachers::load_teachers(&ok, &ds).unwrap();
    assert_eq!(teachers.len(), 2);
    assert_eq!(metas[0].source, "import");
    assert_eq!(metas[0].normalization, OTHER);
    assert_eq!(metas[1].normalization, Normalization::CIFAR10);
    assert_eq!(metas[0].test_acc, Some(91.25));
    // The teacher with the dataset's statistics gives PyTorch's logits; the other one sees its
    // input re-normalised to its own statistics.
    let ad = meal::backend::autodiff_device();
    let x = inputs(4).to_device(&ad);
    let got = teachers[1].forward(&x).logits;
    let rows: Vec<f32> = got.clone().into_data().try_to_vec().unwrap();
    let rows: Vec<Vec<f32>> = rows.chunks(10).map(|r| r.to_vec()).collect();
    assert_logits(
        "distill teacher",
        &rows,
        &expected().models["resnet8"].logits,
    );
    let renorm = Renorm::between(Normalization::CIFAR10, OTHER).unwrap();
    let a = teachers[0].forward(&x).logits;
    let b = teachers[1].forward(&renorm.apply(x)).logits;
    let d: f32 = (a - b).abs().max().into_scalar();
    assert!(d < 1e-5, "renormalised teacher differs by {d}");
}
