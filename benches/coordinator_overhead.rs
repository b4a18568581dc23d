//! What the coordinator costs per job: tiny jobs per second called on the
//! CPU backend directly, and the same jobs through the coordinator and
//! through the [`Engine`] (each with one caller awaiting each job, then 64
//! callers at once), all in one run.
//!
//! `cargo bench --bench coordinator_overhead`
//!
//! The jobs are 16-element `axpy`s, built from a [`Job`] each time on every
//! path (the engine validates it; the others call `Task::new`), so what
//! differs is only what stands between a caller and the kernel. Two direct
//! baselines: `CpuBackend::run` called from a thread outside its pool (as
//! an embedder would call it: each call hops into the pool and back), and
//! called on one of the pool's own threads (the kernel alone, as the
//! coordinator's CPU worker now calls it).

use std::sync::Arc;
use std::time::Instant;

use anycore::backend::cpu::CpuBackend;
use anycore::backend::{Backend, BackendChoice};
use anycore::coordinator::Coordinator;
use anycore::coordinator::cost::CostModel;
use anycore::engine::{CostModelSource, Engine, EngineConfig};
use anycore::kernel::{Job, Kernel, Task};
use anycore::tensor::Tensor;

const JOBS: usize = 64 * 500;
const CALLERS: usize = 64;

fn tiny_job() -> Job {
    Job::new(Kernel::Axpy)
        .param("a", 2.0)
        .input("x", Tensor::from_f32(vec![1.0; 16]))
        .input("y", Tensor::from_f32(vec![3.0; 16]))
}

fn tiny() -> Task {
    Task::new(tiny_job()).expect("valid")
}

fn rate(label: &str, jobs: usize, start: Instant) -> f64 {
    let secs = start.elapsed().as_secs_f64();
    let per_s = jobs as f64 / secs;
    println!(
        "{label:<44} {per_s:>10.0} jobs/s  {:>8.2} µs/job",
        1e6 / per_s
    );
    per_s
}

/// Runs `job` `JOBS` times from one caller, then from `CALLERS` at once;
/// returns the two rates.
async fn one_and_many<F, Fut>(label: &str, job: F) -> (f64, f64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    for _ in 0..1000 {
        job().await;
    }
    let start = Instant::now();
    for _ in 0..JOBS {
        job().await;
    }
    let one = rate(&format!("{label}, 1 caller awaiting each job"), JOBS, start);
    let start = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let job = job.clone();
            tokio::spawn(async move {
                for _ in 0..JOBS / CALLERS {
                    job().await;
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let many = rate(
        &format!("{label}, {CALLERS} concurrent callers"),
        JOBS,
        start,
    );
    (one, many)
}

fn main() {
    let cpu = Arc::new(CpuBackend::new(None).expect("pool"));
    for _ in 0..1000 {
        cpu.run(&tiny()).unwrap();
    }
    let start = Instant::now();
    for _ in 0..JOBS {
        cpu.run(&tiny()).unwrap();
    }
    let outside = rate("backend.run from outside the pool", JOBS, start);
    let mut direct = 0.0;
    cpu.host(&mut || {
        let start = Instant::now();
        for _ in 0..JOBS {
            cpu.run(&tiny()).unwrap();
        }
        direct = rate("backend.run on a pool thread", JOBS, start);
    });

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let coord = Arc::new(Coordinator::new(
            cpu.clone(),
            Err("benchmark without GPU".into()),
            CostModel::default(),
            256,
        ));
        let (c1, c64) = one_and_many("coordinator", move || {
            let coord = Arc::clone(&coord);
            async move {
                coord.run(tiny(), BackendChoice::Auto).await.unwrap();
            }
        })
        .await;

        let engine = Arc::new(
            Engine::start(EngineConfig {
                use_gpu: false,
                cost_model: CostModelSource::Fixed(CostModel::default()),
                ..EngineConfig::default()
            })
            .await
            .expect("engine"),
        );
        let (e1, e64) = one_and_many("engine", move || {
            let engine = Arc::clone(&engine);
            async move {
                engine.run(tiny_job()).await.unwrap();
            }
        })
        .await;
        for (name, base) in [("outside the pool", outside), ("on a pool thread", direct)] {
            println!(
                "vs backend.run {name}: coordinator {:.2} (1 caller), {:.2} ({CALLERS} callers); \
                 engine {:.2}, {:.2}",
                c1 / base,
                c64 / base,
                e1 / base,
                e64 / base
            );
        }
    });
}
