//! The batch loader: a deterministic per-epoch permutation, samples decoded and augmented on a
//! few worker threads ahead of the consumer, batches delivered in order.
//!
//! Determinism: the permutation of epoch `e` depends only on `(seed, e)` and the augmentation
//! RNG of sample `i` only on `(seed, e, i)`, so batches are identical whatever the number of
//! workers or the thread timing. Both RNGs are ChaCha8 keyed directly by those numbers.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DataError, Dataset, View};

/// How a [`Loader`] batches a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Images per batch (0 is treated as 1).
    pub batch_size: usize,
    /// Shuffle the order every epoch (else dataset order).
    pub shuffle: bool,
    /// Apply the training augmentation (else the eval transform).
    pub augment: bool,
    /// Drop the last batch when it is smaller than `batch_size`.
    pub drop_last: bool,
    pub seed: u64,
    /// Decoding threads; 0 decodes on the consumer's thread.
    pub num_workers: usize,
    /// Batches decoded ahead of the consumer (at least `num_workers`, at least 1).
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 128,
            shuffle: true,
            augment: true,
            drop_last: false,
            seed: 0,
            num_workers: 2,
            prefetch: 4,
        }
    }
}

impl LoaderConfig {
    /// Evaluation settings: dataset order, no augmentation, keep the last partial batch.
    pub fn eval(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            augment: false,
            drop_last: false,
            ..Default::default()
        }
    }
}

/// One batch: `images` is `shape = [N, C, H, W]` in NCHW order, `labels[k]` and `indices[k]`
/// (dataset indices) belong to image `k`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
    pub shape: [usize; 4],
    pub indices: Vec<usize>,
    /// The samples of this batch left out because they could not be decoded (a dataset with
    /// `data.skip_corrupt`), as their error messages; the batch is smaller by as many.
    pub skipped: Vec<String>,
    /// The view each image was augmented with, when the loader records them
    /// ([`Loader::recording_views`]); empty otherwise.
    pub views: Vec<View>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

const TAG_PERMUTATION: u64 = 0x7065_726d_7574_6521;
const TAG_SAMPLE: u64 = 0x7361_6d70_6c65_2121;

fn keyed_rng(a: u64, b: u64, c: u64, tag: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&a.to_le_bytes());
    key[8..16].copy_from_slice(&b.to_le_bytes());
    key[16..24].copy_from_slice(&c.to_le_bytes());
    key[24..].copy_from_slice(&tag.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// The augmentation RNG of dataset sample `index` in `epoch`.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    keyed_rng(seed, epoch as u64, index as u64, TAG_SAMPLE)
}

/// The sample order of `epoch`: a Fisher–Yates shuffle keyed by `(seed, epoch)`, or `0..len`.
pub fn epoch_order(len: usize, shuffle: bool, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if shuffle {
        let mut rng = keyed_rng(seed, epoch as u64, 0, TAG_PERMUTATION);
        for i in (1..len).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
    }
    order
}

/// The view (crop and flip) of dataset sample `epoch, index`, when it is given rather than
/// drawn (a soft-label store's recorded views).
pub type ViewTable = Arc<dyn Fn(usize, usize) -> View + Send + Sync>;

/// Batches a dataset; see the module documentation.
pub struct Loader {
    dataset: Arc<dyn Dataset>,
    config: LoaderConfig,
    views: Option<ViewTable>,
    record: bool,
}

impl Loader {
    pub fn new(dataset: Arc<dyn Dataset>, mut config: LoaderConfig) -> Self {
        config.batch_size = config.batch_size.max(1);
        Loader {
            dataset,
            config,
            views: None,
            record: false,
        }
    }

    /// Augments every training sample with the crop and flip `views(epoch, index)` instead of
    /// drawing them (see [`Dataset::get_view`]); the shuffling is unchanged.
    pub fn with_views(mut self, views: ViewTable) -> Self {
        self.set_views(views);
        self
    }

    /// Returns in every training batch the views its images were augmented with
    /// ([`Batch::views`]), drawn as usual: what a soft-label store records.
    pub fn recording_views(mut self) -> Self {
        self.record = true;
        self
    }

    /// [`Loader::with_views`] in place.
    pub fn set_views(&mut self, views: ViewTable) {
        self.views = Some(views);
    }

    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The batches of `epoch`, in order. After an error the iterator ends.
    pub fn epoch(&self, epoch: usize) -> Epoch<'_> {
        let order = epoch_order(
            self.dataset.len(),
            self.config.shuffle,
            self.config.seed,
            epoch,
        );
        let job = Arc::new(Job {
            dataset: self.dataset.clone(),
            order,
            batch_size: self.config.batch_size,
            augment: self.config.augment,
            seed: self.config.seed,
            epoch,
            views: self.views.clone(),
            record: self.record && self.config.augment,
            cancel: AtomicBool::new(false),
        });
        let total = self.num_batches();
        let workers = if self.config.num_workers > 0 && total > 0 {
            Workers::start(job.clone(), self.config.num_workers.min(total))
        } else {
            None
        };
        Epoch {
            _loader: self,
            job,
            next: 0,
            issued: 0,
            total,
            window: self.config.prefetch.max(self.config.num_workers).max(1),
            workers,
            done: false,
        }
    }
}

/// Everything a worker needs to build the batches of one epoch.
struct Job {
    dataset: Arc<dyn Dataset>,
    order: Vec<usize>,
    batch_size: usize,
    augment: bool,
    seed: u64,
    epoch: usize,
    views: Option<ViewTable>,
    record: bool,
    cancel: AtomicBool,
}

impl Job {
    fn batch(&self, b: usize) -> Result<Batch, DataError> {
        let start = b * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        let order = &self.order[start..end];
        let [c, h, w] = self.dataset.output_shape();
        let per = c * h * w;
        let mut images = Vec::with_capacity(per * order.len());
        let mut labels = Vec::with_capacity(order.len());
        let mut indices = Vec::with_capacity(order.len());
        let mut skipped = Vec::new();
        let mut drawn = Vec::new();
        for &i in order {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(DataError::Worker("cancelled".into()));
            }
            let sample = match &self.views {
                Some(views) if self.augment => self.dataset.get_view(i, views(self.epoch, i)),
                _ if self.record => {
                    let mut rng = sample_rng(self.seed, self.epoch, i);
                    self.dataset.get_drawn(i, &mut rng).map(|(x, label, view)| {
                        drawn.push(view);
                        (x, label)
                    })
                }
                _ => {
                    let mut rng = sample_rng(self.seed, self.epoch, i);
                    self.dataset.get(i, self.augment, &mut rng)
                }
            };
            let (x, label) = match sample {
                Err(e @ DataError::Image { .. }) if self.dataset.skips_corrupt() => {
                    skipped.push(e.to_string());
                    continue;
                }
                r => r?,
            };
            if x.len() != per {
                return Err(DataError::Worker(format!(
                    "sample {i} has {} values, expected {per} for shape {:?}",
                    x.len(),
                    [c, h, w]
                )));
            }
            images.extend_from_slice(&x);
            labels.push(label);
            indices.push(i);
        }
        Ok(Batch {
            images,
            labels,
            shape: [indices.len(), c, h, w],
            indices,
            skipped,
            views: drawn,
        })
    }

    fn batch_catching(&self, b: usize) -> Result<Batch, DataError> {
        catch_unwind(AssertUnwindSafe(|| self.batch(b))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(DataError::Worker(format!(
                "worker panicked on batch {b}: {msg}"
            )))
        })
    }
}

type BatchResult = (usize, Result<Batch, DataError>);

struct Workers {
    jobs: Option<Sender<usize>>,
    results: Option<Receiver<BatchResult>>,
    pending: HashMap<usize, Result<Batch, DataError>>,
    handles: Vec<JoinHandle<()>>,
    job: Arc<Job>,
}

impl Workers {
    /// Starts up to `n` threads; `None` when none could be started (the epoch then runs on
    /// the consumer's thread).
    fn start(job: Arc<Job>, n: usize) -> Option<Self> {
        let (job_tx, job_rx) = channel::<usize>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (res_tx, res_rx) = channel::<BatchResult>();
        let handles: Vec<JoinHandle<()>> = (0..n)
            .filter_map(|k| {
                let job = job.clone();
                let job_rx = job_rx.clone();
                let res_tx = res_tx.clone();
                std::thread::Builder::new()
                    .name(format!("meal-data-{k}"))
                    .spawn(move || {
                        loop {
                            let next = {
                                let rx = job_rx.lock().unwrap_or_else(|e| e.into_inner());
                                rx.recv()
                            };
                            let Ok(b) = next else { break };
                            if job.cancel.load(Ordering::Relaxed) {
                                break;
                            }
                            if res_tx.send((b, job.batch_catching(b))).is_err() {
                                break;
                            }
                        }
                    })
                    .ok()
            })
            .collect();
        if handles.is_empty() {
            return None;
        }
        Some(Workers {
            jobs: Some(job_tx),
            results: Some(res_rx),
            pending: HashMap::new(),
            handles,
            job,
        })
    }

    fn issue(&self, b: usize) -> bool {
        self.jobs.as_ref().is_some_and(|tx| tx.send(b).is_ok())
    }

    fn wait_for(&mut self, b: usize) -> Result<Batch, DataError> {
        loop {
            if let Some(r) = self.pending.remove(&b) {
                return r;
            }
            let Some(rx) = self.results.as_ref() else {
                return Err(DataError::Worker("loader already shut down".into()));
            };
            match rx.recv() {
                Ok((k, r)) => {
                    self.pending.insert(k, r);
                }
                Err(_) => {
                    return Err(DataError::Worker(
                        "all worker threads exited before the epoch ended".into(),
                    ));
                }
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.job.cancel.store(true, Ordering::Relaxed);
        self.jobs = None;
        self.results = None;
        self.pending.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// The batches of one epoch; see [`Loader::epoch`]. Dropping it early stops and joins the
/// worker threads.
pub struct Epoch<'a> {
    _loader: &'a Loader,
    job: Arc<Job>,
    next: usize,
    issued: usize,
    total: usize,
    window: usize,
    workers: Option<Workers>,
    done: bool,
}

impl Epoch<'_> {
    /// The sample order of this epoch (dataset indices).
    pub fn order(&self) -> &[usize] {
        &self.job.order
    }
}

impl Iterator for Epoch<'_> {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next >= self.total {
            self.workers = None;
            return None;
        }
        let b = self.next;
        self.next += 1;
        let result = match self.workers.as_mut() {
            None => self.job.batch_catching(b),
            Some(w) => {
                while self.issued < self.total && self.issued < b + self.window {
                    if !w.issue(self.issued) {
                        break;
                    }
                    self.issued += 1;
                }
                w.wait_for(b)
            }
        };
        if result.is_err() {
            self.done = true;
            self.workers = None;
        }
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = if self.done { 0 } else { self.total - self.next };
        (0, Some(left))
    }
}
