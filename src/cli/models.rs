use clap::Args;

use crate::error::Result;
use crate::models::{ARCHS, trainable_params};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Number of classes to size the classifier for.
    #[arg(long, default_value_t = 10)]
    pub num_classes: usize,
}

pub fn run(a: ModelsArgs) -> Result<()> {
    let device = crate::backend::device();
    println!("{:<18} {:>12} {:>7}  summary", "arch", "params", "stages");
    for info in ARCHS {
        let net = (info.build)(&device, a.num_classes);
        println!(
            "{:<18} {:>12} {:>7}  {}",
            info.name,
            trainable_params(&net),
            info.stages,
            info.summary
        );
    }
    Ok(())
}
