//! The GPU backend: wgpu running the WGSL shaders in `shaders/`.
//!
//! One [`GpuBackend`] owns one device and queue. Shader modules and
//! pipelines are compiled once and cached; buffers come from a pool and go
//! back to it; results come home through `MAP_READ` staging buffers. Work
//! larger than one storage binding (128 MiB on llvmpipe) is split into
//! chunks, and one-dimensional grids past 65,535 workgroups are spread over
//! two dimensions. Every run is wrapped in error scopes, so a validation
//! error, an out-of-memory or a lost device becomes an [`Error::Gpu`] for
//! that job instead of a panic.
//!
//! Per kernel, the host side (buffers, chunking, dispatches) lives in a
//! module named after it; [`exec`] holds what they share.

pub mod adapter;
mod axpy;
mod exec;
mod grid;
mod mandelbrot;
mod matmul;
mod pool;
mod reduce;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use self::exec::Exec;
use self::pool::BufferPool;
use super::{Backend, BackendKind, Run};
use crate::error::{Error, Result};
use crate::kernel::{Kernel, Task};

/// How to open the GPU backend.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Accept a software adapter (llvmpipe, SwiftShader, WARP) when no
    /// hardware one exists.
    pub allow_software: bool,
    /// Treat storage bindings as at most this many bytes (below the device's
    /// own limit). Tests use it to exercise chunking on small inputs.
    pub max_binding_bytes: Option<u64>,
    /// Fill fresh output buffers with 0xFF bytes before kernels run, so an
    /// element a kernel forgets to write shows as NaN or `u32::MAX`. On in
    /// debug builds (tests), off in release builds (it costs a write).
    pub poison_outputs: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            allow_software: false,
            max_binding_bytes: None,
            poison_outputs: cfg!(debug_assertions),
        }
    }
}

impl GpuOptions {
    /// The defaults, with software adapters allowed when
    /// `ANYCORE_ALLOW_SOFTWARE_GPU=1` is set.
    pub fn from_env() -> Self {
        GpuOptions {
            allow_software: adapter::software_allowed_by_env(),
            ..GpuOptions::default()
        }
    }
}

/// Runs tasks on one wgpu device.
pub struct GpuBackend {
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    max_binding: u64,
    poison: bool,
    device: wgpu::Device,
    queue: wgpu::Queue,
    modules: Mutex<HashMap<Kernel, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(Kernel, u32), wgpu::ComputePipeline>>,
    pool: BufferPool,
    lost: Arc<Mutex<Option<String>>>,
}

impl GpuBackend {
    /// Opens the best usable adapter. With none, returns [`Error::NoGpu`]
    /// saying why (and how to get one).
    pub fn new(options: &GpuOptions) -> Result<Self> {
        let instance = adapter::instance();
        let adapter = adapter::choose(adapter::enumerate(&instance), options.allow_software)
            .map_err(Error::NoGpu)?;
        let info = adapter.get_info();
        // Ask for everything the adapter offers: the defaults cap storage
        // bindings at 128 MiB and buffers at 256 MiB, far below real GPUs.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("anycore"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::NoGpu(format!("adapter '{}' refused a device: {e}", info.name)))?;

        // Errors outside a job's error scopes are logged, not panicked on.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            log::error!("uncaptured wgpu error: {e}");
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_flag = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            log::error!("GPU device lost ({reason:?}): {message}");
            *lost_flag.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("device lost ({reason:?}): {message}"));
        });

        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(options.max_binding_bytes.unwrap_or(u64::MAX))
            .max(256);
        log::info!(
            "GPU backend on '{}' ({}, {}), storage bindings up to {} bytes",
            info.name,
            info.backend,
            adapter::device_type_name(info.device_type),
            max_binding
        );
        Ok(GpuBackend {
            info,
            limits,
            max_binding,
            poison: options.poison_outputs,
            device,
            queue,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            pool: BufferPool::default(),
            lost,
        })
    }

    /// The adapter's description.
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Milliseconds for one device-to-device copy of `bytes` (rounded down
    /// to whole words and to the largest buffer), and the bytes copied: the
    /// device's memory bandwidth, for `anycore bench`.
    pub fn time_copy(&self, bytes: u64) -> Result<(f64, u64)> {
        let bytes = bytes.min(self.limits.max_buffer_size) & !3;
        let mut exec = Exec::new(self);
        let (src, dst) = (exec.storage(bytes), exec.storage(bytes));
        let ms = exec
            .copy(&src, &dst, bytes)
            .inspect_err(|_| exec.discard())?;
        Ok((ms, bytes))
    }

    /// Elements of `elem_bytes` bytes that fit one storage binding.
    fn binding_elements(&self, elem_bytes: u64) -> usize {
        usize::try_from(self.max_binding / elem_bytes).unwrap_or(usize::MAX)
    }

    /// Workgroups allowed per dispatch dimension.
    fn max_groups(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// The pipeline for a kernel's (only) entry point, specialised with
    /// `constants`; `variant` must identify those constants uniquely.
    fn pipeline(
        &self,
        kernel: Kernel,
        variant: u32,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        pipelines
            .entry((kernel, variant))
            .or_insert_with(|| {
                let shader = kernel.shader();
                let module = self
                    .modules
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(kernel)
                    .or_insert_with(|| {
                        self.device
                            .create_shader_module(wgpu::ShaderModuleDescriptor {
                                label: Some(shader.file),
                                source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                            })
                    })
                    .clone();
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(shader.file),
                        layout: None,
                        module: &module,
                        entry_point: Some(shader.entry_points[0].0),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants,
                            ..Default::default()
                        },
                        cache: None,
                    })
            })
            .clone()
    }
}

impl Backend for GpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn device(&self) -> String {
        format!("{} ({})", self.info.name, self.info.backend)
    }

    fn run(&self, task: &Task) -> Result<Run> {
        if let Some(why) = self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(Error::Gpu(why));
        }
        let start = Instant::now();
        // Error scopes are thread-local in wgpu, so concurrent jobs on other
        // threads do not see each other's errors.
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let mut exec = Exec::new(self);
        let result = match task {
            Task::Axpy(t) => axpy::run(&mut exec, t),
            Task::Reduce(t) => reduce::run(&mut exec, t),
            Task::Matmul(t) => matmul::run(&mut exec, t),
            Task::Mandelbrot(t) => mandelbrot::run(&mut exec, t),
        };
        let scope_error = [internal.pop(), oom.pop(), validation.pop()]
            .into_iter()
            .find_map(pollster::block_on);
        if let Some(e) = scope_error {
            exec.discard();
            return Err(Error::Gpu(e.to_string()));
        }
        let outputs = result.inspect_err(|_| exec.discard())?;
        let mut timings = exec.finish();
        timings.total = start.elapsed().as_secs_f64() * 1e3;
        Ok(Run { outputs, timings })
    }
}
