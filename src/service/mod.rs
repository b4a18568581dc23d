//! The HTTP service (`anycore serve`): the engine behind a JSON API.
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/jobs` | runs a job ([`api::JobRequest`]) and answers 200 with [`api::JobResponse`]; with `?wait=false` answers 202 `{"id"}` at once |
//! | `GET /v1/jobs/{id}` | the status or result of a job posted with `wait=false` |
//! | `DELETE /v1/jobs/{id}` | cancels it: queued, it never starts; running, it stops at its kernel's next look |
//! | `POST /v1/tensors` | stores a tensor (`.npy` bytes, or an input's JSON) and answers 201 `{"id", "dtype", "shape"}` |
//! | `GET /v1/tensors/{id}`, `DELETE /v1/tensors/{id}` | the stored tensor as `.npy`; forgets it |
//! | `POST /v1/pipelines` | runs a pipeline ([`PipelineSpec`] of [`api::ArrayIn`] inputs) as one unit and answers 200 with [`api::PipelineResponse`]; `?outputs=npy` for base64 `.npy` outputs, `?timeout_ms=N` for a deadline |
//! | `POST /v1/video?filter=…` | a YUV4MPEG2 body filtered frame by frame, streamed back as the answer ([`video`]) |
//! | `GET /v1/health` | `{"status": "ok"}` |
//! | `GET /v1/devices` | the adapters and the backends in use |
//! | `GET /metrics` | Prometheus text |
//!
//! Jobs and pipelines take `{"tensor": ID}` as an input, and keep outputs
//! in the store instead of returning them (`"keep": [NAMES]` in a job,
//! `"keep": true` on a pipeline's output): they come back as `{"tensor":
//! ID, "dtype", "shape"}`. The store is bounded in count and bytes
//! ([`ServiceConfig`]).
//!
//! Errors are `{"error": {"code", "message"}}`: 400 for a bad job, 404 for
//! an unknown id (a job's or a stored tensor's), 413 past the body limit,
//! 503 with `Retry-After` when the queue is full (the service never waits
//! for room, so it never hangs), 507 when the tensor store is full.
//! Every job and pipeline has a deadline (its `timeout_ms`, at most and by
//! default `--max-job-s`): past it, or when the client waiting for it goes
//! away, it is cancelled — stopped where it runs — and a deadline answers
//! 504 `deadline_exceeded`.
//! Results of `wait=false` jobs are kept within bounds of count, bytes and
//! time ([`results`]); a dropped one answers 404 saying so.
//! [`serve`] drains jobs in flight once its shutdown future completes.

pub mod api;
pub(crate) mod api_error;
pub(crate) mod budget;
pub mod caps;
pub mod guard;
pub mod ids;
pub(crate) mod intake;
pub(crate) mod listen;
mod metrics;
pub(crate) mod reply;
pub mod results;
pub mod store;
pub mod verify;
mod video;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use self::api::{
    ArrayIn, Decoded, JobRequest, JobResponse, OutputForm, PipelineResponse, StoreInput,
};
use self::api::{PipelineQuery, WaitQuery};
use self::api_error::{ApiError, PathId, bad_query};
use self::budget::Budget;
use self::ids::Id;
use self::intake::{Decoding, off_runtime, read_request};
use self::metrics::Metrics;
use self::reply::{answer_bytes, encode, held_json_body, json_body, queued};
use self::results::{Entry, JobTable, Lookup};
use self::store::Store;
use crate::backend::BackendChoice;
use crate::backend::gpu::adapter;
use crate::coordinator::spec::{PipelineSpec, explain_json, json_params};
use crate::coordinator::{Control, JobReport, Submitted};
use crate::engine::Engine;
use crate::error::Error;
use crate::kernel::Kernel;
use crate::tensor::Handle;

/// Service settings.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Largest request body in bytes (413 past it).
    pub body_limit: usize,
    /// Longest a request body may take to arrive (408 past it).
    pub body_timeout: std::time::Duration,
    /// Longest a request's headers may take to arrive, and a kept-alive
    /// connection may stay idle, before the connection is closed.
    pub header_timeout: std::time::Duration,
    /// Connections open at once at most; more wait to be accepted.
    pub max_connections: usize,
    /// Longest shutdown waits, once signalled, for connections and jobs in
    /// flight to finish.
    pub shutdown_timeout: std::time::Duration,
    /// Bounds on the results of `wait=false` jobs kept for polling.
    pub results: results::Limits,
    /// Longest a job or pipeline may be predicted to run (the cost model,
    /// on the fastest backend); longer ones are refused (422), before
    /// anything runs.
    pub max_job: std::time::Duration,
    /// Host memory that request bodies and admitted jobs may hold at once
    /// ([`budget`]): past it, a 503 (413 for what could never fit).
    pub memory_budget: u64,
    /// Caps on kernels' parameters and on tensors' elements ([`caps`]).
    pub caps: caps::Caps,
    /// Most tensors the store keeps (`/v1/tensors`, kept outputs).
    pub max_tensors: usize,
    /// Most bytes of tensors the store keeps.
    pub max_tensor_bytes: usize,
    /// Who may call ([`guard`]): a token, an allowed web origin, loopback
    /// names only.
    pub access: guard::Access,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            body_limit: 256 << 20,
            body_timeout: std::time::Duration::from_secs(30),
            header_timeout: std::time::Duration::from_secs(30),
            max_connections: 4096,
            shutdown_timeout: std::time::Duration::from_secs(30),
            results: results::Limits::default(),
            max_job: std::time::Duration::from_secs(600),
            memory_budget: crate::tensor::alloc::default_budget(),
            caps: caps::Caps::default(),
            max_tensors: 1024,
            max_tensor_bytes: 1 << 30,
            access: guard::Access::default(),
        }
    }
}

#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    jobs: Arc<Mutex<JobTable>>,
    budget: Arc<Budget>,
    caps: Arc<caps::Caps>,
    /// Set when shutdown's deadline passes with work still running: every
    /// job and pipeline waited for is then cancelled.
    abort: tokio::sync::watch::Receiver<bool>,
    body_limit: usize,
    body_timeout: std::time::Duration,
    max_job: std::time::Duration,
    /// Room for video streams at once ([`video::MAX_STREAMS`]).
    videos: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// How its requests' bodies are taken in.
    fn intake(&self) -> intake::Intake<'_> {
        intake::Intake {
            limit: self.body_limit,
            timeout: self.body_timeout,
            budget: &self.budget,
        }
    }
}

/// The routes, over `engine`; once `draining` is set, every request is a
/// 503 `shutting_down`.
fn router(
    engine: Arc<Engine>,
    config: &ServiceConfig,
    draining: Arc<AtomicBool>,
    abort: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let state = AppState {
        engine,
        abort,
        metrics: Arc::default(),
        store: Arc::new(Store::new(config.max_tensors, config.max_tensor_bytes)),
        jobs: Arc::new(Mutex::new(JobTable::new(config.results))),
        budget: Arc::new(Budget::new(config.memory_budget)),
        caps: Arc::new(config.caps.clone()),
        body_limit: config.body_limit,
        body_timeout: config.body_timeout,
        max_job: config.max_job,
        videos: Arc::new(tokio::sync::Semaphore::new(video::MAX_STREAMS)),
    };
    Router::new()
        .route("/v1/jobs", post(post_job))
        .route("/v1/jobs/{id}", get(get_job).delete(delete_job))
        .route("/v1/pipelines", post(post_pipeline))
        .route("/v1/tensors", post(post_tensor))
        .route("/v1/tensors/{id}", get(get_tensor).delete(delete_tensor))
        .route(
            "/v1/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route("/v1/devices", get(devices))
        .route("/v1/video", post(video::post_video))
        .route("/metrics", get(render_metrics))
        .fallback(guard::not_found)
        .method_not_allowed_fallback(guard::method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.access.clone()),
            guard::check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            draining,
            refuse_while_draining,
        ))
}

/// 503 `shutting_down` (with `Retry-After`) for any request once the
/// service drains: a client on a kept-alive connection learns to go
/// elsewhere instead of starting work that shutdown would wait for.
async fn refuse_while_draining(
    State(draining): State<Arc<AtomicBool>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if draining.load(Ordering::SeqCst) {
        return ApiError::from(Error::ShuttingDown).into_response();
    }
    next.run(request).await
}

/// Serves until `shutdown` completes, then finishes the jobs in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = Arc::new(AtomicBool::new(false));
    let (abort, aborted) = tokio::sync::watch::channel(false);
    let app = router(Arc::clone(&engine), &config, Arc::clone(&draining), aborted);
    let stop_accepting = async move {
        shutdown.await;
        draining.store(true, Ordering::SeqCst);
    };
    let connections = listen::accept(
        listener,
        app,
        config.header_timeout,
        config.max_connections,
        stop_accepting,
    )
    .await;
    // Once signalled, connections get `shutdown_timeout` to finish; one
    // that never completes its request does not hold the process.
    let start = tokio::time::Instant::now();
    let mut closing = tokio::spawn(connections.close());
    if tokio::time::timeout(config.shutdown_timeout, &mut closing)
        .await
        .is_err()
    {
        log::warn!(
            "shutdown: connections still open after {:?}; closing them",
            config.shutdown_timeout
        );
    }
    // Jobs in flight finish within what is left of the deadline; past it,
    // they are cancelled, and stop at their kernels' next look.
    let left = config.shutdown_timeout.saturating_sub(start.elapsed());
    let stopped = engine.shutdown();
    tokio::pin!(stopped);
    if tokio::time::timeout(left, &mut stopped).await.is_err() {
        log::warn!(
            "shutdown: jobs still running after {:?}; cancelling them",
            config.shutdown_timeout
        );
        let _ = abort.send(true);
        if tokio::time::timeout(ABORT_GRACE, stopped).await.is_err() {
            log::warn!("shutdown: jobs still running after cancelling them; leaving them");
        }
        // Their clients are told (503 `shutting_down`) before the process
        // goes; a connection that still does not close is left.
        let _ = tokio::time::timeout(ANSWER_GRACE, closing).await;
    }
    Ok(())
}

/// How long shutdown waits, once it cancelled the jobs still running, for
/// their answers to go out.
const ANSWER_GRACE: Duration = Duration::from_millis(500);

/// How long shutdown waits for cancelled jobs to stop (a GPU dispatch
/// under way cannot be interrupted).
const ABORT_GRACE: Duration = Duration::from_secs(5);

/// What a finished job answers: how outputs come back, and which go to
/// the store instead.
struct Answer {
    form: OutputForm,
    keep: Vec<String>,
}

/// Counts a finished job in the metrics, keeps the outputs asked to be
/// kept, and turns it into a response.
fn finish(
    metrics: &Metrics,
    store: &Store,
    kernel: &str,
    result: crate::Result<JobReport>,
    answer: Answer,
) -> Result<JobResponse, ApiError> {
    match result {
        Ok(mut report) => {
            let backend = report.backend.to_string();
            metrics.record(kernel, &backend, "ok", Some(report.timings.total / 1e3));
            metrics.record_traffic(&backend, &report.traffic);
            let kept = keep(store, std::mem::take(&mut report.kept), &answer.keep)?;
            let mut response = JobResponse::new(report, answer.form);
            response.outputs.extend(kept);
            Ok(response)
        }
        Err(e) => {
            metrics.record(kernel, "none", outcome(&e), None);
            Err(e.into())
        }
    }
}

/// A failed job's outcome in the metrics.
fn outcome(e: &Error) -> &'static str {
    match e {
        Error::Cancelled => "cancelled",
        Error::DeadlineExceeded { .. } => "timed_out",
        _ => "error",
    }
}

/// The deadline of a job that asked for `timeout_ms`: at most, and by
/// default, the service's limit.
pub(crate) fn deadline(max_job: Duration, timeout_ms: Option<u64>) -> Result<Duration, ApiError> {
    let Some(ms) = timeout_ms else {
        return Ok(max_job);
    };
    if ms == 0 {
        return Err(ApiError::from(Error::bad("timeout_ms must be at least 1")));
    }
    let asked = Duration::from_millis(ms);
    if asked > max_job {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_much_work",
            format!(
                "timeout_ms {ms} is over this service's limit of {} ms per job",
                max_job.as_millis()
            ),
        ));
    }
    Ok(asked)
}

/// Completes `deadline` after `since`; never, for a deadline too far to
/// count to (a service limit of years).
async fn expiry(since: tokio::time::Instant, deadline: Duration) {
    match since.checked_add(deadline) {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits for submitted work within `deadline`, counted from `since` (its
/// arrival). Past it the work is cancelled — stopped where it runs — and
/// answers [`Error::DeadlineExceeded`].
async fn wait_within<R>(
    handle: Submitted<R>,
    since: tokio::time::Instant,
    deadline: Duration,
    mut abort: tokio::sync::watch::Receiver<bool>,
) -> crate::Result<R> {
    let control = handle.control();
    let wait = handle.wait();
    tokio::pin!(wait);
    let aborted = async {
        // A service gone without aborting (its sender dropped) aborts nothing.
        if abort.wait_for(|a| *a).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = &mut wait => result,
        () = aborted => {
            control.cancel();
            match wait.await {
                Err(Error::Cancelled) => Err(Error::ShuttingDown),
                other => other,
            }
        }
        () = expiry(since, deadline) => {
            control.cancel();
            match wait.await {
                Err(Error::Cancelled) => Err(Error::DeadlineExceeded {
                    ms: deadline.as_millis() as u64,
                }),
                other => other,
            }
        }
    };
    result
}

/// Runs `settle` (which waits for the work `control` is of, counts it in
/// the metrics and makes the answer) on a task of its own, and gives its
/// answer. If this future is dropped first — the client went away — the
/// work is cancelled, as nobody would read it, and `settle` still counts
/// it.
async fn settled<T: Send + 'static>(
    control: Arc<Control>,
    settle: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    /// Cancels the work unless disarmed.
    struct CancelOnDrop(Option<Arc<Control>>);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            if let Some(control) = self.0.take() {
                control.cancel();
            }
        }
    }
    let mut unread = CancelOnDrop(Some(control));
    let answer = tokio::spawn(settle).await;
    unread.0 = None;
    answer.map_err(|e| ApiError::from(Error::Panicked(e.to_string())))?
}

/// Puts the kept outputs named in `names` (as handles: on the GPU where
/// they were computed there) into the store, all or none, and gives what
/// the response says of each: `{"tensor": ID, "dtype", "shape"}`.
fn keep(
    store: &Store,
    mut kept: BTreeMap<String, Handle>,
    names: &[String],
) -> crate::Result<Vec<(String, api::ArrayOut)>> {
    if let Some(name) = names.iter().find(|n| !kept.contains_key(n.as_str())) {
        return Err(Error::BadInput(format!(
            "output '{name}' was asked to be kept, but this job does not give it"
        )));
    }
    let tensors: Vec<Handle> = names.iter().filter_map(|n| kept.remove(n)).collect();
    let ids = store.put_all(tensors.clone())?;
    Ok(names
        .iter()
        .zip(tensors.iter().zip(ids))
        .map(|(name, (t, id))| (name.clone(), api::ArrayOut::kept(t, id)))
        .collect())
}

/// Names asked to be kept, each once.
fn check_keep(names: &[String]) -> Result<(), ApiError> {
    let mut seen = std::collections::BTreeSet::new();
    match names.iter().find(|name| !seen.insert(name.as_str())) {
        Some(name) => Err(ApiError::from(Error::BadInput(format!(
            "output '{name}' is asked to be kept twice"
        )))),
        None => Ok(()),
    }
}

/// Memory an admitted job or pipeline holds: the tensors it was given
/// (those the store holds are counted there), what its steps take beside
/// them (`working`: outputs, scratch), and its encoded answer.
fn job_bytes<'h>(given: impl Iterator<Item = &'h Handle>, working: u64, answer: u64) -> u64 {
    given
        .filter(|h| !h.is_shared())
        .fold(working.saturating_add(answer), |n, h| {
            n.saturating_add(h.bytes())
        })
}

async fn post_job(
    State(state): State<AppState>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = tokio::time::Instant::now();
    let Query(query) = query.map_err(bad_query)?;
    let (body, mut held) = read_request(state.intake(), &headers, body, Decoding::Arrays).await?;
    let (store, caps) = (Arc::clone(&state.store), Arc::clone(&state.caps));
    let (decoded, answer, timeout_ms) = off_runtime(body, move |body| {
        let request: JobRequest = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("invalid job: {}", explain_json(&e)),
            )
        })?;
        // An unknown kernel or a bad parameter: the job's own checks say so.
        if let (Ok(kernel), Ok(params)) = (
            Kernel::from_name(&request.kernel),
            json_params(&request.params),
        ) {
            caps.check_params(kernel, &params)?;
        }
        let keep = request.keep.clone();
        check_keep(&keep)?;
        let timeout_ms = request.timeout_ms;
        let decoded = request.into_task(&store)?;
        let form = decoded.form;
        Ok((decoded, Answer { form, keep }, timeout_ms))
    })
    .await?;
    let Decoded {
        task, plan, choice, ..
    } = decoded;
    state.caps.check_job(task.operands(), &plan)?;
    let deadline = deadline(state.max_job, timeout_ms)?;
    let kernel = task.kernel().name();
    within_work_limit(&state, &[(task.kernel(), task.work_units())])?;
    let answered = plan
        .outputs
        .iter()
        .filter(|(name, _)| !answer.keep.iter().any(|k| k == name))
        .map(|(_, spec)| spec);
    let answer_bytes = answer_bytes(answered, answer.form);
    let bytes = job_bytes(
        task.operands().into_iter(),
        plan.working_bytes(),
        answer_bytes,
    );
    state.budget.hold(&mut held, bytes, "this job")?;
    // Never wait for room: a full queue is a 503 the client can retry.
    let handle =
        state
            .engine
            .coordinator()
            .try_submit_keeping(task, answer.keep.clone(), choice)?;
    if query.wait.unwrap_or(true) {
        let (metrics, store) = (Arc::clone(&state.metrics), Arc::clone(&state.store));
        let abort = state.abort.clone();
        let body = settled(handle.control(), async move {
            let result = wait_within(handle, arrived, deadline, abort).await;
            let build = move || finish(&metrics, &store, kernel, result, answer);
            Ok((encode(build, answer_bytes).await?, held))
        })
        .await?;
        return Ok(held_json_body(body.0, body.1));
    }
    let id = Id::random();
    state
        .jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .start(id, handle.control());
    let (jobs, metrics, store) = (
        Arc::clone(&state.jobs),
        Arc::clone(&state.metrics),
        Arc::clone(&state.store),
    );
    let abort = state.abort.clone();
    tokio::spawn(async move {
        let result = wait_within(handle, arrived, deadline, abort).await;
        // Kept encoded: polling copies bytes, it encodes nothing.
        let build = move || finish(&metrics, &store, kernel, result, answer);
        let entry = match encode(build, answer_bytes).await {
            Ok(json) => Entry::Done(json),
            Err(e) => Entry::Failed(e),
        };
        jobs.lock()
            .unwrap_or_else(|e| e.into_inner())
            .finish(id, entry);
        drop(held);
    });
    Ok(queued(id))
}

async fn post_pipeline(
    State(state): State<AppState>,
    query: Result<Query<PipelineQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = tokio::time::Instant::now();
    let Query(query) = query.map_err(bad_query)?;
    let deadline = deadline(state.max_job, query.timeout_ms)?;
    let (body, mut held) = read_request(state.intake(), &headers, body, Decoding::Buffered).await?;
    let (store, caps) = (Arc::clone(&state.store), Arc::clone(&state.caps));
    let (pipeline, choice, kept) = off_runtime(body, move |body| {
        let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message);
        let spec: PipelineSpec<ArrayIn> = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("invalid pipeline: {}", explain_json(&e))))?;
        for step in &spec.steps {
            if let (Ok(kernel), Ok(params)) =
                (Kernel::from_name(&step.kernel), json_params(&step.params))
            {
                caps.check_params(kernel, &params)?;
            }
        }
        if let Some((name, _)) = spec.outputs.iter().find(|(_, o)| o.path.is_some()) {
            return Err(bad(format!(
                "pipeline output '{name}': 'path' is for the command line; the service returns \
                 outputs in its response"
            )));
        }
        let kept: Vec<String> = spec
            .outputs
            .iter()
            .filter(|(_, o)| o.keep)
            .map(|(name, _)| name.clone())
            .collect();
        let store = &*store;
        let (pipeline, choice, _) = spec
            .map_inputs(|input| StoreInput { input, store })
            .into_pipeline(BackendChoice::Auto)?;
        Ok((pipeline, choice, kept))
    })
    .await?;
    within_work_limit(&state, &pipeline.work().collect::<Vec<_>>())?;
    state.caps.check_pipeline(&pipeline)?;
    let form = query.outputs.unwrap_or_default();
    let answered = pipeline
        .output_specs()
        .filter(|(name, _)| !kept.iter().any(|k| k == name))
        .map(|(_, spec)| spec);
    let answer_bytes = answer_bytes(answered, form);
    let bytes = job_bytes(pipeline.given(), pipeline.working_bytes(), answer_bytes);
    state.budget.hold(&mut held, bytes, "this pipeline")?;
    // Never wait for room: a full queue is a 503 the client can retry.
    let handle = state
        .engine
        .coordinator()
        .try_submit_pipeline(pipeline, choice)?;
    let (metrics, store) = (Arc::clone(&state.metrics), Arc::clone(&state.store));
    let abort = state.abort.clone();
    let (body, held) = settled(handle.control(), async move {
        let result = wait_within(handle, arrived, deadline, abort).await;
        let build = move || finish_pipeline(&metrics, &store, result, &kept, form);
        Ok((encode(build, answer_bytes).await?, held))
    })
    .await?;
    Ok(held_json_body(body, held))
}

/// Counts a finished pipeline in the metrics, keeps the outputs asked to
/// be kept, and turns it into a response ([`finish`]'s for pipelines).
fn finish_pipeline(
    metrics: &Metrics,
    store: &Store,
    result: crate::Result<crate::coordinator::PipelineReport>,
    kept: &[String],
    form: OutputForm,
) -> Result<PipelineResponse, ApiError> {
    match result {
        Ok(mut report) => {
            let backend = report.backend.to_string();
            let seconds = report.timings.total / 1e3;
            metrics.record("pipeline", &backend, "ok", Some(seconds));
            metrics.record_traffic(&backend, &report.traffic);
            let kept = keep(store, std::mem::take(&mut report.kept), kept)?;
            let mut response = PipelineResponse::new(report, form);
            response.outputs.extend(kept);
            Ok(response)
        }
        Err(e) => {
            metrics.record("pipeline", "none", outcome(&e), None);
            Err(e.into())
        }
    }
}

/// `POST /v1/tensors`: stores a tensor sent as `.npy` bytes, or as the JSON
/// of an input (`{"dtype", "shape", "data"}` or `{"npy"}`), and answers
/// 201 `{"id", "dtype", "shape"}`.
async fn post_tensor(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (body, _held) = read_request(state.intake(), &headers, body, Decoding::Arrays).await?;
    let tensor = off_runtime(body, |body| {
        let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message);
        if body.starts_with(b"\x93NUMPY") {
            return crate::tensor::npy::from_bytes(&body)
                .map_err(|e| bad(format!("the body: {e}")));
        }
        let array: ArrayIn = serde_json::from_slice(&body).map_err(|e| {
            bad(format!(
                "the body is neither .npy bytes nor an array's JSON ({})",
                explain_json(&e)
            ))
        })?;
        if matches!(array, ArrayIn::Stored { .. }) {
            return Err(bad(
                "the body names a stored tensor; send the data itself".into()
            ));
        }
        Ok(array.decode("the body")?)
    })
    .await?;
    let (dtype, shape) = (tensor.dtype().name(), tensor.shape().to_vec());
    let id = state.store.put(Handle::new(tensor))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "dtype": dtype, "shape": shape})),
    )
        .into_response())
}

/// `GET /v1/tensors/{id}`: the stored tensor as `.npy` bytes.
async fn get_tensor(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let handle = state.store.get(id)?;
    // Kept on the GPU: read back (once; the host copy stays).
    let tensor = state.engine.coordinator().read(&handle).await?;
    // Encoding a large tensor is blocking work: off the async workers.
    let bytes = tokio::task::spawn_blocking(move || crate::tensor::npy::to_bytes(&tensor))
        .await
        .map_err(|e| ApiError::from(Error::Panicked(e.to_string())))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// `DELETE /v1/tensors/{id}`: forgets a stored tensor.
async fn delete_tensor(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    state.store.remove(id)?;
    Ok(Json(json!({"id": id, "status": "deleted"})).into_response())
}

/// Refuses (422) work the cost model predicts to run longer than the
/// service allows, on the fastest backend it has.
fn within_work_limit(
    state: &AppState,
    kernels: &[(crate::kernel::Kernel, f64)],
) -> Result<(), ApiError> {
    let Some(ms) = state.engine.coordinator().fastest_ms(kernels) else {
        return Ok(());
    };
    let limit = state.max_job.as_secs_f64();
    if ms / 1e3 > limit {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_much_work",
            format!(
                "this work is predicted to take {:.0} s on the fastest backend here, over \
                 this service's limit of {limit:.0} s per job (serve --max-job-s); make it \
                 smaller",
                ms / 1e3
            ),
        ));
    }
    Ok(())
}

/// The job `id`, or a 404 saying whether its result was dropped.
fn entry(jobs: &mut JobTable, id: Id) -> Result<&Entry, ApiError> {
    match jobs.lookup(id) {
        Lookup::Known(entry) => Ok(entry),
        Lookup::Dropped => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "job {id} finished, but its result is no longer kept (results are kept \
                 for a limited time, count and size; fetch them sooner)"
            ),
        )),
        Lookup::Unknown => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no job with id {id}"),
        )),
    }
}

async fn get_job(State(state): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let mut jobs = state.jobs.lock().unwrap_or_else(|e| e.into_inner());
    let body = match entry(&mut jobs, id)? {
        Entry::Running(control) => {
            let status = if control.has_started() {
                "running"
            } else {
                "queued"
            };
            json!({"id": id, "status": status})
        }
        Entry::Done(result) => {
            // The result as it was encoded when the job finished, copied
            // out of the lock.
            let result = result.clone();
            drop(jobs);
            let head = format!("{{\"id\":\"{id}\",\"status\":\"done\",\"result\":");
            let mut body = Vec::with_capacity(head.len() + result.len() + 1);
            body.extend_from_slice(head.as_bytes());
            body.extend_from_slice(&result);
            body.push(b'}');
            return Ok(json_body(Bytes::from(body)));
        }
        Entry::Failed(e) => {
            let status = match e.code {
                "cancelled" => "cancelled",
                "deadline_exceeded" => "timed_out",
                _ => "failed",
            };
            json!({"id": id, "status": status, "error": e.body()["error"]})
        }
    };
    Ok(Json(body).into_response())
}

async fn delete_job(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let mut jobs = state.jobs.lock().unwrap_or_else(|e| e.into_inner());
    match entry(&mut jobs, id)? {
        Entry::Running(control) => {
            control.cancel();
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"id": id, "status": "cancelling"})),
            )
                .into_response())
        }
        _ => Ok(Json(json!({"id": id, "status": "finished"})).into_response()),
    }
}

async fn devices(State(state): State<AppState>) -> Response {
    let coordinator = state.engine.coordinator();
    let (gpu, cpu) = (
        coordinator.gpu_device().map(str::to_owned),
        coordinator.cpu_device().to_owned(),
    );
    // Enumerating adapters talks to drivers: keep it off the async workers.
    let adapters =
        tokio::task::spawn_blocking(|| adapter::reports(adapter::software_allowed_by_env()))
            .await
            .unwrap_or_default();
    // A GPU whose device was lost still has its name, but takes no work.
    let gpu_lost = coordinator.gpu_lost();
    let gpu_available = gpu.is_some() && gpu_lost.is_none();
    Json(json!({"gpu": gpu, "cpu": cpu, "adapters": adapters,
                "gpu_available": gpu_available, "gpu_lost": gpu_lost}))
    .into_response()
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    let memory = (state.budget.total(), state.budget.used());
    let text = state.metrics.render(state.engine.coordinator(), memory);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
