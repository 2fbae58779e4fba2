//! Batches reach the device ahead of the step that trains on them.
//!
//! A step queues its forward, backward and update, then waits once for what the host reads back
//! (`readback`). Just before that wait it calls [`Prefetch::ahead`], which takes the next batch
//! from the loader and uploads it, so the host's copy and the transfer's queueing overlap the
//! device's work on the current step instead of starting the next one. On the CPU backend the
//! upload is a copy either way, and the values are the same.

use std::iter::Enumerate;

use burn::tensor::{Device, Int, Tensor};

use super::tensors::batch_tensors;
use crate::data::{Batch, DataError, Epoch};

/// A batch on the host and, unless it is empty, its tensors on the device.
pub struct Fetched {
    pub index: usize,
    pub batch: Batch,
    pub input: Option<Input>,
}

/// A batch's images `(N, C, H, W)` and labels `(N,)` on the training device.
pub struct Input {
    pub images: Tensor<4>,
    pub labels: Tensor<1, Int>,
}

/// One epoch's batches with at most one uploaded ahead.
pub struct Prefetch<'a> {
    batches: Enumerate<Epoch<'a>>,
    device: Device,
    ready: Option<Result<Fetched, DataError>>,
}

impl<'a> Prefetch<'a> {
    pub fn new(epoch: Epoch<'a>, device: Device) -> Self {
        Self {
            batches: epoch.enumerate(),
            device,
            ready: None,
        }
    }

    fn pull(&mut self) -> Option<Result<Fetched, DataError>> {
        let (index, batch) = self.batches.next()?;
        Some(batch.map(|batch| {
            let input = (!batch.is_empty()).then(|| {
                let (images, labels) = batch_tensors(&batch, &self.device);
                Input { images, labels }
            });
            Fetched {
                index,
                batch,
                input,
            }
        }))
    }

    /// Takes and uploads the next batch now, if it is not already.
    pub fn ahead(&mut self) {
        if self.ready.is_none() {
            self.ready = self.pull();
        }
    }
}

impl Iterator for Prefetch<'_> {
    type Item = Result<Fetched, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.ready.take().or_else(|| self.pull())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::Normalization;
    use crate::data::{Loader, LoaderConfig, MemoryDataset};

    /// Ten 1x2x2 images of values i, batches of 3 (the last one of 1), shuffled.
    fn loader() -> Loader {
        let images: Vec<u8> = (0..10u8).flat_map(|i| [i; 12]).collect();
        let labels = (0..10).map(|i| i % 2).collect();
        let names = vec!["a".into(), "b".into()];
        let ds = MemoryDataset::new(
            "ten",
            [3, 2, 2],
            images,
            labels,
            names,
            Normalization::CIFAR10,
        );
        let config = LoaderConfig {
            batch_size: 3,
            augment: false,
            num_workers: 0,
            ..LoaderConfig::default()
        };
        Loader::new(Arc::new(ds.unwrap()), config)
    }

    fn indices(b: &Result<Fetched, DataError>) -> Vec<usize> {
        b.as_ref().unwrap().batch.indices.clone()
    }

    #[test]
    fn batches_taken_ahead_come_in_the_loaders_order_once_each() {
        let l = loader();
        let plain: Vec<Vec<usize>> = l.epoch(1).map(|b| b.unwrap().indices).collect();
        assert_eq!(plain.len(), 4);
        let device = crate::backend::device();
        let mut p = Prefetch::new(l.epoch(1), device);
        let mut got = Vec::new();
        while let Some(b) = p.next() {
            // As a step does: the next batch is taken before this one is used, twice here.
            p.ahead();
            p.ahead();
            let f = b.as_ref().unwrap();
            let input = f.input.as_ref().expect("a non-empty batch is uploaded");
            assert_eq!(input.images.dims(), [f.batch.len(), 3, 2, 2]);
            let labels = input.labels.clone().into_data().convert::<i64>();
            let labels: Vec<i64> = labels.try_to_vec().unwrap();
            let want: Vec<i64> = f.batch.labels.iter().map(|&l| l as i64).collect();
            assert_eq!(labels, want);
            got.push(indices(&b));
        }
        assert_eq!(got, plain);
        p.ahead();
        assert!(p.next().is_none(), "nothing after the last batch");
    }
}
