//! What the coordinator costs per job: tiny jobs per second called on the
//! CPU backend directly, and the same jobs through the coordinator (one
//! caller awaiting each job, then 64 callers at once).
//!
//! `cargo bench --bench coordinator_overhead`

use std::sync::Arc;
use std::time::Instant;

use anycore::backend::cpu::CpuBackend;
use anycore::backend::{Backend, BackendChoice};
use anycore::coordinator::Coordinator;
use anycore::coordinator::cost::CostModel;
use anycore::kernel::Task;
use anycore::kernel::axpy::Axpy;

const JOBS: usize = 20_000;

fn tiny() -> Task {
    Task::Axpy(Axpy::new(2.0, vec![1.0; 16], vec![3.0; 16]).expect("valid"))
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

fn main() {
    let cpu = Arc::new(CpuBackend::new(None).expect("pool"));
    let task = tiny();
    for _ in 0..1000 {
        cpu.run(&task).unwrap();
    }
    let start = Instant::now();
    for _ in 0..JOBS {
        cpu.run(&task).unwrap();
    }
    let direct = rate("backend.run directly", JOBS, start);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let coord = Arc::new(Coordinator::new(
            cpu.clone(),
            Err("benchmark without GPU".into()),
            CostModel::default(),
            256,
        ));
        for _ in 0..1000 {
            coord.run(tiny(), BackendChoice::Auto).await.unwrap();
        }
        let start = Instant::now();
        for _ in 0..JOBS {
            coord.run(tiny(), BackendChoice::Auto).await.unwrap();
        }
        let one = rate("coordinator, 1 caller awaiting each job", JOBS, start);

        let start = Instant::now();
        let callers: Vec<_> = (0..64)
            .map(|_| {
                let coord = Arc::clone(&coord);
                tokio::spawn(async move {
                    for _ in 0..JOBS / 64 {
                        coord.run(tiny(), BackendChoice::Auto).await.unwrap();
                    }
                })
            })
            .collect();
        for c in callers {
            c.await.unwrap();
        }
        let many = rate("coordinator, 64 concurrent callers", JOBS / 64 * 64, start);
        println!(
            "coordinator / direct: {:.2} (1 caller), {:.2} (64 callers)",
            one / direct,
            many / direct
        );
    });
}
