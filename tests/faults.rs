//! GPU faults, injected (`GpuOptions::faults`, `ANYCORE_GPU_FAULTS`): a
//! device loss, an out-of-memory, a slow GPU and a panic inside the
//! backend. Each shows that the job it hits re-runs on the CPU, saying why,
//! or fails with a clear error; that jobs in flight beside it all come back
//! right (none lost); and that after a loss the GPU is marked unavailable,
//! in placement reasons, on `/v1/devices` and in `/metrics`.
//!
//! On the real GPU path (llvmpipe where there is no hardware); skipped
//! without an adapter unless `ANYCORE_REQUIRE_GPU_TESTS=1`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anycore::backend::gpu::GpuOptions;
use anycore::backend::{BackendChoice, BackendKind};
use anycore::coordinator::JobReport;
use anycore::coordinator::cost::CostModel;
use anycore::engine::{CostModelSource, Engine, EngineConfig};
use anycore::error::{Error, Result};
use anycore::kernel::axpy::Axpy;
use anycore::kernel::{Job, Kernel, Task};
use anycore::service::ServiceConfig;
use anycore::tensor::{Tensor, npy};
use common::server::Server;
use common::{assert_close, gpu_required, random_f32, rng};
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};

/// An engine config with the GPU (llvmpipe allowed) injecting `faults`,
/// and an empty cost model: `auto` prefers the GPU.
fn config(faults: &str) -> EngineConfig {
    EngineConfig {
        gpu: GpuOptions {
            allow_software: true,
            poison_outputs: true,
            faults: Some(faults.into()),
            ..GpuOptions::default()
        },
        cost_model: CostModelSource::Fixed(CostModel::default()),
        ..EngineConfig::default()
    }
}

/// An engine whose GPU injects `faults`; `None` (the test skips) when
/// there is no GPU and none is required.
async fn engine(faults: &str) -> Option<Engine> {
    let engine = Engine::start(config(faults)).await.expect("engine starts");
    if engine.coordinator().has_gpu() {
        return Some(engine);
    }
    assert!(
        !gpu_required(),
        "ANYCORE_REQUIRE_GPU_TESTS=1 but the engine has no GPU"
    );
    eprintln!("skipping: no GPU");
    None
}

/// An `axpy` of fresh random data (a random length around workgroup
/// edges and a random `a`), and its reference output.
fn job(rng: &mut SmallRng) -> (Task, Vec<f32>) {
    let n = rng.random_range(1..5_000);
    let a = rng.random_range(-2.0f32..2.0);
    let task = Task::Axpy(Axpy::new(a, random_f32(rng, n), random_f32(rng, n)).unwrap());
    let want = task.reference()["out"].as_f32().unwrap().to_vec();
    (task, want)
}

/// Submits every job at once on `choice`, then waits for each: the
/// answers in order, each with the output it should have.
async fn run_all(
    engine: &Engine,
    jobs: Vec<(Task, Vec<f32>)>,
    choice: BackendChoice,
) -> Vec<(Result<JobReport>, Vec<f32>)> {
    let mut handles = Vec::new();
    for (task, want) in jobs {
        let handle = engine.coordinator().submit(task, choice).await.unwrap();
        handles.push((handle, want));
    }
    let mut answers = Vec::new();
    for (handle, want) in handles {
        answers.push((handle.wait().await, want));
    }
    answers
}

/// Asserts a report's output is the reference's.
fn assert_right(what: &str, report: &JobReport, want: &[f32]) {
    assert_close(what, report.outputs["out"].as_f32().unwrap(), want, 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_out_of_memory_reruns_its_job_on_the_cpu_and_says_so() {
    let Some(engine) = engine("oom@2,oom@6").await else {
        return;
    };
    let mut rng = rng();
    // One at a time: the second GPU job is the one that fails.
    for i in 1..=3 {
        let (task, want) = job(&mut rng);
        let report = engine
            .coordinator()
            .run(task, BackendChoice::Gpu)
            .await
            .unwrap();
        assert_right(&format!("job {i}"), &report, &want);
        if i == 2 {
            assert_eq!(report.backend, BackendKind::Cpu);
            let why = &report.placement_reason;
            assert!(
                why.contains("out of memory") && why.contains("re-ran on the CPU"),
                "{why}"
            );
        } else {
            assert_eq!(
                report.backend,
                BackendKind::Gpu,
                "{}",
                report.placement_reason
            );
        }
    }
    // Many at once, `gpu` and `auto` and `cpu` mixed: one of those on the
    // GPU (its sixth job) re-runs on the CPU; every answer is right.
    let choices = [BackendChoice::Gpu, BackendChoice::Auto, BackendChoice::Cpu];
    let mut handles = Vec::new();
    for i in 0..12 {
        let (task, want) = job(&mut rng);
        let choice = choices[i % 3];
        handles.push((
            engine.coordinator().submit(task, choice).await.unwrap(),
            want,
            choice,
        ));
    }
    let mut reruns = 0;
    for (i, (handle, want, choice)) in handles.into_iter().enumerate() {
        let report = handle.wait().await.unwrap();
        assert_right(&format!("burst job {i}"), &report, &want);
        if report.placement_reason.contains("out of memory") {
            assert_ne!(choice, BackendChoice::Cpu);
            assert_eq!(report.backend, BackendKind::Cpu);
            reruns += 1;
        } else if choice != BackendChoice::Cpu {
            assert_eq!(
                report.backend,
                BackendKind::Gpu,
                "{}",
                report.placement_reason
            );
        }
    }
    assert_eq!(reruns, 1, "oom@6 hits one job of the burst");
    // Out of memory is not a loss: the GPU stays in use.
    assert_eq!(engine.coordinator().gpu_lost(), None);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_gpu_backend_fails_only_its_job() {
    let Some(engine) = engine("panic@3").await else {
        return;
    };
    let mut rng = rng();
    let jobs = (0..8).map(|_| job(&mut rng)).collect();
    let answers = run_all(&engine, jobs, BackendChoice::Gpu).await;
    let mut panicked = 0;
    for (i, (answer, want)) in answers.iter().enumerate() {
        match answer {
            Ok(report) => {
                assert_eq!(report.backend, BackendKind::Gpu);
                assert_right(&format!("job {i}"), report, want);
            }
            Err(Error::Panicked(m)) => {
                assert!(m.contains("injected fault panic@3"), "{m}");
                panicked += 1;
            }
            Err(e) => panic!("job {i}: {e}"),
        }
    }
    assert_eq!(panicked, 1, "only the third job fails");
    // The GPU worker lives on and later jobs run there.
    let (task, want) = job(&mut rng);
    let report = engine
        .coordinator()
        .run(task, BackendChoice::Auto)
        .await
        .unwrap();
    assert_eq!(
        report.backend,
        BackendKind::Gpu,
        "{}",
        report.placement_reason
    );
    assert_right("after the panic", &report, &want);
    assert_eq!(engine.coordinator().gpu_lost(), None);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_gpu_delays_only_its_own_jobs() {
    let pause = Duration::from_millis(300);
    let Some(engine) = engine("slow=300").await else {
        return;
    };
    let mut rng = rng();
    let start = Instant::now();
    let mut gpu_jobs = Vec::new();
    for _ in 0..3 {
        let (task, want) = job(&mut rng);
        let handle = engine
            .coordinator()
            .submit(task, BackendChoice::Gpu)
            .await
            .unwrap();
        gpu_jobs.push((handle, want));
    }
    // A CPU job submitted behind them does not wait for them.
    let (task, want) = job(&mut rng);
    let cpu = engine
        .coordinator()
        .run(task, BackendChoice::Cpu)
        .await
        .unwrap();
    let cpu_done = start.elapsed();
    assert_right("cpu job", &cpu, &want);
    for (i, (handle, want)) in gpu_jobs.into_iter().enumerate() {
        let report = handle.wait().await.unwrap();
        assert_eq!(report.backend, BackendKind::Gpu);
        assert_right(&format!("gpu job {i}"), &report, &want);
    }
    let gpu_done = start.elapsed();
    assert!(gpu_done >= 3 * pause, "three slow jobs took {gpu_done:?}");
    assert!(
        cpu_done < gpu_done,
        "the CPU job ({cpu_done:?}) waited for the GPU's ({gpu_done:?})"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_device_loss_the_gpu_is_unavailable_and_work_goes_to_the_cpu() {
    let Some(engine) = engine("lost@3").await else {
        return;
    };
    let coordinator = Arc::clone(engine.coordinator());
    let mut rng = rng();
    // Job 1 keeps its output on the GPU; job 2 runs there too.
    let (task, _) = job(&mut rng);
    let kept = coordinator
        .submit_keeping(task, vec!["out".into()], BackendChoice::Gpu)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(kept.backend, BackendKind::Gpu);
    let handle = kept.kept["out"].clone();
    let (task, want2) = job(&mut rng);
    let second = coordinator.run(task, BackendChoice::Gpu).await.unwrap();
    assert_eq!(second.backend, BackendKind::Gpu);
    assert_right("job 2", &second, &want2);
    assert_eq!(coordinator.gpu_lost(), None);

    // Job 3 meets the loss; it and those queued behind it re-run on the
    // CPU, or are placed there once the loss is known: all right, none lost.
    let jobs = (0..8).map(|_| job(&mut rng)).collect();
    let answers = run_all(&engine, jobs, BackendChoice::Auto).await;
    for (i, (answer, want)) in answers.iter().enumerate() {
        let report = answer.as_ref().unwrap();
        assert_eq!(
            report.backend,
            BackendKind::Cpu,
            "{}",
            report.placement_reason
        );
        assert!(
            report.placement_reason.contains("lost"),
            "job {i}: {}",
            report.placement_reason
        );
        assert_right(&format!("job {i}"), report, want);
    }
    let why = coordinator.gpu_lost().expect("the GPU is marked lost");
    assert!(why.contains("lost@3"), "{why}");

    // Later work: `auto` goes to the CPU naming the loss; `gpu` is refused.
    let (task, want) = job(&mut rng);
    let report = coordinator.run(task, BackendChoice::Auto).await.unwrap();
    assert_eq!(report.backend, BackendKind::Cpu);
    assert!(
        report
            .placement_reason
            .starts_with("auto: the GPU was lost (injected fault lost@3)"),
        "{}",
        report.placement_reason
    );
    assert_right("after the loss", &report, &want);
    let (task, _) = job(&mut rng);
    let refused = coordinator.run(task, BackendChoice::Gpu).await.unwrap_err();
    assert!(
        matches!(&refused, Error::NoGpu(m) if m.contains("the GPU was lost")),
        "{refused}"
    );
    // A pipeline placed by `auto` runs on the CPU too.
    let x = Tensor::from_f32(random_f32(&mut rng, 100));
    let y = Tensor::from_f32(random_f32(&mut rng, 100));
    let piped = engine
        .run_pipeline(common::three_steps(&x, &y).output("sum", "total", "out"))
        .await
        .unwrap();
    assert_eq!(piped.backend, BackendKind::Cpu);
    assert!(
        piped.placement_reason.contains("the GPU was lost"),
        "{}",
        piped.placement_reason
    );
    // An output kept only on the lost GPU cannot come back: a clear error,
    // not a hang.
    assert!(
        handle.host().is_none(),
        "job 1's output was kept on the GPU"
    );
    let unread = engine.read(&handle).await.unwrap_err();
    assert!(
        matches!(&unread, Error::Gpu(m) if m.contains("the GPU device was lost")),
        "{unread}"
    );
    engine.shutdown().await;
}

/// A bad spec is refused when the GPU backend opens, naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_fault_spec_is_an_error_at_open() {
    let err = Engine::start(config("lost@0,melt@2"))
        .await
        .err()
        .expect("a bad spec is refused");
    let message = err.to_string();
    assert!(
        message.contains("ANYCORE_GPU_FAULTS") && message.contains("lost@0"),
        "{message}"
    );
    assert!(err.is_user_error());
}

/// GETs `path`, or POSTs `body` as JSON: the status and the body.
async fn call(server: &Server, path: &str, body: Option<Value>) -> (u16, String) {
    let method = if body.is_some() { "POST" } else { "GET" };
    let (status, _, text) = server.call(method, path, body.map(|b| b.to_string())).await;
    (status, text)
}

/// An `axpy` job as the service takes it, with its reference output.
fn job_json(rng: &mut SmallRng, backend: &str) -> (Value, Vec<f32>) {
    let n = rng.random_range(1..2_000);
    let (x, y) = (random_f32(rng, n), random_f32(rng, n));
    let task = Task::new(
        Job::new(Kernel::Axpy)
            .input("x", x.clone())
            .input("y", y.clone())
            .param("a", 0.75),
    )
    .unwrap();
    let want = task.reference()["out"].as_f32().unwrap().to_vec();
    let body = json!({
        "kernel": "axpy",
        "params": {"a": 0.75},
        "backend": backend,
        "inputs": {
            "x": {"dtype": "f32", "shape": [n], "data": x},
            "y": {"dtype": "f32", "shape": [n], "data": y},
        },
    });
    (body, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_reports_a_lost_gpu_and_keeps_answering_on_the_cpu() {
    let Some(engine) = engine("lost@2").await else {
        return;
    };
    let server = Server::serving(engine, ServiceConfig::default()).await;
    let mut rng = rng();
    let (_, devices) = call(&server, "/v1/devices", None).await;
    let devices: Value = serde_json::from_str(&devices).unwrap();
    assert_eq!(devices["gpu_available"], json!(true), "{devices}");
    assert_eq!(devices["gpu_lost"], Value::Null, "{devices}");
    let (_, metrics) = call(&server, "/metrics", None).await;
    assert!(metrics.contains("anycore_gpu_present 1"), "{metrics}");

    let post = |body: Value| call(&server, "/v1/jobs", Some(body));
    let check = |what: &str, status: u16, body: &str, want: &[f32]| -> Value {
        assert_eq!(status, 200, "{what}: {body}");
        let v: Value = serde_json::from_str(body).unwrap();
        let got: Vec<f32> = serde_json::from_value(v["outputs"]["out"]["data"].clone()).unwrap();
        assert_close(what, &got, want, 1e-6);
        v
    };
    let (first, want) = job_json(&mut rng, "gpu");
    let (status, body) = post(first).await;
    let v = check("job 1", status, &body, &want);
    assert_eq!(v["backend"], "gpu", "{v}");

    // The second job meets the loss and re-runs on the CPU, saying so.
    let (second, want) = job_json(&mut rng, "gpu");
    let (status, body) = post(second).await;
    let v = check("job 2", status, &body, &want);
    assert_eq!(v["backend"], "cpu", "{v}");
    let why = v["placement_reason"].as_str().unwrap();
    assert!(
        why.contains("lost@2") && why.contains("re-ran on the CPU"),
        "{why}"
    );

    let (_, devices) = call(&server, "/v1/devices", None).await;
    let devices: Value = serde_json::from_str(&devices).unwrap();
    assert_eq!(devices["gpu_available"], json!(false), "{devices}");
    assert!(
        devices["gpu_lost"]
            .as_str()
            .is_some_and(|w| w.contains("lost@2")),
        "{devices}"
    );
    assert!(
        devices["gpu"].is_string(),
        "the device is still named: {devices}"
    );
    let (_, metrics) = call(&server, "/metrics", None).await;
    assert!(metrics.contains("anycore_gpu_present 0"), "{metrics}");

    // Later: `auto` runs on the CPU naming the loss; `gpu` is a clear 400.
    let (auto, want) = job_json(&mut rng, "auto");
    let (status, body) = post(auto).await;
    let v = check("auto job", status, &body, &want);
    assert_eq!(v["backend"], "cpu", "{v}");
    let why = v["placement_reason"].as_str().unwrap();
    assert!(why.contains("the GPU was lost"), "{why}");
    let (forced, _) = job_json(&mut rng, "gpu");
    let (status, body) = post(forced).await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "no_gpu", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the GPU was lost")),
        "{v}"
    );
    server.stop().await;
}

/// `anycore` itself reads the switch from the environment: a bad spec
/// stops it with exit 2 and a message naming the variable.
#[test]
fn the_environment_variable_reaches_the_binary() {
    let dir = std::env::temp_dir().join(format!("anycore-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = dir.join("x.npy");
    npy::write(&x, &Tensor::from_f32(random_f32(&mut rng(), 100))).unwrap();
    let input = format!("x={}", x.display());
    let out = common::anycore(
        &["run", "reduce", "--allow-software-gpu", "-i", &input],
        &[("ANYCORE_GPU_FAULTS", "oom@x")],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = common::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ANYCORE_GPU_FAULTS"), "{stderr}");
}
