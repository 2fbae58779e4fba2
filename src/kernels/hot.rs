//! Rayon's workers kept polling for work while a latency-bound caller runs.
//!
//! At batch 1 a layer is tens to hundreds of microseconds of work. Rayon parks an idle worker
//! on a futex, and handing it a task then takes a wake-up: a cross-CPU interrupt, which on a
//! virtual machine is an exit to the hypervisor. `perf` of resnet20's batch-1 forward with its
//! layers split across two workers put 42% of the samples in the kernel's wake-up path
//! (`_raw_spin_unlock_irqrestore`, `finish_task_switch`), and the split forward took twice as
//! long as the unsplit one. Inside [`hot`] the caller's closure runs on a pool worker while
//! every other worker polls rayon's queues, as ONNX Runtime's and OpenMP's active wait
//! policies do: work handed out is taken at once and nobody parks. Between polls a spinner
//! yields its CPU (`sched_yield`), so other threads (an image decoder) still get the core; it
//! stays runnable, so no wake-up is needed (a `pause` loop instead measured the same within
//! the host's spread). The convolutions split smaller layers across the workers while a scope
//! is open ([`is_hot`]); the results do not depend on it.
//!
//! Training steps stay outside. burn's BatchNorm keeps its running statistics per thread
//! (`RunningState`, averaged over the threads when read), so steps that land on either worker
//! evaluate with other statistics than steps on one thread (a 2-epoch resnet20 run: the same
//! training losses, another test loss). Speed alone would have argued for it once every thread
//! allocates from one arena (resnet20 training 398 → 505 images/s, meal-v1-cifar-small 619 →
//! 711; with glibc's per-thread arenas the latter lost 10%, their empty heaps unmapped step
//! after step).
//!
//! `MEAL_SPIN=0` runs the closure on the calling thread with the workers parked as usual.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use burn::backend::DispatchDevice;
use burn::tensor::Device;

/// Open [`hot`] scopes, process-wide: the split thresholds read it.
static OPEN: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the thread that runs a [`hot`] scope's closure: a nested call runs inline.
    static IN_BODY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a [`hot`] scope is open in this process.
pub fn is_hot() -> bool {
    OPEN.load(Ordering::Relaxed) > 0
}

/// Whether `MEAL_SPIN` allows spinning (anything but `0`, `off` or `false`).
fn spin_allowed() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("MEAL_SPIN")
            .map(|v| !matches!(v.trim(), "0" | "off" | "false"))
            .unwrap_or(true)
    })
}

/// [`hot`] where `device` computes on this CPU (burn-flex, meal's kernels); `f` on the calling
/// thread otherwise (a GPU's host thread gains nothing from spinning cores).
pub fn hot_on<R: Send>(device: &Device, f: impl FnOnce() -> R + Send) -> R {
    let plain = device.clone().without_autodiff();
    match plain.as_dispatch() {
        DispatchDevice::Flex(_) => hot(f),
        #[allow(unreachable_patterns)]
        _ => f(),
    }
}

/// Runs `f` on a worker of rayon's pool with every other worker polling for work until `f`
/// returns (see the module's comment). A nested call runs `f` inside the open scope. With one
/// worker, or `MEAL_SPIN=0`, `f` runs on the calling thread.
///
/// Thread-local state that `f` relies on (a [`super::prepared::inference`] scope) must be set
/// up inside `f`: it runs on another thread than the caller's.
pub fn hot<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let threads = rayon::current_num_threads();
    if threads < 2 || !spin_allowed() || IN_BODY.get() {
        return f();
    }
    let stop = &AtomicBool::new(false);
    rayon::scope(|s| {
        let body = rayon::current_thread_index();
        for _ in 1..threads {
            s.spawn(move |_| {
                // The body's own thread can pop a spinner it spawned while it waits inside a
                // `join`; spinning there would wait on the body that it stands on.
                if rayon::current_thread_index() == body {
                    return;
                }
                while !stop.load(Ordering::Relaxed) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::thread::yield_now();
                    }
                }
            });
        }
        OPEN.fetch_add(1, Ordering::Relaxed);
        IN_BODY.set(true);
        // Ends the scope (and the spinners) when `f` returns or unwinds.
        struct Close<'a>(&'a AtomicBool);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                IN_BODY.set(false);
                OPEN.fetch_sub(1, Ordering::Relaxed);
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _close = Close(stop);
        f()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn runs_on_a_worker_and_gives_the_serial_result() {
        let spins = rayon::current_num_threads() >= 2 && spin_allowed();
        let (on_worker, hot_inside, sum) = hot(|| {
            let sum: u64 = (0..10_000u64).into_par_iter().map(|i| i * i).sum();
            (rayon::current_thread_index().is_some(), is_hot(), sum)
        });
        assert_eq!(sum, (0..10_000u64).map(|i| i * i).sum::<u64>());
        assert_eq!((on_worker, hot_inside), (spins, spins));
        // Nested scopes and many joins finish (no spinner stands on its own body).
        let n = hot(|| hot(|| (0..1000).into_par_iter().map(|_| 1usize).sum::<usize>()));
        assert_eq!(n, 1000);
    }

    #[test]
    fn a_panic_inside_reaches_the_caller_and_closes_the_scope() {
        let r = std::panic::catch_unwind(|| hot(|| panic!("inside")));
        assert!(r.is_err());
        // The spinners stopped: a later scope and plain rayon work still finish.
        assert_eq!(hot(|| 2 + 2), 4);
        assert_eq!((0..100).into_par_iter().sum::<i32>(), 4950);
    }
}
