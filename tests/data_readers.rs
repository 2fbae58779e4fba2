//! Dataset readers: CIFAR-10/100 binary and python, SVHN MAT files, image folders, format
//! detection, and corrupt input of every kind.

use std::io::Write;
use std::path::{Path, PathBuf};

use meal::data::{Cifar100Labels, DataConfig, DataError, DataFormat, Dataset, Normalization, open};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(0)
}

/// Pixel `p` of image `i` of the fixture batch `seed` (see scripts/data/make_pickle_fixtures.py).
fn fixture_pixel(seed: usize, i: usize, p: usize) -> u8 {
    ((seed * 53 + i * 31 + p * 7) % 256) as u8
}

fn expected_eval(bytes: &[u8], norm: Normalization) -> Vec<f32> {
    bytes
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let c = k / 1024;
            (v as f32 / 255.0 - norm.mean[c]) / norm.std[c]
        })
        .collect()
}

fn eval(ds: &dyn Dataset, i: usize) -> (Vec<f32>, usize) {
    ds.get(i, false, &mut rng()).unwrap()
}

fn err_string<T>(r: Result<T, DataError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn open_err(config: &DataConfig) -> String {
    err_string(open(config))
}

// ---------------------------------------------------------------- CIFAR binary

fn write_cifar10_bin(dir: &Path, batches: &[(&str, &[u8])]) {
    for (name, labels) in batches {
        let mut bytes = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            bytes.push(l);
            bytes.extend((0..3072).map(|p| fixture_pixel(name.len(), i, p)));
        }
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn cifar10_bin_reads_batches_in_numeric_order() {
    let dir = tempfile::tempdir().unwrap();
    // data_batch_10 must come after data_batch_2.
    write_cifar10_bin(
        dir.path(),
        &[
            ("data_batch_1.bin", &[3, 8]),
            ("data_batch_2.bin", &[0]),
            ("data_batch_10.bin", &[9, 9, 1]),
            ("test_batch.bin", &[5, 6]),
        ],
    );
    std::fs::write(
        dir.path().join("batches.meta.txt"),
        "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n",
    )
    .unwrap();
    let s = open(&DataConfig::new(dir.path())).unwrap();
    assert_eq!(s.train.len(), 6);
    let labels: Vec<_> = (0..6).map(|i| s.train.label(i)).collect();
    assert_eq!(labels, [3, 8, 0, 9, 9, 1]);
    assert_eq!(s.test.len(), 2);
    assert_eq!(s.train.num_classes(), 10);
    assert_eq!(s.train.class_names()[9], "j");
    assert_eq!(s.train.output_shape(), [3, 32, 32]);
    assert_eq!(s.train.normalization(), Normalization::CIFAR10);
    assert!(
        s.train
            .describe()
            .starts_with("CIFAR-10 binary, train split, 6 images")
    );
    // Pixels: image 0 of data_batch_10.bin (name length 17) is train index 3.
    let want: Vec<u8> = (0..3072).map(|p| fixture_pixel(17, 0, p)).collect();
    let (x, y) = eval(s.train.as_ref(), 3);
    assert_eq!(y, 9);
    assert_eq!(x, expected_eval(&want, Normalization::CIFAR10));
    // Explicit format gives the same.
    let mut cfg = DataConfig::new(dir.path());
    cfg.format = DataFormat::Cifar10Bin;
    assert_eq!(open(&cfg).unwrap().train.len(), 6);
}

#[test]
fn cifar10_bin_default_class_names_without_meta() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_bin(
        dir.path(),
        &[("data_batch_1.bin", &[1]), ("test_batch.bin", &[2])],
    );
    let s = open(&DataConfig::new(dir.path())).unwrap();
    assert_eq!(s.train.class_names()[0], "airplane");
    assert_eq!(s.train.class_names()[9], "truck");
}

#[test]
fn cifar10_bin_truncated_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_bin(
        dir.path(),
        &[("data_batch_1.bin", &[1, 2]), ("test_batch.bin", &[2])],
    );
    let p = dir.path().join("data_batch_1.bin");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("data_batch_1.bin"), "{msg}");
    assert!(
        msg.contains("not a multiple of the 3073-byte record"),
        "{msg}"
    );
}

#[test]
fn cifar10_bin_bad_label_names_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_bin(
        dir.path(),
        &[("data_batch_1.bin", &[1, 2, 10]), ("test_batch.bin", &[2])],
    );
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("data_batch_1.bin: record 2"), "{msg}");
    assert!(
        msg.contains("label byte 10 is not below 10 classes"),
        "{msg}"
    );
}

#[test]
fn cifar10_bin_empty_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_bin(dir.path(), &[("data_batch_1.bin", &[1])]);
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("missing file test_batch.bin"), "{msg}");
    std::fs::write(dir.path().join("test_batch.bin"), b"").unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("test_batch.bin: file is empty"), "{msg}");
}

#[test]
fn cifar10_bin_wrong_meta_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10_bin(
        dir.path(),
        &[("data_batch_1.bin", &[1]), ("test_batch.bin", &[2])],
    );
    std::fs::write(dir.path().join("batches.meta.txt"), "a\nb\n").unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("batches.meta.txt"), "{msg}");
    assert!(msg.contains("holds 2 class names, expected 10"), "{msg}");
}

fn write_cifar100_bin(dir: &Path, name: &str, labels: &[(u8, u8)]) {
    let mut bytes = Vec::new();
    for (i, &(coarse, fine)) in labels.iter().enumerate() {
        bytes.push(coarse);
        bytes.push(fine);
        bytes.extend((0..3072).map(|p| fixture_pixel(7, i, p)));
    }
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn cifar100_bin_fine_and_coarse_labels() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar100_bin(dir.path(), "train.bin", &[(11, 19), (15, 29), (4, 0)]);
    write_cifar100_bin(dir.path(), "test.bin", &[(10, 49)]);
    let names: String = (0..100).map(|i| format!("f{i}\n")).collect();
    std::fs::write(dir.path().join("fine_label_names.txt"), names).unwrap();
    let s = open(&DataConfig::new(dir.path())).unwrap();
    assert_eq!(s.train.num_classes(), 100);
    assert_eq!(s.train.normalization(), Normalization::CIFAR100);
    assert_eq!(
        (0..3).map(|i| s.train.label(i)).collect::<Vec<_>>(),
        [19, 29, 0]
    );
    assert_eq!(s.train.class_names()[29], "f29");
    let want: Vec<u8> = (0..3072).map(|p| fixture_pixel(7, 1, p)).collect();
    assert_eq!(
        eval(s.train.as_ref(), 1).0,
        expected_eval(&want, Normalization::CIFAR100)
    );
    assert!(
        s.test
            .describe()
            .starts_with("CIFAR-100 binary, test split, 1 images")
    );

    let mut cfg = DataConfig::new(dir.path());
    cfg.cifar100_labels = Cifar100Labels::Coarse;
    let s = open(&cfg).unwrap();
    assert_eq!(s.train.num_classes(), 20);
    assert_eq!(
        (0..3).map(|i| s.train.label(i)).collect::<Vec<_>>(),
        [11, 15, 4]
    );
    assert_eq!(s.train.class_names()[0], "coarse_0");
}

#[test]
fn cifar100_bin_bad_coarse_label() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar100_bin(dir.path(), "train.bin", &[(1, 1), (20, 5)]);
    write_cifar100_bin(dir.path(), "test.bin", &[(10, 49)]);
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(
        msg.contains("train.bin: record 1: coarse label byte 20"),
        "{msg}"
    );
}

#[test]
fn cifar100_bin_truncated() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar100_bin(dir.path(), "train.bin", &[(1, 1)]);
    write_cifar100_bin(dir.path(), "test.bin", &[(10, 49)]);
    // A CIFAR-10 sized record (3073 bytes) is not a CIFAR-100 record (3074 bytes).
    std::fs::write(dir.path().join("test.bin"), vec![0u8; 3073]).unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("test.bin"), "{msg}");
    assert!(msg.contains("3074-byte record"), "{msg}");
}

// ---------------------------------------------------------------- CIFAR python (pickle)

fn check_cifar10_py(dir: &Path) {
    let s = open(&DataConfig::new(dir)).unwrap();
    assert!(
        s.train
            .describe()
            .starts_with("CIFAR-10 python, train split, 9 images")
    );
    let labels: Vec<_> = (0..9).map(|i| s.train.label(i)).collect();
    assert_eq!(labels, [3, 8, 8, 0, 6, 1, 9, 2, 5]);
    let test: Vec<_> = (0..3).map(|i| s.test.label(i)).collect();
    assert_eq!(test, [7, 4, 1]);
    assert_eq!(s.train.class_names()[3], "cat");
    // Every image's pixels: batch 1 images 0..5, batch 2 images 0..4, test (seed 9).
    for (k, (seed, i)) in (0..5)
        .map(|i| (1, i))
        .chain((0..4).map(|i| (2, i)))
        .enumerate()
    {
        let want: Vec<u8> = (0..3072).map(|p| fixture_pixel(seed, i, p)).collect();
        assert_eq!(
            eval(s.train.as_ref(), k).0,
            expected_eval(&want, Normalization::CIFAR10),
            "{} train image {k}",
            dir.display()
        );
    }
    let want: Vec<u8> = (0..3072).map(|p| fixture_pixel(9, 2, p)).collect();
    assert_eq!(
        eval(s.test.as_ref(), 2).0,
        expected_eval(&want, Normalization::CIFAR10)
    );
}

#[test]
fn cifar10_py_python3_protocol2() {
    check_cifar10_py(&fixtures().join("cifar10-py3"));
    let mut cfg = DataConfig::new(fixtures().join("cifar10-py3"));
    cfg.format = DataFormat::Cifar10Py;
    assert_eq!(open(&cfg).unwrap().train.len(), 9);
}

#[test]
fn cifar10_py_python2_style_binstring() {
    check_cifar10_py(&fixtures().join("cifar10-py2"));
}

#[test]
fn cifar10_py_protocol4_fortran_order_no_meta() {
    check_cifar10_py(&fixtures().join("cifar10-p4"));
}

fn check_cifar100_py(dir: &Path) {
    let s = open(&DataConfig::new(dir)).unwrap();
    assert!(
        s.train
            .describe()
            .starts_with("CIFAR-100 python, train split, 6 images")
    );
    let fine: Vec<_> = (0..6).map(|i| s.train.label(i)).collect();
    assert_eq!(fine, [19, 29, 0, 11, 1, 86]);
    assert_eq!(s.train.class_names()[86], "fine86");
    let want: Vec<u8> = (0..3072).map(|p| fixture_pixel(3, 5, p)).collect();
    assert_eq!(
        eval(s.train.as_ref(), 5).0,
        expected_eval(&want, Normalization::CIFAR100)
    );
    let mut cfg = DataConfig::new(dir);
    cfg.cifar100_labels = Cifar100Labels::Coarse;
    let s = open(&cfg).unwrap();
    let coarse: Vec<_> = (0..3).map(|i| s.test.label(i)).collect();
    assert_eq!(coarse, [10, 10, 0]);
    assert_eq!(s.test.num_classes(), 20);
    assert_eq!(s.test.class_names()[19], "coarse19");
}

#[test]
fn cifar100_py_python3_and_python2_style() {
    check_cifar100_py(&fixtures().join("cifar100-py3"));
    check_cifar100_py(&fixtures().join("cifar100-py2"));
}

#[test]
fn pickle_long_memo_like_the_official_files() {
    // 300+ memoised filenames: LONG_BINPUT and LONG_BINGET, as in the real 10,000-image batches.
    let s = open(&DataConfig::new(fixtures().join("cifar10-longmemo"))).unwrap();
    assert_eq!((s.train.label(0), s.train.label(1)), (4, 2));
    let want: Vec<u8> = (0..3072).map(|p| fixture_pixel(5, 1, p)).collect();
    assert_eq!(
        eval(s.train.as_ref(), 1).0,
        expected_eval(&want, Normalization::CIFAR10)
    );
    let bytes = std::fs::read(fixtures().join("cifar10-longmemo/data_batch_1")).unwrap();
    let v = meal::data::pickle::load(&bytes, Path::new("x")).unwrap();
    let names = meal::data::pickle::text_list(&v, "filenames", Path::new("x")).unwrap();
    assert_eq!(names.len(), 301);
    assert_eq!(names[300], "long_name_299.png");
    assert_eq!(
        meal::data::pickle::text_list(&v, "batch_label", Path::new("x"))
            .unwrap_err()
            .to_string(),
        "x: 'batch_label' is a bytes, not a list"
    );
}

#[test]
fn pickle_bad_shape_count_label_dtype() {
    let cases = [
        ("bad-shape", "has shape [2, 3000], expected (N, 3072)"),
        ("bad-count", "'data' has 2 rows but 'labels' has 3 entries"),
        (
            "bad-label",
            "record 1: labels entry 10 is not below 10 classes",
        ),
        ("bad-dtype", "has dtype \"f4\", expected uint8"),
    ];
    for (dir, want) in cases {
        let msg = open_err(&DataConfig::new(fixtures().join(dir)));
        assert!(msg.contains(&format!("{dir}/data_batch_1")), "{msg}");
        assert!(msg.contains(want), "{dir}: {msg}");
    }
}

#[test]
fn pickle_refuses_arbitrary_globals() {
    let msg = open_err(&DataConfig::new(fixtures().join("bad-evil")));
    assert!(msg.contains("bad-evil/data_batch_1"), "{msg}");
    assert!(
        msg.contains("refusing unsupported global posix.system"),
        "{msg}"
    );
}

#[test]
fn pickle_truncated_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("cifar10-py3");
    for f in ["data_batch_1", "test_batch", "batches.meta"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let p = dir.path().join("data_batch_1");
    let bytes = std::fs::read(&p).unwrap();
    for cut in [1, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let msg = open_err(&DataConfig::new(dir.path()));
        assert!(msg.contains("data_batch_1: pickle"), "{msg}");
    }
    std::fs::write(&p, b"\x80\x02\xffgarbage").unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("unsupported pickle opcode 0xff"), "{msg}");
    std::fs::write(&p, b"\x80\x05}.").unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("protocol 5"), "{msg}");
    // A pickle of a list, not a dict.
    std::fs::write(&p, b"\x80\x02]q\x00.").unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("does not hold a dict"), "{msg}");
}

// ---------------------------------------------------------------- SVHN (MAT level 5)

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_DOUBLE: u32 = 9;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

fn element(t: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if data.len() <= 4 && t != MI_MATRIX {
        // Small data element format.
        out.extend((((data.len() as u32) << 16) | t).to_le_bytes());
        out.extend(data);
        out.resize(8, 0);
        return out;
    }
    out.extend(t.to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    out
}

/// A MATLAB numeric matrix element: class 6 = double, 9 = uint8.
fn matrix(name: &str, class: u32, dims: &[usize], data_type: u32, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut flags = class.to_le_bytes().to_vec();
    flags.extend(0u32.to_le_bytes());
    body.extend(element(MI_UINT32, &flags));
    let d: Vec<u8> = dims
        .iter()
        .flat_map(|&d| (d as i32).to_le_bytes())
        .collect();
    body.extend(element(MI_INT32, &d));
    body.extend(element(MI_INT8, name.as_bytes()));
    body.extend(element(data_type, data));
    element(MI_MATRIX, &body)
}

fn compressed(elem: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(elem).unwrap();
    let z = z.finish().unwrap();
    let mut out = MI_COMPRESSED.to_le_bytes().to_vec();
    out.extend((z.len() as u32).to_le_bytes());
    out.extend(z);
    out
}

fn mat_header() -> Vec<u8> {
    let mut h =
        b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2015".to_vec();
    h.resize(116, b' ');
    h.extend([0u8; 8]);
    h.extend(0x0100u16.to_le_bytes());
    h.extend(b"IM");
    h
}

/// X(r, c, ch, n) of the synthetic SVHN files.
fn svhn_pixel(r: usize, c: usize, ch: usize, n: usize) -> u8 {
    ((r * 7 + c * 3 + ch * 50 + n * 11) % 256) as u8
}

/// An SVHN-style MAT file of `labels.len()` images; `compress` as the official files do; `y` is
/// stored as doubles or (like MATLAB does for integral doubles) as uint8.
fn svhn_mat(labels: &[u8], compress: bool, y_as_uint8: bool, x_dims: Option<&[usize]>) -> Vec<u8> {
    let n = labels.len();
    let mut x = vec![0u8; 3072 * n];
    for i in 0..n {
        for ch in 0..3 {
            for c in 0..32 {
                for r in 0..32 {
                    x[r + 32 * c + 1024 * ch + 3072 * i] = svhn_pixel(r, c, ch, i);
                }
            }
        }
    }
    let default_dims = [32, 32, 3, n];
    let xm = matrix("X", 9, x_dims.unwrap_or(&default_dims), MI_UINT8, &x);
    let ym = if y_as_uint8 {
        matrix("y", 6, &[n, 1], MI_UINT8, labels)
    } else {
        let y: Vec<u8> = labels
            .iter()
            .flat_map(|&l| (l as f64).to_le_bytes())
            .collect();
        matrix("y", 6, &[n, 1], MI_DOUBLE, &y)
    };
    let mut out = mat_header();
    for m in [xm, ym] {
        if compress {
            out.extend(compressed(&m));
        } else {
            out.extend(m);
        }
    }
    out
}

fn check_svhn(compress: bool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train_32x32.mat"),
        svhn_mat(&[10, 1, 5], compress, compress, None),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("test_32x32.mat"),
        svhn_mat(&[9, 10], compress, !compress, None),
    )
    .unwrap();
    let s = open(&DataConfig::new(dir.path())).unwrap();
    assert_eq!(s.train.len(), 3);
    assert_eq!(s.train.normalization(), Normalization::SVHN);
    assert_eq!(
        (0..3).map(|i| s.train.label(i)).collect::<Vec<_>>(),
        [0, 1, 5]
    );
    assert_eq!((0..2).map(|i| s.test.label(i)).collect::<Vec<_>>(), [9, 0]);
    assert_eq!(s.train.class_names()[0], "0");
    for n in 0..3 {
        let mut want = vec![0u8; 3072];
        for ch in 0..3 {
            for r in 0..32 {
                for c in 0..32 {
                    want[ch * 1024 + r * 32 + c] = svhn_pixel(r, c, ch, n);
                }
            }
        }
        assert_eq!(
            eval(s.train.as_ref(), n).0,
            expected_eval(&want, Normalization::SVHN),
            "image {n}"
        );
    }
    let mut cfg = DataConfig::new(dir.path());
    cfg.format = DataFormat::Svhn;
    assert!(
        open(&cfg)
            .unwrap()
            .test
            .describe()
            .starts_with("SVHN, test split, 2 images")
    );
}

#[test]
fn svhn_uncompressed_mat() {
    check_svhn(false);
}

#[test]
fn svhn_compressed_mat() {
    check_svhn(true);
}

#[test]
fn svhn_wrong_dims_label_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let test = svhn_mat(&[1], true, true, None);
    std::fs::write(dir.path().join("test_32x32.mat"), &test).unwrap();
    let train = dir.path().join("train_32x32.mat");

    std::fs::write(
        &train,
        svhn_mat(&[1, 2], false, false, Some(&[32, 32, 2, 3])),
    )
    .unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("train_32x32.mat"), "{msg}");
    assert!(
        msg.contains("'X' has dims [32, 32, 2, 3], expected 32×32×3×N"),
        "{msg}"
    );

    std::fs::write(&train, svhn_mat(&[1, 11], true, true, None)).unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("train_32x32.mat: record 1: label 11"), "{msg}");

    let good = svhn_mat(&[1, 2], false, false, None);
    std::fs::write(&train, &good[..good.len() - 50]).unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("train_32x32.mat: MAT file"), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");

    let good = svhn_mat(&[1, 2], true, true, None);
    let mut bad = good.clone();
    let mid = 128 + 8 + 20;
    bad[mid..mid + 16].fill(0xAB);
    std::fs::write(&train, &bad).unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("train_32x32.mat"), "{msg}");

    std::fs::write(&train, b"not a mat file").unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("too short for a MAT file header"), "{msg}");

    let mut v73 = mat_header();
    v73[124..126].copy_from_slice(&0x0200u16.to_le_bytes());
    std::fs::write(&train, &v73).unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("v7.3"), "{msg}");

    // No 'y' variable.
    let mut only_x = mat_header();
    only_x.extend(matrix("X", 9, &[32, 32, 3, 1], MI_UINT8, &[0u8; 3072]));
    std::fs::write(&train, &only_x).unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("no variable 'y'"), "{msg}");
}

// ---------------------------------------------------------------- image folders

fn solid(w: u32, h: u32, rgb: [u8; 3]) -> image::RgbImage {
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
}

fn make_folder(root: &Path) {
    for (split, n) in [("train", 3), ("val", 1)] {
        for (k, class) in ["dog", "cat"].iter().enumerate() {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let color = [100 + 50 * k as u8, i as u8 * 10, 30];
                let img = solid(40 + i as u32 * 7, 30, color);
                let ext = if i == 1 { "jpg" } else { "png" };
                img.save(d.join(format!("img{i}.{ext}"))).unwrap();
            }
            std::fs::write(d.join("notes.txt"), "not an image").unwrap();
        }
    }
}

#[test]
fn folder_dataset_classes_labels_and_transforms() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let mut cfg = DataConfig::new(dir.path());
    cfg.image_size = Some(16);
    let s = open(&cfg).unwrap();
    assert_eq!(s.train.class_names(), ["cat", "dog"]);
    assert_eq!(s.train.len(), 6);
    assert_eq!(s.test.len(), 2);
    assert_eq!(
        (0..6).map(|i| s.train.label(i)).collect::<Vec<_>>(),
        [0, 0, 0, 1, 1, 1]
    );
    assert_eq!(s.train.output_shape(), [3, 16, 16]);
    assert_eq!(s.train.normalization(), Normalization::IMAGENET);
    assert!(
        s.train
            .describe()
            .starts_with("image folder, train split, 6 images")
    );
    // "cat" is class index 0 and has red 150; PNG is lossless so eval is exact.
    let n = Normalization::IMAGENET;
    let (x, y) = eval(s.test.as_ref(), 0);
    assert_eq!(y, 0);
    assert_eq!(x.len(), 3 * 16 * 16);
    let want = [150u8, 0, 30];
    for (k, v) in x.iter().enumerate() {
        let c = k / 256;
        let e = (want[c] as f32 / 255.0 - n.mean[c]) / n.std[c];
        assert!((v - e).abs() < 1e-5, "{k}: {v} vs {e}");
    }
    // JPEG (img1) decodes close to its colour.
    let (x, _) = eval(s.train.as_ref(), 1);
    let red = x[0] * n.std[0] + n.mean[0];
    assert!((red * 255.0 - 150.0).abs() < 4.0, "{red}");
    // Augmentation: right shape, deterministic in the rng.
    let a = s
        .train
        .get(4, true, &mut ChaCha8Rng::seed_from_u64(5))
        .unwrap();
    let b = s
        .train
        .get(4, true, &mut ChaCha8Rng::seed_from_u64(5))
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.0.len(), 3 * 16 * 16);
    assert_eq!(a.1, 1);
    // Class-balanced subset: first ceil(3/2) = 2 of each class.
    cfg.train_subset = Some(3);
    let s = open(&cfg).unwrap();
    assert_eq!(s.train.len(), 4);
    assert!(s.train.describe().contains("class-balanced subset of 6"));
}

#[test]
fn folder_default_image_size_is_224() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let s = open(&DataConfig::new(dir.path())).unwrap();
    assert_eq!(s.train.output_shape(), [3, 224, 224]);
    assert_eq!(eval(s.train.as_ref(), 0).0.len(), 3 * 224 * 224);
}

#[test]
fn folder_undecodable_image_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let bad = dir.path().join("val/cat/zzz_broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
    let mut cfg = DataConfig::new(dir.path());
    cfg.image_size = Some(8);
    let s = open(&cfg).unwrap();
    assert_eq!(s.test.len(), 3);
    let msg = err_string(s.test.get(1, false, &mut rng()));
    assert!(msg.contains("zzz_broken.png: cannot decode image"), "{msg}");
    let msg = err_string(s.test.get(99, false, &mut rng()));
    assert!(msg.contains("out of range"), "{msg}");
}

#[test]
fn folder_val_classes_must_match_train() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    std::fs::create_dir_all(dir.path().join("val/zebra")).unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    assert!(msg.contains("val"), "{msg}");
    assert!(msg.contains("zebra"), "{msg}");
}

// ---------------------------------------------------------------- detection

#[test]
fn detection_lists_what_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("readme.txt"), "hi").unwrap();
    let msg = open_err(&DataConfig::new(dir.path()));
    for want in [
        "cannot detect the dataset format",
        "data_batch_1.bin",
        "data_batch_1 (cifar10-py)",
        "train.bin",
        "train_32x32.mat",
        "train/ + val/",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }
    let msg = open_err(&DataConfig::new(dir.path().join("nope")));
    assert!(msg.contains("nope"), "{msg}");
}

#[test]
fn detection_descends_into_release_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("cifar-10-batches-py");
    std::fs::create_dir(&sub).unwrap();
    for f in ["data_batch_1", "data_batch_2", "test_batch", "batches.meta"] {
        std::fs::copy(fixtures().join("cifar10-py3").join(f), sub.join(f)).unwrap();
    }
    let s = open(&DataConfig::new(dir.path())).unwrap();
    assert_eq!(s.train.len(), 9);
    assert!(s.train.describe().contains("cifar-10-batches-py"));
}

#[test]
fn data_config_serde() {
    let cfg: DataConfig = serde_json::from_str(
        r#"{"path": "x", "format": "cifar100-py", "train_subset": 10, "cifar100_labels": "coarse"}"#,
    )
    .unwrap();
    assert_eq!(cfg.format, DataFormat::Cifar100Py);
    assert_eq!(cfg.train_subset, Some(10));
    assert_eq!(cfg.cifar100_labels, Cifar100Labels::Coarse);
    assert_eq!(cfg.test_subset, None);
    let d: DataConfig = serde_json::from_str(r#"{"path": "y"}"#).unwrap();
    assert_eq!(d, DataConfig::new("y"));
    assert!(serde_json::from_str::<DataConfig>(r#"{"path": "y", "bogus": 1}"#).is_err());
    let f: DataFormat = serde_json::from_str(r#""cifar10-bin""#).unwrap();
    assert_eq!(f, DataFormat::Cifar10Bin);
}
