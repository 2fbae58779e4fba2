//! Where a run stands: the counters `last.ckpt` holds beside the weights and optimizer state.

use serde::{Deserialize, Serialize};

use super::checkpoint::Container;
use super::run_dir::RunDir;
use crate::error::Result;

/// The `last.ckpt` section holding the [`RunState`].
pub const STATE: &str = "state";

/// Counters that, with the weights and optimizer state, define where a run stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    pub epochs_done: usize,
    pub best_acc: f64,
    pub best_epoch: usize,
}

impl RunState {
    /// Records a finished epoch; returns whether its accuracy is the best so far.
    pub fn finish_epoch(&mut self, epoch: usize, top1: f64) -> bool {
        self.epochs_done = epoch + 1;
        let improved = top1 > self.best_acc || self.epochs_done == 1;
        if improved {
            self.best_acc = top1;
            self.best_epoch = epoch + 1;
        }
        improved
    }
}

/// The run state of `run`'s `last.ckpt`.
pub fn read(run: &RunDir) -> Result<RunState> {
    let path = run.last();
    Container::load(&path)?.get_json(&path, STATE)
}
