//! `anycore bench`: each kernel's throughput on each backend over a sweep
//! of sizes, beside baselines timed in the same run, with the GPU/CPU
//! speed-up, the crossover size and the largest difference between the two
//! backends' outputs.
//!
//! - [`workload`]: what a size means per kernel, its task and its unit.
//! - [`measure`]: warm-up, repeated runs, median/min/max.
//! - [`baseline`]: memory bandwidth, plain rayon loops, NumPy's gemm.
//! - [`report`]: the terminal table; [`svg`]: the log-log chart.
//!
//! Backends are used directly, not through the coordinator: the numbers are
//! the backends' own. CPU runs write over one working copy of the task, as
//! the coordinator's CPU worker does, and what they took out is put back
//! between runs (outside the timing), so they meet the same warm buffers as
//! the plain loops they alternate with.
//! A GPU run reports two figures from the same run: "resident" is its
//! kernel phase (data already on the device; on the device's own clock
//! where it has timestamp queries, `machine.gpu_timer` says which),
//! "end_to_end" adds the uploads and downloads. On a real GPU a third row,
//! "back_to_back", runs the kernels 8 times in one pass on resident data:
//! what they do on a busy GPU, which a lone dispatch after idle transfers
//! may not show (an idle H100 drops its SM clock to 345 MHz).

pub mod baseline;
pub mod measure;
pub mod report;
pub mod svg;
pub mod workload;

use std::collections::BTreeMap;

use serde::Serialize;

use self::baseline::Bandwidth;
use self::measure::{Repeat, Stats, repeat, repeat_each};
use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{GpuBackend, GpuOptions};
use crate::backend::{Backend, BackendKind};
use crate::error::{Error, Result};
use crate::kernel::{Kernel, Outputs, Task};
use crate::tensor::TensorData;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Config {
    /// Kernels, in order.
    pub kernels: Vec<Kernel>,
    /// Sizes for every kernel; `None` gives each kernel its own sweep.
    pub sizes: Option<Vec<usize>>,
    /// Backends to measure.
    pub backends: Vec<BackendKind>,
    /// With no usable GPU: fail (the user asked for it by name) or go on
    /// with the CPU and say why.
    pub require_gpu: bool,
    /// How to open the GPU.
    pub gpu: GpuOptions,
    /// Fewer sizes and shorter repeats: under a minute on two cores.
    pub quick: bool,
    /// Seed of the random inputs.
    pub seed: u64,
}

/// Where the bench is, for a progress bar.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Steps finished.
    pub done: usize,
    /// Steps in all.
    pub total: usize,
    /// What runs now.
    pub step: String,
}

/// Everything one bench run measured; serialised as `--json` writes it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The machine and devices.
    pub machine: Machine,
    /// Baselines timed in this run.
    pub baselines: Baselines,
    /// One row per kernel, size, backend and mode.
    pub results: Vec<ResultRow>,
    /// Per kernel, the smallest size at which the GPU end to end beat the
    /// CPU (`null`: none in range, or no GPU).
    pub crossover: BTreeMap<String, Option<usize>>,
    /// With several kernels on the CPU: each timed at one size before any
    /// other kernel ran and again after all had, so that state one kernel
    /// leaves on the pool's threads (a matmul once made mandelbrot 3×
    /// slower) shows; a slowdown past 1.5× also gets a note.
    pub order_check: Vec<OrderCheck>,
    /// Per kernel, the largest relative norm ‖gpu − cpu‖ / ‖cpu‖ over the
    /// sizes (`null` without both backends).
    pub max_rel_diff: BTreeMap<String, Option<f64>>,
    /// Per kernel and size, GPU throughput over CPU throughput.
    pub speedup: BTreeMap<String, Vec<Speedup>>,
    /// What was skipped, and why.
    pub notes: Vec<String>,
}

impl Report {
    /// The names of a kernel's baseline curves, in the order first seen.
    pub fn curve_names(&self, kernel: Kernel) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for c in self
            .baselines
            .curves
            .iter()
            .filter(|c| c.kernel == kernel.name())
        {
            if !names.contains(&c.name.as_str()) {
                names.push(&c.name);
            }
        }
        names
    }
}

/// The machine the bench ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model, from `/proc/cpuinfo` where there is one.
    pub cpu: String,
    /// Threads in the CPU backend's pool.
    pub threads: usize,
    /// `os-arch`.
    pub os: String,
    /// The GPU measured, if any.
    pub gpu: Option<String>,
    /// What the GPU's "resident" rows were timed with: "device timestamps"
    /// (the kernels on the GPU's own clock) or "host wait" (submit to done,
    /// seen from the host) where the adapter has no timestamp queries.
    pub gpu_timer: Option<String>,
    /// anycore's version.
    pub anycore: String,
    /// Seconds since 1970 when the bench started.
    pub unix_time: u64,
    /// Whether this was `--quick`.
    pub quick: bool,
    /// Percent of the CPUs' time the hypervisor gave to other guests while
    /// the bench ran (Linux `/proc/stat`; `null` elsewhere). A few percent
    /// is enough to make a two-thread run lose to one thread times two.
    pub steal_pct: Option<f64>,
}

/// Baselines: machine-wide figures and per-size curves.
#[derive(Clone, Debug, Serialize)]
pub struct Baselines {
    /// Parallel copy over 256 MiB buffers, GB/s (read + write bytes).
    pub copy_gbps: f64,
    /// Parallel read (sum) over a 256 MiB buffer, GB/s.
    pub read_gbps: f64,
    /// A device-to-device copy on the GPU, GB/s (read + write bytes): the
    /// faster of the two below, the baseline of the memory-bound kernels'
    /// resident rows.
    pub gpu_copy_gbps: Option<f64>,
    /// `copy_buffer_to_buffer` of 256 MiB, GB/s (read + write bytes).
    pub gpu_buffer_copy_gbps: Option<f64>,
    /// A WGSL vec4 copy kernel over 256 MiB (the memory-bound kernels'
    /// access pattern), GB/s (read + write bytes).
    pub gpu_kernel_copy_gbps: Option<f64>,
    /// anycore's own host→device copy of 256 MiB (the path jobs use), GB/s.
    pub gpu_upload_gbps: Option<f64>,
    /// anycore's own device→host copy of 256 MiB into fresh host memory
    /// (the path jobs use), GB/s.
    pub gpu_download_gbps: Option<f64>,
    /// The reference gemm, when there was one.
    pub reference_gemm: Option<String>,
    /// Per kernel and size: the plain rayon loop, NumPy, the single thread
    /// scaled by the thread count.
    pub curves: Vec<Curve>,
}

/// One baseline at one size.
#[derive(Clone, Debug, Serialize)]
pub struct Curve {
    /// The kernel it stands beside.
    pub kernel: String,
    /// "rayon loop", "numpy", "threads × single thread", "single threads
    /// at once".
    pub name: String,
    /// The size.
    pub size: usize,
    /// Runs after the warm-up.
    pub runs: usize,
    /// Median milliseconds (for "threads × single thread": the single
    /// thread's time divided by the thread count).
    pub median_ms: f64,
    /// Throughput from the median.
    pub throughput: f64,
    /// The kernel's unit.
    pub unit: String,
}

/// One measured kernel, size, backend and mode.
#[derive(Clone, Debug, Serialize)]
pub struct ResultRow {
    /// Kernel name.
    pub kernel: String,
    /// "cpu" or "gpu".
    pub backend: String,
    /// "cpu", "resident", "end_to_end" or "back_to_back" (the kernels run
    /// 8 times back to back on resident data, per run; real GPUs only).
    pub mode: String,
    /// The size (elements, or n of n×n).
    pub size: usize,
    /// Runs after the warm-up.
    pub runs: usize,
    /// Median milliseconds.
    pub median_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Throughput from the median.
    pub throughput: f64,
    /// "GB/s", "GFLOP/s" or "Mpixel/s".
    pub unit: String,
    /// The throughput of the baseline this row is compared with, in the
    /// same unit.
    pub baseline: Option<f64>,
    /// Which baseline that is: "rayon loop", "numpy", "threads × single
    /// thread", "gpu copy".
    pub baseline_name: Option<String>,
    /// throughput / baseline.
    pub baseline_ratio: Option<f64>,
    /// For memory-bound kernels: throughput over the matching memory
    /// bandwidth (copy for axpy, read for reduce, the device copy on the GPU).
    pub bandwidth_ratio: Option<f64>,
}

/// GPU over CPU at one size.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Speedup {
    /// The size.
    pub size: usize,
    /// Kernel alone, data on the device.
    pub resident: f64,
    /// With uploads and downloads.
    pub end_to_end: f64,
}

/// The baseline named for a kernel's CPU rows and the GPU's end-to-end rows.
fn cpu_baseline_name(kernel: Kernel, have_numpy: bool) -> &'static str {
    match kernel {
        Kernel::Matmul if have_numpy => "numpy",
        Kernel::Mandelbrot => "threads × single thread",
        _ => "rayon loop",
    }
}

/// Largest n for which the plain rayon gemm runs: beyond it one run takes
/// many seconds on two cores.
const GEMM_LOOP_MAX: usize = 2048;

/// Bytes copied by the GPU bandwidth test.
const GPU_COPY_BYTES: u64 = 256 << 20;

/// Runs of a kernel back to back in one pass for the "back_to_back" rows.
const BACK_TO_BACK: u32 = 8;

/// Bytes moved each way by the host↔device transfer test.
const GPU_TRANSFER_BYTES: u64 = 256 << 20;

/// One kernel timed on the CPU before and after the others ran.
#[derive(Clone, Debug, Serialize)]
pub struct OrderCheck {
    /// Kernel name.
    pub kernel: String,
    /// The size timed (the middle of its sweep).
    pub size: usize,
    /// Fastest milliseconds before any other kernel ran.
    pub first_ms: f64,
    /// Fastest milliseconds after all the others had.
    pub after_ms: f64,
    /// first_ms / after_ms: the rate after over the rate before.
    pub ratio: f64,
}

/// Below this rate ratio (after / before), the order check adds a note.
const ORDER_SLOWDOWN: f64 = 1.0 / 1.5;

/// The task at step `i` of a kernel's sweep: its size, with inputs drawn
/// from a seed of its own.
fn sweep_task(kernel: Kernel, sizes: &[usize], i: usize, seed: u64) -> Result<Task> {
    workload::task(kernel, sizes[i], seed + i as u64 * 2)
}

/// Times each kernel of the sweeps on the CPU at the middle size of its
/// sweep (the same task the sweep runs there): (kernel, size, fastest ms).
/// The fastest run, not the median: state left on the threads slows every
/// run, a busy neighbour only some.
fn order_probe(
    cpu: &CpuBackend,
    plan: &Repeat,
    sweeps: &[(Kernel, Vec<usize>)],
    seed: u64,
) -> Result<Vec<(Kernel, usize, f64)>> {
    let mut out = Vec::new();
    for (kernel, sizes) in sweeps {
        let middle = sizes.len() / 2;
        let Some(&size) = sizes.get(middle) else {
            continue;
        };
        let mut work = sweep_task(*kernel, sizes, middle, seed)?;
        let [s] = repeat(plan, || {
            let run = cpu.run_in_place(&mut work);
            restore(&mut work, run.outputs);
            Ok([run.timings.total])
        })?;
        out.push((*kernel, size, s.min_ms));
    }
    Ok(out)
}

/// Runs the benchmark. `progress` hears about each step as it starts.
pub fn run(config: &Config, progress: &mut dyn FnMut(Progress)) -> Result<Report> {
    let plan = Repeat::new(config.quick);
    let mut sweeps = Vec::new();
    for &kernel in &config.kernels {
        let sizes = match &config.sizes {
            Some(s) => s.clone(),
            None => workload::default_sizes(kernel, config.quick),
        };
        for &size in &sizes {
            workload::check_size(kernel, size)?;
        }
        sweeps.push((kernel, sizes));
    }
    let steal_at_start = cpu_times();
    let mut notes = Vec::new();
    let want = |b| config.backends.contains(&b);
    let cpu = CpuBackend::new(None)?;
    let threads = cpu.threads();
    let single = CpuBackend::new(Some(1))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Internal(format!("cannot start a thread pool: {e}")))?;
    let gpu = if want(BackendKind::Gpu) {
        match GpuBackend::new(&config.gpu) {
            Ok(gpu) => Some(gpu),
            Err(e) if config.require_gpu => return Err(e),
            Err(e) => {
                notes.push(format!("GPU not measured: {e}"));
                None
            }
        }
    } else {
        None
    };
    let measure_cpu = want(BackendKind::Cpu);

    let mut numpy = None;
    if sweeps.iter().any(|(k, _)| *k == Kernel::Matmul) {
        match baseline::Numpy::start(threads) {
            Ok(n) => numpy = Some(n),
            Err(why) => notes.push(format!(
                "no reference gemm ({why}); matmul is compared with the plain rayon loop"
            )),
        }
    }
    let reference_gemm = numpy.as_ref().map(|n| n.library.clone());

    // Per size: the CPU beside its baselines, the GPU, and the plain rayon
    // loop apart where it is not the main baseline (it is slow).
    let per_size = |k: Kernel| {
        let apart = match k {
            Kernel::Matmul => numpy.is_some(),
            Kernel::Mandelbrot => true,
            _ => false,
        };
        1 + usize::from(gpu.is_some()) + usize::from(apart)
    };
    // With several kernels on the CPU, each is timed once before any other
    // runs and once after all have (two steps).
    let order_check = measure_cpu && sweeps.len() > 1;
    let total = 1
        + usize::from(gpu.is_some())
        + 2 * usize::from(order_check)
        + sweeps
            .iter()
            .map(|(k, s)| s.len() * per_size(*k))
            .sum::<usize>();
    let mut done = 0;
    let mut step = |what: String| {
        progress(Progress {
            done,
            total,
            step: what,
        });
        done += 1;
    };

    step("memory bandwidth".into());
    let bandwidth = baseline::bandwidth(&pool, &plan)?;
    let mut gpu_copies = None;
    let (gpu_copy_gbps, gpu_upload_gbps, gpu_download_gbps) = match &gpu {
        Some(gpu) => {
            step("GPU copy and transfer bandwidth".into());
            let gbps = |bytes: u64, ms: f64| bytes as f64 / (ms * 1e-3) / 1e9;
            let (mut bytes, mut kernel_bytes) = (0, 0);
            let [copy, kernel_copy] = repeat(&plan, || {
                let (ms, b) = gpu.time_copy(GPU_COPY_BYTES)?;
                let (kernel_ms, kb) = gpu.time_kernel_copy(GPU_COPY_BYTES)?;
                (bytes, kernel_bytes) = (b, kb);
                Ok([ms, kernel_ms])
            })?;
            let buffer_copy = 2.0 * gbps(bytes, copy.median_ms);
            let kernel_copy = 2.0 * gbps(kernel_bytes, kernel_copy.median_ms);
            let [up, down] = repeat(&plan, || {
                let (up, down, b) = gpu.time_transfers(GPU_TRANSFER_BYTES)?;
                bytes = b;
                Ok([up, down])
            })?;
            gpu_copies = Some((buffer_copy, kernel_copy));
            (
                Some(buffer_copy.max(kernel_copy)),
                Some(gbps(bytes, up.median_ms)),
                Some(gbps(bytes, down.median_ms)),
            )
        }
        None => (None, None, None),
    };

    let fresh = if order_check {
        step("each kernel before the others run".into());
        order_probe(&cpu, &plan, &sweeps, config.seed)?
    } else {
        Vec::new()
    };

    let mut bench = Bench {
        plan,
        bandwidth,
        gpu_copy_gbps,
        curves: Vec::new(),
        results: Vec::new(),
        reference_gemm,
        notes,
        crossover: BTreeMap::new(),
        max_rel_diff: BTreeMap::new(),
        speedup: BTreeMap::new(),
    };
    for (kernel, sizes) in &sweeps {
        let kernel = *kernel;
        let mut diff: Option<f64> = None;
        for (i, &size) in sizes.iter().enumerate() {
            let task = sweep_task(kernel, sizes, i, config.seed)?;
            match kernel {
                Kernel::Matmul if numpy.is_some() => {
                    step(format!("{kernel} {size}: plain rayon loop"));
                    bench.loop_curve(&pool, &task, size, GEMM_LOOP_MAX)?;
                }
                Kernel::Mandelbrot => {
                    step(format!("{kernel} {size}: plain rayon loop"));
                    bench.loop_curve(&pool, &task, size, usize::MAX)?;
                }
                Kernel::Matmul if size > GEMM_LOOP_MAX => bench.notes.push(format!(
                    "matmul {size}: no baseline (the plain rayon loop is not timed past \
                     n = {GEMM_LOOP_MAX}, and there is no NumPy)"
                )),
                _ => {}
            }
            step(format!(
                "{kernel} {size}: {}",
                if measure_cpu {
                    "cpu and baseline"
                } else {
                    "baseline"
                }
            ));
            let baselines = alternating_baselines(&pool, &single, numpy.as_mut(), &task)?;
            let cpu_out = bench.cpu(measure_cpu.then_some(&cpu), &task, size, baselines)?;
            if let Some(gpu) = &gpu {
                step(format!("{kernel} {size}: gpu"));
                let gpu_out = bench.gpu(gpu, &task, size)?;
                if let Some(cpu_out) = &cpu_out {
                    let d = rel_diff(&gpu_out, cpu_out);
                    diff = Some(diff.map_or(d, |m| m.max(d)));
                }
            }
        }
        bench.summarise(kernel, sizes, diff);
    }
    drop(numpy);
    let mut order = Vec::new();
    if order_check {
        step("each kernel again, after all the others".into());
        let again = order_probe(&cpu, &plan, &sweeps, config.seed)?;
        for ((kernel, size, first), (_, _, later)) in fresh.into_iter().zip(again) {
            let ratio = first / later;
            if ratio < ORDER_SLOWDOWN {
                bench.notes.push(format!(
                    "{kernel} {size} ran {:.2}× slower on the CPU after the other kernels \
                     than before them ({first:.3} → {later:.3} ms): an earlier kernel left \
                     state behind on the pool's threads",
                    later / first
                ));
            }
            order.push(OrderCheck {
                kernel: kernel.name().into(),
                size,
                first_ms: first,
                after_ms: later,
                ratio,
            });
        }
    }
    step("done".into());

    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Report {
        machine: Machine {
            cpu: cpu_model(),
            threads,
            os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            gpu: gpu.as_ref().map(|g| {
                let kind = match g.info().device_type {
                    wgpu::DeviceType::Cpu => "software",
                    other => crate::backend::gpu::adapter::device_type_name(other),
                };
                format!("{}, {kind}", g.device())
            }),
            gpu_timer: gpu.as_ref().map(|g| {
                if g.has_device_timer() {
                    "device timestamps".to_owned()
                } else {
                    "host wait".to_owned()
                }
            }),
            anycore: env!("CARGO_PKG_VERSION").into(),
            unix_time,
            quick: config.quick,
            steal_pct: steal_at_start.zip(cpu_times()).map(|((s0, t0), (s1, t1))| {
                100.0 * s1.saturating_sub(s0) as f64 / t1.saturating_sub(t0).max(1) as f64
            }),
        },
        baselines: Baselines {
            copy_gbps: bench.bandwidth.copy_gbps,
            read_gbps: bench.bandwidth.read_gbps,
            gpu_copy_gbps: bench.gpu_copy_gbps,
            gpu_buffer_copy_gbps: gpu_copies.map(|c| c.0),
            gpu_kernel_copy_gbps: gpu_copies.map(|c| c.1),
            gpu_upload_gbps,
            gpu_download_gbps,
            reference_gemm: bench.reference_gemm,
            curves: bench.curves,
        },
        results: bench.results,
        crossover: bench.crossover,
        order_check: order,
        max_rel_diff: bench.max_rel_diff,
        speedup: bench.speedup,
        notes: bench.notes,
    })
}

/// What a run has gathered so far.
struct Bench {
    plan: Repeat,
    bandwidth: Bandwidth,
    gpu_copy_gbps: Option<f64>,
    curves: Vec<Curve>,
    results: Vec<ResultRow>,
    reference_gemm: Option<String>,
    notes: Vec<String>,
    crossover: BTreeMap<String, Option<usize>>,
    max_rel_diff: BTreeMap<String, Option<f64>>,
    speedup: BTreeMap<String, Vec<Speedup>>,
}

impl Bench {
    fn curve(&mut self, kernel: Kernel, name: &str, size: usize, runs: usize, median_ms: f64) {
        self.curves.push(Curve {
            kernel: kernel.name().into(),
            name: name.into(),
            size,
            runs,
            median_ms,
            throughput: workload::throughput(kernel, size, median_ms),
            unit: workload::unit(kernel).name.into(),
        });
    }

    /// Times the plain rayon loop as a curve of its own (where it is not
    /// the kernel's main baseline), up to size `max`.
    fn loop_curve(
        &mut self,
        pool: &rayon::ThreadPool,
        task: &Task,
        size: usize,
        max: usize,
    ) -> Result<()> {
        let kernel = task.kernel();
        if size > max {
            self.notes.push(format!(
                "{kernel} {size}: the plain rayon loop is not timed past {max}"
            ));
            return Ok(());
        }
        let mut once = rayon_loop(pool, task);
        let [s] = repeat(&self.plan.fewer(), || Ok([once()?]))?;
        self.curve(kernel, "rayon loop", size, s.runs, s.median_ms);
        Ok(())
    }

    /// Times the CPU backend (when given) and the kernel's baselines in
    /// turn, run after run, so drift in the machine's load falls on all of
    /// them. Returns the outputs of the CPU's first run.
    fn cpu(
        &mut self,
        cpu: Option<&CpuBackend>,
        task: &Task,
        size: usize,
        mut baselines: Vec<(&'static str, Once<'_>)>,
    ) -> Result<Option<Outputs>> {
        let kernel = task.kernel();
        let mut first = None;
        // Every run works on the same buffers, as the baseline loop does,
        // so both meet the same cache state.
        let mut work = task.clone();
        let timed = baselines.len() + usize::from(cpu.is_some());
        if timed == 0 {
            return Ok(None);
        }
        let stats = repeat_each(&self.plan, timed, || {
            let mut times = Vec::with_capacity(timed);
            for (_, once) in &mut baselines {
                times.push(once()?);
            }
            if let Some(cpu) = cpu {
                let run = cpu.run_in_place(&mut work);
                if first.is_none() {
                    first = Some(run.outputs.clone());
                }
                restore(&mut work, run.outputs);
                times.push(run.timings.total);
            }
            Ok(times)
        })?;
        for ((name, _), s) in baselines.iter().zip(&stats) {
            self.curve(kernel, name, size, s.runs, s.median_ms);
        }
        if cpu.is_some() {
            let s = *stats.last().expect("the CPU was timed");
            self.row(kernel, BackendKind::Cpu, "cpu", size, s);
        }
        Ok(first)
    }

    /// Times the GPU backend; returns the outputs of its first run.
    fn gpu(&mut self, gpu: &GpuBackend, task: &Task, size: usize) -> Result<Outputs> {
        let mut first = None;
        let [resident, end_to_end] = repeat(&self.plan, || {
            let run = gpu.run(task)?;
            first.get_or_insert(run.outputs);
            let resident = run.timings.kernel_device.unwrap_or(run.timings.compute);
            Ok([resident, run.timings.total])
        })?;
        self.row(task.kernel(), BackendKind::Gpu, "resident", size, resident);
        self.row(
            task.kernel(),
            BackendKind::Gpu,
            "end_to_end",
            size,
            end_to_end,
        );
        // On a real GPU, also the kernels back to back on resident data: a
        // lone dispatch after a job's uploads may meet an idled, down-clocked
        // GPU. (Skipped on software adapters, where it only costs time.)
        if !crate::backend::gpu::adapter::is_software(gpu.info()) {
            let [busy] = repeat(&self.plan, || {
                Ok([gpu.time_back_to_back(task, BACK_TO_BACK)?])
            })?;
            self.row(task.kernel(), BackendKind::Gpu, "back_to_back", size, busy);
        }
        Ok(first.expect("repeat runs at least once"))
    }

    fn row(&mut self, kernel: Kernel, backend: BackendKind, mode: &str, size: usize, s: Stats) {
        let throughput = workload::throughput(kernel, size, s.median_ms);
        let bound = workload::bandwidth(kernel);
        let memory_bound = bound.is_some();
        let bandwidth = match (backend, bound) {
            (_, None) => None,
            (BackendKind::Gpu, Some(_)) => self.gpu_copy_gbps,
            (BackendKind::Cpu, Some(workload::Bandwidth::Copy)) => Some(self.bandwidth.copy_gbps),
            (BackendKind::Cpu, Some(workload::Bandwidth::Read)) => Some(self.bandwidth.read_gbps),
        };
        let on_device = matches!(mode, "resident" | "back_to_back");
        let (name, baseline) = if on_device && memory_bound {
            ("gpu copy".to_owned(), self.gpu_copy_gbps)
        } else {
            let name = cpu_baseline_name(kernel, self.reference_gemm.is_some());
            let found = self
                .curves
                .iter()
                .find(|c| c.kernel == kernel.name() && c.name == name && c.size == size)
                .map(|c| c.throughput);
            (name.to_owned(), found)
        };
        self.results.push(ResultRow {
            kernel: kernel.name().into(),
            backend: backend.to_string(),
            mode: mode.into(),
            size,
            runs: s.runs,
            median_ms: s.median_ms,
            min_ms: s.min_ms,
            max_ms: s.max_ms,
            throughput,
            unit: workload::unit(kernel).name.into(),
            baseline,
            baseline_name: baseline.map(|_| name),
            baseline_ratio: baseline.map(|b| throughput / b),
            bandwidth_ratio: bandwidth.map(|b| throughput / b),
        });
    }

    /// Speed-ups, crossover and accuracy for one kernel's sweep.
    fn summarise(&mut self, kernel: Kernel, sizes: &[usize], diff: Option<f64>) {
        let median = |mode: &str, size: usize| {
            self.results
                .iter()
                .find(|r| r.kernel == kernel.name() && r.mode == mode && r.size == size)
                .map(|r| r.median_ms)
        };
        let speedups: Vec<Speedup> = sizes
            .iter()
            .filter_map(|&size| {
                let cpu = median("cpu", size)?;
                Some(Speedup {
                    size,
                    resident: cpu / median("resident", size)?,
                    end_to_end: cpu / median("end_to_end", size)?,
                })
            })
            .collect();
        let mut ascending = speedups.clone();
        ascending.sort_by_key(|s| s.size);
        let crossover = ascending
            .iter()
            .find(|s| s.end_to_end > 1.0)
            .map(|s| s.size);
        let name = kernel.name().to_owned();
        self.crossover.insert(name.clone(), crossover);
        self.max_rel_diff.insert(name.clone(), diff);
        self.speedup.insert(name, speedups);
    }
}

/// Puts back what [`CpuBackend::run_in_place`] took out of a task, so it
/// can run again: axpy's y (which now holds a·x + y; the bench's scale keeps
/// repeated runs bounded).
fn restore(task: &mut Task, outputs: Outputs) {
    if let Task::Axpy(t) = task
        && let Some(out) = outputs.into_values().next()
        && let TensorData::F32(y) = out.into_data()
    {
        t.y = y;
    }
}

/// One timed run of a baseline, in milliseconds.
type Once<'a> = Box<dyn FnMut() -> Result<f64> + 'a>;

/// The baselines timed in turn with the CPU, each ready to run once; the
/// first is the one the kernel's rows are compared with: NumPy for matmul
/// when there is NumPy, the single thread times the thread count for
/// mandelbrot (then, beside it, one single-thread run per thread started
/// together: what the cores give when all are busy), else the plain rayon
/// loop.
fn alternating_baselines<'a>(
    pool: &'a rayon::ThreadPool,
    single: &'a CpuBackend,
    numpy: Option<&'a mut baseline::Numpy>,
    task: &'a Task,
) -> Result<Vec<(&'static str, Once<'a>)>> {
    let threads = pool.current_num_threads();
    Ok(match (task, numpy) {
        (Task::Matmul(t), Some(numpy)) => {
            numpy.prepare(t.m)?;
            vec![("numpy", Box::new(move || numpy.run_ms()))]
        }
        (Task::Matmul(t), None) if t.m > GEMM_LOOP_MAX => Vec::new(),
        (Task::Mandelbrot(_), _) => {
            let singles = (0..threads)
                .map(|_| CpuBackend::new(Some(1)))
                .collect::<Result<Vec<_>>>()?;
            vec![
                (
                    "threads × single thread",
                    Box::new(move || Ok(single.run(task)?.timings.total / threads as f64)),
                ),
                (
                    "single threads at once",
                    Box::new(move || Ok(singles_at_once(&singles, task)? / threads as f64)),
                ),
            ]
        }
        _ => vec![("rayon loop", rayon_loop(pool, task))],
    })
}

/// Milliseconds for each backend in `singles` to run `task` once, all
/// started together.
fn singles_at_once(singles: &[CpuBackend], task: &Task) -> Result<f64> {
    let (ran, ms) = measure::time_ms(|| {
        std::thread::scope(|scope| {
            let runs: Vec<_> = singles
                .iter()
                .map(|single| scope.spawn(|| single.run(task)))
                .collect();
            runs.into_iter().try_for_each(|run| {
                run.join()
                    .map_err(|_| Error::Panicked("a single-thread run panicked".into()))?
                    .map(drop)
            })
        })
    });
    ran.map(|()| ms)
}

/// The plain rayon loop of a task's operation, on its own copies of the
/// inputs.
fn rayon_loop<'a>(pool: &'a rayon::ThreadPool, task: &'a Task) -> Once<'a> {
    let time = |f: &mut dyn FnMut()| measure::time_ms(f).1;
    match task {
        Task::Axpy(t) => {
            let mut y = t.y.clone();
            Box::new(move || Ok(time(&mut || baseline::axpy_loop(pool, t.a, &t.x, &mut y))))
        }
        Task::Reduce(t) => {
            let TensorData::F32(x) = &t.x else {
                unreachable!("the bench sums f32")
            };
            Box::new(move || {
                Ok(time(&mut || {
                    std::hint::black_box(baseline::sum_loop(pool, x));
                }))
            })
        }
        Task::Matmul(t) => {
            let mut c = vec![0.0f32; t.m * t.n];
            Box::new(move || {
                Ok(time(&mut || {
                    baseline::gemm_loop(pool, t.m, &t.a, &t.b, &mut c)
                }))
            })
        }
        Task::Mandelbrot(m) => Box::new(move || {
            Ok(time(&mut || {
                std::hint::black_box(baseline::mandelbrot_loop(pool, m));
            }))
        }),
    }
}

/// ‖a − b‖₂ / ‖b‖₂ over all outputs (the absolute norm when b is all zero).
pub fn rel_diff(a: &Outputs, b: &Outputs) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (name, tb) in b {
        let Some(ta) = a.get(name) else {
            return f64::INFINITY;
        };
        let (va, vb) = (ta.data().to_f64(), tb.data().to_f64());
        if va.len() != vb.len() {
            return f64::INFINITY;
        }
        for (x, y) in va.iter().zip(&vb) {
            diff += (x - y) * (x - y);
            norm += y * y;
        }
    }
    if norm > 0.0 {
        (diff / norm).sqrt()
    } else {
        diff.sqrt()
    }
}

/// Steal time and total time of all CPUs so far, in clock ticks, from the
/// first line of `/proc/stat` (user nice system idle iowait irq softirq
/// steal ...).
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    (fields.len() == 8).then(|| (fields[7], fields.iter().sum()))
}

/// The CPU's model name, or the architecture where it cannot be read.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}
