//! What `anycore bench` reports, as `--json` writes it: the machine, the
//! baselines, one row per kernel, size, backend and mode, and the
//! per-kernel summaries. [`super::report`] and [`super::svg`] draw it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::measure::Stats;
use crate::kernel::Kernel;

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
    /// The `chain` comparison: k steps of `axpy` as separate jobs and as
    /// one pipeline, per backend (empty unless asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<super::chain::ChainRow>,
    /// Kernels' variants (other parameters: `map`'s other expressions),
    /// each at one size beside NumPy and the plain rayon loop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantRow>,
    /// What was skipped, and why.
    pub notes: Vec<String>,
}

impl Report {
    /// The names of a kernel's baseline curves, in the order first seen.
    pub fn curve_names(&self, kernel: Kernel) -> Vec<BaselineName> {
        let mut names: Vec<BaselineName> = Vec::new();
        for c in self
            .baselines
            .curves
            .iter()
            .filter(|c| c.kernel == kernel.name())
        {
            if !names.contains(&c.name) {
                names.push(c.name);
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
    /// The same kernel copying buffers cleared to zero, GB/s: above the
    /// copy of random data (the two above), the GPU compresses memory, and
    /// zero-filled inputs would flatter a kernel.
    pub gpu_kernel_copy_zeros_gbps: Option<f64>,
    /// anycore's own host→device copy of 256 MiB (the path jobs use), GB/s.
    pub gpu_upload_gbps: Option<f64>,
    /// anycore's own device→host copy of 256 MiB into fresh host memory
    /// (the path jobs use), GB/s.
    pub gpu_download_gbps: Option<f64>,
    /// The NumPy the NumPy baselines ran on ("NumPy 2.4.6 (scipy-openblas
    /// 0.3.31)"), when there was one.
    pub numpy: Option<String>,
    /// Per kernel and size: the kernel's own baselines (its profile's
    /// `baselines`).
    pub curves: Vec<Curve>,
}

/// One baseline at one size.
#[derive(Clone, Debug, Serialize)]
pub struct Curve {
    /// The kernel it stands beside.
    pub kernel: String,
    /// Which baseline.
    pub name: BaselineName,
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
    /// How it was run.
    pub mode: Mode,
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
    /// Which baseline that is.
    pub baseline_name: Option<BaselineName>,
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

/// How a row was run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The CPU backend.
    Cpu,
    /// The GPU's kernel phase, data already on the device.
    Resident,
    /// The GPU with its uploads and downloads.
    EndToEnd,
    /// The GPU's kernels 8 times back to back on resident data, per run
    /// (real GPUs only).
    BackToBack,
}

impl Mode {
    /// Every mode, in the order the table and the chart show them.
    pub const ALL: [Mode; 4] = [Mode::Cpu, Mode::Resident, Mode::EndToEnd, Mode::BackToBack];

    /// The label in the table and the chart.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Cpu => "cpu",
            Mode::Resident => "gpu resident",
            Mode::EndToEnd => "gpu end to end",
            Mode::BackToBack => "gpu 8 in a row",
        }
    }

    /// Whether the data was already on the device.
    pub fn on_device(self) -> bool {
        matches!(self, Mode::Resident | Mode::BackToBack)
    }
}

/// A baseline curve or comparison; serialised as [`BaselineName::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineName {
    /// The plain rayon loop of the same operation.
    RayonLoop,
    /// NumPy doing the same.
    Numpy,
    /// One thread's time divided by the thread count.
    ThreadsTimesSingle,
    /// One single-thread run per thread, started together.
    SinglesAtOnce,
    /// A copy on the GPU (the memory-bound kernels' resident rows).
    GpuCopy,
}

impl BaselineName {
    /// As the table and the JSON write it.
    pub fn as_str(self) -> &'static str {
        match self {
            BaselineName::RayonLoop => "rayon loop",
            BaselineName::Numpy => "numpy",
            BaselineName::ThreadsTimesSingle => "threads × single thread",
            BaselineName::SinglesAtOnce => "single threads at once",
            BaselineName::GpuCopy => "gpu copy",
        }
    }
}

impl Serialize for BaselineName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for BaselineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One variant on one backend.
#[derive(Clone, Debug, Serialize)]
pub struct VariantRow {
    /// The kernel.
    pub kernel: String,
    /// The variant's label.
    pub variant: String,
    /// Its size.
    pub size: usize,
    /// `gpu` (end to end) or `cpu`.
    pub backend: String,
    /// Time per run.
    pub stats: Stats,
    /// Throughput at the median, in the kernel's unit.
    pub rate: f64,
    /// NumPy's median time over this row's (`null`: no NumPy).
    pub vs_numpy: Option<f64>,
    /// The plain rayon loop's median time over this row's.
    pub vs_rayon_loop: f64,
}
