//! `anycore serve`: the HTTP service on an address, until SIGINT or SIGTERM,
//! after which jobs in flight finish before the process exits 0.

use std::sync::Arc;

use anycore::engine::{Engine, EngineConfig};
use anycore::pool::{Pool, PoolConfig, front, redacted};
use anycore::service::caps::Caps;
use anycore::service::guard::Access;
use anycore::service::results::Limits;
use anycore::service::{ServiceConfig, serve};
use anycore::{Error, Result};

/// Options of `anycore serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: String,
    #[command(flatten)]
    software_gpu: super::SoftwareGpu,
    /// Jobs queued or running before new ones get 503.
    #[arg(long, default_value_t = 256, conflicts_with = "nats")]
    max_in_flight: usize,
    /// Largest request body, in MiB (413 past it).
    #[arg(long, default_value_t = 256)]
    body_limit_mib: usize,
    /// Seconds a request body may take to arrive (408 past it).
    #[arg(long, default_value_t = 30.0)]
    body_timeout_s: f64,
    /// Seconds a request's headers may take to arrive, and a kept-alive
    /// connection may stay idle, before the connection is closed.
    #[arg(long, default_value_t = 30.0)]
    header_timeout_s: f64,
    /// Connections open at once at most; more wait to be accepted.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Seconds shutdown (SIGINT, SIGTERM) waits for connections and jobs in
    /// flight before the process exits anyway.
    #[arg(long, default_value_t = 30.0)]
    shutdown_timeout_s: f64,
    /// MiB of `wait=false` results kept for polling (the oldest go first).
    #[arg(long, default_value_t = 1024, conflicts_with = "nats")]
    results_mib: usize,
    /// Seconds a `wait=false` result is kept for polling.
    #[arg(long, default_value_t = 3600.0)]
    result_ttl_s: f64,
    /// Longest a job or pipeline may run, in seconds: predicted longer, it
    /// is a 422 before anything runs; running longer, it is stopped (504).
    /// Also the most a job's `timeout_ms` may ask for.
    #[arg(long, default_value_t = 600.0)]
    max_job_s: f64,
    /// MiB of host memory that request bodies and admitted jobs may hold at
    /// once (their inputs, outputs, scratch and answers); past it, a 503
    /// (413 for a job that could never fit). Default: half the machine's.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// A largest value for one kernel's numeric parameter, as
    /// KERNEL.PARAM=MAX (e.g. mandelbrot.max_iter=100000); repeat for more.
    /// Jobs past it get 422 `over_cap`.
    #[arg(long = "cap", value_name = "KERNEL.PARAM=MAX")]
    caps: Vec<String>,
    /// Most elements in any tensor a job is given or gives (422 past it).
    #[arg(long)]
    max_elements: Option<u64>,
    /// Most tensors kept in the store (`/v1/tensors`, kept outputs); past
    /// it, storing one more is a 507.
    #[arg(long, default_value_t = 1024, conflicts_with = "nats")]
    max_tensors: usize,
    /// Most MiB of tensors kept in the store; past it, a 507.
    #[arg(long, default_value_t = 1024, conflicts_with = "nats")]
    tensor_store_mib: usize,
    /// A file holding the bearer token every route but /v1/health needs
    /// (`ANYCORE_TOKEN` gives the token itself).
    #[arg(long, value_name = "PATH")]
    token_file: Option<std::path::PathBuf>,
    /// Serve on an address other than loopback without a token.
    #[arg(long)]
    insecure: bool,
    /// The one web origin (e.g. `https://app.example`) whose pages may call
    /// the service; without it, requests from web pages are refused.
    #[arg(long, value_name = "ORIGIN")]
    cors: Option<String>,
    /// Put jobs on the pool of `anycore worker`s on this NATS server
    /// instead of running them here (`POST /v1/jobs`, `GET /v1/jobs/{id}`;
    /// `/v1/devices` lists the workers).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Jobs the pool's stream holds at most before new ones get 503; set
    /// when the stream is first made.
    #[arg(long, default_value_t = 100_000, requires = "nats",
          value_parser = clap::value_parser!(i64).range(1..))]
    pool_max_jobs: i64,
    /// MiB the pool's stream holds at most, likewise.
    #[arg(long, default_value_t = 1024, requires = "nats",
          value_parser = clap::value_parser!(i64).range(1..=(1 << 30)))]
    pool_max_mib: i64,
}

pub fn main(args: Args) -> Result<()> {
    let token = super::token(args.token_file.as_deref())?;
    let caps = Caps::new(&args.caps, args.max_elements)?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .map_err(|e| Error::BadInput(format!("cannot listen on {}: {e}", args.addr)))?;
        let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
        if !loopback && token.is_none() && !args.insecure {
            return Err(Error::BadInput(format!(
                "refusing to serve on {} without a token: anyone who can reach it could run \
                 jobs; give --token-file PATH (or ANYCORE_TOKEN), or --insecure",
                args.addr
            )));
        }
        let local = listener
            .local_addr()
            .map_err(|e| Error::BadInput(e.to_string()))?;
        let pool = match &args.nats {
            Some(url) => {
                let mut pool = PoolConfig::new(url);
                pool.max_jobs = args.pool_max_jobs;
                pool.max_bytes = args.pool_max_mib << 20;
                let pool = Pool::connect(pool).await?;
                let (jobs, bytes) = pool.limits();
                if (jobs, bytes >> 20) != (args.pool_max_jobs, args.pool_max_mib) {
                    eprintln!(
                        "anycore: the pool's job stream was made with other limits, which \
                         stay: {jobs} jobs, {} MiB",
                        bytes >> 20
                    );
                }
                let workers = pool.roster().await?.len();
                eprintln!(
                    "anycore: serving on http://{local} in front of the pool on {} ({workers} worker(s) now)",
                    redacted(url)
                );
                Some(pool)
            }
            None => None,
        };
        let service = ServiceConfig {
            body_limit: args.body_limit_mib.saturating_mul(1 << 20),
            body_timeout: super::seconds("--body-timeout-s", args.body_timeout_s)?,
            header_timeout: super::seconds("--header-timeout-s", args.header_timeout_s)?,
            max_connections: args.max_connections,
            shutdown_timeout: super::seconds("--shutdown-timeout-s", args.shutdown_timeout_s)?,
            max_job: super::seconds("--max-job-s", args.max_job_s)?,
            results: Limits {
                bytes: args.results_mib.saturating_mul(1 << 20),
                ttl: super::seconds("--result-ttl-s", args.result_ttl_s)?,
            },
            memory_budget: match args.memory_mib {
                Some(0) => return Err(Error::BadInput("--memory-mib 0: give at least 1".into())),
                Some(mib) => mib.saturating_mul(1 << 20),
                None => anycore::service::ServiceConfig::default().memory_budget,
            },
            caps,
            max_tensors: args.max_tensors,
            max_tensor_bytes: args.tensor_store_mib.saturating_mul(1 << 20),
            access: Access {
                token,
                cors: args.cors.clone(),
                loopback_hosts: loopback,
            },
        };
        let served = match pool {
            Some(pool) => front::serve(listener, pool, service, shutdown_signal()).await,
            None => {
                let mut config = EngineConfig::default();
                config.gpu.allow_software = args.software_gpu.allowed();
                config.max_in_flight = args.max_in_flight;
                let engine = Arc::new(Engine::start(config).await?);
                let coordinator = engine.coordinator();
                eprintln!(
                    "anycore: serving on http://{local} (gpu: {}; cpu: {})",
                    coordinator.gpu_device().unwrap_or("none"),
                    coordinator.cpu_device()
                );
                serve(listener, engine, service, shutdown_signal()).await
            }
        };
        served.map_err(|e| Error::Remote(format!("the server stopped: {e}")))?;
        eprintln!("anycore: stopped");
        Ok(())
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub(super) async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
