use std::path::PathBuf;

use clap::Args;

use crate::data::download::{RELEASES, download, fetch, release};
use crate::error::Result;

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Dataset to fetch (omit to list them).
    pub dataset: Option<String>,
    /// Folder to download and unpack into.
    #[arg(long, default_value = "data")]
    pub out: PathBuf,
}

pub fn run(a: DownloadArgs) -> Result<()> {
    let Some(name) = a.dataset else {
        for r in RELEASES {
            println!("{:<16} {}", r.name, r.about);
        }
        return Ok(());
    };
    let rel = release(&name)?;
    crate::progress::say(format!(
        "downloading {} into {}",
        rel.about,
        a.out.display()
    ));
    let dir = download(rel, &a.out, &fetch)?;
    println!(
        "{} is ready in {} (checksums verified)",
        rel.name,
        dir.display()
    );
    Ok(())
}
