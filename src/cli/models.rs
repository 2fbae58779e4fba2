use clap::Args;

use crate::error::Result;
use crate::models::{ARCHS, count_macs, trainable_params};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Number of classes to size the classifier for.
    #[arg(long, default_value_t = 10)]
    pub num_classes: usize,
}

pub fn run(a: ModelsArgs) -> Result<()> {
    let device = crate::backend::device();
    println!(
        "{:<16} {:>11} {:>9} {:>7}  summary",
        "arch", "params", "MFLOPs", "stages"
    );
    for info in ARCHS {
        let net = (info.build)(&device, a.num_classes);
        // Multiply-accumulates of one 32×32 image, the convention of the CIFAR literature.
        let mflops = count_macs(&net, [1, 3, 32, 32]) as f64 / 1e6;
        println!(
            "{:<16} {:>11} {:>9.1} {:>7}  {}",
            info.name,
            trainable_params(&net),
            mflops,
            info.stages,
            info.summary
        );
    }
    Ok(())
}
