use crate::error::Result;
use crate::recipes::{RECIPES, student_init_note, summary};

pub fn run() -> Result<()> {
    for r in RECIPES {
        println!("{:<28} {}", r.name, summary(r));
        if let Some(note) = student_init_note(r) {
            println!("{:<28} {note}", "");
        }
    }
    println!("\nrun one with `meal distill --recipe NAME [--teacher CKPT ...] [--set key=value]`");
    Ok(())
}
