//! Criterion benchmarks per kernel and backend, at a few sizes each: the
//! CPU backend, and where there is a GPU, the GPU end to end (uploads,
//! kernel, downloads) and resident (its kernel phase alone). Not run in CI.
//!
//! `cargo bench --bench kernels` (add `ANYCORE_ALLOW_SOFTWARE_GPU=1` to
//! include llvmpipe; `-- matmul` to pick one kernel). `anycore bench`
//! measures the same with its baselines beside; this is for tracking one
//! kernel's changes with criterion's statistics.

use std::time::Duration;

use anycore::backend::Backend;
use anycore::backend::cpu::CpuBackend;
use anycore::backend::gpu::{GpuBackend, GpuOptions};
use anycore::bench::workload;
use anycore::kernel::{Kernel, Task};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// Sizes per kernel: its quick sweep, small enough for criterion's many
/// runs.
fn sizes(kernel: Kernel) -> &'static [usize] {
    kernel.profile().sweep.quick_sizes
}

fn throughput(kernel: Kernel, size: usize) -> Throughput {
    let amount = workload::amount(kernel, size) as u64;
    if workload::bandwidth(kernel).is_some() {
        Throughput::Bytes(amount)
    } else {
        // Criterion's "elements": operations, pixels, keys.
        Throughput::Elements(amount)
    }
}

fn kernels(c: &mut Criterion) {
    let cpu = CpuBackend::new(None).expect("CPU pool");
    let gpu = match GpuBackend::new(&GpuOptions::from_env()) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            eprintln!("GPU not benchmarked: {e}");
            None
        }
    };
    for kernel in Kernel::ALL {
        let mut group = c.benchmark_group(kernel.name());
        group.measurement_time(Duration::from_secs(3));
        group.sample_size(10);
        for &size in sizes(kernel) {
            let task = workload::task(kernel, size, 1).expect("valid size");
            group.throughput(throughput(kernel, size));
            // A fresh copy per run: the CPU may write over the task (axpy does).
            group.bench_function(format!("cpu/{size}"), |b| {
                b.iter_batched(
                    || task.clone(),
                    |t| cpu.run_owned(t, &[]).expect("CPU run"),
                    BatchSize::LargeInput,
                )
            });
            if let Some(gpu) = &gpu {
                group.bench_function(format!("gpu-end-to-end/{size}"), |b| {
                    b.iter(|| gpu.run(&task).expect("GPU run"))
                });
                group.bench_function(format!("gpu-resident/{size}"), |b| {
                    b.iter_custom(|iters| resident(gpu, &task, iters))
                });
            }
        }
        group.finish();
    }
}

/// The kernel phases of `iters` GPU runs, summed.
fn resident(gpu: &GpuBackend, task: &Task, iters: u64) -> Duration {
    let ms: f64 = (0..iters)
        .map(|_| gpu.run(task).expect("GPU run").timings.compute)
        .sum();
    Duration::from_secs_f64(ms / 1e3)
}

criterion_group!(benches, kernels);
criterion_main!(benches);
