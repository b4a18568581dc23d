//! `anycore bench`: each kernel's throughput on each backend over a sweep
//! of sizes, beside baselines timed in the same run, with the GPU/CPU
//! speed-up, the crossover size and the largest difference between the two
//! backends' outputs.
//!
//! - [`model`]: what the report holds, as `--json` writes it.
//! - [`workload`]: what a size means per kernel, its task and its unit.
//! - [`measure`]: warm-up, repeated runs, median/min/max.
//! - [`baseline`]: memory bandwidth, and each kernel's own baselines.
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
pub mod chain;
pub mod measure;
pub mod model;
pub mod report;
pub mod svg;
pub mod variants;
pub mod workload;

use std::collections::BTreeMap;

pub use self::model::{
    BaselineName, Baselines, Curve, Machine, Mode, OrderCheck, Report, ResultRow, Speedup,
};

use self::baseline::{Bandwidth, Kit, Once};
use self::measure::{Repeat, Stats, repeat, repeat_each};
use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{GpuBackend, GpuOptions};
use crate::backend::{Backend, BackendKind};
use crate::error::{Error, Result};
use crate::kernel::profile::Baseline;
use crate::kernel::random::random_tensor;
use crate::kernel::{Kernel, Outputs, Task};
use crate::tensor::DType;

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
    /// Elements per step of the `chain` comparison ([`chain`]); `None`:
    /// no chains.
    pub chain: Option<Vec<usize>>,
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

/// Bytes copied by the GPU bandwidth test.
const GPU_COPY_BYTES: u64 = 256 << 20;

/// The GPU copy baselines, GB/s (read + write bytes): `copy_buffer_to_buffer`
/// and the WGSL copy kernel of random data, and the kernel again of zeros.
#[derive(Clone, Copy)]
struct GpuCopies {
    buffer: f64,
    kernel: f64,
    kernel_zeros: f64,
}

/// Runs of a kernel back to back in one pass for the "back_to_back" rows.
const BACK_TO_BACK: u32 = 8;

/// Bytes moved each way by the host↔device transfer test.
const GPU_TRANSFER_BYTES: u64 = 256 << 20;

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
            work.restore(run.outputs);
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

    let wants_numpy = sweeps.iter().any(|(k, _)| {
        k.profile()
            .baselines
            .iter()
            .any(|b| matches!(b, Baseline::Numpy(_)))
    });
    let mut numpy = None;
    if wants_numpy {
        match baseline::Numpy::start(threads) {
            Ok(n) => numpy = Some(n),
            Err(why) => notes.push(format!(
                "no NumPy ({why}); kernels whose baseline is NumPy are compared with the next \
                 one they have"
            )),
        }
    }
    let numpy_version = numpy.as_ref().map(|n| n.library.clone());

    // The plan: per kernel and size, its baselines there (the first is timed
    // in turn with the CPU, the others apart, a step each).
    let plan_of = |kernel: Kernel, sizes: &[usize]| -> Vec<Vec<Baseline>> {
        sizes
            .iter()
            .map(|&size| baseline::available(kernel, size, numpy.is_some()))
            .collect()
    };
    let plans: Vec<Vec<Vec<Baseline>>> = sweeps.iter().map(|(k, s)| plan_of(*k, s)).collect();
    // With several kernels on the CPU, each is timed once before any other
    // runs and once after all have (two steps).
    let order_check = measure_cpu && sweeps.len() > 1;
    let per_size = |baselines: &Vec<Baseline>| {
        1 + usize::from(gpu.is_some()) + baselines.len().saturating_sub(1)
    };
    let chain_sizes = config.chain.clone().unwrap_or_default();
    let chain_backends = usize::from(measure_cpu) + usize::from(gpu.is_some());
    let total = 1
        + usize::from(gpu.is_some())
        + 2 * usize::from(order_check)
        + plans.iter().flatten().map(per_size).sum::<usize>()
        + chain_sizes.len() * chain_backends
        + sweeps
            .iter()
            .map(|(k, _)| k.profile().variants.len())
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
            // Random words, which no GPU compresses; the kernel also copies
            // zeros, to show whether this one moves those faster.
            let words = (GPU_COPY_BYTES / 4) as usize;
            let data = random_tensor(DType::U32, &[words], config.seed)?;
            let mut bytes = 0;
            let [buffer_ms, kernel_ms, zeros_ms] = repeat(&plan, || {
                let t = gpu.time_copies(data.data().as_bytes())?;
                bytes = t.bytes;
                Ok([t.buffer_ms, t.kernel_ms, t.kernel_zeros_ms])
            })?;
            drop(data);
            let copies = GpuCopies {
                buffer: 2.0 * gbps(bytes, buffer_ms.median_ms),
                kernel: 2.0 * gbps(bytes, kernel_ms.median_ms),
                kernel_zeros: 2.0 * gbps(bytes, zeros_ms.median_ms),
            };
            let [up, down] = repeat(&plan, || {
                let (up, down, b) = gpu.time_transfers(GPU_TRANSFER_BYTES)?;
                bytes = b;
                Ok([up, down])
            })?;
            gpu_copies = Some(copies);
            (
                Some(copies.buffer.max(copies.kernel)),
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
        notes,
        crossover: BTreeMap::new(),
        max_rel_diff: BTreeMap::new(),
        speedup: BTreeMap::new(),
    };
    for ((kernel, sizes), plan) in sweeps.iter().zip(&plans) {
        let kernel = *kernel;
        let mut diff: Option<f64> = None;
        for (i, (&size, baselines)) in sizes.iter().zip(plan).enumerate() {
            let task = sweep_task(kernel, sizes, i, config.seed)?;
            let mut kit = Kit {
                pool: &pool,
                single: &single,
                numpy: numpy.as_mut(),
            };
            let (main, apart) = match baselines.split_first() {
                Some((main, apart)) => (Some(main), apart),
                None => {
                    bench.notes.push(format!(
                        "{kernel} {size}: no baseline (none of its baselines runs at this \
                         size here)"
                    ));
                    (None, &[][..])
                }
            };
            for b in apart {
                step(format!("{kernel} {size}: {}", baseline::main_curve(b)));
                let timers = baseline::timers(b, &task, size, &mut kit)?;
                bench.apart(kernel, size, timers)?;
            }
            step(format!(
                "{kernel} {size}: {}",
                if measure_cpu {
                    "cpu and baseline"
                } else {
                    "baseline"
                }
            ));
            let timers = match main {
                Some(b) => baseline::timers(b, &task, size, &mut kit)?,
                None => Vec::new(),
            };
            let main_name = main.map(baseline::main_curve);
            let cpu_out = bench.cpu(measure_cpu.then_some(&cpu), &task, size, timers, main_name)?;
            if let Some(gpu) = &gpu {
                step(format!("{kernel} {size}: gpu"));
                let gpu_out = bench.gpu(gpu, &task, size, main_name)?;
                if let Some(cpu_out) = &cpu_out {
                    let d = rel_diff(&gpu_out, cpu_out);
                    diff = Some(diff.map_or(d, |m| m.max(d)));
                }
            }
        }
        bench.summarise(kernel, sizes, diff);
    }
    let mut variant_rows = Vec::new();
    for (kernel, _) in &sweeps {
        for variant in kernel.profile().variants {
            let n = variants::size(variant, config.sizes.as_deref(), config.quick);
            step(format!("{kernel} {}: {n}", variant.label));
            variant_rows.extend(variants::measure(
                *kernel,
                variant,
                n,
                config.seed,
                measure_cpu.then_some(&cpu),
                gpu.as_ref().map(|g| g as &dyn Backend),
                &pool,
                numpy.as_mut(),
                &plan,
            )?);
        }
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
    let mut chains = Vec::new();
    for &n in &chain_sizes {
        let backends = [
            measure_cpu.then_some(&cpu as &dyn Backend),
            gpu.as_ref().map(|g| g as &dyn Backend),
        ];
        for backend in backends.into_iter().flatten() {
            step(format!("chain {n}: {}", backend.kind()));
            chains.extend(chain::measure(backend, n, config.seed, &plan)?);
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
            gpu_buffer_copy_gbps: gpu_copies.map(|c| c.buffer),
            gpu_kernel_copy_gbps: gpu_copies.map(|c| c.kernel),
            gpu_kernel_copy_zeros_gbps: gpu_copies.map(|c| c.kernel_zeros),
            gpu_upload_gbps,
            gpu_download_gbps,
            numpy: numpy_version,
            curves: bench.curves,
        },
        results: bench.results,
        crossover: bench.crossover,
        order_check: order,
        max_rel_diff: bench.max_rel_diff,
        speedup: bench.speedup,
        chain: chains,
        variants: variant_rows,
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
    notes: Vec<String>,
    crossover: BTreeMap<String, Option<usize>>,
    max_rel_diff: BTreeMap<String, Option<f64>>,
    speedup: BTreeMap<String, Vec<Speedup>>,
}

impl Bench {
    fn curve(&mut self, kernel: Kernel, name: BaselineName, size: usize, s: &Stats) {
        self.curves.push(Curve {
            kernel: kernel.name().into(),
            name,
            size,
            runs: s.runs,
            median_ms: s.median_ms,
            throughput: workload::throughput(kernel, size, s.median_ms),
            unit: workload::unit(kernel).name.into(),
        });
    }

    /// Times baselines that are not the kernel's main one, apart from the
    /// CPU, with fewer runs (some are slow).
    fn apart(
        &mut self,
        kernel: Kernel,
        size: usize,
        mut timers: Vec<(BaselineName, Once<'_>)>,
    ) -> Result<()> {
        let stats = repeat_each(&self.plan.fewer(), timers.len(), || {
            timers.iter_mut().map(|(_, once)| once()).collect()
        })?;
        for ((name, _), s) in timers.iter().zip(&stats) {
            self.curve(kernel, *name, size, s);
        }
        Ok(())
    }

    /// Times the CPU backend (when given) and the kernel's main baseline in
    /// turn, run after run, so drift in the machine's load falls on all of
    /// them. Returns the outputs of the CPU's first run.
    fn cpu(
        &mut self,
        cpu: Option<&CpuBackend>,
        task: &Task,
        size: usize,
        mut baselines: Vec<(BaselineName, Once<'_>)>,
        main: Option<BaselineName>,
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
                work.restore(run.outputs);
                times.push(run.timings.total);
            }
            Ok(times)
        })?;
        for ((name, _), s) in baselines.iter().zip(&stats) {
            self.curve(kernel, *name, size, s);
        }
        if cpu.is_some() {
            let s = *stats.last().expect("the CPU was timed");
            self.row(kernel, Mode::Cpu, size, s, main);
        }
        Ok(first)
    }

    /// Times the GPU backend; returns the outputs of its first run.
    fn gpu(
        &mut self,
        gpu: &GpuBackend,
        task: &Task,
        size: usize,
        main: Option<BaselineName>,
    ) -> Result<Outputs> {
        let kernel = task.kernel();
        let mut first = None;
        let [resident, end_to_end] = repeat(&self.plan, || {
            let run = gpu.run(task)?;
            first.get_or_insert(run.outputs);
            let resident = run.timings.kernel_device.unwrap_or(run.timings.compute);
            Ok([resident, run.timings.total])
        })?;
        self.row(kernel, Mode::Resident, size, resident, main);
        self.row(kernel, Mode::EndToEnd, size, end_to_end, main);
        // On a real GPU, also the kernels back to back on resident data: a
        // lone dispatch after a job's uploads may meet an idled, down-clocked
        // GPU. (Skipped on software adapters, where it only costs time.)
        if !crate::backend::gpu::adapter::is_software(gpu.info()) {
            let [busy] = repeat(&self.plan, || {
                Ok([gpu.time_back_to_back(task, BACK_TO_BACK)?])
            })?;
            self.row(kernel, Mode::BackToBack, size, busy, main);
        }
        Ok(first.expect("repeat runs at least once"))
    }

    /// A result row, compared with the GPU copy (memory-bound kernels on
    /// the device) or with the kernel's main baseline at that size.
    fn row(
        &mut self,
        kernel: Kernel,
        mode: Mode,
        size: usize,
        s: Stats,
        main: Option<BaselineName>,
    ) {
        let throughput = workload::throughput(kernel, size, s.median_ms);
        let bound = workload::bandwidth(kernel);
        let on_gpu = mode != Mode::Cpu;
        let bandwidth = match (on_gpu, bound) {
            (_, None) => None,
            (true, Some(_)) => self.gpu_copy_gbps,
            (false, Some(workload::Bandwidth::Copy)) => Some(self.bandwidth.copy_gbps),
            (false, Some(workload::Bandwidth::Read)) => Some(self.bandwidth.read_gbps),
        };
        let (name, baseline) = if mode.on_device() && bound.is_some() {
            (Some(BaselineName::GpuCopy), self.gpu_copy_gbps)
        } else {
            let found = main.and_then(|name| {
                self.curves
                    .iter()
                    .find(|c| c.kernel == kernel.name() && c.name == name && c.size == size)
                    .map(|c| c.throughput)
            });
            (main, found)
        };
        self.results.push(ResultRow {
            kernel: kernel.name().into(),
            backend: if on_gpu {
                BackendKind::Gpu
            } else {
                BackendKind::Cpu
            }
            .to_string(),
            mode,
            size,
            runs: s.runs,
            median_ms: s.median_ms,
            min_ms: s.min_ms,
            max_ms: s.max_ms,
            throughput,
            unit: workload::unit(kernel).name.into(),
            baseline,
            baseline_name: baseline.and(name),
            baseline_ratio: baseline.map(|b| throughput / b),
            bandwidth_ratio: bandwidth.map(|b| throughput / b),
        });
    }

    /// Speed-ups, crossover and accuracy for one kernel's sweep.
    fn summarise(&mut self, kernel: Kernel, sizes: &[usize], diff: Option<f64>) {
        let median = |mode: Mode, size: usize| {
            self.results
                .iter()
                .find(|r| r.kernel == kernel.name() && r.mode == mode && r.size == size)
                .map(|r| r.median_ms)
        };
        let speedups: Vec<Speedup> = sizes
            .iter()
            .filter_map(|&size| {
                let cpu = median(Mode::Cpu, size)?;
                Some(Speedup {
                    size,
                    resident: cpu / median(Mode::Resident, size)?,
                    end_to_end: cpu / median(Mode::EndToEnd, size)?,
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
