//! The two places a task can run, behind one small synchronous trait.
//!
//! - [`gpu::GpuBackend`]: wgpu and the WGSL shaders in `shaders/`.
//! - [`cpu::CpuBackend`]: a rayon pool.
//!
//! [`open`] picks one for a [`BackendChoice`] and says why, so every result
//! can report where it ran (`placement_reason`). Creating the GPU backend
//! with no usable adapter is an error value, never a panic: that is what
//! lets `auto` fall back to the CPU.

pub mod cpu;
pub mod gpu;

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::kernel::{Outputs, Task};

/// Which kind of backend ran a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// wgpu compute shaders.
    Gpu,
    /// The rayon pool.
    Cpu,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Gpu => "gpu",
            BackendKind::Cpu => "cpu",
        })
    }
}

/// Where each phase of a run spent its time, in milliseconds. The CPU has
/// no upload or download: those are 0 there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Host to device copies.
    pub upload: f64,
    /// The kernels themselves.
    pub compute: f64,
    /// Device to host copies.
    pub download: f64,
    /// The whole run, as seen by the caller.
    pub total: f64,
}

/// The result of running a task on a backend.
#[derive(Debug)]
pub struct Run {
    /// Output tensors by name.
    pub outputs: Outputs,
    /// Time per phase.
    pub timings: Timings,
}

/// A place that runs tasks. Implementations are thread-safe: one backend
/// serves many callers.
pub trait Backend: Send + Sync {
    /// GPU or CPU.
    fn kind(&self) -> BackendKind;
    /// A human-readable device name ("NVIDIA H100 (Vulkan)", "rayon pool, 8 threads").
    fn device(&self) -> String;
    /// Runs a task to completion.
    fn run(&self, task: &Task) -> Result<Run>;
}

/// What the user asked for with `--backend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// A hardware GPU when there is one, else the CPU.
    #[default]
    Auto,
    /// The GPU, or an error.
    Gpu,
    /// The CPU.
    Cpu,
}

impl BackendChoice {
    /// Parses `auto`, `gpu` or `cpu`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(BackendChoice::Auto),
            "gpu" => Ok(BackendChoice::Gpu),
            "cpu" => Ok(BackendChoice::Cpu),
            other => Err(Error::bad(format!(
                "unknown backend '{other}' (choose auto, gpu or cpu)"
            ))),
        }
    }
}

/// A backend together with the reason it was chosen.
pub struct Placement {
    /// The backend to run on.
    pub backend: Arc<dyn Backend>,
    /// Why this one (reported as `placement_reason`).
    pub reason: String,
}

/// Opens the backend for `choice`.
///
/// `Auto` takes the GPU when [`gpu::GpuBackend::new`] finds a usable adapter
/// (hardware, or software when `gpu_options` allows it) and otherwise the
/// CPU, giving the GPU's refusal as the reason. `Gpu` turns that refusal
/// into an [`Error::NoGpu`].
pub fn open(choice: BackendChoice, gpu_options: &gpu::GpuOptions) -> Result<Placement> {
    let cpu = || -> Result<Arc<dyn Backend>> { Ok(Arc::new(cpu::CpuBackend::new(None)?)) };
    match choice {
        BackendChoice::Cpu => Ok(Placement {
            backend: cpu()?,
            reason: "forced by --backend cpu".into(),
        }),
        BackendChoice::Gpu => {
            let gpu = gpu::GpuBackend::new(gpu_options)?;
            Ok(Placement {
                reason: format!("forced by --backend gpu ({})", gpu.adapter_summary()),
                backend: Arc::new(gpu),
            })
        }
        BackendChoice::Auto => match gpu::GpuBackend::new(gpu_options) {
            Ok(gpu) => Ok(Placement {
                reason: format!("auto: {}", gpu.adapter_summary()),
                backend: Arc::new(gpu),
            }),
            Err(Error::NoGpu(why)) => {
                log::info!("running on the CPU: {why}");
                Ok(Placement {
                    backend: cpu()?,
                    reason: format!("auto: {why}; running on the CPU"),
                })
            }
            Err(other) => Err(other),
        },
    }
}
