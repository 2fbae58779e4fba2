//! The photo transforms' fast paths against the plain ones they replace, on every instruction
//! set the CPU has: resizing a crop in place and computing only a window of the result gives
//! the bytes of copying the crop, resizing all of it on the portable code and cutting the
//! window; the one-pass flip + ToTensor + Normalize gives the values of the three passes.
//! (Pillow itself is the reference of tests/data_imagenet_transforms.rs.)

mod isa_common;

use image::RgbImage;
use isa_common::on_every_isa;
use meal::data::resample::{self, Rect};
use meal::data::transform::{normalize_chw, normalize_hwc, rgb_to_chw};
use meal::data::{CropBox, Interpolation, Normalization};
use meal::kernels::simd::{self, Isa};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_image(rng: &mut ChaCha8Rng, w: usize, h: usize) -> RgbImage {
    let px = (0..w * h * 3).map(|_| rng.random::<u8>()).collect();
    RgbImage::from_raw(w as u32, h as u32, px).unwrap()
}

/// The plain way: copy the crop, resize all of it, cut the window (the caller holds the
/// portable code).
fn plain(img: &RgbImage, from: Rect, w: usize, h: usize, keep: Rect, f: Interpolation) -> Vec<u8> {
    let crop = image::imageops::crop_imm(
        img,
        from.left as u32,
        from.top as u32,
        from.width as u32,
        from.height as u32,
    )
    .to_image();
    let full = resample::resize(&crop, w, h, f);
    image::imageops::crop_imm(
        &full,
        keep.left as u32,
        keep.top as u32,
        keep.width as u32,
        keep.height as u32,
    )
    .to_image()
    .into_raw()
}

/// A random rectangle inside a `w`×`h` area, touching its right and bottom edges now and then.
fn rect(rng: &mut ChaCha8Rng, w: usize, h: usize) -> Rect {
    let width = rng.random_range(1..=w);
    let height = rng.random_range(1..=h);
    let edge = rng.random::<f64>() < 0.3;
    Rect {
        left: if edge {
            w - width
        } else {
            rng.random_range(0..=w - width)
        },
        top: if edge {
            h - height
        } else {
            rng.random_range(0..=h - height)
        },
        width,
        height,
    }
}

struct Case {
    img: RgbImage,
    from: Rect,
    out: (usize, usize),
    keep: Rect,
    filter: Interpolation,
    want: Vec<u8>,
}

/// Random crops, outputs and windows, with the plain way's bytes on the portable code.
fn cases() -> Vec<Case> {
    let _portable = simd::force(Isa::Portable).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    (0..150)
        .map(|case| {
            // Sizes from one pixel to a small photo; outputs shrinking and enlarging, and
            // widths that leave every remainder of the 32-value vector loop.
            let (iw, ih) = (rng.random_range(1..140), rng.random_range(1..140));
            let img = random_image(&mut rng, iw, ih);
            let from = if case % 5 == 0 {
                Rect::whole(iw, ih)
            } else {
                rect(&mut rng, iw, ih)
            };
            let (ow, oh) = (rng.random_range(1..90), rng.random_range(1..90));
            let keep = if case % 3 == 0 {
                Rect::whole(ow, oh)
            } else {
                rect(&mut rng, ow, oh)
            };
            let filter = if case % 2 == 0 {
                Interpolation::Bilinear
            } else {
                Interpolation::Bicubic
            };
            let want = plain(&img, from, ow, oh, keep, filter);
            Case {
                img,
                from,
                out: (ow, oh),
                keep,
                filter,
                want,
            }
        })
        .collect()
}

#[test]
fn resizing_a_crop_in_place_and_a_window_of_the_result_is_byte_identical() {
    let cases = cases();
    let shrinking = cases.iter().filter(|c| c.out.0 < c.from.width).count();
    assert!((30..120).contains(&shrinking), "{shrinking} of 150 shrink");
    on_every_isa("resize_rect", |isa| {
        for c in &cases {
            let (ow, oh) = c.out;
            let got = resample::resize_rect(&c.img, c.from, ow, oh, c.keep, c.filter);
            assert_eq!(
                got,
                c.want,
                "{isa:?}: {}x{} image, crop {:?} to {ow}x{oh}, window {:?}, {:?}",
                c.img.width(),
                c.img.height(),
                c.from,
                c.keep,
                c.filter
            );
        }
    });
}

#[test]
fn one_pass_flip_and_normalise_equals_the_three_passes() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let norm = Normalization::IMAGENET;
    for (w, h) in [(1, 1), (7, 3), (224, 224), (31, 50)] {
        let img = random_image(&mut rng, w, h);
        for flip in [false, true] {
            let mut flipped = img.clone();
            if flip {
                image::imageops::flip_horizontal_in_place(&mut flipped);
            }
            let want = normalize_chw(&rgb_to_chw(&flipped), [3, h, w], norm);
            let got = normalize_hwc(img.as_raw(), w, flip, norm);
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{w}x{h}, flip {flip}"
            );
        }
    }
}

#[test]
fn a_crop_box_sample_is_its_uint8_view_normalised() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let img = random_image(&mut rng, 300, 200);
    let path = std::path::Path::new("random.png");
    let mut flips = 0;
    for _ in 0..20 {
        let view = CropBox::draw(200, 300, &mut rng);
        flips += view.flip as usize;
        for f in [Interpolation::Bilinear, Interpolation::Bicubic] {
            let u8s = view.apply(&img, path, 64, f).unwrap();
            let want = normalize_chw(&u8s, [3, 64, 64], Normalization::IMAGENET);
            let got = view
                .sample(&img, path, 64, f, Normalization::IMAGENET)
                .unwrap();
            assert_eq!(got, want, "{view:?} {f:?}");
        }
    }
    assert!((1..20).contains(&flips), "{flips} of 20 views flipped");
}
