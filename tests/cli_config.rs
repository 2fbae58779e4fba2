//! `meal config show` / `meal config help` and docs/config.md: the resolved config round-trips,
//! unknown keys are refused naming the key and the allowed ones, and every key of every config
//! struct is documented (and every documented key exists), so the reference cannot drift.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use meal::distill::DistillConfig;
use meal::train::TrainConfig;
use meal::train::schedule::ScheduleConfig;

fn meal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meal"))
        .args(args)
        .output()
        .expect("runs meal")
}

fn ok(args: &[&str]) -> String {
    let o = meal(args);
    assert!(
        o.status.success(),
        "meal {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let o = meal(args);
    assert!(!o.status.success(), "meal {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn doc() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md")).unwrap()
}

#[test]
fn show_recipe_resolves_every_default() {
    let out = ok(&["config", "show", "--recipe", "meal-v2"]);
    assert!(out.contains("combine = \"mean-softmax\""), "{out}");
    // Defaults the recipe does not write are filled in.
    for line in [
        "temperature = 1.0",
        "alpha = 0.0",
        "pool = \"avg\"",
        "eval_batch_size = 100",
        "num_workers = 2",
        "format = \"auto\"",
        "weight = 1.0",
    ] {
        assert!(out.contains(line), "missing `{line}`:\n{out}");
    }
    assert!(
        out.contains("#   student_init"),
        "unset keys are listed:\n{out}"
    );
    // What it prints is a config that resolves to the same thing.
    let printed: DistillConfig = toml::from_str(&out).unwrap();
    let recipe: DistillConfig =
        meal::config::from_table(meal::recipes::table("meal-v2").unwrap(), "recipe").unwrap();
    assert_eq!(printed, recipe);

    // --set applies, and is checked.
    let out = ok(&[
        "config",
        "show",
        "--recipe",
        "meal-v2",
        "--set",
        "meal.adversarial=grl",
        "--set",
        "epochs=3",
    ]);
    assert!(out.contains("adversarial = \"grl\"") && out.contains("epochs = 3"));
    let err = fails(&["config", "show", "--recipe", "meal-v2", "--set", "epochs=0"]);
    assert!(err.contains("epochs"), "{err}");
}

#[test]
fn show_kind_and_file() {
    let out = ok(&["config", "show", "--kind", "train"]);
    let c: TrainConfig = toml::from_str(&out).unwrap();
    assert_eq!(c.epochs, 200);
    assert_eq!(c.batch_size, 128);
    assert!(out.contains("kind = \"multistep\"") && out.contains("milestones = [150, 250]"));

    let out = ok(&["config", "show", "--kind", "distill"]);
    let c: DistillConfig = toml::from_str(&out).unwrap();
    assert_eq!(c.meal.d_lr, 1e-3);

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("t.toml");
    std::fs::write(
        &file,
        "arch = \"vgg8\"\nschedule = { kind = \"cosine\" }\n[data]\npath = \"x\"\n",
    )
    .unwrap();
    let out = ok(&[
        "config",
        "show",
        "--config",
        file.to_str().unwrap(),
        "--set",
        "lr=0.05",
    ]);
    let c: TrainConfig = toml::from_str(&out).unwrap();
    assert_eq!(c.arch, "vgg8");
    assert_eq!(c.lr, 0.05);
    assert_eq!(
        c.schedule,
        ScheduleConfig::Cosine {
            min_lr: 0.0,
            warmup_epochs: 0
        }
    );
    // One source is required.
    fails(&["config", "show"]);
}

#[test]
fn unknown_keys_are_named_with_the_allowed_ones() {
    let err = fails(&["config", "show", "--kind", "train", "--set", "lrr=1"]);
    assert!(err.contains("`lrr`"), "{err}");
    for allowed in ["`lr`", "`epochs`", "`batch_size`", "`schedule`"] {
        assert!(err.contains(allowed), "{err}");
    }
    let err = fails(&[
        "config",
        "show",
        "--recipe",
        "quickstart",
        "--set",
        "meal.combin=random",
    ]);
    assert!(err.contains("`combin`"), "{err}");
    for allowed in ["`combine`", "`teacher_bn`", "`similarity`", "`d_lr`"] {
        assert!(err.contains(allowed), "{err}");
    }
    let err = fails(&[
        "config",
        "show",
        "--kind",
        "distill",
        "--set",
        "optimizer.momentun=0.5",
    ]);
    assert!(
        err.contains("`momentun`") && err.contains("`momentum`"),
        "{err}"
    );
}

#[test]
fn help_prints_the_reference() {
    let all = ok(&["config", "help"]);
    assert_eq!(all, doc());
    let one = ok(&["config", "help", "meal.combine"]);
    assert!(
        one.contains("`meal.combine`") && one.contains("mean-softmax"),
        "{one}"
    );
    assert!(!one.contains("`meal.teacher_bn`"), "{one}");
    let section = ok(&["config", "help", "schedule"]);
    for k in ["schedule.kind", "schedule.milestones", "schedule.intervals"] {
        assert!(section.contains(k), "{section}");
    }
    let err = fails(&["config", "help", "meal.nope"]);
    assert!(err.contains("meal.nope"), "{err}");
    let long = ok(&["config", "--help"]);
    assert!(long.contains("config help"), "{long}");
}

/// Every key path of `value` (`a.b`, array elements as `a[].b`), tables included.
fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                key_paths(v, &p, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items.iter().filter(|i| i.is_object()) {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn all_config_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let train: TrainConfig = meal::config::from_table(
        "arch = \"resnet20\"\n[data]\npath = \"d\"\n"
            .parse()
            .unwrap(),
        "train",
    )
    .unwrap();
    key_paths(&serde_json::to_value(&train).unwrap(), "", &mut keys);
    for r in meal::recipes::RECIPES {
        let c: DistillConfig =
            meal::config::from_table(meal::recipes::table(r.name).unwrap(), r.name).unwrap();
        key_paths(&serde_json::to_value(&c).unwrap(), "", &mut keys);
    }
    // Every kind of schedule, each with its own keys.
    for s in [
        ScheduleConfig::default(),
        ScheduleConfig::Cosine {
            min_lr: 0.0,
            warmup_epochs: 0,
        },
        ScheduleConfig::Regime {
            intervals: vec![(0, 1, 0.1)],
        },
        ScheduleConfig::Constant { warmup_epochs: 0 },
    ] {
        key_paths(&serde_json::to_value(&s).unwrap(), "schedule", &mut keys);
    }
    // Serialisation skips fields marked `skip_serializing_if`; serde's unknown-field error
    // lists every field of a struct, so probe each section with a key that does not exist.
    let train_base: toml::Table =
        "arch = \"resnet20\"\n[data]\npath = \"d\"\n[optimizer]\nmomentum = 0.9\n"
            .parse()
            .unwrap();
    let distill_base = meal::recipes::table("quickstart").unwrap();
    for (base, section) in [
        (&train_base, ""),
        (&train_base, "data"),
        (&train_base, "optimizer"),
        (&distill_base, ""),
        (&distill_base, "meal"),
        (&distill_base, "meal.stages[]"),
        (&distill_base, "teachers[]"),
    ] {
        for field in probe_fields(base, section, |t| {
            if base.contains_key("student") {
                meal::config::from_table::<DistillConfig>(t, "distill").map(drop)
            } else {
                meal::config::from_table::<TrainConfig>(t, "train").map(drop)
            }
        }) {
            keys.insert(if section.is_empty() {
                field
            } else {
                format!("{section}.{field}")
            });
        }
    }
    for kind in ["multistep", "cosine", "regime", "constant"] {
        let mut t = train_base.clone();
        let mut schedule = toml::Table::new();
        schedule.insert("kind".into(), kind.into());
        t.insert("schedule".into(), schedule.into());
        for field in probe_fields(&t, "schedule", |t| {
            meal::config::from_table::<TrainConfig>(t, "train").map(drop)
        }) {
            keys.insert(format!("schedule.{field}"));
        }
    }
    keys
}

/// The field names serde expects in `section` of `base` (`a.b`, `a[]` = its first element),
/// read off the error for an unknown key put there.
fn probe_fields(
    base: &toml::Table,
    section: &str,
    parse: impl Fn(toml::Table) -> meal::Result<()>,
) -> Vec<String> {
    let mut table = base.clone();
    let mut here = &mut table;
    for part in section.split('.').filter(|p| !p.is_empty()) {
        let (name, first) = match part.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (part, false),
        };
        let v = here
            .get_mut(name)
            .unwrap_or_else(|| panic!("no `{name}` in base"));
        here = if first {
            v.as_array_mut().unwrap()[0].as_table_mut().unwrap()
        } else {
            v.as_table_mut().unwrap()
        };
    }
    here.insert("zz_probe".into(), 1.into());
    let err = parse(table).expect_err("unknown key accepted").to_string();
    let err = err.split(" (at ").next().unwrap();
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("no field list in: {err}"))
        .1;
    let fields: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(!fields.is_empty(), "no field list in: {err}");
    fields
}

/// The key in the first cell of every reference table row.
fn documented_keys(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let keys = all_config_keys();
    // The walk really reaches every struct.
    for k in [
        "name",
        "arch",
        "student",
        "student_init",
        "teachers",
        "teachers[].checkpoint",
        "teachers[].weight",
        "data.cifar100_labels",
        "optimizer.nesterov",
        "schedule.kind",
        "schedule.reference_step_first",
        "schedule.min_lr",
        "schedule.intervals",
        "meal.d_lr_follows_schedule",
        "meal.stages[].out_dim",
        "meal.stages[].eta",
    ] {
        assert!(keys.contains(k), "key walk misses {k}: {keys:?}");
    }
    let doc = doc();
    let documented = documented_keys(&doc);
    let missing: Vec<&String> = keys.iter().filter(|k| !documented.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "docs/config.md has no table row for: {missing:?}"
    );
    let stale: Vec<&String> = documented.iter().filter(|k| !keys.contains(*k)).collect();
    assert!(
        stale.is_empty(),
        "docs/config.md documents keys that do not exist: {stale:?}"
    );
    // Every row says type, default, allowed values and meaning (five non-empty-ish cells).
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        assert_eq!(cells.len(), 5, "row does not have 5 cells: {line}");
        assert!(
            !cells[1].trim().is_empty() && !cells[2].trim().is_empty(),
            "type/default empty: {line}"
        );
        assert!(cells[4].trim().len() > 10, "meaning missing: {line}");
    }
}

#[test]
fn show_notes_what_a_run_of_the_config_still_needs() {
    let out = ok(&["config", "show", "--recipe", "meal-v2"]);
    assert!(out.contains("requires = [\"student_init\"]"), "{out}");
    assert!(
        out.contains("# A run would refuse it: ")
            && out.contains("student_init: this config")
            && out.contains("--set student_init=none"),
        "{out}"
    );
    let out = ok(&[
        "config",
        "show",
        "--recipe",
        "meal-v2",
        "--set",
        "student_init=none",
    ]);
    assert!(!out.contains("A run would refuse"), "{out}");
}

#[test]
fn show_recipe_quickstart_names_the_shipped_files_from_any_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_meal"))
        .current_dir(dir.path())
        .args(["config", "show", "--recipe", "quickstart"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let c: DistillConfig = toml::from_str(&out).unwrap();
    let teachers: Vec<_> = c.teachers.iter().map(|t| t.checkpoint.clone()).collect();
    assert_eq!(
        teachers,
        [
            Some(root.join("data/teachers/resnet20.ckpt")),
            Some(root.join("data/teachers/resnet9_w24.ckpt"))
        ]
    );
    assert_eq!(c.data.path, root.join("data/cifar10-mini"));
}
