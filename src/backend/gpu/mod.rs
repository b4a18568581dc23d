//! The GPU backend: wgpu running the WGSL shaders in `shaders/`.
//!
//! One [`GpuBackend`] owns one device and queue. Shader modules and
//! pipelines are compiled once and cached; buffers come from a pool and go
//! back to it; data goes up and comes home through reused, pipelined
//! staging rings ([`staging`]), and kernels are timed on the device's clock
//! where it has one ([`timer`]). Work larger than one storage binding
//! (128 MiB on llvmpipe) is split into chunks; one-dimensional kernels run
//! capped grids with grid-stride loops. Every run is wrapped in error scopes, so a validation
//! error, an out-of-memory or a lost device becomes an [`Error::Gpu`] for
//! that job instead of a panic. A lost device stays lost: every later job
//! fails with its reason ([`Backend::lost`]), and the coordinator stops
//! placing work here. [`faults`] injects such failures for tests.
//!
//! Per kernel, the host side (buffers, chunking, dispatches) lives in a
//! module named after it, with a `run(exec, task)`; the kernel catalog
//! declares those modules here and routes each task to its own, so a
//! kernel without one fails to compile. [`exec`] holds what they share.

pub mod adapter;
mod bands;
mod copy;
mod exec;
pub mod faults;
mod grid;
mod pool;
mod resident;
mod staging;
mod timer;
pub mod tune;
mod user;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use self::exec::Exec;
use self::faults::Faults;
use self::pool::BufferPool;
use self::resident::Residency;
use super::{Backend, BackendKind, Fetched, Run};
use crate::error::{Error, Result};
use crate::kernel::{Kernel, Outputs, ShaderInfo, Task};
use crate::tensor::Handle;

/// Declares each kernel's host-side module and routes tasks to them.
macro_rules! gpu_encodings {
    ($($variant:ident: $module:ident::$task:ident,)*) => {
        $(mod $module;)*

        /// Runs a task's passes through its kernel's own module.
        fn encode(exec: &mut Exec, task: &Task) -> Result<Outputs> {
            match task {
                $(Task::$variant(t) => $module::run(exec, t),)*
                Task::User(t) => user::run(exec, t),
            }
        }
    };
}
crate::kernel::catalog!(gpu_encodings);

/// Shaders the backend runs that are not catalog kernels (the copy behind
/// `anycore bench`'s GPU bandwidth baseline), for the shader tests.
pub const UTILITY_SHADERS: &[&ShaderInfo] = &[&copy::SHADER];

/// Pipelines of written shaders ([`GpuBackend::generated_pipeline`]) kept
/// at most; past it the cache starts again.
const MAX_GENERATED: usize = 256;

/// How to open the GPU backend.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Accept a software adapter (llvmpipe, SwiftShader, WARP) when no
    /// hardware one exists.
    pub allow_software: bool,
    /// Choose a software adapter, and only one (to run the shaders on the
    /// CPU beside a hardware GPU, as [`crate::backend::compare`] does).
    pub software_only: bool,
    /// Treat storage bindings as at most this many bytes (below the device's
    /// own limit). Tests use it to exercise chunking on small inputs.
    pub max_binding_bytes: Option<u64>,
    /// Fill fresh output buffers with 0xFF bytes before kernels run, so an
    /// element a kernel forgets to write shows as NaN or `u32::MAX`. On in
    /// debug builds (tests), off in release builds (it costs a write).
    pub poison_outputs: bool,
    /// Keep naga's runtime checks (index clamps, loop bounds) and the
    /// zeroing of workgroup memory in every shader, also those marked
    /// trusted. Off by default (the checks cost 30-50 % in published
    /// matmuls); `ANYCORE_GPU_CHECKED=1` turns it on, and the tests run
    /// both ways.
    pub runtime_checks: bool,
    /// Bytes per staging buffer for uploads and readbacks (default
    /// 16 MiB; `ANYCORE_STAGING_MIB` sets it in MiB): a tuning knob for
    /// measuring transfers.
    pub staging_chunk_bytes: Option<u64>,
    /// Workgroups in the grid of the memory-bound kernels (`axpy`,
    /// `reduce`'s wide pass), whose grid-stride loops cover any length
    /// (default: each kernel's own; `ANYCORE_STREAM_GROUPS` sets it): a
    /// tuning knob for measuring them.
    pub stream_groups: Option<u32>,
    /// Bytes of device memory that tensors kept between jobs may hold
    /// (handles, pipelines' intermediates); past it the least recently
    /// used spill to host memory. Default: half the largest buffer the
    /// adapter reports (wgpu reports no total), between 256 MiB and
    /// 16 GiB; `ANYCORE_GPU_BUDGET_MIB` sets it in MiB.
    pub memory_budget_bytes: Option<u64>,
    /// Faults to inject, for tests: `lost@N`, `oom@N`, `panic@N`,
    /// `slow=MS`, comma-separated (see [`faults`]; `ANYCORE_GPU_FAULTS`
    /// sets it). A bad spec is an error when the backend opens.
    pub faults: Option<String>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            allow_software: false,
            software_only: false,
            max_binding_bytes: None,
            poison_outputs: cfg!(debug_assertions),
            runtime_checks: checks_forced_by_env(),
            staging_chunk_bytes: None,
            stream_groups: None,
            memory_budget_bytes: None,
            faults: None,
        }
    }
}

impl GpuOptions {
    /// The defaults, with software adapters allowed when
    /// `ANYCORE_ALLOW_SOFTWARE_GPU=1` is set.
    pub fn from_env() -> Self {
        GpuOptions {
            allow_software: adapter::software_allowed_by_env(),
            staging_chunk_bytes: std::env::var("ANYCORE_STAGING_MIB")
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .and_then(|mib| mib.checked_mul(1 << 20)),
            stream_groups: std::env::var("ANYCORE_STREAM_GROUPS")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            memory_budget_bytes: std::env::var("ANYCORE_GPU_BUDGET_MIB")
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .and_then(|mib| mib.checked_mul(1 << 20)),
            faults: std::env::var(faults::ENV).ok(),
            ..GpuOptions::default()
        }
    }
}

/// Whether `ANYCORE_GPU_CHECKED` asks to keep the shaders' runtime checks.
pub fn checks_forced_by_env() -> bool {
    std::env::var("ANYCORE_GPU_CHECKED")
        .map(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
        .unwrap_or(false)
}

/// Runs tasks on one wgpu device.
pub struct GpuBackend {
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    max_binding: u64,
    poison: bool,
    runtime_checks: bool,
    stream_groups: Option<u32>,
    device: wgpu::Device,
    queue: wgpu::Queue,
    modules: Mutex<HashMap<Kernel, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(Kernel, &'static str, u32), wgpu::ComputePipeline>>,
    /// Pipelines of sources written per job (`map`'s expressions), by
    /// source; at most [`MAX_GENERATED`].
    generated: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    /// The matmul variant per shape class: forced, cached or tuned.
    matmul_tuner: tune::Tuner,
    pool: Arc<BufferPool>,
    residency: Residency,
    staging: staging::Staging,
    /// Free pass timers; `None` when the adapter has no timestamp queries.
    timers: Option<Mutex<Vec<timer::Kit>>>,
    timestamp_period: f32,
    /// Why the device was lost, once it was (wgpu's callback, or an
    /// injected fault): every later job fails.
    lost: Arc<OnceLock<String>>,
    /// Faults to inject (tests only; `None` costs a branch per job).
    faults: Option<Faults>,
    /// Inside [`GpuBackend::batched`]: compute passes are recorded into
    /// `batch` instead of being submitted one call at a time.
    batching: std::sync::atomic::AtomicBool,
    batch: Mutex<Option<wgpu::CommandEncoder>>,
    /// Handles to each tensor of the batch that its caller keeps, beyond
    /// its readers (a copy of a pipeline kept to re-run it on the CPU).
    spare_holders: std::sync::atomic::AtomicUsize,
}

impl GpuBackend {
    /// Opens the best usable adapter. With none, returns [`Error::NoGpu`]
    /// saying why (and how to get one).
    pub fn new(options: &GpuOptions) -> Result<Self> {
        let faults = match &options.faults {
            Some(spec) => Faults::parse(spec)?,
            None => None,
        };
        let instance = adapter::instance();
        let allow = if options.software_only {
            adapter::Allow::Software
        } else {
            adapter::Allow::software(options.allow_software)
        };
        let adapter =
            adapter::choose(adapter::enumerate(&instance), allow).map_err(Error::NoGpu)?;
        let info = adapter.get_info();
        // Ask for everything the adapter offers: the defaults cap storage
        // bindings at 128 MiB and buffers at 256 MiB, far below real GPUs.
        let limits = adapter.limits();
        // Timestamp queries time kernels on the device's own clock.
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let required_features = if timestamps {
            wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("anycore"),
            required_limits: limits.clone(),
            required_features,
            ..Default::default()
        }))
        .map_err(|e| Error::NoGpu(format!("adapter '{}' refused a device: {e}", info.name)))?;

        // Errors outside a job's error scopes are logged, not panicked on.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            log::error!("uncaptured wgpu error: {e}");
        }));
        let lost = Arc::new(OnceLock::new());
        let lost_flag = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            // `Destroyed`: this backend dropping its device, at the end.
            if reason != wgpu::DeviceLostReason::Destroyed {
                log::error!("GPU device lost ({reason:?}): {message}");
            }
            let _ = lost_flag.set(format!("{message} ({reason:?})"));
        });

        let timestamp_period = queue.get_timestamp_period();
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
        let matmul_tuner = tune::Tuner::new(&info);
        let budget = options
            .memory_budget_bytes
            .unwrap_or_else(|| (limits.max_buffer_size / 2).clamp(256 << 20, 16 << 30));
        Ok(GpuBackend {
            info,
            limits,
            max_binding,
            poison: options.poison_outputs,
            runtime_checks: options.runtime_checks,
            stream_groups: options.stream_groups,
            device,
            queue,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            generated: Mutex::default(),
            matmul_tuner,
            // Idle pooled buffers stay within the budget too.
            pool: Arc::new(BufferPool::with_limit(
                budget.min(BufferPool::MAX_POOLED_BYTES),
            )),
            residency: Residency::new(budget),
            staging: staging::Staging::new(options.staging_chunk_bytes.unwrap_or(staging::CHUNK)),
            timers: timestamps.then(Mutex::default),
            timestamp_period,
            lost,
            faults,
            batching: Default::default(),
            batch: Mutex::default(),
            spare_holders: Default::default(),
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

    /// How this backend picks `matmul`'s shader variant, and its choices.
    pub fn matmul_tuner(&self) -> &tune::Tuner {
        &self.matmul_tuner
    }

    /// The device's memory bandwidth, for `anycore bench`: milliseconds per
    /// device-to-device copy of `data` (cut to whole vec4 and to one
    /// binding) by `copy_buffer_to_buffer` and by a WGSL copy kernel with
    /// the memory-bound kernels' access pattern, each the mean over a
    /// batch of 8 in one submission (the kernel's on the device's clock
    /// where it has one), and the kernel's time again on buffers cleared
    /// to zero. The caller passes random bytes: a GPU may compress memory,
    /// so a copy of zeros (which fresh buffers hold) can move faster than
    /// any real data would; the zeros' figure says whether this one does.
    pub fn time_copies(&self, data: &[u8]) -> Result<CopyTimes> {
        let bytes = (data.len() as u64)
            .min(self.max_binding)
            .min(self.limits.max_buffer_size)
            & !15;
        // `hold` keeps the two buffers out of the pool while each
        // measurement runs on an `Exec` of its own (its own timings).
        let mut hold = Exec::new(self);
        let (src, dst) = (hold.storage(bytes), hold.storage(bytes));
        let measure = |hold: &mut Exec| -> Result<CopyTimes> {
            hold.upload(&[(&src, &data[..bytes as usize])])?;
            hold.clear(&dst, bytes);
            let kernel_ms = copy::time(self, &src, &dst, bytes)?;
            // A copy that moved nothing would flatter every kernel held
            // against it: the ends of the buffer it first wrote (cleared
            // before) must hold the data.
            let sample = bytes.min(64 << 10);
            for at in [0, bytes - sample] {
                let mut back = vec![0u8; sample as usize];
                hold.download_into(&dst, at, &mut back)?;
                if back[..] != data[at as usize..(at + sample) as usize] {
                    return Err(Error::Gpu(format!(
                        "the copy kernel did not copy bytes {at}..{} of {bytes}",
                        at + sample
                    )));
                }
            }
            let mut exec = Exec::new(self);
            let buffer_ms = exec
                .copy(&src, &dst, bytes, 8)
                .inspect_err(|_| exec.discard())?;
            drop(exec);
            hold.clear(&src, bytes);
            hold.clear(&dst, bytes);
            let kernel_zeros_ms = copy::time(self, &src, &dst, bytes)?;
            Ok(CopyTimes {
                bytes,
                buffer_ms,
                kernel_ms,
                kernel_zeros_ms,
            })
        };
        let times = measure(&mut hold);
        if times.is_err() {
            hold.discard();
        }
        times
    }

    /// Whether kernel times come from the device's clock (timestamp
    /// queries) rather than the host's wait.
    pub fn has_device_timer(&self) -> bool {
        self.timers.is_some()
    }

    /// Milliseconds to upload `bytes` from host memory into a device buffer
    /// and to download them back, through the path every job uses; `bytes`
    /// is rounded down to whole words and to the largest buffer. For
    /// `anycore bench`'s `gpu_upload_gbps` and `gpu_download_gbps`.
    pub fn time_transfers(&self, bytes: u64) -> Result<(f64, f64, u64)> {
        let bytes = bytes.min(self.limits.max_buffer_size) & !3;
        let host: Vec<u8> = (0..bytes)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut back = vec![0u8; host.len()];
        let mut exec = Exec::new(self);
        let buf = exec.storage(bytes);
        let timed = exec
            .upload(&[(&buf, &host)])
            .and_then(|()| exec.download_into(&buf, 0, &mut back));
        timed.inspect_err(|_| exec.discard())?;
        if back != host {
            exec.discard();
            return Err(Error::Gpu("a transfer round trip changed the data".into()));
        }
        let (t, _) = exec.finish();
        Ok((t.upload, t.download, bytes))
    }

    /// Handles to each tensor that do not mean another reader (see
    /// `spare_holders`).
    fn spare_holders(&self) -> usize {
        self.spare_holders
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`Error::Gpu`] once the device is lost: nothing runs on it, and
    /// nothing kept on it comes back.
    fn check_lost(&self) -> Result<()> {
        match self.lost.get() {
            Some(why) => Err(Error::Gpu(format!("the GPU device was lost: {why}"))),
            None => Ok(()),
        }
    }

    /// Whether compute passes are being recorded into a batch.
    fn batching(&self) -> bool {
        self.batching.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Submits the batch's passes recorded so far, if any (true then).
    fn submit_batch(&self) -> bool {
        match lock(&self.batch).take() {
            Some(encoder) => {
                self.queue.submit([encoder.finish()]);
                true
            }
            None => false,
        }
    }

    /// Elements of `elem_bytes` bytes that fit one storage binding.
    fn binding_elements(&self, elem_bytes: u64) -> usize {
        usize::try_from(self.max_binding / elem_bytes).unwrap_or(usize::MAX)
    }

    /// 4-byte elements per chunk of a one-dimensional kernel that reads
    /// whole vec4: as many as one binding holds, a multiple of what the
    /// storage offset alignment needs, so that each chunk of a resident
    /// buffer can be bound in place.
    fn chunk_elements(&self) -> usize {
        let align = (self.limits.min_storage_buffer_offset_alignment as usize / 4).max(4);
        (self.binding_elements(16) * 4 / align * align).max(align)
    }

    /// Bytes of device memory kept tensors may hold, and hold now.
    pub fn memory_budget(&self) -> (u64, u64) {
        (self.residency.budget(), self.residency.used())
    }

    /// Workgroups for a memory-bound kernel's grid-stride loop: `default`
    /// unless the options say otherwise, within the device's limit.
    fn stream_groups(&self, default: u32) -> u32 {
        self.stream_groups
            .unwrap_or(default)
            .clamp(1, self.max_groups())
    }

    /// Workgroups allowed per dispatch dimension.
    fn max_groups(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// The pipeline for a kernel's first (usually only) entry point,
    /// specialised with `constants`; `variant` must identify those
    /// constants uniquely.
    fn pipeline(
        &self,
        kernel: Kernel,
        variant: u32,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        self.pipeline_at(
            kernel,
            kernel.shader().entry_points[0].0,
            variant,
            constants,
        )
    }

    /// The pipeline for the entry point `entry_point` of a kernel's shader
    /// (one of its `ShaderInfo::entry_points`), specialised with
    /// `constants`; `variant` must identify those constants uniquely.
    fn pipeline_at(
        &self,
        kernel: Kernel,
        entry_point: &'static str,
        variant: u32,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        let mut pipelines = lock(&self.pipelines);
        pipelines
            .entry((kernel, entry_point, variant))
            .or_insert_with(|| {
                let shader = kernel.shader();
                let module = lock(&self.modules)
                    .entry(kernel)
                    .or_insert_with(|| self.module(shader))
                    .clone();
                self.compile(shader, &module, entry_point, constants)
            })
            .clone()
    }

    /// The pipeline of the first entry point of `source`, a shader written
    /// from `template` for one job (which says whether it is trusted).
    /// naga validates each new source first, so a fault in the writing is
    /// an error for the job, not one for the device. Cached by source, a
    /// bounded number at once (a service may meet endless expressions).
    fn generated_pipeline(
        &self,
        template: &ShaderInfo,
        source: &str,
    ) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = lock(&self.generated).get(source) {
            return Ok(p.clone());
        }
        let invalid = |e: String| {
            Error::Internal(format!(
                "the WGSL written from {} does not validate: {e}",
                template.file
            ))
        };
        let module = wgpu::naga::front::wgsl::parse_str(source)
            .map_err(|e| invalid(e.emit_to_string(source)))?;
        wgpu::naga::valid::Validator::new(
            wgpu::naga::valid::ValidationFlags::all(),
            wgpu::naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .map_err(|e| invalid(e.emit_to_string(source)))?;
        let shader = ShaderInfo {
            source: "",
            ..*template
        };
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(template.file),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = self.create_module(&shader, desc);
        let pipeline = self.compile(&shader, &module, template.entry_points[0].0, &[]);
        let mut generated = lock(&self.generated);
        if generated.len() >= MAX_GENERATED {
            generated.clear();
        }
        generated.insert(source.to_owned(), pipeline.clone());
        Ok(pipeline)
    }

    /// The pipeline of a kernel the program registered: its module keeps
    /// naga's runtime checks (a program's WGSL is never trusted), and its
    /// layout is written from the signature (`inputs` read-only storage,
    /// `outputs` read-write, then the uniform), so that a binding the entry
    /// point leaves unused is still bound. naga checked the source at
    /// registration, but a device may still refuse it (its limits): that is
    /// an error for the job, and the pipeline is not kept.
    fn user_pipeline(
        &self,
        kernel: Kernel,
        inputs: usize,
        outputs: usize,
    ) -> Result<wgpu::ComputePipeline> {
        let shader = kernel.shader();
        let entry = shader.entry_points[0].0;
        if let Some(p) = lock(&self.pipelines).get(&(kernel, entry, 0)) {
            return Ok(p.clone());
        }
        let buffer = |ty| wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        };
        let storage = |read_only| buffer(wgpu::BufferBindingType::Storage { read_only });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..inputs)
            .map(|_| storage(true))
            .chain((0..outputs).map(|_| storage(false)))
            .chain([buffer(wgpu::BufferBindingType::Uniform)])
            .enumerate()
            .map(|(i, ty)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty,
                count: None,
            })
            .collect();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let group = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(shader.file),
                entries: &entries,
            });
        let layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(shader.file),
                bind_group_layouts: &[Some(&group)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(shader.file),
                layout: Some(&layout),
                module: &self.module(shader),
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "{kernel}: the device refused entry point '{entry}' of its WGSL: {e}"
            )));
        }
        lock(&self.pipelines).insert((kernel, entry, 0), pipeline.clone());
        Ok(pipeline)
    }

    /// Whether `shader` runs without naga's runtime checks here.
    fn trusted(&self, shader: &ShaderInfo) -> bool {
        shader.trusted && !self.runtime_checks
    }

    /// `shader`'s module, unchecked where it is trusted.
    fn module(&self, shader: &ShaderInfo) -> wgpu::ShaderModule {
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(shader.file),
            source: wgpu::ShaderSource::Wgsl(shader.source.into()),
        };
        self.create_module(shader, desc)
    }

    /// The module `desc` describes, unchecked where `shader` is trusted.
    fn create_module(
        &self,
        shader: &ShaderInfo,
        desc: wgpu::ShaderModuleDescriptor,
    ) -> wgpu::ShaderModule {
        if self.trusted(shader) {
            // SAFETY: a trusted shader indexes only within its bindings and
            // loops a bounded number of times (`ShaderInfo::trusted`); the
            // tests run every trusted shader with and without the checks.
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            self.device.create_shader_module(desc)
        }
    }

    /// A pipeline for `entry_point` of `shader`'s `module`.
    fn compile(
        &self,
        shader: &ShaderInfo,
        module: &wgpu::ShaderModule,
        entry_point: &str,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry_point),
                layout: None,
                module,
                entry_point: Some(entry_point),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    // Trusted shaders write workgroup memory before reading
                    // it; zeroing it costs a pass per workgroup.
                    zero_initialize_workgroup_memory: !self.trusted(shader),
                },
                cache: None,
            })
    }
}

/// Locks a mutex, also one a panicking thread left poisoned (the data
/// behind every lock here stays consistent between statements).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Backend for GpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn device(&self) -> String {
        format!("{} ({})", self.info.name, self.info.backend)
    }

    fn run_keeping(&self, task: &Task, keep: &[String]) -> Result<Run> {
        self.run_repeating(task, keep, 1)
    }

    fn begin_job(&self) -> Result<()> {
        if let Some(faults) = &self.faults {
            faults.before_job(&self.lost)?;
        }
        self.check_lost()
    }

    fn lost(&self) -> Option<String> {
        self.lost.get().cloned()
    }

    /// Through the staging path every job uses, 16 MiB each way (the best
    /// of three).
    fn transfer_ms_per_byte(&self) -> Option<(f64, f64)> {
        let mut best: Option<(f64, f64)> = None;
        for _ in 0..3 {
            let (up, down, bytes) = self.time_transfers(16 << 20).ok()?;
            let (up, down) = (up / bytes as f64, down / bytes as f64);
            best = Some(best.map_or((up, down), |(u, d)| (u.min(up), d.min(down))));
        }
        best
    }

    /// Records every dispatch `run` makes into as few submissions as its
    /// transfers allow: passes are recorded, not submitted, until a
    /// transfer needs them done (an upload into a reused buffer, a
    /// download) or `run` ends; then the rest is submitted and waited for.
    /// A pipeline's steps on data kept on the device become one submission.
    /// (Inside, a step's `compute` time is its recording; the device's time
    /// lands on the transfer that waits for it, or on this last wait.)
    fn batched(&self, spare_holders: usize, run: &mut dyn FnMut()) -> Result<Fetched> {
        use std::sync::atomic::Ordering::Relaxed;
        /// Ends the batch also when `run` panics (dropping what it recorded).
        struct Batching<'a>(&'a GpuBackend);
        impl Drop for Batching<'_> {
            fn drop(&mut self) {
                self.0.batching.store(false, Relaxed);
                self.0.spare_holders.store(0, Relaxed);
                if std::thread::panicking() {
                    lock(&self.0.batch).take();
                }
            }
        }
        // Errors in recorded passes surface when the batch is finished,
        // which may be in a transfer outside any step's scope: these
        // scopes, around the whole batch, catch them.
        let scopes = [
            self.device.push_error_scope(wgpu::ErrorFilter::Validation),
            self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
            self.device.push_error_scope(wgpu::ErrorFilter::Internal),
        ];
        self.batching.store(true, Relaxed);
        self.spare_holders.store(spare_holders, Relaxed);
        let guard = Batching(self);
        run();
        drop(guard);
        let start = Instant::now();
        let submitted = self.submit_batch();
        let waited = self
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")));
        if let Some(e) = scopes
            .into_iter()
            .rev()
            .find_map(|s| pollster::block_on(s.pop()))
        {
            return Err(Error::Gpu(e.to_string()));
        }
        waited?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(Fetched {
            ms,
            compute_ms: ms,
            traffic: super::Traffic {
                submissions: u64::from(submitted),
                ..Default::default()
            },
            ..Fetched::default()
        })
    }

    fn fetch(&self, handles: &[Handle]) -> Result<Fetched> {
        self.check_lost()?;
        let start = Instant::now();
        let mut exec = Exec::new(self);
        for h in handles {
            exec.host(h).inspect_err(|_| exec.discard())?;
        }
        let (timings, traffic) = exec.finish();
        Ok(Fetched {
            ms: start.elapsed().as_secs_f64() * 1e3,
            download_ms: timings.download,
            compute_ms: timings.compute,
            traffic,
        })
    }
}

/// What [`GpuBackend::time_copies`] measured.
#[derive(Clone, Copy, Debug)]
pub struct CopyTimes {
    /// Bytes per copy.
    pub bytes: u64,
    /// Milliseconds per `copy_buffer_to_buffer` of the data.
    pub buffer_ms: f64,
    /// Milliseconds per copy of the data by the WGSL copy kernel.
    pub kernel_ms: f64,
    /// Milliseconds per copy by the same kernel of buffers cleared to zero.
    pub kernel_zeros_ms: f64,
}

impl Drop for GpuBackend {
    /// Brings every tensor kept on the device home before the device goes
    /// (on the worker's thread, which made it): a handle a program still
    /// holds stays readable, and no buffer outlives its device on another
    /// thread.
    fn drop(&mut self) {
        let live = self.residency.all();
        if live.is_empty() {
            return;
        }
        let mut exec = Exec::new(self);
        for h in &live {
            if let Err(e) = exec.host(h) {
                log::error!(
                    "a kept tensor ({}) is lost with the GPU: {e}",
                    h.spec().describe()
                );
            }
            self.residency.evict(h);
        }
        exec.discard();
    }
}

impl GpuBackend {
    /// Milliseconds per run of `task`'s kernels when they run `repeats`
    /// times back to back on data already on the device (one upload, one
    /// compute pass holding every repetition, one download; the device's
    /// clock where it has one): what the kernels do on a busy GPU, beside
    /// the single dispatch a job's run times after its uploads, when the
    /// GPU may have idled and dropped its clocks. For benchmarks: the
    /// outputs are discarded (`axpy` would have applied itself `repeats`
    /// times).
    pub fn time_back_to_back(&self, task: &Task, repeats: u32) -> Result<f64> {
        let run = self.run_repeating(task, &[], repeats)?;
        Ok(run.timings.kernel_device.unwrap_or(run.timings.compute))
    }

    fn run_repeating(&self, task: &Task, keep: &[String], repeats: u32) -> Result<Run> {
        self.check_lost()?;
        let start = Instant::now();
        // Error scopes are thread-local in wgpu, so concurrent jobs on other
        // threads do not see each other's errors.
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let mut exec = Exec::new(self);
        exec.repeat_compute(repeats);
        exec.keep_outputs(keep);
        let result = encode(&mut exec, task);
        let scope_error = [internal.pop(), oom.pop(), validation.pop()]
            .into_iter()
            .find_map(pollster::block_on);
        if let Some(e) = scope_error {
            exec.discard();
            return Err(Error::Gpu(e.to_string()));
        }
        let outputs = result.inspect_err(|_| exec.discard())?;
        let (kept, note) = exec.take_kept();
        let (mut timings, traffic) = exec.finish();
        timings.total = start.elapsed().as_secs_f64() * 1e3;
        Ok(Run::keeping(outputs, kept, keep, timings, traffic).with_note(note))
    }
}
