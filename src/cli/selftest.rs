use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::selftest::{self, Check, Tolerance};

#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Only the golden comparisons (skip the train/distill/resume round).
    #[arg(long)]
    pub golden_only: bool,
    /// Compare only these models with PyTorch, comma-separated (default: every model with golden
    /// outputs, the CIFAR-form zoo; the loss checks always run). For slow devices: lavapipe
    /// takes minutes over the whole zoo.
    #[arg(long, value_delimiter = ',', value_name = "ARCH,...")]
    pub models: Vec<String>,
    /// Folder of the round's runs; its data/, teacher/ and student/ are replaced (default: a
    /// fresh folder under the system temp dir, removed when every check passed).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(a: SelftestArgs) -> Result<()> {
    let archs = selftest::models::select(&a.models).map_err(Error::Other)?;
    // The round's runs check their own models when they start.
    let mut check = crate::backend::limits::Preflight::new();
    for arch in &archs {
        check.arch(arch, arch, 10)?;
    }
    check.check()?;
    let device = crate::backend::device();
    let name = crate::backend::describe_selected();
    let tol = Tolerance::for_selected();
    println!(
        "meal selftest on {name} (tolerance: {:e} per element + {:e} of each tensor's scale; \
         model summaries {:e} of mean |x|)",
        tol.element, tol.scale, tol.summary
    );
    let mut checks: Vec<Check> = Vec::new();
    let report = |c: Check, checks: &mut Vec<Check>| {
        println!(
            "{} {}: {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        );
        checks.push(c);
    };
    for c in selftest::golden_checks(&device, &tol, &archs) {
        report(c, &mut checks);
    }
    let (work, temporary) = match a.work_dir {
        Some(dir) => (dir, false),
        None => (
            std::env::temp_dir().join(format!("meal-selftest-{}", std::process::id())),
            true,
        ),
    };
    if !a.golden_only {
        for c in selftest::round::round(&work) {
            report(c, &mut checks);
        }
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    if let Some(path) = &a.json {
        let json = serde_json::json!({
            "device": name,
            "tolerance": { "element": tol.element, "scale": tol.scale, "summary": tol.summary },
            "passed": checks.len() - failed,
            "failed": failed,
            "checks": checks.iter().map(|c| serde_json::json!({
                "name": c.name, "passed": c.passed, "detail": c.detail,
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&json).map_err(|e| Error::file(path, e))?;
        std::fs::write(path, text).map_err(|e| Error::file(path, e))?;
    }
    if failed == 0 && temporary {
        let _ = std::fs::remove_dir_all(&work);
    }
    if failed > 0 {
        return Err(Error::Other(format!(
            "selftest on {name}: {failed} of {} checks failed{}",
            checks.len(),
            if a.golden_only {
                String::new()
            } else {
                format!(" (the round's runs are in {})", work.display())
            }
        )));
    }
    println!("selftest on {name}: all {} checks passed", checks.len());
    Ok(())
}
