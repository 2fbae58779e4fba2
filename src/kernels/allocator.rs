//! Keeps freed memory in the process for the next tensor.
//!
//! burn-flex (and meal's kernels) give every op's result a fresh buffer. With glibc's defaults a
//! buffer above a threshold (dynamic, starting at 128 KiB) is `mmap`ed and `munmap`ed on free,
//! so the next op of the same size faults its pages in again and the kernel zeroes each one:
//! `perf` of the resnet20 training step showed `clear_page_erms`, `exc_page_fault` and
//! `memset` at 7–9% of the samples. Raising the threshold to glibc's maximum (32 MiB) and never
//! trimming the heap lets those buffers be reused: resnet20 training went from 157–174 to
//! 207–233 images/s in interleaved runs on the development machine (BENCHMARKS.md), at +5%
//! peak memory. Buffers above 32 MiB still take the `mmap` path.

/// Applies the tuning once; call it before the first large allocation. A no-op on other C
/// libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; the values are in glibc's
            // accepted ranges (the threshold's maximum is 32 MiB on 64-bit targets).
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        });
    }
}
