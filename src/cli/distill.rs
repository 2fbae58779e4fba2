use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::run_flags::RunFlags;
use crate::distill::config::{AdversarialMode, Combine, config_name};
use crate::distill::{DistillConfig, distill};
use crate::error::{Error, Result};

/// What `--help` adds below the flags: the values the main switches take and the shipped
/// recipes, generated from the code so that the list cannot go stale.
pub fn after_help() -> String {
    fn names<T: serde::Serialize>(all: &[T]) -> String {
        all.iter().map(config_name).collect::<Vec<_>>().join(" | ")
    }
    let recipes = crate::recipes::RECIPES
        .iter()
        .map(|r| format!("  {:<28} {}", r.name, crate::recipes::summary(r)))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "Main switches (with --set):\n  \
         meal.adversarial={}\n  \
         meal.combine={}\n\n\
         Shipped recipes (--recipe NAME):\n{recipes}\n\n\
         Every config key, with its type, default, allowed values and meaning: `meal config help` \
         (or `meal config help meal` for the MEAL keys; the same text is docs/config.md). \
         `meal config show --recipe NAME --set ...` prints the config a run would use.\n\n\
         Example: meal distill --recipe quickstart --teacher runs/t1 runs/t2 --data data/cifar10-mini \
         --set meal.adversarial=grl",
        names(&AdversarialMode::ALL),
        names(&Combine::ALL),
    )
}

#[derive(Debug, Args)]
#[command(after_help = after_help())]
// Where the config comes from, exactly one: a file or a recipe for a fresh run, or the run
// folder being resumed (which holds its own). The usage line shows the three.
#[command(group(
    ArgGroup::new("source")
        .args(["config", "recipe", "resume"])
        .required(true)
        .multiple(false)
))]
pub struct DistillArgs {
    /// TOML config file (this, --recipe or --resume).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A shipped recipe (listed below; `meal recipes` describes each).
    #[arg(long)]
    pub recipe: Option<String>,
    /// Teacher checkpoints or run folders (replaces the config's [[teachers]]).
    #[arg(long, num_args = 1..)]
    pub teacher: Vec<PathBuf>,
    /// Train from this `meal cache-teachers` store instead of running teachers (needs
    /// meal.teacher_bn=eval and the logits stage only); without --teacher, the store's
    /// teachers replace the config's.
    #[arg(long, value_name = "FILE")]
    pub soft_labels: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunFlags,
}

/// The config table a `distill` invocation asks for (file or recipe, then flags and --set).
pub(crate) fn resolve(a: &DistillArgs) -> Result<(DistillConfig, toml::Table)> {
    let mut table = match (&a.config, &a.recipe) {
        (Some(path), _) => crate::config::read_table(path)?,
        (None, Some(name)) => {
            let mut table = crate::recipes::table(name)?;
            // The recipe's shipped teachers and data are the repository's, not whatever the
            // current folder holds under the same names; flags that replace them skip this.
            let from_recipe = crate::recipes::FromRecipe {
                teachers: a.teacher.is_empty() && a.soft_labels.is_none(),
                data: a.run.data.is_none(),
            };
            crate::recipes::resolve_shipped_paths(
                name,
                &mut table,
                crate::recipes::source_root(),
                from_recipe,
            )?;
            table
        }
        (None, None) => {
            return Err(Error::Config(
                "give --config FILE or --recipe NAME (see `meal recipes`)".into(),
            ));
        }
    };
    if !a.teacher.is_empty() {
        let list = a
            .teacher
            .iter()
            .map(|p| {
                let mut t = toml::Table::new();
                t.insert("checkpoint".into(), p.display().to_string().into());
                toml::Value::Table(t)
            })
            .collect();
        table.insert("teachers".into(), toml::Value::Array(list));
    } else if a.soft_labels.is_some() {
        // A recipe's placeholder teachers would be checked against the store; it names its own.
        table.remove("teachers");
    }
    super::flag(
        &mut table,
        "soft_labels",
        a.soft_labels.as_ref().map(|p| p.display().to_string()),
    );
    a.run.apply(&mut table);
    for s in &a.run.sets {
        crate::config::apply_set(&mut table, s)?;
    }
    let config = crate::config::from_table(table.clone(), "distill config")?;
    if let Some(name) = &a.recipe {
        crate::recipes::check_requirements(name, &config)?;
    }
    Ok((config, table))
}

pub fn run(a: DistillArgs) -> Result<()> {
    let refused = [
        (a.config.is_some(), "--config"),
        (a.recipe.is_some(), "--recipe"),
        (!a.teacher.is_empty(), "--teacher"),
        (a.soft_labels.is_some(), "--soft-labels"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag));
    let start = a.run.start(refused, || resolve(&a))?;
    let out = distill(start)?;
    println!(
        "finished {} epochs in {:.0}s: student test top-1 {:.2}% (best {:.2}%); teachers' ensemble {:.2}%; run folder {}",
        out.epochs_done,
        out.seconds,
        out.last.top1,
        out.best_acc,
        out.teachers.ensemble.top1,
        out.run_dir.display()
    );
    Ok(())
}
