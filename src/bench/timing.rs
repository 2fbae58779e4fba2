//! Repeating a measured closure and summarising the times: warm-up runs are dropped (first
//! calls allocate and fill caches), the median is the figure, min and max show the spread.

use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};

/// Throughput over the measured runs, images per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    /// From the median run time.
    pub median: f64,
    /// From the slowest run.
    pub min: f64,
    /// From the fastest run.
    pub max: f64,
    /// Median run time in milliseconds.
    pub median_ms: f64,
}

impl Throughput {
    /// `images` per run over run times in seconds (at least one, each > 0).
    pub fn from_times(images: usize, times: &[f64]) -> Self {
        let mut sorted = times.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = median_of_sorted(&sorted);
        let rate = |t: f64| images as f64 / t;
        Self {
            median: rate(median),
            min: rate(sorted[n - 1]),
            max: rate(sorted[0]),
            median_ms: median * 1e3,
        }
    }
}

/// Runs `f` `warmup + steps` times and times the last `steps`. `f` must return only once its
/// work is done (read a value back to the host), or the time measures the queueing.
pub fn measure(
    images: usize,
    warmup: usize,
    steps: usize,
    mut f: impl FnMut(usize) -> Result<()>,
) -> Result<Throughput> {
    if steps == 0 {
        return Err(Error::Config("bench: --steps must be at least 1".into()));
    }
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let t = Instant::now();
        f(i)?;
        if i >= warmup {
            // A zero duration would be an infinite rate; a clock that coarse measures nothing.
            times.push(t.elapsed().as_secs_f64().max(1e-9));
        }
    }
    Ok(Throughput::from_times(images, &times))
}

/// The median of ascending values (at least one): the middle one, or the mean of the two middle
/// ones.
pub(super) fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let t = Throughput::from_times(10, &[0.5, 0.1, 0.2]);
        assert_eq!(t.median, 50.0);
        assert_eq!(t.min, 20.0);
        assert_eq!(t.max, 100.0);
        assert_eq!(t.median_ms, 200.0);
        let t = Throughput::from_times(8, &[0.4, 0.1, 0.2, 0.3]);
        assert!((t.median - 32.0).abs() < 1e-9);
    }

    #[test]
    fn warmup_runs_are_not_timed() {
        let mut calls = Vec::new();
        let t = measure(4, 2, 3, |i| {
            calls.push(i);
            if i < 2 {
                std::thread::sleep(std::time::Duration::from_millis(60));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, [0, 1, 2, 3, 4]);
        // Untimed warm-up: every measured run is far under the 60 ms of a warm-up run.
        assert!(t.median_ms < 30.0 && t.min > 4.0 / 0.03, "{t:?}");
        assert!(measure(1, 0, 0, |_| Ok(())).is_err());
    }
}
