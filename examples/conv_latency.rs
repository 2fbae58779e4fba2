//! Wall time of each distinct convolution of ResNet-50 (224×224) and resnet20 (32×32), of
//! SENet-154's and DPN-92's grouped layers and EfficientNet-B0's depthwise ones, at one batch size, with the BatchNorm+ReLU epilogue and the weights kept packed as `meal bench
//! --latency` runs them, on the global pool and on one thread: the ratio says how much of the
//! second core a layer's split uses.
//!
//! CPU time is the process's (every thread, rayon's idle spinning included): on a machine that
//! other jobs load, it measures the work where the wall clock measures the neighbours.
//!
//! ```sh
//! cargo run --release --example conv_latency            # batch 1, 2 threads vs 1
//! BATCH=8 ONLY=resnet50 REPS=20 cargo run --release --example conv_latency
//! LAYER="l4 1x1" ONE=0 cargo run --release --example conv_latency   # some layers, no 1-thread run
//! BATCH=8 ONLY=senet154 LAYER=g3x3 cargo run --release --example conv_latency  # grouped layers
//! ONLY=efficientnet_b0 ONE=0 cargo run --release --example conv_latency  # depthwise layers
//! MODEL=resnet50 REPS=10 cargo run --release --example conv_latency # the whole eval forward
//! ```

use std::time::Instant;

use burn::backend::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};

/// `(name, cin, input side, cout, kernel, stride, groups, count in the network)`.
type Layer = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const RESNET50: [Layer; 20] = [
    ("stem 7x7/2", 3, 224, 64, 7, 2, 1, 1),
    ("l1 1x1 64>64", 64, 56, 64, 1, 1, 1, 1),
    ("l1 1x1 256>64", 256, 56, 64, 1, 1, 1, 2),
    ("l1 3x3 64", 64, 56, 64, 3, 1, 1, 3),
    ("l1 1x1 64>256", 64, 56, 256, 1, 1, 1, 4),
    ("l2 1x1 256>128", 256, 56, 128, 1, 1, 1, 1),
    ("l2 3x3/2 128", 128, 56, 128, 3, 2, 1, 1),
    ("l2 ds 1x1/2 256>512", 256, 56, 512, 1, 2, 1, 1),
    ("l2 1x1 512>128", 512, 28, 128, 1, 1, 1, 3),
    ("l2 3x3 128", 128, 28, 128, 3, 1, 1, 3),
    ("l2 1x1 128>512", 128, 28, 512, 1, 1, 1, 4),
    ("l3 1x1 512>256", 512, 28, 256, 1, 1, 1, 1),
    ("l3 3x3/2 256", 256, 28, 256, 3, 2, 1, 1),
    ("l3 ds 1x1/2 512>1024", 512, 28, 1024, 1, 2, 1, 1),
    ("l3 1x1 1024>256", 1024, 14, 256, 1, 1, 1, 5),
    ("l3 3x3 256", 256, 14, 256, 3, 1, 1, 5),
    ("l3 1x1 256>1024", 256, 14, 1024, 1, 1, 1, 6),
    ("l4 1x1 1024>512", 1024, 14, 512, 1, 1, 1, 1),
    ("l4 3x3/2 512", 512, 14, 512, 3, 2, 1, 1),
    ("l4 ds 1x1/2 1024>2048", 1024, 14, 2048, 1, 2, 1, 1),
];

const RESNET50_L4: [Layer; 3] = [
    ("l4 1x1 2048>512", 2048, 7, 512, 1, 1, 1, 2),
    ("l4 3x3 512", 512, 7, 512, 3, 1, 1, 2),
    ("l4 1x1 512>2048", 512, 7, 2048, 1, 1, 1, 3),
];

/// SENet-154's grouped 3×3 convolutions (64 groups) and its widest 1×1 layers.
const SENET154: [Layer; 12] = [
    ("l1 g3x3 128>256", 128, 56, 256, 3, 1, 64, 3),
    ("l2 g3x3/2 256>512", 256, 56, 512, 3, 2, 64, 1),
    ("l2 g3x3 256>512", 256, 28, 512, 3, 1, 64, 7),
    ("l3 g3x3/2 512>1024", 512, 28, 1024, 3, 2, 64, 1),
    ("l3 g3x3 512>1024", 512, 14, 1024, 3, 1, 64, 35),
    ("l4 g3x3/2 1024>2048", 1024, 14, 2048, 3, 2, 64, 1),
    ("l4 g3x3 1024>2048", 1024, 7, 2048, 3, 1, 64, 2),
    ("l3 1x1 1024>512", 1024, 14, 512, 1, 1, 1, 35),
    ("l3 1x1 1024>1024", 1024, 14, 1024, 1, 1, 1, 36),
    ("l4 1x1 2048>1024", 2048, 7, 1024, 1, 1, 1, 2),
    ("l4 1x1 2048>2048", 2048, 7, 2048, 1, 1, 1, 3),
    ("l3 ds 3x3/2 512>1024", 512, 28, 1024, 3, 2, 1, 1),
];

/// EfficientNet-B0's depthwise convolutions at 224×224 (one group per channel; the padding is
/// `k / 2` on each side where the model pads TensorFlow's "same", one column and row fewer at
/// the top and left of the strided ones).
const EFFICIENTNET_B0: [Layer; 12] = [
    ("dw3 32 112", 32, 112, 32, 3, 1, 32, 1),
    ("dw3/2 96 112", 96, 112, 96, 3, 2, 96, 1),
    ("dw3 144 56", 144, 56, 144, 3, 1, 144, 1),
    ("dw5/2 144 56", 144, 56, 144, 5, 2, 144, 1),
    ("dw5 240 28", 240, 28, 240, 5, 1, 240, 1),
    ("dw3/2 240 28", 240, 28, 240, 3, 2, 240, 1),
    ("dw3 480 14", 480, 14, 480, 3, 1, 480, 2),
    ("dw5 480 14", 480, 14, 480, 5, 1, 480, 1),
    ("dw5 672 14", 672, 14, 672, 5, 1, 672, 2),
    ("dw5/2 672 14", 672, 14, 672, 5, 2, 672, 1),
    ("dw5 1152 7", 1152, 7, 1152, 5, 1, 1152, 3),
    ("dw3 1152 7", 1152, 7, 1152, 3, 1, 1152, 1),
];

/// DPN-92's (CIFAR form) grouped 3×3 convolutions: 32 groups of 3, 6 and 12 channels.
const DPN92: [Layer; 4] = [
    ("s1 g3x3 96", 96, 32, 96, 3, 1, 32, 3),
    ("s2 g3x3 192", 192, 16, 192, 3, 1, 32, 4),
    ("s3 g3x3 384", 384, 8, 384, 3, 1, 32, 20),
    ("s2 g3x3/2 192", 192, 32, 192, 3, 2, 32, 1),
];

const RESNET20: [Layer; 6] = [
    ("stem 3x3 3>16", 3, 32, 16, 3, 1, 1, 1),
    ("s1 3x3 16", 16, 32, 16, 3, 1, 1, 6),
    ("s2 3x3/2 16>32", 16, 32, 32, 3, 2, 1, 1),
    ("s2 3x3 32", 32, 16, 32, 3, 1, 1, 5),
    ("s3 3x3/2 32>64", 32, 16, 64, 3, 2, 1, 1),
    ("s3 3x3 64", 64, 8, 64, 3, 1, 1, 5),
];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of the whole process (every thread, the rayon workers included), in nanoseconds.
fn cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Median wall time and median CPU time of `reps` runs of the layer, milliseconds.
fn time_layer(batch: usize, l: &Layer, reps: usize) -> (f64, f64) {
    let (_, cin, hw, cout, k, stride, groups, _) = *l;
    let device = meal::backend::device();
    let x = Tensor::<4>::random(
        [batch, cin, hw, hw],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let w = Tensor::<4>::random(
        [cout, cin / groups, k, k],
        Distribution::Normal(0.0, 0.1),
        &device,
    );
    let scale = Tensor::<1>::random([cout], Distribution::Normal(1.0, 0.1), &device);
    let shift = Tensor::<1>::random([cout], Distribution::Normal(0.0, 0.1), &device);
    let opts = ConvOptions::new([stride; 2], [k / 2; 2], [1, 1], groups);
    let _kept = meal::kernels::prepared::inference();
    medians(reps, 1, || {
        let y = meal::kernels::conv2d_affine(
            x.clone(),
            w.clone(),
            None,
            (scale.clone(), shift.clone()),
            meal::kernels::activation::OutputAct::Relu,
            opts.clone(),
        );
        // One value, not a sum: a reduction over a batch-8 56×56 output was an eighth of the
        // layer's time, and ONNX Runtime's per-node profile (scripts/bench/ort_nodes.py) does
        // not count one.
        y.slice([0..1, 0..1, 0..1, 0..1]).into_scalar()
    })
}

/// Median wall and CPU milliseconds per image of `reps` calls of `run` (after two untimed
/// ones) on `batch` images; `run` returns a sum of its output, which must be finite.
fn medians(reps: usize, batch: usize, mut run: impl FnMut() -> f32) -> (f64, f64) {
    let (mut times, mut cpus) = (Vec::new(), Vec::new());
    for i in 0..reps + 2 {
        let c0 = cpu_ns();
        let t = Instant::now();
        let v = run();
        let dt = t.elapsed().as_secs_f64() * 1e3 / batch as f64;
        let dc = (cpu_ns() - c0) as f64 / 1e6 / batch as f64;
        assert!(v.is_finite(), "a non-finite output");
        if i >= 2 {
            times.push(dt);
            cpus.push(dc);
        }
    }
    times.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    (times[times.len() / 2], cpus[cpus.len() / 2])
}

fn main() {
    meal::kernels::allocator::keep_freed_memory();
    // As the `meal` binary does: the model then runs on this thread, a worker of the pool with
    // the others polling, as `meal bench --latency` runs it.
    meal::kernels::hot::adopt_calling_thread();
    let batch = env("BATCH", 1);
    let reps = env("REPS", 15);
    let only = std::env::var("ONLY").unwrap_or_default();
    if let Ok(arch) = std::env::var("MODEL") {
        return whole_model(&arch, batch, reps);
    }
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let nets: [(&str, Vec<Layer>); 5] = [
        ("dpn92", DPN92.to_vec()),
        ("efficientnet_b0", EFFICIENTNET_B0.to_vec()),
        ("resnet50", [&RESNET50[..], &RESNET50_L4[..]].concat()),
        ("resnet20", RESNET20.to_vec()),
        ("senet154", SENET154.to_vec()),
    ];
    for (net, layers) in nets {
        if !only.is_empty() && only != net {
            continue;
        }
        println!(
            "{net} batch {batch}, {} threads: layer, wall ms, cpu ms, wall ms (1 thread), cpu ms (1 thread), GMAC/s per cpu-s (1 thread), count",
            rayon::current_num_threads()
        );
        let (mut tot_n, mut tot_1) = (0.0, 0.0);
        let layer = std::env::var("LAYER").unwrap_or_default();
        for l in layers.iter().filter(|l| l.0.contains(&layer)) {
            let (name, cin, hw, cout, k, stride, groups, count) = *l;
            let ho = (hw + 2 * (k / 2) - k) / stride + 1;
            let macs = (batch * cout * ho * ho * cin / groups * k * k) as f64;
            let (tn, cn) = time_layer(batch, l, reps);
            let (t1, c1) = if env("ONE", 1) == 1 {
                one.install(|| time_layer(batch, l, reps))
            } else {
                (0.0, 0.0)
            };
            tot_n += tn * count as f64;
            tot_1 += c1 * count as f64;
            println!(
                "  {name:24} {tn:8.3} {cn:8.3} {t1:8.3} {c1:8.3} {:6.1} x{count}",
                macs / c1 / 1e6
            );
        }
        println!("  total (x count) wall {tot_n:8.2}, 1-thread cpu {tot_1:8.2}");
    }
}

/// The whole eval forward of `arch` (at its own image side), as `meal bench --latency` runs it,
/// at one batch size: median wall and CPU milliseconds per image.
fn whole_model(arch: &str, batch: usize, reps: usize) {
    let device = meal::backend::device();
    let side = if arch.contains("cifar") || arch.starts_with("resnet20") {
        32
    } else {
        224
    };
    let model = meal::models::build(arch, 1000, &device).expect("arch");
    let x = Tensor::<4>::random(
        [batch, 3, side, side],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let (wall, cpu) = meal::kernels::hot::hot(|| {
        let _kept = meal::kernels::prepared::inference();
        medians(reps, batch, || {
            model.forward(x.clone()).logits.sum().into_scalar()
        })
    });
    println!(
        "{arch} batch {batch}, {} threads: {:.2} ms/image wall, {:.2} cpu (medians)",
        rayon::current_num_threads(),
        wall,
        cpu
    );
}
