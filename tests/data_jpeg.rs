//! The `turbojpeg` build's JPEG decoder (src/data/jpeg.rs): libjpeg-turbo's RGB of every JPEG
//! of the ImageNet sample (baseline, progressive, greyscale) is byte for byte Pillow's
//! (tests/fixtures/imagenet-sample/pil_jpeg.json, scripts/data/make_jpeg_goldens.py), CMYK goes
//! to the image crate, and broken or oversized JPEGs are errors that name the file.
//! `cargo test --release --features turbojpeg --test data_jpeg`; nothing to run without it.
#![cfg(feature = "turbojpeg")]

use std::path::{Path, PathBuf};

use meal::data::jpeg::{self, Decoded};
use meal::data::transform::decode_image;
use sha2::{Digest, Sha256};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagenet-sample")
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn sample_jpegs_decode_exactly_as_pillow_does() {
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sample().join("pil_jpeg.json")).unwrap()).unwrap();
    let mut kinds = std::collections::BTreeMap::new();
    for (name, want) in golden["files"].as_object().unwrap() {
        let path = sample().join(name);
        let bytes = std::fs::read(&path).unwrap();
        let mode = want["mode"].as_str().unwrap();
        let progressive = want["progressive"].as_bool().unwrap();
        *kinds.entry((mode, progressive)).or_insert(0) += 1;
        let direct = jpeg::decode(&bytes, &path, u64::MAX).unwrap();
        if mode == "CMYK" {
            // Declined, then the image crate's conversion (tests/data_imagenet.rs checks it
            // against Pillow's within a level or two).
            assert!(
                matches!(&direct, Decoded::Declined(why) if why.contains("CMYK")),
                "{name}"
            );
            let img = decode_image(&path).unwrap();
            assert!(img.width() > 0 && img.height() > 0, "{name}");
            continue;
        }
        let Decoded::Rgb(direct) = direct else {
            panic!("{name}: libjpeg-turbo declined a {mode} JPEG");
        };
        let img = decode_image(&path).unwrap();
        assert_eq!(
            img, direct,
            "{name}: decode_image is not libjpeg-turbo's decoding"
        );
        assert_eq!(
            (img.width() as u64, img.height() as u64),
            (
                want["width"].as_u64().unwrap(),
                want["height"].as_u64().unwrap()
            ),
            "{name}"
        );
        let sum: u64 = img.as_raw().iter().map(|&v| v as u64).sum();
        assert_eq!(
            (hex(img.as_raw()), sum),
            (
                want["sha256"].as_str().unwrap().to_string(),
                want["sum"].as_u64().unwrap()
            ),
            "{name} ({mode}, progressive: {progressive}): RGB bytes differ from Pillow's"
        );
    }
    // The fixture covers what it claims to.
    let count = |mode, progressive| kinds.get(&(mode, progressive)).copied().unwrap_or(0);
    assert!(count("RGB", false) >= 6, "{kinds:?}");
    assert!(count("RGB", true) >= 6, "{kinds:?}");
    assert!(count("L", false) >= 3, "{kinds:?}");
    assert!(count("CMYK", false) >= 1, "{kinds:?}");
}

/// The sample's first baseline colour JPEG.
fn baseline_jpeg() -> Vec<u8> {
    std::fs::read(sample().join("train/n02690373/n02690373_0.JPEG")).unwrap()
}

#[test]
fn broken_jpegs_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = sample().join("photos/imagenet_14_129.JPEG");
    let want = decode_image(&good).unwrap();
    let photo = std::fs::read(&good).unwrap();
    // Cut inside the header, then inside the entropy-coded data (libjpeg would pad it with
    // grey and call it a warning; the image crate decodes the cut progressive photo without a
    // word, Pillow refuses it), then garbage after the start-of-image marker.
    for (name, bytes) in [
        ("header.JPEG", &photo[..200]),
        ("half.JPEG", &photo[..photo.len() / 2]),
        (
            "baseline.JPEG",
            &baseline_jpeg()[..baseline_jpeg().len() / 3],
        ),
        ("soi.JPEG", &b"\xff\xd8\xff not really a JPEG"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let msg = decode_image(&path).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("{name}: cannot decode image")) && msg.contains("libjpeg-turbo"),
            "{msg}"
        );
        // The thread's decompressor is not left in the failed file's state.
        assert_eq!(decode_image(&path).unwrap_err().to_string(), msg);
        assert_eq!(decode_image(&good).unwrap(), want);
    }
}

#[test]
fn oversized_jpegs_are_refused_before_decoding() {
    // The first frame header (SOF0) claims 60000x60000: 10 GiB of RGB.
    let mut bytes = baseline_jpeg();
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG has an SOF0 marker");
    bytes[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.JPEG");
    std::fs::write(&path, &bytes).unwrap();
    let msg = decode_image(&path).unwrap_err().to_string();
    assert!(
        msg.contains("huge.JPEG: cannot decode image: a 60000x60000 JPEG decodes to 10299 MiB, above the limit of 256 MiB"),
        "{msg}"
    );
}

#[test]
fn extraneous_bytes_before_a_marker_are_accepted_as_by_pillow() {
    // libjpeg warns ("Corrupt JPEG data: 4 extraneous bytes before marker 0xd9"), which
    // TurboJPEG reports as a failure; Pillow decodes such files (a few ImageNet photos are
    // like this), and so does meal, through the image crate.
    let good = baseline_jpeg();
    let eoi = good.len() - 2;
    assert_eq!(good[eoi..], [0xFF, 0xD9]);
    let mut bytes = good[..eoi].to_vec();
    bytes.extend_from_slice(&[1, 2, 3, 4, 0xFF, 0xD9]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.JPEG");
    std::fs::write(&path, &bytes).unwrap();
    assert!(
        matches!(jpeg::decode(&bytes, &path, u64::MAX).unwrap(), Decoded::Declined(why) if why.contains("extraneous")),
    );
    let img = decode_image(&path).unwrap();
    let reference = decode_image(&sample().join("train/n02690373/n02690373_0.JPEG")).unwrap();
    assert_eq!(img.dimensions(), reference.dimensions());
}
