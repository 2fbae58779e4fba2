//! Shared helpers of the checkpoint / resume / bad-input integration tests: tiny configs on the
//! embedded `data/cifar10-mini`, and a decoder that turns a checkpoint into a canonical map of
//! named byte strings so that two runs can be compared bit-for-bit.
//!
//! Checkpoint files themselves are not comparable byte-for-byte: burn tags every parameter (and
//! optimizer state tensor) with a random `ParamId` drawn when the model is built, so two runs of
//! the same config write different ids. The canonical form keys everything by module path
//! instead: model tensors by their path, optimizer tensors and scalars by `<param path>.<field>`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::store::burn_pack::Reader;
use burn::tensor::Bytes;
use meal::train::checkpoint::Container;

/// Runs `meal --quiet ARGS` in this process, as the command line would.
pub fn cli(args: &[&str]) -> meal::Result<()> {
    use clap::Parser;
    let argv = ["meal", "--quiet"].iter().chain(args).copied();
    let parsed = meal::cli::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    meal::cli::run(parsed)
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `data/cifar10-mini` in the repository.
pub fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini")
}

/// The test split of the tiny runs' data ([`train_table`]'s subsets) as one eval batch of 100.
pub fn mini_test_loader() -> meal::data::Loader {
    let data = meal::data::open(&meal::data::DataConfig {
        test_subset: Some(100),
        train_subset: Some(256),
        ..meal::data::DataConfig::new(mini())
    })
    .unwrap();
    meal::data::Loader::new(data.test, meal::data::LoaderConfig::eval(100))
}

/// A tiny `meal train` config table: 256 training / 100 test images, batch 64, one worker, on
/// the device `MEAL_TEST_DEVICE` names (flex when unset).
pub fn train_table(arch: &str, run_dir: &Path, epochs: usize, seed: u64) -> toml::Table {
    let text = format!(
        r#"
arch = "{arch}"
epochs = {epochs}
batch_size = 64
eval_batch_size = 100
lr = 0.05
seed = {seed}
num_workers = 1
run_dir = {run_dir:?}
device = "{device}"
# The lr halves after epoch 1, so a resumed run must pick the schedule up at the right epoch.
schedule = {{ kind = "multistep", milestones = [1], gamma = 0.5 }}

[data]
path = {data:?}
train_subset = 256
test_subset = 100
"#,
        run_dir = run_dir.display().to_string(),
        data = mini().display().to_string(),
        device = meal::selftest::test_device_name(),
    );
    text.parse().expect("valid TOML")
}

/// A `meal train` table on an ImageNet-layout folder (the sample of
/// `scripts/data/make_imagenet_sample.py`): resnet8 at 32 pixels, `epochs` epochs into `run`.
pub fn photo_train_table(data: &Path, run: &Path, epochs: usize, extra_data: &str) -> toml::Table {
    format!(
        r#"
arch = "resnet8"
epochs = {epochs}
batch_size = 6
eval_batch_size = 6
lr = 0.05
seed = 3
num_workers = 2
run_dir = {run:?}
device = "{device}"

[data]
path = {data:?}
image_size = 32
{extra_data}
"#,
        run = s(run),
        data = s(data),
        device = meal::selftest::test_device_name(),
    )
    .parse()
    .unwrap()
}

/// Trains a fresh run from `table` (quietly).
pub fn train_fresh(table: toml::Table) -> meal::Result<meal::train::TrainOutcome> {
    meal::progress::set_quiet(true);
    let config: meal::train::TrainConfig = meal::config::from_table(table.clone(), "train config")?;
    meal::train::train(meal::train::Start::Fresh {
        config: Box::new(config),
        table,
    })
}

/// Resumes the run in `run_dir` with `--set` overrides (quietly).
pub fn train_resume(run_dir: &Path, sets: &[&str]) -> meal::Result<meal::train::TrainOutcome> {
    meal::progress::set_quiet(true);
    meal::train::train(meal::train::Start::Resume {
        run_dir: run_dir.to_path_buf(),
        sets: sets.iter().map(|s| s.to_string()).collect(),
    })
}

/// A scratch folder under cargo's per-target temp dir, emptied first. For state shared by the
/// tests of one binary (a `TempDir` in a `static` would never be deleted).
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// A tiny `meal distill` config table on the same data as [`train_table`]; `meal` is the body
/// of the `[meal]` table.
pub fn distill_table(
    student: &str,
    teachers: &[&Path],
    run_dir: &Path,
    epochs: usize,
    meal: &str,
) -> toml::Table {
    let teachers: Vec<String> = teachers
        .iter()
        .map(|t| format!("{{ checkpoint = {:?} }}", t.display().to_string()))
        .collect();
    let text = format!(
        r#"
student = "{student}"
teachers = [{teachers}]
epochs = {epochs}
batch_size = 64
eval_batch_size = 100
lr = 0.05
seed = 11
num_workers = 1
run_dir = {run_dir:?}
device = "{device}"
schedule = {{ kind = "multistep", milestones = [1], gamma = 0.5 }}

[data]
path = {data:?}
train_subset = 256
test_subset = 100

[meal]
{meal}
"#,
        teachers = teachers.join(", "),
        run_dir = run_dir.display().to_string(),
        data = mini().display().to_string(),
        device = meal::selftest::test_device_name(),
    );
    text.parse().expect("valid TOML")
}

/// Distils a fresh run from `table` (quietly).
pub fn distill_fresh(table: toml::Table) -> meal::Result<meal::distill::DistillOutcome> {
    meal::progress::set_quiet(true);
    let config: meal::distill::DistillConfig =
        meal::config::from_table(table.clone(), "distill config")?;
    meal::distill::distill(meal::distill::DistillStart::Fresh {
        config: Box::new(config),
        table,
    })
}

/// Resumes the distillation run in `run_dir` with `--set` overrides (quietly).
pub fn distill_resume(
    run_dir: &Path,
    sets: &[&str],
) -> meal::Result<meal::distill::DistillOutcome> {
    meal::progress::set_quiet(true);
    meal::distill::distill(meal::distill::DistillStart::Resume {
        run_dir: run_dir.to_path_buf(),
        sets: sets.iter().map(|s| s.to_string()).collect(),
    })
}

/// One decoded burnpack section: tensors (name → dtype/shape/bytes with param id), scalars and
/// string metadata.
pub struct Pack {
    pub tensors: BTreeMap<String, (Option<u64>, Vec<u8>)>,
    pub scalars: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, String>,
}

pub fn decode_pack(bytes: &[u8], what: &str) -> Pack {
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .unwrap_or_else(|e| panic!("{what}: not a burnpack: {e}"));
    let scalars = reader
        .scalars()
        .iter()
        .map(|(k, v)| (k.clone(), format!("{v:?}")))
        .collect();
    let metadata = reader.metadata().clone();
    let mut tensors = BTreeMap::new();
    for t in reader
        .into_tensors()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
    {
        let (name, dtype, shape, id, data) = t
            .into_parts()
            .unwrap_or_else(|e| panic!("{what}: tensor: {e}"));
        // dtype and shape are part of the value: a reshaped or recast tensor must not compare equal.
        let mut value = format!("{dtype:?}{shape:?}|").into_bytes();
        value.extend_from_slice(&data);
        tensors.insert(name, (id, value));
    }
    Pack {
        tensors,
        scalars,
        metadata,
    }
}

/// Sections of a checkpoint that are burnpack module records (keyed by module path).
const MODULE_SECTIONS: &[&str] = &["model", "discriminators"];
/// Sections that are burnpack optimizer records (keyed by param id).
const OPTIM_SECTIONS: &[&str] = &["optim", "optim_discriminators"];

/// The whole training state held by a checkpoint, keyed by stable names:
/// `model/<path>`, `optim/<param path>.<field>`, `state` (the JSON counters), and so on.
/// Panics if an optimizer entry refers to a parameter id that no module section holds (that
/// would make the comparison meaningless).
pub fn canonical_state(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = Container::load(path).unwrap_or_else(|e| panic!("{e}"));
    let mut out = BTreeMap::new();
    let mut id_to_path: BTreeMap<u64, String> = BTreeMap::new();
    for &section in MODULE_SECTIONS {
        let Some(bytes) = c.sections.get(section) else {
            continue;
        };
        let pack = decode_pack(bytes, section);
        assert!(!pack.tensors.is_empty(), "{section} holds no tensors");
        for (name, (id, value)) in pack.tensors {
            if let Some(id) = id {
                id_to_path.insert(id, format!("{section}/{name}"));
            }
            out.insert(format!("{section}/{name}"), value);
        }
    }
    let rename = |key: &str, section: &str| -> String {
        let (id, rest) = key.split_once('.').unwrap_or((key, ""));
        let id: u64 = id
            .parse()
            .unwrap_or_else(|_| panic!("{section}: key `{key}` does not start with a param id"));
        let p = id_to_path.get(&id).unwrap_or_else(|| {
            panic!("{section}: param id {id} (`{key}`) is in no module section")
        });
        format!("{section}/{p}.{rest}")
    };
    for &section in OPTIM_SECTIONS {
        let Some(bytes) = c.sections.get(section) else {
            continue;
        };
        let pack = decode_pack(bytes, section);
        for (name, (_, value)) in pack.tensors {
            out.insert(rename(&name, section), value);
        }
        // Scalars (a parameter's rank, ...) and the recorded parameter paths live apart from
        // the state tensors, so that `optim/` prefixes only the tensors.
        for (name, value) in pack.scalars {
            out.insert(
                format!("{}#scalar", rename(&name, section)),
                value.into_bytes(),
            );
        }
        for (name, value) in pack.metadata {
            out.insert(
                format!("{}#path", rename(&name, section)),
                value.into_bytes(),
            );
        }
    }
    for (name, bytes) in &c.sections {
        if !MODULE_SECTIONS.contains(&name.as_str()) && !OPTIM_SECTIONS.contains(&name.as_str()) {
            out.insert(name.clone(), bytes.clone());
        }
    }
    out
}

/// Asserts that two canonical states are identical, listing what differs.
pub fn assert_same_state(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>, what: &str) {
    let keys_a: Vec<_> = a.keys().collect();
    let keys_b: Vec<_> = b.keys().collect();
    assert_eq!(
        keys_a, keys_b,
        "{what}: the checkpoints hold different entries"
    );
    let differing: Vec<_> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    assert!(
        differing.is_empty(),
        "{what}: {} of {} entries differ, e.g. {:?}",
        differing.len(),
        a.len(),
        &differing[..differing.len().min(8)]
    );
}

/// How many tensor entries with `prefix` two canonical states hold, and how many of them differ.
pub fn count_differences(
    a: &BTreeMap<String, Vec<u8>>,
    b: &BTreeMap<String, Vec<u8>>,
    prefix: &str,
) -> (usize, usize) {
    let keys: Vec<_> = a
        .keys()
        .filter(|k| k.starts_with(prefix) && !k.contains('#'))
        .collect();
    let diff = keys.iter().filter(|k| a.get(**k) != b.get(**k)).count();
    (keys.len(), diff)
}

/// `metrics.jsonl` of a run, one JSON object per line.
pub fn metrics(run_dir: &Path) -> Vec<serde_json::Value> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// A metrics record without its timing fields (which legitimately differ between runs).
pub fn without_timing(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("images_per_sec");
        o.remove("epoch_seconds");
    }
    v
}

/// The `[[epoch, ...]]` lines of two runs must agree on everything but timing.
pub fn assert_same_metrics(a: &Path, b: &Path) {
    let (ma, mb) = (metrics(a), metrics(b));
    assert_eq!(ma.len(), mb.len(), "metrics.jsonl line counts differ");
    for (x, y) in ma.into_iter().zip(mb) {
        assert_eq!(without_timing(x), without_timing(y));
    }
}

/// The message of an error, for `contains` checks (Display, which is what the CLI prints).
pub fn message<T: std::fmt::Debug>(r: meal::Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `text` contains every needle, showing the text on failure.
#[track_caller]
pub fn assert_mentions(text: &str, needles: &[&str]) {
    if std::env::var_os("MEAL_SHOW_ERRORS").is_some() {
        eprintln!("error message: {text}");
    }
    for n in needles {
        assert!(text.contains(n), "expected `{n}` in the message: {text}");
    }
}

/// The SHA-256 of a file, in lowercase hex.
pub fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The interpreter for a test's Python half: `$MEAL_PYTHON` (or `python3`) if it imports
/// `modules` (e.g. "timm, safetensors"). Under CI (`CI=true`, which `.ci/run` sets together
/// with MEAL_PYTHON) an unset MEAL_PYTHON or a missing module fails the test; elsewhere it
/// prints SKIPPED naming `what` is not checked and how to get it, and returns None.
pub fn python_with(modules: &str, what: &str) -> Option<String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let configured = std::env::var("MEAL_PYTHON").ok();
    assert!(
        !(ci && configured.is_none()),
        "CI is set but MEAL_PYTHON is not: .ci/run sets it to a virtual environment with \
         {modules}; without it {what} would not be checked"
    );
    let python = configured.unwrap_or_else(|| "python3".to_string());
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        !ci,
        "CI is set but `{python} -c 'import {modules}'` failed (.ci/run installs them into \
         MEAL_PYTHON's environment)"
    );
    eprintln!(
        "SKIPPED {what}: `{python} -c 'import {modules}'` failed. Install them or point \
         MEAL_PYTHON at an interpreter that has them."
    );
    None
}
