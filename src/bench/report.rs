//! The bench report as a table for the terminal: the machine and baselines,
//! then per kernel one row per size, backend and mode, and a line with the
//! speed-up, the crossover and the largest difference between backends.

use std::fmt::Write;

use super::{BaselineName, Mode, Report, workload};
use crate::kernel::Kernel;

/// A number with about three significant digits.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        format!("{x}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.001 || a == 0.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.1e}")
    }
}

/// A size as the table shows it: 2^k for one-dimensional kernels at powers
/// of two, n otherwise.
pub fn size(kernel: Kernel, n: usize) -> String {
    if kernel.profile().sweep.sizes_as_powers && n.is_power_of_two() && n >= 1024 {
        format!("2^{}", n.trailing_zeros())
    } else {
        n.to_string()
    }
}

/// The whole report as text.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let b = &report.baselines;
    let _ = write!(out, "machine: {}, {} threads, {}", m.cpu, m.threads, m.os);
    if let Some(steal) = m.steal_pct {
        let _ = write!(
            out,
            "; {steal:.1}% of CPU time stolen by other guests meanwhile"
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "gpu: {}", m.gpu.as_deref().unwrap_or("none measured"));
    let _ = write!(
        out,
        "memory bandwidth: copy {} GB/s, read {} GB/s",
        num(b.copy_gbps),
        num(b.read_gbps)
    );
    if let Some(g) = b.gpu_copy_gbps {
        let _ = write!(out, "; gpu copy {} GB/s", num(g));
    }
    if let (Some(buf), Some(kern)) = (b.gpu_buffer_copy_gbps, b.gpu_kernel_copy_gbps) {
        let _ = write!(
            out,
            " (faster of copy_buffer {} and a WGSL copy kernel {}, random data",
            num(buf),
            num(kern)
        );
        if let Some(zeros) = b.gpu_kernel_copy_zeros_gbps {
            let _ = write!(out, "; the kernel copies zeros at {}", num(zeros));
        }
        let _ = write!(out, ")");
    }
    let _ = writeln!(out);
    if let (Some(up), Some(down)) = (b.gpu_upload_gbps, b.gpu_download_gbps) {
        let _ = writeln!(
            out,
            "host↔gpu (256 MiB): upload {} GB/s, download {} GB/s; resident rows timed by {}",
            num(up),
            num(down),
            m.gpu_timer.as_deref().unwrap_or("host wait")
        );
    }
    let _ = writeln!(out, "numpy: {}", b.numpy.as_deref().unwrap_or("none"));
    for kernel in report_kernels(report) {
        let unit = workload::unit(kernel);
        let _ = writeln!(out, "\n{kernel} — {} ({})", unit.name, unit.counts);
        let _ = writeln!(
            out,
            "{:>8}  {:<15}{:>10}  {:>19}  {:>10}  {:>36}  {:>10}",
            "size",
            "backend",
            "median ms",
            "min…max ms",
            unit.name,
            "vs baseline (its rate)",
            "×bandwidth"
        );
        for r in report.results.iter().filter(|r| r.kernel == kernel.name()) {
            let who = r.mode.label();
            let baseline = match (&r.baseline_name, r.baseline, r.baseline_ratio) {
                (Some(name), Some(t), Some(ratio)) => {
                    format!("{}× {name} ({})", num(ratio), num(t))
                }
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:>8}  {:<15}{:>10}  {:>19}  {:>10}  {:>36}  {:>10}",
                size(kernel, r.size),
                who,
                num(r.median_ms),
                format!("{}…{}", num(r.min_ms), num(r.max_ms)),
                num(r.throughput),
                baseline,
                r.bandwidth_ratio
                    .map_or("-".into(), |x| format!("{}×", num(x))),
            );
        }
        other_baselines(&mut out, report, kernel);
        let speedups = &report.speedup[kernel.name()];
        if !speedups.is_empty() {
            let list: Vec<String> = speedups
                .iter()
                .map(|s| format!("{} {}×", size(kernel, s.size), num(s.end_to_end)))
                .collect();
            let _ = writeln!(out, "  gpu/cpu end to end: {}", list.join(", "));
            let list: Vec<String> = speedups
                .iter()
                .map(|s| format!("{} {}×", size(kernel, s.size), num(s.resident)))
                .collect();
            let _ = writeln!(out, "  gpu/cpu resident:   {}", list.join(", "));
        }
        let crossover = match report.crossover[kernel.name()] {
            Some(n) => size(kernel, n),
            None if speedups.is_empty() => "needs both backends".into(),
            None => "none in range".into(),
        };
        let diff = report.max_rel_diff[kernel.name()]
            .map_or("needs both backends".into(), |d| format!("{d:.2e}"));
        let _ = writeln!(
            out,
            "  crossover (gpu end to end beats cpu): {crossover}; max relative difference gpu vs cpu: {diff}"
        );
    }
    if !report.order_check.is_empty() {
        let list: Vec<String> = report
            .order_check
            .iter()
            .map(|c| {
                let kernel =
                    Kernel::from_name(&c.kernel).map_or(c.size.to_string(), |k| size(k, c.size));
                format!("{} {kernel} {}×", c.kernel, num(c.ratio))
            })
            .collect();
        let _ = writeln!(
            out,
            "\ncpu rate after all other kernels ran, over the rate before: {}",
            list.join(", ")
        );
    }
    chain_table(&mut out, report);
    variants_table(&mut out, report);
    for note in &report.notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    out
}

/// Kernels' variants: per variant and backend, the time and rate beside
/// NumPy's and the plain rayon loop's.
fn variants_table(out: &mut String, report: &Report) {
    let mut last = None;
    for r in &report.variants {
        if last != Some(&r.kernel) {
            let unit = Kernel::from_name(&r.kernel).map(|k| k.profile().unit);
            let _ = writeln!(
                out,
                "\n{} variants — {}",
                r.kernel,
                unit.map_or(String::new(), |u| u.name.to_owned())
            );
            let _ = writeln!(
                out,
                "  {:<24} {:>8}  {:<7} {:>10} {:>20} {:>10} {:>10} {:>12}",
                "variant",
                "size",
                "backend",
                "median ms",
                "min…max ms",
                "rate",
                "vs numpy",
                "vs rayon loop"
            );
            last = Some(&r.kernel);
        }
        let shown = Kernel::from_name(&r.kernel).map_or(r.size.to_string(), |k| size(k, r.size));
        let _ = writeln!(
            out,
            "  {:<24} {:>8}  {:<7} {:>10.2} {:>20} {:>10.2} {:>10} {:>12}",
            r.variant,
            shown,
            r.backend,
            r.stats.median_ms,
            format!("{:.2}…{:.2}", r.stats.min_ms, r.stats.max_ms),
            r.rate,
            r.vs_numpy.map_or("—".to_owned(), |v| format!("{v:.3}×")),
            format!("{:.3}×", r.vs_rayon_loop),
        );
    }
}

/// The `chain` comparison: per backend, elements and steps, the separate
/// jobs and the pipeline, with what each moved.
fn chain_table(out: &mut String, report: &Report) {
    if report.chain.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nchain — k steps of axpy (y = 2x + y), as k separate jobs and as one pipeline"
    );
    let _ = writeln!(
        out,
        "  {:>8}  {:>5}  {:<7} {:<9} {:>10} {:>20} {:>10} {:>14} {:>14} {:>6}",
        "n",
        "steps",
        "backend",
        "as",
        "median ms",
        "min…max ms",
        "vs jobs",
        "up MiB",
        "down MiB",
        "subm"
    );
    for r in &report.chain {
        let mode = match r.mode {
            super::chain::Mode::Jobs => "jobs",
            super::chain::Mode::Pipeline => "pipeline",
        };
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let _ = writeln!(
            out,
            "  {:>8}  {:>5}  {:<7} {:<9} {:>10} {:>20} {:>9}× {:>14} {:>14} {:>6}",
            size(Kernel::Axpy, r.n),
            r.steps,
            r.backend,
            mode,
            num(r.stats.median_ms),
            format!("{}…{}", num(r.stats.min_ms), num(r.stats.max_ms)),
            num(r.speedup_vs_jobs),
            num(mib(r.traffic.uploaded_bytes)),
            num(mib(r.traffic.downloaded_bytes)),
            r.traffic.submissions
        );
    }
}

/// For each baseline curve the CPU rows are not already compared with, a
/// line of the CPU's ratio to it per size.
fn other_baselines(out: &mut String, report: &Report, kernel: Kernel) {
    let cpu_rows: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.kernel == kernel.name() && r.mode == Mode::Cpu)
        .collect();
    let compared = |name: &BaselineName| cpu_rows.iter().any(|r| r.baseline_name == Some(*name));
    let names: Vec<BaselineName> = report
        .curve_names(kernel)
        .into_iter()
        .filter(|n| !compared(n))
        .collect();
    for name in names {
        let ratios: Vec<String> = cpu_rows
            .iter()
            .filter_map(|r| {
                let c =
                    report.baselines.curves.iter().find(|c| {
                        c.kernel == kernel.name() && c.name == name && c.size == r.size
                    })?;
                Some(format!(
                    "{} {}×",
                    size(kernel, r.size),
                    num(r.throughput / c.throughput)
                ))
            })
            .collect();
        if !ratios.is_empty() {
            let _ = writeln!(out, "  cpu vs {name}: {}", ratios.join(", "));
        }
    }
}

/// The kernels in the report, in the order they ran.
pub fn report_kernels(report: &Report) -> Vec<Kernel> {
    let mut kernels: Vec<Kernel> = Vec::new();
    let names = report
        .results
        .iter()
        .map(|r| &r.kernel)
        .chain(report.baselines.curves.iter().map(|c| &c.kernel));
    for name in names {
        if let Ok(k) = Kernel::from_name(name)
            && !kernels.contains(&k)
        {
            kernels.push(k);
        }
    }
    kernels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_about_three_digits() {
        assert_eq!(num(1234.5), "1234");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(1.2345), "1.23");
        assert_eq!(num(0.012345), "0.012");
        assert_eq!(num(0.0), "0.000");
        assert_eq!(size(Kernel::Axpy, 1 << 24), "2^24");
        assert_eq!(size(Kernel::Axpy, 1000), "1000");
        assert_eq!(size(Kernel::Matmul, 1024), "1024");
    }
}
