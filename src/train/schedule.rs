//! Learning-rate schedules. A schedule is a pure function of (epoch, position in the epoch), so
//! its whole state is the epoch counter already in the checkpoint: resuming needs nothing else.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// `MultiStepLR`: multiply by `gamma` at each milestone epoch.
    Multistep {
        milestones: Vec<usize>,
        #[serde(default = "default_gamma")]
        gamma: f64,
        #[serde(default)]
        warmup_epochs: usize,
        /// MEAL V1 calls `scheduler.step()` before the epoch's updates, so each decay happens
        /// one epoch before its milestone (spec §1.9). `true` reproduces that.
        #[serde(default)]
        reference_step_first: bool,
    },
    /// Cosine annealing from the base lr to `min_lr` over the run, per iteration.
    Cosine {
        #[serde(default)]
        min_lr: f64,
        #[serde(default)]
        warmup_epochs: usize,
    },
    /// MEAL V2's regime: inclusive `[start, end, lr]` epoch intervals, lr constant per epoch
    /// (spec §4.2). Epochs outside every interval keep the base lr.
    Regime { intervals: Vec<(usize, usize, f64)> },
    Constant {
        #[serde(default)]
        warmup_epochs: usize,
    },
}

fn default_gamma() -> f64 {
    0.1
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig::Multistep {
            milestones: vec![150, 250],
            gamma: 0.1,
            warmup_epochs: 0,
            reference_step_first: false,
        }
    }
}

impl ScheduleConfig {
    pub fn validate(&self, epochs: usize) -> Result<()> {
        match self {
            ScheduleConfig::Multistep {
                milestones, gamma, ..
            } => {
                if milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::Config(format!(
                        "schedule.milestones must be strictly increasing, got {milestones:?}"
                    )));
                }
                if !(*gamma > 0.0 && gamma.is_finite()) {
                    return Err(Error::Config(format!(
                        "schedule.gamma must be a positive number, got {gamma}"
                    )));
                }
            }
            ScheduleConfig::Cosine { min_lr, .. } => {
                if !(*min_lr >= 0.0 && min_lr.is_finite()) {
                    return Err(Error::Config(format!(
                        "schedule.min_lr must be >= 0, got {min_lr}"
                    )));
                }
            }
            ScheduleConfig::Regime { intervals } => {
                for &(start, end, lr) in intervals {
                    if start > end || !(lr >= 0.0 && lr.is_finite()) {
                        return Err(Error::Config(format!(
                            "schedule.intervals entry [{start}, {end}, {lr}] is invalid: need start <= end and lr >= 0"
                        )));
                    }
                }
            }
            ScheduleConfig::Constant { .. } => {}
        }
        let _ = epochs;
        Ok(())
    }

    fn warmup_epochs(&self) -> usize {
        match self {
            ScheduleConfig::Multistep { warmup_epochs, .. }
            | ScheduleConfig::Cosine { warmup_epochs, .. }
            | ScheduleConfig::Constant { warmup_epochs } => *warmup_epochs,
            ScheduleConfig::Regime { .. } => 0,
        }
    }

    /// Learning rate at `epoch` (0-based) after `progress` ∈ [0, 1) of that epoch.
    pub fn lr(&self, base_lr: f64, epoch: usize, progress: f64, total_epochs: usize) -> f64 {
        let t = epoch as f64 + progress;
        let warmup = self.warmup_epochs();
        let factor = if warmup > 0 && t < warmup as f64 {
            // Linear warm-up from base/warmup_iters up to base, as timm does.
            (t + 1e-3).min(warmup as f64) / warmup as f64
        } else {
            1.0
        };
        let lr = match self {
            ScheduleConfig::Multistep {
                milestones,
                gamma,
                reference_step_first,
                ..
            } => {
                let shift = usize::from(*reference_step_first);
                let passed = milestones.iter().filter(|&&m| epoch + shift >= m).count();
                base_lr * gamma.powi(passed as i32)
            }
            ScheduleConfig::Cosine { min_lr, .. } => {
                let span =
                    (total_epochs.max(1) - warmup.min(total_epochs.saturating_sub(1))) as f64;
                let x = ((t - warmup as f64).max(0.0) / span).min(1.0);
                min_lr + (base_lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
            }
            ScheduleConfig::Regime { intervals } => intervals
                .iter()
                .find(|(s, e, _)| (*s..=*e).contains(&epoch))
                .map(|(_, _, lr)| *lr)
                .unwrap_or(base_lr),
            ScheduleConfig::Constant { .. } => base_lr,
        };
        lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistep_and_reference_quirk() {
        let s = ScheduleConfig::Multistep {
            milestones: vec![150, 250],
            gamma: 0.1,
            warmup_epochs: 0,
            reference_step_first: false,
        };
        assert_eq!(s.lr(0.1, 149, 0.0, 350), 0.1);
        assert!((s.lr(0.1, 150, 0.0, 350) - 0.01).abs() < 1e-12);
        assert!((s.lr(0.1, 250, 0.5, 350) - 0.001).abs() < 1e-12);
        let q = ScheduleConfig::Multistep {
            milestones: vec![150, 250],
            gamma: 0.1,
            warmup_epochs: 0,
            reference_step_first: true,
        };
        // The reference decays one epoch early: index 149 already runs at 0.01.
        assert_eq!(q.lr(0.1, 147, 0.0, 350), 0.1);
        assert!((q.lr(0.1, 148, 0.0, 350) - 0.1).abs() < 1e-12);
        assert!((q.lr(0.1, 149, 0.0, 350) - 0.01).abs() < 1e-12);
        assert!((q.lr(0.1, 249, 0.0, 350) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn cosine_ends_at_min_and_warmup_ramps() {
        let s = ScheduleConfig::Cosine {
            min_lr: 0.0,
            warmup_epochs: 0,
        };
        assert!((s.lr(0.1, 0, 0.0, 10) - 0.1).abs() < 1e-12);
        assert!((s.lr(0.1, 5, 0.0, 10) - 0.05).abs() < 1e-12);
        assert!(s.lr(0.1, 9, 0.999, 10) < 1e-4);
        let w = ScheduleConfig::Constant { warmup_epochs: 2 };
        assert!(w.lr(0.1, 0, 0.0, 10) < 0.001);
        assert!((w.lr(0.1, 1, 0.0, 10) - 0.05).abs() < 1e-3);
        assert_eq!(w.lr(0.1, 2, 0.0, 10), 0.1);
    }

    #[test]
    fn regime_is_inclusive() {
        let s = ScheduleConfig::Regime {
            intervals: vec![(0, 100, 0.01), (101, 300, 0.001)],
        };
        assert_eq!(s.lr(0.5, 100, 0.0, 180), 0.01);
        assert_eq!(s.lr(0.5, 101, 0.0, 180), 0.001);
    }

    #[test]
    fn rejects_bad_milestones() {
        let s = ScheduleConfig::Multistep {
            milestones: vec![10, 5],
            gamma: 0.1,
            warmup_epochs: 0,
            reference_step_first: false,
        };
        assert!(
            s.validate(20)
                .unwrap_err()
                .to_string()
                .contains("milestones")
        );
    }
}
