//! The quickstart's held-out comparison at the top of its report: each student's top-1 on every
//! image none of them trained on, and each distilled student's margin over the labels one with
//! its 95% interval. The run folders cannot carry it (it pairs the students image by image), and
//! it leads the page because the test split alone is too few images to tell the margin apart.

use std::fmt::Write;

use serde::Serialize;

use super::esc;
use crate::train::evaluate::PairedDifference;

/// The section, or nothing when the students trained on every training image (then the test
/// split is all there is, and the summary table already shows it).
pub(crate) fn section(out: &mut String, h: &HeldOut) {
    if h.train_images == 0 {
        return;
    }
    let _ = write!(
        out,
        "<h2 id=\"held-out\">Held-out comparison</h2>\n<p class=\"meta\">On all {} images no \
         student trained on ({} test + {} training images outside the subset). The test split \
         alone ({} images, the runs' test top-1 below) is too few to tell a margin of a point \
         or two from which images were drawn.</p>\n",
        h.images(),
        h.test_images,
        h.train_images,
        h.test_images
    );
    let _ = write!(
        out,
        "<table class=\"held-out\"><thead><tr><th>Student</th>\
         <th class=\"num\">Top-1, all {} held-out</th>\
         <th class=\"num\">Against labels there (95% interval)</th>\
         <th class=\"num\">Against labels, {} test images alone</th></tr></thead><tbody>",
        h.images(),
        h.test_images
    );
    for (role, top1) in &h.top1 {
        let against = |list: &[(String, crate::train::evaluate::PairedDifference)]| {
            list.iter()
                .find(|(r, _)| r == role)
                .map_or_else(|| "baseline".to_string(), |(_, d)| margin_text(d))
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{top1:.2}%</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>",
            esc(role),
            esc(&against(&h.vs_labels)),
            esc(&against(&h.test_vs_labels)),
        );
    }
    out.push_str("</tbody></table>\n");
    for (role, d) in &h.vs_labels {
        let _ = writeln!(
            out,
            "<p class=\"margin\"><strong>{} against labels alone</strong>, same student and \
             budget, on all {} held-out images: {}.</p>",
            esc(short_role(role)),
            h.images(),
            esc(&margin_text(d))
        );
    }
    out.push_str(
        "<p class=\"meta\">The intervals cover which images were tested, not the training runs' \
         randomness: rerun the quickstart with --seed N to see that.</p>\n",
    );
}

/// The students compared on every image none of them trained on: the test split, then the
/// training images outside `train_subset`. On the embedded data that is 1,000 + 4,000 images;
/// the test split alone is too few to tell a one-point margin from which images were drawn
/// (README, quickstart section).
#[derive(Debug, Clone, Serialize)]
pub struct HeldOut {
    pub test_images: usize,
    /// Training images outside the students' subset (0 when they trained on all of them).
    pub train_images: usize,
    /// Each student's role and top-1 (%) on all held-out images.
    pub top1: Vec<(String, f64)>,
    /// Each distilled student against the labels one on all held-out images, with its
    /// interval: the margin the quickstart leads with when there are training images left over.
    pub vs_labels: Vec<(String, PairedDifference)>,
    /// The same on the test split alone (the table's test top-1 column).
    pub test_vs_labels: Vec<(String, PairedDifference)>,
}

impl HeldOut {
    pub fn images(&self) -> usize {
        self.test_images + self.train_images
    }
}

/// A margin with its interval, and whether the interval says anything: "+1.88 points (95%
/// interval +1.35 to +2.41)".
pub fn margin_text(d: &PairedDifference) -> String {
    format!(
        "{:+.2} points (95% interval {:+.2} to {:+.2}{})",
        d.points,
        d.low,
        d.high,
        if d.beyond_sampling_noise() {
            ""
        } else {
            ", within the images' sampling noise"
        }
    )
}

/// "student (MEAL)" -> "MEAL".
pub fn short_role(role: &str) -> &str {
    role.strip_prefix("student (")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(role)
}
