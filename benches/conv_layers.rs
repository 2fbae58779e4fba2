//! Per-layer cost of meal's convolution kernels: forward, input gradient and weight gradient of
//! the convolutions of resnet20, vgg8 and resnet18_cifar (↓: stride 2; sc: 1×1 shortcut), in CPU milliseconds of the process
//! (summed over `/proc/self/task/*/schedstat`, so another process on the machine does not inflate
//! it). Run single-threaded and once per path to compare them:
//!
//! ```sh
//! RAYON_NUM_THREADS=1 MEAL_WINOGRAD=0 cargo bench --bench conv_layers
//! RAYON_NUM_THREADS=1 MEAL_WINOGRAD=1 cargo bench --bench conv_layers
//! ONLY=resnet18_cifar BATCH=128 cargo bench --bench conv_layers   # a subset, another batch
//! ```

use meal::kernels::conv::{self, ConvShape};

/// CPU time of the whole process (every thread, the rayon workers included), in nanoseconds.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `kernel` 3 (padding 1) or 1 (padding 0); `hw` is the input side.
fn shape(batch: usize, c: usize, hw: usize, k: usize, kernel: usize, stride: usize) -> ConvShape {
    ConvShape::square(batch, (c, hw, k), (kernel, stride, kernel / 2))
}

/// The gemm micro-kernel alone on in-cache operands: the ceiling every path shares.
fn kernel_peak(mr: usize) -> f64 {
    use meal::kernels::simd::{self, GemmArgs};
    let isa = simd::isa();
    let env = |n: &str, d: usize| {
        std::env::var(n)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (k, blocks) = (env("PEAK_K", 256), env("PEAK_BLOCKS", 6));
    let ld = blocks * isa.nr();
    let a = vec![0.5f32; k * mr];
    let b = vec![0.25f32; k * ld + ld];
    let offs: Vec<usize> = (0..k).map(|i| i * ld).collect();
    let mut c = vec![0f32; mr * ld];
    let reps = 20_000 * 1536 / (k * blocks);
    let t0 = cpu_ns();
    for _ in 0..reps {
        // SAFETY: a holds k·mr values, every b row ld + slack, c mr rows of ld.
        unsafe {
            simd::gemm(
                isa,
                &GemmArgs {
                    mr,
                    a: &a,
                    b: &b,
                    offs: &offs,
                    c: c.as_mut_ptr(),
                    ldc: ld,
                    blocks,
                    accumulate: false,
                    epi: None,
                },
            )
        };
        std::hint::black_box(&mut c);
    }
    let secs = (cpu_ns() - t0) as f64 / 1e9;
    (reps * k * mr * ld) as f64 / secs / 1e9
}

fn main() {
    meal::kernels::allocator::keep_freed_memory();
    let batch: usize = std::env::var("BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let layers = [
        ("resnet20 s1", 16, 32, 16, 3, 1),
        ("resnet20 s2", 32, 16, 32, 3, 1),
        ("resnet20 s3", 64, 8, 64, 3, 1),
        ("resnet20 s2↓", 16, 32, 32, 3, 2),
        ("vgg8 32ch", 32, 32, 64, 3, 1),
        ("vgg8 128ch", 128, 8, 128, 3, 1),
        ("resnet18_cifar stem", 3, 32, 64, 3, 1),
        ("resnet18_cifar l1", 64, 32, 64, 3, 1),
        ("resnet18_cifar l2", 128, 16, 128, 3, 1),
        ("resnet18_cifar l3", 256, 8, 256, 3, 1),
        ("resnet18_cifar l4", 512, 4, 512, 3, 1),
        ("resnet18_cifar l2↓", 64, 32, 128, 3, 2),
        ("resnet18_cifar l3↓", 128, 16, 256, 3, 2),
        ("resnet18_cifar l4↓", 256, 8, 512, 3, 2),
        ("resnet18_cifar l4sc", 256, 8, 512, 1, 2),
    ];
    println!(
        "batch {batch}, winograd {}, isa {}",
        std::env::var("MEAL_WINOGRAD").unwrap_or_else(|_| "default".into()),
        meal::kernels::simd::isa().name()
    );
    for mr in [meal::kernels::simd::MR, meal::kernels::simd::MR_WIDE] {
        println!(
            "gemm micro-kernel in cache, {mr}-row panels: {:.1} GMAC/s",
            kernel_peak(mr)
        );
    }
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>8}",
        "layer", "fwd ms", "dx ms", "dw ms", "GMAC/s"
    );
    let mut total = 0.0;
    let only = std::env::var("ONLY").unwrap_or_default();
    for (name, c, hw, k, kernel, stride) in layers {
        if !name.contains(only.as_str()) {
            continue;
        }
        let s = shape(batch, c, hw, k, kernel, stride);
        let x: Vec<f32> = (0..batch * c * hw * hw)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..k * c * kernel * kernel)
            .map(|i| ((i * 104729) % 1000) as f32 / 5000.0 - 0.1)
            .collect();
        let dy: Vec<f32> = (0..batch * k * s.ho() * s.wo())
            .map(|i| ((i * 31) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let reps = 3;
        let mut t = [u64::MAX; 3];
        for _ in 0..reps {
            let t0 = cpu_ns();
            std::hint::black_box(conv::forward(&s, &x, &w));
            let t1 = cpu_ns();
            std::hint::black_box(conv::backward_input(&s, &dy, &w));
            let t2 = cpu_ns();
            std::hint::black_box(conv::backward_weight(&s, &x, &dy));
            let t3 = cpu_ns();
            t = [t[0].min(t1 - t0), t[1].min(t2 - t1), t[2].min(t3 - t2)];
        }
        let ms = t.map(|v| v as f64 / 1e6);
        let macs = (batch * c * k * kernel * kernel * s.ho() * s.wo()) as f64 * 3.0;
        total += ms.iter().sum::<f64>();
        println!(
            "{name:<14} {:>10.2} {:>10.2} {:>10.2} {:>8.1}",
            ms[0],
            ms[1],
            ms[2],
            macs / (ms.iter().sum::<f64>() * 1e6)
        );
    }
    println!(
        "total {total:.1} ms (CPU time of the process; GMAC/s counts the direct method's MACs)"
    );
}
