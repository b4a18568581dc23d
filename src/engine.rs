//! The embeddable engine: the coordinator with its backends opened and its
//! cost model calibrated, behind an async API ([`Engine`]) and a blocking
//! one ([`BlockingEngine`]) for programs without an async runtime.
//!
//! ```
//! use anycore::engine::{BlockingEngine, EngineConfig};
//! use anycore::kernel::{Job, Kernel};
//! use anycore::tensor::Tensor;
//!
//! let engine = BlockingEngine::start(EngineConfig::default())?;
//! let job = Job::new(Kernel::Reduce).input("x", Tensor::from_f32(vec![1.0, 2.0, 3.5]));
//! let report = engine.run(job)?;
//! assert_eq!(report.outputs["out"].as_f32(), Some(&[6.5f32][..]));
//! println!("ran on {} because {}", report.backend, report.placement_reason);
//! # Ok::<(), anycore::Error>(())
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{GpuBackend, GpuOptions};
use crate::backend::{Backend, BackendChoice};
use crate::coordinator::cost::CostModel;
use crate::coordinator::{Coordinator, JobHandle, JobReport, PipelineReport};
use crate::error::{Error, Result};
use crate::kernel::{Job, Task};
use crate::pipeline::{CheckedPipeline, Pipeline};
use crate::tensor::{Handle, Tensor};

/// Where the cost model for `auto` comes from.
#[derive(Clone, Debug)]
pub enum CostModelSource {
    /// Probe the backends at start-up, unless `cache` holds a model for the
    /// same devices; save what was probed there.
    Probe {
        /// The cache file, if any.
        cache: Option<PathBuf>,
    },
    /// Use this model as given (tests, or callers with their own figures).
    Fixed(CostModel),
}

/// How to start an engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// GPU adapter options (software adapters, binding limits).
    pub gpu: GpuOptions,
    /// Open a GPU backend at all (false: CPU only).
    pub use_gpu: bool,
    /// CPU pool threads (`None`: one per core).
    pub cpu_threads: Option<usize>,
    /// Jobs in flight (queued or running) before `submit` waits.
    pub max_in_flight: usize,
    /// The cost model's source.
    pub cost_model: CostModelSource,
}

impl Default for EngineConfig {
    /// GPU options from the environment, every core, 256 jobs in flight,
    /// and a probed cost model cached under [`default_cache_file`].
    fn default() -> Self {
        EngineConfig {
            gpu: GpuOptions::from_env(),
            use_gpu: true,
            cpu_threads: None,
            max_in_flight: 256,
            cost_model: CostModelSource::Probe {
                cache: default_cache_file(),
            },
        }
    }
}

/// `cost-model.json` in the cache folder ([`crate::cache::dir`]).
pub fn default_cache_file() -> Option<PathBuf> {
    Some(crate::cache::dir()?.join("cost-model.json"))
}

/// The cache file's contents: a model and the devices it was measured on.
#[derive(Serialize, Deserialize)]
struct CachedModel {
    devices: String,
    model: CostModel,
}

/// Sets the coordinator's cost model from `source`: as given, from the
/// cache when it was measured on these devices, or by probing (then cached).
fn calibrate(source: CostModelSource, coordinator: &Coordinator) {
    let cache = match source {
        CostModelSource::Fixed(model) => return coordinator.set_cost_model(model),
        // With one backend there is nothing to choose: no probe needed.
        CostModelSource::Probe { .. } if !coordinator.has_gpu() => return,
        CostModelSource::Probe { cache } => cache,
    };
    let devices = format!(
        "gpu: {}; cpu: {}",
        coordinator.gpu_device().unwrap_or("none"),
        coordinator.cpu_device()
    );
    if let Some(path) = &cache {
        let cached = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str::<CachedModel>(&text).ok());
        if let Some(c) = cached.filter(|c| c.devices == devices) {
            log::info!("cost model from {}", path.display());
            return coordinator.set_cost_model(c.model);
        }
    }
    let model = coordinator.probe();
    if let Some(path) = &cache {
        let text = serde_json::to_string_pretty(&CachedModel {
            devices,
            model: model.clone(),
        })
        .expect("model serialises");
        if let Err(e) = crate::cache::write(path, &text) {
            log::warn!("cannot cache the cost model at {}: {e}", path.display());
        }
    }
    coordinator.set_cost_model(model);
}

/// Runs jobs through a coordinator; clone the `Arc` from [`Engine::coordinator`]
/// to share it.
pub struct Engine {
    coordinator: Arc<Coordinator>,
}

impl Engine {
    /// Opens the backends (the GPU's absence is not an error: jobs then run
    /// on the CPU and say why), calibrates the cost model, starts workers.
    pub async fn start(config: EngineConfig) -> Result<Engine> {
        // Opening a device and probing block: keep them off tokio's workers.
        tokio::task::spawn_blocking(move || Engine::start_blocking(config))
            .await
            .map_err(|e| Error::Panicked(e.to_string()))?
    }

    fn start_blocking(config: EngineConfig) -> Result<Engine> {
        let cpu: Arc<dyn Backend> = Arc::new(CpuBackend::new(config.cpu_threads)?);
        let coordinator = if config.use_gpu {
            let options = config.gpu;
            // The device is made on the GPU worker's thread, which owns it.
            let open =
                move || -> Result<Arc<dyn Backend>> { Ok(Arc::new(GpuBackend::new(&options)?)) };
            Coordinator::with_gpu_opener(cpu, open, CostModel::default(), config.max_in_flight)?
        } else {
            let why = "GPU disabled by configuration".to_owned();
            Coordinator::new(cpu, Err(why), CostModel::default(), config.max_in_flight)
        };
        calibrate(config.cost_model, &coordinator);
        Ok(Engine {
            coordinator: Arc::new(coordinator),
        })
    }

    /// The coordinator, for sharing between tasks.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// Runs a job wherever `auto` places it.
    pub async fn run(&self, job: Job) -> Result<JobReport> {
        self.run_on(job, BackendChoice::Auto).await
    }

    /// Runs a job on the chosen backend. Its outputs named in
    /// [`Job::keep`] come back as handles ([`JobReport::kept`]), on the GPU
    /// where it ran there.
    pub async fn run_on(&self, job: Job, choice: BackendChoice) -> Result<JobReport> {
        self.submit(job, choice).await?.wait().await
    }

    /// A handle's data as a tensor in host memory: read back from the GPU
    /// if it is only there (once: the host copy stays with the handle).
    pub async fn read(&self, handle: &Handle) -> Result<Tensor> {
        self.coordinator.read(handle).await
    }

    /// Runs a pipeline wherever `auto` places it.
    pub async fn run_pipeline(&self, pipeline: Pipeline) -> Result<PipelineReport> {
        self.run_pipeline_on(pipeline, BackendChoice::Auto).await
    }

    /// Checks a pipeline as a whole, then runs it on the chosen backend.
    pub async fn run_pipeline_on(
        &self,
        pipeline: Pipeline,
        choice: BackendChoice,
    ) -> Result<PipelineReport> {
        self.coordinator
            .run_pipeline(pipeline.check()?.reserve()?, choice)
            .await
    }

    /// Submits a job, waiting while the engine is full.
    pub async fn submit(&self, job: Job, choice: BackendChoice) -> Result<JobHandle> {
        let keep = job.keep.clone();
        self.coordinator
            .submit_keeping(Task::admitted(job)?.0, keep, choice)
            .await
    }

    /// Stops taking jobs and waits for those in flight.
    pub async fn shutdown(&self) {
        self.coordinator.shutdown().await;
    }
}

/// [`Engine`] for programs without an async runtime: it brings its own.
pub struct BlockingEngine {
    runtime: tokio::runtime::Runtime,
    engine: Engine,
}

impl BlockingEngine {
    /// Starts an engine on a private runtime.
    pub fn start(config: EngineConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("anycore-runtime")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start a tokio runtime: {e}")))?;
        let engine = runtime.block_on(Engine::start(config))?;
        Ok(BlockingEngine { runtime, engine })
    }

    /// Runs a job wherever `auto` places it, blocking until it is done.
    pub fn run(&self, job: Job) -> Result<JobReport> {
        self.runtime.block_on(self.engine.run(job))
    }

    /// Runs a job on the chosen backend, blocking until it is done.
    pub fn run_on(&self, job: Job, choice: BackendChoice) -> Result<JobReport> {
        self.runtime.block_on(self.engine.run_on(job, choice))
    }

    /// A handle's data as a tensor in host memory, blocking until it is
    /// read ([`Engine::read`]).
    pub fn read(&self, handle: &Handle) -> Result<Tensor> {
        self.runtime.block_on(self.engine.read(handle))
    }

    /// Runs a pipeline wherever `auto` places it, blocking until it is done.
    pub fn run_pipeline(&self, pipeline: Pipeline) -> Result<PipelineReport> {
        self.run_pipeline_on(pipeline, BackendChoice::Auto)
    }

    /// Runs a pipeline on the chosen backend, blocking until it is done.
    pub fn run_pipeline_on(
        &self,
        pipeline: Pipeline,
        choice: BackendChoice,
    ) -> Result<PipelineReport> {
        self.runtime
            .block_on(self.engine.run_pipeline_on(pipeline, choice))
    }

    /// Runs a checked pipeline on the chosen backend, blocking until it is
    /// done.
    pub fn run_checked_pipeline(
        &self,
        pipeline: CheckedPipeline,
        choice: BackendChoice,
    ) -> Result<PipelineReport> {
        self.runtime
            .block_on(self.engine.coordinator().run_pipeline(pipeline, choice))
    }

    /// Runs a checked task on the chosen backend, blocking until it is done.
    pub fn run_task(&self, task: Task, choice: BackendChoice) -> Result<JobReport> {
        self.runtime
            .block_on(self.engine.coordinator().run(task, choice))
    }

    /// The async engine inside.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Runs pipelines from the calling thread, blocking until each is done
/// (video frames' filters, chunks of a stream): a [`BlockingEngine`], or an [`Engine`] driven through
/// its runtime's handle ([`OnRuntime`]).
pub trait Runner: Sync {
    /// Runs a pipeline on `choice`'s backend.
    fn run_pipeline(&self, pipeline: Pipeline, choice: BackendChoice) -> Result<PipelineReport>;
}

impl Runner for BlockingEngine {
    fn run_pipeline(&self, pipeline: Pipeline, choice: BackendChoice) -> Result<PipelineReport> {
        self.run_pipeline_on(pipeline, choice)
    }
}

/// An [`Engine`] driven from threads that are not its runtime's workers
/// (`tokio::task::spawn_blocking`'s): the service's video jobs, `batch`'s
/// streamed lines.
pub struct OnRuntime<'a> {
    /// The engine.
    pub engine: &'a Engine,
    /// Its runtime.
    pub runtime: tokio::runtime::Handle,
}

impl Runner for OnRuntime<'_> {
    fn run_pipeline(&self, pipeline: Pipeline, choice: BackendChoice) -> Result<PipelineReport> {
        self.runtime
            .block_on(self.engine.run_pipeline_on(pipeline, choice))
    }
}

impl Drop for BlockingEngine {
    fn drop(&mut self) {
        self.runtime.block_on(self.engine.shutdown());
    }
}
