//! For a program's own tests: one job on every backend this machine has —
//! the rayon pool, the hardware GPU if there is one, and a software adapter
//! such as llvmpipe if there is one (so that CI without a card still runs
//! the WGSL) — and the outputs compared, element by element, with the
//! CPU's.
//!
//! ```
//! use anycore::backend::compare::{Tolerance, on_every_backend};
//! use anycore::kernel::{Job, Kernel};
//! use anycore::tensor::Tensor;
//!
//! let job = Job::new(Kernel::Axpy)
//!     .input("x", Tensor::from_f32(vec![1.0, 2.0, 3.0]))
//!     .input("y", Tensor::from_f32(vec![0.5; 3]))
//!     .param("a", 3);
//! let agreement = on_every_backend(&job, Tolerance::F32)?;
//! for run in &agreement.runs {
//!     println!("{} ({}): {:.3} ms", run.backend, run.device, run.ms);
//! }
//! # Ok::<(), anycore::Error>(())
//! ```
//!
//! The catalog's GPU outputs are poisoned (filled with 0xFF bytes) before
//! the kernel runs, so an element a shader forgets to write shows as NaN
//! or `u32::MAX`; a registered kernel's outputs start at zero (its
//! contract), so there a forgotten element shows as 0. A panic of the
//! kernel's own code is an error naming the backend. Without a GPU only
//! the CPU runs, and [`Agreement::no_gpu`] says why — unless
//! `ANYCORE_REQUIRE_GPU_TESTS=1` is set (as anycore's own CI does), which
//! makes that an error.

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use super::cpu::CpuBackend;
use super::gpu::{GpuBackend, GpuOptions, adapter};
use super::{Backend, BackendKind};
use crate::error::{Error, Result};
use crate::kernel::{Job, Outputs, Task};
use crate::tensor::{Tensor, TensorData};

/// How far a backend's float output may be from the CPU's:
/// `|gpu - cpu| <= abs + rel * |cpu|`. NaN matches NaN; integers match
/// exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Absolute part.
    pub abs: f64,
    /// Relative part.
    pub rel: f64,
}

impl Tolerance {
    /// Bit for bit (up to NaN payloads).
    pub const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0 };
    /// A few f32 roundings apart: what a reordered sum or a fused
    /// multiply-add gives.
    pub const F32: Tolerance = Tolerance {
        abs: 1e-6,
        rel: 1e-5,
    };
}

/// One backend's run of the job.
#[derive(Debug)]
pub struct BackendRun {
    /// Which kind of backend.
    pub backend: BackendKind,
    /// Its device ("llvmpipe (LLVM 19.1.7, 256 bits) (Vulkan)", "rayon
    /// pool, 8 threads").
    pub device: String,
    /// Its outputs.
    pub outputs: Outputs,
    /// The run's time, in milliseconds.
    pub ms: f64,
}

/// Every backend agreed: their runs, the CPU's first, then the hardware
/// GPU's and the software adapter's, where there are.
#[derive(Debug)]
pub struct Agreement {
    /// The runs.
    pub runs: Vec<BackendRun>,
    /// Why the GPU did not run, if it did not.
    pub no_gpu: Option<String>,
}

/// Runs `job` on the CPU and on each GPU, and compares every output of
/// each GPU's with the CPU's within `tolerance`; an error names the first
/// element that differs.
pub fn on_every_backend(job: &Job, tolerance: Tolerance) -> Result<Agreement> {
    let cpu = run(cpu()?, job)?;
    let (gpus, no_gpu) = gpus();
    if gpus.is_empty() && gpu_required() {
        return Err(Error::NoGpu(format!(
            "ANYCORE_REQUIRE_GPU_TESTS=1 but the GPU backend cannot start: {}",
            no_gpu.as_deref().unwrap_or("no adapter")
        )));
    }
    let mut runs = Vec::with_capacity(1 + gpus.len());
    for gpu in gpus {
        let theirs = run(gpu, job)?;
        compare(job, &cpu, &theirs, tolerance)?;
        runs.push(theirs);
    }
    runs.insert(0, cpu);
    Ok(Agreement {
        runs,
        no_gpu: gpus.is_empty().then(|| no_gpu.clone().unwrap_or_default()),
    })
}

fn gpu_required() -> bool {
    std::env::var("ANYCORE_REQUIRE_GPU_TESTS").is_ok_and(|v| v.trim() == "1")
}

/// The process's CPU backend for comparisons.
fn cpu() -> Result<&'static CpuBackend> {
    static CPU: OnceLock<std::result::Result<CpuBackend, String>> = OnceLock::new();
    CPU.get_or_init(|| CpuBackend::new(None).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Internal(e.clone()))
}

/// The process's GPU backends for comparisons (outputs poisoned): the
/// best adapter (a hardware one, else a software one) and, when that is a
/// hardware one, a software one too if there is one; with none, why.
fn gpus() -> &'static (Vec<GpuBackend>, Option<String>) {
    static GPUS: OnceLock<(Vec<GpuBackend>, Option<String>)> = OnceLock::new();
    GPUS.get_or_init(|| {
        let options = GpuOptions {
            allow_software: true,
            poison_outputs: true,
            ..GpuOptions::from_env()
        };
        let best = match GpuBackend::new(&options) {
            Ok(gpu) => gpu,
            Err(Error::NoGpu(why)) => return (Vec::new(), Some(why)),
            Err(e) => return (Vec::new(), Some(e.to_string())),
        };
        let mut gpus = vec![best];
        if !adapter::is_software(gpus[0].info()) {
            let software = GpuOptions {
                software_only: true,
                ..options
            };
            gpus.extend(GpuBackend::new(&software).ok());
        }
        (gpus, None)
    })
}

fn run(backend: &dyn Backend, job: &Job) -> Result<BackendRun> {
    let (task, _) = Task::admitted(job.clone())?;
    // The kernel's own code (a registered kernel's fallback) may panic.
    let run =
        std::panic::catch_unwind(AssertUnwindSafe(|| backend.run(&task))).map_err(|panic| {
            Error::Panicked(format!(
                "{} on {}: {}",
                job.kernel,
                backend.kind(),
                crate::error::panic_message(&*panic)
            ))
        })??;
    Ok(BackendRun {
        backend: backend.kind(),
        device: backend.device(),
        outputs: run.outputs,
        ms: run.timings.total,
    })
}

fn compare(job: &Job, want: &BackendRun, got: &BackendRun, tolerance: Tolerance) -> Result<()> {
    let kernel = job.kernel;
    let differ = |what: String| {
        Error::Disagree(format!(
            "{kernel}: {what}, on {} ({}) against {} ({})",
            got.backend, got.device, want.backend, want.device
        ))
    };
    for (name, w) in &want.outputs {
        let Some(g) = got.outputs.get(name) else {
            return Err(differ(format!("output '{name}' is missing")));
        };
        if g.dtype() != w.dtype() || g.shape() != w.shape() {
            return Err(differ(format!(
                "output '{name}' is {}, not {}",
                g.describe(),
                w.describe()
            )));
        }
        if let Some((i, a, b)) = first_difference(g, w, tolerance) {
            return Err(differ(format!(
                "output '{name}' differs first at element {i} {:?}: {a} instead of {b} \
                 (tolerance {} + {}·|expected|)",
                index(w.shape(), i),
                tolerance.abs,
                tolerance.rel
            )));
        }
    }
    Ok(())
}

/// The first element where `got` and `want` (of one dtype and shape)
/// differ beyond `tolerance`: its flat index and both values.
fn first_difference(
    got: &Tensor,
    want: &Tensor,
    tolerance: Tolerance,
) -> Option<(usize, f64, f64)> {
    let close = |a: f64, b: f64| {
        (a.is_nan() && b.is_nan())
            || a == b
            || (a - b).abs() <= tolerance.abs + tolerance.rel * b.abs()
    };
    let exact = !matches!(want.data(), TensorData::F32(_));
    let (g, w) = (got.data().to_f64(), want.data().to_f64());
    g.into_iter()
        .zip(w)
        .enumerate()
        .find(|&(_, (a, b))| if exact { a != b } else { !close(a, b) })
        .map(|(i, (a, b))| (i, a, b))
}

/// The index in each dimension of flat element `i` of `shape`.
fn index(shape: &[usize], mut i: usize) -> Vec<usize> {
    let mut at = vec![0; shape.len()];
    for (a, &d) in at.iter_mut().zip(shape).rev() {
        *a = i % d.max(1);
        i /= d.max(1);
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_row_major() {
        assert_eq!(index(&[2, 3], 4), vec![1, 1]);
        assert_eq!(index(&[4], 3), vec![3]);
        assert_eq!(index(&[2, 3, 5], 29), vec![1, 2, 4]);
    }

    #[test]
    fn tolerance_bounds_floats_and_integers_match_exactly() {
        let t = |v: Vec<f32>| Tensor::from_f32(v);
        let want = t(vec![1.0, f32::NAN, -2.0, f32::INFINITY]);
        assert_eq!(first_difference(&want, &want, Tolerance::EXACT), None);
        let near = t(vec![1.0 + 1e-6, f32::NAN, -2.0, f32::INFINITY]);
        assert_eq!(first_difference(&near, &want, Tolerance::F32), None);
        assert!(first_difference(&near, &want, Tolerance::EXACT).is_some());
        let far = t(vec![1.0, f32::NAN, -2.001, f32::INFINITY]);
        assert_eq!(
            first_difference(&far, &want, Tolerance::F32).map(|d| d.0),
            Some(2)
        );
        let nan = t(vec![1.0, 0.0, -2.0, f32::INFINITY]);
        assert_eq!(
            first_difference(&nan, &want, Tolerance::F32).map(|d| d.0),
            Some(1)
        );
        let u = |v: Vec<u32>| Tensor::new(vec![v.len()], TensorData::U32(v));
        let loose = Tolerance {
            abs: 10.0,
            rel: 0.0,
        };
        assert_eq!(
            first_difference(&u(vec![1, 3]), &u(vec![1, 2]), loose).map(|d| d.0),
            Some(1)
        );
    }
}
