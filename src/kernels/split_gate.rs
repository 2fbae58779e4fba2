//! Whether a small batch-1 layer is shared between threads right now.
//!
//! A layer of a few million multiply-adds (resnet20's, 0.15 ms each) answers in about 0.67 of
//! the time split in two when the machine's cores are free, and about 3× slower beside a busy
//! neighbour (BENCHMARKS.md, "Inference latency"): the thread that took the second half is
//! descheduled and the layer waits a time slice for it. Such splits are therefore watched: each
//! reports the wall time from its first task's start to its last task's end against the CPU
//! time its tasks used. A split whose halves did not run side by side (wall time above 7/8 of
//! the CPU time: beside a busy neighbour they run one after the other, paying the hand-offs
//! for nothing, or one waits for the other's thread) closes the gate for a while, the wait
//! doubling while splits keep losing; a split that wins resets it. Layers above the fixed split
//! bound are always split, and the values never depend on the split
//! (`tests/kernels_small_batch.rs`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

/// Layers from this many multiply-adds per image up to the fixed split bound are split while
/// the gate is open: below it a half layer is too short for the hand-off to pay.
pub const MIN_GATED_MACS: usize = 1 << 20;

/// Splits judged together: the first split after the gate opens finds the other thread
/// asleep and waits for it to wake, which says nothing of the splits after it (resnet20 runs 19
/// layers back to back).
const WINDOW: u64 = 32;

/// The first wait after a losing window; it doubles up to [`MAX_WAIT_NS`].
const FIRST_WAIT_NS: u64 = 50_000_000;
const MAX_WAIT_NS: u64 = 1_600_000_000;

/// Whether a split of `wall` ns whose tasks used `cpu` ns lost: it did not run its halves side
/// by side for at least an eighth of its work (beside a busy neighbour the halves mostly run
/// one after the other, for the hand-offs' cost and no gain; a descheduled half makes `wall`
/// far exceed `cpu`).
fn lost(wall: u64, cpu: u64) -> bool {
    wall > cpu - cpu / 8
}

/// Nanoseconds since the first call (`Instant` cannot live in an atomic).
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The calling thread's CPU time, where the platform gives it.
fn thread_cpu_ns() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid timespec for the call to fill.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        (rc == 0).then(|| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// The gate's state: closed until `until` (on [`now_ns`]'s clock), and the next wait.
pub struct Gate {
    until: AtomicU64,
    wait: AtomicU64,
    /// The current window's splits, wall and CPU nanoseconds.
    splits: AtomicU64,
    wall: AtomicU64,
    cpu: AtomicU64,
}

impl Gate {
    pub const fn new() -> Self {
        Self {
            until: AtomicU64::new(0),
            wait: AtomicU64::new(FIRST_WAIT_NS),
            splits: AtomicU64::new(0),
            wall: AtomicU64::new(0),
            cpu: AtomicU64::new(0),
        }
    }

    /// Whether a split may be tried at time `now`.
    pub fn open_at(&self, now: u64) -> bool {
        now >= self.until.load(Ordering::Relaxed)
    }

    /// Records a split that took `wall` ns from first start to last end, its tasks `cpu` ns
    /// together, ending at time `now`; every [`WINDOW`] splits, judges them together. Returns
    /// whether this split ended a losing window.
    pub fn record(&self, now: u64, wall: u64, cpu: u64) -> bool {
        self.wall.fetch_add(wall, Ordering::Relaxed);
        self.cpu.fetch_add(cpu, Ordering::Relaxed);
        if self.splits.fetch_add(1, Ordering::Relaxed) + 1 < WINDOW {
            return false;
        }
        // Concurrent splits may land in either window: the judgement is statistical anyway.
        self.splits.store(0, Ordering::Relaxed);
        let wall = self.wall.swap(0, Ordering::Relaxed);
        let cpu = self.cpu.swap(0, Ordering::Relaxed);
        let lost = lost(wall, cpu);
        if lost {
            let wait = self.wait.load(Ordering::Relaxed);
            self.until.store(now + wait, Ordering::Relaxed);
            self.wait
                .store((wait * 2).min(MAX_WAIT_NS), Ordering::Relaxed);
        } else {
            self.wait.store(FIRST_WAIT_NS, Ordering::Relaxed);
        }
        lost
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

static GATE: Gate = Gate::new();

/// Watched splits so far, and how many windows of them lost (`examples/conv_latency.rs`
/// prints them).
static TRIED: AtomicU64 = AtomicU64::new(0);
static LOST: AtomicU64 = AtomicU64::new(0);

/// `(watched splits, losing windows)` since the process started.
pub fn stats() -> (u64, u64) {
    (TRIED.load(Ordering::Relaxed), LOST.load(Ordering::Relaxed))
}

static FORCED: AtomicU8 = AtomicU8::new(0);

/// Forces the splits this gate watches on or off for the whole process (`None`: watched), so
/// that a test can check the split values and a benchmark compare both.
pub fn set_forced(on: Option<bool>) {
    let v = match on {
        None => 0,
        Some(true) => 1,
        Some(false) => 2,
    };
    FORCED.store(v, Ordering::Relaxed);
}

/// Whether a layer of `macs` multiply-adds per image, under the fixed split bound, may be split
/// now: at least [`MIN_GATED_MACS`], the gate open, and a CPU clock to watch the split with.
pub fn allows(macs: usize) -> bool {
    macs >= MIN_GATED_MACS
        && match FORCED.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => GATE.open_at(now_ns()) && thread_cpu_ns().is_some(),
        }
}

/// One watched split: each task runs through [`Watch::task`], and dropping the watch reports
/// the split to the gate.
pub struct Watch {
    first_start: AtomicU64,
    last_end: AtomicU64,
    cpu: AtomicU64,
}

impl Watch {
    pub fn new() -> Self {
        Self {
            first_start: AtomicU64::new(u64::MAX),
            last_end: AtomicU64::new(0),
            cpu: AtomicU64::new(0),
        }
    }

    /// `f()`, its wall span and CPU time added to the split's.
    pub fn task<R>(&self, f: impl FnOnce() -> R) -> R {
        let (w0, c0) = (now_ns(), thread_cpu_ns().unwrap_or(0));
        let r = f();
        let (c1, w1) = (thread_cpu_ns().unwrap_or(0), now_ns());
        self.first_start.fetch_min(w0, Ordering::Relaxed);
        self.last_end.fetch_max(w1, Ordering::Relaxed);
        self.cpu.fetch_add(c1.saturating_sub(c0), Ordering::Relaxed);
        r
    }
}

impl Default for Watch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let (start, end) = (*self.first_start.get_mut(), *self.last_end.get_mut());
        if start <= end {
            TRIED.fetch_add(1, Ordering::Relaxed);
            if GATE.record(end, end - start, *self.cpu.get_mut()) {
                LOST.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `WINDOW` splits of `wall` and `cpu` µs each at time `now`; whether the window lost.
    fn window(g: &Gate, now: u64, wall: u64, cpu: u64) -> bool {
        let ends: Vec<bool> = (0..WINDOW)
            .map(|_| g.record(now, wall * 1000, cpu * 1000))
            .collect();
        assert!(ends[..ends.len() - 1].iter().all(|&l| !l));
        ends[ends.len() - 1]
    }

    #[test]
    fn a_losing_window_closes_the_gate_for_a_doubling_wait() {
        let g = Gate::new();
        assert!(g.open_at(0));
        // Both halves side by side: 100 µs of wall for 180 µs of CPU.
        assert!(!window(&g, 1_000, 100, 180));
        assert!(g.open_at(1_000));
        // One slow split (a descheduled half) among fast ones: the window still won.
        assert!(!g.record(2_000, 3_000_000, 200_000));
        let ends: Vec<bool> = (1..WINDOW)
            .map(|_| g.record(2_000, 50_000, 180_000))
            .collect();
        assert_eq!(ends, vec![false; WINDOW as usize - 1]);
        assert!(g.open_at(2_000));
        // Halves one after the other (190 µs of wall for 200 µs of CPU) gain nothing: closed.
        assert!(window(&g, 3_000, 190, 200));
        assert!(!g.open_at(3_000 + FIRST_WAIT_NS - 1));
        assert!(g.open_at(3_000 + FIRST_WAIT_NS));
        // Losing again waits twice as long; a win resets the wait.
        let t = 3_000 + FIRST_WAIT_NS;
        assert!(window(&g, t, 3_000, 200));
        assert!(!g.open_at(t + 2 * FIRST_WAIT_NS - 1));
        assert!(g.open_at(t + 2 * FIRST_WAIT_NS));
        let t = t + 2 * FIRST_WAIT_NS;
        assert!(!window(&g, t, 100, 180));
        assert!(window(&g, t, 190, 200));
        assert!(!g.open_at(t + FIRST_WAIT_NS - 1));
        assert!(g.open_at(t + FIRST_WAIT_NS));
    }

    #[test]
    fn the_wait_is_bounded() {
        let g = Gate::new();
        for _ in 0..64 {
            assert!(window(&g, 0, 1_000, 0));
        }
        assert!(g.open_at(MAX_WAIT_NS));
    }

    #[test]
    fn a_watch_sums_its_tasks() {
        let mut w = Watch::new();
        let v = w.task(|| (0..1000u64).sum::<u64>());
        assert_eq!(v, 499_500);
        w.task(|| ());
        assert!(*w.first_start.get_mut() <= *w.last_end.get_mut());
    }
}
