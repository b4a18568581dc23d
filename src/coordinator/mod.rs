//! The coordinator: takes jobs from many tasks at once and places each on
//! the GPU or the CPU.
//!
//! - A semaphore bounds the jobs in flight (queued or running): [`submit`]
//!   waits for room, [`try_submit`] answers [`Error::Busy`] at once.
//! - Each backend has a worker thread (see `worker`) fed by a queue; both
//!   run at the same time. Results come back through oneshot channels, so
//!   no tokio worker ever blocks.
//! - Placement: `gpu` and `cpu` are obeyed; `auto` predicts each job's
//!   completion on each backend — its run time from the [`cost`] model plus
//!   the work already queued there — and takes the earlier.
//! - A GPU failure re-runs the job on the CPU and says so; a panic fails
//!   only its job. Once the GPU's device is lost, the GPU is unavailable:
//!   `auto` places on the CPU saying why, `gpu` is refused, and work
//!   already queued there re-runs on the CPU.
//! - [`shutdown`] stops taking jobs, waits for those in flight, then
//!   stops the workers.
//!
//! [`submit`]: Coordinator::submit
//! [`try_submit`]: Coordinator::try_submit
//! [`shutdown`]: Coordinator::shutdown

pub mod cost;
pub mod probe;
pub mod spec;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use std::collections::BTreeMap;

use self::cost::CostModel;
use self::worker::{Item, Work, WorkerHandle};
use crate::backend::{Backend, BackendChoice, BackendKind, Fetched, Timings, Traffic};
use crate::error::{Error, Result};
use crate::kernel::{Kernel, Outputs, Task};
use crate::pipeline::{CheckedPipeline, StepRun};
use crate::tensor::{Handle, Tensor};

/// A finished job: where it ran, why, how long it took, and its outputs.
#[derive(Debug)]
pub struct JobReport {
    /// The kernel.
    pub kernel: Kernel,
    /// Where it ran.
    pub backend: BackendKind,
    /// The device's name.
    pub device: String,
    /// Why there.
    pub placement_reason: String,
    /// Time per phase, the wait in the queue included.
    pub timings: Timings,
    /// What moved between host and device.
    pub traffic: Traffic,
    /// Output tensors by name, brought home.
    pub outputs: Outputs,
    /// The outputs the job kept ([`crate::kernel::Job::keep`]), as handles:
    /// on the GPU where it ran there.
    pub kept: BTreeMap<String, Handle>,
}

/// A finished pipeline: where it ran (all of it, on one backend), why, how
/// long each phase and each step took, and the outputs asked for.
#[derive(Debug)]
pub struct PipelineReport {
    /// Where it ran.
    pub backend: BackendKind,
    /// The device's name.
    pub device: String,
    /// Why there.
    pub placement_reason: String,
    /// Time per phase over all steps, the wait in the queue included.
    pub timings: Timings,
    /// What moved between host and device, over all steps.
    pub traffic: Traffic,
    /// Each step, in order.
    pub steps: Vec<StepRun>,
    /// The outputs asked for, by the names they were asked under.
    pub outputs: Outputs,
    /// The outputs kept as handles ([`crate::pipeline::Pipeline::keep`]).
    pub kept: BTreeMap<String, Handle>,
}

/// Submitted work (a job: [`JobHandle`]; a pipeline: [`PipelineHandle`]):
/// await its result, see whether it has started, or cancel it.
#[derive(Debug)]
pub struct Submitted<R> {
    reply: oneshot::Receiver<Result<R>>,
    control: Arc<Control>,
}

/// A submitted job.
pub type JobHandle = Submitted<JobReport>;

/// A submitted pipeline.
pub type PipelineHandle = Submitted<PipelineReport>;

impl<R> Submitted<R> {
    /// Waits for the result.
    pub async fn wait(self) -> Result<R> {
        self.reply.await.unwrap_or(Err(Error::ShuttingDown))
    }

    /// Cancels the work: if it has not started, it never does; if it is
    /// running, it stops at its kernel's next look (between rows, panels,
    /// chunks, dispatches or pipeline steps) and its results are thrown
    /// away. Either way it answers [`Error::Cancelled`], unless it had
    /// already finished.
    pub fn cancel(&self) {
        self.control.cancel();
    }

    /// What can be seen and done of the work once this handle is gone.
    pub fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }
}

/// Submitted work's state and its cancellation, shared between the
/// caller and the worker that runs it.
#[derive(Debug, Default)]
pub struct Control {
    /// Watched by the kernels while the work runs ([`crate::kernel::stop`]).
    stop: Arc<AtomicBool>,
    started: AtomicBool,
}

impl Control {
    /// Asks the work to stop (see [`Submitted::cancel`]).
    pub fn cancel(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether the work was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Whether a worker has started the work (it may have finished since).
    pub fn has_started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Marks the work started, and watches its flag on this thread while
    /// the guard lives.
    pub(crate) fn start(&self) -> crate::kernel::stop::Watching {
        self.started.store(true, Ordering::Relaxed);
        crate::kernel::stop::watch(Arc::clone(&self.stop))
    }
}

/// Opens a backend on its worker's thread.
type Opener = Box<dyn FnOnce() -> Result<Arc<dyn Backend>> + Send>;

/// Places and runs jobs; cheap to share behind an `Arc`.
pub struct Coordinator {
    permits: Arc<Semaphore>,
    capacity: u32,
    closed: AtomicBool,
    model: Arc<Mutex<CostModel>>,
    gpu: Option<WorkerHandle>,
    cpu: WorkerHandle,
    /// Why there is no GPU worker, for `auto`'s placement reason.
    no_gpu_reason: String,
    /// Worker threads, GPU first, joined when the coordinator stops.
    threads: Mutex<Vec<(WorkerHandle, JoinHandle<()>)>>,
}

impl Coordinator {
    /// Starts workers for the backends. `gpu` is `Err(reason)` when there is
    /// no GPU backend; `capacity` bounds the jobs in flight. The worker
    /// threads end at [`shutdown`](Coordinator::shutdown) or when the
    /// coordinator is dropped, after the jobs already queued.
    pub fn new(
        cpu: Arc<dyn Backend>,
        gpu: std::result::Result<Arc<dyn Backend>, String>,
        model: CostModel,
        capacity: usize,
    ) -> Self {
        let open_gpu = gpu.map(|g| Box::new(move || Ok(g)) as Opener);
        Coordinator::start(cpu, open_gpu, model, capacity)
            .expect("opening a backend that is already open cannot fail")
    }

    /// Like [`Coordinator::new`], but the GPU backend is opened by `open`
    /// on the GPU worker's own thread, so the device lives and dies there.
    /// [`Error::NoGpu`] from `open` leaves a coordinator without a GPU;
    /// other errors are returned.
    pub fn with_gpu_opener(
        cpu: Arc<dyn Backend>,
        open: impl FnOnce() -> Result<Arc<dyn Backend>> + Send + 'static,
        model: CostModel,
        capacity: usize,
    ) -> Result<Self> {
        Coordinator::start(cpu, Ok(Box::new(open)), model, capacity)
    }

    fn start(
        cpu: Arc<dyn Backend>,
        open_gpu: std::result::Result<Opener, String>,
        model: CostModel,
        capacity: usize,
    ) -> Result<Self> {
        let model = Arc::new(Mutex::new(model));
        let (cpu_worker, cpu_thread) =
            worker::spawn(Box::new(move || Ok(cpu)), Arc::clone(&model), None)?;
        let mut threads = vec![(cpu_worker.clone(), cpu_thread)];
        let mut no_gpu_reason = String::new();
        let gpu_worker = match open_gpu {
            Ok(open) => {
                let fallback = Some(cpu_worker.clone());
                match worker::spawn(open, Arc::clone(&model), fallback) {
                    Ok((handle, thread)) => {
                        // The GPU worker stops first: it may still hand jobs to the CPU.
                        threads.insert(0, (handle.clone(), thread));
                        Some(handle)
                    }
                    Err(Error::NoGpu(why)) => {
                        no_gpu_reason = why;
                        None
                    }
                    Err(e) => {
                        stop_workers(threads);
                        return Err(e);
                    }
                }
            }
            Err(why) => {
                no_gpu_reason = why;
                None
            }
        };
        let capacity = u32::try_from(capacity.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Ok(Coordinator {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            closed: AtomicBool::new(false),
            model,
            gpu: gpu_worker,
            cpu: cpu_worker,
            no_gpu_reason,
            threads: Mutex::new(threads),
        })
    }

    /// Probes each backend on its own worker thread (blocking; call it off
    /// the async workers): a cost model of what was measured.
    pub fn probe(&self) -> CostModel {
        let mut model = CostModel::default();
        for worker in std::iter::once(&self.cpu).chain(&self.gpu) {
            let probe = worker.probe();
            for (kernel, line) in probe.lines {
                model.set(worker.kind, kernel, line);
            }
            if let Some(transfer) = probe.transfer {
                model.set_transfer(transfer);
            }
        }
        model
    }

    /// Replaces the cost model.
    pub fn set_cost_model(&self, model: CostModel) {
        *self.model.lock().unwrap_or_else(|e| e.into_inner()) = model;
    }

    /// Whether a GPU worker exists (its device may since have been lost:
    /// [`Coordinator::gpu_lost`]).
    pub fn has_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Whether work can be placed on `choice` now: `gpu` needs a GPU whose
    /// device is not lost. For fronts that must refuse before they answer
    /// (a video stream's first bytes go out before its first frame runs).
    pub fn check_choice(&self, choice: BackendChoice) -> Result<()> {
        if choice == BackendChoice::Gpu && self.live_gpu().is_none() {
            return Err(Error::NoGpu(self.why_no_gpu()));
        }
        Ok(())
    }

    /// Why the GPU's device was lost, once it was: no work is placed there
    /// any more.
    pub fn gpu_lost(&self) -> Option<String> {
        self.gpu.as_ref()?.lost().map(str::to_owned)
    }

    /// The GPU worker, unless there is none or its device was lost.
    fn live_gpu(&self) -> Option<&WorkerHandle> {
        self.gpu.as_ref().filter(|g| g.lost().is_none())
    }

    /// Why there is no GPU to place work on.
    fn why_no_gpu(&self) -> String {
        match self.gpu_lost() {
            Some(why) => format!("the GPU was lost ({why})"),
            None => self.no_gpu_reason.clone(),
        }
    }

    /// The GPU's device name, if there is a GPU.
    pub fn gpu_device(&self) -> Option<&str> {
        self.gpu.as_ref().map(|g| g.device.as_str())
    }

    /// The CPU pool's description.
    pub fn cpu_device(&self) -> &str {
        &self.cpu.device
    }

    /// Jobs queued or running now.
    pub fn in_flight(&self) -> usize {
        self.capacity as usize - self.permits.available_permits()
    }

    /// Predicted milliseconds of work queued on each backend (gpu, cpu).
    pub fn backlog_ms(&self) -> (Option<f64>, f64) {
        (
            self.gpu.as_ref().map(WorkerHandle::backlog_ms),
            self.cpu.backlog_ms(),
        )
    }

    /// Jobs waiting in each backend's queue (gpu, cpu).
    pub fn queue_depth(&self) -> (Option<usize>, usize) {
        (
            self.gpu.as_ref().map(WorkerHandle::queued),
            self.cpu.queued(),
        )
    }

    /// The run time the cost model predicts for `kernels` (each with its
    /// work units, a job's one or a pipeline's steps) on the fastest
    /// backend this coordinator has that can be predicted; `None` when no
    /// backend's lines cover them all.
    pub fn fastest_ms(&self, kernels: &[(Kernel, f64)]) -> Option<f64> {
        let model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        let kinds =
            std::iter::once(BackendKind::Cpu).chain(self.live_gpu().map(|_| BackendKind::Gpu));
        kinds
            .filter_map(|kind| model.predict_work(kind, kernels).map(|(ms, _)| ms))
            .reduce(f64::min)
    }

    /// A copy of the cost model as it stands (with corrections).
    pub fn cost_model(&self) -> CostModel {
        self.model.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Submits a job, waiting while the coordinator is full.
    pub async fn submit(&self, task: Task, choice: BackendChoice) -> Result<JobHandle> {
        self.submit_keeping(task, Vec::new(), choice).await
    }

    /// Submits a job whose outputs named in `keep` stay where they are
    /// computed ([`JobReport::kept`]), waiting while the coordinator is
    /// full.
    pub async fn submit_keeping(
        &self,
        task: Task,
        keep: Vec<String>,
        choice: BackendChoice,
    ) -> Result<JobHandle> {
        let permit = self.permit().await?;
        self.enqueue(task, keep, choice, permit)
    }

    /// Submits a job, or answers [`Error::Busy`] at once when full.
    pub fn try_submit(&self, task: Task, choice: BackendChoice) -> Result<JobHandle> {
        self.try_submit_keeping(task, Vec::new(), choice)
    }

    /// Like [`Coordinator::submit_keeping`], but answers [`Error::Busy`] at
    /// once when full.
    pub fn try_submit_keeping(
        &self,
        task: Task,
        keep: Vec<String>,
        choice: BackendChoice,
    ) -> Result<JobHandle> {
        let permit = self.try_permit()?;
        self.enqueue(task, keep, choice, permit)
    }

    /// A handle's data as a host tensor: its host copy, read back from the
    /// GPU first (on the GPU's worker, after the work queued there) when it
    /// has none. The host copy stays for later reads.
    pub async fn read(&self, handle: &Handle) -> Result<Tensor> {
        self.fetch(std::slice::from_ref(handle)).await?;
        handle
            .to_tensor()
            .ok_or_else(|| Error::Internal("a fetched handle has no host copy".into()))
    }

    /// Brings handles' data home where it is not there yet; what that
    /// moved.
    pub async fn fetch(&self, handles: &[Handle]) -> Result<Fetched> {
        let away: Vec<Handle> = handles
            .iter()
            .filter(|h| h.host().is_none())
            .cloned()
            .collect();
        if away.is_empty() {
            return Ok(Fetched::default());
        }
        let Some(gpu) = &self.gpu else {
            return Err(foreign());
        };
        let permit = self.permit().await?;
        let (tx, rx) = oneshot::channel();
        let work = Work::Fetch(away, tx);
        gpu.send(Item::new(work, String::new(), 0.0, Arc::default(), permit));
        rx.await.unwrap_or(Err(Error::ShuttingDown))
    }

    /// A place in the bound on work in flight, waiting for one.
    async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        self.check_open()?;
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::ShuttingDown)
    }

    /// A place in the bound on work in flight, or [`Error::Busy`].
    fn try_permit(&self) -> Result<OwnedSemaphorePermit> {
        self.check_open()?;
        Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| Error::Busy)
    }

    /// Submits a job and waits for its result.
    pub async fn run(&self, task: Task, choice: BackendChoice) -> Result<JobReport> {
        self.submit(task, choice).await?.wait().await
    }

    /// Runs a checked pipeline as one unit on one backend, waiting while
    /// the coordinator is full: placed once (`auto` adds up its steps'
    /// predicted times on each backend), its steps run one after another
    /// on that backend's worker.
    pub async fn run_pipeline(
        &self,
        pipeline: CheckedPipeline,
        choice: BackendChoice,
    ) -> Result<PipelineReport> {
        let permit = self.permit().await?;
        self.pipeline_with(permit, pipeline, choice)?.wait().await
    }

    /// Submits a checked pipeline, as [`Coordinator::run_pipeline`] runs
    /// it, but answers [`Error::Busy`] at once when full.
    pub fn try_submit_pipeline(
        &self,
        pipeline: CheckedPipeline,
        choice: BackendChoice,
    ) -> Result<PipelineHandle> {
        let permit = self.try_permit()?;
        self.pipeline_with(permit, pipeline, choice)
    }

    fn pipeline_with(
        &self,
        permit: OwnedSemaphorePermit,
        pipeline: CheckedPipeline,
        choice: BackendChoice,
    ) -> Result<PipelineHandle> {
        let (worker, reason, predicted_ms) = self.place(&Placing::Pipeline(&pipeline), choice)?;
        let (tx, rx) = oneshot::channel();
        let control = Arc::new(Control::default());
        let work = Work::Pipeline(pipeline, tx);
        let item = Item::new(work, reason, predicted_ms, Arc::clone(&control), permit);
        self.send(worker, item);
        Ok(Submitted { reply: rx, control })
    }

    /// Stops taking jobs, waits until every job in flight is answered, then
    /// ends the worker threads (releasing the GPU device). Jobs submitted
    /// afterwards get [`Error::ShuttingDown`].
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Holding every permit means nothing is in flight any more; closing
        // the semaphore wakes submitters still waiting for room.
        if let Ok(all) = self.permits.acquire_many(self.capacity).await {
            self.permits.close();
            drop(all);
        }
        let threads = self.take_threads();
        // Joining blocks (briefly: the queues are empty): not on a tokio worker.
        let _ = tokio::task::spawn_blocking(move || stop_workers(threads)).await;
    }

    fn take_threads(&self) -> Vec<(WorkerHandle, JoinHandle<()>)> {
        std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    fn enqueue(
        &self,
        task: Task,
        keep: Vec<String>,
        choice: BackendChoice,
        permit: OwnedSemaphorePermit,
    ) -> Result<JobHandle> {
        let (worker, reason, predicted_ms) = self.place(&Placing::Job(&task), choice)?;
        let (tx, rx) = oneshot::channel();
        let control = Arc::new(Control::default());
        let work = Work::Job(task, keep, tx);
        let item = Item::new(work, reason, predicted_ms, Arc::clone(&control), permit);
        self.send(worker, item);
        Ok(Submitted { reply: rx, control })
    }

    /// Queues work on `worker`. Work placed on the CPU that reads handles
    /// kept only on the GPU goes through the GPU worker first, which
    /// brings them home (once: the host copy stays).
    fn send(&self, worker: &WorkerHandle, mut item: Item) {
        if worker.kind == BackendKind::Cpu {
            item.bring_home = item.work.away_from_host();
            if !item.bring_home.is_empty() {
                match &self.gpu {
                    Some(gpu) => return gpu.send(item),
                    // Only another engine's GPU can hold it.
                    None => return worker.fail(item, foreign()),
                }
            }
        }
        worker.send(item);
    }

    /// Chooses a worker for a job or a pipeline and says why.
    fn place(&self, work: &Placing, choice: BackendChoice) -> Result<(&WorkerHandle, String, f64)> {
        let model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        // Where the data is matters only where there is a choice to make.
        let gpu = self.live_gpu();
        let moves = match (choice, gpu) {
            (BackendChoice::Auto, Some(_)) => work.moves(),
            _ => Moves::default(),
        };
        let steps: Vec<(Kernel, f64)>;
        let work_units: &[(Kernel, f64)] = match work {
            Placing::Job(task) => &[(task.kernel(), cost::work_units(task))],
            Placing::Pipeline(p) => {
                steps = p.work().collect();
                &steps
            }
        };
        let predict = |w: &WorkerHandle| {
            let (ms, fixed) = model.predict_work(w.kind, work_units)?;
            Some(moves.adjust(w.kind, model.transfer(), ms, fixed))
        };
        let cpu = &self.cpu;
        match (choice, gpu) {
            (BackendChoice::Cpu, _) => Ok((
                cpu,
                "forced by backend cpu".into(),
                predict(cpu).unwrap_or(0.0),
            )),
            (BackendChoice::Gpu, Some(gpu)) => Ok((
                gpu,
                "forced by backend gpu".into(),
                predict(gpu).unwrap_or(0.0),
            )),
            (BackendChoice::Gpu, None) => Err(Error::NoGpu(self.why_no_gpu())),
            (BackendChoice::Auto, None) => Ok((
                cpu,
                format!("auto: {}", self.why_no_gpu()),
                predict(cpu).unwrap_or(0.0),
            )),
            (BackendChoice::Auto, Some(gpu)) => match (predict(gpu), predict(cpu)) {
                (Some(pg), Some(pc)) => {
                    let (done_gpu, done_cpu) = (gpu.backlog_ms() + pg, cpu.backlog_ms() + pc);
                    let why = format!(
                        "auto: predicted {done_gpu:.3} ms on gpu vs {done_cpu:.3} ms on cpu \
                         (run {pg:.3} vs {pc:.3} ms{}, plus queued work)",
                        moves.describe()
                    );
                    Ok(if done_gpu < done_cpu {
                        (gpu, why, pg)
                    } else {
                        (cpu, why, pc)
                    })
                }
                _ => Ok((
                    gpu,
                    format!("auto: no cost model for {}; GPU preferred", work.what()),
                    0.0,
                )),
            },
        }
    }
}

/// The error for a handle whose data is on no device this coordinator has
/// (another engine's GPU).
fn foreign() -> Error {
    Error::bad("an input is kept on another engine's GPU; read it there and pass the tensor")
}

/// What is being placed.
enum Placing<'a> {
    Job(&'a Task),
    Pipeline(&'a CheckedPipeline),
}

/// Bytes whose place changes a prediction: inputs already on the GPU (no
/// upload there), inputs only on the GPU (a download before a CPU run), and
/// a pipeline's intermediates (kept on the GPU, not read back and sent up
/// again between steps).
#[derive(Default)]
struct Moves {
    on_gpu: u64,
    gpu_only: u64,
    intermediates: u64,
}

impl Moves {
    /// `ms` (the lines' prediction, which assumes inputs go up and outputs
    /// come down) for `kind`, adjusted for where the data is; never below
    /// the lines' fixed costs.
    fn adjust(
        &self,
        kind: BackendKind,
        transfer: Option<cost::Transfer>,
        ms: f64,
        fixed: f64,
    ) -> f64 {
        let Some(t) = transfer else { return ms };
        let bytes = |b: u64| b as f64;
        match kind {
            BackendKind::Gpu => {
                let saved = bytes(self.on_gpu) * t.upload_ms_per_byte
                    + bytes(self.intermediates) * (t.upload_ms_per_byte + t.download_ms_per_byte);
                (ms - saved).max(fixed.min(ms))
            }
            BackendKind::Cpu => ms + bytes(self.gpu_only) * t.download_ms_per_byte,
        }
    }

    /// What the placement reason says of them.
    fn describe(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let mut parts = Vec::new();
        if self.on_gpu > 0 {
            parts.push(format!(
                "{:.1} MiB of inputs already on the GPU",
                mib(self.on_gpu)
            ));
        }
        if self.gpu_only > 0 {
            parts.push(format!("{:.1} MiB only there", mib(self.gpu_only)));
        }
        if self.intermediates > 0 {
            parts.push(format!(
                "{:.1} MiB kept there between steps",
                mib(self.intermediates)
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("; {}", parts.join(", "))
        }
    }
}

impl Placing<'_> {
    /// Where its data is.
    fn moves(&self) -> Moves {
        let mut moves = Moves::default();
        let mut count = |h: &Handle| {
            if h.device().is_some() {
                moves.on_gpu += h.bytes();
                if h.host().is_none() {
                    moves.gpu_only += h.bytes();
                }
            }
        };
        match self {
            Placing::Job(task) => task.operands().into_iter().for_each(&mut count),
            Placing::Pipeline(p) => {
                p.given().for_each(&mut count);
                moves.intermediates = p.intermediate_bytes();
            }
        }
        moves
    }

    /// What it is, for a placement reason.
    fn what(&self) -> String {
        match self {
            Placing::Job(task) => task.kernel().to_string(),
            Placing::Pipeline(p) => {
                let kernels: std::collections::BTreeSet<String> =
                    p.work().map(|(k, _)| k.to_string()).collect();
                kernels.into_iter().collect::<Vec<_>>().join(", ")
            }
        }
    }
}

impl Drop for Coordinator {
    /// Ends the workers if [`Coordinator::shutdown`] did not: each finishes
    /// the jobs already queued first.
    fn drop(&mut self) {
        stop_workers(self.take_threads());
    }
}

/// Stops each worker in turn and waits for its thread to end.
fn stop_workers(threads: Vec<(WorkerHandle, JoinHandle<()>)>) {
    for (handle, thread) in threads {
        handle.stop();
        if thread.join().is_err() {
            log::error!("the {} worker thread panicked", handle.kind);
        }
    }
}
