//! The process's one random generator, drawn from by one run at a time.
//!
//! burn keeps a single generator per process (burn-flex and cubecl each hold theirs in a
//! static): `Device::seed` resets it and every `Tensor::random` draws from it. Two runs in one
//! process (a library user's threads, or the tests of one binary) that seed it and draw their
//! initial weights at the same time interleave their draws, so each run's weights would depend
//! on the other's timing and a seeded run would not be reproducible. Every draw in meal goes
//! through [`seeded`] or [`unseeded`], which take one lock, so a seed and the draws it governs
//! are one step that no other thread's draw can enter.
//!
//! burn initialises a parameter lazily, at its first use, which for a fresh model is the first
//! forward pass: long after a seed and outside any lock. A module built for its random weights
//! is therefore passed through [`drawn`] inside the section, which initialises every parameter
//! in the module's own (declaration) order.

use std::cell::Cell;
use std::sync::{Mutex, PoisonError};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, Device, Int, Tensor};

static GENERATOR: Mutex<()> = Mutex::new(());

thread_local! {
    /// Whether this thread holds [`GENERATOR`]: a draw inside a seeded section (a model's
    /// forward while its input shapes are probed, say) runs under the lock already taken.
    static HELD: Cell<bool> = const { Cell::new(false) };
}

fn exclusive<T>(draw: impl FnOnce() -> T) -> T {
    if HELD.get() {
        return draw();
    }
    // A panic in another run's draw leaves nothing half-written here: the lock guards no data.
    let _lock = GENERATOR.lock().unwrap_or_else(PoisonError::into_inner);
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            HELD.set(false);
        }
    }
    HELD.set(true);
    let _release = Release;
    draw()
}

/// Seeds `device`'s generator with `seed` and runs `draw` (a model's initialisation, a random
/// input) before any other thread may draw.
pub fn seeded<T>(device: &Device, seed: u64, draw: impl FnOnce() -> T) -> T {
    exclusive(|| {
        device.seed(seed);
        draw()
    })
}

/// Runs `draw`, which takes random numbers without seeding, outside every seeded section of
/// other threads.
pub fn unseeded<T>(draw: impl FnOnce() -> T) -> T {
    exclusive(draw)
}

/// `module` with every parameter initialised now (see the module's note); call it where the
/// module was built, inside [`seeded`] or [`unseeded`].
pub fn drawn<M: Module>(module: M) -> M {
    struct Draw;
    impl ModuleVisitor for Draw {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            param.val();
        }
        fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
            param.val();
        }
        fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
            param.val();
        }
    }
    debug_assert!(HELD.get(), "drawn() outside a seeded or unseeded section");
    module.visit(&mut Draw);
    module
}
