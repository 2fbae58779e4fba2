//! The quickstart's margin is measured on every image no student trained on, with an interval
//! from the per-image differences: `paired_difference` against values worked by hand, and one
//! short quickstart whose held-out check covers the test split plus exactly the training
//! images outside the subset, and agrees with the table.

use std::path::PathBuf;

use meal::quickstart::{QuickstartConfig, render, run};
use meal::train::evaluate::paired_difference;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn paired_difference_matches_the_hand_computation() {
    // Differences +1, 0, 0, +1: mean 0.5, sample variance (2 - 4·0.25)/3 = 1/3, standard
    // error sqrt(1/12) = 0.288675, half-width 1.96 × that = 0.565806.
    let a = [true, true, false, true];
    let b = [false, true, false, false];
    let d = paired_difference(&a, &b);
    assert_eq!(d.images, 4);
    assert!((d.points - 50.0).abs() < 1e-9, "{d:?}");
    assert!((d.low - (50.0 - 56.5806)).abs() < 1e-3, "{d:?}");
    assert!((d.high - (50.0 + 56.5806)).abs() < 1e-3, "{d:?}");
    assert!(!d.beyond_sampling_noise());
    // Swapping the models mirrors the interval.
    let r = paired_difference(&b, &a);
    assert!((r.points + d.points).abs() < 1e-9 && (r.low + d.high).abs() < 1e-9);
}

#[test]
fn identical_models_differ_by_exactly_nothing() {
    let a: Vec<bool> = (0..500).map(|i| i % 3 == 0).collect();
    let d = paired_difference(&a, &a);
    assert_eq!((d.points, d.low, d.high), (0.0, 0.0, 0.0));
    assert!(!d.beyond_sampling_noise());
}

#[test]
fn a_consistent_margin_on_many_images_is_beyond_sampling_noise() {
    // B is right on 40% of 5,000 images; A on the same ones and 100 more (+2 points): the
    // differences are 100 ones and 4,900 zeros, standard error sqrt(0.02·0.98/4999).
    let b: Vec<bool> = (0..5000).map(|i| i % 5 < 2).collect();
    let mut a = b.clone();
    for x in a.iter_mut().filter(|x| !**x).take(100) {
        *x = true;
    }
    let d = paired_difference(&a, &b);
    let half = 196.0 * (0.02f64 * 0.98 / 4999.0).sqrt();
    assert!((d.points - 2.0).abs() < 1e-9, "{d:?}");
    assert!((d.high - d.points - half).abs() < 1e-6, "{d:?}");
    assert!(d.beyond_sampling_noise(), "{d:?}");
}

#[test]
#[should_panic(expected = "different lengths")]
fn unpaired_hits_are_refused() {
    paired_difference(&[true], &[true, false]);
}

#[test]
#[should_panic(expected = "at least 2 images")]
fn one_image_is_no_comparison() {
    paired_difference(&[true], &[false]);
}

#[test]
fn quickstart_compares_the_students_on_every_image_they_never_trained_on() {
    meal::progress::set_quiet(true);
    let out_dir = std::env::temp_dir().join(format!("meal-qs-held-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let q = QuickstartConfig {
        data: root().join("data/cifar10-mini"),
        out_dir: out_dir.clone(),
        teachers: vec![root().join("data/teachers/resnet20.ckpt")],
        student: "resnet8".into(),
        student_epochs: 1,
        train_subset: Some(200),
        test_subset: Some(300),
        seed: 0,
        kd: false,
        ..QuickstartConfig::default()
    };
    let s = run(&q).unwrap();
    let h = &s.held_out;
    // 300 test images, and the 5,000 embedded training images less the 20 per class trained on.
    assert_eq!((h.test_images, h.train_images), (300, 4800));
    let roles: Vec<&str> = h.top1.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["student (labels)", "student (MEAL)"]);
    let table = |role: &str| s.rows.iter().find(|r| r.role == role).unwrap().top1;
    // On the test split the paired margin is the table's margin.
    let (role, on_test) = &h.test_vs_labels[0];
    assert_eq!(role, "student (MEAL)");
    assert_eq!(on_test.images, 300);
    let table_margin = table("student (MEAL)") - table("student (labels)");
    assert!(
        (on_test.points - table_margin).abs() < 1e-9,
        "{on_test:?} vs {table_margin}"
    );
    // On all held-out images it is the difference of the two accuracies there.
    let (_, all) = &h.vs_labels[0];
    assert_eq!(all.images, 5100);
    assert!(
        (all.points - (h.top1[1].1 - h.top1[0].1)).abs() < 1e-9,
        "{all:?}"
    );
    for d in [on_test, all] {
        assert!(d.low <= d.points && d.points <= d.high, "{d:?}");
    }
    // More images, a narrower interval.
    assert!(
        all.high - all.low < on_test.high - on_test.low,
        "{all:?} {on_test:?}"
    );
    // One student architecture, one timing: the rows cannot disagree about its speed.
    let ms: Vec<f64> = s
        .rows
        .iter()
        .filter(|r| r.role.starts_with("student"))
        .map(|r| r.latency_ms)
        .collect();
    assert!(ms.len() == 2 && ms[0] == ms[1] && ms[0] > 0.0, "{ms:?}");
    let text = render(&s);
    for needle in [
        "on the 300 test images",
        "On all 5100 images no student trained on (300 test + 4800 training images outside the subset)",
        "MEAL against labels there",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    // The table carries each student's accuracy on all held-out images; teachers and the
    // ensemble, which were not tested there, show a dash rather than a number.
    let row = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap()
            .to_string()
    };
    // The held-out column, which can tell a margin apart, comes before the test split's.
    assert!(
        row("| model |").ends_with("| top-1, all 5100 held-out | test top-1 |"),
        "{text}"
    );
    for (role, top1) in &h.top1 {
        let r = row(&format!("| {role} |"));
        let test = table(role);
        assert!(r.ends_with(&format!(" | {top1:.2}% | {test:.2}% |")), "{r}");
    }
    for start in ["| teacher |", "| ensemble"] {
        let r = row(start);
        assert!(r.contains(" | — | ") && r.ends_with("% |"), "{text}");
    }
    // The summary lines lead with the held-out margin and its interval; the test split's follows.
    let pos = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
    };
    let held_out_margin = format!(
        "MEAL against labels there, same student and budget: {:+.2} points (95% interval {:+.2} \
         to {:+.2}",
        all.points, all.low, all.high
    );
    let test_margin = format!(
        "MEAL against labels on the 300 test images alone: {:+.2} points (95% interval {:+.2} to \
         {:+.2}",
        on_test.points, on_test.low, on_test.high
    );
    assert!(
        pos("On all 5100 images") < pos(&held_out_margin)
            && pos(&held_out_margin) < pos("Top-1 there: labels")
            && pos("Top-1 there: labels") < pos(&test_margin),
        "{text}"
    );
    // summary.md holds the same text, and summary.json leads with the held-out comparison.
    let md = std::fs::read_to_string(s.run_dir.join("summary.md")).unwrap();
    assert_eq!(md, text);
    let json = std::fs::read_to_string(s.run_dir.join("summary.json")).unwrap();
    let first_key = |from: usize| {
        let rest = &json[from..];
        let start = rest.find('"').unwrap() + 1;
        rest[start..start + rest[start..].find('"').unwrap()].to_string()
    };
    assert_eq!(first_key(0), "held_out", "{json}");
    assert!(
        json.find("\"vs_labels\"").unwrap() < json.find("\"test_vs_labels\"").unwrap(),
        "{json}"
    );
    // The HTML report shows it too, before the runs' summary: each student's held-out top-1
    // and the margin with its interval.
    let html = std::fs::read_to_string(s.run_dir.join("report/report.html")).unwrap();
    let section = html
        .find("id=\"held-out\"")
        .unwrap_or_else(|| panic!("no held-out section in the report"));
    assert!(section < html.find("id=\"summary\"").unwrap());
    let section = &html[section..html.find("id=\"summary\"").unwrap()];
    assert!(
        section.contains("On all 5100 images no student trained on"),
        "{section}"
    );
    for (role, top1) in &h.top1 {
        assert!(
            section.contains(&format!("<td>{role}</td><td class=\"num\">{top1:.2}%</td>")),
            "{role} {top1:.2} missing: {section}"
        );
    }
    let margin = meal::quickstart::margin_text(all);
    assert!(
        section.contains(&format!("on all 5100 held-out images: {margin}.")),
        "{margin} missing: {section}"
    );
    // Students that trained on every training image have no such column.
    let mut all_used = s.clone();
    all_used.held_out.train_images = 0;
    let text = render(&all_used);
    assert!(
        !text.contains("held-out |") && !text.contains(" — |"),
        "{text}"
    );
    for line in text.lines().filter(|l| l.starts_with('|')) {
        assert_eq!(line.matches('|').count(), 7, "{line}");
    }
    // ...and the test split's margin is the one margin they print, as before.
    assert!(
        text.contains(
            "MEAL against labels alone, same student and budget, on the 300 test images: "
        ) && !text.contains("against labels there")
            && !text.contains("Top-1 there"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}
