//! `meal quickstart`: the whole idea in one command on the embedded `data/cifar10-mini`: the
//! teachers shipped in `data/teachers/` (trained on the full CIFAR-10 with `meal train`) are
//! evaluated alone and as an ensemble, then one small student is trained on the same budget on
//! labels alone and by MEAL (and by plain Hinton KD with `kd`), and one comparison table is printed
//! (parameters, FLOPs, CPU latency, accuracy, and the student's speed-up over the ensemble).
//! Each distilled student's margin over the labels one comes with a paired 95% interval, on
//! every image no student trained on (the test split plus the training images outside the
//! subset) and on the test split: 1,000 test images alone cannot tell a one-point margin from
//! which images were drawn, so the table, the summary and the HTML report lead with the first.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use serde::Serialize;

use crate::data::{self, DataConfig, Loader, LoaderConfig};
use crate::distill::{self, DistillConfig, DistillStart};
use crate::error::{Error, Result};
use crate::models::{self, Net};
use crate::progress;
pub use crate::report::held_out::{HeldOut, margin_text, short_role};
use crate::train::evaluate::{PairedDifference, hits_percent, paired_difference, top1_hits};
use crate::train::model_io;
use crate::train::run_dir::timestamp;
use crate::train::schedule::ScheduleConfig;
use crate::train::supervised::load_run_model;
use crate::train::{self, TrainConfig};

/// Where `meal quickstart` looks for teachers by default.
pub const SHIPPED_TEACHERS: &str = "data/teachers";

/// What the quickstart runs; the defaults fit in about five minutes on two CPU cores.
///
/// Why 50 epochs and no KD student by default: at 20 epochs a resnet8 is short of steps (20
/// times more labelled images at the same steps do not lift it), and MEAL's margin over labels
/// was about one point; at 50 it was 1.9 to 4.6 points over three seeds (RESULTS.md, "Why the
/// margin was one point"). Two students of 50 epochs fill the five minutes; a third does not.
#[derive(Debug, Clone)]
pub struct QuickstartConfig {
    pub data: PathBuf,
    pub out_dir: PathBuf,
    /// Teacher checkpoints (`.ckpt` files or run folders).
    pub teachers: Vec<PathBuf>,
    pub student: String,
    pub student_epochs: usize,
    pub train_subset: Option<usize>,
    pub test_subset: Option<usize>,
    pub seed: u64,
    /// Learning rate of the labels-only baseline (KD's and MEAL's come from their recipes).
    pub lr: f64,
    /// Also train the student by plain Hinton KD (recipe `quickstart-kd`).
    pub kd: bool,
}

impl Default for QuickstartConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from("data/cifar10-mini"),
            out_dir: PathBuf::from("runs"),
            teachers: Vec::new(),
            student: "resnet8".into(),
            student_epochs: 50,
            train_subset: Some(1000),
            test_subset: None,
            seed: 0,
            lr: 0.05,
            kd: false,
        }
    }
}

/// Training images in the embedded `data/cifar10-mini` (the first 500 of each class, in file
/// order): a teacher that held out this many with `data.train_holdout` never saw any of them.
pub const EMBEDDED_TRAIN_IMAGES: usize = 5000;

/// What `teachers.toml` records about a shipped teacher that the quickstart needs (the file also
/// holds provenance fields; `tests/shipped_teachers.rs` checks all of them).
#[derive(Debug, serde::Deserialize)]
struct ShippedTeacher {
    file: String,
    #[serde(default)]
    train_holdout: usize,
}

#[derive(Debug, serde::Deserialize)]
struct Shipped {
    teacher: Vec<ShippedTeacher>,
}

/// The teachers `meal quickstart` distils from by default, with a note on any it leaves out.
#[derive(Debug)]
pub struct TeacherChoice {
    pub files: Vec<PathBuf>,
    pub note: Option<String>,
}

/// The teacher checkpoints in `dir`, or an error that says how to get some.
///
/// With a `teachers.toml` listing (as in `data/teachers/`), only the listed teachers that held
/// out the embedded training images are taken: a teacher that saw (and memorised) the
/// student's images hands it little more than their labels (README, quickstart section). If
/// none held them out, all are taken and the note says so. Without a listing, every `*.ckpt`,
/// by name.
pub fn shipped_teachers(dir: &Path) -> Result<TeacherChoice> {
    let how = "train your own with `meal train --config recipes/teacher-resnet20.toml --data \
               PATH/cifar-10-batches-bin` (see data/teachers/README.md) and pass the run \
               folders with --teachers";
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Config(format!(
            "no teachers: cannot read {} ({e}); {how}",
            dir.display()
        ))
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ckpt"))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(Error::Config(format!(
            "no teachers: {} holds no .ckpt file; {how}",
            dir.display()
        )));
    }
    let listing = dir.join("teachers.toml");
    if !listing.exists() {
        return Ok(TeacherChoice {
            files: found,
            note: None,
        });
    }
    let text = std::fs::read_to_string(&listing)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", listing.display())))?;
    let shipped: Shipped =
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", listing.display())))?;
    for t in &shipped.teacher {
        if !dir.join(&t.file).is_file() {
            return Err(Error::Config(format!(
                "{} lists {}, which is not in {}",
                listing.display(),
                t.file,
                dir.display()
            )));
        }
    }
    let (unseen, seen): (Vec<_>, Vec<_>) = shipped
        .teacher
        .iter()
        .partition(|t| t.train_holdout >= EMBEDDED_TRAIN_IMAGES);
    let names = |ts: &[&ShippedTeacher]| {
        ts.iter()
            .map(|t| t.file.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if unseen.is_empty() {
        return Ok(TeacherChoice {
            files: shipped.teacher.iter().map(|t| dir.join(&t.file)).collect(),
            note: Some(format!(
                "every teacher in {} was trained on the embedded images ({}); expect little \
                 gain over labels",
                dir.display(),
                names(&seen)
            )),
        });
    }
    Ok(TeacherChoice {
        files: unseen.iter().map(|t| dir.join(&t.file)).collect(),
        note: (!seen.is_empty()).then(|| {
            format!(
                "leaving out {} (trained on the embedded images; pass --teachers to use it)",
                names(&seen)
            )
        }),
    })
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
    /// First, so that summary.json leads with the comparison that can tell a margin apart.
    pub held_out: HeldOut,
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
pub fn latency_ms(net: &Net, shape: [usize; 3]) -> Result<f64> {
    let device = crate::backend::device();
    let model = net.valid().fork(&device);
    let x = crate::backend::unseeded(|| {
        Tensor::<4>::random(
            [1, shape[0], shape[1], shape[2]],
            Distribution::Normal(0.0, 1.0),
            &device,
        )
    });
    let mut times = Vec::new();
    for i in 0..18 {
        let t = Instant::now();
        let out = model.forward(x.clone());
        crate::backend::read::data(out.logits, "a model's logits")?;
        if i >= 3 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn describe(role: &str, net: &Net, arch: &str, top1: f64, shape: [usize; 3], ms: f64) -> Row {
    Row {
        role: role.to_string(),
        arch: arch.to_string(),
        params: models::trainable_params(net),
        mflops: models::count_macs(net, [1, shape[0], shape[1], shape[2]]) as f64 / 1e6,
        latency_ms: ms,
        top1,
    }
}

pub fn run(q: &QuickstartConfig) -> Result<Summary> {
    let started = Instant::now();
    models::arch_info(&q.student)?;
    // Every teacher is read up front, so a missing or broken file fails before any training.
    if q.teachers.is_empty() {
        return Err(Error::Config(
            "quickstart: no teacher checkpoints given".into(),
        ));
    }
    let device = crate::backend::device();
    let mut teachers = Vec::new();
    for path in &q.teachers {
        let file = crate::train::run_dir::resolve_checkpoint(path);
        let (net, meta, _) = model_io::load_model(&file, &device)?;
        teachers.push((file, net, meta));
    }
    let root = q.out_dir.join(format!("quickstart-{}", timestamp()));
    std::fs::create_dir_all(&root).map_err(|e| Error::file(&root, e))?;
    // Open once up front so a bad data path fails before any training.
    let splits = data::open(&data_config(q))?;
    let shape = splits.train.output_shape();
    let archs: Vec<&str> = teachers.iter().map(|t| t.2.arch.as_str()).collect();
    progress::say(format!(
        "meal quickstart: {} shipped teachers ({}) -> {} on {}\n  run folder {}",
        teachers.len(),
        archs.join(", "),
        q.student,
        splits.train.describe(),
        root.display()
    ));
    let phases = 2 + usize::from(q.kd);

    progress::say(format!(
        "[1/{phases}] {}: {} epochs on labels alone",
        q.student, q.student_epochs
    ));
    let base_dir = root.join(format!("labels-{}", q.student));
    let cfg = train_config(q, &q.student, q.student_epochs, &base_dir);
    let table = to_table(&cfg)?;
    let base = train::train(train::Start::Fresh {
        config: Box::new(cfg),
        table,
    })
    .map_err(in_phase(format!("labels {}", q.student)))?;

    let mut students = vec![("student (labels)", base_dir.clone(), base.last.top1)];
    let mut methods = Vec::new();
    if q.kd {
        methods.push(("quickstart-kd", "student (KD)", "KD"));
    }
    methods.push(("quickstart", "student (MEAL)", "MEAL"));
    let mut report = None;
    for (i, (recipe, role, short)) in methods.into_iter().enumerate() {
        progress::say(format!(
            "[{}/{phases}] {short} {}: {} epochs from the teachers (recipe `{recipe}`)",
            i + 2,
            q.student,
            q.student_epochs
        ));
        let dir = root.join(format!("{}-{}", short.to_lowercase(), q.student));
        let table = distill_table(q, recipe, &teachers, &dir)?;
        let dcfg: DistillConfig = crate::config::from_table(table.clone(), recipe)?;
        let out = distill::distill(DistillStart::Fresh {
            config: Box::new(dcfg),
            table,
        })
        .map_err(in_phase(format!("{short} {}", q.student)))?;
        students.push((role, dir, out.last.top1));
        report = Some(out.teachers);
    }
    let report = report.expect("MEAL always runs");
    // Each student's final weights, read once: the held-out check and the table describe them.
    let students = students
        .into_iter()
        .map(|(role, dir, top1)| {
            let (net, _) = load_run_model(&dir, false)?;
            Ok(Student {
                role,
                dir,
                top1,
                net,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let held_out = held_out_check(q, &splits, &students, &device)?;

    let mut rows = Vec::new();
    for ((arch, _, acc), (_, net, _)) in report.teachers.iter().zip(&teachers) {
        rows.push(describe(
            "teacher",
            net,
            arch,
            acc.top1,
            shape,
            latency_ms(net, shape)?,
        ));
    }
    // The students are one architecture: timing it once keeps timer noise from showing
    // identical networks at different speeds (and from moving the speed-up with it).
    let mut student_ms = None;
    for st in &students {
        let ms = match student_ms {
            Some(ms) => ms,
            None => *student_ms.insert(latency_ms(&st.net, shape)?),
        };
        rows.push(describe(st.role, &st.net, &q.student, st.top1, shape, ms));
    }

    let ensemble_latency_ms: f64 = rows
        .iter()
        .filter(|r| r.role == "teacher")
        .map(|r| r.latency_ms)
        .sum();
    let student_latency = rows.last().map(|r| r.latency_ms).unwrap_or(1.0);
    let summary = Summary {
        ensemble_top1: report.ensemble.top1,
        ensemble_latency_ms,
        speedup: ensemble_latency_ms / student_latency.max(1e-9),
        seconds: started.elapsed().as_secs_f64(),
        rows,
        run_dir: root.clone(),
        device: crate::backend::describe_selected(),
        held_out,
    };
    // The students' training curves side by side.
    let dirs: Vec<PathBuf> = students.iter().map(|s| s.dir.clone()).collect();
    let html = crate::report::write_report_with(
        &dirs,
        Some(&root.join("report")),
        Some(&summary.held_out),
    )?;
    progress::say(format!("report: {}", html.html.display()));
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

/// A trained student: its row in the table, run folder, logged final test top-1 and final
/// weights.
struct Student {
    role: &'static str,
    dir: PathBuf,
    top1: f64,
    net: Net,
}

/// Evaluates every trained student (its last weights, those the table reports) on the test
/// split and on the training images outside the subset, and pairs each distilled student with
/// the labels one image by image.
fn held_out_check(
    q: &QuickstartConfig,
    splits: &data::DataSplits,
    students: &[Student],
    device: &burn::tensor::Device,
) -> Result<HeldOut> {
    // A margin on no images, or an interval from one, is not a result.
    if splits.test.len() < 2 {
        return Err(Error::File {
            path: q.data.clone(),
            message: format!(
                "the test split has {} image(s); comparing the students needs at least 2",
                splits.test.len()
            ),
        });
    }
    let loader = |set| Loader::new(set, LoaderConfig::eval(100));
    let test = loader(splits.test.clone());
    // The complement of the subset: what `train_holdout` leaves is exactly what
    // `train_subset` did not pick.
    let unused = match q.train_subset {
        Some(n) => {
            let mut cfg = data_config(q);
            cfg.train_subset = None;
            let all = data::open(&cfg)?.train.len();
            cfg.train_holdout = Some(n);
            // A subset as large as the split leaves nothing (and an empty split is an error).
            (all > splits.train.len())
                .then(|| data::open(&cfg).map(|s| loader(s.train)))
                .transpose()?
        }
        None => None,
    };
    let train_images = unused.as_ref().map_or(0, |l| l.dataset().len());
    let mut hits = Vec::new();
    for st in students {
        let mut h = top1_hits(&st.net, &test, device)?;
        let on_test = hits_percent(&h);
        // The same weights on the same images: anything else means the table and this check
        // describe different models.
        if (on_test - st.top1).abs() > 1e-6 {
            return Err(Error::Checkpoint {
                path: st.dir.join(crate::train::run_dir::LAST),
                message: format!(
                    "the quickstart's {} scores {on_test:.2}% on the test split now but {:.2}% \
                     at the end of its training",
                    st.role, st.top1
                ),
            });
        }
        if let Some(u) = &unused {
            h.extend(top1_hits(&st.net, u, device)?);
        }
        hits.push((st.role.to_string(), h));
    }
    let test_images = splits.test.len();
    let (labels, distilled) = hits.split_first().expect("the labels student always runs");
    let pair = |n: usize| -> Vec<(String, PairedDifference)> {
        distilled
            .iter()
            .map(|(role, h)| (role.clone(), paired_difference(&h[..n], &labels.1[..n])))
            .collect()
    };
    Ok(HeldOut {
        test_images,
        train_images,
        top1: hits
            .iter()
            .map(|(role, h)| (role.clone(), hits_percent(h)))
            .collect(),
        vs_labels: pair(test_images + train_images),
        test_vs_labels: pair(test_images),
    })
}

/// The distillation config of `recipe` with the quickstart's teachers, student, budget, seed and
/// data.
fn distill_table(
    q: &QuickstartConfig,
    recipe: &str,
    teachers: &[(PathBuf, Net, model_io::ModelMeta)],
    dir: &Path,
) -> Result<toml::Table> {
    let mut table = crate::recipes::table(recipe)?;
    let list = teachers
        .iter()
        .map(|(file, _, _)| {
            let mut t = toml::Table::new();
            t.insert("checkpoint".into(), file.display().to_string().into());
            toml::Value::Table(t)
        })
        .collect();
    table.insert("teachers".into(), toml::Value::Array(list));
    table.insert("student".into(), q.student.clone().into());
    table.insert("epochs".into(), (q.student_epochs as i64).into());
    table.insert("seed".into(), (q.seed as i64).into());
    table.insert("run_dir".into(), dir.display().to_string().into());
    table.insert(
        "data".into(),
        toml::Value::Table(to_table(&data_config(q))?),
    );
    Ok(table)
}

/// Names the phase in a divergence error: three runs share one command, and the run's own
/// message only names its epoch and batch.
fn in_phase(phase: String) -> impl FnOnce(Error) -> Error {
    move |e| match e {
        Error::Diverged(m) => Error::Diverged(format!("quickstart {phase}: {m}")),
        e => e,
    }
}

/// The margins over the labels student. With held-out training images the comparison that can
/// tell comes first: the accuracies and margins on every image no student trained on, then the
/// margin on the test split alone (the table's test column), which 1,000 images cannot resolve.
fn render_held_out(h: &HeldOut) -> String {
    let mut out = String::new();
    if h.train_images > 0 {
        out.push_str(&format!(
            "\nOn all {} images no student trained on ({} test + {} training images outside the \
             subset):",
            h.images(),
            h.test_images,
            h.train_images,
        ));
        for (role, d) in &h.vs_labels {
            out.push_str(&format!(
                "\n{} against labels there, same student and budget: {}.",
                short_role(role),
                margin_text(d)
            ));
        }
        let accs: Vec<String> = h
            .top1
            .iter()
            .map(|(role, a)| format!("{} {a:.2}%", short_role(role)))
            .collect();
        out.push_str(&format!("\nTop-1 there: {}.", accs.join(", ")));
        for (role, d) in &h.test_vs_labels {
            out.push_str(&format!(
                "\n{} against labels on the {} test images alone: {}.",
                short_role(role),
                h.test_images,
                margin_text(d)
            ));
        }
    } else {
        for (role, d) in &h.test_vs_labels {
            out.push_str(&format!(
                "\n{} against labels alone, same student and budget, on the {} test images: {}.",
                short_role(role),
                h.test_images,
                margin_text(d)
            ));
        }
    }
    out.push_str(
        "\nThe intervals cover which images were tested, not the training runs' randomness: \
         rerun with --seed N to see that.",
    );
    out
}

/// The comparison table as Markdown. When the students left training images unused, a column
/// gives each student's top-1 on every held-out image, before the test split's: the test split
/// alone (1,000 embedded images) cannot separate a two-point margin from which images were
/// drawn, and the table is what a reader looks at first.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let latency = if s.device == "flex" {
        "CPU latency"
    } else {
        "latency"
    };
    let h = &s.held_out;
    let column = h.train_images > 0;
    // Only students were tested on the held-out images; other rows get a dash, not a number.
    let held_out = |top1: Option<f64>| match (column, top1) {
        (false, _) => String::new(),
        (true, Some(a)) => format!(" {a:.2}% |"),
        (true, None) => " — |".into(),
    };
    let student_top1 = |role: &str| h.top1.iter().find(|(r, _)| r == role).map(|(_, a)| *a);
    let (head, rule) = if column {
        (format!(" top-1, all {} held-out |", h.images()), "---:|")
    } else {
        (String::new(), "")
    };
    out.push_str(&format!(
        "| model | arch | params | MFLOPs | {latency} (ms/img) |{head} test top-1 |\n"
    ));
    out.push_str(&format!("|---|---|---:|---:|---:|{rule}---:|\n"));
    for r in &s.rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.2} |{} {:.2}% |\n",
            r.role,
            r.arch,
            r.params,
            r.mflops,
            r.latency_ms,
            held_out(student_top1(&r.role)),
            r.top1,
        ));
    }
    let teachers: Vec<&Row> = s.rows.iter().filter(|r| r.role == "teacher").collect();
    out.push_str(&format!(
        "| ensemble (mean softmax) | {} teachers | {} | {:.1} | {:.2} |{} {:.2}% |\n",
        teachers.len(),
        teachers.iter().map(|r| r.params).sum::<usize>(),
        teachers.iter().map(|r| r.mflops).sum::<f64>(),
        s.ensemble_latency_ms,
        held_out(None),
        s.ensemble_top1,
    ));
    out.push_str(&render_held_out(&s.held_out));
    out.push_str(&format!(
        "\nThe MEAL student runs {:.1}x faster than the ensemble. Total time {:.0} s on {}. Run folder: {}\n",
        s.speedup,
        s.seconds,
        s.device,
        s.run_dir.display()
    ));
    out.push_str(
        "Train your own teachers with `meal train --config recipes/teacher-resnet20.toml --data \
         PATH/cifar-10-batches-bin` (recipes/teacher-*.toml) and distil from them with \
         `meal quickstart --teachers RUN_DIR...` or `meal distill`.\n",
    );
    out
}
