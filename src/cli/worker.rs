//! `anycore worker --nats URL`: joins the pool of workers on a NATS
//! JetStream server and runs its jobs until SIGINT or SIGTERM (then
//! finishes the jobs it holds).

use std::sync::Arc;

use anycore::backend::BackendChoice;
use anycore::engine::{Engine, EngineConfig};
use anycore::pool::worker::{Worker, WorkerConfig};
use anycore::pool::{Pool, PoolConfig};
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
        let pool = Pool::connect(PoolConfig::new(&args.nats)).await?;
        let worker = Worker::new(
            pool,
            Arc::clone(&engine),
            WorkerConfig {
                backend: args.backend,
                concurrency: args.concurrency as usize,
                name: args.name,
            },
        );
        eprintln!(
            "anycore worker {} ({}) on {}",
            worker.info().name,
            worker.info().gpu.as_deref().unwrap_or("CPU only"),
            args.nats
        );
        worker.run(super::serve::shutdown_signal()).await?;
        engine.shutdown().await;
        eprintln!("anycore worker: stopped");
        Ok(())
    })
}
