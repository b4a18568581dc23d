//! A backend's worker: one OS thread that owns the backend and runs queued
//! jobs one after another. Each job already spreads over the whole device
//! (or the whole rayon pool), so running them one at a time loses nothing,
//! and blocking calls (`device.poll`, rayon's `install`) never touch a tokio
//! worker.
//!
//! The loop runs where the backend says its jobs start cheapest
//! ([`Backend::host`]): the GPU's on the worker thread itself, the CPU's
//! on one of its pool's threads, so that a job's parallel work starts
//! there instead of each job hopping into the pool and back (13–22 µs a
//! job on two cores).
//!
//! The thread also opens and drops its backend: a GPU device is created,
//! used and destroyed on that one thread. (NVIDIA's Vulkan driver was seen
//! to crash at exit when a device made on one thread was destroyed on
//! another before the first thread ended.)

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::cost::{self, CostModel};
use super::probe;
use super::{Control, JobReport, PipelineReport};
use crate::backend::{Backend, BackendKind, Fetched, Run, Timings};
use crate::error::{Error, Result};
use crate::kernel::{Kernel, Task};
use crate::pipeline::{CheckedPipeline, PipelineRun};
use crate::tensor::Handle;

/// One queued job or pipeline.
pub(super) struct Item {
    pub work: Work,
    pub reason: String,
    pub predicted_ms: f64,
    pub queued_at: Instant,
    /// The caller's view of the work: its cancellation, whether it started.
    pub control: Arc<Control>,
    /// Handles the work reads that have no host copy, though it is placed
    /// on the CPU: the GPU worker gets the item first, brings them home,
    /// and passes it on to the CPU worker (its fallback).
    pub bring_home: Vec<Handle>,
    /// What bringing them home took, for the report.
    pub fetched: Fetched,
    /// Held until the work is answered: its place in the bound on work in
    /// flight and in its worker's backlog.
    pub _permit: Place,
}

impl Item {
    /// Work to queue, in the place `permit` holds, not started yet.
    pub fn new(
        work: Work,
        reason: String,
        predicted_ms: f64,
        control: Arc<Control>,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Item {
            work,
            reason,
            predicted_ms,
            queued_at: Instant::now(),
            control,
            bring_home: Vec::new(),
            fetched: Fetched::default(),
            _permit: Place::new(permit),
        }
    }
}

/// A piece of work's place in the bound on work in flight and, once
/// queued, in its worker's predicted backlog: both freed when it drops,
/// which is before its answer goes out, so that whoever hears back (and
/// places the next job) sees the work gone.
pub(super) struct Place {
    _permit: OwnedSemaphorePermit,
    backlog: Option<(Arc<AtomicU64>, u64)>,
}

impl Place {
    /// A place in the bound on work in flight, in no backlog yet.
    pub fn new(permit: OwnedSemaphorePermit) -> Self {
        Place {
            _permit: permit,
            backlog: None,
        }
    }

    /// Counts `us` of predicted work in `backlog` (leaving the backlog it
    /// was in, for work passed from one worker to another).
    fn queue(&mut self, backlog: &Arc<AtomicU64>, us: u64) {
        backlog.fetch_add(us, Ordering::Relaxed);
        self.leave();
        self.backlog = Some((Arc::clone(backlog), us));
    }

    fn leave(&mut self) {
        if let Some((backlog, us)) = self.backlog.take() {
            backlog.fetch_sub(us, Ordering::Relaxed);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.leave();
    }
}

/// What an item runs, and where its answer goes.
pub(super) enum Work {
    /// One task, and the outputs to keep as handles.
    Job(Task, Vec<String>, oneshot::Sender<Result<JobReport>>),
    /// A pipeline's steps, one after another on this backend.
    Pipeline(CheckedPipeline, oneshot::Sender<Result<PipelineReport>>),
    /// Bring these handles' data home.
    Fetch(Vec<Handle>, oneshot::Sender<Result<Fetched>>),
}

impl Work {
    /// Answers with an error.
    fn fail(self, e: Error) {
        let reply = match self {
            Work::Job(_, _, reply) => Reply::Job(reply),
            Work::Pipeline(_, reply) => Reply::Pipeline(reply),
            Work::Fetch(_, reply) => Reply::Fetch(reply),
        };
        reply.fail(e);
    }
}

/// What a worker's queue carries.
pub(super) enum Message {
    /// A job to run (boxed: an item is large beside the other messages).
    Run(Box<Item>),
    /// Run the cost-model probe on this backend and send back the lines.
    Probe(mpsc::Sender<probe::Probe>),
    /// Finish what is queued before this, then drop the backend and end
    /// the thread.
    Stop,
}

/// The sending side of a worker, with the work it has queued.
#[derive(Clone)]
pub(super) struct WorkerHandle {
    pub kind: BackendKind,
    pub device: String,
    tx: mpsc::Sender<Message>,
    backlog_us: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    /// Why the backend's device was lost, once the worker has seen it.
    lost: Arc<OnceLock<String>>,
}

impl WorkerHandle {
    /// Why the backend's device was lost, once it was: work still queued
    /// here then fails on it (and a GPU's re-runs on the CPU).
    pub fn lost(&self) -> Option<&str> {
        self.lost.get().map(String::as_str)
    }

    /// Predicted milliseconds of work queued or running here.
    pub fn backlog_ms(&self) -> f64 {
        self.backlog_us.load(Ordering::Relaxed) as f64 / 1e3
    }

    /// Jobs waiting here (not counting the one running).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queues a job. If the worker is gone, the job is answered with an error.
    pub fn send(&self, mut item: Item) {
        // The work stays in the backlog until it is answered.
        item._permit
            .queue(&self.backlog_us, to_us(item.predicted_ms));
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::SendError(Message::Run(item))) = self.tx.send(Message::Run(Box::new(item)))
        {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            answer_item(*item, Error::ShuttingDown);
        }
    }

    /// Answers an item with an error without queuing it.
    pub fn fail(&self, item: Item, e: Error) {
        answer_item(item, e);
    }

    /// Asks the worker to end once its queue is empty.
    pub fn stop(&self) {
        let _ = self.tx.send(Message::Stop);
    }

    /// Probes the backend on its own thread (after the queued jobs), and
    /// waits for the result. Blocking: call it off the async workers.
    pub fn probe(&self) -> probe::Probe {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Message::Probe(tx)).is_err() {
            return probe::Probe::default();
        }
        rx.recv().unwrap_or_default()
    }
}

fn to_us(ms: f64) -> u64 {
    (ms.max(0.0) * 1e3) as u64
}

/// Opens a backend on its own worker thread. The thread runs `open`, then
/// jobs until [`WorkerHandle::stop`] or until every handle is dropped. If
/// `open` fails, the thread ends and its error comes back. A GPU worker is
/// given the CPU worker as `fallback`: a job that fails with a GPU error is
/// re-run there.
pub(super) fn spawn(
    open: Box<dyn FnOnce() -> Result<Arc<dyn Backend>> + Send>,
    model: Arc<Mutex<CostModel>>,
    fallback: Option<WorkerHandle>,
) -> Result<(WorkerHandle, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Message>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let backlog_us = Arc::<AtomicU64>::default();
    let queued = Arc::<AtomicUsize>::default();
    let waiting = Arc::clone(&queued);
    let lost = Arc::<OnceLock<String>>::default();
    let seen_lost = Arc::clone(&lost);
    let thread = std::thread::Builder::new()
        // Only the GPU worker has a fallback; the kind is not known before `open`.
        .name(format!(
            "anycore-{}-worker",
            if fallback.is_some() { "gpu" } else { "cpu" }
        ))
        .spawn(move || {
            let backend = match open() {
                Ok(b) => b,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok((backend.kind(), backend.device())));
            let serving = Arc::clone(&backend);
            let (model, waiting, seen_lost) = (&model, &waiting, &seen_lost);
            serving.host(&mut move || {
                for message in rx.iter() {
                    match message {
                        Message::Run(item) => {
                            waiting.fetch_sub(1, Ordering::Relaxed);
                            run_one(&*backend, model, fallback.as_ref(), *item);
                            // A loss shows in the job that met it: from
                            // now on the coordinator places nothing here.
                            if seen_lost.get().is_none()
                                && let Some(why) = backend.lost()
                            {
                                log::error!(
                                    "the {} was lost ({why}); its work goes to the CPU",
                                    backend.kind()
                                );
                                let _ = seen_lost.set(why);
                            }
                        }
                        Message::Probe(reply) => {
                            let _ = reply.send(probe::probe(&*backend));
                        }
                        Message::Stop => break,
                    }
                }
            });
            // `backend` is dropped here, on the thread that made it.
        })
        .expect("spawning a worker thread");
    let opened = ready_rx
        .recv()
        .unwrap_or_else(|_| Err(Error::Panicked("opening a backend panicked".into())));
    let (kind, device) = match opened {
        Ok(ready) => ready,
        Err(e) => {
            let _ = thread.join();
            return Err(e);
        }
    };
    let handle = WorkerHandle {
        kind,
        device,
        tx,
        backlog_us,
        queued,
        lost,
    };
    Ok((handle, thread))
}

fn run_one(
    backend: &dyn Backend,
    model: &Mutex<CostModel>,
    fallback: Option<&WorkerHandle>,
    item: Item,
) {
    if !item.bring_home.is_empty() {
        return bring_home(backend, fallback, item);
    }
    let Item {
        work,
        reason,
        predicted_ms,
        queued_at,
        control,
        bring_home: _,
        fetched,
        _permit: permit,
    } = item;
    if control.is_cancelled() {
        return answer(permit, || work.fail(Error::Cancelled));
    }
    // Kernels stop early once it is cancelled; what they leave is thrown
    // away below.
    let watching = control.start();
    let started = Instant::now();
    let queued_ms = started.duration_since(queued_at).as_secs_f64() * 1e3;
    // A worker with a fallback may need the work again; one without hands
    // it over, so the backend can reuse its buffers. A panic inside a
    // kernel fails this work only; the worker lives on.
    let keep = fallback.is_some();
    let (outcome, kept, reply) = match work {
        Work::Job(task, keep_outputs, reply) => {
            let kernel = task.kernel();
            // Run by reference where it may have to run again: no copy.
            let mut kept = None;
            let run = catch(|| {
                let (run, back) = match backend.begin_job() {
                    Ok(()) => run_task(backend, Some(model), task, &keep_outputs, keep),
                    Err(e) => (Err(e), Some(task)),
                };
                kept = back;
                run
            });
            (
                run.map(|run| Done::Job(kernel, run)),
                kept.map(|task| Kept::Job(task, keep_outputs)),
                Reply::Job(reply),
            )
        }
        Work::Pipeline(pipeline, reply) => {
            // The pipeline gives its tensors to its steps: a copy of it
            // where it may have to run again (handles: no data copied),
            // and its steps handed over.
            let kept = keep.then(|| pipeline.clone());
            let run = catch(|| {
                backend.begin_job()?;
                // Steps in a batch are not observed: on the GPU a step's
                // time is its recording, the device's lands elsewhere.
                pipeline.run_on(backend, keep, |task, outputs| {
                    run_task(backend, None, task, outputs, false).0
                })
            });
            (
                run.map(Done::Pipeline),
                kept.map(Kept::Pipeline),
                Reply::Pipeline(reply),
            )
        }
        Work::Fetch(handles, reply) => {
            let fetched = catch(|| backend.fetch(&handles));
            answer(permit, || drop(reply.send(fetched)));
            return;
        }
    };
    drop(watching);
    // Cancelled while it ran: whatever it computed is not the answer.
    let outcome = match outcome {
        Ok(_) if control.is_cancelled() => Err(Error::Cancelled),
        outcome => outcome,
    };
    let timings = |t: Timings| Timings {
        queued: queued_ms,
        download: t.download + fetched.download_ms,
        total: queued_ms + fetched.ms + t.total,
        ..t
    };
    let traffic = |mut t: crate::backend::Traffic| {
        t.add(&fetched.traffic);
        t
    };
    let reason = |note: Option<String>| match note {
        Some(note) => format!("{reason}; {note}"),
        None => reason.clone(),
    };
    match (outcome, reply) {
        (Ok(Done::Job(kernel, run)), Reply::Job(reply)) => {
            let report = JobReport {
                kernel,
                backend: backend.kind(),
                device: backend.device(),
                placement_reason: reason(run.note),
                timings: timings(run.timings),
                traffic: traffic(run.traffic),
                outputs: run.outputs,
                kept: run.kept,
            };
            answer(permit, || drop(reply.send(Ok(report))));
        }
        (Ok(Done::Pipeline(run)), Reply::Pipeline(reply)) => {
            let report = PipelineReport {
                backend: backend.kind(),
                device: backend.device(),
                placement_reason: reason(None),
                timings: timings(run.timings),
                traffic: traffic(run.traffic),
                steps: run.steps,
                outputs: run.outputs,
                kept: run.kept,
            };
            answer(permit, || drop(reply.send(Ok(report))));
        }
        (Ok(_), _) => unreachable!("the answer goes where the work came from"),
        (Err(e), reply) => match (e, fallback, kept) {
            (Error::Gpu(why), Some(fallback), Some(kept)) => {
                log::warn!(
                    "{} failed on the GPU ({why}); re-running it on the CPU",
                    kept.what()
                );
                let work = kept.with(reply);
                // Its inputs kept only on the GPU come home here, first (the
                // CPU worker cannot read them); if even that fails, the
                // GPU's error is the answer.
                // (Nothing to bring, nothing to ask of a GPU that may be lost.)
                let away = work.away_from_host();
                let mut fetched = fetched;
                if !away.is_empty() {
                    match catch(|| backend.fetch(&away)) {
                        Ok(more) => fetched.add(&more),
                        Err(_) => return answer(permit, || work.fail(Error::Gpu(why))),
                    }
                }
                fallback.send(Item {
                    bring_home: Vec::new(),
                    work,
                    reason: format!(
                        "{}; the GPU failed ({why}), so it re-ran on the CPU",
                        reason(None)
                    ),
                    predicted_ms,
                    // The time already spent waiting counts toward the queue time.
                    queued_at,
                    control,
                    fetched,
                    _permit: permit,
                });
            }
            (e, _, _) => answer(permit, || reply.fail(e)),
        },
    }
}

/// Brings home, on this (GPU) worker, the handles an item placed on the
/// CPU reads, then passes it to the CPU worker (`fallback`).
fn bring_home(backend: &dyn Backend, fallback: Option<&WorkerHandle>, mut item: Item) {
    let handles = std::mem::take(&mut item.bring_home);
    match (catch(|| backend.fetch(&handles)), fallback) {
        (Ok(fetched), Some(cpu)) => {
            item.fetched = fetched;
            cpu.send(item);
        }
        (Err(e), _) => answer_item(item, e),
        (Ok(_), None) => answer_item(
            item,
            Error::Internal("only the GPU worker brings data home".into()),
        ),
    }
}

/// Answers an item with an error.
fn answer_item(item: Item, e: Error) {
    let Item {
        work,
        _permit: permit,
        ..
    } = item;
    answer(permit, || work.fail(e));
}

/// Runs one task, the cost model learning from it; the outputs named in
/// `outputs` are kept as handles. With `keep` (the work may have to run
/// again elsewhere) it runs by reference and the task comes back; else the
/// backend is handed it, to reuse its buffers.
fn run_task(
    backend: &dyn Backend,
    model: Option<&Mutex<CostModel>>,
    task: Task,
    outputs: &[String],
    keep: bool,
) -> (Result<Run>, Option<Task>) {
    let kernel = task.kernel();
    let work = cost::work_units(&task);
    let (run, back) = if keep {
        (backend.run_keeping(&task, outputs), Some(task))
    } else {
        (backend.run_owned(task, outputs), None)
    };
    if let (Ok(run), Some(model)) = (&run, model) {
        model.lock().unwrap_or_else(|e| e.into_inner()).observe(
            backend.kind(),
            kernel,
            work,
            run.timings.total,
        );
    }
    (run, back)
}

/// Finished work.
enum Done {
    Job(Kernel, Run),
    Pipeline(PipelineRun),
}

/// A copy of the work, for running it again on the CPU.
enum Kept {
    Job(Task, Vec<String>),
    Pipeline(CheckedPipeline),
}

impl Kept {
    fn what(&self) -> String {
        match self {
            Kept::Job(t, _) => t.kernel().to_string(),
            Kept::Pipeline(p) => format!("a pipeline of {} steps", p.len()),
        }
    }

    /// The work again, answering where `reply` answers.
    fn with(self, reply: Reply) -> Work {
        match (self, reply) {
            (Kept::Job(t, keep), Reply::Job(r)) => Work::Job(t, keep, r),
            (Kept::Pipeline(p), Reply::Pipeline(r)) => Work::Pipeline(p, r),
            _ => unreachable!("kept from the same work"),
        }
    }
}

impl Work {
    /// The handles the work reads that have no host copy (kept only on
    /// the GPU): what a CPU run needs brought home first.
    pub fn away_from_host(&self) -> Vec<Handle> {
        let away = |h: &&Handle| h.host().is_none();
        match self {
            Work::Job(task, _, _) => task.operands().into_iter().filter(away).cloned().collect(),
            Work::Pipeline(p, _) => p.given().filter(away).cloned().collect(),
            Work::Fetch(handles, _) => handles.iter().filter(away).cloned().collect(),
        }
    }
}

/// Where an answer goes, once the work is gone.
enum Reply {
    Job(oneshot::Sender<Result<JobReport>>),
    Pipeline(oneshot::Sender<Result<PipelineReport>>),
    Fetch(oneshot::Sender<Result<Fetched>>),
}

impl Reply {
    fn fail(self, e: Error) {
        match self {
            Reply::Job(r) => drop(r.send(Err(e))),
            Reply::Pipeline(r) => drop(r.send(Err(e))),
            Reply::Fetch(r) => drop(r.send(Err(e))),
        }
    }
}

/// Frees the work's place, then replies: a caller that hears back already
/// sees the work gone from the count in flight.
fn answer(permit: Place, reply: impl FnOnce()) {
    drop(permit);
    reply();
}

fn catch<T>(run: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(run))
        .unwrap_or_else(|panic| Err(Error::Panicked(crate::error::panic_message(&*panic))))
}
