//! `meal distill --help` alone tells a user which values exist: every adversarial mode, every
//! combine rule and every shipped recipe (names taken from the code, so a new one that the
//! help forgets fails here), and where the full key list is.

use std::process::Command;

use meal::distill::config::{AdversarialMode, Combine, config_name};

fn distill_help(flag: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meal"))
        .args(["distill", flag])
        .output()
        .expect("runs meal");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The names the help lists must be the ones a config accepts.
#[test]
fn config_names_are_what_configs_accept() {
    fn round_trips<
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    >(
        all: &[T],
    ) {
        for v in all {
            let name = config_name(v);
            let back: T = serde_json::from_value(serde_json::Value::String(name.clone())).unwrap();
            assert_eq!(&back, v, "{name}");
        }
    }
    round_trips(&AdversarialMode::ALL);
    round_trips(&Combine::ALL);
    let names: Vec<String> = AdversarialMode::ALL.iter().map(config_name).collect();
    assert_eq!(names, ["joint", "grl", "alternating", "none"]);
}

#[test]
fn distill_help_names_modes_rules_recipes_and_the_key_reference() {
    for flag in ["--help", "-h"] {
        let help = distill_help(flag);
        let modes: Vec<String> = AdversarialMode::ALL.iter().map(config_name).collect();
        let rules: Vec<String> = Combine::ALL.iter().map(config_name).collect();
        assert!(
            help.contains(&format!("meal.adversarial={}", modes.join(" | "))),
            "{flag}: modes missing:\n{help}"
        );
        assert!(
            help.contains(&format!("meal.combine={}", rules.join(" | "))),
            "{flag}: combine rules missing:\n{help}"
        );
        for r in meal::recipes::RECIPES {
            assert!(
                help.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{} ", r.name))),
                "{flag}: recipe {} missing:\n{help}",
                r.name
            );
        }
        for needle in ["meal config help", "docs/config.md"] {
            assert!(help.contains(needle), "{flag}: `{needle}` missing:\n{help}");
        }
    }
}

#[test]
fn distill_help_marks_a_config_source_as_required() {
    let help = distill_help("--help");
    let usage = help
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_else(|| panic!("no usage line:\n{help}"));
    assert!(
        usage.contains("<--config <CONFIG>|--recipe <RECIPE>|--resume <RUN_DIR>>"),
        "the usage does not show the required choice: {usage}"
    );
    assert!(help.contains("--resume"), "{help}");
}
