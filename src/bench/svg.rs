//! The bench report as an SVG chart: one log-log panel per kernel,
//! throughput against size, a line per backend mode and per baseline.
//! Plain SVG text: a chart this simple does not need a plotting crate.

use std::fmt::Write;

use super::report::{num, report_kernels, size as size_label};
use super::workload::{self, Bandwidth};
use super::{Mode, Report};
use crate::kernel::Kernel;

const PANEL_W: f64 = 600.0;
const PANEL_H: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 46.0;
const COLUMNS: usize = 2;

/// One line of a panel.
struct Series {
    label: String,
    colour: &'static str,
    dash: &'static str,
    points: Vec<(f64, f64)>,
}

/// The chart for a report.
pub fn chart(report: &Report) -> String {
    let kernels = report_kernels(report);
    let rows = kernels.len().div_ceil(COLUMNS).max(1);
    let (w, h) = (PANEL_W * COLUMNS as f64, PANEL_H * rows as f64 + 30.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let title = format!(
        "anycore bench — {}, {} threads{}",
        report.machine.cpu,
        report.machine.threads,
        report
            .machine
            .gpu
            .as_ref()
            .map_or(String::new(), |g| format!("; {g}"))
    );
    let _ = writeln!(
        out,
        r#"<text x="10" y="20" font-size="14">{}</text>"#,
        escape(&title)
    );
    for (i, &kernel) in kernels.iter().enumerate() {
        let (x0, y0) = (
            (i % COLUMNS) as f64 * PANEL_W,
            30.0 + (i / COLUMNS) as f64 * PANEL_H,
        );
        panel(&mut out, report, kernel, x0, y0);
    }
    out.push_str("</svg>\n");
    out
}

fn series(report: &Report, kernel: Kernel) -> Vec<Series> {
    let mut all = Vec::new();
    let styles = [
        ("#1f77b4", ""),
        ("#d62728", ""),
        ("#ff7f0e", "6 3"),
        ("#9467bd", "2 2"),
    ];
    for (mode, (colour, dash)) in Mode::ALL.into_iter().zip(styles) {
        let label = mode.label();
        let points: Vec<(f64, f64)> = report
            .results
            .iter()
            .filter(|r| r.kernel == kernel.name() && r.mode == mode)
            .map(|r| (r.size as f64, r.throughput))
            .collect();
        if !points.is_empty() {
            all.push(Series {
                label: label.into(),
                colour,
                dash,
                points,
            });
        }
    }
    let names = report.curve_names(kernel);
    for (n, name) in names.into_iter().enumerate() {
        let points = report
            .baselines
            .curves
            .iter()
            .filter(|c| c.kernel == kernel.name() && c.name == name)
            .map(|c| (c.size as f64, c.throughput))
            .collect();
        all.push(Series {
            label: name.as_str().into(),
            colour: ["#2ca02c", "#7f7f7f", "#9467bd"][n % 3],
            dash: "2 3",
            points,
        });
    }
    // Memory-bound kernels: the bandwidths they are measured against, flat.
    let flat = workload::bandwidth(kernel).map(|b| match b {
        Bandwidth::Copy => ("memory copy", report.baselines.copy_gbps),
        Bandwidth::Read => ("memory read", report.baselines.read_gbps),
    });
    let xs: Vec<f64> = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let (lo, hi) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(0.0, f64::max),
    );
    if lo.is_finite() {
        if let Some((label, gbps)) = flat {
            all.push(Series {
                label: label.into(),
                colour: "#000000",
                dash: "1 4",
                points: vec![(lo, gbps), (hi, gbps)],
            });
        }
        if let (Some(g), Some(_)) = (report.baselines.gpu_copy_gbps, flat) {
            all.push(Series {
                label: "gpu copy".into(),
                colour: "#d62728",
                dash: "1 4",
                points: vec![(lo, g), (hi, g)],
            });
        }
    }
    all
}

fn panel(out: &mut String, report: &Report, kernel: Kernel, x0: f64, y0: f64) {
    let all = series(report, kernel);
    let pts = || all.iter().flat_map(|s| s.points.iter().copied());
    let positive = |v: f64| v > 0.0 && v.is_finite();
    let xs: Vec<f64> = pts().map(|p| p.0).filter(|&v| positive(v)).collect();
    let ys: Vec<f64> = pts().map(|p| p.1).filter(|&v| positive(v)).collect();
    if xs.is_empty() || ys.is_empty() {
        return;
    }
    let bounds = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min).log10();
        let hi = v.iter().copied().fold(0.0, f64::max).log10();
        if hi - lo < 1e-9 {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        }
    };
    let (xlo, xhi) = bounds(&xs);
    let (ylo, yhi) = bounds(&ys);
    let (ylo, yhi) = (ylo.floor(), yhi.ceil());
    let (pw, ph) = (PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM);
    let px = |x: f64| x0 + LEFT + (x.log10() - xlo) / (xhi - xlo) * pw;
    let py = |y: f64| y0 + TOP + ph - (y.log10() - ylo) / (yhi - ylo) * ph;

    let unit = workload::unit(kernel).name;
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="13" font-weight="bold">{kernel} ({unit}, log-log)</text>"#,
        x0 + LEFT,
        y0 + TOP - 10.0
    );
    let _ = writeln!(
        out,
        "<rect x=\"{}\" y=\"{}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>",
        x0 + LEFT,
        y0 + TOP
    );
    // Decades on the y axis.
    for d in (ylo as i32)..=(yhi as i32) {
        let v = 10f64.powi(d);
        let y = py(v);
        let _ = writeln!(
            out,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 + LEFT,
            x0 + LEFT + pw,
            x0 + LEFT - 6.0,
            y + 4.0,
            num(v)
        );
    }
    // The swept sizes on the x axis.
    let mut sizes: Vec<usize> = report
        .results
        .iter()
        .filter(|r| r.kernel == kernel.name())
        .map(|r| r.size)
        .chain(
            report
                .baselines
                .curves
                .iter()
                .filter(|c| c.kernel == kernel.name())
                .map(|c| c.size),
        )
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    for s in sizes {
        let x = px(s as f64);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            y0 + TOP,
            y0 + TOP + ph,
            y0 + TOP + ph + 16.0,
            size_label(kernel, s)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">size ({})</text>"#,
        x0 + LEFT + pw / 2.0,
        y0 + TOP + ph + 34.0,
        kernel.profile().sweep.size_means
    );
    for (i, s) in all.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .filter(|p| positive(p.0) && positive(p.1))
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{}"/>"#,
            path.join(" "),
            s.colour,
            s.dash
        );
        let ly = y0 + TOP + 10.0 + i as f64 * 18.0;
        let lx = x0 + LEFT + pw + 12.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2" stroke-dasharray="{}"/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            s.colour,
            s.dash,
            lx + 30.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
