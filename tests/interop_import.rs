//! PyTorch → meal: the fixtures of `scripts/interop/make_fixtures.py` import with the logits
//! PyTorch computed (1e-4), and a state dict that does not fit fails with every problem listed.

mod interop_common;

use interop_common::*;
use meal::interop::{
    ImportMeta, ImportOptions, NameScheme, import_checkpoint, import_pytorch, safetensors,
    torch_save,
};
use meal::train::model_io::load_model;

#[test]
fn resnet8_imports_from_pth_t7_and_safetensors() {
    let expected = expected();
    let fx = &expected.models["resnet8"];
    assert_eq!(expected.inputs.key, "input");
    assert_eq!(fx.files.len(), 3);
    let device = meal::backend::device();
    for file in &fx.files {
        let path = fixtures().join(file);
        let imported = import_pytorch(&path, &ImportOptions::new("resnet8"), &device)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let r = &imported.report;
        assert!(r.is_complete(), "{file}: {r}");
        assert_eq!(imported.num_classes, 10);
        assert_eq!(r.scheme, Some(NameScheme::Meal));
        // resnet8: stem + 3 blocks of 2 conv+BN, fc: 1+6 convs, 7 BNs of 4, fc weight+bias.
        assert_eq!(r.loaded, 7 + 7 * 4 + 2, "{file}: {r}");
        assert_eq!(r.batch_counters, 7, "{file}");
        if file.ends_with(".t7") {
            assert_eq!(r.prefix, "net.module.", "{file}");
            assert!(r.file_format.contains("legacy"), "{}", r.file_format);
        } else {
            assert_eq!(r.prefix, "", "{file}");
        }
        assert_logits(file, &logits(&imported.net, 4), &fx.logits);
    }
}

#[test]
fn imported_checkpoint_carries_normalisation_and_reference_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("teacher.ckpt");
    let device = meal::backend::device();
    let norm = meal::data::Normalization {
        mean: [0.5, 0.5, 0.5],
        std: [0.25, 0.25, 0.25],
    };
    let meta = ImportMeta {
        normalization: Some(norm),
        ..Default::default()
    };
    let (_, written) = import_checkpoint(
        &fixtures().join("resnet8.t7"),
        &ImportOptions::new("resnet8"),
        &meta,
        Some(&out),
        &device,
    )
    .unwrap();
    let (net, meta, _) = load_model(&out, &device).unwrap();
    assert_eq!(meta, written);
    assert_eq!(meta.source, "import");
    assert_eq!(meta.arch, "resnet8");
    assert_eq!(meta.normalization, norm);
    assert_eq!(meta.input_shape, [3, 32, 32]);
    assert_eq!(meta.class_names.len(), 10);
    // The reference's {'net', 'acc', 'epoch'} fields.
    assert_eq!(meta.test_acc, Some(91.25));
    assert_eq!(meta.epoch, 7);
    assert_logits(
        "resnet8.t7 via meal checkpoint",
        &logits(&net, 4),
        &expected().models["resnet8"].logits,
    );
}

/// vgg8 (meal names) and the kuangliu-named resnet18_cifar, preact_resnet18 and vgg19_bn, with the
/// deterministic weights of the fixture listing, written as torch.save / safetensors files.
#[test]
fn deterministic_models_match_pytorch_under_both_name_schemes() {
    let expected = expected();
    let device = meal::backend::device();
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "vgg8",
        "kuangliu_resnet18",
        "kuangliu_preact_resnet18",
        "kuangliu_vgg19_bn",
    ] {
        let fx = &expected.models[name];
        let tensors = deterministic_state_dict(&fx.listing);
        // Alternate the containers: the torch.save writer for vgg8 and the kuangliu ResNet,
        // safetensors for the others.
        let path = if matches!(name, "vgg8" | "kuangliu_resnet18") {
            let p = dir.path().join(format!("{name}.pth"));
            std::fs::write(&p, torch_save::encode(&tensors).unwrap()).unwrap();
            p
        } else {
            let p = dir.path().join(format!("{name}.safetensors"));
            std::fs::write(&p, safetensors::encode(&tensors, &[]).unwrap()).unwrap();
            p
        };
        let imported = import_pytorch(&path, &ImportOptions::new(&fx.arch), &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = &imported.report;
        assert!(r.is_complete(), "{name}: {r}");
        assert_eq!(
            r.scheme.unwrap().as_str(),
            fx.names,
            "{name}: scheme detected"
        );
        let counters = fx.listing.iter().filter(|l| l.2 == "counter").count();
        assert_eq!(r.loaded + counters, fx.listing.len(), "{name}: {r}");
        assert_eq!(r.batch_counters, counters);
        assert_logits(name, &logits(&imported.net, fx.logits.len()), &fx.logits);
    }
}

#[test]
fn strict_import_lists_every_missing_unexpected_and_misshaped_key() {
    let fx = &expected().models["vgg8"];
    let mut tensors = deterministic_state_dict(&fx.listing);
    // One missing, two unexpected, one wrongly shaped.
    tensors.retain(|t| t.key != "groups.1.0.bn.running_var");
    let mut extra = tensors[0].clone();
    extra.key = "head.weight".into();
    tensors.push(extra);
    let mut extra = tensors[1].clone();
    extra.key = "groups.9.0.conv.bias".into();
    tensors.push(extra);
    let bad = tensors
        .iter_mut()
        .find(|t| t.key == "groups.2.1.conv.weight")
        .unwrap();
    bad.shape = vec![128, 128, 1, 9];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.pth");
    std::fs::write(&path, torch_save::encode(&tensors).unwrap()).unwrap();
    let device = meal::backend::device();

    let err = import_pytorch(&path, &ImportOptions::new("vgg8"), &device)
        .err()
        .expect("strict import must fail")
        .to_string();
    for needle in [
        "broken.pth",
        "1 missing, 2 unexpected, 1 wrongly shaped",
        "missing     groups.1.0.bn.running_var",
        "unexpected  head.weight",
        "unexpected  groups.9.0.conv.bias",
        "groups.2.1.conv.weight: the model has [128, 128, 3, 3], the file [128, 128, 1, 9]",
        "--allow-partial",
    ] {
        assert!(err.contains(needle), "`{needle}` not in:\n{err}");
    }

    let mut opts = ImportOptions::new("vgg8");
    opts.allow_partial = true;
    let imported = import_pytorch(&path, &opts, &device).unwrap();
    let r = &imported.report;
    assert!(!r.is_complete());
    assert_eq!(r.missing, vec!["groups.1.0.bn.running_var".to_string()]);
    assert_eq!(r.unexpected.len(), 2);
    assert_eq!(r.mismatched.len(), 1);
    assert_eq!(r.loaded, fx.listing.len() - 7 - 2);
    let text = r.to_string();
    assert!(
        text.contains("1 missing, 2 unexpected, 1 wrongly shaped"),
        "{text}"
    );
}

#[test]
fn wrong_arch_or_scheme_is_refused_with_the_reason() {
    let device = meal::backend::device();
    let path = fixtures().join("resnet8.pth");
    // resnet14 has more blocks: every one of them is missing.
    let err = import_pytorch(&path, &ImportOptions::new("resnet14"), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing     stages.0.1.conv1.weight"), "{err}");
    let mut opts = ImportOptions::new("resnet8");
    opts.names = Some(NameScheme::Kuangliu);
    let err = import_pytorch(&path, &opts, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("resnet8") && err.contains("kuangliu"), "{err}");
    let err = import_pytorch(
        &fixtures().join("nope.pth"),
        &ImportOptions::new("resnet8"),
        &device,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("nope.pth"), "{err}");
    let err = import_pytorch(
        &fixtures().join("expected.json"),
        &ImportOptions::new("resnet8"),
        &device,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("expected.json") && err.contains("PyTorch"),
        "{err}"
    );
}
