//! Line charts drawn with plotters, once as SVG (text as `<text>` elements, for the HTML page)
//! and once as PNG (text rasterised with the Go font shipped in `fonts/`, so no system font is
//! needed). The legend has its own panel right of the plot, so it never hides a curve.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// Pixel size of every chart.
pub const WIDTH: u32 = 920;
pub const HEIGHT: u32 = 400;
/// Width of the legend panel at the right.
const LEGEND_WIDTH: u32 = 250;
const FONT_FAMILY: &str = "sans-serif";
static FONT: &[u8] = include_bytes!("fonts/Go-Regular.ttf");

/// Registers the shipped font under the family every chart uses.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Other(
            "report: the embedded chart font is invalid".into(),
        ))
    }
}

/// How a line is stroked: solid, or dashed with (dash, gap) pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed(i32, i32),
}

/// A curve over epochs.
#[derive(Debug, Clone)]
pub struct Line {
    pub color: RGBColor,
    pub stroke: Stroke,
    pub width: u32,
    /// Draw a dot at every point (short runs, where a line alone may be invisible).
    pub markers: bool,
    pub points: Vec<(i32, f64)>,
}

/// A horizontal reference line (a teacher's or the ensemble's accuracy).
#[derive(Debug, Clone)]
pub struct HLine {
    pub color: RGBColor,
    pub stroke: Stroke,
    pub width: u32,
    pub y: f64,
}

/// One row of the legend panel: a heading (no sample line) or a sample line and its label.
#[derive(Debug, Clone)]
pub enum LegendItem {
    Heading(String),
    Entry {
        color: RGBColor,
        stroke: Stroke,
        width: u32,
        label: String,
        /// Appended to the label and never shortened (e.g. an accuracy).
        suffix: String,
    },
}

#[derive(Debug, Clone)]
pub struct Chart {
    /// File stem and HTML anchor, e.g. `test_top1`.
    pub id: String,
    pub title: String,
    pub y_desc: String,
    /// Values are percentages: the axis is clipped to [0, 100].
    pub percent: bool,
    /// The y axis starts at zero (learning rate, throughput).
    pub from_zero: bool,
    pub lines: Vec<Line>,
    pub hlines: Vec<HLine>,
    pub legend: Vec<LegendItem>,
}

impl Chart {
    fn x_range(&self) -> (i32, i32) {
        let xs = self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
        let (lo, hi) = xs.fold((i32::MAX, i32::MIN), |(a, b), x| (a.min(x), b.max(x)));
        if lo > hi {
            (0, 1)
        } else if lo == hi {
            (lo - 1, hi + 1)
        } else {
            (lo, hi)
        }
    }

    fn y_range(&self) -> (f64, f64) {
        let ys = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .chain(self.hlines.iter().map(|h| h.y))
            .filter(|y| y.is_finite());
        let (mut lo, mut hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
        if lo > hi {
            return (0.0, 1.0);
        }
        if self.from_zero {
            lo = lo.min(0.0);
        }
        let span = hi - lo;
        let pad = if span > 0.0 {
            span * 0.06
        } else if self.percent {
            1.0
        } else {
            (hi.abs() * 0.1).max(1e-6)
        };
        if !(self.from_zero && lo == 0.0) {
            lo -= pad;
        }
        hi += pad;
        if self.percent {
            lo = lo.max(0.0);
            hi = hi.min(100.0);
            if hi <= lo {
                hi = lo + 1.0;
            }
        }
        (lo, hi)
    }
}

/// Tick label for `v` on an axis spanning `span`.
fn tick(v: f64, span: f64, max_abs: f64) -> String {
    if max_abs > 0.0 && max_abs < 1e-2 {
        if v.abs() < max_abs * 1e-9 {
            return "0".into();
        }
        return format!("{v:.1e}");
    }
    let step = span / 8.0;
    let decimals = if step > 0.0 {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    } else {
        2
    };
    format!("{v:.decimals$}")
}

fn style(color: RGBColor, width: u32) -> ShapeStyle {
    ShapeStyle {
        color: color.to_rgba(),
        filled: false,
        stroke_width: width,
    }
}

type DrawResult<E> = std::result::Result<(), DrawingAreaErrorKind<E>>;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
) -> DrawResult<DB::ErrorType> {
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    let (x0, x1) = chart.x_range();
    let (y0, y1) = chart.y_range();
    let text = RGBColor(34, 34, 34);
    let mut cc = ChartBuilder::on(&plot)
        .caption(&chart.title, (FONT_FAMILY, 19).into_font().color(&text))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(68)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let span = y1 - y0;
    let max_abs = y0.abs().max(y1.abs());
    let y_fmt = |y: &f64| tick(*y, span, max_abs);
    let x_fmt = |x: &i32| x.to_string();
    cc.configure_mesh()
        .x_desc("epoch")
        .y_desc(&chart.y_desc)
        .x_labels(((x1 - x0 + 1) as usize).clamp(2, 12))
        .y_labels(8)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FONT_FAMILY, 13).into_font().color(&text))
        .axis_desc_style((FONT_FAMILY, 14).into_font().color(&text))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(RGBColor(244, 244, 244))
        .axis_style(RGBColor(120, 120, 120))
        .draw()?;

    for h in &chart.hlines {
        let pts = vec![(x0, h.y), (x1, h.y)];
        stroke_line(&mut cc, pts, h.color, h.stroke, h.width)?;
    }
    for line in &chart.lines {
        stroke_line(
            &mut cc,
            line.points.clone(),
            line.color,
            line.stroke,
            line.width,
        )?;
        if line.markers {
            cc.draw_series(
                line.points
                    .iter()
                    .map(|&p| Circle::new(p, 3, line.color.filled())),
            )?;
        }
    }
    draw_legend(&legend, &chart.legend, text)?;
    root.present()
}

fn stroke_line<DB: DrawingBackend>(
    cc: &mut ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordi32, plotters::coord::types::RangedCoordf64>,
    >,
    points: Vec<(i32, f64)>,
    color: RGBColor,
    stroke: Stroke,
    width: u32,
) -> DrawResult<DB::ErrorType> {
    match stroke {
        Stroke::Solid => {
            cc.draw_series(LineSeries::new(points, style(color, width)))?;
        }
        Stroke::Dashed(dash, gap) => {
            cc.draw_series(DashedLineSeries::new(
                points,
                dash,
                gap,
                style(color, width),
            ))?;
        }
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    items: &[LegendItem],
    text: RGBColor,
) -> DrawResult<DB::ErrorType> {
    let entry_font = (FONT_FAMILY, 13).into_font().color(&text);
    let heading_font = (FONT_FAMILY, 13)
        .into_font()
        .color(&RGBColor(110, 110, 110));
    let left = 6;
    let sample = 30;
    let max_text = LEGEND_WIDTH as i32 - left - sample - 16;
    let mut y = 44;
    for item in items {
        if y > HEIGHT as i32 - 12 {
            break;
        }
        match item {
            LegendItem::Heading(h) => {
                y += 4;
                let pos = entry_style_pos(&heading_font);
                area.draw(&Text::new(h.to_uppercase(), (left, y), pos))?;
            }
            LegendItem::Entry {
                color,
                stroke,
                width,
                label,
                suffix,
            } => {
                let s = style(*color, *width);
                match stroke {
                    Stroke::Solid => {
                        area.draw(&PathElement::new(vec![(left, y), (left + sample, y)], s))?;
                    }
                    Stroke::Dashed(dash, gap) => {
                        let mut x = left;
                        while x < left + sample {
                            let end = (x + dash).min(left + sample);
                            area.draw(&PathElement::new(vec![(x, y), (end, y)], s))?;
                            x = end + gap;
                        }
                    }
                }
                let suffix_width = area
                    .estimate_text_size(suffix, &entry_font)
                    .map(|(w, _)| w as i32)
                    .unwrap_or(0);
                let label = fit(area, label, &entry_font, max_text - suffix_width) + suffix;
                let pos = entry_style_pos(&entry_font);
                area.draw(&Text::new(label, (left + sample + 8, y), pos))?;
            }
        }
        y += 20;
    }
    Ok(())
}

fn entry_style_pos<'a>(font: &TextStyle<'a>) -> TextStyle<'a> {
    font.clone().pos(Pos::new(HPos::Left, VPos::Center))
}

/// `label`, shortened with an ellipsis until it is at most `max` pixels wide.
fn fit<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    label: &str,
    font: &TextStyle,
    max: i32,
) -> String {
    let width = |s: &str| {
        area.estimate_text_size(s, font)
            .map(|(w, _)| w as i32)
            .unwrap_or(s.chars().count() as i32 * 7)
    };
    if width(label) <= max {
        return label.to_string();
    }
    let mut chars: Vec<char> = label.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let s: String = chars.iter().collect::<String>() + "…";
        if width(&s) <= max {
            return s;
        }
    }
    "…".into()
}

fn draw_error(chart: &Chart, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("report: cannot draw chart `{}`: {e}", chart.id))
}

/// The chart as a standalone SVG document.
pub fn render_svg(chart: &Chart) -> Result<String> {
    register_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, chart).map_err(|e| draw_error(chart, e))?;
    }
    Ok(svg)
}

/// The chart as an RGB image of `WIDTH × HEIGHT`.
pub fn render_rgb(chart: &Chart) -> Result<Vec<u8>> {
    register_font()?;
    let mut buf = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let backend = super::png::PngBackend::new(&mut buf, (WIDTH, HEIGHT), FONT)
            .map_err(|e| draw_error(chart, e))?;
        let root = backend.into_drawing_area();
        draw(&root, chart).map_err(|e| draw_error(chart, e))?;
    }
    Ok(buf)
}

/// Draws the chart and writes it as a PNG file.
pub fn write_png(chart: &Chart, path: &Path) -> Result<()> {
    let buf = render_rgb(chart)?;
    image::save_buffer_with_format(
        path,
        &buf,
        WIDTH,
        HEIGHT,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::file(path, format!("cannot write PNG: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_pick_sensible_precision() {
        assert_eq!(tick(80.0, 40.0, 100.0), "80");
        assert_eq!(tick(0.05, 0.1, 0.1), "0.05");
        assert_eq!(tick(0.05, 0.05, 0.1), "0.050");
        assert_eq!(tick(0.0005, 0.001, 0.001), "5.0e-4");
        assert_eq!(tick(0.0, 0.001, 0.001), "0");
    }

    #[test]
    fn ranges_pad_and_clip() {
        let chart = Chart {
            id: "t".into(),
            title: "t".into(),
            y_desc: "%".into(),
            percent: true,
            from_zero: false,
            lines: vec![Line {
                color: BLACK,
                stroke: Stroke::Solid,
                width: 2,
                markers: false,
                points: vec![(1, 50.0), (2, 99.0)],
            }],
            hlines: vec![],
            legend: vec![],
        };
        assert_eq!(chart.x_range(), (1, 2));
        let (lo, hi) = chart.y_range();
        assert!(lo < 50.0 && lo > 40.0 && hi == 100.0, "{lo} {hi}");
    }
}
