//! The two places a task can run, behind one small synchronous trait.
//!
//! - [`gpu::GpuBackend`]: wgpu and the WGSL shaders in `shaders/`.
//! - [`cpu::CpuBackend`]: a rayon pool.
//!
//! Choosing between them is the coordinator's job (`crate::coordinator`).
//! Creating the GPU backend with no usable adapter is an error value, never
//! a panic: that is what lets `auto` fall back to the CPU.

pub mod cpu;
pub mod gpu;

use std::fmt;

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
    /// The kernels themselves, from submit to the host seeing them done.
    pub compute: f64,
    /// The kernels on the device's own clock (GPU timestamp queries),
    /// where the adapter has one: the time the data-resident work took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_device: Option<f64>,
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
    /// Runs a task the caller has no further use for. A backend may write
    /// results into the task's own buffers (the CPU's `axpy` does: a fresh
    /// output would cost a page fault per 4 KiB, more than the loop itself).
    fn run_owned(&self, task: Task) -> Result<Run> {
        self.run(&task)
    }
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
