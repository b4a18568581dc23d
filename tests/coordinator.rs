//! The coordinator under load: many concurrent jobs, back-pressure, the
//! `auto` policy, GPU-failure fallback, panics and shutdown. Stand-in
//! backends (a CPU pool posing as a GPU, one that fails, one that panics,
//! one that is slow) make placement and failure deterministic; the real
//! GPU backend is used where the test is about it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anycore::backend::Fetched;
use anycore::backend::cpu::CpuBackend;
use anycore::backend::{Backend, BackendChoice, BackendKind, Run};
use anycore::coordinator::Coordinator;
use anycore::coordinator::cost::{CostModel, Line};
use anycore::engine::{CostModelSource, Engine, EngineConfig};
use anycore::kernel::axpy::Axpy;
use anycore::kernel::{Job, Kernel, Task};
use anycore::tensor::{DType, DeviceCopy, Handle, Spec, TensorData};
use anycore::{Error, Result};
use common::{assert_close, random_f32, rng};

/// What a stand-in GPU does with each job.
#[derive(Clone, Copy)]
enum Act {
    /// Run it on a CPU pool, reporting kind Gpu.
    Work,
    /// Fail as a lost device would.
    Fail,
    /// Panic inside the "kernel".
    Panic,
    /// Sleep, then run it.
    Slow(Duration),
}

struct StandIn {
    kind: BackendKind,
    act: Act,
    cpu: CpuBackend,
}

impl StandIn {
    fn backend(kind: BackendKind, act: Act) -> Arc<dyn Backend> {
        Arc::new(StandIn {
            kind,
            act,
            cpu: CpuBackend::new(Some(1)).unwrap(),
        })
    }
}

impl Backend for StandIn {
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn device(&self) -> String {
        format!("stand-in {}", self.kind)
    }
    /// Brings home the stand-in device copies of [`on_stand_in_gpu`].
    fn fetch(&self, handles: &[Handle]) -> Result<Fetched> {
        if self.kind == BackendKind::Cpu {
            return self.cpu.fetch(handles); // which cannot read device memory
        }
        for h in handles.iter().filter(|h| h.host().is_none()) {
            let copy = h.device().expect("a handle is somewhere");
            let data = copy
                .as_any()
                .downcast_ref::<FakeCopy>()
                .expect("ours")
                .0
                .clone();
            h.set_host(TensorData::F32(data));
        }
        Ok(Fetched::default())
    }
    fn run_keeping(&self, task: &Task, keep: &[String]) -> Result<Run> {
        match self.act {
            Act::Work => self.cpu.run_keeping(task, keep),
            Act::Fail => Err(Error::Gpu("injected device loss".into())),
            Act::Panic => panic!("injected panic"),
            Act::Slow(d) => {
                std::thread::sleep(d);
                self.cpu.run_keeping(task, keep)
            }
        }
    }
}

/// A stand-in GPU's copy of a tensor: its elements, out of the host's sight.
struct FakeCopy(Vec<f32>);

impl DeviceCopy for FakeCopy {
    fn bytes(&self) -> u64 {
        self.0.len() as u64 * 4
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A handle whose data is only on a stand-in GPU.
fn on_stand_in_gpu(data: Vec<f32>) -> Handle {
    let spec = Spec {
        dtype: DType::F32,
        shape: vec![data.len()],
    };
    Handle::on_device(spec, Arc::new(FakeCopy(data)))
}

fn axpy(n: usize) -> (Task, Vec<f32>) {
    let mut rng = rng();
    let task =
        Task::Axpy(Axpy::new(1.5, random_f32(&mut rng, n), random_f32(&mut rng, n)).unwrap());
    let want = task.reference()["out"].as_f32().unwrap().to_vec();
    (task, want)
}

/// A model in which the GPU costs 1 ms to start and 1 ns per element and the
/// CPU 10 ns per element: the GPU wins past about 111,000 elements. Frozen,
/// so observed run times do not move the crossover.
fn crossover_model() -> CostModel {
    let mut model = CostModel::default();
    model.set(BackendKind::Gpu, Kernel::Axpy, Line::new(1.0, 1e-6));
    model.set(BackendKind::Cpu, Kernel::Axpy, Line::new(0.0, 1e-5));
    model.freeze();
    model
}

fn coordinator(gpu: Act, model: CostModel, capacity: usize) -> Coordinator {
    Coordinator::new(
        StandIn::backend(BackendKind::Cpu, Act::Work),
        Ok(StandIn::backend(BackendKind::Gpu, gpu)),
        model,
        capacity,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_concurrent_jobs_all_complete_correctly() {
    let coord = Arc::new(coordinator(Act::Work, crossover_model(), 64));
    let mut tasks = Vec::new();
    for i in 0..400 {
        let coord = Arc::clone(&coord);
        let choice = [BackendChoice::Auto, BackendChoice::Cpu, BackendChoice::Gpu][i % 3];
        tasks.push(tokio::spawn(async move {
            let (task, want) = axpy(1 + (i * 7919) % 300_000);
            let report = coord.run(task, choice).await.expect("job succeeds");
            assert_close(
                &format!("job {i}"),
                report.outputs["out"].as_f32().unwrap(),
                &want,
                1e-6,
            );
            report.backend
        }));
    }
    let mut per_backend = [0, 0];
    for t in tasks {
        match t.await.expect("task did not panic") {
            BackendKind::Gpu => per_backend[0] += 1,
            BackendKind::Cpu => per_backend[1] += 1,
        }
    }
    assert_eq!(per_backend[0] + per_backend[1], 400, "a job was lost");
    assert!(per_backend[0] > 0 && per_backend[1] > 0, "{per_backend:?}");
    assert_eq!(coord.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_coordinator_says_busy_and_submit_waits() {
    let slow = Act::Slow(Duration::from_millis(300));
    let coord = Arc::new(Coordinator::new(
        StandIn::backend(BackendKind::Cpu, slow),
        Err("no GPU in this test".into()),
        CostModel::default(),
        2,
    ));
    let first = coord.try_submit(axpy(10).0, BackendChoice::Auto).unwrap();
    let second = coord.try_submit(axpy(10).0, BackendChoice::Auto).unwrap();
    assert!(matches!(
        coord.try_submit(axpy(10).0, BackendChoice::Auto),
        Err(Error::Busy)
    ));
    assert_eq!(coord.in_flight(), 2);

    // submit waits for room instead of failing, and gets it when a job ends.
    let waiting = {
        let coord = Arc::clone(&coord);
        tokio::spawn(async move { coord.run(axpy(10).0, BackendChoice::Auto).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    first.wait().await.unwrap();
    second.wait().await.unwrap();
    waiting.await.unwrap().unwrap();
}

#[tokio::test]
async fn auto_sends_small_jobs_to_the_cpu_and_large_ones_to_the_gpu() {
    let coord = coordinator(Act::Work, crossover_model(), 8);
    for (n, expect) in [
        (1_000, BackendKind::Cpu),
        (50_000, BackendKind::Cpu),
        (400_000, BackendKind::Gpu),
        (2_000_000, BackendKind::Gpu),
    ] {
        let report = coord.run(axpy(n).0, BackendChoice::Auto).await.unwrap();
        assert_eq!(report.backend, expect, "n={n}: {}", report.placement_reason);
        assert!(
            report.placement_reason.contains("predicted"),
            "{}",
            report.placement_reason
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_gpu_queue_spills_work_to_the_cpu() {
    // The GPU is predicted faster for every job, but it is slow in fact and
    // its queue grows; predicted completion then favours the CPU.
    let mut model = CostModel::default();
    model.set(BackendKind::Gpu, Kernel::Axpy, Line::new(100.0, 0.0));
    model.set(BackendKind::Cpu, Kernel::Axpy, Line::new(250.0, 0.0));
    model.freeze();
    let coord = Coordinator::new(
        StandIn::backend(BackendKind::Cpu, Act::Work),
        Ok(StandIn::backend(
            BackendKind::Gpu,
            Act::Slow(Duration::from_millis(200)),
        )),
        model,
        16,
    );
    let handles: Vec<_> = (0..4)
        .map(|_| coord.try_submit(axpy(100).0, BackendChoice::Auto).unwrap())
        .collect();
    let mut backends = Vec::new();
    for h in handles {
        backends.push(h.wait().await.unwrap().backend);
    }
    assert_eq!(backends[0], BackendKind::Gpu);
    assert!(backends.contains(&BackendKind::Cpu), "{backends:?}");
}

/// A pipeline placed by `auto` on the backend whose steps add up to less
/// (the crossover model: two axpy steps of 10⁶ elements, 2 ms on the GPU
/// against 10 ms on the CPU; of 10³, the CPU); a GPU failure re-runs the
/// whole pipeline on the CPU and says so; a panicking step fails only its
/// pipeline.
#[tokio::test]
async fn pipelines_are_placed_as_a_whole_and_fall_back_as_a_whole() {
    use anycore::pipeline::{Pipeline, Step};
    use anycore::tensor::Tensor;
    let mut rng = rng();
    let two_steps = |n: usize, rng: &mut rand::rngs::SmallRng| {
        let (x, y) = (random_f32(rng, n), random_f32(rng, n));
        let want: Vec<f32> = x.iter().zip(&y).map(|(x, y)| 2.0 * x + (x + y)).collect();
        let x = Tensor::from_f32(x);
        let pipeline = Pipeline::new()
            .step(
                Step::new("s", Kernel::Axpy)
                    .input("x", x.clone())
                    .input("y", Tensor::from_f32(y)),
            )
            .step(
                Step::new("t", Kernel::Axpy)
                    .param("a", 2)
                    .input_from("y", "s", "out")
                    .input("x", x),
            )
            .output("out", "t", "out");
        (pipeline.check().unwrap(), want)
    };
    let coord = coordinator(Act::Work, crossover_model(), 8);
    for (n, kind) in [(1_000_000, BackendKind::Gpu), (1_000, BackendKind::Cpu)] {
        let (pipeline, _) = two_steps(n, &mut rng);
        let report = coord
            .run_pipeline(pipeline, BackendChoice::Auto)
            .await
            .unwrap();
        assert_eq!(report.backend, kind, "n={n}: {}", report.placement_reason);
        assert_eq!(report.steps.len(), 2);
    }
    let coord = coordinator(Act::Fail, crossover_model(), 8);
    let (pipeline, want) = two_steps(5_000, &mut rng);
    let report = coord
        .run_pipeline(pipeline, BackendChoice::Gpu)
        .await
        .unwrap();
    assert_eq!(report.backend, BackendKind::Cpu);
    assert!(
        report.placement_reason.contains("re-ran on the CPU"),
        "{}",
        report.placement_reason
    );
    assert_close(
        "fallback",
        report.outputs["out"].as_f32().unwrap(),
        &want,
        1e-5,
    );
    let coord = coordinator(Act::Panic, crossover_model(), 8);
    let (pipeline, _) = two_steps(10, &mut rng);
    let err = coord
        .run_pipeline(pipeline, BackendChoice::Gpu)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Panicked(_)), "{err}");
    let (task, _) = axpy(10);
    assert_eq!(
        coord.run(task, BackendChoice::Cpu).await.unwrap().backend,
        BackendKind::Cpu
    );
}

#[tokio::test]
async fn a_gpu_failure_reruns_the_job_on_the_cpu_and_says_so() {
    let coord = coordinator(Act::Fail, crossover_model(), 8);
    let (task, want) = axpy(1000);
    let report = coord.run(task, BackendChoice::Gpu).await.unwrap();
    assert_eq!(report.backend, BackendKind::Cpu);
    assert!(
        report.placement_reason.contains("injected device loss"),
        "{}",
        report.placement_reason
    );
    assert!(
        report.placement_reason.contains("re-ran on the CPU"),
        "{}",
        report.placement_reason
    );
    assert_close(
        "fallback",
        report.outputs["out"].as_f32().unwrap(),
        &want,
        1e-6,
    );
}

#[tokio::test]
async fn a_panicking_kernel_fails_only_its_job() {
    let coord = Coordinator::new(
        StandIn::backend(BackendKind::Cpu, Act::Work),
        Ok(StandIn::backend(BackendKind::Gpu, Act::Panic)),
        crossover_model(),
        8,
    );
    let err = coord.run(axpy(10).0, BackendChoice::Gpu).await.unwrap_err();
    assert!(
        matches!(&err, Error::Panicked(m) if m.contains("injected panic")),
        "{err}"
    );
    // The GPU worker survived, and other jobs still run.
    let again = coord.run(axpy(10).0, BackendChoice::Gpu).await.unwrap_err();
    assert!(matches!(again, Error::Panicked(_)));
    coord.run(axpy(10).0, BackendChoice::Cpu).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_jobs_in_flight_then_refuses_new_ones() {
    let coord = Arc::new(Coordinator::new(
        StandIn::backend(BackendKind::Cpu, Act::Slow(Duration::from_millis(100))),
        Err("no GPU in this test".into()),
        CostModel::default(),
        16,
    ));
    let handles: Vec<_> = (0..5)
        .map(|_| coord.try_submit(axpy(100).0, BackendChoice::Auto).unwrap())
        .collect();
    coord.shutdown().await;
    assert_eq!(coord.in_flight(), 0);
    for h in handles {
        // Every job accepted before shutdown finished, not dropped.
        h.wait().await.expect("drained, not dropped");
    }
    assert!(matches!(
        coord.try_submit(axpy(1).0, BackendChoice::Auto),
        Err(Error::ShuttingDown)
    ));
}

#[tokio::test]
async fn a_cancelled_job_does_not_run() {
    let coord = Coordinator::new(
        StandIn::backend(BackendKind::Cpu, Act::Slow(Duration::from_millis(200))),
        Err("no GPU in this test".into()),
        CostModel::default(),
        4,
    );
    let first = coord.try_submit(axpy(10).0, BackendChoice::Auto).unwrap();
    let second = coord.try_submit(axpy(10).0, BackendChoice::Auto).unwrap();
    second.cancel();
    first.wait().await.unwrap();
    assert!(matches!(second.wait().await, Err(Error::Cancelled)));
}

/// Cancelling reaches a running job on the real CPU backend: a
/// `mandelbrot` that would run for hours stops, answers `Cancelled`, and
/// the pool then runs the next job. Sizes from the tests' random source.
#[tokio::test]
async fn a_running_job_stops_when_cancelled() {
    let coord = Coordinator::new(
        Arc::new(CpuBackend::new(Some(2)).unwrap()),
        Err("no GPU in this test".into()),
        CostModel::default(),
        4,
    );
    let mut rng = rng();
    let side = rand::Rng::random_range(&mut rng, 100..300);
    // A view inside the set: no pixel escapes before max_iter.
    let endless = Task::new(
        Job::new(Kernel::Mandelbrot)
            .param("width", side)
            .param("height", side + 1)
            .param("max_iter", 4_000_000_000u32)
            .param("x0", -0.3)
            .param("x1", 0.1)
            .param("y0", -0.2)
            .param("y1", 0.2),
    )
    .unwrap();
    let running = coord.try_submit(endless, BackendChoice::Cpu).unwrap();
    let control = running.control();
    let started = tokio::time::timeout(Duration::from_secs(20), async {
        while !control.has_started() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    started.await.expect("the job starts");
    running.cancel();
    let answer = tokio::time::timeout(Duration::from_secs(20), running.wait())
        .await
        .expect("a cancelled job stops");
    assert!(matches!(answer, Err(Error::Cancelled)), "{answer:?}");
    assert!(control.is_cancelled());
    let (task, want) = axpy(1000);
    let report = coord.run(task, BackendChoice::Cpu).await.unwrap();
    assert_close(
        "axpy after",
        report.outputs["out"].as_f32().unwrap(),
        &want,
        1e-6,
    );
}

/// On the GPU, a job whose flag is set when it runs submits nothing and
/// answers `Cancelled`: the encodings look before each dispatch and upload.
#[test]
fn a_cancelled_gpu_job_submits_nothing() {
    let Some(gpu) = common::gpu() else { return };
    let (task, want) = axpy(5000);
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watching = anycore::kernel::stop::watch(Arc::clone(&flag));
    let run = gpu.run(&task);
    assert!(
        matches!(run, Err(Error::Cancelled)),
        "{:?}",
        run.map(|r| r.traffic)
    );
    flag.store(false, std::sync::atomic::Ordering::Relaxed);
    let run = gpu.run(&task).unwrap();
    assert_close("axpy", run.outputs["out"].as_f32().unwrap(), &want, 1e-6);
    drop(watching);
}

#[tokio::test]
async fn without_a_gpu_auto_runs_on_the_cpu_and_gpu_is_refused() {
    let coord = Coordinator::new(
        StandIn::backend(BackendKind::Cpu, Act::Work),
        Err("no GPU adapter found".into()),
        CostModel::default(),
        4,
    );
    let report = coord.run(axpy(10).0, BackendChoice::Auto).await.unwrap();
    assert_eq!(report.backend, BackendKind::Cpu);
    assert!(
        report.placement_reason.contains("no GPU adapter"),
        "{}",
        report.placement_reason
    );
    let err = coord.run(axpy(10).0, BackendChoice::Gpu).await.unwrap_err();
    assert!(matches!(err, Error::NoGpu(_)), "{err}");
}

/// With the real probe on the real (software) GPU: `auto` agrees with what
/// the probe measured — it picks the backend the calibrated lines say is
/// faster, and a tiny job (where a GPU round trip costs far more than the
/// work) goes to the CPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_agrees_with_the_real_probe() {
    if common::gpu().is_none() {
        return;
    }
    let mut config = EngineConfig::default();
    config.gpu.allow_software = true;
    config.cost_model = CostModelSource::Probe { cache: None };
    let engine = Engine::start(config).await.unwrap();
    let coord = engine.coordinator();
    assert!(coord.has_gpu());
    let model = coord.cost_model();
    for n in [16, 1 << 16, 1 << 22] {
        let (task, _) = axpy(n);
        let predicted_gpu = model.predict(BackendKind::Gpu, &task).unwrap();
        let predicted_cpu = model.predict(BackendKind::Cpu, &task).unwrap();
        let report = coord.run(task, BackendChoice::Auto).await.unwrap();
        let expect = if predicted_gpu < predicted_cpu {
            BackendKind::Gpu
        } else {
            BackendKind::Cpu
        };
        assert_eq!(report.backend, expect, "n={n}: {}", report.placement_reason);
        if n == 16 {
            assert_eq!(
                report.backend,
                BackendKind::Cpu,
                "{}",
                report.placement_reason
            );
        }
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_work_at_the_same_time() {
    let nap = Act::Slow(Duration::from_millis(400));
    let coord = Coordinator::new(
        StandIn::backend(BackendKind::Cpu, nap),
        Ok(StandIn::backend(BackendKind::Gpu, nap)),
        CostModel::default(),
        4,
    );
    let start = std::time::Instant::now();
    let on_gpu = coord.try_submit(axpy(10).0, BackendChoice::Gpu).unwrap();
    let on_cpu = coord.try_submit(axpy(10).0, BackendChoice::Cpu).unwrap();
    let (g, c) = tokio::join!(on_gpu.wait(), on_cpu.wait());
    assert_eq!(
        (g.unwrap().backend, c.unwrap().backend),
        (BackendKind::Gpu, BackendKind::Cpu)
    );
    // One after the other would take 800 ms.
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_millis(750), "{elapsed:?}");
}

/// Work that reads tensors kept only on the GPU still runs on the CPU: when
/// placed there (they are brought home first, once), and when the GPU fails
/// (brought home by the GPU's worker before the CPU re-runs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_only_inputs_come_home_for_the_cpu() {
    let mut rng = rng();
    let n = 10_000;
    let (x, y) = (random_f32(&mut rng, n), random_f32(&mut rng, n));
    let want: Vec<f32> = x.iter().zip(&y).map(|(&x, &y)| 2.0 * x + y).collect();
    let job = |x: &Handle, y: &Handle| {
        let job = Job::new(Kernel::Axpy)
            .param("a", 2)
            .input("x", x.clone())
            .input("y", y.clone());
        Task::new(job).unwrap()
    };
    for (gpu, choice) in [
        (Act::Work, BackendChoice::Cpu),
        (Act::Fail, BackendChoice::Gpu),
    ] {
        let coord = coordinator(gpu, crossover_model(), 8);
        let (hx, hy) = (on_stand_in_gpu(x.clone()), on_stand_in_gpu(y.clone()));
        let report = coord
            .run(job(&hx, &hy), choice)
            .await
            .expect("runs on the CPU");
        assert_eq!(
            report.backend,
            BackendKind::Cpu,
            "{}",
            report.placement_reason
        );
        assert_close("axpy", report.outputs["out"].as_f32().unwrap(), &want, 1e-6);
        assert!(
            hx.location().host && hy.location().host,
            "the host copies stay"
        );
        assert_eq!(coord.in_flight(), 0);
    }
}
