//! Running a kernel test on every instruction set the CPU has (`meal::kernels::simd::force`),
//! and a batched kernel on every batch, thread pool and polling too, shared by the kernel tests.

use meal::kernels::simd::{self, Isa};

/// The instruction sets the CPU reports, asked directly (not through meal's own detection).
pub fn cpu_isas() -> Vec<Isa> {
    let mut isas = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2 && is_x86_feature_detected!("avx512f") {
            isas.push(Isa::Avx512);
        }
        if avx2 {
            isas.push(Isa::Avx2);
        }
    }
    isas.push(Isa::Portable);
    isas
}

/// Runs `check` with the kernels forced onto each instruction set in turn, names the sets it ran
/// and the ones this CPU lacks, and fails unless it ran exactly the sets the CPU reports.
pub fn on_every_isa(test: &str, check: impl Fn(Isa)) {
    let mut ran = Vec::new();
    let mut lacking = Vec::new();
    for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
        match simd::force(isa) {
            Ok(_guard) => {
                assert_eq!(simd::isa(), isa, "{test}: the kernels are not on {isa:?}");
                check(isa);
                ran.push(isa);
            }
            Err(why) => lacking.push(format!("{} ({why})", isa.name())),
        }
    }
    let names = |v: &[Isa]| v.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ");
    println!(
        "{test}: ran on {}; not available on this CPU: {}",
        names(&ran),
        if lacking.is_empty() {
            "none".to_string()
        } else {
            lacking.join(", ")
        }
    );
    assert_eq!(
        names(&ran),
        names(&cpu_isas()),
        "{test}: the sets run are not the sets this CPU reports"
    );
}

/// Checks that `run(batch)` gives the first `batch · per_image` values of `want` (batch 8's
/// result, as bits) for batches 1, 3 and 8, on pools of 1, 2 and 5 threads, with the other
/// workers parked and polling (`kernels::hot`), on every instruction set.
#[allow(dead_code)] // Not every test binary that shares this module has a batched kernel.
pub fn same_bits_at_any_batch_pool_and_isa(
    test: &str,
    want: &[u32],
    per_image: usize,
    run: impl Fn(usize) -> Vec<f32> + Sync,
) {
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let pools: Vec<rayon::ThreadPool> = [1, 2, 5]
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        })
        .collect();
    on_every_isa(test, |isa| {
        for (pool, threads) in pools.iter().zip([1, 2, 5]) {
            for batch in [1, 3, 8] {
                let what = format!("{test} {isa:?}, {threads} threads, batch {batch}");
                let want = &want[..batch * per_image];
                let cold = pool.install(|| run(batch));
                assert_eq!(bits(cold), want, "{what}");
                let warm = pool.install(|| meal::kernels::hot::hot(|| run(batch)));
                assert_eq!(bits(warm), want, "{what}, hot");
            }
        }
    });
}
