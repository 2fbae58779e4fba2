//! The counter of forward cost in multiply-accumulates (MACs), the "FLOPs" that papers and
//! `meal models` quote ([`super::count::count_macs`] runs a whole model under it).
//!
//! Every convolution and linear layer of the zoo runs through [`layers::conv_fwd`] /
//! [`layers::linear_fwd`], which add their MACs to a thread-local counter while one is active:
//! a convolution costs `out_h·out_w·k_h·k_w·(in/groups)·out` per image, a linear layer `in·out`;
//! biases, BatchNorm, activations, pooling and additions are not counted (the usual convention,
//! and what `scripts/models/param_counts.py` sums with forward hooks).
//!
//! [`layers::conv_fwd`]: super::layers::conv_fwd
//! [`layers::linear_fwd`]: super::layers::linear_fwd

use std::cell::Cell;

thread_local! {
    static MACS: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Whether a counter is active on this thread.
pub(crate) fn is_counting() -> bool {
    MACS.with(|c| c.get().is_some())
}

/// Adds `macs` to the active counter (no-op when none is active).
pub(crate) fn record(macs: u64) {
    MACS.with(|c| {
        if let Some(total) = c.get() {
            c.set(Some(total + macs));
        }
    });
}

/// Runs `f` with MAC counting on and returns its result with the MACs its zoo layers performed
/// (for the whole batch). Nested calls are counted by the innermost one only.
pub fn counting<R>(f: impl FnOnce() -> R) -> (R, u64) {
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            MACS.with(|c| c.set(self.0));
        }
    }
    let restore = Restore(MACS.with(|c| c.replace(Some(0))));
    let out = f();
    let macs = MACS.with(|c| c.get()).unwrap_or(0);
    drop(restore);
    (out, macs)
}
