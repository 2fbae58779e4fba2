//! The engine of `fuzz_readers`: a seeded, reproducible mutation loop (no nightly, no
//! cargo-fuzz), a per-case watchdog thread, and a global allocator that refuses any single
//! allocation above a per-reader ceiling so that "the header said 10^12 elements" shows up as a
//! named failure instead of an out-of-memory kill.
//!
//! Each case runs on its own thread with a 2 MiB stack (Rust's default for spawned threads, and
//! what a data-loader worker gets): unbounded recursion in a reader overflows it and fails the
//! run, where the 8 MiB main thread might hide it.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Fails (aborts) any single allocation above the ceiling of the case running on this thread.
pub struct Guard;

thread_local! {
    static CEILING: Cell<usize> = const { Cell::new(usize::MAX) };
    static CASE_SEED: Cell<u64> = const { Cell::new(0) };
}

fn over_ceiling(size: usize) -> bool {
    let ceiling = CEILING.try_with(Cell::get).unwrap_or(usize::MAX);
    if size <= ceiling {
        return false;
    }
    // No allocation from here on: format into a stack buffer.
    let seed = CASE_SEED.try_with(Cell::get).unwrap_or(0);
    let mut buf = [0u8; 200];
    let mut w = &mut buf[..];
    let _ = write!(
        w,
        "\nfuzz: case seed {seed:#x} (0: a regression test) asked for one allocation of \
         {size} bytes (ceiling {ceiling}): a length taken from the file was trusted\n"
    );
    let left = w.len();
    let _ = std::io::stderr().write_all(&buf[..buf.len() - left]);
    true
}

unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if over_ceiling(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if over_ceiling(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if over_ceiling(new_size) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// See [`Target::wrap`].
pub type Wrap = Box<dyn Fn(Vec<u8>) -> Vec<u8>>;

/// How a reader is fuzzed.
pub struct Target<'a> {
    /// Shown in every message (and part of the seed).
    pub name: &'a str,
    /// Name of the file each case is written to (the reader's error must contain it).
    pub file_name: &'a str,
    /// Real, well-formed inputs to mutate.
    pub corpus: Vec<Vec<u8>>,
    /// Cases run by default (`MEAL_FUZZ_CASES` overrides).
    pub cases: u64,
    /// Largest single allocation a case may make.
    pub ceiling: usize,
    /// Turns a mutated input into the file the reader gets (e.g. puts it inside a container
    /// with a valid checksum); the identity when `None`.
    pub wrap: Option<Wrap>,
}

/// Per-reader counts, printed at the end.
#[derive(Debug, Default)]
pub struct Tally {
    pub cases: u64,
    pub accepted: u64,
    pub rejected: u64,
}

/// A case longer than this is a hang (the slowest real case takes milliseconds).
const CASE_TIMEOUT: Duration = Duration::from_secs(20);

fn base_seed(name: &str) -> u64 {
    let user: u64 = std::env::var("MEAL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x4d45_414c);
    // FNV-1a of the name, so that readers draw different streams.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h ^ user.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn case_count(default: u64) -> u64 {
    std::env::var("MEAL_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The seeds to run: every case of the stream, or the one named by `MEAL_FUZZ_REPLAY`.
fn seeds(name: &str, cases: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("MEAL_FUZZ_REPLAY") {
        let s = s.trim_start_matches("0x");
        let seed = u64::from_str_radix(s, 16).expect("MEAL_FUZZ_REPLAY is a hex seed");
        return vec![seed];
    }
    let base = base_seed(name);
    (0..cases).map(|i| base.wrapping_add(i)).collect()
}

const INTERESTING: [u64; 14] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 40,
    1_000_000_000_000,
    u64::MAX,
];

fn pos(rng: &mut ChaCha8Rng, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    // Headers hold most of the structure: half the edits land in the first 256 bytes.
    if rng.random_bool(0.5) {
        rng.random_range(0..len.min(256))
    } else {
        rng.random_range(0..len)
    }
}

/// One mutated input drawn from `corpus` (bit flips, byte sets, truncation, insertion,
/// deletion, duplication, splicing, length-field corruption, random overwrite), or now and then
/// random bytes or an untouched corpus file.
pub fn mutate(rng: &mut ChaCha8Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let roll = rng.random_range(0..32);
    if roll == 0 || corpus.is_empty() {
        let n = rng.random_range(0..2048);
        return (0..n).map(|_| rng.random()).collect();
    }
    let mut d = corpus[rng.random_range(0..corpus.len())].clone();
    if roll == 1 {
        return d;
    }
    let ops = 1 + rng.random_range(0..4usize).min(rng.random_range(0..4usize));
    for _ in 0..ops {
        let len = d.len();
        match rng.random_range(0..10) {
            0 if len > 0 => {
                let p = pos(rng, len);
                d[p] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let p = pos(rng, len);
                d[p] = INTERESTING[rng.random_range(0..INTERESTING.len())] as u8;
            }
            2 => {
                let p = rng.random_range(0..=len);
                d.truncate(p);
            }
            3 => {
                let p = pos(rng, len + 1).min(len);
                let n = rng.random_range(1..64);
                let ins: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                d.splice(p..p, ins);
            }
            4 if len > 0 => {
                let p = pos(rng, len);
                let n = rng.random_range(1..=(len - p).min(512));
                d.drain(p..p + n);
            }
            5 if len > 0 => {
                let p = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - p).min(512));
                let chunk = d[p..p + n].to_vec();
                let at = pos(rng, len + 1).min(len);
                d.splice(at..at, chunk);
            }
            6 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            7 | 8 if len >= 8 => {
                // A length or count field: a big, small or off-by-one value, 2/4/8 bytes,
                // either byte order.
                let width = [2usize, 4, 8][rng.random_range(0..3)];
                let p = pos(rng, len - width + 1).min(len - width);
                let v = match rng.random_range(0..4) {
                    0 => INTERESTING[rng.random_range(0..INTERESTING.len())],
                    1 => (len as u64)
                        .wrapping_add(rng.random_range(0..3))
                        .wrapping_sub(1),
                    2 => {
                        let old = u64::from_le_bytes({
                            let mut b = [0u8; 8];
                            b[..width].copy_from_slice(&d[p..p + width]);
                            b
                        });
                        old.wrapping_add(rng.random_range(0..17)).wrapping_sub(8)
                    }
                    _ => rng.random(),
                };
                let bytes = if rng.random_bool(0.75) {
                    v.to_le_bytes()[..width].to_vec()
                } else {
                    v.to_be_bytes()[8 - width..].to_vec()
                };
                d[p..p + width].copy_from_slice(&bytes);
            }
            _ if len > 0 => {
                let p = pos(rng, len);
                let n = rng.random_range(1..=(len - p).min(32));
                for b in &mut d[p..p + n] {
                    *b = rng.random();
                }
            }
            _ => {}
        }
    }
    d
}

/// Runs `target`'s cases through `read`, which gets the path of the case file and returns the
/// reader's error message, if any. Panics (naming reader and seed, and saving the input under
/// `target/fuzz-failures/`) on a panic, a hang, or an error that does not name the file.
pub fn run<F>(target: Target<'_>, read: F) -> Tally
where
    F: Fn(&Path) -> Result<(), String> + Send + Sync + 'static,
{
    let read = std::sync::Arc::new(read);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(target.file_name);
    let start = Instant::now();
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for seed in seeds(target.name, case_count(target.cases)) {
        if failures.len() >= 20 {
            break;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut input = mutate(&mut rng, &target.corpus);
        if let Some(wrap) = &target.wrap {
            input = wrap(input);
        }
        std::fs::write(&path, &input).unwrap();
        let (tx, rx) = mpsc::channel();
        let (read, case_path, ceiling) = (read.clone(), path.clone(), target.ceiling);
        let worker = std::thread::Builder::new()
            .name(format!("fuzz {} {seed:#x}", target.name))
            .stack_size(2 << 20)
            .spawn(move || {
                CASE_SEED.with(|c| c.set(seed));
                CEILING.with(|c| c.set(ceiling));
                let out = read(&case_path);
                CEILING.with(|c| c.set(usize::MAX));
                let _ = tx.send(out);
            })
            .unwrap();
        let outcome = match rx.recv_timeout(CASE_TIMEOUT) {
            Ok(out) => {
                worker.join().unwrap();
                out
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                save(target.name, seed, &input);
                panic!(
                    "fuzz {}: case seed {seed:#x} ran past {CASE_TIMEOUT:?} (a hang); replay \
                     with MEAL_FUZZ_REPLAY={seed:x}",
                    target.name
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The worker panicked; its message is already on stderr.
                let _ = worker.join();
                failures.push(format!("seed {seed:x}: panicked"));
                save(target.name, seed, &input);
                tally.cases += 1;
                continue;
            }
        };
        tally.cases += 1;
        match outcome {
            Ok(()) => tally.accepted += 1,
            Err(msg) => {
                tally.rejected += 1;
                if !msg.contains(target.file_name) {
                    failures.push(format!(
                        "seed {seed:x}: error does not name the file: {msg}"
                    ));
                    save(target.name, seed, &input);
                }
            }
        }
    }
    println!(
        "fuzz {:<18} {:>8} cases: {:>7} accepted, {:>8} rejected with an error naming the \
         file, {} failing ({:.1}s)",
        target.name,
        tally.cases,
        tally.accepted,
        tally.rejected,
        failures.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "fuzz {}: {} failing cases (replay one with MEAL_FUZZ_REPLAY=<seed>):\n{}",
        target.name,
        failures.len(),
        failures.join("\n")
    );
    tally
}

fn save(name: &str, seed: u64, input: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}-{seed:x}.bin")), input);
}

/// Runs `f` as a fuzz case would run (2 MiB stack, allocations above `ceiling` abort the test
/// naming `seed`), for the focused regression tests of what fuzzing found.
pub fn guarded<T: Send + 'static>(
    ceiling: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::Result<T> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            CEILING.with(|c| c.set(ceiling));
            let out = f();
            CEILING.with(|c| c.set(usize::MAX));
            out
        })
        .unwrap()
        .join()
}
