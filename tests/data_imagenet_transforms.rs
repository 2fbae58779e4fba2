//! The ImageNet transforms against torchvision on PIL images: RandomResizedCrop's crop sizes for
//! torch's own draws and its centre-crop fallback, Resize(floor(size / crop_pct)) +
//! CenterCrop(size) and resized_crop with bilinear and bicubic filters (byte-exact: meal
//! reproduces Pillow's fixed-point resampling). Values from
//! scripts/data/make_transform_goldens.py in tests/fixtures/imagenet_transforms.json.

use std::path::Path;

use meal::data::transform::{
    random_resized_crop_fallback, random_resized_crop_try, resize_center_crop,
};
use meal::data::{InputSettings, Interpolation, resample};
use serde_json::Value;

fn goldens() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagenet_transforms.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

fn image(case: &Value) -> image::RgbImage {
    let (h, w) = (usize_of(&case["height"]), usize_of(&case["width"]));
    let px: Vec<u8> = case["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    image::RgbImage::from_raw(w as u32, h as u32, px).unwrap()
}

fn interpolation(case: &Value) -> Interpolation {
    match case["interpolation"].as_str().unwrap() {
        "bilinear" => Interpolation::Bilinear,
        "bicubic" => Interpolation::Bicubic,
        other => panic!("unknown interpolation {other}"),
    }
}

fn expected_hwc(case: &Value) -> Vec<u8> {
    case["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect()
}

/// CHW → HWC, the layout of the PIL arrays.
fn hwc(chw: &[u8], size: usize) -> Vec<u8> {
    let plane = size * size;
    (0..plane)
        .flat_map(|i| (0..3).map(move |c| (c, i)))
        .map(|(c, i)| chw[c * plane + i])
        .collect()
}

#[test]
fn random_resized_crop_sizes_and_fallback_match_torchvision() {
    let g = goldens();
    let cases = g["random_resized_crop"].as_array().unwrap();
    let (mut accepted, mut fallbacks) = (0, 0);
    for case in cases {
        let (h, w) = (usize_of(&case["height"]), usize_of(&case["width"]));
        let tries = case["tries"].as_array().unwrap();
        let mut got = None;
        for t in tries {
            let (scale, aspect) = (t[0].as_f64().unwrap(), t[1].as_f64().unwrap());
            if let Some(hw) = random_resized_crop_try(h, w, scale, aspect) {
                got = Some(hw);
                break;
            }
        }
        if let Some(acc) = case.get("accepted") {
            accepted += 1;
            let want = (usize_of(&acc[0]), usize_of(&acc[1]));
            assert_eq!(got, Some(want), "{h}x{w}: {case}");
        } else {
            fallbacks += 1;
            assert_eq!(got, None, "{h}x{w}: torchvision found no crop in 10 tries");
            let f = &case["fallback"];
            let want = (
                usize_of(&f[0]),
                usize_of(&f[1]),
                usize_of(&f[2]),
                usize_of(&f[3]),
            );
            assert_eq!(random_resized_crop_fallback(h, w), want, "{h}x{w}");
        }
    }
    assert!(accepted >= 20 && fallbacks >= 3, "{accepted} {fallbacks}");
}

#[test]
fn eval_resize_center_crop_matches_torchvision_pil() {
    let g = goldens();
    let cases = g["eval_resize_center_crop"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for case in cases {
        let size = usize_of(&case["size"]);
        let input = InputSettings {
            crop_pct: case["crop_pct"].as_f64().unwrap(),
            interpolation: interpolation(case),
        };
        assert_eq!(input.resize_to(size), usize_of(&case["resize_to"]));
        let out = hwc(&resize_center_crop(&image(case), size, input), size);
        assert_eq!(
            out,
            expected_hwc(case),
            "{}x{} → {size} ({:?})",
            case["height"],
            case["width"],
            input
        );
    }
}

#[test]
fn resized_crop_matches_torchvision_pil() {
    let g = goldens();
    let cases = g["resized_crop"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let size = usize_of(&case["size"]);
        let b = &case["box"];
        // torchvision's (top, left, height, width).
        let (top, left, h, w) = (
            b[0].as_u64().unwrap(),
            b[1].as_u64().unwrap(),
            b[2].as_u64().unwrap(),
            b[3].as_u64().unwrap(),
        );
        let crop =
            image::imageops::crop_imm(&image(case), left as u32, top as u32, w as u32, h as u32)
                .to_image();
        let out = resample::resize(&crop, size, size, interpolation(case));
        assert_eq!(out.into_raw(), expected_hwc(case), "box {b}");
    }
}

#[test]
fn crop_fraction_sizes_follow_timm() {
    // timm: scale_size = floor(img_size / crop_pct).
    let s = |crop_pct| InputSettings {
        crop_pct,
        interpolation: Interpolation::Bicubic,
    };
    assert_eq!(s(0.875).resize_to(224), 256);
    assert_eq!(s(0.95).resize_to(224), 235);
    assert_eq!(s(0.922).resize_to(380), 412);
    assert_eq!(s(1.0).resize_to(32), 32);
    assert!(s(0.0).check("data.crop_pct").is_err());
    assert!(s(f64::NAN).check("data.crop_pct").is_err());
    let msg = s(1.5).check("data.crop_pct").unwrap_err().to_string();
    assert!(msg.contains("data.crop_pct = 1.5"), "{msg}");
}
