//! One device→host read per training step. On a GPU every read waits for the queue to drain,
//! so a step that read its loss, then each discriminator's outputs, then the logits would stall
//! the device several times; the step instead gathers everything the host needs (losses for
//! the divergence guard and the log, logits for the training accuracy, discriminator outputs
//! for their accuracy) into one buffer and reads it once, after the update is queued.

use burn::tensor::Tensor;

use crate::error::Result;

/// What a step wants back from the device, in the order pushed.
#[derive(Default)]
pub struct Readback {
    parts: Vec<Tensor<1>>,
    lens: Vec<usize>,
}

/// Where a pushed tensor lies in the values read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

impl Readback {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `t` (detached, flattened row-major) for the read.
    pub fn push<const D: usize>(&mut self, t: Tensor<D>) -> Slot {
        let n = t.shape().num_elements();
        self.parts.push(t.detach().reshape([n]));
        self.lens.push(n);
        Slot(self.lens.len() - 1)
    }

    /// Queues a loss when there is one; `None` reads back as 0.
    pub fn push_opt(&mut self, t: Option<&Tensor<1>>) -> Option<Slot> {
        t.map(|t| self.push(t.clone()))
    }

    /// The one synchronising read: everything pushed, copied to the host as `f32`. A
    /// computation of the step that the device could not run fails here.
    pub fn read(self) -> Result<Values> {
        let mut offsets = Vec::with_capacity(self.lens.len() + 1);
        offsets.push(0);
        for n in &self.lens {
            offsets.push(offsets.last().copied().unwrap_or(0) + n);
        }
        let data = if self.parts.is_empty() {
            Vec::new()
        } else {
            let what = "the step's losses and outputs";
            if let Some(e) = injected_failure(what) {
                return Err(e);
            }
            crate::backend::read::floats(Tensor::cat(self.parts, 0), what)?
        };
        Ok(Values { data, offsets })
    }
}

/// Test hook for the device-failure path: `MEAL_TEST_FAIL_READ=N` makes the N-th step read of
/// the process fail as a device that could not run the step would. No device fails on demand,
/// and lavapipe only past its buffer limit, which the preflight check refuses first.
fn injected_failure(what: &str) -> Option<crate::error::Error> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static AT: OnceLock<Option<usize>> = OnceLock::new();
    static READS: AtomicUsize = AtomicUsize::new(0);
    let at = (*AT.get_or_init(|| {
        std::env::var("MEAL_TEST_FAIL_READ")
            .ok()
            .and_then(|v| v.parse().ok())
    }))?;
    (READS.fetch_add(1, Ordering::Relaxed) + 1 == at)
        .then(|| crate::backend::read::read_failed(what, "injected by MEAL_TEST_FAIL_READ"))
}

/// The host copy of a [`Readback`].
pub struct Values {
    data: Vec<f32>,
    offsets: Vec<usize>,
}

impl Values {
    pub fn get(&self, slot: Slot) -> &[f32] {
        &self.data[self.offsets[slot.0]..self.offsets[slot.0 + 1]]
    }

    /// The first value of `slot` (a scalar loss), 0 when the slot is `None`.
    pub fn scalar(&self, slot: Option<Slot>) -> f64 {
        slot.map(|s| f64::from(self.get(s)[0])).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn slots_read_back_what_was_pushed() {
        let device = Device::default();
        let mut rb = Readback::new();
        let m = rb.push(Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]),
            &device,
        ));
        let s = rb.push(Tensor::<1>::from_floats([7.5f32], &device));
        let none = rb.push_opt(None);
        let v = rb.read().unwrap();
        assert_eq!(v.get(m), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(v.scalar(Some(s)), 7.5);
        assert_eq!(v.scalar(none), 0.0);
        assert!(Readback::new().read().unwrap().data.is_empty());
    }
}
