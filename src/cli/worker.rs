//! `anycore worker --nats URL`: joins the pool of workers on a NATS
//! JetStream server and runs its jobs until SIGINT or SIGTERM (then
//! finishes the jobs it holds).

use std::sync::Arc;

use anycore::backend::BackendChoice;
use anycore::engine::{Engine, EngineConfig};
use anycore::pool::metrics::render_worker;
use anycore::pool::worker::{Worker, WorkerConfig};
use anycore::pool::{Pool, PoolConfig, redacted};
use anycore::{Error, Result};

/// Options of `anycore worker`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The NATS server (started with JetStream: `nats-server -js`).
    #[arg(long, value_name = "URL")]
    nats: String,
    /// Where to run jobs that do not ask for a backend: auto, gpu or cpu.
    /// A worker with a usable GPU (and not `cpu`) takes GPU-only jobs too.
    #[arg(long, default_value = "auto", value_parser = super::backend_choice)]
    backend: BackendChoice,
    #[command(flatten)]
    software_gpu: super::SoftwareGpu,
    /// Jobs run at once; the worker pulls no more than it has room for.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Its name in results (default HOST:PID).
    #[arg(long)]
    name: Option<String>,
    /// Seconds a job may go unacknowledged (a running one is kept alive)
    /// before another worker gets it; set when the pool's consumers are
    /// first made.
    #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
    ack_wait_s: f64,
    /// Deliveries of a failing job before it is dead-lettered; set when
    /// the pool's consumers are first made.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i64).range(1..=100))]
    max_deliver: i64,
    /// Longest a job may run here, in seconds (a job's own `timeout_ms`
    /// may ask for less): past it, the job is stopped and ends timed out.
    #[arg(long, default_value_t = 600.0, value_parser = positive_seconds)]
    max_job_s: f64,
    /// Seconds stopping (SIGINT, SIGTERM) waits for the jobs it runs;
    /// past it, the worker exits and they go to another worker after the
    /// ack wait.
    #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
    shutdown_timeout_s: f64,
    /// Serve this worker's counters as Prometheus text at
    /// http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
}

fn positive_seconds(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.1..=86400.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "'{text}' is not a number of seconds from 0.1 to 86400"
        )),
    }
}

pub fn main(args: Args) -> Result<()> {
    let mut config = EngineConfig::default();
    config.gpu.allow_software = args.software_gpu.allowed();
    config.use_gpu = args.backend != BackendChoice::Cpu;
    super::runtime()?.block_on(async {
        let engine = Arc::new(Engine::start(config).await?);
        if args.backend == BackendChoice::Gpu && !engine.coordinator().has_gpu() {
            return Err(Error::NoGpu(
                "--backend gpu needs a GPU adapter (see `anycore devices`)".into(),
            ));
        }
        let mut pool_config = PoolConfig::new(&args.nats);
        pool_config.ack_wait = std::time::Duration::from_secs_f64(args.ack_wait_s);
        pool_config.max_deliver = args.max_deliver;
        let pool = Pool::connect(pool_config).await?;
        let worker = Arc::new(Worker::new(
            pool,
            Arc::clone(&engine),
            WorkerConfig {
                backend: args.backend,
                concurrency: args.concurrency as usize,
                name: args.name,
                max_job: std::time::Duration::from_secs_f64(args.max_job_s),
                shutdown_timeout: std::time::Duration::from_secs_f64(args.shutdown_timeout_s),
            },
        ));
        if let Some(addr) = &args.metrics_addr {
            serve_metrics(addr, Arc::clone(&worker)).await?;
        }
        eprintln!(
            "anycore worker {} ({}) on {}",
            worker.info().name,
            worker.info().gpu.as_deref().unwrap_or("CPU only"),
            redacted(&args.nats)
        );
        let counters = worker.counters();
        Arc::clone(&worker)
            .run(super::serve::shutdown_signal())
            .await?;
        // Jobs cancelled at the shutdown timeout stop at their kernels'
        // next look; one that does not look for long does not hold the exit.
        let grace = std::time::Duration::from_secs_f64(args.shutdown_timeout_s);
        if tokio::time::timeout(grace, engine.shutdown()).await.is_err() {
            eprintln!("anycore worker: jobs still running after cancelling them; exiting anyway");
        }
        let c = counters.counts();
        eprintln!(
            "anycore worker: stopped; consumed {}, ran {}, acked {}, redelivered {}, dead-lettered {}",
            c.consumed, c.ran, c.acked, c.redelivered, c.dead_lettered
        );
        Ok(())
    })
}

/// Serves `GET /metrics` on `addr` for as long as the process runs.
async fn serve_metrics(addr: &str, worker: Arc<Worker>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::BadInput(format!("--metrics-addr: cannot listen on {addr}: {e}")))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4",
                )],
                render_worker(&worker.presence()),
            )
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            log::warn!("the metrics server stopped: {e}");
        }
    });
    Ok(())
}
