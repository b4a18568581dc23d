//! `anycore bench` as a user runs it: the JSON report's schema and its
//! internal consistency (throughputs from medians, ratios from baselines,
//! speed-ups and crossovers from the rows), the SVG chart, the GPU rows and
//! their agreement with the CPU, and bad options answered with exit 2.
//! Timings themselves are never judged here: that is what the bench is for.

mod common;

use std::path::Path;
use std::process::Output;

use common::{anycore, stderr};
use serde_json::Value;

fn bench(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let all: Vec<&str> = std::iter::once("bench")
        .chain(args.iter().copied())
        .collect();
    anycore(&all, envs)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("JSON written"))
        .expect("the report is JSON")
}

/// Bytes, flops or pixels per run, as the bench counts them.
fn amount(kernel: &str, size: f64) -> f64 {
    match kernel {
        "axpy" | "map" => 12.0 * size,
        "conv2d" => 50.0 * size * size,
        "blur" => 8.0 * size * size,
        "reduce" => 4.0 * size,
        "matmul" => 2.0 * size * size * size,
        "mandelbrot" => size * size,
        "scan" => 8.0 * size,
        "sort" => size,
        "histogram" => 4.0 * size,
        other => panic!("unknown kernel {other}"),
    }
}

fn scale(unit: &str) -> f64 {
    match unit {
        "GB/s" | "GFLOP/s" => 1e9,
        "Mpixel/s" | "Mkeys/s" => 1e6,
        other => panic!("unknown unit {other}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Checks every row against the schema and against itself.
fn check_rows(report: &Value, kernels: &[&str], sizes: &[u64], modes: &[&str]) {
    let rows = report["results"].as_array().expect("results");
    for kernel in kernels {
        for &size in sizes {
            for mode in modes {
                let row = rows
                    .iter()
                    .find(|r| r["kernel"] == *kernel && r["size"] == size && r["mode"] == *mode)
                    .unwrap_or_else(|| panic!("no {kernel} {size} {mode} row"));
                let f = |k: &str| row[k].as_f64().unwrap_or_else(|| panic!("{kernel} {k}"));
                let (median, min, max) = (f("median_ms"), f("min_ms"), f("max_ms"));
                assert!(row["runs"].as_u64().unwrap() >= 5, "{row}");
                assert!(0.0 < min && min <= median && median <= max, "{row}");
                let unit = row["unit"].as_str().unwrap();
                let want = amount(kernel, size as f64) / (median * 1e-3) / scale(unit);
                assert!(close(f("throughput"), want), "throughput of {row}");
                let backend = if *mode == "cpu" { "cpu" } else { "gpu" };
                assert_eq!(row["backend"], backend);
                if let Some(b) = row["baseline"].as_f64() {
                    assert!(row["baseline_name"].is_string(), "{row}");
                    assert!(close(f("baseline_ratio"), f("throughput") / b), "{row}");
                }
            }
        }
    }
    // The CPU rows of every kernel have a baseline, timed beside them.
    for row in rows.iter().filter(|r| r["mode"] == "cpu") {
        assert!(
            row["baseline_ratio"].as_f64().is_some(),
            "no baseline: {row}"
        );
    }
}

#[test]
fn quick_cpu_bench_writes_a_consistent_report_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let (json, svg) = (dir.path().join("bench.json"), dir.path().join("bench.svg"));
    let sizes = [64u64, 1000];
    let out = bench(
        &[
            "--quick",
            "--backend",
            "cpu",
            "--sizes",
            "64,1000",
            "--json",
            json.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "bench failed: {}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let kernels = [
        "axpy",
        "reduce",
        "matmul",
        "mandelbrot",
        "scan",
        "sort",
        "histogram",
        "map",
        "conv2d",
        "blur",
    ];
    for kernel in kernels {
        assert!(table.contains(kernel), "table lacks {kernel}:\n{table}");
    }

    let report = read_json(&json);
    assert!(report["machine"]["threads"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["cpu"].is_string());
    for key in ["copy_gbps", "read_gbps"] {
        assert!(report["baselines"][key].as_f64().unwrap() > 0.0, "{key}");
    }
    check_rows(&report, &kernels, &sizes, &["cpu"]);
    assert!(
        !report["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["backend"] == "gpu"),
        "--backend cpu measured a GPU"
    );
    for kernel in kernels {
        // Without the GPU there is no crossover and no difference to report.
        assert!(report["crossover"][kernel].is_null(), "{kernel}");
        assert!(report["max_rel_diff"][kernel].is_null(), "{kernel}");
    }
    // Each kernel timed before and after the others, at the middle of its
    // sweep (here 1000), its ratio the two times' quotient.
    let order = report["order_check"].as_array().unwrap();
    let named: Vec<&str> = order
        .iter()
        .map(|c| c["kernel"].as_str().unwrap())
        .collect();
    assert_eq!(named, kernels, "order check: {order:?}");
    for c in order {
        let (first, after) = (
            c["first_ms"].as_f64().unwrap(),
            c["after_ms"].as_f64().unwrap(),
        );
        assert_eq!(c["size"].as_u64(), Some(1000), "{c}");
        assert!(first > 0.0 && after > 0.0, "{c}");
        assert!(close(c["ratio"].as_f64().unwrap(), first / after), "{c}");
    }
    assert!(table.contains("over the rate before"), "{table}");
    // Kernels' variants (map's other expression) at the largest size,
    // beside the rayon loop, their rate from their median.
    let variants = report["variants"].as_array().unwrap();
    assert!(table.contains("map variants"), "{table}");
    let sqrt = variants
        .iter()
        .find(|v| v["kernel"] == "map" && v["variant"] == "sqrt(x*x + y*y)")
        .unwrap_or_else(|| panic!("no map variant: {variants:?}"));
    assert_eq!(
        (sqrt["size"].as_u64(), sqrt["backend"].as_str()),
        (Some(1000), Some("cpu"))
    );
    let median = sqrt["stats"]["median_ms"].as_f64().unwrap();
    assert!(
        close(
            sqrt["rate"].as_f64().unwrap(),
            amount("map", 1000.0) / (median * 1e-3) / 1e9
        ),
        "{sqrt}"
    );
    assert!(sqrt["vs_rayon_loop"].as_f64().unwrap() > 0.0, "{sqrt}");
    let curves = report["baselines"]["curves"].as_array().unwrap();
    for (kernel, name) in [
        ("axpy", "rayon loop"),
        ("reduce", "rayon loop"),
        ("matmul", "rayon loop"),
        ("mandelbrot", "rayon loop"),
        ("mandelbrot", "threads × single thread"),
        ("mandelbrot", "single threads at once"),
    ] {
        for size in sizes {
            assert!(
                curves
                    .iter()
                    .any(|c| c["kernel"] == kernel && c["name"] == name && c["size"] == size),
                "no {name} baseline for {kernel} {size}"
            );
        }
    }

    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    for kernel in kernels {
        assert!(
            chart.contains(&format!(">{kernel} (")),
            "chart lacks {kernel}"
        );
    }
    assert!(chart.matches("<polyline").count() >= 8, "too few lines");
}

#[test]
fn gpu_bench_reports_resident_and_end_to_end_rows_that_agree_with_the_cpu() {
    if common::gpu().is_none() {
        return; // skipped with a message, or failed when GPU tests are required
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let sizes = [64u64, 300];
    let out = bench(
        &[
            "--quick",
            "--allow-software-gpu",
            "--backend",
            "cpu,gpu",
            "--sizes",
            "64,300",
            "--json",
            json.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "bench failed: {}", stderr(&out));
    let report = read_json(&json);
    let kernels = ["axpy", "reduce", "matmul", "mandelbrot"];
    check_rows(
        &report,
        &kernels,
        &sizes,
        &["cpu", "resident", "end_to_end"],
    );
    assert!(report["machine"]["gpu"].is_string());
    // The copy baseline is the faster copy of random data; the kernel's copy
    // of zeros is there beside it.
    let baseline = |key: &str| report["baselines"][key].as_f64().unwrap();
    for key in [
        "gpu_buffer_copy_gbps",
        "gpu_kernel_copy_gbps",
        "gpu_kernel_copy_zeros_gbps",
    ] {
        assert!(baseline(key) > 0.0, "{key}");
    }
    assert_eq!(
        baseline("gpu_copy_gbps"),
        baseline("gpu_buffer_copy_gbps").max(baseline("gpu_kernel_copy_gbps"))
    );

    let rows = report["results"].as_array().unwrap();
    let median = |kernel: &str, mode: &str, size: u64| {
        rows.iter()
            .find(|r| r["kernel"] == kernel && r["mode"] == mode && r["size"] == size)
            .and_then(|r| r["median_ms"].as_f64())
            .unwrap()
    };
    for kernel in kernels {
        // The crossover is the smallest size where the GPU end to end won.
        let first_win = sizes
            .iter()
            .copied()
            .find(|&s| median(kernel, "end_to_end", s) < median(kernel, "cpu", s));
        assert_eq!(report["crossover"][kernel].as_u64(), first_win, "{kernel}");
        let speedups = report["speedup"][kernel].as_array().unwrap();
        assert_eq!(speedups.len(), sizes.len());
        for s in speedups {
            let size = s["size"].as_u64().unwrap();
            let want = median(kernel, "cpu", size) / median(kernel, "end_to_end", size);
            assert!(close(s["end_to_end"].as_f64().unwrap(), want), "{s}");
        }
        // Both backends computed the same thing (mandelbrot may differ at a
        // few pixels on the set's rim, where FMA changes a count).
        let diff = report["max_rel_diff"][kernel].as_f64().unwrap();
        let bound = if kernel == "mandelbrot" { 0.05 } else { 1e-5 };
        assert!(diff <= bound, "{kernel}: GPU and CPU differ by {diff}");
    }
}

#[test]
fn without_a_usable_gpu_the_default_bench_measures_the_cpu_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = bench(
        &[
            "--quick",
            "--kernel",
            "reduce",
            "--sizes",
            "1000",
            "--json",
            json.to_str().unwrap(),
        ],
        &[
            ("VK_ICD_FILENAMES", "/nonexistent.json"),
            ("VK_DRIVER_FILES", "/nonexistent.json"),
        ],
    );
    assert!(out.status.success(), "bench failed: {}", stderr(&out));
    let report = read_json(&json);
    check_rows(&report, &["reduce"], &[1000], &["cpu"]);
    assert!(report["machine"]["gpu"].is_null());
    let notes = report["notes"].to_string();
    assert!(notes.contains("GPU not measured"), "{notes}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("GPU not measured"));
}

#[test]
fn without_numpy_matmul_is_compared_with_the_plain_loop_and_the_report_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = bench(
        &[
            "--quick",
            "--backend",
            "cpu",
            "--kernel",
            "matmul",
            "--sizes",
            "65",
            "--json",
            json.to_str().unwrap(),
        ],
        &[("ANYCORE_PYTHON", "/nonexistent/python3")],
    );
    assert!(out.status.success(), "bench failed: {}", stderr(&out));
    let report = read_json(&json);
    check_rows(&report, &["matmul"], &[65], &["cpu"]);
    assert!(report["baselines"]["numpy"].is_null());
    assert_eq!(report["results"][0]["baseline_name"], "rayon loop");
    assert!(report["notes"].to_string().contains("no NumPy"));
}

/// Arguments, environment, and what stderr must name.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[test]
fn bad_options_exit_2_and_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/out.json");
    let cases: Vec<Case> = vec![
        (vec!["--kernel", "fft"], vec![], "fft"),
        (vec!["--sizes", "0"], vec![], "--sizes"),
        (
            vec!["--kernel", "matmul", "--sizes", "100000"],
            vec![],
            "matmul",
        ),
        (vec!["--backend", "tpu"], vec![], "tpu"),
        (vec!["--sizes", "ten"], vec![], "ten"),
        (
            vec!["--quick", "--json", missing.to_str().unwrap()],
            vec![],
            "out.json",
        ),
        (
            vec!["--quick", "--backend", "gpu", "--sizes", "64"],
            vec![
                ("VK_ICD_FILENAMES", "/nonexistent.json"),
                ("VK_DRIVER_FILES", "/nonexistent.json"),
            ],
            "GPU",
        ),
    ];
    for (args, envs, needle) in cases {
        let out = bench(&args, &envs);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: stderr does not name '{needle}': {}",
            stderr(&out)
        );
    }
}
