//! Keeps freed memory in the process for the next tensor.
//!
//! burn-flex (and meal's kernels) give every op's result a fresh buffer. With glibc's defaults a
//! buffer above a threshold (dynamic, starting at 128 KiB) is `mmap`ed and `munmap`ed on free,
//! so the next op of the same size faults its pages in again and the kernel zeroes each one:
//! `perf` of the resnet20 training step showed `clear_page_erms`, `exc_page_fault` and
//! `memset` at 7–9% of the samples. Never trimming the heap and taking every buffer from it
//! (no `mmap` at all: glibc caps the threshold at 32 MiB, below a ResNet-50's activations at
//! batch 32 or resnet18's at batch 128) lets those buffers be reused. The threshold at 32 MiB
//! took resnet20 training from 157–174 to 207–233 images/s; the heap for every size halved the
//! page faults of `meal bench --arch resnet50 --batch 32` (2.17M to 1.16M, about its peak
//! memory faulted in once) and sped its training step up 8% (BENCHMARKS.md), at +0.2% peak
//! memory. A process keeps its peak memory until it exits.

/// Applies the tuning once; call it before the first large allocation. A no-op on other C
/// libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; the values are in glibc's
            // accepted ranges. With no `mmap`s allowed, a request the heap cannot grow to (a
            // thread arena's 64 MiB heaps, a failed `brk`) still falls back to `mmap`.
            unsafe {
                libc::mallopt(libc::M_MMAP_MAX, 0);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        });
    }
}
