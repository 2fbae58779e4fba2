//! Recipes shipped with meal: declarative distillation configs in `recipes/*.toml`, embedded
//! in the binary so `meal distill --recipe NAME` works from anywhere.

use crate::distill::DistillConfig;
use crate::distill::config::STUDENT_INIT_NONE;
use crate::error::{Error, Result};

pub struct Recipe {
    pub name: &'static str,
    pub text: &'static str,
    /// The method starts from a trained student, so a run must name one in `student_init`
    /// (or say `none` on purpose).
    pub needs_student_init: bool,
}

pub static RECIPES: &[Recipe] = &[
    Recipe {
        name: "meal-v1-single-vgg19",
        text: include_str!("../recipes/meal-v1-single-vgg19.toml"),
        needs_student_init: false,
    },
    Recipe {
        name: "meal-v1-ensemble-densenet",
        text: include_str!("../recipes/meal-v1-ensemble-densenet.toml"),
        needs_student_init: false,
    },
    Recipe {
        name: "meal-v2",
        text: include_str!("../recipes/meal-v2.toml"),
        needs_student_init: true,
    },
    Recipe {
        name: "cpu-cifar10-joint",
        text: include_str!("../recipes/cpu-cifar10-joint.toml"),
        needs_student_init: false,
    },
    Recipe {
        name: "cpu-cifar10-grl",
        text: include_str!("../recipes/cpu-cifar10-grl.toml"),
        needs_student_init: false,
    },
    Recipe {
        name: "quickstart",
        text: include_str!("../recipes/quickstart.toml"),
        needs_student_init: false,
    },
    Recipe {
        name: "quickstart-kd",
        text: include_str!("../recipes/quickstart-kd.toml"),
        needs_student_init: false,
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

/// What `meal recipes` adds under a recipe that needs a trained student.
pub fn student_init_note(recipe: &Recipe) -> Option<String> {
    recipe.needs_student_init.then(|| {
        format!(
            "needs --set student_init=CKPT (a trained student from `meal train`), or \
             --set student_init={STUDENT_INIT_NONE} to start from random weights on purpose"
        )
    })
}

/// Refuses a fresh run of recipe `name` that leaves out what the recipe cannot do without:
/// MEAL V2 fine-tunes a trained student (from random weights it ends about 1% lower, spec §5),
/// so silently starting from scratch would not be the method.
pub fn check_requirements(name: &str, config: &DistillConfig) -> Result<()> {
    let recipe = find(name)?;
    if recipe.needs_student_init && config.student_init.is_none() {
        return Err(Error::Config(format!(
            "student_init: recipe `{name}` starts from a trained student and none is set. \
             Train one first, e.g. `meal train --arch {arch} --data {data} --run-dir \
             runs/student-{arch}`, then add `--set student_init=runs/student-{arch}` (a run \
             folder or a .ckpt); or add `--set student_init={STUDENT_INIT_NONE}` to start from \
             random weights on purpose",
            arch = config.student,
            data = config.data.path.display(),
        )));
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
            "meal train --arch resnet18",
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
        let notes: Vec<_> = RECIPES.iter().filter_map(student_init_note).collect();
        assert_eq!(notes.len(), 1);
    }
}
