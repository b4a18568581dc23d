//! The library's way into the pool: [`RemoteEngine::run`] takes the same
//! [`Job`] an [`Engine`](crate::engine::Engine) runs, has a worker run it,
//! and gives the report every front gives ([`JobResponse`]), its outputs
//! as tensors, with the worker that ran it and on which attempt.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::wire::{PoolJob, PoolResult, WorkerInfo};
use super::{Pool, PoolConfig};
use crate::backend::BackendChoice;
use crate::error::{Error, Result};
use crate::kernel::Job;
use crate::service::api::JobResponse;
use crate::service::ids::Id;
use crate::tensor::Tensor;

/// How long a submission keeps trying while the stream is full.
pub const BUSY_FOR: Duration = Duration::from_secs(120);

/// A job the pool ran.
#[derive(Debug)]
pub struct RemoteReport {
    /// Where it ran, why, its phases, and its outputs.
    pub report: JobResponse<Tensor>,
    /// The worker that ran it.
    pub worker: WorkerInfo,
    /// Which delivery of the job ran it, from 1.
    pub attempt: u64,
}

/// Jobs run by the pool's workers, through the job API of a local engine.
#[derive(Clone)]
pub struct RemoteEngine {
    pool: Pool,
}

impl RemoteEngine {
    /// Connects to the pool on the NATS server at `url`.
    pub async fn connect(url: &str) -> Result<RemoteEngine> {
        Ok(RemoteEngine {
            pool: Pool::connect(PoolConfig::new(url)).await?,
        })
    }

    /// Its pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `job` wherever the pool places it.
    pub async fn run(&self, job: Job) -> Result<RemoteReport> {
        self.run_on(job, BackendChoice::Auto).await
    }

    /// Runs `job` on a worker with `choice` (`gpu`: one with a GPU).
    pub async fn run_on(&self, job: Job, choice: BackendChoice) -> Result<RemoteReport> {
        if !job.keep.is_empty() {
            return Err(Error::BadInput(
                "a remote engine returns every output: `keep` is for a local engine".into(),
            ));
        }
        let mut inputs = BTreeMap::new();
        for (name, handle) in job.inputs {
            let tensor = handle.to_tensor().ok_or_else(|| {
                Error::BadInput(format!(
                    "input '{name}' is held by a local engine's device; read it first"
                ))
            })?;
            inputs.insert(name, tensor);
        }
        let id = Id::random().to_string();
        let pool_job = PoolJob {
            inputs: self.pool.encode(&id, &inputs).await?,
            id,
            kernel: job.kernel.name().to_owned(),
            params: job
                .params
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
            backend: match choice {
                BackendChoice::Auto => None,
                other => Some(other.name().to_owned()),
            },
            pipeline: None,
            deadline_unix_ms: None,
        };
        drop(inputs);
        self.pool.submit_patiently(&pool_job, BUSY_FOR).await?;
        let result = self.pool.wait(&pool_job.id).await?;
        let outputs = self.pool.outputs(&result).await;
        self.pool.forget(&pool_job, &result).await;
        let run = result
            .run
            .ok_or_else(|| Error::Remote(format!("job {}: its result has no report", result.id)))?;
        Ok(RemoteReport {
            report: JobResponse {
                kernel: pool_job.kernel,
                run,
                outputs: outputs?,
            },
            worker: result.worker,
            attempt: result.attempt,
        })
    }
}

impl Pool {
    /// Submits `job`, waiting out a full stream for up to `busy_for` and
    /// sending again a submission whose acknowledgement was lost (the same
    /// id: the stream keeps one).
    pub async fn submit_patiently(&self, job: &PoolJob, busy_for: Duration) -> Result<()> {
        let started = Instant::now();
        let mut lost = 0;
        loop {
            match self.submit(job).await {
                Err(Error::Busy) if started.elapsed() < busy_for => {}
                Err(Error::Internal(why)) if lost < 3 => {
                    lost += 1;
                    log::warn!("submitting job {}: {why}; sending it again", job.id);
                }
                other => return other,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A finished job's outputs, fetched; an error saying why for a job
    /// that did not run (bad input; dead-lettered, naming the worker).
    pub async fn outputs(&self, result: &PoolResult) -> Result<BTreeMap<String, Tensor>> {
        result.succeeded()?;
        let mut outputs = BTreeMap::new();
        for (name, wire) in &result.outputs {
            outputs.insert(
                name.clone(),
                self.decode(&format!("array '{name}'"), wire).await?,
            );
        }
        Ok(outputs)
    }
}
