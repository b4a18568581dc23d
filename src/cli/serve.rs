//! `anycore serve`: the HTTP service on an address, until SIGINT or SIGTERM,
//! after which jobs in flight finish before the process exits 0.

use std::sync::Arc;

use anycore::engine::{Engine, EngineConfig};
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
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Largest request body, in MiB (413 past it).
    #[arg(long, default_value_t = 256)]
    body_limit_mib: usize,
    /// Most tensors kept in the store (`/v1/tensors`, kept outputs); past
    /// it, storing one more is a 507.
    #[arg(long, default_value_t = 1024)]
    max_tensors: usize,
    /// Most MiB of tensors kept in the store; past it, a 507.
    #[arg(long, default_value_t = 1024)]
    tensor_store_mib: usize,
}

pub fn main(args: Args) -> Result<()> {
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .map_err(|e| Error::BadInput(format!("cannot listen on {}: {e}", args.addr)))?;
        let mut config = EngineConfig::default();
        config.gpu.allow_software = args.software_gpu.allowed();
        config.max_in_flight = args.max_in_flight;
        let engine = Arc::new(Engine::start(config).await?);
        let local = listener
            .local_addr()
            .map_err(|e| Error::BadInput(e.to_string()))?;
        let coordinator = engine.coordinator();
        eprintln!(
            "anycore: serving on http://{local} (gpu: {}; cpu: {})",
            coordinator.gpu_device().unwrap_or("none"),
            coordinator.cpu_device()
        );
        let service = ServiceConfig {
            body_limit: args.body_limit_mib.saturating_mul(1 << 20),
            max_tensors: args.max_tensors,
            max_tensor_bytes: args.tensor_store_mib.saturating_mul(1 << 20),
        };
        serve(listener, engine, service, shutdown_signal())
            .await
            .map_err(|e| Error::Remote(format!("the server stopped: {e}")))?;
        eprintln!("anycore: stopped after finishing the jobs in flight");
        Ok(())
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
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
