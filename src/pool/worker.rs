//! `anycore worker`: takes jobs from the pool's stream, as many at once as
//! it has free slots, runs each through its own engine (the same path
//! from a request to a task as the HTTP API), stores the result and only
//! then acknowledges the job.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use super::roster::{Counts, HEARTBEAT, Presence, unix_now};
use super::wire::{PoolJob, PoolResult, Status, WireArray, WorkerInfo, check_id, unix_ms};
use super::{Class, Pool};
use crate::backend::BackendChoice;
use crate::coordinator::Submitted;
use crate::coordinator::spec::PipelineSpec;
use crate::coordinator::spec::{JobSpec, json_params};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::service::api::{JobResponse, PipelineResponse, RunInfo, StepResponse};
use crate::tensor::{Handle, Tensor};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Where it runs jobs that do not ask for a backend.
    pub backend: BackendChoice,
    /// Jobs it runs at once at most (and pulls at most).
    pub concurrency: usize,
    /// Its name in results (default `host:pid`).
    pub name: Option<String>,
    /// Longest a job may run here (a job's own deadline may come sooner):
    /// past it, the job is stopped and ends timed out.
    pub max_job: Duration,
    /// How long stopping waits for the jobs it runs; past it they are left
    /// unacknowledged, to be delivered to another worker.
    pub shutdown_timeout: Duration,
}

/// What a worker has done, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages taken from the stream.
    pub consumed: AtomicU64,
    /// Jobs acknowledged done (ran, refused, dead-lettered or already
    /// done).
    pub acked: AtomicU64,
    /// Messages that were a job's second or later delivery.
    pub redelivered: AtomicU64,
    /// Jobs put on the dead-letter stream.
    pub dead_lettered: AtomicU64,
    /// Jobs that ran here.
    pub ran: AtomicU64,
}

impl Counters {
    /// Their values now.
    pub fn counts(&self) -> Counts {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            consumed: n(&self.consumed),
            acked: n(&self.acked),
            redelivered: n(&self.redelivered),
            dead_lettered: n(&self.dead_lettered),
            ran: n(&self.ran),
        }
    }
}

/// Waits before a failed job is delivered again: a second a failed
/// attempt so far.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The wait before asking again after a pull found nothing, doubling
/// from the first to the most while the stream stays empty.
const IDLE_FIRST: Duration = Duration::from_millis(2);
const IDLE_MOST: Duration = Duration::from_millis(100);

/// The longest one pull may take.
const PULL_AT_MOST: Duration = Duration::from_secs(1);

/// A worker: its pool, engine and name.
pub struct Worker {
    pool: Pool,
    engine: Arc<Engine>,
    config: WorkerConfig,
    info: WorkerInfo,
    counters: Arc<Counters>,
    /// Its free slots: a permit a job it runs.
    slots: Arc<Semaphore>,
    started_unix_s: u64,
    /// The controls of the jobs it runs (dropped ones pruned as it goes).
    active: std::sync::Mutex<Vec<std::sync::Weak<crate::coordinator::Control>>>,
}

impl Worker {
    /// A worker over `engine`, taking jobs from `pool`.
    pub fn new(pool: Pool, engine: Arc<Engine>, config: WorkerConfig) -> Worker {
        let host = host_name();
        let coordinator = engine.coordinator();
        let gpu = match config.backend {
            BackendChoice::Cpu => None,
            _ => coordinator.gpu_device().map(str::to_owned),
        };
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("{host}:{}", std::process::id()));
        Worker {
            pool,
            engine,
            info: WorkerInfo { name, host, gpu },
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
            counters: Arc::default(),
            started_unix_s: unix_now(),
            active: std::sync::Mutex::default(),
        }
    }

    /// Its counters.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Who it is, as results say.
    pub fn info(&self) -> &WorkerInfo {
        &self.info
    }

    /// The classes of jobs it takes: `gpu` and `any` with a usable GPU,
    /// `cpu` and `any` without one.
    pub fn classes(&self) -> [Class; 2] {
        match self.info.gpu {
            Some(_) => [Class::Gpu, Class::Any],
            None => [Class::Cpu, Class::Any],
        }
    }

    /// Takes and runs jobs until `stop` completes, then waits for the jobs
    /// it holds.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) -> Result<()> {
        let this = self;
        let slots = Arc::clone(&this.slots);
        let mut consumers = Vec::new();
        // Each consumer's own ack wait and deliveries: whoever made it
        // first set them, and they rule.
        let mut limits = BTreeMap::new();
        for class in this.classes() {
            let consumer = this.pool.consumer(class).await?;
            let config = &consumer.cached_info().config;
            let attempts = u64::try_from(config.max_deliver - 1)
                .unwrap_or(u64::MAX)
                .max(1);
            limits.insert(
                class.name().to_owned(),
                Limits {
                    ack_wait: config.ack_wait,
                    attempts,
                },
            );
            consumers.push(consumer);
        }
        let limits = Arc::new(limits);
        log::info!(
            "worker {} takes {} jobs, {} at once",
            this.info.name,
            this.classes().map(Class::name).join(" and "),
            this.config.concurrency
        );
        let heartbeat = {
            let this = Arc::clone(&this);
            tokio::spawn(async move {
                loop {
                    let presence = this.presence();
                    if let Err(e) = this.pool.announce(&presence).await {
                        log::warn!("{e}");
                    }
                    tokio::time::sleep(HEARTBEAT).await;
                }
            })
        };
        tokio::pin!(stop);
        let mut running = tokio::task::JoinSet::new();
        let mut idle = IDLE_FIRST;
        'pulling: loop {
            tokio::select! {
                permit = Arc::clone(&slots).acquire_owned() => drop(permit.expect("never closed")),
                () = &mut stop => break 'pulling,
            }
            let mut got = 0;
            for consumer in &consumers {
                // Only as many as there are free slots: a busy worker
                // leaves jobs to the others.
                let free = slots.available_permits();
                if free == 0 {
                    break;
                }
                let batch = consumer.fetch().max_messages(free).messages().await;
                let mut batch = match batch {
                    Ok(batch) => batch,
                    Err(e) => {
                        log::warn!("pulling jobs: {e}");
                        continue;
                    }
                };
                // Bounded: a pull the server holds open (it may, while
                // messages wait out a retry delay) is given up after a
                // second; what it might still bring is delivered again.
                let deadline = tokio::time::sleep(PULL_AT_MOST);
                tokio::pin!(deadline);
                loop {
                    let message = tokio::select! {
                        next = batch.next() => next,
                        () = &mut deadline => break,
                        () = &mut stop => break 'pulling,
                    };
                    let Some(message) = message else { break };
                    let message = match message {
                        Ok(m) => m,
                        Err(e) => {
                            log::warn!("pulling jobs: {e}");
                            break;
                        }
                    };
                    got += 1;
                    let permit = Arc::clone(&slots)
                        .acquire_owned()
                        .await
                        .expect("never closed");
                    let (this, limits) = (Arc::clone(&this), Arc::clone(&limits));
                    running.spawn(async move {
                        this.handle(message, &limits).await;
                        drop(permit);
                    });
                }
            }
            while running.try_join_next().is_some() {}
            // Nothing waiting: ask again soon, then less often.
            idle = match got {
                0 => {
                    tokio::select! {
                        () = tokio::time::sleep(idle) => {}
                        () = &mut stop => break 'pulling,
                    }
                    (idle * 2).min(IDLE_MOST)
                }
                _ => IDLE_FIRST,
            };
        }
        let left = tokio::time::timeout(this.config.shutdown_timeout, running.join_all()).await;
        if left.is_err() {
            log::warn!(
                "stopping: jobs still running after {:?}; cancelling them, to be delivered again",
                this.config.shutdown_timeout
            );
            this.cancel_all();
        }
        heartbeat.abort();
        // Its last announcement, if under way, lands before the withdrawal.
        let _ = heartbeat.await;
        this.pool.withdraw(&this.info.name).await;
        Ok(())
    }

    /// Its announcement now: who it is, what it takes, what it does.
    pub fn presence(&self) -> Presence {
        let concurrency = self.config.concurrency.max(1);
        Presence {
            info: self.info.clone(),
            cpu: self.engine.coordinator().cpu_device().to_owned(),
            backend: self.config.backend.name().to_owned(),
            takes: self.classes().map(|c| c.name().to_owned()).to_vec(),
            concurrency,
            running: concurrency.saturating_sub(self.slots.available_permits()),
            started_unix_s: self.started_unix_s,
            counts: self.counters.counts(),
        }
    }

    /// One delivery of a job: done already, refused, run, retried or
    /// dead-lettered.
    async fn handle(&self, message: jetstream::Message, limits: &BTreeMap<String, Limits>) {
        let c = &self.counters;
        c.consumed.fetch_add(1, Ordering::Relaxed);
        let info = message.info().ok();
        let attempt = info.as_ref().map_or(1, |i| i.delivered.max(1) as u64);
        let limits = info
            .and_then(|i| limits.get(i.consumer).copied())
            .unwrap_or(Limits {
                ack_wait: self.pool.config().ack_wait,
                attempts: u64::try_from(self.pool.config().max_deliver).unwrap_or(1),
            });
        if attempt > 1 {
            c.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        let job = match serde_json::from_slice::<PoolJob>(&message.payload) {
            Ok(job) if check_id(&job.id).is_ok() => job,
            Ok(job) => {
                // No key to answer under: nothing to do but drop it.
                log::warn!("dropping job '{}': not a valid id", job.id.escape_debug());
                self.ack(&message, AckKind::Term).await;
                return;
            }
            Err(e) => {
                log::warn!("dropping a message that is not a job: {e}");
                self.ack(&message, AckKind::Term).await;
                return;
            }
        };
        // A job whose result is stored took effect: a redelivery (its
        // worker died between storing and acknowledging) runs no more.
        if let Ok(Some(_)) = self.pool.result(&job.id).await {
            self.ack(&message, AckKind::Ack).await;
            return;
        }
        let max = limits.attempts;
        let outcome = if attempt > max {
            // Its worker died on the last attempt: no more tries.
            Err(Error::Internal(format!("no result after {max} attempts")))
        } else {
            log::info!("started job {} ({}), attempt {attempt}", job.id, job.kernel);
            tokio::select! {
                outcome = self.run_job(&job, attempt) => outcome,
                () = keep_alive(&message, limits.ack_wait / 3) => {
                    unreachable!("keeps the job alive until it is done")
                }
            }
        };
        let (result, ack) = match outcome {
            Ok(result) => (result, AckKind::Ack),
            Err(e) if e.is_user_error() && !matches!(e, Error::NoGpu(_)) => (
                self.failed(&job, attempt, Status::BadInput, e.to_string()),
                AckKind::Term,
            ),
            // Stopped at its deadline: running it again would take as long.
            Err(e @ Error::DeadlineExceeded { .. }) => (
                self.failed(&job, attempt, Status::TimedOut, e.to_string()),
                AckKind::Term,
            ),
            Err(e) if attempt < max => {
                log::warn!(
                    "job {} failed on attempt {attempt} (will retry): {e}",
                    job.id
                );
                self.ack(&message, AckKind::Nak(Some(RETRY_DELAY * attempt as u32)))
                    .await;
                return;
            }
            Err(e) => {
                let why = format!(
                    "failed on each of {} attempts; the last: {e}",
                    attempt.min(max)
                );
                if let Err(e) = self
                    .pool
                    .dead_letter(&job.kernel, message.payload.to_vec(), &why)
                    .await
                {
                    log::warn!("job {}: {e}", job.id);
                }
                c.dead_lettered.fetch_add(1, Ordering::Relaxed);
                let result = self.failed(&job, attempt, Status::DeadLetter, why);
                // On the dead-letter stream: ended, stored or not.
                if let Err(e) = self.pool.store(&result).await {
                    log::warn!("job {}: {e}", job.id);
                }
                self.ack(&message, AckKind::Term).await;
                return;
            }
        };
        // Stored first: a worker that dies here leaves the job to be
        // delivered again, and then found done.
        match self.pool.store(&result).await {
            Ok(()) => self.ack(&message, ack).await,
            Err(e) => {
                log::warn!("job {}: {e}; it will be delivered again", job.id);
                self.ack(&message, AckKind::Nak(Some(RETRY_DELAY))).await;
            }
        }
    }

    /// Runs a job (a kernel's or a pipeline's) through the engine, its
    /// outputs encoded.
    async fn run_job(&self, job: &PoolJob, attempt: u64) -> Result<PoolResult> {
        // Counted from now, before its inputs are fetched; a job whose
        // front's deadline passed while it waited ends at once, unrun.
        let left = job.deadline_unix_ms.map_or(self.config.max_job, |at| {
            Duration::from_millis(at.saturating_sub(unix_ms()))
        });
        let until = tokio::time::Instant::now() + left.min(self.config.max_job);
        if left.is_zero() {
            return Err(Error::DeadlineExceeded { ms: 0 });
        }
        let (run, outputs, steps) = match &job.pipeline {
            Some(spec) => self.run_pipeline(spec.clone(), until).await?,
            None => self.run_kernel(job, until).await?,
        };
        self.counters.ran.fetch_add(1, Ordering::Relaxed);
        let outputs = self
            .pool
            .encode(&format!("{}.out", job.id), &outputs)
            .await?;
        Ok(PoolResult {
            id: job.id.clone(),
            kernel: job.kernel.clone(),
            status: Status::Ok,
            error: None,
            worker: self.info.clone(),
            attempt,
            run: Some(run),
            outputs,
            steps,
        })
    }

    /// A kernel's job: inputs fetched, the request checked and admitted as
    /// the HTTP API does it.
    async fn run_kernel(&self, job: &PoolJob, until: tokio::time::Instant) -> Result<Ran> {
        let mut inputs = Vec::new();
        for (name, wire) in &job.inputs {
            let tensor = self.pool.decode(&format!("array '{name}'"), wire).await?;
            inputs.push((name.clone(), Handle::new(tensor)));
        }
        let backend = job.backend.as_deref().or(match self.config.backend {
            BackendChoice::Auto => None,
            other => Some(other.name()),
        });
        let spec = JobSpec {
            kernel: &job.kernel,
            backend,
            params: json_params(&job.params)?,
            outputs: Vec::new(),
            inputs,
        };
        let (task, _, choice) = spec.into_planned_task(BackendChoice::Auto)?;
        let handle = self.engine.coordinator().submit(task, choice).await?;
        let report = self.within(handle, until).await?;
        let response = JobResponse::describe(report, |_, tensor| tensor);
        Ok((response.run, response.outputs, Vec::new()))
    }

    /// A pipeline's job: its arrays fetched, checked as a whole, run as one
    /// unit here.
    async fn run_pipeline(
        &self,
        spec: PipelineSpec<WireArray>,
        until: tokio::time::Instant,
    ) -> Result<Ran> {
        let spec = self
            .pool
            .decode_pipeline(spec)
            .await?
            .map_inputs(Handle::new);
        let (pipeline, choice, _) = spec.into_pipeline(self.config.backend)?;
        let handle = self
            .engine
            .coordinator()
            .try_submit_pipeline(pipeline, choice)?;
        let report = self.within(handle, until).await?;
        let response = PipelineResponse::describe(report, |_, tensor| tensor);
        Ok((response.run, response.outputs, response.steps))
    }

    /// Waits for submitted work until `until`; then the work is cancelled
    /// (it stops at its kernel's next look). Its control is known to the
    /// worker meanwhile, to be cancelled if the worker stops first.
    async fn within<R>(&self, handle: Submitted<R>, until: tokio::time::Instant) -> Result<R> {
        let control = handle.control();
        {
            let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            active.retain(|c| c.strong_count() > 0);
            active.push(Arc::downgrade(&control));
        }
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout_at(until, handle.wait()).await {
            Ok(result) => result,
            Err(_) => {
                control.cancel();
                Err(Error::DeadlineExceeded {
                    ms: left.as_millis().try_into().unwrap_or(u64::MAX),
                })
            }
        }
    }

    /// Cancels every job it runs (they stop at their kernels' next look).
    fn cancel_all(&self) {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        for control in active.iter().filter_map(std::sync::Weak::upgrade) {
            control.cancel();
        }
    }

    /// The result of a job that did not run.
    fn failed(&self, job: &PoolJob, attempt: u64, status: Status, error: String) -> PoolResult {
        PoolResult {
            id: job.id.clone(),
            kernel: job.kernel.clone(),
            status,
            error: Some(error),
            worker: self.info.clone(),
            attempt,
            run: None,
            outputs: BTreeMap::new(),
            steps: Vec::new(),
        }
    }

    /// Acknowledges `message` as `kind` (a failure is logged: the server
    /// then delivers it again, and the stored result makes that harmless).
    async fn ack(&self, message: &jetstream::Message, kind: AckKind) {
        let done = !matches!(kind, AckKind::Nak(_) | AckKind::Progress);
        match message.ack_with(kind).await {
            Ok(()) if done => {
                self.counters.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(e) => log::warn!("acknowledging a job: {e}"),
        }
    }
}

/// What a job that ran gives: where and how it ran, its outputs, and a
/// pipeline's steps.
type Ran = (RunInfo, BTreeMap<String, Tensor>, Vec<StepResponse>);

/// A consumer's ack wait, and the attempts a job has on it.
#[derive(Clone, Copy, Debug)]
struct Limits {
    ack_wait: Duration,
    attempts: u64,
}

/// Tells the server every `every` that a job is still running, so that
/// it is not delivered again meanwhile.
async fn keep_alive(message: &jetstream::Message, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = message.ack_with(AckKind::Progress).await {
            log::warn!("telling the server a job is in progress: {e}");
        }
    }
}

/// This machine's name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
