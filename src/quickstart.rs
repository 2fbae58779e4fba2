//! `meal quickstart`: the whole idea in one command on the embedded `data/cifar10-mini`:
//! train three small teachers, evaluate them and their ensemble, train the student on labels
//! alone, distil the same student with MEAL, and print one comparison table (parameters,
//! FLOPs, CPU latency, accuracy, and the student's speed-up over running the ensemble).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use serde::Serialize;

use crate::data::{self, DataConfig};
use crate::distill::{self, DistillConfig, DistillStart};
use crate::error::{Error, Result};
use crate::models::{self, Net};
use crate::progress;
use crate::train::run_dir::timestamp;
use crate::train::schedule::ScheduleConfig;
use crate::train::supervised::load_run_model;
use crate::train::{self, TrainConfig};

/// What the quickstart runs; the defaults fit in about five minutes on two CPU cores.
#[derive(Debug, Clone)]
pub struct QuickstartConfig {
    pub data: PathBuf,
    pub out_dir: PathBuf,
    pub teachers: Vec<String>,
    pub student: String,
    pub teacher_epochs: usize,
    pub student_epochs: usize,
    pub train_subset: Option<usize>,
    pub test_subset: Option<usize>,
    pub seed: u64,
    /// Learning rate of the teachers and the labels-only baseline (MEAL's comes from the
    /// `quickstart` recipe).
    pub lr: f64,
}

impl Default for QuickstartConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from("data/cifar10-mini"),
            out_dir: PathBuf::from("runs"),
            teachers: vec!["resnet20".into(), "vgg8".into(), "resnet14".into()],
            student: "resnet8".into(),
            teacher_epochs: 3,
            student_epochs: 3,
            train_subset: Some(2500),
            test_subset: None,
            seed: 0,
            lr: 0.05,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub role: String,
    pub arch: String,
    pub params: usize,
    pub mflops: f64,
    pub latency_ms: f64,
    pub top1: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub rows: Vec<Row>,
    pub ensemble_top1: f64,
    pub ensemble_latency_ms: f64,
    pub speedup: f64,
    pub seconds: f64,
    pub run_dir: PathBuf,
    /// Where everything ran (and the latencies were measured).
    pub device: String,
}

fn data_config(q: &QuickstartConfig) -> DataConfig {
    let mut d = DataConfig::new(&q.data);
    d.train_subset = q.train_subset;
    d.test_subset = q.test_subset;
    d
}

fn train_config(q: &QuickstartConfig, arch: &str, epochs: usize, dir: &Path) -> TrainConfig {
    TrainConfig {
        name: None,
        arch: arch.to_string(),
        data: data_config(q),
        epochs,
        batch_size: 64,
        eval_batch_size: 100,
        lr: q.lr,
        optimizer: Default::default(),
        schedule: ScheduleConfig::Cosine {
            min_lr: 0.0,
            warmup_epochs: 0,
        },
        seed: q.seed,
        num_workers: 1,
        out_dir: dir.to_path_buf(),
        run_dir: Some(dir.to_path_buf()),
        device: Default::default(),
    }
}

fn to_table<T: Serialize>(value: &T) -> Result<toml::Table> {
    toml::Table::try_from(value).map_err(|e| Error::Config(e.to_string()))
}

/// Milliseconds per image of a batch-1 forward pass on the CPU device (median of 15).
pub fn latency_ms(net: &Net, shape: [usize; 3]) -> f64 {
    let device = crate::backend::device();
    let model = net.valid().fork(&device);
    let x = Tensor::<4>::random(
        [1, shape[0], shape[1], shape[2]],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut times = Vec::new();
    for i in 0..18 {
        let t = Instant::now();
        let out = model.forward(x.clone());
        let _ = out.logits.into_data();
        if i >= 3 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn describe(role: &str, net: &Net, arch: &str, top1: f64, shape: [usize; 3]) -> Row {
    Row {
        role: role.to_string(),
        arch: arch.to_string(),
        params: models::trainable_params(net),
        mflops: models::count_macs(net, [1, shape[0], shape[1], shape[2]]) as f64 / 1e6,
        latency_ms: latency_ms(net, shape),
        top1,
    }
}

pub fn run(q: &QuickstartConfig) -> Result<Summary> {
    let started = Instant::now();
    for arch in q.teachers.iter().chain(std::iter::once(&q.student)) {
        models::arch_info(arch)?;
    }
    let root = q.out_dir.join(format!("quickstart-{}", timestamp()));
    std::fs::create_dir_all(&root).map_err(|e| Error::file(&root, e))?;
    // Open once up front so a bad data path fails before any training.
    let splits = data::open(&data_config(q))?;
    let shape = splits.train.output_shape();
    progress::say(format!(
        "meal quickstart: {} teachers ({}) -> {} on {}\n  run folder {}",
        q.teachers.len(),
        q.teachers.join(", "),
        q.student,
        splits.train.describe(),
        root.display()
    ));

    let mut rows = Vec::new();
    let mut teacher_dirs = Vec::new();
    for (i, arch) in q.teachers.iter().enumerate() {
        progress::say(format!(
            "[{}/{}] teacher {arch}: {} epochs with cross-entropy",
            i + 1,
            q.teachers.len() + 2,
            q.teacher_epochs
        ));
        let dir = root.join(format!("teacher-{arch}"));
        let cfg = train_config(q, arch, q.teacher_epochs, &dir);
        let table = to_table(&cfg)?;
        train::train(train::Start::Fresh {
            config: Box::new(cfg),
            table,
        })
        .map_err(in_phase(format!("teacher {arch}")))?;
        teacher_dirs.push(dir);
    }

    let n = q.teachers.len();
    progress::say(format!(
        "[{}/{}] baseline {}: {} epochs on labels alone",
        n + 1,
        n + 2,
        q.student,
        q.student_epochs
    ));
    let base_dir = root.join(format!("baseline-{}", q.student));
    let cfg = train_config(q, &q.student, q.student_epochs, &base_dir);
    let table = to_table(&cfg)?;
    let base = train::train(train::Start::Fresh {
        config: Box::new(cfg),
        table,
    })
    .map_err(in_phase(format!("baseline {}", q.student)))?;

    progress::say(format!(
        "[{}/{}] MEAL {}: {} epochs from the teachers (recipe `quickstart`)",
        n + 2,
        n + 2,
        q.student,
        q.student_epochs
    ));
    let meal_dir = root.join(format!("meal-{}", q.student));
    let mut table = crate::recipes::table("quickstart")?;
    let teachers = teacher_dirs
        .iter()
        .map(|d| {
            let mut t = toml::Table::new();
            t.insert("checkpoint".into(), d.display().to_string().into());
            toml::Value::Table(t)
        })
        .collect();
    table.insert("teachers".into(), toml::Value::Array(teachers));
    table.insert("student".into(), q.student.clone().into());
    table.insert("epochs".into(), (q.student_epochs as i64).into());
    table.insert("seed".into(), (q.seed as i64).into());
    table.insert("run_dir".into(), meal_dir.display().to_string().into());
    table.insert(
        "data".into(),
        toml::Value::Table(to_table(&data_config(q))?),
    );
    let dcfg: DistillConfig = crate::config::from_table(table.clone(), "quickstart")?;
    let meal = distill::distill(DistillStart::Fresh {
        config: Box::new(dcfg),
        table,
    })
    .map_err(in_phase(format!("MEAL {}", q.student)))?;

    for ((arch, _, acc), dir) in meal.teachers.teachers.iter().zip(&teacher_dirs) {
        let (net, _) = load_run_model(dir, true)?;
        rows.push(describe("teacher", &net, arch, acc.top1, shape));
    }
    let (net, _) = load_run_model(&base_dir, false)?;
    rows.push(describe(
        "student (labels)",
        &net,
        &q.student,
        base.last.top1,
        shape,
    ));
    let (net, _) = load_run_model(&meal_dir, false)?;
    rows.push(describe(
        "student (MEAL)",
        &net,
        &q.student,
        meal.last.top1,
        shape,
    ));

    let ensemble_latency_ms: f64 = rows
        .iter()
        .filter(|r| r.role == "teacher")
        .map(|r| r.latency_ms)
        .sum();
    let student_latency = rows.last().map(|r| r.latency_ms).unwrap_or(1.0);
    let summary = Summary {
        ensemble_top1: meal.teachers.ensemble.top1,
        ensemble_latency_ms,
        speedup: ensemble_latency_ms / student_latency.max(1e-9),
        seconds: started.elapsed().as_secs_f64(),
        rows,
        run_dir: root.clone(),
        device: crate::backend::describe_selected(),
    };
    // The training curves of every phase, side by side.
    let mut dirs = teacher_dirs.clone();
    dirs.push(base_dir.clone());
    dirs.push(meal_dir.clone());
    let report = crate::report::write_report(&dirs, Some(&root.join("report")))?;
    progress::say(format!("report: {}", report.html.display()));
    let text = render(&summary);
    let md = root.join("summary.md");
    std::fs::write(&md, &text).map_err(|e| Error::file(&md, e))?;
    let js = root.join("summary.json");
    std::fs::write(
        &js,
        serde_json::to_vec_pretty(&summary).expect("serialisable"),
    )
    .map_err(|e| Error::file(&js, e))?;
    Ok(summary)
}

/// Names the phase in a divergence error: five runs share one command, and the run's own
/// message only names its epoch and batch.
fn in_phase(phase: String) -> impl FnOnce(Error) -> Error {
    move |e| match e {
        Error::Diverged(m) => Error::Diverged(format!("quickstart {phase}: {m}")),
        e => e,
    }
}

/// The comparison table as Markdown.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let latency = if s.device == "flex" {
        "CPU latency"
    } else {
        "latency"
    };
    out.push_str(&format!(
        "| model | arch | params | MFLOPs | {latency} (ms/img) | test top-1 |\n"
    ));
    out.push_str("|---|---|---:|---:|---:|---:|\n");
    for r in &s.rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.2} | {:.2}% |\n",
            r.role, r.arch, r.params, r.mflops, r.latency_ms, r.top1
        ));
    }
    out.push_str(&format!(
        "| ensemble (mean softmax) | {} teachers | {} | {:.1} | {:.2} | {:.2}% |\n",
        s.rows.iter().filter(|r| r.role == "teacher").count(),
        s.rows
            .iter()
            .filter(|r| r.role == "teacher")
            .map(|r| r.params)
            .sum::<usize>(),
        s.rows
            .iter()
            .filter(|r| r.role == "teacher")
            .map(|r| r.mflops)
            .sum::<f64>(),
        s.ensemble_latency_ms,
        s.ensemble_top1
    ));
    out.push_str(&format!(
        "\nThe MEAL student runs {:.1}x faster than the ensemble. Total time {:.0} s on {}. Run folder: {}\n",
        s.speedup,
        s.seconds,
        s.device,
        s.run_dir.display()
    ));
    out
}
