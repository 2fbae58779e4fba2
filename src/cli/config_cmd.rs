//! `meal config`: print a resolved config (every default filled in) and the reference of every
//! config key (the text of `docs/config.md`, compiled in).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::distill::DistillConfig;
use crate::error::{Error, Result};
use crate::train::TrainConfig;

/// The configuration reference, `docs/config.md`.
pub const REFERENCE: &str = include_str!("../../docs/config.md");

const LONG_ABOUT: &str = "\
`meal config show` resolves a config exactly as `meal train`/`meal distill` would (file or \
recipe, then --set overrides), checks it, and prints it as TOML with every default filled in; \
optional keys left unset are listed in a comment at the end.

`meal config help` prints the reference of every key (type, default, allowed values, meaning); \
`meal config help KEY` only the rows of KEY and the keys under it, e.g. `meal config help meal` \
or `meal config help schedule.milestones`. The same reference is docs/config.md.";

#[derive(Debug, Args)]
#[command(after_long_help = LONG_ABOUT, disable_help_subcommand = true)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved config as TOML (all defaults filled in).
    Show(ShowArgs),
    /// Print the reference of every config key, or of the keys under KEY.
    Help {
        /// A key or section, e.g. `meal.combine`, `schedule`, `data`.
        key: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConfigKind {
    /// `meal train` (TrainConfig).
    Train,
    /// `meal distill` (DistillConfig).
    Distill,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config", "recipe", "kind"])))]
pub struct ShowArgs {
    /// A TOML config file (a distill config if it has `student` or `teachers`, else a train
    /// config; --kind decides when given).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A shipped recipe (see `meal recipes`): a distill config.
    #[arg(long, conflicts_with = "config")]
    pub recipe: Option<String>,
    /// Which config to show; alone, it starts from example values for the required keys.
    #[arg(long, value_enum)]
    pub kind: Option<ConfigKind>,
    /// Override any key: --set meal.combine=mean-softmax
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

/// Example values for the keys a config cannot do without, used by `--kind` alone.
fn skeleton(kind: ConfigKind) -> toml::Table {
    let text = match kind {
        ConfigKind::Train => "arch = \"resnet20\"\n[data]\npath = \"data/cifar10-mini\"\n",
        ConfigKind::Distill => {
            "student = \"resnet8\"\nteachers = [{ checkpoint = \"runs/teacher/best.ckpt\" }]\n\
             [data]\npath = \"data/cifar10-mini\"\n"
        }
    };
    text.parse().expect("valid skeleton")
}

/// Dotted paths of the keys that serialise as null (optional keys left unset); array
/// elements are written `[]`.
pub fn unset_keys<T: Serialize>(config: &T) -> Vec<String> {
    fn walk(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Null if !out.iter().any(|k| k == prefix) => {
                out.push(prefix.to_string());
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, &p, out);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::to_value(config) {
        walk(&v, "", &mut out);
    }
    out
}

/// The resolved config as TOML, with a header naming where it came from and a trailer listing
/// unset optional keys.
fn render<T: Serialize>(config: &T, what: &str, source: &str) -> Result<String> {
    let body = toml::to_string(config)
        .map_err(|e| Error::Config(format!("cannot print the {what}: {e}")))?;
    let mut out = format!(
        "# Resolved {what} ({source}): every key with its value, defaults filled in.\n\
         # Reference of every key: `meal config help` or docs/config.md.\n\n{body}"
    );
    let unset = unset_keys(config);
    if !unset.is_empty() {
        out.push_str("\n# Optional keys left unset:\n");
        for k in unset {
            out.push_str(&format!("#   {k}\n"));
        }
    }
    Ok(out)
}

/// What `meal config show` prints.
pub fn show(a: &ShowArgs) -> Result<String> {
    let (mut table, kind, source) = match (&a.config, &a.recipe, a.kind) {
        (Some(path), _, kind) => {
            let t = crate::config::read_table(path)?;
            let guessed = if t.contains_key("student") || t.contains_key("teachers") {
                ConfigKind::Distill
            } else {
                ConfigKind::Train
            };
            (t, kind.unwrap_or(guessed), path.display().to_string())
        }
        (None, Some(name), kind) => {
            if kind == Some(ConfigKind::Train) {
                return Err(Error::Config(format!(
                    "recipe `{name}` is a distill config; drop --kind train"
                )));
            }
            let mut table = crate::recipes::table(name)?;
            // As `meal distill --recipe` resolves them: what a run would use.
            let all = crate::recipes::FromRecipe {
                teachers: true,
                data: true,
            };
            crate::recipes::resolve_shipped_paths(
                name,
                &mut table,
                crate::recipes::source_root(),
                all,
            )?;
            (table, ConfigKind::Distill, format!("recipe {name}"))
        }
        (None, None, Some(kind)) => (
            skeleton(kind),
            kind,
            "defaults, with example values for the required keys".to_string(),
        ),
        (None, None, None) => {
            return Err(Error::Config(
                "give --config FILE, --recipe NAME or --kind train|distill".into(),
            ));
        }
    };
    for s in &a.sets {
        crate::config::apply_set(&mut table, s)?;
    }
    match kind {
        ConfigKind::Train => {
            let c: TrainConfig = crate::config::from_table(table, "train config")?;
            c.validate()?;
            render(&c, "train config", &source)
        }
        ConfigKind::Distill => {
            let c: DistillConfig = crate::config::from_table(table, "distill config")?;
            c.validate()?;
            let mut out = render(&c, "distill config", &source)?;
            // Shown, not refused: the point of `show` is to see the config before filling it in.
            if let Err(e) = c.check_requires() {
                out.push_str(&format!("\n# A run would refuse it: {e}\n"));
            }
            Ok(out)
        }
    }
}

/// The reference rows of `key` and of the keys under it (table rows of docs/config.md whose
/// first cell is the key), or `None` if the reference has no such key.
pub fn help_for(key: &str) -> Option<String> {
    let key = key.trim().trim_matches('`');
    let mut header = None;
    let mut rows = Vec::new();
    for line in REFERENCE.lines() {
        let Some(first) = line
            .strip_prefix("| `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(k, _)| k)
        else {
            if line.starts_with("| key") {
                header = Some(line);
            }
            continue;
        };
        let under = first == key
            || first
                .strip_prefix(key)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[]"));
        if under && !rows.contains(&line) {
            rows.push(line);
        }
    }
    if rows.is_empty() {
        return None;
    }
    let mut out = String::new();
    if let Some(h) = header {
        out.push_str(h);
        out.push('\n');
    }
    for r in rows {
        out.push_str(r);
        out.push('\n');
    }
    Some(out)
}

pub fn run(a: ConfigArgs) -> Result<()> {
    match a.command {
        ConfigCommand::Show(s) => print!("{}", show(&s)?),
        ConfigCommand::Help { key: None } => print!("{REFERENCE}"),
        ConfigCommand::Help { key: Some(k) } => match help_for(&k) {
            Some(text) => print!("{text}"),
            None => {
                return Err(Error::Config(format!(
                    "no config key `{k}` in the reference; `meal config help` lists them all"
                )));
            }
        },
    }
    Ok(())
}
