//! Ctrl-C handling: the first Ctrl-C asks the loops to stop at the next batch boundary (the
//! last completed epoch is already checkpointed); a second one exits at once. SIGTERM (what
//! `kill`, schedulers and container runtimes send) and SIGHUP are handled the same way, through
//! ctrlc's `termination` feature, so a killed job stays resumable.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the handler once; later calls do nothing.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            tracing::warn!("stopping after this batch; rerun with --resume to continue");
        });
    });
}

pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// For tests: simulate (or clear) a stop request.
pub fn set(value: bool) {
    STOP.store(value, Ordering::SeqCst);
}
