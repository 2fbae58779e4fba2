//! Decoding alone, one thread, from memory: the image crate's zune-jpeg beside libjpeg-turbo
//! (`src/data/jpeg.rs`) on every JPEG under a folder, baseline and progressive files apart. It
//! decided which JPEGs the `turbojpeg` build gives to libjpeg-turbo (BENCHMARKS.md, "Input
//! pipeline").
//!
//! ```sh
//! cargo run --release --features turbojpeg --example jpeg_decode -- DIR [PASSES]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use meal::data::jpeg::{Decoded, decode, is_jpeg};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Images/s of the best of `passes` passes of `f` over `set`.
fn rate(set: &[Vec<u8>], passes: usize, f: &dyn Fn(&[u8]) -> usize) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..passes {
        let t = Instant::now();
        let pixels: usize = set.iter().map(|b| f(b)).sum();
        std::hint::black_box(pixels);
        best = best.min(t.elapsed().as_secs_f64());
    }
    set.len() as f64 / best
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("usage: jpeg_decode DIR [PASSES]"));
    let passes: usize = args.get(2).map_or(5, |p| p.parse().expect("PASSES"));
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    let (mut baseline, mut progressive) = (Vec::new(), Vec::new());
    for p in paths {
        let bytes = std::fs::read(&p).unwrap();
        if !is_jpeg(&bytes) {
            continue;
        }
        match turbojpeg::read_header(&bytes) {
            Ok(h) if h.is_progressive => progressive.push(bytes),
            Ok(_) => baseline.push(bytes),
            Err(e) => panic!("{}: {e}", p.display()),
        }
    }
    let zune = |b: &[u8]| {
        image::load_from_memory_with_format(b, image::ImageFormat::Jpeg)
            .unwrap()
            .into_rgb8()
            .len()
    };
    let turbo = |b: &[u8]| match decode(b, Path::new("bench"), u64::MAX).unwrap() {
        Decoded::Rgb(img) => img.len(),
        Decoded::Declined(why) => panic!("libjpeg-turbo declined: {why}"),
    };
    println!("| JPEGs | files | zune-jpeg images/s | libjpeg-turbo images/s | turbo / zune |");
    println!("| --- | --- | --- | --- | --- |");
    for (kind, set) in [("baseline", &baseline), ("progressive", &progressive)] {
        if set.is_empty() {
            continue;
        }
        let z = rate(set, passes, &zune);
        let t = rate(set, passes, &turbo);
        println!(
            "| {kind} | {} | {z:.0} | {t:.0} | {:.2} |",
            set.len(),
            t / z
        );
    }
}
