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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::JobReport;
use super::cost::{self, CostModel, Line};
use super::probe;
use crate::backend::Timings;
use crate::backend::{Backend, BackendKind, Run};
use crate::error::{Error, Result};
use crate::kernel::{Kernel, Task};

/// One queued job.
pub(super) struct Item {
    pub task: Task,
    pub reason: String,
    pub predicted_ms: f64,
    pub queued_at: Instant,
    pub reply: oneshot::Sender<Result<JobReport>>,
    pub cancelled: Arc<AtomicBool>,
    /// Held until the job is answered: it is the job's place in the bound
    /// on work in flight.
    pub _permit: OwnedSemaphorePermit,
}

/// What a worker's queue carries.
pub(super) enum Message {
    /// A job to run.
    Run(Item),
    /// Run the cost-model probe on this backend and send back the lines.
    Probe(mpsc::Sender<Vec<(Kernel, Line)>>),
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
}

impl WorkerHandle {
    /// Predicted milliseconds of work queued or running here.
    pub fn backlog_ms(&self) -> f64 {
        self.backlog_us.load(Ordering::Relaxed) as f64 / 1e3
    }

    /// Jobs waiting here (not counting the one running).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queues a job. If the worker is gone, the job is answered with an error.
    pub fn send(&self, item: Item) {
        self.backlog_us
            .fetch_add(to_us(item.predicted_ms), Ordering::Relaxed);
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::SendError(Message::Run(item))) = self.tx.send(Message::Run(item)) {
            self.backlog_us
                .fetch_sub(to_us(item.predicted_ms), Ordering::Relaxed);
            self.queued.fetch_sub(1, Ordering::Relaxed);
            let _ = item.reply.send(Err(Error::ShuttingDown));
        }
    }

    /// Asks the worker to end once its queue is empty.
    pub fn stop(&self) {
        let _ = self.tx.send(Message::Stop);
    }

    /// Probes the backend on its own thread (after the queued jobs), and
    /// waits for the result. Blocking: call it off the async workers.
    pub fn probe(&self) -> Vec<(Kernel, Line)> {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Message::Probe(tx)).is_err() {
            return Vec::new();
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
    let (backlog, waiting) = (Arc::clone(&backlog_us), Arc::clone(&queued));
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
            let (model, waiting, backlog) = (&model, &waiting, &backlog);
            serving.host(&mut move || {
                for message in rx.iter() {
                    match message {
                        Message::Run(item) => {
                            waiting.fetch_sub(1, Ordering::Relaxed);
                            // The running job stays in the backlog until it is done.
                            let predicted = to_us(item.predicted_ms);
                            run_one(&*backend, model, fallback.as_ref(), item);
                            backlog.fetch_sub(predicted, Ordering::Relaxed);
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
    };
    Ok((handle, thread))
}

fn run_one(
    backend: &dyn Backend,
    model: &Mutex<CostModel>,
    fallback: Option<&WorkerHandle>,
    item: Item,
) {
    let Item {
        task,
        reason,
        predicted_ms,
        queued_at,
        reply,
        cancelled,
        _permit: permit,
    } = item;
    if cancelled.load(Ordering::Relaxed) {
        answer(reply, permit, Err(Error::Cancelled));
        return;
    }
    let started = Instant::now();
    let queued_ms = started.duration_since(queued_at).as_secs_f64() * 1e3;
    let kernel = task.kernel();
    let work = cost::work_units(&task);
    // A worker with a fallback may need the task again; one without hands it
    // over, so the backend can reuse its buffers. A panic inside a kernel
    // fails this job only; the worker lives on.
    let (outcome, kept) = if fallback.is_some() {
        (catch(|| backend.run(&task)), Some(task))
    } else {
        (catch(|| backend.run_owned(task)), None)
    };
    match (outcome, fallback, kept) {
        (Ok(run), _, _) => {
            model.lock().unwrap_or_else(|e| e.into_inner()).observe(
                backend.kind(),
                kernel,
                work,
                run.timings.total,
            );
            let t = run.timings;
            let report = JobReport {
                kernel,
                backend: backend.kind(),
                device: backend.device(),
                placement_reason: reason,
                timings: Timings {
                    queued: queued_ms,
                    total: queued_ms + t.total,
                    ..t
                },
                outputs: run.outputs,
            };
            answer(reply, permit, Ok(report));
        }
        (Err(Error::Gpu(why)), Some(fallback), Some(task)) => {
            log::warn!("{kernel} failed on the GPU ({why}); re-running it on the CPU");
            fallback.send(Item {
                task,
                reason: format!("{reason}; the GPU failed ({why}), so it re-ran on the CPU"),
                predicted_ms,
                // The time already spent waiting counts toward the job's queue time.
                queued_at,
                reply,
                cancelled,
                _permit: permit,
            });
        }
        (Err(e), _, _) => answer(reply, permit, Err(e)),
    }
}

/// Frees the job's place, then replies: a caller that hears back already
/// sees the job gone from the count of jobs in flight.
fn answer(
    reply: oneshot::Sender<Result<JobReport>>,
    permit: OwnedSemaphorePermit,
    result: Result<JobReport>,
) {
    drop(permit);
    let _ = reply.send(result);
}

fn catch(run: impl FnOnce() -> Result<Run>) -> Result<Run> {
    std::panic::catch_unwind(AssertUnwindSafe(run))
        .unwrap_or_else(|panic| Err(Error::Panicked(panic_message(&*panic))))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
