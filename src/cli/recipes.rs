use crate::error::Result;
use crate::recipes::{RECIPES, summary};

pub fn run() -> Result<()> {
    for r in RECIPES {
        println!("{:<28} {}", r.name, summary(r));
    }
    println!("\nrun one with `meal distill --recipe NAME [--teacher CKPT ...] [--set key=value]`");
    Ok(())
}
