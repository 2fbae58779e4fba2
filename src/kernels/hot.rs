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
//! Training and evaluation use [`here`], which never moves the closure: burn's BatchNorm keeps
//! its running statistics per thread (`RunningState`, averaged over the threads when read), so
//! steps that landed on either worker evaluated with other statistics than steps on one thread
//! (a 2-epoch resnet20 run: the same training losses, another test loss). The `meal` binary
//! makes its main thread a worker of the pool ([`adopt_calling_thread`]), so the steps run on
//! it, in place, with the other workers polling.
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

/// Makes the calling thread worker 0 of rayon's global pool (of `RAYON_NUM_THREADS`, or one
/// thread per CPU, it included). Call it first thing in `main`, before anything uses rayon.
///
/// A thread outside the pool that starts parallel work queues it for the workers and sleeps
/// until they finish: with two cores that is three threads taking turns, and two wake-ups per
/// parallel op. A resnet20 training step issues hundreds of them; `perf stat` counted 14,155
/// context switches in `meal bench --arch resnet20` with the main thread outside the pool and
/// 3,108 with it inside. As a worker the main thread computes its share itself, and [`here`]
/// can keep the other workers polling around it.
pub fn adopt_calling_thread() {
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
    {
        // Only a pool that exists already refuses; it computes the same, with more wake-ups.
        tracing::debug!("rayon's pool was built before main adopted it: {e}");
    }
}

/// Whether `device` computes on this CPU (burn-flex, meal's kernels): a GPU's host thread gains
/// nothing from spinning cores.
fn on_cpu(device: &Device) -> bool {
    let plain = device.clone().without_autodiff();
    matches!(plain.as_dispatch(), DispatchDevice::Flex(_))
}

/// [`hot`] where `device` computes on this CPU; `f` on the calling thread otherwise.
pub fn hot_on<R: Send>(device: &Device, f: impl FnOnce() -> R + Send) -> R {
    if on_cpu(device) { hot(f) } else { f() }
}

/// Runs `f` on a worker of rayon's pool with every other worker polling for work until `f`
/// returns (see the module's comment): on the calling thread when it is a worker, on another
/// thread otherwise. A nested call runs `f` inside the open scope. With one worker, or
/// `MEAL_SPIN=0`, `f` runs on the calling thread.
///
/// Thread-local state that `f` relies on (a [`super::prepared::inference`] scope) must be set
/// up inside `f`: it may run on another thread than the caller's.
pub fn hot<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() || !spins() {
        return polled(f);
    }
    rayon::scope(|_| polled(f))
}

/// [`hot`] that never moves `f` off the calling thread, for callers that must stay on it: a
/// training loop, whose BatchNorm layers burn keeps running statistics for per thread. The
/// workers poll only where the caller is one of them (the `meal` binary's main thread, see
/// [`adopt_calling_thread`]) and `device` is the CPU; elsewhere `f` runs plainly.
pub fn here<R>(device: &Device, f: impl FnOnce() -> R) -> R {
    if on_cpu(device) { polled(f) } else { f() }
}

/// Whether a scope would spin at all.
fn spins() -> bool {
    rayon::current_num_threads() >= 2 && spin_allowed() && !IN_BODY.get()
}

/// `f` on this thread, with the pool's other workers polling when this thread is a worker.
fn polled<R>(f: impl FnOnce() -> R) -> R {
    let Some(body) = rayon::current_thread_index() else {
        return f();
    };
    if !spins() {
        return f();
    }
    let stop = &AtomicBool::new(false);
    rayon::in_place_scope(|s| {
        for _ in 1..rayon::current_num_threads() {
            s.spawn(move |_| {
                // The body's own thread can pop a spinner it spawned while it waits inside a
                // `join`; spinning there would wait on the body that it stands on.
                if rayon::current_thread_index() == Some(body) {
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
    fn here_stays_on_the_calling_thread_and_polls_only_as_a_worker() {
        let flex = Device::flex();
        let serial: u64 = (0..10_000u64).map(|i| i * i).sum();
        let sum = || (0..10_000u64).into_par_iter().map(|i| i * i).sum::<u64>();
        // Outside the pool (a test thread): plainly, on this thread.
        let me = std::thread::current().id();
        let (same, total) = here(&flex, || (std::thread::current().id() == me, sum()));
        assert!(same);
        assert_eq!(total, serial);
        // As worker 0 of a pool, as the binary's main thread is: still here, now polled.
        std::thread::spawn(move || {
            let _pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .use_current_thread()
                .build()
                .unwrap();
            let me = std::thread::current().id();
            let (same, polled, total) = here(&flex, || {
                (std::thread::current().id() == me, is_hot(), sum())
            });
            assert!(same);
            assert_eq!(polled, spin_allowed());
            assert_eq!(total, serial);
            // `hot` from a worker runs in place too.
            assert!(hot(move || std::thread::current().id() == me));
        })
        .join()
        .unwrap();
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
