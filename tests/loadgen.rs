//! `anycore loadgen` against a real `anycore serve` on `127.0.0.1:0`: every
//! job answered and right, counts that add up, ordered percentiles, a
//! weighted mix of two kernels; bad mix files and URLs refused up front
//! (exit 2); and the comparison that verification rests on.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anycore::kernel::Outputs;
use anycore::service::api::{ArrayOut, JobResponse, OutputForm};
use anycore::service::verify::{check_output, check_response, check_values};
use anycore::tensor::{Tensor, TensorData};
use common::{anycore, stderr};
use serde_json::{Value, json};

/// A running `anycore serve`, killed when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The token the test server needs.
const TOKEN: &str = "loadgen-token-9c1e";

/// Starts `anycore serve` on a free port with the token [`TOKEN`] in a file
/// in `dir`; returns it, its URL and the token file. Waits at most a minute
/// for it to say where it listens.
fn start_server(dir: &Path) -> (Server, String, String) {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_anycore"))
        .args(["serve", "--addr", "127.0.0.1:0", "--token-file"])
        .arg(&token_file)
        .env(
            "ANYCORE_CACHE_DIR",
            std::env::temp_dir().join("anycore-test-cache"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("anycore serve starts");
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (tx, rx) = mpsc::channel();
    // Reads every line, so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving on ").nth(1) {
                let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                let _ = tx.send(url);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server says where it listens within a minute");
    (server, url, token_file.display().to_string())
}

/// Runs `anycore loadgen` with `args` (and a bound on each request) and
/// returns its exit code, stdout and stderr.
fn loadgen(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_anycore"))
        .arg("loadgen")
        .args(args)
        .args(["--timeout-s", "20"])
        .env_remove("ANYCORE_TOKEN")
        .output()
        .expect("anycore loadgen runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}

/// The outcome counts of a `--json` report.
fn count(report: &Value, outcome: &str) -> u64 {
    report["outcomes"][outcome]
        .as_u64()
        .unwrap_or_else(|| panic!("no count '{outcome}' in {report}"))
}

#[test]
fn every_job_is_answered_and_right_and_the_report_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, token_file) = start_server(dir.path());
    let args = [
        "--url",
        &url,
        "--jobs",
        "2000",
        "--concurrency",
        "16",
        "--verify-every",
        "10",
        "--token-file",
        &token_file,
        "--json",
    ];
    let (code, stdout, stderr) = loadgen(&args);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["jobs"], 2000, "{report}");
    assert_eq!(count(&report, "ok"), 2000, "{report}");
    assert_eq!(count(&report, "wrong"), 0, "{report}");
    let sum: u64 = ["ok", "busy", "client_error", "server_error", "transport"]
        .iter()
        .map(|o| count(&report, o))
        .sum();
    assert_eq!(sum, 2000, "{report}");
    // 16 connections × 125 jobs, every 10th of each checked.
    assert!(report["verified"].as_u64().unwrap() >= 150, "{report}");
    let l = &report["latency_ms"];
    let p: Vec<f64> = ["p50", "p90", "p99", "max"]
        .iter()
        .map(|k| {
            l[k].as_f64()
                .unwrap_or_else(|| panic!("no {k} in {report}"))
        })
        .collect();
    assert!(p[0] > 0.0 && p.windows(2).all(|w| w[0] <= w[1]), "{report}");
    assert!(report["throughput_jobs_per_s"].as_f64().unwrap() > 0.0);

    // By time instead of count, in words: still all answered.
    let (code, stdout, stderr) = loadgen(&[
        "--url",
        &url,
        "--duration",
        "0.5",
        "--concurrency",
        "4",
        "--token-file",
        &token_file,
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("throughput") && stdout.contains("wrong 0"),
        "{stdout}"
    );

    // Without the token every job is refused: exit 1, saying so.
    let (code, stdout, stderr) = loadgen(&["--url", &url, "--jobs", "20", "--json"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(count(&report, "client_error"), 20, "{report}");
    assert!(
        stderr.contains("20 of 20 jobs failed")
            && report["errors"]["client_error"]
                .as_str()
                .is_some_and(|m| m.contains("401")),
        "{stderr}{report}"
    );
}

#[test]
fn a_weighted_mix_of_two_kernels_is_sent_by_weight_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, token_file) = start_server(dir.path());
    let axpy = json!({"kernel": "axpy", "params": {"a": 0.5}, "inputs": {
        "x": {"dtype": "f32", "shape": [5], "data": [1, 2, 3, 4, 5]},
        "y": {"dtype": "f32", "shape": [5], "data": [0.1, 0.2, 0.3, 0.4, 0.5]}}});
    let reduce = json!({"kernel": "reduce", "params": {"op": "max"}, "outputs": "npy",
        "inputs": {"x": {"dtype": "i32", "shape": [4], "data": [3, -7, 11, 2]}}});
    let mix = dir.path().join("mix.jsonl");
    std::fs::write(
        &mix,
        format!("{}\n\n{}\n", json!({"weight": 3, "job": axpy}), reduce),
    )
    .unwrap();
    let (code, stdout, stderr) = loadgen(&[
        "--url",
        &url,
        "--mix",
        mix.to_str().unwrap(),
        "--jobs",
        "400",
        "--concurrency",
        "8",
        "--verify-every",
        "1",
        "--token-file",
        &token_file,
        "--json",
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(count(&report, "ok"), 400, "{report}");
    assert_eq!(report["verified"], 400, "{report}");
    assert_eq!(count(&report, "wrong"), 0, "{report}");

    // The service counts jobs by kernel: about 3 axpy to 1 reduce.
    let metrics = ureq::get(&format!("{url}/metrics"))
        .header("authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let jobs = |kernel: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("anycore_jobs_total{{kernel=\"{kernel}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (a, r) = (jobs("axpy"), jobs("reduce"));
    assert_eq!(a + r, 400.0, "{metrics}");
    // 300 expected; the binomial's standard deviation is about 9.
    assert!((240.0..=360.0).contains(&a), "{a} axpy, {r} reduce");
}

#[test]
fn a_bad_mix_file_is_exit_2_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"kernel": "mandelbrot", "params": {"width": 4, "height": 4}}"#;
    let cases = [
        // (file contents, the line named, words in the message)
        (format!("{good}\n{{not json\n"), Some(2), "not JSON"),
        (
            format!("{good}\n\n{{\"weight\": -2, \"job\": {good}}}\n"),
            Some(3),
            "weight",
        ),
        (
            format!("{{\"weight\": \"heavy\", \"job\": {good}}}\n"),
            Some(1),
            "weight",
        ),
        (r#"{"kernel": "nope"}"#.to_owned(), Some(1), "nope"),
        (
            r#"{"kernel": "axpy", "inputs": {"x": {"dtype": "f32", "shape": [2], "data": [1]}}}"#
                .to_owned(),
            Some(1),
            "input",
        ),
        ("\n  \n".to_owned(), None, "no jobs"),
    ];
    for (i, (text, line, words)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("mix{i}.jsonl"));
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        // Port 9 (discard) is never reached: the mix is checked first.
        let (code, stdout, stderr) =
            loadgen(&["--url", "http://127.0.0.1:9", "--mix", &path, "--jobs", "5"]);
        assert_eq!(code, Some(2), "case {i}: {stdout}{stderr}");
        assert!(
            stderr.contains(&path) && stderr.contains(words),
            "case {i}: {stderr}"
        );
        if let Some(line) = line {
            assert!(
                stderr.contains(&format!("line {line}:")),
                "case {i}: {stderr}"
            );
        }
    }
    let missing = dir.path().join("missing.jsonl").display().to_string();
    let (code, _, stderr) = loadgen(&["--url", "http://127.0.0.1:9", "--mix", &missing]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn a_url_without_a_scheme_is_exit_2_and_no_server_is_exit_1() {
    let out = anycore(&["loadgen", "--url", "127.0.0.1:7878", "--jobs", "1"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("http://127.0.0.1:7878"),
        "{}",
        stderr(&out)
    );

    // Nothing listens on port 9: every job is lost, and the run says so.
    let (code, stdout, stderr) = loadgen(&[
        "--url",
        "http://127.0.0.1:9",
        "--jobs",
        "10",
        "--concurrency",
        "2",
        "--json",
    ]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(count(&report, "transport"), 10, "{report}");
    assert!(stderr.contains("transport"), "{stderr}");
}

/// An inline output as a client reads it from the service's JSON.
fn inline(dtype: &str, data: Value) -> ArrayOut {
    let n = data.as_array().map_or(0, Vec::len);
    serde_json::from_value(json!({"dtype": dtype, "shape": [n], "data": data})).unwrap()
}

#[test]
fn verification_counts_differences_and_treats_nan_as_equal() {
    let want = Tensor::from_f32(vec![1.0, -2.5, 1e6, f32::NAN, f32::INFINITY]);
    // Within 1e-4 · max(1, |x|): rounding differences between backends pass.
    let close = inline("f32", json!([1.00005, -2.5002, 1e6 + 50.0, null, null]));
    assert_eq!(check_output(&close, &want), Ok(()));
    let nan = [
        Some(1.0),
        Some(-2.5),
        Some(1e6),
        Some(f64::NAN),
        Some(f64::INFINITY),
    ];
    assert_eq!(check_values(&nan, &want), Ok(()));

    // One element off: wrong, naming it.
    let off = inline("f32", json!([1.0, -2.5, 1e6 + 200.0, null, null]));
    let why = check_output(&off, &want).unwrap_err();
    assert!(why.contains("element 2"), "{why}");
    // NaN where a number belongs, a number where NaN belongs, the wrong
    // infinity: each wrong.
    for (i, bad) in [
        (0, Some(f64::NAN)),
        (3, Some(0.0)),
        (4, Some(f64::NEG_INFINITY)),
        (0, None),
    ] {
        let mut got = nan;
        got[i] = bad;
        let why = check_values(&got, &want).unwrap_err();
        assert!(why.contains(&format!("element {i}")), "{why}");
    }
    // Integers are exact; lengths, dtypes and shapes must match.
    let ints = Tensor::new(vec![3], TensorData::U32(vec![7, 8, 4_000_000_000]));
    assert_eq!(
        check_output(&inline("u32", json!([7, 8, 4_000_000_000u32])), &ints),
        Ok(())
    );
    assert!(check_output(&inline("u32", json!([7, 8, 3_999_999_999u32])), &ints).is_err());
    assert!(check_output(&inline("i32", json!([7, 8, 4_000_000_000u32])), &ints).is_err());
    assert!(check_values(&[Some(7.0), Some(8.0)], &ints).is_err());
    // Not numbers: not an answer at all.
    let strings = json!({"dtype": "u32", "shape": [3], "data": [7, "8", 9]});
    assert!(serde_json::from_value::<ArrayOut>(strings).is_err());

    // `.npy` answers are compared the same way, NaN included.
    let npy = |t: &Tensor| ArrayOut::new(t.clone(), OutputForm::Npy);
    assert_eq!(check_output(&npy(&want), &want), Ok(()));
    let other = Tensor::from_f32(vec![1.0, -2.5, 1e6, 0.0, f32::INFINITY]);
    assert!(check_output(&npy(&other), &want).is_err());

    // A whole answer: the outputs' names must match too.
    let response = |outputs: Vec<(&str, ArrayOut)>| -> JobResponse {
        let mut r: JobResponse = serde_json::from_value(json!({
            "kernel": "axpy", "backend": "cpu", "device": "test", "placement_reason": "test",
            "timings_ms": {"queued": 0, "upload": 0, "compute": 0, "download": 0, "total": 0},
            "outputs": {}}))
        .unwrap();
        r.outputs = outputs
            .into_iter()
            .map(|(n, o)| (n.to_owned(), o))
            .collect();
        r
    };
    let expected: Outputs = [("out".to_owned(), want.clone())].into();
    assert_eq!(
        check_response(&response(vec![("out", npy(&want))]), &expected),
        Ok(())
    );
    let why = check_response(&response(vec![("other", npy(&want))]), &expected).unwrap_err();
    assert!(why.contains("other"), "{why}");
    let why = check_response(&response(vec![("out", off)]), &expected).unwrap_err();
    assert!(why.contains("'out'") && why.contains("element 2"), "{why}");
}
