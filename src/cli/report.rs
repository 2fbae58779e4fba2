use std::path::PathBuf;

use clap::Args;

use crate::error::Result;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run folders, or folders holding run folders (e.g. runs/): each run becomes one colour.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Output folder for report.html and the PNG charts (default: <RUN_DIR>/report for one
    /// run, ./report for several).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: ReportArgs) -> Result<()> {
    let out = crate::report::write_report(&a.runs, a.out.as_deref())?;
    println!(
        "wrote {} and {} PNG charts for {} run{}: {}",
        out.html.display(),
        out.pngs.len(),
        out.runs.len(),
        if out.runs.len() == 1 { "" } else { "s" },
        out.runs.join(", ")
    );
    Ok(())
}
