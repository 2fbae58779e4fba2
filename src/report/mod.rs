//! `meal report`: a self-contained HTML page (inline CSS, charts as inline SVG, no scripts) plus
//! one PNG per chart, from one or more run folders. Several runs overlay in every chart, one
//! colour per run; a distillation run's accuracy charts also show each teacher's and the
//! teachers' ensemble's accuracy as horizontal lines.

pub mod chart;
pub mod held_out;
mod html;
mod png;
pub mod run;

use std::path::{Path, PathBuf};

use plotters::style::RGBColor;

use crate::error::{Error, Result};
use chart::{Chart, HLine, LegendItem, Line, Stroke};
pub use run::{RunData, RunKind, expand_run_dirs, load_run};

/// The page's file name inside the output folder.
pub const REPORT_FILE: &str = "report.html";

/// One colour per run (Tableau 10 without its grey, which the teacher lines use).
pub const RUN_COLORS: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(140, 86, 75),
];

/// The colour of the `i`-th run.
pub fn run_color(i: usize) -> RGBColor {
    RUN_COLORS[i % RUN_COLORS.len()]
}

/// Which accuracy of a teacher a chart shows.
#[derive(Debug, Clone, Copy)]
enum TeacherMetric {
    Top1,
    Top5,
}

/// A chart of one metric (or two related ones) over epochs.
struct Spec {
    id: &'static str,
    title: &'static str,
    y_desc: &'static str,
    /// `metrics.jsonl` keys and what their lines are called; the first is solid, the second
    /// dashed.
    keys: &'static [(&'static str, &'static str)],
    percent: bool,
    from_zero: bool,
    teachers: Option<TeacherMetric>,
    /// Leave the chart out when every value is zero (an unused loss term).
    skip_if_all_zero: bool,
}

const SPECS: &[Spec] = &[
    Spec {
        id: "test_top1",
        title: "Test top-1 accuracy",
        y_desc: "top-1 (%)",
        keys: &[("test_top1", "test top-1")],
        percent: true,
        from_zero: false,
        teachers: Some(TeacherMetric::Top1),
        skip_if_all_zero: false,
    },
    Spec {
        id: "test_top5",
        title: "Test top-5 accuracy",
        y_desc: "top-5 (%)",
        keys: &[("test_top5", "test top-5")],
        percent: true,
        from_zero: false,
        teachers: Some(TeacherMetric::Top5),
        skip_if_all_zero: false,
    },
    Spec {
        id: "train_acc",
        title: "Training accuracy (augmented training batches)",
        y_desc: "accuracy (%)",
        keys: &[("train_acc", "train accuracy")],
        percent: true,
        from_zero: false,
        teachers: None,
        skip_if_all_zero: false,
    },
    Spec {
        id: "train_loss",
        title: "Training loss (cross-entropy on labels)",
        y_desc: "loss",
        keys: &[("train_loss", "train loss")],
        percent: false,
        from_zero: false,
        teachers: None,
        skip_if_all_zero: false,
    },
    Spec {
        id: "sim_loss",
        title: "Similarity loss (student vs teachers)",
        y_desc: "loss",
        keys: &[("sim_loss", "similarity loss")],
        percent: false,
        from_zero: false,
        teachers: None,
        skip_if_all_zero: false,
    },
    Spec {
        id: "d_loss",
        title: "Discriminator loss",
        y_desc: "loss",
        keys: &[("d_loss", "discriminator loss")],
        percent: false,
        from_zero: false,
        teachers: None,
        skip_if_all_zero: false,
    },
    Spec {
        id: "ce_loss",
        title: "Hard-label cross-entropy during distillation (meal.alpha)",
        y_desc: "loss",
        keys: &[("ce_loss", "label cross-entropy")],
        percent: false,
        from_zero: false,
        teachers: None,
        skip_if_all_zero: true,
    },
    Spec {
        id: "d_acc",
        title: "Discriminator accuracy",
        y_desc: "accuracy (%)",
        keys: &[
            ("d_acc_student", "on student outputs"),
            ("d_acc_teacher", "on teacher outputs"),
        ],
        percent: true,
        from_zero: false,
        teachers: None,
        skip_if_all_zero: false,
    },
    Spec {
        id: "test_loss",
        title: "Test loss (cross-entropy)",
        y_desc: "loss",
        keys: &[("test_loss", "test loss")],
        percent: false,
        from_zero: false,
        teachers: None,
        skip_if_all_zero: false,
    },
    Spec {
        id: "lr",
        title: "Learning rate",
        y_desc: "learning rate",
        keys: &[("lr", "learning rate")],
        percent: false,
        from_zero: true,
        teachers: None,
        skip_if_all_zero: false,
    },
    Spec {
        id: "d_lr",
        title: "Discriminator learning rate",
        y_desc: "learning rate",
        keys: &[("d_lr", "discriminator learning rate")],
        percent: false,
        from_zero: true,
        teachers: None,
        skip_if_all_zero: false,
    },
    Spec {
        id: "images_per_sec",
        title: "Training throughput",
        y_desc: "images / s",
        keys: &[("images_per_sec", "images per second")],
        percent: false,
        from_zero: true,
        teachers: None,
        skip_if_all_zero: false,
    },
];

/// The ids (file stems) of every chart a report can hold, in page order.
pub fn chart_ids() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.id).collect()
}

/// Greys and dash patterns of the teacher lines; the ensemble is black.
const TEACHER_STYLES: [(RGBColor, Stroke); 4] = [
    (RGBColor(90, 90, 90), Stroke::Dashed(8, 4)),
    (RGBColor(130, 130, 130), Stroke::Dashed(3, 3)),
    (RGBColor(70, 70, 70), Stroke::Dashed(14, 4)),
    (RGBColor(150, 150, 150), Stroke::Dashed(2, 7)),
];
const ENSEMBLE_COLOR: RGBColor = RGBColor(0, 0, 0);
const ENSEMBLE_STROKE: Stroke = Stroke::Dashed(16, 5);

/// A short name for a teacher: its run folder for `.../best.ckpt`, else its file or folder name.
/// `meal distill` names teachers `arch:path`; the arch prefix is dropped.
pub fn teacher_short_name(name: &str) -> String {
    let name = match name.split_once(':') {
        Some((arch, rest)) if !arch.contains(['/', '\\']) && !rest.is_empty() => rest,
        _ => name,
    };
    let p = Path::new(name);
    let file = p
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    if file.ends_with(".ckpt")
        && let Some(parent) = p.parent().and_then(|d| d.file_name())
    {
        return parent.to_string_lossy().into_owned();
    }
    file
}

/// The horizontal reference lines (and their legend items) of a teacher metric over `runs`,
/// each distinct teacher and ensemble once.
fn teacher_lines(runs: &[RunData], metric: TeacherMetric) -> (Vec<HLine>, Vec<LegendItem>) {
    let value = |a: &run::Acc| match metric {
        TeacherMetric::Top1 => a.top1,
        TeacherMetric::Top5 => a.top5,
    };
    let mut seen: Vec<(String, u64)> = Vec::new();
    let mut lines = Vec::new();
    let mut legend = Vec::new();
    let mut ensembles: Vec<(u64, usize, String)> = Vec::new();
    for run in runs {
        let Some(t) = &run.teachers else { continue };
        for teacher in &t.teachers {
            let v = value(&teacher.acc);
            let key = (format!("{}\0{}", teacher.arch, teacher.name), v.to_bits());
            if !v.is_finite() || seen.contains(&key) {
                continue;
            }
            let (color, stroke) = TEACHER_STYLES[seen.len() % TEACHER_STYLES.len()];
            seen.push(key);
            lines.push(HLine {
                color,
                stroke,
                width: 2,
                y: v,
            });
            let short = teacher_short_name(&teacher.name);
            let label = if short == teacher.arch || short.is_empty() {
                teacher.arch.clone()
            } else {
                format!("{} ({})", short, teacher.arch)
            };
            legend.push(LegendItem::Entry {
                color,
                stroke,
                width: 2,
                label,
                suffix: format!(" {v:.2}%"),
            });
        }
        let v = value(&t.ensemble);
        if v.is_finite()
            && t.teachers.len() > 1
            && !ensembles
                .iter()
                .any(|(b, n, _)| *b == v.to_bits() && *n == t.teachers.len())
        {
            ensembles.push((v.to_bits(), t.teachers.len(), run.name.clone()));
        }
    }
    for (bits, n, run_name) in &ensembles {
        let v = f64::from_bits(*bits);
        lines.push(HLine {
            color: ENSEMBLE_COLOR,
            stroke: ENSEMBLE_STROKE,
            width: 2,
            y: v,
        });
        let label = if ensembles.len() > 1 {
            format!("ensemble of {n} ({run_name})")
        } else {
            format!("ensemble of {n}")
        };
        legend.push(LegendItem::Entry {
            color: ENSEMBLE_COLOR,
            stroke: ENSEMBLE_STROKE,
            width: 2,
            label,
            suffix: format!(" {v:.2}%"),
        });
    }
    if !legend.is_empty() {
        legend.insert(0, LegendItem::Heading("Teachers".into()));
    }
    (lines, legend)
}

fn build_chart(spec: &Spec, runs: &[RunData]) -> Option<Chart> {
    let mut lines = Vec::new();
    let mut legend = vec![LegendItem::Heading("Runs".into())];
    let mut keys_used = vec![false; spec.keys.len()];
    for (ri, run) in runs.iter().enumerate() {
        let color = run_color(ri);
        let mut any = false;
        for (ki, (key, _)) in spec.keys.iter().enumerate() {
            let pts = run.series(key);
            if pts.is_empty() || (spec.skip_if_all_zero && pts.iter().all(|p| p.1 == 0.0)) {
                continue;
            }
            any = true;
            keys_used[ki] = true;
            lines.push(Line {
                color,
                stroke: if ki == 0 {
                    Stroke::Solid
                } else {
                    Stroke::Dashed(7, 4)
                },
                width: 2,
                markers: pts.len() <= 30,
                points: pts.iter().map(|&(e, v)| (e as i32, v)).collect(),
            });
        }
        if any {
            legend.push(LegendItem::Entry {
                color,
                stroke: Stroke::Solid,
                width: 3,
                label: run.name.clone(),
                suffix: String::new(),
            });
        }
    }
    if lines.is_empty() {
        return None;
    }
    if keys_used.iter().filter(|u| **u).count() > 1 {
        legend.push(LegendItem::Heading("Lines".into()));
        for (ki, (_, label)) in spec.keys.iter().enumerate() {
            if keys_used[ki] {
                legend.push(LegendItem::Entry {
                    color: RGBColor(60, 60, 60),
                    stroke: if ki == 0 {
                        Stroke::Solid
                    } else {
                        Stroke::Dashed(7, 4)
                    },
                    width: 2,
                    label: (*label).to_string(),
                    suffix: String::new(),
                });
            }
        }
    }
    let mut hlines = Vec::new();
    if let Some(metric) = spec.teachers {
        let (h, l) = teacher_lines(runs, metric);
        hlines = h;
        legend.extend(l);
    }
    Some(Chart {
        id: spec.id.to_string(),
        title: spec.title.to_string(),
        y_desc: spec.y_desc.to_string(),
        percent: spec.percent,
        from_zero: spec.from_zero,
        lines,
        hlines,
        legend,
    })
}

/// Every chart that at least one run has data for, in page order.
pub fn build_charts(runs: &[RunData]) -> Vec<Chart> {
    SPECS.iter().filter_map(|s| build_chart(s, runs)).collect()
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportOutcome {
    pub html: PathBuf,
    pub pngs: Vec<PathBuf>,
    pub runs: Vec<String>,
}

/// The output folder used when none is given: `<run>/report` for one run, `report` otherwise.
pub fn default_out_dir(run_dirs: &[PathBuf]) -> PathBuf {
    match run_dirs {
        [one] => one.join("report"),
        _ => PathBuf::from("report"),
    }
}

/// Reads the run folders (see [`expand_run_dirs`]) and writes `report.html` and one PNG per
/// chart into `out` (created if needed; files of an earlier report there are replaced).
pub fn write_report(paths: &[PathBuf], out: Option<&Path>) -> Result<ReportOutcome> {
    write_report_with(paths, out, None)
}

/// [`write_report`] with the quickstart's held-out comparison of the students at the top.
pub fn write_report_with(
    paths: &[PathBuf],
    out: Option<&Path>,
    held_out: Option<&held_out::HeldOut>,
) -> Result<ReportOutcome> {
    if paths.is_empty() {
        return Err(Error::Other("report: give at least one run folder".into()));
    }
    let dirs = expand_run_dirs(paths)?;
    let mut runs = dirs
        .iter()
        .map(|d| load_run(d))
        .collect::<Result<Vec<_>>>()?;
    run::disambiguate(&mut runs);
    let out = out.map_or_else(|| default_out_dir(&dirs), Path::to_path_buf);
    std::fs::create_dir_all(&out).map_err(|e| Error::file(&out, e))?;

    let charts = build_charts(&runs);
    let mut svgs = Vec::with_capacity(charts.len());
    let mut pngs = Vec::with_capacity(charts.len());
    for c in &charts {
        svgs.push(chart::render_svg(c)?);
        let png = out.join(format!("{}.png", c.id));
        chart::write_png(c, &png)?;
        pngs.push(png);
    }
    let page = html::page(&runs, &charts, &svgs, held_out);
    let html_path = out.join(REPORT_FILE);
    std::fs::write(&html_path, page).map_err(|e| Error::file(&html_path, e))?;
    Ok(ReportOutcome {
        html: html_path,
        pngs,
        runs: runs.into_iter().map(|r| r.name).collect(),
    })
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
