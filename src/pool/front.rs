//! `anycore serve --nats URL`: the HTTP API in front of the pool. Jobs
//! are checked here (JSON, kernel, parameters, caps, arrays), submitted to
//! the job stream and answered from the results bucket, so the service
//! holds no jobs of its own: any number of fronts can stand before one
//! pool.
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/jobs` | as `anycore serve`; the report also names the `worker` and the `attempt`; a full stream is a 503 with `Retry-After` |
//! | `GET /v1/jobs/{id}` | a `wait=false` job's status or result; any front answers a finished job, the one it was posted to a pending one |
//! | `GET /v1/health`, `GET /v1/devices` | `{"status": "ok"}`; the pool's workers ([`Presence`]) |
//! | `GET /metrics` | Prometheus text: this front's jobs, the pool's queue, dead letters and workers |
//!
//! | `POST /v1/pipelines` | as `anycore serve`: the pipeline runs as one unit on one worker |
//!
//! Stored tensors, cancelling and video are the single-machine service's:
//! here they answer 501 saying so.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use super::metrics::{FrontCounts, render_front};
use super::roster::Presence;
use super::wire::{PIPELINE, PoolJob, PoolResult, Status, WireArray, WorkerInfo, unix_ms};
use super::{Class, Pool, redacted};
use crate::backend::BackendChoice;
use crate::coordinator::spec::{JobSpec, PipelineSpec, explain_json, json_params};
use crate::error::Error;
use crate::kernel::{Kernel, Task};
use crate::service::ServiceConfig;
use crate::service::api::{
    ArrayIn, ArrayOut, JobRequest, JobResponse, OutputForm, PipelineResponse,
};
use crate::service::api::{PipelineQuery, WaitQuery};
use crate::service::api_error::{ApiError, PathId, bad_query};
use crate::service::budget::{Budget, Held};
use crate::service::caps::Caps;
use crate::service::ids::Id;
use crate::service::intake::{Decoding, Intake, off_runtime, read_request};
use crate::service::reply::{answer_bytes, encode, held_json_body, queued};
use crate::service::{deadline, guard, listen};
use crate::tensor::{Handle, Spec, Tensor};

/// `wait=false` jobs this front remembers at most (the oldest go first).
const PENDING: usize = 100_000;

/// A job's report from the pool: the report every front gives, with the
/// worker that ran it and on which delivery.
#[derive(Debug, Serialize)]
pub struct PooledResponse {
    /// The job's id (as `GET /v1/jobs/{id}` takes it).
    pub id: String,
    /// Where it ran, why, its phases, and its outputs.
    #[serde(flatten)]
    pub response: Report,
    /// The worker that ran it.
    pub worker: WorkerInfo,
    /// Which delivery ran it, from 1.
    pub attempt: u64,
}

/// A kernel's report or a pipeline's, as `anycore serve` gives them.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Report {
    /// A kernel's job.
    Job(JobResponse),
    /// A pipeline.
    Pipeline(PipelineResponse),
}

/// A `wait=false` job posted here: how to answer it, and its inputs'
/// objects (deleted once it ends).
struct Pending {
    form: OutputForm,
    /// Its arrays stored as objects (deleted once it ends).
    objects: Vec<WireArray>,
    posted: tokio::time::Instant,
    /// Whether its end was counted in the metrics.
    counted: bool,
}

#[derive(Clone)]
struct FrontState {
    pool: Pool,
    budget: Arc<Budget>,
    caps: Arc<Caps>,
    counts: Arc<FrontCounts>,
    pending: Arc<Mutex<PendingJobs>>,
    body_limit: usize,
    body_timeout: Duration,
    max_job: Duration,
    ttl: Duration,
}

impl FrontState {
    fn intake(&self) -> Intake<'_> {
        Intake {
            limit: self.body_limit,
            timeout: self.body_timeout,
            budget: &self.budget,
        }
    }
}

/// The `wait=false` jobs posted here, oldest first, within [`PENDING`] and
/// the results' time to live.
#[derive(Default)]
struct PendingJobs {
    jobs: HashMap<Id, Pending>,
    order: VecDeque<Id>,
}

impl PendingJobs {
    fn insert(&mut self, id: Id, pending: Pending, ttl: Duration) {
        while self.order.len() >= PENDING
            || self
                .order
                .front()
                .and_then(|old| self.jobs.get(old))
                .is_some_and(|p| p.posted.elapsed() > ttl)
        {
            if let Some(old) = self.order.pop_front() {
                self.jobs.remove(&old);
            }
        }
        self.jobs.insert(id, pending);
        self.order.push_back(id);
    }
}

/// Serves the API of the pool until `shutdown` completes, then lets the
/// connections finish (the jobs are the pool's: they go on).
pub async fn serve(
    listener: tokio::net::TcpListener,
    pool: Pool,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = FrontState {
        pool,
        budget: Arc::new(Budget::new(config.memory_budget)),
        caps: Arc::new(config.caps.clone()),
        counts: Arc::default(),
        pending: Arc::default(),
        body_limit: config.body_limit,
        body_timeout: config.body_timeout,
        max_job: config.max_job,
        ttl: config.results.ttl,
    };
    let app = Router::new()
        .route("/v1/jobs", post(post_job))
        .route("/v1/jobs/{id}", get(get_job).delete(not_pooled))
        .route("/v1/pipelines", post(post_pipeline))
        .route("/v1/tensors", any(not_pooled))
        .route("/v1/tensors/{id}", any(not_pooled))
        .route("/v1/video", any(not_pooled))
        .route(
            "/v1/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route("/v1/devices", get(devices))
        .route("/metrics", get(metrics))
        .fallback(guard::not_found)
        .method_not_allowed_fallback(guard::method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.access.clone()),
            guard::check,
        ));
    let connections = listen::accept(
        listener,
        app,
        config.header_timeout,
        config.max_connections,
        shutdown,
    )
    .await;
    if tokio::time::timeout(config.shutdown_timeout, connections.close())
        .await
        .is_err()
    {
        log::warn!(
            "shutdown: connections still open after {:?}; closing them",
            config.shutdown_timeout
        );
    }
    Ok(())
}

async fn not_pooled(request: axum::extract::Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_pooled",
        format!(
            "{} {} is served by `anycore serve` on one machine, not in front of a pool \
             (--nats): the pool takes jobs (POST /v1/jobs)",
            request.method(),
            request.uri().path()
        ),
    )
}

/// What a job asks beside its arrays.
struct Head {
    kernel: String,
    params: BTreeMap<String, serde_json::Value>,
    backend: Option<String>,
    form: OutputForm,
    timeout_ms: Option<u64>,
}

/// Memory the answer giving outputs of `specs` in `form` takes here: the
/// fetched `.npy` bytes and the tensor decoded from them, beside the
/// encoded answer.
fn answer_memory(specs: &[&Spec], form: OutputForm) -> u64 {
    let raw = specs.iter().fold(0u64, |n, s| n.saturating_add(s.bytes()));
    answer_bytes(specs.iter().copied(), form).saturating_add(raw.saturating_mul(2))
}

/// A tensor back from the handle it was checked as (no copy once the
/// check's own clones are gone).
fn unwrap(handle: Handle) -> Tensor {
    Tensor::new(handle.shape().to_vec(), handle.into_data())
}

/// Checks a job as `anycore serve` does before it runs (kernel,
/// parameters, caps, inputs, shapes, its outputs' size against this
/// front's memory: their answer passes through here), and gives its
/// tensors back.
fn checked_job(
    request: JobRequest,
    caps: &Caps,
    budget: &Budget,
) -> Result<(Head, BTreeMap<String, Tensor>), ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
    if !request.keep.is_empty() {
        return Err(bad(
            "'keep' needs the tensor store of a service on one machine; the pool returns every \
             output"
                .into(),
        ));
    }
    let kernel = Kernel::from_name(&request.kernel)?;
    caps.check_params(kernel, &json_params(&request.params)?)?;
    Class::of(request.backend.as_deref())?;
    let mut handles = BTreeMap::new();
    for (name, input) in request.inputs {
        let tensor = input.decode(&name)?;
        handles.insert(name, Handle::new(tensor));
    }
    let spec = JobSpec {
        kernel: &request.kernel,
        backend: request.backend.as_deref(),
        params: json_params(&request.params)?,
        outputs: Vec::new(),
        inputs: handles
            .iter()
            .map(|(n, h)| (n.clone(), h.clone()))
            .collect(),
    };
    // Planned, not admitted: it runs on a worker, not in this memory.
    let (job, _) = spec.into_job(BackendChoice::Auto)?;
    let (task, plan) = Task::planned(job)?;
    caps.check_job(task.operands(), &plan)?;
    drop(task);
    let specs: Vec<&Spec> = plan.outputs.iter().map(|(_, s)| s).collect();
    let answer = answer_memory(&specs, request.outputs);
    budget.could_hold(answer, "this job's answer")?;
    let head = Head {
        kernel: request.kernel,
        params: request.params,
        backend: request.backend,
        form: request.outputs,
        timeout_ms: request.timeout_ms,
    };
    let tensors = handles.into_iter().map(|(n, h)| (n, unwrap(h))).collect();
    Ok((head, tensors))
}

/// Checks a pipeline as `anycore serve` does before it runs (each step,
/// the whole, caps, its outputs' size against this front's memory), and
/// gives it back with its tensors.
fn checked_pipeline(
    spec: PipelineSpec<ArrayIn>,
    caps: &Caps,
    budget: &Budget,
    form: OutputForm,
) -> Result<PipelineSpec<Tensor>, ApiError> {
    for step in &spec.steps {
        let kernel = Kernel::from_name(&step.kernel)
            .map_err(|e| e.context(&format!("step '{}'", step.name)))?;
        caps.check_params(kernel, &json_params(&step.params)?)?;
    }
    if let Some((name, _)) = spec
        .outputs
        .iter()
        .find(|(_, o)| o.path.is_some() || o.keep)
    {
        return Err(ApiError::from(Error::BadInput(format!(
            "pipeline output '{name}': 'path' (the command line's) and 'keep' (a service's \
             store on one machine) do not go through the pool; it returns outputs in its \
             response"
        ))));
    }
    Class::of(spec.backend.as_deref())?;
    let spec = spec.try_map_inputs(|what, input| input.decode_as(what).map(Handle::new))?;
    let (pipeline, _, _) = spec.clone().into_checked_pipeline(BackendChoice::Auto)?;
    caps.check_pipeline(&pipeline)?;
    let specs: Vec<&Spec> = pipeline.output_specs().map(|(_, s)| s).collect();
    let answer = answer_memory(&specs, form);
    budget.could_hold(answer, "this pipeline's answer")?;
    drop(pipeline);
    Ok(spec.map_inputs(unwrap))
}

async fn post_job(
    State(state): State<FrontState>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = tokio::time::Instant::now();
    let Query(query) = query.map_err(bad_query)?;
    let (body, held) = read_request(state.intake(), &headers, body, Decoding::Arrays).await?;
    let (caps, budget) = (Arc::clone(&state.caps), Arc::clone(&state.budget));
    let (head, tensors) = off_runtime(body, move |body| {
        let request: JobRequest = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("invalid job: {}", explain_json(&e)),
            )
        })?;
        checked_job(request, &caps, &budget)
    })
    .await?;
    let deadline = deadline(state.max_job, head.timeout_ms)?;
    let id = Id::random();
    let job = PoolJob {
        inputs: state
            .pool
            .encode(&id.to_string(), &tensors)
            .await
            .map_err(unavailable)?,
        id: id.to_string(),
        kernel: head.kernel,
        params: head.params,
        backend: head.backend,
        pipeline: None,
        deadline_unix_ms: Some(deadline_at(arrived, deadline)),
    };
    drop(tensors);
    let waiting = Waiting {
        id,
        arrived,
        deadline,
        form: head.form,
    };
    // What the request held was its body and decoding, done with now.
    drop(held);
    match query.wait.unwrap_or(true) {
        true => submit_and_answer(&state, job, waiting).await,
        false => {
            submit(&state, &job, &waiting).await?;
            state.remember(&waiting, &job, false);
            Ok(queued(id))
        }
    }
}

async fn post_pipeline(
    State(state): State<FrontState>,
    query: Result<Query<PipelineQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = tokio::time::Instant::now();
    let Query(query) = query.map_err(bad_query)?;
    let deadline = deadline(state.max_job, query.timeout_ms)?;
    let form = query.outputs.unwrap_or_default();
    let (body, held) = read_request(state.intake(), &headers, body, Decoding::Buffered).await?;
    let (caps, budget) = (Arc::clone(&state.caps), Arc::clone(&state.budget));
    let spec = off_runtime(body, move |body| {
        let spec: PipelineSpec<ArrayIn> = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("invalid pipeline: {}", explain_json(&e)),
            )
        })?;
        checked_pipeline(spec, &caps, &budget, form)
    })
    .await?;
    let id = Id::random();
    let backend = spec.backend.clone();
    let pipeline = state
        .pool
        .encode_pipeline(&id.to_string(), spec)
        .await
        .map_err(unavailable)?;
    let job = PoolJob {
        id: id.to_string(),
        kernel: PIPELINE.to_owned(),
        params: BTreeMap::new(),
        backend,
        inputs: BTreeMap::new(),
        pipeline: Some(pipeline),
        deadline_unix_ms: Some(deadline_at(arrived, deadline)),
    };
    drop(held);
    let waiting = Waiting {
        id,
        arrived,
        deadline,
        form,
    };
    submit_and_answer(&state, job, waiting).await
}

/// When a job that arrived at `arrived` with `deadline` is out of time,
/// in milliseconds since the Unix epoch.
fn deadline_at(arrived: tokio::time::Instant, deadline: Duration) -> u64 {
    let left = deadline.saturating_sub(arrived.elapsed());
    unix_ms().saturating_add(left.as_millis().try_into().unwrap_or(u64::MAX))
}

/// An array that could not be stored (the server unreachable; those
/// stored before are deleted): 503, to be tried again.
fn unavailable(e: Error) -> ApiError {
    match e {
        Error::Internal(why) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "pool_unavailable",
            format!("the pool cannot take the job's arrays now: {why}"),
        ),
        other => other.into(),
    }
}

/// A job submitted and waited for: its id, when it arrived, how long it
/// may take, how its outputs come back.
struct Waiting {
    id: Id,
    arrived: tokio::time::Instant,
    deadline: Duration,
    form: OutputForm,
}

impl FrontState {
    /// Remembers a job for `GET /v1/jobs/{id}`: how to answer it, and its
    /// stored arrays (inline ones are not kept: they weigh).
    fn remember(&self, waiting: &Waiting, job: &PoolJob, counted: bool) {
        let pending = Pending {
            form: waiting.form,
            objects: job
                .arrays()
                .into_iter()
                .filter(|w| w.object.is_some())
                .cloned()
                .collect(),
            posted: waiting.arrived,
            counted,
        };
        let mut table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        table.insert(waiting.id, pending, self.ttl);
    }
}

/// Puts a job on the stream. Full: 503 `busy`, its stored arrays deleted.
/// Not confirmed (the server unreachable; sent again with the same id,
/// which the stream keeps once): 503 `pool_unavailable` naming the id, as
/// the job may still land and run.
async fn submit(state: &FrontState, job: &PoolJob, waiting: &Waiting) -> Result<(), ApiError> {
    let left = waiting.deadline.saturating_sub(waiting.arrived.elapsed());
    let sent = tokio::time::timeout(left, state.pool.submit_patiently(job, Duration::ZERO))
        .await
        .unwrap_or_else(|_| {
            Err(Error::Internal(
                "no confirmation within the job's deadline".into(),
            ))
        });
    match sent {
        Ok(()) => {
            state.counts.submitted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e @ (Error::Busy | Error::BadInput(_))) => {
            if matches!(e, Error::Busy) {
                state.counts.busy.fetch_add(1, Ordering::Relaxed);
            }
            state.pool.delete_objects(job.arrays().into_iter()).await;
            Err(e.into())
        }
        Err(e) => {
            state.remember(waiting, job, false);
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "pool_unavailable",
                format!(
                    "the pool did not confirm job {} ({e}); it may still run: GET /v1/jobs/{} \
                     tells",
                    waiting.id, waiting.id
                ),
            ))
        }
    }
}

/// Submits a job and answers its result, or a 504 past its deadline (the
/// worker stops it there too; `GET /v1/jobs/{id}` tells how it ended).
async fn submit_and_answer(
    state: &FrontState,
    job: PoolJob,
    waiting: Waiting,
) -> Result<Response, ApiError> {
    submit(state, &job, &waiting).await?;
    let left = waiting.deadline.saturating_sub(waiting.arrived.elapsed());
    // A little past the worker's own deadline: its stop arrives first.
    let grace = Duration::from_secs(2);
    let Ok(result) = tokio::time::timeout(left + grace, state.pool.wait(&job.id)).await else {
        state.counts.deadline_missed.fetch_add(1, Ordering::Relaxed);
        state.remember(&waiting, &job, false);
        return Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            format!(
                "no result within {} ms; GET /v1/jobs/{} tells how the job ended",
                waiting.deadline.as_millis(),
                waiting.id
            ),
        ));
    };
    let result = result?;
    state.counts.ended(result.status);
    let mut held = Held::default();
    let answer = answer(state, &result, waiting.form, &mut held).await;
    if let Err(e) = &answer
        && e.status == StatusCode::SERVICE_UNAVAILABLE
    {
        // No room to answer now: the result stays, for a GET later (a
        // retried POST would run the job again).
        state.remember(&waiting, &job, true);
        return Err(ApiError::new(
            e.status,
            "answer_deferred",
            format!(
                "{}; the job ran: GET /v1/jobs/{} gives its result",
                e.message, waiting.id
            ),
        ));
    }
    state.pool.forget(&job, &result).await;
    Ok(held_json_body(answer?, held))
}

/// A job's result as the API answers it: its report, or its error (400
/// for bad input, 504 for a job stopped at its deadline, 500
/// `dead_lettered` for one that failed every attempt, 410 when its
/// outputs were delivered already); the answer's memory is held in
/// `held`.
async fn answer(
    state: &FrontState,
    result: &PoolResult,
    form: OutputForm,
    held: &mut Held,
) -> Result<axum::body::Bytes, ApiError> {
    if let Err(e) = result.succeeded() {
        let (status, code) = match result.status {
            Status::DeadLetter => (StatusCode::INTERNAL_SERVER_ERROR, "dead_lettered"),
            Status::TimedOut => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
            _ => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        return Err(ApiError::new(
            status,
            code,
            format!("job {}: {e}", result.id),
        ));
    }
    let specs: Vec<Spec> = result
        .outputs
        .values()
        .filter_map(WireArray::spec)
        .collect();
    let bytes = answer_memory(&specs.iter().collect::<Vec<_>>(), form);
    state.budget.hold(held, bytes, "this job's answer")?;
    let outputs = state.pool.outputs(result).await.map_err(|e| match e {
        Error::BadInput(why) => ApiError::new(
            StatusCode::GONE,
            "gone",
            format!(
                "job {}'s outputs are no longer stored (they were delivered to the client \
                 that waited for them, or expired): {why}",
                result.id
            ),
        ),
        other => other.into(),
    })?;
    let outputs = outputs
        .into_iter()
        .map(|(name, t)| (name, ArrayOut::new(t, form)))
        .collect();
    let run = result
        .run
        .clone()
        .ok_or_else(|| Error::Remote(format!("job {}: its result has no report", result.id)))?;
    let response = match result.kernel == PIPELINE {
        true => Report::Pipeline(PipelineResponse {
            run,
            steps: result.steps.clone(),
            outputs,
        }),
        false => Report::Job(JobResponse {
            kernel: result.kernel.clone(),
            run,
            outputs,
        }),
    };
    let response = PooledResponse {
        id: result.id.clone(),
        response,
        worker: result.worker.clone(),
        attempt: result.attempt,
    };
    encode(move || Ok(response), bytes).await
}

async fn get_job(
    State(state): State<FrontState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let result = state.pool.result(&id.to_string()).await?;
    let (form, objects) = {
        let mut table = state.pending.lock().unwrap_or_else(|e| e.into_inner());
        match (table.jobs.get_mut(&id), &result) {
            (Some(p), Some(result)) => {
                // Counted once, however often it is polled.
                if !std::mem::replace(&mut p.counted, true) {
                    state.counts.ended(result.status);
                }
                (p.form, Some(std::mem::take(&mut p.objects)))
            }
            (Some(p), None) => (p.form, None),
            // Posted to another front: its result in the default form.
            (None, Some(_)) => (OutputForm::default(), None),
            (None, None) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!(
                        "no job with id {id} known here: a finished job is known to every \
                         front, a pending one to the front it was posted to"
                    ),
                ));
            }
        }
    };
    let Some(result) = result else {
        return Ok(Json(json!({"id": id, "status": "queued"})).into_response());
    };
    if let Some(objects) = objects {
        let inputs: Vec<&WireArray> = objects.iter().collect();
        state.pool.forget_inputs(&inputs, &result).await;
    }
    let mut held = Held::default();
    match answer(&state, &result, form, &mut held).await {
        Ok(report) => {
            let head = format!("{{\"id\":\"{id}\",\"status\":\"done\",\"result\":");
            let mut body = Vec::with_capacity(head.len() + report.len() + 1);
            body.extend_from_slice(head.as_bytes());
            body.extend_from_slice(&report);
            body.push(b'}');
            Ok(held_json_body(body.into(), held))
        }
        // No room now, gone, or the server's fault: said as an error.
        Err(e)
            if !matches!(
                e.code,
                "bad_request" | "dead_lettered" | "deadline_exceeded"
            ) =>
        {
            Err(e)
        }
        Err(e) => {
            let status = match e.code {
                "deadline_exceeded" => "timed_out",
                _ => "failed",
            };
            Ok(
                Json(json!({"id": id, "status": status, "error": e.body()["error"]}))
                    .into_response(),
            )
        }
    }
}

async fn devices(State(state): State<FrontState>) -> Result<Response, ApiError> {
    let workers: Vec<Presence> = state.pool.roster().await?;
    Ok(
        Json(json!({"pool": redacted(&state.pool.config().url), "workers": workers}))
            .into_response(),
    )
}

async fn metrics(State(state): State<FrontState>) -> Result<Response, ApiError> {
    let text = render_front(&state.counts, &state.pool).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
