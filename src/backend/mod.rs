//! The two places a task can run, behind one small synchronous trait.
//!
//! - [`gpu::GpuBackend`]: wgpu and the WGSL shaders in `shaders/`.
//! - [`cpu::CpuBackend`]: a rayon pool.
//!
//! [`compare`] runs one job on each and compares their outputs (for a
//! program's tests of the kernels it registers).
//!
//! Choosing between them is the coordinator's job (`crate::coordinator`).
//! Creating the GPU backend with no usable adapter is an error value, never
//! a panic: that is what lets `auto` fall back to the CPU.

pub mod compare;
pub mod cpu;
pub mod gpu;

use std::fmt;

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::kernel::{Outputs, Task};
use crate::tensor::Handle;

/// Which kind of backend ran a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// wgpu compute shaders.
    Gpu,
    /// The rayon pool.
    Cpu,
}

impl BackendKind {
    /// Both kinds.
    pub const ALL: [BackendKind; 2] = [BackendKind::Gpu, BackendKind::Cpu];

    /// `gpu` or `cpu`: the one spelling every front uses.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Gpu => "gpu",
            BackendKind::Cpu => "cpu",
        }
    }

    /// Parses `gpu` or `cpu`.
    pub fn from_name(name: &str) -> Result<Self> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| Error::bad(format!("unknown backend '{name}' (choose gpu or cpu)")))
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where each phase of a run spent its time, in milliseconds: what a
/// backend measures, what the coordinator adds (the wait in its queue), and
/// what `run --json`, `batch` and the service report (`timings_ms`). The
/// CPU has no upload or download: those are 0 there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting in the coordinator's queue (0 for a backend's own run).
    #[serde(default)]
    pub queued: f64,
    /// Host to device copies.
    pub upload: f64,
    /// The kernels themselves, from submit to the host seeing them done.
    pub compute: f64,
    /// The kernels on the device's own clock (GPU timestamp queries),
    /// where the adapter has one: the time the data-resident work took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_device: Option<f64>,
    /// Device to host copies.
    pub download: f64,
    /// The whole run, as seen by the caller (with the queue, for a job).
    pub total: f64,
}

impl Timings {
    /// Adds another run's phases to these (not `queued` or `total`, which
    /// the caller sees whole).
    pub fn add(&mut self, other: &Timings) {
        self.upload += other.upload;
        self.compute += other.compute;
        self.download += other.download;
        if let Some(ms) = other.kernel_device {
            *self.kernel_device.get_or_insert(0.0) += ms;
        }
    }
}

/// What a run moved between host and device memory: bytes each way and
/// command submissions to the device (all 0 on the CPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Bytes copied from host to device memory.
    pub uploaded_bytes: u64,
    /// Bytes copied from device to host memory.
    pub downloaded_bytes: u64,
    /// Command buffers submitted to the device's queue.
    pub submissions: u64,
}

impl Traffic {
    /// Adds another run's traffic to this one.
    pub fn add(&mut self, other: &Traffic) {
        self.uploaded_bytes += other.uploaded_bytes;
        self.downloaded_bytes += other.downloaded_bytes;
        self.submissions += other.submissions;
    }
}

/// The result of running a task on a backend.
#[derive(Debug)]
pub struct Run {
    /// Output tensors by name, brought home.
    pub outputs: Outputs,
    /// The outputs the caller asked to keep, as handles: on the device
    /// where the backend could keep them there, else in host memory.
    pub kept: BTreeMap<String, Handle>,
    /// Time per phase.
    pub timings: Timings,
    /// What moved between host and device.
    pub traffic: Traffic,
    /// Anything the caller should know about how it ran (an output kept in
    /// host memory because the device had no room for it).
    pub note: Option<String>,
}

impl Run {
    /// A run whose outputs named in `keep` are handles: those in `kept`
    /// (already on the device) as they are, the others moved out of
    /// `outputs` into host handles.
    pub fn keeping(
        mut outputs: Outputs,
        mut kept: BTreeMap<String, Handle>,
        keep: &[String],
        timings: Timings,
        traffic: Traffic,
    ) -> Run {
        for name in keep {
            if !kept.contains_key(name)
                && let Some(t) = outputs.remove(name)
            {
                kept.insert(name.clone(), Handle::new(t));
            }
        }
        Run {
            outputs,
            kept,
            timings,
            traffic,
            note: None,
        }
    }

    /// The same run with `note` (if any).
    pub fn with_note(mut self, note: Option<String>) -> Run {
        self.note = note;
        self
    }
}

/// What bringing handles' data home (or finishing a batch) took.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fetched {
    /// The whole fetch, in milliseconds.
    pub ms: f64,
    /// Of which device-to-host copies.
    pub download_ms: f64,
    /// Of which waiting for recorded kernels to finish.
    pub compute_ms: f64,
    /// What moved.
    pub traffic: Traffic,
}

impl Fetched {
    /// Adds another fetch's times and traffic to this one.
    pub fn add(&mut self, other: &Fetched) {
        self.ms += other.ms;
        self.download_ms += other.download_ms;
        self.compute_ms += other.compute_ms;
        self.traffic.add(&other.traffic);
    }
}

/// A place that runs tasks. Implementations are thread-safe: one backend
/// serves many callers.
pub trait Backend: Send + Sync {
    /// GPU or CPU.
    fn kind(&self) -> BackendKind;
    /// A human-readable device name ("NVIDIA H100 (Vulkan)", "rayon pool, 8 threads").
    fn device(&self) -> String;
    /// Runs a task to completion, every output brought home.
    fn run(&self, task: &Task) -> Result<Run> {
        self.run_keeping(task, &[])
    }
    /// Runs a task to completion, the outputs named in `keep` kept where
    /// they are ([`Run::kept`]).
    fn run_keeping(&self, task: &Task, keep: &[String]) -> Result<Run>;
    /// Runs a task the caller has no further use for. A backend may write
    /// results into the task's own buffers (the CPU's `axpy` does: a fresh
    /// output would cost a page fault per 4 KiB, more than the loop itself).
    fn run_owned(&self, task: Task, keep: &[String]) -> Result<Run> {
        self.run_keeping(&task, keep)
    }
    /// Called by the coordinator's worker before each job or pipeline it
    /// runs here: an error fails the work as the run would have (the GPU's
    /// once its device is lost, or a fault injected for tests,
    /// [`gpu::faults`]).
    fn begin_job(&self) -> Result<()> {
        Ok(())
    }
    /// Why the device was lost, once it was: nothing runs here any more.
    fn lost(&self) -> Option<String> {
        None
    }
    /// Milliseconds per byte to upload to the device and to download from
    /// it, measured now (for the cost model); `None` for a backend with no
    /// memory of its own.
    fn transfer_ms_per_byte(&self) -> Option<(f64, f64)> {
        None
    }
    /// Runs `run` (several tasks, a pipeline's steps) as one batch where
    /// the backend can: the GPU records their dispatches into as few
    /// submissions as their transfers allow, and waits for the rest at the
    /// end. What that last wait took comes back. `spare_holders`: handles
    /// to each of the batch's tensors that the caller keeps without reading
    /// them (a copy to re-run it elsewhere), which do not make a tensor
    /// worth keeping on the device.
    fn batched(&self, spare_holders: usize, run: &mut dyn FnMut()) -> Result<Fetched> {
        let _ = spare_holders;
        run();
        Ok(Fetched::default())
    }
    /// Brings each handle's data into host memory where it is not there
    /// yet (keeping the device copy too). A backend without device memory
    /// has nothing to bring: every handle it could have made is on the host.
    fn fetch(&self, handles: &[Handle]) -> Result<Fetched> {
        match handles.iter().find(|h| h.host().is_none()) {
            Some(h) => Err(Error::Internal(format!(
                "{} has no host copy and the {} backend cannot read device memory",
                h.spec().describe(),
                self.kind()
            ))),
            None => Ok(Fetched::default()),
        }
    }
    /// Runs `serve` — a worker's loop that calls this backend job after
    /// job — where this backend's jobs start cheapest. By default on the
    /// calling thread; the CPU runs it on one of its pool's threads, so
    /// that a job's parallel work starts there instead of each job paying
    /// a hop into the pool. That thread waits for jobs outside rayon's
    /// knowledge: work injected into the pool from outside meanwhile
    /// (`install`, `broadcast` from another thread) finds one thread
    /// fewer, and on a one-thread pool would wait for the loop to end.
    /// Only the worker uses the pool today.
    fn host(&self, serve: &mut (dyn FnMut() + Send)) {
        serve()
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
    /// Parses `auto`, `gpu` or `cpu` ([`BackendKind`]'s names).
    pub fn from_name(name: &str) -> Result<Self> {
        if name.trim() == "auto" {
            return Ok(BackendChoice::Auto);
        }
        match BackendKind::from_name(name) {
            Ok(BackendKind::Gpu) => Ok(BackendChoice::Gpu),
            Ok(BackendKind::Cpu) => Ok(BackendChoice::Cpu),
            Err(_) => Err(Error::bad(format!(
                "unknown backend '{name}' (choose auto, gpu or cpu)"
            ))),
        }
    }

    /// `auto`, `gpu` or `cpu`.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Gpu => BackendKind::Gpu.name(),
            BackendChoice::Cpu => BackendKind::Cpu.name(),
        }
    }
}
