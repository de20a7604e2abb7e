//! SVG charts drawn on the server: no JavaScript, no chart library.

use std::fmt::Write as _;

use super::html::esc;
use crate::state::usage::day_text;

const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

/// A bar per day, stacked by series (a user each), with a legend.
pub fn stacked_days(days: &[i64], series: &[(String, Vec<f64>)]) -> String {
    let (w, h, left, bottom, top) = (760.0, 240.0, 48.0, 28.0, 12.0);
    let plot_h = h - bottom - top;
    let totals: Vec<f64> = (0..days.len())
        .map(|d| {
            series
                .iter()
                .map(|(_, v)| v.get(d).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let max = nice(totals.iter().copied().fold(0.0, f64::max));
    let slot = (w - left - 8.0) / days.len().max(1) as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"GPU-hours per user per day\">"
    );
    // The axis and its top label.
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" class=\"axis\"/>\
         <line x1=\"{left}\" y1=\"{0}\" x2=\"{}\" y2=\"{0}\" class=\"axis\"/>\
         <text x=\"{}\" y=\"{}\" class=\"tick\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" class=\"tick\" text-anchor=\"end\">0</text>",
        h - bottom,
        w - 8.0,
        left - 4.0,
        top + 4.0,
        fmt_hours(max),
        left - 4.0,
        h - bottom,
    );
    for (d, day) in days.iter().enumerate() {
        let x = left + d as f64 * slot + slot * 0.15;
        let mut y = h - bottom;
        for (i, (user, values)) in series.iter().enumerate() {
            let v = values.get(d).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let bar = v / max * plot_h;
            y -= bar;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"{}\"><title>{} {}: {} GPU-hours</title></rect>",
                slot * 0.7,
                PALETTE[i % PALETTE.len()],
                esc(user),
                day_text(*day),
                fmt_hours(v)
            );
        }
        if d % 2 == 0 || days.len() <= 7 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
                x + slot * 0.35,
                h - bottom + 16.0,
                &day_text(*day)[5..]
            );
        }
    }
    svg += "</svg>";
    let legend: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, (user, values))| {
            format!(
                // A class, not a style attribute: the page's CSP allows no inline styles.
                "<span class=\"key\"><i class=\"swatch c{0}\"></i>{1} {2} h</span>",
                i % PALETTE.len(),
                esc(user),
                fmt_hours(values.iter().sum())
            )
        })
        .collect();
    if series.is_empty() {
        return format!("{svg}<p class=\"note\">No GPU time used in these days.</p>");
    }
    format!("{svg}<div class=\"legend\">{}</div>", legend.join(" "))
}

/// A round number at or above `v`, for the axis.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn fmt_hours(h: f64) -> String {
    if h >= 10.0 {
        format!("{h:.0}")
    } else if h >= 0.1 {
        format!("{h:.1}")
    } else {
        format!("{h:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_and_names_are_escaped() {
        let svg = stacked_days(
            &[0, 86_400_000],
            &[("a<b".into(), vec![1.0, 2.0]), ("c".into(), vec![1.0, 0.0])],
        );
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("a&lt;b 1970-01-02: 2.0 GPU-hours"), "{svg}");
        assert!(!svg.contains("a<b"));
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(3.2), 5.0);
        assert_eq!(nice(0.013), 0.02);
    }
}
