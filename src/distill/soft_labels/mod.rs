//! The soft-label store: the teachers' logits for every training image under K recorded
//! augmented views, computed once by `meal cache-teachers` so that `meal distill --soft-labels`
//! trains without running (or even loading) a teacher, as Fast Knowledge Distillation does.
//!
//! Only eval-mode teachers can be cached: in `teacher_bn = "train"` (MEAL V1) a teacher's output
//! for an image depends on the rest of its batch. Only the logits are stored, so only the
//! logits stage can be matched.
//!
//!
//! The file format is [`format`], the `meal cache-teachers` job that writes it [`cache`], and
//! the reader a distillation run trains from [`store`].

pub mod cache;
pub mod format;
pub mod store;

pub use cache::{CacheOptions, CacheSummary, cache_teachers};
pub use format::{DEFAULT_TOP_K, DatasetFingerprint, StoreHeader, StoredTeacher};
pub use store::SoftLabelStore;
