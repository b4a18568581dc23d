//! Arrays larger than the memory budget, run a chunk at a time: results
//! equal the whole run's at every chunk edge on every backend, outputs are
//! written only when whole, the budget bounds memory, and what cannot
//! stream is refused with the budget it needs. (NumPy checks every
//! streamable kernel under a small budget too: `scripts/numpy_check.py`.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anycore::backend::BackendChoice;
use anycore::backend::gpu::GpuOptions;
use anycore::engine::BlockingEngine;
use anycore::kernel::{Job, Kernel, Task};
use anycore::stream::{FileJob, Split};
use anycore::tensor::{Tensor, TensorData, npy};
use rand::Rng;
use rand::rngs::SmallRng;

/// A budget small enough that the arrays below stream in chunks of a few
/// thousand elements.
const BUDGET: u64 = 512 << 10;

fn save(dir: &Path, name: &str, tensor: &Tensor) -> PathBuf {
    let path = dir.join(format!("{name}.npy"));
    npy::write(&path, tensor).unwrap();
    path
}

fn random(rng: &mut SmallRng, dtype: &str, n: usize) -> Tensor {
    let data = match dtype {
        "f32" => TensorData::F32(common::random_f32(rng, n)),
        "u32" => TensorData::U32((0..n).map(|_| rng.random()).collect()),
        "i32" => TensorData::I32((0..n).map(|_| rng.random()).collect()),
        _ => unreachable!(),
    };
    Tensor::new(vec![n], data)
}

/// One streamable job: kernel, params, and inputs (name, dtype, whether
/// it is a broadcast single element).
struct Kind {
    kernel: Kernel,
    params: Vec<(&'static str, &'static str)>,
    inputs: Vec<(&'static str, &'static str, bool)>,
}

/// Every kind of streaming: elementwise (with a broadcast input), folds
/// of each reduction and of counts, and carried scans of each dtype.
fn kinds() -> Vec<Kind> {
    let mut kinds = vec![
        Kind {
            kernel: Kernel::Axpy,
            params: vec![("a", "-1.5")],
            inputs: vec![("x", "f32", false), ("y", "f32", false)],
        },
        Kind {
            kernel: Kernel::Map,
            params: vec![("expr", "x * y + sin(z)")],
            inputs: vec![("x", "f32", false), ("y", "f32", true), ("z", "f32", false)],
        },
        Kind {
            kernel: Kernel::Histogram,
            params: vec![("bins", "77"), ("lo", "-0.9"), ("hi", "0.8")],
            inputs: vec![("x", "f32", false)],
        },
    ];
    for dtype in ["f32", "u32", "i32"] {
        for op in ["sum", "min", "max"] {
            kinds.push(Kind {
                kernel: Kernel::Reduce,
                params: vec![("op", op)],
                inputs: vec![("x", dtype, false)],
            });
        }
        for inclusive in ["false", "true"] {
            kinds.push(Kind {
                kernel: Kernel::Scan,
                params: vec![("inclusive", inclusive)],
                inputs: vec![("x", dtype, false)],
            });
        }
    }
    kinds
}

/// A job of `kind` on fresh data of `n` elements.
struct Case {
    kernel: Kernel,
    params: Vec<(&'static str, &'static str)>,
    inputs: Vec<(&'static str, Tensor)>,
}

fn case(rng: &mut SmallRng, kind: &Kind, n: usize) -> Case {
    Case {
        kernel: kind.kernel,
        params: kind.params.clone(),
        inputs: kind
            .inputs
            .iter()
            .map(|&(name, dtype, one)| (name, random(rng, dtype, if one { 1 } else { n })))
            .collect(),
    }
}

/// The job over `case`'s inputs saved in `dir`, writing `outputs`.
fn file_job(dir: &Path, case: &Case, outputs: BTreeMap<String, PathBuf>) -> FileJob {
    FileJob {
        kernel: case.kernel,
        params: case
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        inputs: case
            .inputs
            .iter()
            .map(|(name, t)| (name.to_string(), save(dir, name, t)))
            .collect(),
        outputs,
    }
}

/// The kernel's sequential reference on the whole arrays.
fn reference(case: &Case) -> BTreeMap<String, Tensor> {
    let mut job = Job::new(case.kernel);
    for (name, value) in &case.params {
        job = job.param(name, value);
    }
    for (name, tensor) in &case.inputs {
        job = job.input(name, tensor.clone());
    }
    Task::new(job).unwrap().reference()
}

/// Sums (reductions, scans) are added in another order than the
/// reference's: each element within 1e-5 of the magnitudes summed. Other
/// float outputs by relative norm; integers and counts exactly.
fn assert_matches(what: &str, got: &Tensor, want: &Tensor, sum_scale: Option<f64>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    match (got.data(), want.data(), sum_scale) {
        (TensorData::F32(g), TensorData::F32(w), Some(scale)) => {
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                assert!(
                    (f64::from(*g) - f64::from(*w)).abs() <= 1e-5 * scale + 1e-6,
                    "{what}: element {i} is {g}, want {w}"
                );
            }
        }
        (TensorData::F32(g), TensorData::F32(w), None) => common::assert_close(what, g, w, 1e-5),
        (g, w, _) => {
            assert_eq!(g.dtype(), w.dtype(), "{what}: dtype");
            let (g, w) = (g.as_bytes(), w.as_bytes());
            if let Some(i) = (0..g.len() / 4).find(|&i| g[i * 4..i * 4 + 4] != w[i * 4..i * 4 + 4])
            {
                panic!("{what}: element {i} differs");
            }
        }
    }
}

fn sum_abs(t: &Tensor) -> f64 {
    t.as_f32()
        .map_or(0.0, |v| v.iter().map(|x| f64::from(x.abs())).sum())
}

#[test]
fn chunks_equal_the_whole_run_at_every_edge_on_every_backend() {
    let engine = common::engine(GpuOptions::default());
    let mut rng = common::rng();
    let dir = tempfile::tempdir().unwrap();
    for kind in kinds() {
        // The chunk this budget gives the kind, then sizes well past the
        // budget (a chunk is at most an eighth of it, rounded down to
        // 4096 elements) ending just before, at and after a chunk edge,
        // and between edges.
        let probe = case(&mut rng, &kind, 1 << 20);
        let Split::Chunks(chunks) = file_job(dir.path(), &probe, BTreeMap::new())
            .split(BUDGET, BackendChoice::Auto)
            .unwrap()
        else {
            panic!("{} did not stream", kind.kernel)
        };
        let c = chunks.chunk_elements();
        drop(chunks);
        for choice in common::backends(&engine) {
            for n in [20 * c - 1, 20 * c, 20 * c + 1, 23 * c + 7] {
                check_one(&engine, choice, &case(&mut rng, &kind, n), dir.path());
            }
        }
    }
}

/// Streams `case` on `choice` (the output file poisoned first) and
/// compares with the whole run's reference.
fn check_one(engine: &BlockingEngine, choice: BackendChoice, case: &Case, dir: &Path) {
    let what = format!(
        "{} {:?} n={} on {}",
        case.kernel,
        case.params,
        case.inputs[0].1.len(),
        choice.name()
    );
    let out = dir.join("out.npy");
    std::fs::write(&out, b"poison: not an array").unwrap();
    let job = file_job(dir, case, BTreeMap::from([("out".to_owned(), out.clone())]));
    let Split::Chunks(chunks) = job.split(BUDGET, choice).unwrap() else {
        panic!("{what}: did not stream")
    };
    let done = chunks.run(engine, choice).unwrap();
    assert!(done.chunks >= 20, "{what}: {} chunks", done.chunks);
    assert_eq!(done.report.backend.name(), choice.name(), "{what}");
    let want = &reference(case)["out"];
    // Folded outputs come back; the others are in the file.
    let got = match done.report.outputs.get("out") {
        Some(t) => t.clone(),
        None => npy::read(&out).unwrap(),
    };
    let sums = matches!(case.kernel, Kernel::Reduce | Kernel::Scan);
    let scale = sums.then(|| sum_abs(&case.inputs[0].1));
    assert_matches(&what, &got, want, scale);
}

/// `anycore run` with `--json`: the exit status, the report (if any), stderr.
fn run_json(args: &[&str]) -> (i32, Option<serde_json::Value>, String) {
    let out = common::anycore(args, &[]);
    let report = serde_json::from_slice(&out.stdout).ok();
    (
        out.status.code().unwrap_or(-1),
        report,
        common::stderr(&out),
    )
}

#[test]
fn the_budget_bounds_peak_memory_and_the_report_says_how_it_ran() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::rng();
    // 128 MiB in, 128 MiB out.
    let x = save(dir.path(), "x", &random(&mut rng, "f32", 32 << 20));
    let x = format!("x={}", x.display());
    let out = format!("out={}", dir.path().join("out.npy").display());
    let args = [
        "run",
        "map",
        "-i",
        &x,
        "-p",
        "expr=x * 3 - 1",
        "-o",
        &out,
        "--backend",
        "cpu",
        "--json",
    ];

    let (code, report, err) = run_json(&[&args[..], &["--memory-budget", "8M"]].concat());
    assert_eq!(code, 0, "{err}");
    let report = report.unwrap();
    let stream = &report["stream"];
    assert!(stream["chunks"].as_u64().unwrap() >= 16, "{report}");
    assert_eq!(stream["memory_budget_mib"].as_f64(), Some(8.0), "{report}");
    assert_eq!(
        report["outputs"]["out"]["shape"][0].as_u64(),
        Some(32 << 20)
    );
    let streamed = report["peak_rss_mib"].as_f64().unwrap();
    let got = npy::read(&dir.path().join("out.npy")).unwrap();
    let input = npy::read(&dir.path().join("x.npy")).unwrap();
    let (got, input) = (got.as_f32().unwrap(), input.as_f32().unwrap());
    if let Some(i) = (0..got.len()).find(|&i| got[i] != input[i] * 3.0 - 1.0) {
        panic!("element {i}: {} from {}", got[i], input[i]);
    }

    // The same job whole holds the whole input (map writes over it).
    let (code, report, err) = run_json(&args);
    assert_eq!(code, 0, "{err}");
    let report = report.unwrap();
    assert!(report.get("stream").is_none(), "{report}");
    let whole = report["peak_rss_mib"].as_f64().unwrap();
    assert!(
        streamed < 64.0 && whole > 128.0,
        "peak RSS streamed in 8 MiB: {streamed} MiB; whole: {whole} MiB"
    );
}

#[test]
fn what_cannot_stream_is_refused_with_the_budget_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::rng();
    let x = save(dir.path(), "x", &random(&mut rng, "f32", 1 << 20));
    let x = format!("x={}", x.display());
    let keys = format!("keys={}", dir.path().join("x.npy").display());
    // sort needs the whole array, and a budget too small for even one
    // chunk: each message names a budget, with which the job runs.
    for args in [
        ["run", "sort", "-i", &keys, "--memory-budget", "1M"],
        ["run", "reduce", "-i", &x, "--memory-budget", "64K"],
    ] {
        let (code, _, err) = run_json(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        let named = err
            .split("give --memory-budget ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{args:?}: no budget named in: {err}"));
        let mut args = args.to_vec();
        args[5] = named;
        let (code, _, err) = run_json(&args);
        assert_eq!(code, 0, "{args:?} (the budget named): {err}");
    }
    let cases: [(&[&str], &[&str]); 4] = [
        // A histogram's default range is the whole array's.
        (
            &["run", "histogram", "-i", &x, "--memory-budget", "1M"],
            &["'lo' and 'hi'"],
        ),
        (
            &["run", "reduce", "-i", &x, "--memory-budget", "12Q"],
            &["--memory-budget", "unit 'q'"],
        ),
        (
            &["run", "reduce", "-i", &x, "--memory-budget", "0"],
            &["--memory-budget", "above 0"],
        ),
        (
            &["run", "reduce", "-i", &x, "--memory-budget", "99999999999T"],
            &["--memory-budget", "64 bits"],
        ),
    ];
    for (args, needles) in cases {
        let (code, _, err) = run_json(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: '{needle}' not in: {err}");
        }
    }
}

#[test]
fn batch_lines_past_their_share_of_the_budget_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::rng();
    let x = random(&mut rng, "i32", 300_001);
    save(dir.path(), "x", &x);
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(
        &jobs,
        [
            r#"{"id": "scan", "kernel": "scan", "inputs": {"x": "x.npy"}, "outputs": {"out": "scan.npy"}}"#,
            r#"{"id": "max", "kernel": "reduce", "inputs": {"x": "x.npy"}, "params": {"op": "max"}, "outputs": {"out": "max.npy"}}"#,
            r#"{"id": "sort", "kernel": "sort", "inputs": {"keys": "x.npy"}, "outputs": {"keys": "sorted.npy"}}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let results = dir.path().join("results.jsonl");
    let out = common::anycore(
        &[
            "batch",
            jobs.to_str().unwrap(),
            "--memory-budget",
            "2M",
            "--concurrency",
            "2",
            "--backend",
            "cpu",
            "--results",
            results.to_str().unwrap(),
        ],
        &[],
    );
    // sort cannot stream and needs more than the whole budget.
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let text = std::fs::read_to_string(&results).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for line in &lines[..2] {
        assert_eq!(line["status"], "ok", "{line}");
        let why = line["placement_reason"].as_str().unwrap();
        assert!(
            why.contains("streamed in") && why.contains("(memory budget 1 MiB)"),
            "{why}"
        );
    }
    let error = lines[2]["error"].as_str().unwrap();
    assert!(
        error.contains("sort") && error.contains("--memory-budget"),
        "{error}"
    );
    assert!(!dir.path().join("sorted.npy").exists());

    let want = Task::new(Job::new(Kernel::Scan).input("x", x.clone()))
        .unwrap()
        .reference();
    assert_matches(
        "batch scan",
        &npy::read(&dir.path().join("scan.npy")).unwrap(),
        &want["out"],
        None,
    );
    let max = x
        .data()
        .as_bytes()
        .chunks(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .max();
    let got = npy::read(&dir.path().join("max.npy")).unwrap();
    assert_eq!(got.data(), &TensorData::I32(vec![max.unwrap()]));
}
