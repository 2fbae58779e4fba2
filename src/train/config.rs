//! `meal train`'s configuration (teacher training with cross-entropy). Defaults follow the
//! reference teacher recipe (kuangliu/pytorch-cifar, spec §1.2): SGD lr 0.1, momentum 0.9,
//! weight decay 5e-4, batch 128.

use serde::{Deserialize, Serialize};

use super::settings::{RunConfig, Settings, run_config};
use crate::error::{Error, Result};

run_config! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TrainConfig {
        /// Architecture (see `meal models`); also the run folder's prefix when `name` is unset.
        pub arch: String,
    }
    then {}
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        crate::models::arch_info(&self.arch).map_err(|e| Error::Config(format!("arch: {e}")))?;
        self.settings().validate()
    }
}

impl RunConfig for TrainConfig {
    const WHAT: &'static str = "train config";
    fn validate(&self) -> Result<()> {
        TrainConfig::validate(self)
    }
    fn default_name(&self) -> String {
        self.arch.clone()
    }
    fn model_arch(&self) -> &str {
        &self.arch
    }
    fn settings(&self) -> Settings<'_> {
        TrainConfig::settings(self)
    }
}
