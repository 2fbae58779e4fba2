//! `meal report` on hand-written run folders (no training): the page names every run, draws one
//! chart per logged metric with the teachers' and the ensemble's accuracy as horizontal lines,
//! loads nothing from the network, and the PNG charts decode.

use std::path::{Path, PathBuf};
use std::process::Command;

use meal::report::{self, chart::Chart};

const TRAIN_RUN: &str = "teacher-fab-resnet20";
const DISTILL_RUN: &str = "student-fab-meal";

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A `meal train` run folder with `epochs` logged epochs (0-based in the file, like the real one).
fn train_run(root: &Path, epochs: usize) -> PathBuf {
    let dir = root.join(TRAIN_RUN);
    std::fs::create_dir_all(&dir).unwrap();
    write(
        &dir.join("config.toml"),
        "arch = \"resnet20\"\nepochs = 12\n\n[data]\npath = \"data/cifar10-mini\"\n",
    );
    write(
        &dir.join("run.txt"),
        "command: meal train --arch resnet20 --epochs 12\nmeal_version: 0.1.0\nseed: 1\n",
    );
    let mut lines = String::new();
    for e in 0..epochs {
        let t = e as f64;
        lines += &format!(
            "{{\"epoch\":{e},\"lr\":{},\"train_loss\":{},\"train_acc\":{},\"test_top1\":{},\
             \"test_top5\":{},\"test_loss\":{},\"images_per_sec\":{},\"epoch_seconds\":{}}}\n",
            0.1 * (1.0 - t / epochs as f64),
            2.0 / (1.0 + t),
            40.0 + 4.0 * t,
            35.0 + 4.5 * t,
            80.0 + t,
            1.9 - 0.1 * t,
            500.0 + t,
            20.0
        );
    }
    write(&dir.join("metrics.jsonl"), &lines);
    dir
}

/// A `meal distill` run folder with teachers.json and a torn last metrics line.
fn distill_run(root: &Path) -> PathBuf {
    let dir = root.join(DISTILL_RUN);
    std::fs::create_dir_all(&dir).unwrap();
    write(
        &dir.join("config.toml"),
        "student = \"resnet8\"\nepochs = 6\nteachers = [{ checkpoint = \"runs/a/best.ckpt\" }, \
         { checkpoint = \"runs/b/best.ckpt\" }]\n\n[data]\npath = \"data/cifar10-mini\"\n",
    );
    write(
        &dir.join("teachers.json"),
        r#"{ "teachers": [
              ["resnet20", "resnet20:runs/teacher-a/best.ckpt", {"top1": 81.25, "top5": 98.5, "loss": 0.61, "images": 1000}],
              ["vgg8", "vgg8:runs/teacher-b/best.ckpt", {"top1": 79.0, "top5": 97.25, "loss": 0.7, "images": 1000}]
            ],
            "ensemble": {"top1": 84.5, "top5": 99.0, "loss": 0.5, "images": 1000} }"#,
    );
    let mut lines = String::new();
    for e in 0..5 {
        let t = e as f64;
        lines += &format!(
            "{{\"epoch\":{e},\"lr\":{},\"d_lr\":{},\"sim_loss\":{},\"d_loss\":{},\"ce_loss\":0.0,\
             \"d_acc_student\":{},\"d_acc_teacher\":{},\"train_acc\":{},\"test_top1\":{},\
             \"test_top5\":{},\"test_loss\":{},\"images_per_sec\":{},\"epoch_seconds\":{}}}\n",
            0.05 / (1.0 + t),
            0.001 / (1.0 + t),
            1.5 - 0.2 * t,
            0.7 - 0.01 * t,
            50.0 + t,
            60.0 - t,
            30.0 + 5.0 * t,
            [31.0, 45.5, 52.0, 61.75, 58.0][e],
            85.0 + t,
            1.8 - 0.2 * t,
            300.0,
            30.0
        );
    }
    lines += "{\"epoch\":5,\"lr\":0.0";
    write(&dir.join("metrics.jsonl"), &lines);
    dir
}

fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<figure id=\"chart-{id}\""))
        .unwrap_or_else(|| panic!("no chart `{id}` in the page"));
    let end = start + html[start..].find("</figure>").expect("closed figure");
    &html[start..end]
}

fn check_png(path: &Path) -> image::RgbImage {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
        .to_rgb8();
    assert_eq!(
        img.dimensions(),
        (report::chart::WIDTH, report::chart::HEIGHT)
    );
    img
}

fn has_color(img: &image::RgbImage, c: (u8, u8, u8)) -> bool {
    img.pixels().any(|p| p.0 == [c.0, c.1, c.2])
}

const EXPECTED_CHARTS: [&str; 11] = [
    "test_top1",
    "test_top5",
    "train_acc",
    "train_loss",
    "sim_loss",
    "d_loss",
    "d_acc",
    "test_loss",
    "lr",
    "d_lr",
    "images_per_sec",
];

#[test]
fn report_of_a_train_and_a_distill_run() {
    let tmp = tempfile::tempdir().unwrap();
    let train = train_run(tmp.path(), 12);
    let distill = distill_run(tmp.path());
    let out = tmp.path().join("out");
    let outcome = report::write_report(&[train.clone(), distill.clone()], Some(&out)).unwrap();
    assert_eq!(outcome.runs, vec![TRAIN_RUN, DISTILL_RUN]);
    assert_eq!(outcome.html, out.join("report.html"));
    let html = std::fs::read_to_string(&outcome.html).unwrap();

    // Self-contained: no scripts, stylesheets or images from elsewhere.
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"), "the page has a script");
    assert!(!html.contains("<link"), "the page links a resource");
    assert!(
        !html.contains("src=\"http"),
        "the page loads from the network"
    );
    assert!(html.contains("<style>"));

    // Every run by name, with its kind and model, in the summary.
    for name in [TRAIN_RUN, DISTILL_RUN] {
        assert!(html.matches(name).count() >= 3, "{name} is missing");
    }
    let summary = &html[html.find("<table class=\"summary\"").unwrap()..];
    let summary = &summary[..summary.find("</table>").unwrap()];
    assert!(summary.contains("resnet20") && summary.contains("resnet8"));
    assert!(summary.contains("12 / 12"), "train epochs done / planned");
    assert!(
        summary.contains("5 / 6"),
        "the torn 6th distill line is skipped"
    );
    assert!(summary.contains("84.50%"), "ensemble top-1 column");
    // Best top-1 of the distill run: 61.75 at epoch 4 (1-based); last 58.00.
    assert!(summary.contains("61.75% (4)") && summary.contains("58.00%"));
    // Train run: best is the last epoch, 35 + 4.5·11 = 84.5 at epoch 12.
    assert!(summary.contains("84.50% (12)"));
    assert!(
        html.contains("line 6: not a JSON object"),
        "warning for the torn line"
    );

    // A chart per metric; the all-zero ce_loss gets none.
    for id in EXPECTED_CHARTS {
        let fig = figure(&html, id);
        assert!(
            fig.contains("<svg") && fig.contains("viewBox"),
            "{id} has no SVG"
        );
        assert!(
            fig.contains(&format!("{id}.png")),
            "{id} does not link its PNG"
        );
    }
    assert!(!html.contains("chart-ce_loss"));
    assert_eq!(outcome.pngs.len(), EXPECTED_CHARTS.len());

    // The accuracy charts show every run, each teacher and the ensemble.
    let top1 = figure(&html, "test_top1");
    for text in [
        TRAIN_RUN,
        DISTILL_RUN,
        "teacher-a (resnet20) 81.25%",
        "teacher-b (vgg8) 79.00%",
        "ensemble of 2 84.50%",
    ] {
        assert!(top1.contains(text), "test_top1 chart lacks `{text}`");
    }
    let top5 = figure(&html, "test_top5");
    assert!(top5.contains("98.50%") && top5.contains("ensemble of 2 99.00%"));
    // Charts of distillation-only metrics name only the distillation run.
    let sim = figure(&html, "sim_loss");
    assert!(sim.contains(DISTILL_RUN) && !sim.contains(TRAIN_RUN));
    let d_acc = figure(&html, "d_acc");
    assert!(d_acc.contains("on student outputs") && d_acc.contains("on teacher outputs"));

    // The teacher table.
    let teachers = &html[html.find("id=\"teachers\"").expect("teacher section")..];
    for text in [
        "teacher-a",
        "vgg8",
        "81.25%",
        "97.25%",
        "ensemble of 2",
        "84.50%",
    ] {
        assert!(teachers.contains(text), "teacher table lacks `{text}`");
    }

    // The PNGs exist, decode, and show the runs' colours and the black ensemble line.
    for id in EXPECTED_CHARTS {
        let png = out.join(format!("{id}.png"));
        assert!(outcome.pngs.contains(&png));
        let img = check_png(&png);
        let c0 = report::run_color(0);
        assert!(
            img.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 5000,
            "{id}.png is nearly blank"
        );
        if !["sim_loss", "d_loss", "d_acc", "d_lr"].contains(&id) {
            assert!(has_color(&img, (c0.0, c0.1, c0.2)), "{id}.png lacks run 1");
        }
    }
    let img = check_png(&out.join("test_top1.png"));
    let c1 = report::run_color(1);
    assert!(
        has_color(&img, (c1.0, c1.1, c1.2)),
        "test_top1.png lacks run 2"
    );
    assert!(
        has_color(&img, (0, 0, 0)),
        "test_top1.png lacks the ensemble line"
    );
}

#[test]
fn teacher_lines_are_drawn_at_their_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = vec![
        report::load_run(&train_run(tmp.path(), 3)).unwrap(),
        report::load_run(&distill_run(tmp.path())).unwrap(),
    ];
    let charts: Vec<Chart> = report::build_charts(&runs);
    let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, EXPECTED_CHARTS);
    let top1 = &charts[0];
    let ys: Vec<f64> = top1.hlines.iter().map(|h| h.y).collect();
    assert_eq!(ys, vec![81.25, 79.0, 84.5]);
    // One curve per run, at the logged values, epochs 1-based.
    assert_eq!(top1.lines.len(), 2);
    assert_eq!(top1.lines[0].points, vec![(1, 35.0), (2, 39.5), (3, 44.0)]);
    assert_eq!(top1.lines[1].points[3], (4, 61.75));
    assert!(top1.lines[0].color != top1.lines[1].color);
    // Only the accuracy charts carry teacher lines.
    assert!(charts[2..].iter().all(|c| c.hlines.is_empty()));
}

#[test]
fn cli_expands_a_folder_of_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    train_run(&runs, 2);
    distill_run(&runs);
    std::fs::create_dir_all(runs.join("not-a-run")).unwrap();
    let out = tmp.path().join("rep");
    let o = Command::new(env!("CARGO_BIN_EXE_meal"))
        .args(["report"])
        .arg(&runs)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("2 runs") && stdout.contains(DISTILL_RUN),
        "{stdout}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains(TRAIN_RUN) && html.contains(DISTILL_RUN));

    // A folder with no run in it is refused, naming it.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_meal"))
        .arg("report")
        .arg(&empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("empty") && stderr.contains("not a run folder"),
        "{stderr}"
    );
}

/// The quickstart's held-out comparison, written by hand: 1,000 test + 4,000 training images.
fn held_out(train_images: usize) -> meal::quickstart::HeldOut {
    use meal::train::evaluate::PairedDifference;
    let d = |images, points, low, high| PairedDifference {
        images,
        points,
        low,
        high,
    };
    meal::quickstart::HeldOut {
        test_images: 1000,
        train_images,
        top1: vec![
            ("student (labels)".into(), 60.124),
            ("student (MEAL)".into(), 62.006),
        ],
        vs_labels: vec![("student (MEAL)".into(), d(5000, 1.88, 1.35, 2.41))],
        test_vs_labels: vec![("student (MEAL)".into(), d(1000, -0.2, -1.9, 1.5))],
    }
}

#[test]
fn the_quickstart_report_leads_with_the_held_out_comparison() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = [train_run(tmp.path(), 3), distill_run(tmp.path())];
    let out = tmp.path().join("out");
    let h = held_out(4000);
    let outcome = report::write_report_with(&runs, Some(&out), Some(&h)).unwrap();
    let html = std::fs::read_to_string(&outcome.html).unwrap();
    let start = html.find("id=\"held-out\"").expect("a held-out section");
    let summary = html.find("id=\"summary\"").unwrap();
    assert!(start < summary, "the held-out comparison comes first");
    let section = &html[start..summary];
    for text in [
        "On all 5000 images no student trained on (1000 test + 4000 training images outside the subset)",
        "<th class=\"num\">Top-1, all 5000 held-out</th>",
        "<td>student (labels)</td><td class=\"num\">60.12%</td><td class=\"num\">baseline</td>",
        "<td>student (MEAL)</td><td class=\"num\">62.01%</td>\
         <td class=\"num\">+1.88 points (95% interval +1.35 to +2.41)</td>",
        "-0.20 points (95% interval -1.90 to +1.50, within the images&#39; sampling noise)",
        "<strong>MEAL against labels alone</strong>, same student and budget, on all 5000 \
         held-out images: +1.88 points (95% interval +1.35 to +2.41).",
    ] {
        assert!(section.contains(text), "`{text}` not in:\n{section}");
    }
    // Students that trained on every training image: no section, as in any other report.
    let outcome = report::write_report_with(&runs, Some(&out), Some(&held_out(0))).unwrap();
    let html = std::fs::read_to_string(&outcome.html).unwrap();
    assert!(!html.contains("id=\"held-out\""));
    let outcome = report::write_report(&runs, Some(&out)).unwrap();
    let html = std::fs::read_to_string(&outcome.html).unwrap();
    assert!(!html.contains("id=\"held-out\"") && html.contains("id=\"summary\""));
}
