//! Running a kernel test on every instruction set the CPU has (`meal::kernels::simd::force`),
//! shared by tests/kernels.rs and tests/kernels_small_batch.rs.

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
