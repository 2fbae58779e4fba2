//! JPEG decoding by libjpeg-turbo (the `turbojpeg` feature), the decoder of Pillow and so of
//! torchvision: Pillow's RGB bytes exactly, 1.2–1.4× as fast as the image crate's zune-jpeg
//! (BENCHMARKS.md, "Input pipeline"). [`decode`] gives the RGB image or an error, or declines,
//! and then the image crate decodes the file as in the default build. What is accepted differs
//! in one case: a truncated JPEG is an error here, as in Pillow.

use std::cell::RefCell;
use std::path::Path;

use image::RgbImage;
use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};

use super::DataError;

/// What libjpeg-turbo made of a JPEG.
pub enum Decoded {
    Rgb(RgbImage),
    /// Left to the image crate, with libjpeg-turbo's reason (for the error if that fails too).
    Declined(String),
}

/// The start of every JPEG: SOI and the first marker's 0xFF.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

thread_local! {
    // One decompressor per loader thread: it owns libjpeg's state, which is allocated once
    // instead of once an image.
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// Decodes `bytes` (a JPEG, see [`is_jpeg`]) to RGB, refusing before any allocation an image
/// whose pixels would take more than `max_bytes`; errors name `path`.
pub fn decode(bytes: &[u8], path: &Path, max_bytes: u64) -> Result<Decoded, DataError> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let d = match slot {
            Some(d) => d,
            None => match Decompressor::new() {
                Ok(d) => slot.insert(d),
                Err(e) => return Ok(Decoded::Declined(e.to_string())),
            },
        };
        let result = decode_with(d, bytes, path, max_bytes);
        if !matches!(result, Ok(Decoded::Rgb(_))) {
            // A failed call can leave libjpeg's state half-read (the next header then reads
            // as garbage): the next file gets a fresh decompressor.
            *slot = None;
        }
        result
    })
}

fn decode_with(
    d: &mut Decompressor,
    bytes: &[u8],
    path: &Path,
    max_bytes: u64,
) -> Result<Decoded, DataError> {
    let header = match d.read_header(bytes) {
        Ok(h) => h,
        Err(e) => return Ok(Decoded::Declined(e.to_string())),
    };
    // libjpeg converts CMYK and YCCK only to CMYK pixels, not to RGB; the image crate converts
    // them as Pillow does within a level or two (tests/data_imagenet.rs).
    if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
        return Ok(Decoded::Declined(format!("{:?} JPEG", header.colorspace)));
    }
    let (w, h) = (header.width, header.height);
    let size = (w as u64) * (h as u64) * 3;
    if size > max_bytes {
        return Err(DataError::image(
            path,
            format!(
                "a {w}x{h} JPEG decodes to {} MiB, above the limit of {} MiB",
                size >> 20,
                max_bytes >> 20
            ),
        ));
    }
    let mut pixels = vec![0u8; size as usize];
    let out = Image {
        pixels: pixels.as_mut_slice(),
        width: w,
        pitch: 3 * w,
        height: h,
        format: PixelFormat::RGB,
    };
    // TurboJPEG reports libjpeg's warnings as failures, with the first warning's message. A
    // truncated file (libjpeg pads it with grey) is an error, as in Pillow ("image file is
    // truncated"). Pillow accepts the other warnings, e.g. extraneous bytes before a marker,
    // which a few ImageNet files have: the image crate decides those.
    if let Err(e) = d.decompress(bytes, out) {
        let why = e.to_string();
        if why.contains("Premature end of JPEG file") {
            return Err(DataError::image(
                path,
                format!("the JPEG is truncated (libjpeg-turbo: {why})"),
            ));
        }
        return Ok(Decoded::Declined(why));
    }
    match RgbImage::from_raw(w as u32, h as u32, pixels) {
        Some(img) => Ok(Decoded::Rgb(img)),
        None => Err(DataError::image(
            path,
            format!("libjpeg-turbo's pixels do not fill its {w}x{h} header"),
        )),
    }
}
