//! The report page: one HTML file with inline CSS and the charts as inline SVG. No scripts, no
//! web fonts, nothing fetched: it opens the same from a file, a mail attachment or offline.

use std::fmt::Write;

use super::chart::{Chart, HEIGHT, WIDTH};
use super::run::{RunData, RunKind};
use super::{REPORT_FILE, esc, run_color, teacher_short_name};

const CSS: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0 auto; padding: 24px 28px 60px; max-width: 1180px; color: #222; background: #fafafa;
       line-height: 1.45; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
h3 { font-size: 16px; margin: 24px 0 8px; }
.meta { color: #666; font-size: 13px; margin: 0 0 8px; }
table { border-collapse: collapse; background: #fff; font-size: 13.5px; margin: 6px 0 10px; }
th, td { border: 1px solid #ddd; padding: 5px 9px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.ensemble td { font-weight: 600; background: #f6f6f6; }
table.summary td:first-child { white-space: nowrap; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 7px;
          vertical-align: -1px; }
.charts { display: grid; grid-template-columns: 1fr; gap: 18px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 8px 8px 4px; }
figure svg { display: block; width: 100%; max-width: 920px; height: auto; margin: 0 auto; }
figcaption { font-size: 12.5px; color: #666; padding: 2px 4px 4px; }
nav.toc { font-size: 13px; column-count: 3; margin: 4px 0 0; }
nav.toc a { display: block; }
a { color: #1f5fa8; text-decoration: none; }
a:hover { text-decoration: underline; }
pre { background: #fff; border: 1px solid #ddd; padding: 8px 10px; font-size: 12.5px; overflow-x: auto;
      margin: 4px 0 8px; white-space: pre-wrap; overflow-wrap: anywhere; }
details { margin: 6px 0; }
summary { cursor: pointer; font-size: 13.5px; color: #333; }
.warn { color: #8a4b00; font-size: 13px; }
.scroll { max-height: 420px; overflow: auto; display: inline-block; max-width: 100%; }
table.metrics { font-size: 12px; margin: 0; }
table.metrics th, table.metrics td { padding: 3px 6px; }
table.metrics th { position: sticky; top: 0; }
code { font-size: 12.5px; }
"#;

fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "–".into(),
    }
}

fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn swatch(i: usize) -> String {
    let c = run_color(i);
    format!(
        "<span class=\"swatch\" style=\"background:#{:02x}{:02x}{:02x}\"></span>",
        c.0, c.1, c.2
    )
}

/// plotters' SVG document made to scale with the page (its viewBox is kept).
fn inline_svg(svg: &str, title: &str) -> String {
    let body = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    };
    let sized = format!("width=\"{WIDTH}\" height=\"{HEIGHT}\"");
    let body = body.replacen(
        &sized,
        &format!("role=\"img\" aria-label=\"{}\"", esc(title)),
        1,
    );
    if body.contains("viewBox") {
        body
    } else {
        body.replacen("<svg", &format!("<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\""), 1)
    }
}

fn summary_table(out: &mut String, runs: &[RunData]) {
    let any_distill = runs.iter().any(|r| r.kind == RunKind::Distill);
    out.push_str("<table class=\"summary\"><thead><tr><th>Run</th><th>Kind</th><th>Model</th>");
    out.push_str("<th class=\"num\">Epochs</th><th class=\"num\">Best top-1 (epoch)</th>");
    out.push_str("<th class=\"num\">Last top-1</th><th class=\"num\">Last top-5</th>");
    if any_distill {
        out.push_str("<th class=\"num\">Teachers' ensemble top-1</th>");
    }
    out.push_str("<th class=\"num\">img/s</th><th class=\"num\">Time</th></tr></thead><tbody>");
    for (i, r) in runs.iter().enumerate() {
        let s = r.summary();
        let epochs = match r.epochs_planned {
            Some(p) => format!("{} / {p}", s.epochs_done),
            None => s.epochs_done.to_string(),
        };
        let best = match s.best_top1 {
            Some((v, e)) => format!("{v:.2}% ({e})"),
            None => "–".into(),
        };
        let _ = write!(
            out,
            "<tr><td>{}<a href=\"#run-{i}\">{}</a></td><td>{}</td><td>{}</td>\
             <td class=\"num\">{epochs}</td><td class=\"num\">{best}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td>",
            swatch(i),
            esc(&r.name),
            r.kind.name(),
            esc(&r.model),
            num(s.last_top1, 2) + if s.last_top1.is_some() { "%" } else { "" },
            num(s.last_top5, 2) + if s.last_top5.is_some() { "%" } else { "" },
        );
        if any_distill {
            let ens = r
                .teachers
                .as_ref()
                .map(|t| format!("{:.2}%", t.ensemble.top1))
                .unwrap_or_else(|| "–".into());
            let _ = write!(out, "<td class=\"num\">{ens}</td>");
        }
        let _ = write!(
            out,
            "<td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            num(s.images_per_sec, 0),
            s.seconds.map(duration).unwrap_or_else(|| "–".into())
        );
    }
    out.push_str("</tbody></table>\n");
}

fn teachers_section(out: &mut String, runs: &[RunData]) {
    let with: Vec<(usize, &RunData)> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.teachers.is_some())
        .collect();
    if with.is_empty() {
        return;
    }
    out.push_str("<h2 id=\"teachers\">Teachers</h2>\n");
    out.push_str(
        "<p class=\"meta\">Test accuracy of each teacher and of their ensemble (mean of \
         softmaxes), measured once when the distillation started, next to the student's.</p>\n",
    );
    for (i, r) in with {
        let t = r.teachers.as_ref().expect("filtered");
        let _ = write!(out, "<h3>{}{}</h3>", swatch(i), esc(&r.name));
        out.push_str(
            "<table><thead><tr><th>Teacher</th><th>Arch</th><th class=\"num\">Top-1</th>\
             <th class=\"num\">Top-5</th><th class=\"num\">Test loss</th>\
             <th class=\"num\">Images</th></tr></thead><tbody>",
        );
        for teacher in &t.teachers {
            let _ = write!(
                out,
                "<tr><td title=\"{}\">{}</td><td>{}</td><td class=\"num\">{:.2}%</td>\
                 <td class=\"num\">{:.2}%</td><td class=\"num\">{:.4}</td>\
                 <td class=\"num\">{}</td></tr>",
                esc(&teacher.name),
                esc(&teacher_short_name(&teacher.name)),
                esc(&teacher.arch),
                teacher.acc.top1,
                teacher.acc.top5,
                teacher.acc.loss,
                teacher.acc.images
            );
        }
        let _ = write!(
            out,
            "<tr class=\"ensemble\"><td>ensemble of {}</td><td>mean softmax</td>\
             <td class=\"num\">{:.2}%</td><td class=\"num\">{:.2}%</td>\
             <td class=\"num\">{:.4}</td><td class=\"num\">{}</td></tr>",
            t.teachers.len(),
            t.ensemble.top1,
            t.ensemble.top5,
            t.ensemble.loss,
            t.ensemble.images
        );
        let s = r.summary();
        if let Some((best, epoch)) = s.best_top1 {
            let _ = write!(
                out,
                "<tr><td>student (best, epoch {epoch})</td><td>{}</td>\
                 <td class=\"num\">{best:.2}%</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\"></td></tr>",
                esc(&r.model),
                r.epochs
                    .iter()
                    .find(|e| e.epoch == epoch)
                    .and_then(|e| e.get("test_top5"))
                    .map(|v| format!("{v:.2}%"))
                    .unwrap_or_else(|| "–".into()),
                r.epochs
                    .iter()
                    .find(|e| e.epoch == epoch)
                    .and_then(|e| e.get("test_loss"))
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "–".into()),
            );
        }
        out.push_str("</tbody></table>\n");
    }
}

fn charts_section(out: &mut String, charts: &[Chart], svgs: &[String]) {
    out.push_str("<h2 id=\"charts\">Charts</h2>\n");
    if charts.is_empty() {
        out.push_str("<p class=\"warn\">No run has logged an epoch yet: nothing to plot.</p>\n");
        return;
    }
    out.push_str("<nav class=\"toc\">");
    for c in charts {
        let _ = write!(
            out,
            "<a href=\"#chart-{}\">{}</a>",
            esc(&c.id),
            esc(&c.title)
        );
    }
    out.push_str("</nav>\n<div class=\"charts\">\n");
    for (c, svg) in charts.iter().zip(svgs) {
        let _ = writeln!(
            out,
            "<figure id=\"chart-{id}\" data-metric=\"{id}\">{svg}\
             <figcaption>{title} · <a href=\"{id}.png\">{id}.png</a></figcaption></figure>",
            id = esc(&c.id),
            title = esc(&c.title),
            svg = inline_svg(svg, &c.title),
        );
    }
    out.push_str("</div>\n");
}

/// The columns of the per-epoch table: every key any epoch logged, in the order of the first
/// epoch that has them.
fn metric_columns(run: &RunData) -> Vec<String> {
    const ORDER: &[&str] = &[
        "lr",
        "d_lr",
        "train_loss",
        "sim_loss",
        "d_loss",
        "ce_loss",
        "d_acc_student",
        "d_acc_teacher",
        "train_acc",
        "test_top1",
        "test_top5",
        "test_loss",
        "images_per_sec",
        "epoch_seconds",
    ];
    let mut cols: Vec<String> = Vec::new();
    for k in ORDER {
        if run.epochs.iter().any(|e| e.values.contains_key(*k)) {
            cols.push((*k).to_string());
        }
    }
    for e in &run.epochs {
        for k in e.values.keys() {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    cols
}

fn format_metric(key: &str, v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if key.ends_with("lr") {
        // Four significant digits, so that one column reads alike from 0.1 to 0.0001.
        if v == 0.0 {
            "0".into()
        } else if v.abs() < 1e-4 {
            format!("{v:.3e}")
        } else {
            let decimals = (3 - v.abs().log10().floor() as i32).max(0) as usize;
            format!("{v:.decimals$}")
        }
    } else if key == "images_per_sec" || key == "epoch_seconds" {
        format!("{v:.1}")
    } else if key.contains("acc") || key.contains("top") {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn runs_section(out: &mut String, runs: &[RunData]) {
    out.push_str("<h2 id=\"runs\">Runs</h2>\n");
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(
            out,
            "<h3 id=\"run-{i}\">{}{}</h3><p class=\"meta\">{} run of <code>{}</code> in \
             <code>{}</code></p>",
            swatch(i),
            esc(&r.name),
            r.kind.name(),
            esc(&r.model),
            esc(&r.path.display().to_string())
        );
        for w in &r.warnings {
            let _ = write!(out, "<p class=\"warn\">{}</p>", esc(w));
        }
        if let Some(t) = &r.run_text {
            let _ = write!(out, "<pre>{}</pre>", esc(t.trim_end()));
        }
        if let Some(c) = &r.config_text {
            let _ = write!(
                out,
                "<details><summary>config.toml</summary><pre>{}</pre></details>",
                esc(c.trim_end())
            );
        }
        if !r.epochs.is_empty() {
            let cols = metric_columns(r);
            let _ = write!(
                out,
                "<details><summary>metrics per epoch ({} epochs)</summary><div class=\"scroll\">\
                 <table class=\"metrics\"><thead><tr><th class=\"num\">epoch</th>",
                r.epochs.len()
            );
            for c in &cols {
                let _ = write!(out, "<th class=\"num\">{}</th>", esc(c));
            }
            out.push_str("</tr></thead><tbody>");
            for e in &r.epochs {
                let _ = write!(out, "<tr><td class=\"num\">{}</td>", e.epoch);
                for c in &cols {
                    let cell = e
                        .values
                        .get(c)
                        .map(|v| format_metric(c, *v))
                        .unwrap_or_default();
                    let _ = write!(out, "<td class=\"num\">{cell}</td>");
                }
                out.push_str("</tr>");
            }
            out.push_str("</tbody></table></div></details>\n");
        }
    }
}

/// The whole page.
pub fn page(
    runs: &[RunData],
    charts: &[Chart],
    svgs: &[String],
    held_out: Option<&super::held_out::HeldOut>,
) -> String {
    let title = match runs {
        [one] => format!("meal report: {}", one.name),
        _ => format!("meal report: {} runs", runs.len()),
    };
    let mut out = String::with_capacity(64 * 1024 + svgs.iter().map(String::len).sum::<usize>());
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"meal {}\">\n<title>{}</title>\n<style>{CSS}</style>\n\
         </head>\n<body>\n<h1>{}</h1>\n<p class=\"meta\">Generated by meal {} on {} UTC from {} \
         run folder{}. Saved as {REPORT_FILE}; the charts are also PNG files beside it.</p>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&title),
        esc(&title),
        env!("CARGO_PKG_VERSION"),
        pretty_timestamp(&crate::train::run_dir::timestamp()),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    );
    if let Some(h) = held_out {
        super::held_out::section(&mut out, h);
    }
    out.push_str("<h2 id=\"summary\">Summary</h2>\n");
    summary_table(&mut out, runs);
    teachers_section(&mut out, runs);
    charts_section(&mut out, charts, svgs);
    runs_section(&mut out, runs);
    out.push_str("</body>\n</html>\n");
    out
}

/// `YYYYMMDD-HHMMSS` → `YYYY-MM-DD HH:MM:SS`.
fn pretty_timestamp(ts: &str) -> String {
    let b = ts.as_bytes();
    if b.len() == 15 && b[8] == b'-' {
        format!(
            "{}-{}-{} {}:{}:{}",
            &ts[0..4],
            &ts[4..6],
            &ts[6..8],
            &ts[9..11],
            &ts[11..13],
            &ts[13..15]
        )
    } else {
        ts.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_formatting() {
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
        assert_eq!(duration(59.6), "1m 00s");
        assert_eq!(duration(3725.0), "1h 02m");
        assert_eq!(pretty_timestamp("20261128-101112"), "2026-11-28 10:11:12");
        assert_eq!(format_metric("d_lr", 0.0001), "0.0001000");
        assert_eq!(format_metric("d_lr", 0.000999), "0.0009990");
        assert_eq!(format_metric("lr", 0.05), "0.05000");
        assert_eq!(format_metric("lr", 2e-6), "2.000e-6");
        assert_eq!(format_metric("test_top1", 91.234), "91.23");
    }
}
