//! Recipes shipped with meal: declarative distillation configs in `recipes/*.toml`, embedded
//! in the binary so `meal distill --recipe NAME` works from anywhere. A path in a recipe that
//! names a file shipped in the repository (`data/teachers/...`, `data/cifar10-mini`) is
//! relative to the repository, not to the current folder: [`resolve_shipped_paths`] finds it.

use std::path::Path;

use crate::distill::DistillConfig;
use crate::distill::config::{Required, STUDENT_INIT_NONE};
use crate::error::{Error, Result};

pub struct Recipe {
    pub name: &'static str,
    pub text: &'static str,
}

pub static RECIPES: &[Recipe] = &[
    Recipe {
        name: "meal-v1-single-vgg19",
        text: include_str!("../recipes/meal-v1-single-vgg19.toml"),
    },
    Recipe {
        name: "meal-v1-ensemble-densenet",
        text: include_str!("../recipes/meal-v1-ensemble-densenet.toml"),
    },
    Recipe {
        name: "meal-v2",
        text: include_str!("../recipes/meal-v2.toml"),
    },
    Recipe {
        name: "meal-v1-imagenet",
        text: include_str!("../recipes/meal-v1-imagenet.toml"),
    },
    Recipe {
        name: "meal-v2-resnet50",
        text: include_str!("../recipes/meal-v2-resnet50.toml"),
    },
    Recipe {
        name: "meal-v2-resnet50-380",
        text: include_str!("../recipes/meal-v2-resnet50-380.toml"),
    },
    Recipe {
        name: "meal-v2-mobilenetv3-large",
        text: include_str!("../recipes/meal-v2-mobilenetv3-large.toml"),
    },
    Recipe {
        name: "meal-v2-mobilenetv3-small",
        text: include_str!("../recipes/meal-v2-mobilenetv3-small.toml"),
    },
    Recipe {
        name: "meal-v2-efficientnet-b0",
        text: include_str!("../recipes/meal-v2-efficientnet-b0.toml"),
    },
    Recipe {
        name: "cpu-cifar10-joint",
        text: include_str!("../recipes/cpu-cifar10-joint.toml"),
    },
    Recipe {
        name: "cpu-cifar10-grl",
        text: include_str!("../recipes/cpu-cifar10-grl.toml"),
    },
    Recipe {
        name: "quickstart",
        text: include_str!("../recipes/quickstart.toml"),
    },
    Recipe {
        name: "quickstart-kd",
        text: include_str!("../recipes/quickstart-kd.toml"),
    },
];

/// The first comment line of a recipe: its one-line description.
pub fn summary(recipe: &Recipe) -> &'static str {
    recipe
        .text
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or("")
}

pub fn table(name: &str) -> Result<toml::Table> {
    let recipe = find(name)?;
    recipe
        .text
        .parse::<toml::Table>()
        .map_err(|e| Error::Config(format!("recipe {name} is invalid TOML: {e}")))
}

/// Whether the recipe declares `requires = ["student_init"]`: the method starts from a trained
/// student, so a run must name one (or say `none` on purpose).
pub fn needs_student_init(recipe: &Recipe) -> bool {
    let requires = recipe
        .text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("requires").cloned());
    requires
        .and_then(|r| r.try_into::<Vec<Required>>().ok())
        .is_some_and(|r| r.contains(&Required::StudentInit))
}

/// What `meal recipes` adds under a recipe that needs a trained student.
pub fn student_init_note(recipe: &Recipe) -> Option<String> {
    needs_student_init(recipe).then(|| {
        format!(
            "needs --set student_init=CKPT (a trained student from `meal train`, or \
             pretrained weights from `meal import`), or \
             --set student_init={STUDENT_INIT_NONE} to start from random weights on purpose"
        )
    })
}

/// Refuses a fresh run of recipe `name` that leaves out what the recipe cannot do without.
/// The recipe declares it (`requires`), and the config carries the declaration, so this is
/// [`DistillConfig::check_requires`], which every run applies, whether the TOML came from
/// `--recipe` or `--config`.
pub fn check_requirements(name: &str, config: &DistillConfig) -> Result<()> {
    find(name)?;
    config.check_requires()
}

/// The meal source tree this binary was built from: where the files a recipe ships with
/// (`data/teachers/*.ckpt`, `data/cifar10-mini`) are, whatever the current folder.
pub fn source_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A teacher path in a recipe that names a checkpoint shipped in the repository.
const SHIPPED_TEACHERS: &str = "data/teachers/";
/// The dataset path in a recipe that names the embedded data.
const SHIPPED_DATA: &str = "data/cifar10-mini";

/// Which of a recipe's shipped paths are still the recipe's (not replaced by a flag).
#[derive(Debug, Clone, Copy)]
pub struct FromRecipe {
    pub teachers: bool,
    pub data: bool,
}

/// Resolves the recipe's paths to files shipped in the repository against `root` (the source
/// tree, [`source_root`]) instead of the current folder, which may hold something unrelated
/// under the same name or nothing. Placeholders for the user's own runs (`runs/...`) stay
/// relative to the current folder. A shipped file missing from `root` (the binary was moved
/// away from its source tree) is an error that says which flag replaces it.
pub fn resolve_shipped_paths(
    name: &str,
    table: &mut toml::Table,
    root: &Path,
    from_recipe: FromRecipe,
) -> Result<()> {
    if from_recipe.teachers
        && let Some(toml::Value::Array(list)) = table.get_mut("teachers")
    {
        for t in list.iter_mut() {
            let Some(toml::Value::String(path)) =
                t.as_table_mut().and_then(|t| t.get_mut("checkpoint"))
            else {
                continue;
            };
            if !path.starts_with(SHIPPED_TEACHERS) {
                continue;
            }
            let file = root.join(path.as_str());
            if !file.is_file() {
                return Err(Error::Config(format!(
                    "recipe `{name}`: its default teacher {path} ships in the meal repository, \
                     and {} does not exist (this meal was built from a source tree that is not \
                     there any more); pass the teachers: --teacher RUN_OR_CKPT ... (run folders \
                     of `meal train`, or the .ckpt files of a meal checkout's data/teachers/)",
                    file.display()
                )));
            }
            *path = file.display().to_string();
        }
    }
    if from_recipe.data
        && let Some(toml::Value::Table(data)) = table.get_mut("data")
        && let Some(toml::Value::String(path)) = data.get_mut("path")
        && path == SHIPPED_DATA
    {
        let dir = root.join(SHIPPED_DATA);
        if !dir.is_dir() {
            return Err(Error::Config(format!(
                "recipe `{name}`: its dataset {SHIPPED_DATA} ships in the meal repository, and \
                 {} does not exist (this meal was built from a source tree that is not there \
                 any more); pass --data DIR",
                dir.display()
            )));
        }
        *path = dir.display().to_string();
    }
    Ok(())
}

fn find(name: &str) -> Result<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name).ok_or_else(|| {
        Error::Config(format!(
            "unknown recipe `{name}`; known: {}",
            RECIPES
                .iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recipe_parses_and_validates() {
        for r in RECIPES {
            let t = table(r.name).unwrap();
            let c: crate::distill::DistillConfig =
                crate::config::from_table(t, r.name).unwrap_or_else(|e| panic!("{}: {e}", r.name));
            c.validate().unwrap_or_else(|e| panic!("{}: {e}", r.name));
            assert!(!summary(r).is_empty(), "{} has no summary line", r.name);
        }
        assert!(table("nope").unwrap_err().to_string().contains("meal-v2"));
    }

    fn v2(sets: &[&str]) -> DistillConfig {
        let mut t = table("meal-v2").unwrap();
        for s in sets {
            crate::config::apply_set(&mut t, s).unwrap();
        }
        crate::config::from_table(t, "meal-v2").unwrap()
    }

    #[test]
    fn meal_v2_needs_a_student_init_or_an_explicit_none() {
        let err = check_requirements("meal-v2", &v2(&[]))
            .unwrap_err()
            .to_string();
        for part in [
            "student_init",
            "meal train --arch resnet18_cifar",
            "--set student_init=none",
        ] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
        check_requirements("meal-v2", &v2(&["student_init=runs/s/best.ckpt"])).unwrap();
        let none = v2(&["student_init=none"]);
        check_requirements("meal-v2", &none).unwrap();
        assert_eq!(none.student_init_path(), None);
        // V1 recipes start from random weights, as the reference does.
        let t = table("meal-v1-single-vgg19").unwrap();
        let c: DistillConfig = crate::config::from_table(t, "v1").unwrap();
        check_requirements("meal-v1-single-vgg19", &c).unwrap();
        // Every MEAL V2 recipe fine-tunes a trained student; no V1 recipe does.
        for r in RECIPES {
            assert_eq!(
                student_init_note(r).is_some(),
                r.name.starts_with("meal-v2"),
                "{}",
                r.name
            );
        }
        assert!(needs_student_init(find("meal-v2-resnet50").unwrap()));
    }

    fn teachers(t: &toml::Table) -> Vec<String> {
        t["teachers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["checkpoint"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn shipped_paths_resolve_in_the_source_tree_or_say_what_to_pass() {
        let all = FromRecipe {
            teachers: true,
            data: true,
        };
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path();
        // A tree without the files: the error names the file and the flag that replaces it.
        let mut t = table("quickstart").unwrap();
        let err = resolve_shipped_paths("quickstart", &mut t, root, all)
            .unwrap_err()
            .to_string();
        for part in [
            "recipe `quickstart`",
            "data/teachers/resnet20.ckpt",
            &root
                .join("data/teachers/resnet20.ckpt")
                .display()
                .to_string(),
            "--teacher RUN_OR_CKPT",
        ] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
        // Teachers replaced by --teacher: only the data is looked for, and its error names
        // --data.
        let mut t = table("quickstart").unwrap();
        let data_only = FromRecipe {
            teachers: false,
            data: true,
        };
        let err = resolve_shipped_paths("quickstart", &mut t, root, data_only)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data/cifar10-mini") && err.contains("--data DIR"),
            "{err}"
        );
        // With the files there, the paths are the tree's.
        let dir = root.join("data/teachers");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(root.join("data/cifar10-mini")).unwrap();
        for f in ["resnet20.ckpt", "resnet9_w24.ckpt"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let mut t = table("quickstart").unwrap();
        resolve_shipped_paths("quickstart", &mut t, root, all).unwrap();
        assert_eq!(
            teachers(&t),
            [
                dir.join("resnet20.ckpt").display().to_string(),
                dir.join("resnet9_w24.ckpt").display().to_string()
            ]
        );
        assert_eq!(
            t["data"]["path"].as_str().unwrap(),
            root.join("data/cifar10-mini").display().to_string()
        );
        // Nothing replaced by a flag is touched.
        let mut t = table("quickstart").unwrap();
        let none = FromRecipe {
            teachers: false,
            data: false,
        };
        resolve_shipped_paths("quickstart", &mut t, root, none).unwrap();
        assert_eq!(t, table("quickstart").unwrap());
        // Placeholders for the user's own runs (and data) stay relative to the current folder.
        let mut t = table("meal-v2").unwrap();
        resolve_shipped_paths("meal-v2", &mut t, root, all).unwrap();
        assert_eq!(t, table("meal-v2").unwrap());
    }
}
