//! Augmentation geometry (RandomCrop(32, padding=4) + horizontal flip), exactness of the eval
//! transform, RandomResizedCrop parameters and `load_image_for_eval`.

use std::collections::HashSet;

use meal::data::transform::{
    crop_flip_chw, random_resized_crop_params, resize_center_crop, rgb_to_chw,
};
use meal::data::{
    Dataset, EvalResize, MemoryDataset, Normalization, load_image_for_eval,
    load_image_for_eval_with,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const SHAPE: [usize; 3] = [3, 32, 32];

/// A hand-made image where every (channel, row, column) has a recognisable value (never 0).
fn pixel(ch: usize, y: usize, x: usize) -> u8 {
    (1 + ch * 80 + ((y * 32 + x) * 7) % 79) as u8
}

fn image() -> Vec<u8> {
    let mut v = vec![0u8; 3072];
    for ch in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                v[ch * 1024 + y * 32 + x] = pixel(ch, y, x);
            }
        }
    }
    v
}

/// The expected crop: output (y, x) shows padded(y + top, x' + left) where x' is x mirrored when
/// flipped, and the padded image is the source shifted by 4 with zeros around it.
fn expected_crop(top: usize, left: usize, flip: bool) -> Vec<u8> {
    let mut out = vec![0u8; 3072];
    for ch in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                let cx = if flip { 31 - x } else { x };
                let (py, px) = (y + top, cx + left);
                let inside = (4..36).contains(&py) && (4..36).contains(&px);
                out[ch * 1024 + y * 32 + x] = if inside { pixel(ch, py - 4, px - 4) } else { 0 };
            }
        }
    }
    out
}

#[test]
fn crop_geometry_by_hand() {
    let img = image();
    // Centre offset (4, 4) without flip is the identity.
    assert_eq!(crop_flip_chw(&img, SHAPE, 4, 4, 4, false), img);
    // Offset (0, 0): the image moves 4 down and 4 right, zeros enter at the top-left.
    let c = crop_flip_chw(&img, SHAPE, 4, 0, 0, false);
    assert_eq!(c[0], 0);
    assert_eq!(c[3 * 32 + 31], 0);
    assert_eq!(c[4 * 32 + 4], pixel(0, 0, 0));
    assert_eq!(c[1024 + 31 * 32 + 31], pixel(1, 27, 27));
    // Offset (8, 8): the image moves up-left, zeros at the bottom-right.
    let c = crop_flip_chw(&img, SHAPE, 4, 8, 8, false);
    assert_eq!(c[0], pixel(0, 4, 4));
    assert_eq!(c[27 * 32 + 27], pixel(0, 31, 31));
    assert_eq!(c[28 * 32], 0);
    assert_eq!(c[5 * 32 + 28], 0);
    // Flip at the centre mirrors columns.
    let c = crop_flip_chw(&img, SHAPE, 4, 4, 4, true);
    assert_eq!(c[2 * 1024 + 7 * 32], pixel(2, 7, 31));
    assert_eq!(c[2 * 1024 + 7 * 32 + 31], pixel(2, 7, 0));
    // Every combination against the reference formula.
    for top in 0..=8 {
        for left in 0..=8 {
            for flip in [false, true] {
                assert_eq!(
                    crop_flip_chw(&img, SHAPE, 4, top, left, flip),
                    expected_crop(top, left, flip),
                    "top {top} left {left} flip {flip}"
                );
            }
        }
    }
}

fn dataset() -> MemoryDataset {
    let names = (0..10).map(|i| i.to_string()).collect();
    let mut images = image();
    images.extend((0..3072).map(|k| (k % 256) as u8));
    MemoryDataset::new(
        "test",
        SHAPE,
        images,
        vec![4, 7],
        names,
        Normalization::CIFAR10,
    )
    .unwrap()
}

fn normalize(bytes: &[u8], n: Normalization) -> Vec<f32> {
    bytes
        .iter()
        .enumerate()
        .map(|(k, &v)| (v as f32 / 255.0 - n.mean[k / 1024]) / n.std[k / 1024])
        .collect()
}

#[test]
fn eval_transform_is_exact() {
    let ds = dataset();
    let n = Normalization::CIFAR10;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (x, y) = ds.get(0, false, &mut rng).unwrap();
    assert_eq!(y, 4);
    assert_eq!(x, normalize(&image(), n));
    // Eval ignores the rng.
    let (x2, _) = ds
        .get(0, false, &mut ChaCha8Rng::seed_from_u64(99))
        .unwrap();
    assert_eq!(x, x2);
    // Known values: image 1 pixel k holds k % 256.
    let (x, y) = ds.get(1, false, &mut rng).unwrap();
    assert_eq!(y, 7);
    assert!((x[255] - (1.0 - 0.4914) / 0.2023).abs() < 1e-6);
    assert!((x[1024] - (0.0 - 0.4822) / 0.1994).abs() < 1e-6);
    assert!((x[2048 + 51] - (51.0 / 255.0 - 0.4465) / 0.2010).abs() < 1e-6);
}

#[test]
fn augmentation_is_a_padded_crop_and_flip() {
    let ds = dataset();
    let n = Normalization::CIFAR10;
    let candidates: Vec<((usize, usize, bool), Vec<f32>)> = (0..=8)
        .flat_map(|t| (0..=8).flat_map(move |l| [false, true].map(|f| (t, l, f))))
        .map(|p| (p, normalize(&expected_crop(p.0, p.1, p.2), n)))
        .collect();
    let pad: [f32; 3] = [0, 1, 2].map(|c| (0.0 - n.mean[c]) / n.std[c]);
    let mut seen = HashSet::new();
    let mut flips = 0;
    for seed in 0..400 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (x, y) = ds.get(0, true, &mut rng).unwrap();
        assert_eq!(y, 4);
        let (params, _) = candidates
            .iter()
            .find(|(_, c)| *c == x)
            .unwrap_or_else(|| panic!("seed {seed}: not a padded crop/flip of the image"));
        // Padding pixels are exactly (0 - mean) / std.
        let (top, left, flip) = *params;
        if top == 0 {
            for c in 0..3 {
                assert_eq!(x[c * 1024], pad[c]);
            }
        }
        if left == 8 && !flip {
            assert_eq!(x[31], pad[0]);
        }
        seen.insert((top, left));
        flips += flip as usize;
        // Same rng seed, same result.
        let again = ds
            .get(0, true, &mut ChaCha8Rng::seed_from_u64(seed))
            .unwrap();
        assert_eq!(again.0, x);
    }
    // Offsets are uniform over 0..=8 for each axis, flips about half.
    assert!(seen.len() >= 75, "only {} of 81 offsets seen", seen.len());
    assert!((150..250).contains(&flips), "{flips} flips of 400");
}

#[test]
fn random_resized_crop_params_are_valid_and_fall_back() {
    for seed in 0..200 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (h, w) = (60 + seed as usize % 50, 80);
        let (top, left, ch, cw) = random_resized_crop_params(h, w, &mut rng);
        assert!(ch > 0 && cw > 0 && top + ch <= h && left + cw <= w);
        let area = (ch * cw) as f64 / (h * w) as f64;
        assert!(area > 0.06 && area <= 1.0, "{area}");
        let ratio = cw as f64 / ch as f64;
        assert!(ratio > 0.6 && ratio < 1.6, "{ratio}");
    }
    // A 1-pixel-high strip can never fit a sampled crop: torchvision's centre-crop fallback
    // with the widest allowed ratio gives h = 1, w = round(4/3) = 1.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    assert_eq!(
        random_resized_crop_params(1, 1000, &mut rng),
        (0, 499, 1, 1)
    );
    // Tall strip: w = width, h = round(w / (3/4)).
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    assert_eq!(
        random_resized_crop_params(1000, 3, &mut rng),
        (498, 0, 4, 3)
    );
}

#[test]
fn resize_center_crop_geometry() {
    // size 16 → resize shorter side to int(256/224·16) = 18; an 18×18 image is unchanged and
    // the centre crop starts at (1, 1).
    let img = image::RgbImage::from_fn(18, 18, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let out = resize_center_crop(&img, 16, meal::data::InputSettings::default());
    assert_eq!(out.len(), 3 * 256);
    for y in 0..16 {
        for x in 0..16 {
            assert_eq!(out[y * 16 + x], x as u8 + 1);
            assert_eq!(out[256 + y * 16 + x], y as u8 + 1);
            assert_eq!(out[512 + y * 16 + x], 7);
        }
    }
    // A 36×18 (w×h) image: shorter side 18 stays, centre crop starts at column 10.
    let img = image::RgbImage::from_fn(36, 18, |x, y| image::Rgb([x as u8, y as u8, 0]));
    let out = resize_center_crop(&img, 16, meal::data::InputSettings::default());
    assert_eq!(out[0], 10);
    assert_eq!(out[256], 1);
    assert_eq!(out[15], 25);
}

#[test]
fn load_image_for_eval_small_and_large() {
    let dir = tempfile::tempdir().unwrap();
    // 32×32 PNG: exact ToTensor + Normalize.
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([
            pixel(0, y as usize, x as usize),
            pixel(1, y as usize, x as usize),
            pixel(2, y as usize, x as usize),
        ])
    });
    let p = dir.path().join("a.png");
    img.save(&p).unwrap();
    let n = Normalization::CIFAR10;
    let x = load_image_for_eval(&p, 32, n).unwrap();
    assert_eq!(x, normalize(&image(), n));
    assert_eq!(rgb_to_chw(&img), image());

    // A big solid image resized to 32×32 keeps its colour.
    let p = dir.path().join("b.png");
    image::RgbImage::from_pixel(100, 60, image::Rgb([255, 0, 128]))
        .save(&p)
        .unwrap();
    let x = load_image_for_eval(&p, 32, n).unwrap();
    assert_eq!(x.len(), 3072);
    assert!((x[500] - (1.0 - n.mean[0]) / n.std[0]).abs() < 1e-5);
    assert!((x[1024 + 500] - (0.0 - n.mean[1]) / n.std[1]).abs() < 1e-5);

    // Folder-style model: 256×256 → Resize(256) is the identity, CenterCrop(224) from 16.
    let p = dir.path().join("c.png");
    image::RgbImage::from_fn(256, 256, |x, y| image::Rgb([x as u8, y as u8, 0]))
        .save(&p)
        .unwrap();
    let n = Normalization::IMAGENET;
    let x = load_image_for_eval(&p, 224, n).unwrap();
    assert_eq!(x.len(), 3 * 224 * 224);
    assert_eq!(x[0], (16.0 / 255.0 - n.mean[0]) / n.std[0]);
    assert_eq!(x[223], ((16.0 + 223.0) / 255.0 - n.mean[0]) / n.std[0]);
    let direct = load_image_for_eval_with(&p, 256, n, EvalResize::Direct).unwrap();
    assert_eq!(direct[255], (255.0 / 255.0 - n.mean[0]) / n.std[0]);

    // Errors name the file.
    let bad = dir.path().join("bad.jpg");
    std::fs::write(&bad, b"not a jpeg").unwrap();
    let msg = load_image_for_eval(&bad, 32, n).unwrap_err().to_string();
    assert!(msg.contains("bad.jpg: cannot decode image"), "{msg}");
    let msg = load_image_for_eval(&dir.path().join("missing.png"), 32, n)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing.png"), "{msg}");
}
