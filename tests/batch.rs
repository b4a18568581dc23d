//! `anycore batch`: jobs run concurrently, a broken job is reported while the
//! rest run, results go to `--results`, and the exit code says what happened.

mod common;

use std::process::Command;

use anycore::kernel::random::random_tensor;
use anycore::kernel::{Job, Kernel, Task};
use anycore::tensor::{DType, npy};
use common::assert_close;

fn batch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_anycore"))
        .arg("batch")
        .args(args)
        .env(
            "ANYCORE_CACHE_DIR",
            std::env::temp_dir().join("anycore-test-cache"),
        )
        .output()
        .expect("anycore runs")
}

#[test]
fn a_broken_job_is_reported_and_the_rest_run() {
    let dir = tempfile::tempdir().unwrap();
    let x = random_tensor(DType::F32, &[5000], 11).unwrap();
    npy::write(&dir.path().join("x.npy"), &x).unwrap();
    let mut lines: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"id": "axpy{i}", "kernel": "axpy", "inputs": {{"x": "x.npy", "y": {{"random": {{"dtype": "f32", "shape": [5000], "seed": {i}}}}}}}, "params": {{"a": {i}}}, "outputs": {{"out": "out{i}.npy"}}, "backend": "{}"}}"#,
                ["cpu", "auto"][i % 2]
            )
        })
        .collect();
    lines.insert(7, r#"{"id": "bad", "kernel": "matmul", "inputs": {"a": {"random": {"dtype": "f32", "shape": [3, 4]}}, "b": {"random": {"dtype": "f32", "shape": [5, 2]}}}}"#.into());
    lines.insert(3, "this is not json".into());
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(&jobs, lines.join("\n")).unwrap();
    let results = dir.path().join("results.jsonl");

    let out = batch(&[
        jobs.to_str().unwrap(),
        "--concurrency",
        "4",
        "--results",
        results.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("job bad failed") && stderr.contains("a's columns (4)"),
        "{stderr}"
    );
    assert!(stderr.contains("line 4"), "{stderr}");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("median ms") && summary.contains("cpu"),
        "{summary}"
    );

    let results: Vec<serde_json::Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 22, "one result line per job");
    assert_eq!(results.iter().filter(|r| r["status"] == "error").count(), 2);
    for i in 0..20 {
        let r = results
            .iter()
            .find(|r| r["id"] == format!("axpy{i}"))
            .unwrap();
        assert_eq!(r["status"], "ok", "{r}");
        assert!(
            r["placement_reason"].as_str().is_some() && r["timings_ms"]["total"].is_f64(),
            "{r}"
        );
        if i % 2 == 0 {
            assert_eq!(r["backend"], "cpu");
        }
        let y = random_tensor(DType::F32, &[5000], i).unwrap();
        let task = Task::new(
            Job::new(Kernel::Axpy)
                .input("x", x.clone())
                .input("y", y)
                .param("a", i),
        )
        .unwrap();
        let got = npy::read(&dir.path().join(format!("out{i}.npy"))).unwrap();
        assert_close(
            &format!("axpy{i}"),
            got.as_f32().unwrap(),
            task.reference()["out"].as_f32().unwrap(),
            1e-6,
        );
    }
}

#[test]
fn an_unreadable_jobs_file_is_exit_2() {
    let out = batch(&["/nonexistent/jobs.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/jobs.jsonl") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn all_good_jobs_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(
        &jobs,
        r#"{"kernel": "reduce", "inputs": {"x": {"random": {"dtype": "u32", "shape": [1000], "seed": 5}}}}
{"kernel": "mandelbrot", "params": {"width": 64, "height": 48}, "outputs": {"out": "m.png"}}
"#,
    )
    .unwrap();
    let out = batch(&[jobs.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("m.png").exists());
}

/// A line with "steps" is a pipeline: its inputs may be paths, generated
/// or inline; outputs with a path are written; a bad pipeline line fails
/// alone, naming its step. `run --pipeline` takes the same JSON from a
/// file, and refuses a bad one with exit 2, naming the step.
#[test]
fn pipelines_run_from_batch_lines_and_from_run_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let x = random_tensor(DType::F32, &[3000], 5).unwrap();
    npy::write(&dir.path().join("x.npy"), &x).unwrap();
    let pipeline = |id: &str, out: &str, y_len: usize| {
        format!(
            r#"{{"id": "{id}", "steps": [
                {{"name": "scaled", "kernel": "axpy", "params": {{"a": 3}},
                  "inputs": {{"x": "x.npy", "y": {{"dtype": "f32", "shape": [{y_len}], "data": {data}}}}}}},
                {{"name": "sums", "kernel": "scan", "params": {{"inclusive": true}},
                  "inputs": {{"x": {{"step": "scaled", "output": "out"}}}}}}],
              "outputs": {{"sums": {{"step": "sums", "output": "out", "path": "{out}"}}}}}}"#,
            data = serde_json::to_string(&vec![0.5f32; y_len]).unwrap()
        )
        .replace('\n', " ")
    };
    let want: Vec<f32> = x
        .as_f32()
        .unwrap()
        .iter()
        .scan(0.0f64, |sum, v| {
            *sum += f64::from(3.0 * v + 0.5);
            Some(*sum as f32)
        })
        .collect();
    let lines = [
        pipeline("good", "sums.npy", 3000),
        pipeline("bad", "never.npy", 7),
    ];
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(&jobs, lines.join("\n")).unwrap();
    let out = batch(&[jobs.to_str().unwrap(), "--backend", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "job bad failed: step 'scaled': axpy: input 'x' is f32[3000] but 'y' is f32[7]"
        ),
        "{stderr}"
    );
    let sums = npy::read(&dir.path().join("sums.npy")).unwrap();
    assert_close("batch pipeline", sums.as_f32().unwrap(), &want, 1e-5);
    assert!(!dir.path().join("never.npy").exists());

    // The same JSON (without the id) from a file.
    let file = dir.path().join("pipeline.json");
    let text = pipeline("x", "again.npy", 3000).replacen(r#""id": "x", "#, "", 1);
    std::fs::write(&file, text).unwrap();
    let run = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_anycore"))
            .args(["run", "--backend", "cpu", "--json", "--pipeline"])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = run(&file);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["steps"][1]["name"], "sums");
    assert_eq!(report["backend"], "cpu");
    let again = npy::read(&dir.path().join("again.npy")).unwrap();
    assert_eq!(again, sums);
    let bad = dir.path().join("bad.json");
    let text = pipeline("x", "no.npy", 9).replacen(r#""id": "x", "#, "", 1);
    std::fs::write(&bad, text).unwrap();
    let out = run(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("step 'scaled'"), "{stderr}");
}
