//! Recipes shipped with meal: declarative distillation configs in `recipes/*.toml`, embedded
//! in the binary so `meal distill --recipe NAME` works from anywhere.

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
    let recipe = RECIPES.iter().find(|r| r.name == name).ok_or_else(|| {
        Error::Config(format!(
            "unknown recipe `{name}`; known: {}",
            RECIPES
                .iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    recipe
        .text
        .parse::<toml::Table>()
        .map_err(|e| Error::Config(format!("recipe {name} is invalid TOML: {e}")))
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
}
