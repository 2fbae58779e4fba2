//! Divergence guards for the training loops. A diverged run must stop where it diverges: NaN
//! logits used to rank as "correct", and a non-finite checkpoint saved as `best` would be
//! trusted later. The loss is read back every step anyway, so checking it is free and catches
//! NaN gradients one step after they land in the weights; the weights (and BatchNorm buffers)
//! are checked once per epoch, before anything of that epoch is written.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use super::evaluate::Accuracy;
use crate::error::{Error, Result};

/// Where a run stands, so that the error can say what survived and how to go on.
pub struct Guard<'a> {
    /// `train` or `distill`: the command whose `--resume` continues the run.
    pub command: &'static str,
    pub run_dir: &'a Path,
    /// Epochs held by the run folder's `last.ckpt` (0: none written yet).
    pub epochs_done: usize,
    /// The config keys of the run's learning rates, main one first, for the hint.
    pub rate_keys: &'static [&'static str],
}

impl Guard<'_> {
    /// Fails when any of the named losses of batch `batch` of epoch `epoch` (both 0-based) is
    /// NaN or infinite; `rates` are the step's named learning rates, for the message.
    pub fn losses(
        &self,
        epoch: usize,
        batch: usize,
        batches: usize,
        rates: &[(&str, f64)],
        losses: &[(&str, f64)],
    ) -> Result<()> {
        let bad: Vec<String> = losses
            .iter()
            .filter(|(_, v)| !v.is_finite())
            .map(|(name, v)| format!("the {name} loss is non-finite ({v})"))
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        let rates: Vec<String> = rates
            .iter()
            .map(|(name, v)| format!("{name} {v:.3e}"))
            .collect();
        Err(self.diverged(
            epoch,
            format!(
                "batch {} of {batches} ({}): {}",
                batch + 1,
                rates.join(", "),
                bad.join(" and ")
            ),
        ))
    }

    /// Fails when any parameter or buffer of `module` (named `what` in the message) holds a
    /// NaN or an infinity.
    pub fn weights<M: Module>(&self, epoch: usize, what: &str, module: &M) -> Result<()> {
        let bad = nonfinite_params(module)?;
        if bad.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 3;
        let mut list = bad
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if bad.len() > SHOWN {
            list.push_str(&format!(" and {} more", bad.len() - SHOWN));
        }
        Err(self.diverged(
            epoch,
            format!("after its last batch the {what}'s weights are non-finite ({list})"),
        ))
    }

    /// Fails when the test evaluation of the model (named `what`) met non-finite outputs.
    pub fn outputs(&self, epoch: usize, what: &str, acc: &Accuracy) -> Result<()> {
        if acc.nonfinite == 0 {
            return Ok(());
        }
        Err(self.diverged(
            epoch,
            format!(
                "the {what}'s outputs are non-finite for {} of {} test images",
                acc.nonfinite, acc.images
            ),
        ))
    }

    fn diverged(&self, epoch: usize, what: String) -> Error {
        let dir = self.run_dir.display();
        let set = self
            .rate_keys
            .iter()
            .map(|k| format!("--set {k}=<lower>"))
            .collect::<Vec<_>>()
            .join(" and/or ");
        let kept = if self.epochs_done == 0 {
            "no checkpoint was written".to_string()
        } else {
            format!(
                "last.ckpt (epoch {}) and best.ckpt in {dir} are as they were, and \
                 `meal {} --resume {dir}` with {set} continues from epoch {}",
                self.epochs_done,
                self.command,
                self.epochs_done + 1
            )
        };
        Error::Diverged(format!(
            "in epoch {}, {what}. Nothing of epoch {} was saved: {kept}. \
             Hint: lower the learning rate ({}), or check the data for corrupt values",
            epoch + 1,
            epoch + 1,
            self.rate_keys.join(" or ")
        ))
    }
}

/// Collects the dotted paths of the float tensors holding a NaN or an infinity, and the first
/// failed read (a visitor cannot return one).
#[derive(Default)]
struct NonFinite {
    path: Vec<String>,
    bad: Vec<String>,
    failed: Option<Error>,
}

impl ModuleVisitor for NonFinite {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val().detach();
        if self.failed.is_some() || t.shape().num_elements() == 0 {
            return;
        }
        let what = format!("whether {} is finite", self.path.join("."));
        match crate::backend::read::scalar::<bool, 1, _>(t.is_finite().all(), &what) {
            Ok(true) => {}
            Ok(false) => self.bad.push(self.path.join(".")),
            Err(e) => self.failed = Some(e),
        }
    }
}

/// The dotted paths of `module`'s parameters and buffers (BatchNorm running statistics
/// included) that hold a NaN or an infinity; empty when all are finite.
pub fn nonfinite_params<M: Module>(module: &M) -> Result<Vec<String>> {
    let mut v = NonFinite::default();
    module.visit(&mut v);
    match v.failed {
        Some(e) => Err(e),
        None => Ok(v.bad),
    }
}
