//! `anycore batch --nats URL`: every line submitted to the pool of
//! `anycore worker`s on a NATS JetStream server, its result awaited and
//! its outputs written here, with at most `--concurrency` lines in flight.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;

use anycore::backend::BackendChoice;
use anycore::coordinator::spec::{InputSource, explain_json};
use anycore::pool::remote::BUSY_FOR;
use anycore::pool::wire::PoolJob;
use anycore::pool::{Pool, PoolConfig};
use anycore::tensor::{Tensor, npy};
use anycore::{Error, Result};

use super::inputs::FileInput;
use super::lines::{JobLine, Outcome};

/// Runs every line of `text` through the pool at `url`.
pub async fn run_all(
    url: &str,
    jobs_file: &Path,
    concurrency: u32,
    backend: BackendChoice,
    text: &str,
) -> Result<Vec<Outcome>> {
    let pool = Pool::connect(PoolConfig::new(url)).await?;
    let base = jobs_file.parent().unwrap_or(Path::new(".")).to_owned();
    // Ids unique to this batch: a rerun of the file is new work.
    let batch = format!("b{:016x}", rand::random::<u64>());
    let limit = Arc::new(Semaphore::new(concurrency as usize));
    let mut tasks = tokio::task::JoinSet::new();
    let lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    for (order, (i, line)) in lines.enumerate() {
        let permit = Arc::clone(&limit)
            .acquire_owned()
            .await
            .expect("never closed");
        let (pool, base, line) = (pool.clone(), base.clone(), line.to_owned());
        let id = format!("{batch}-{}", i + 1);
        tasks.spawn(async move {
            let outcome = run_line(&pool, &base, i + 1, &line, id, backend).await;
            drop(permit);
            if let Some(error) = &outcome.error {
                eprintln!("job {} failed: {error}", outcome.id);
            }
            (order, outcome)
        });
    }
    let mut outcomes = tasks.join_all().await;
    outcomes.sort_by_key(|(order, _)| *order);
    Ok(outcomes.into_iter().map(|(_, o)| o).collect())
}

/// One line: inputs read here, the job submitted, its result awaited and
/// its outputs written.
async fn run_line(
    pool: &Pool,
    base: &Path,
    line_no: usize,
    line: &str,
    job_id: String,
    default: BackendChoice,
) -> Outcome {
    let parsed: std::result::Result<JobLine, _> = serde_json::from_str(line);
    let id = match &parsed {
        Ok(JobLine { id: Some(id), .. }) => id.clone(),
        _ => format!("line {line_no}"),
    };
    let spec = match parsed {
        Ok(spec) => spec,
        Err(e) if line.contains("\"steps\"") => {
            let _ = e;
            return Outcome::failed(
                id,
                format!(
                    "line {line_no}: pipelines do not go through the pool yet; run them without --nats"
                ),
            );
        }
        Err(e) => {
            return Outcome::failed(
                id,
                format!("line {line_no} is not a valid job: {}", explain_json(&e)),
            );
        }
    };
    match submit_and_wait(pool, base, spec, job_id, default).await {
        Ok(outcome) => Outcome { id, ..outcome },
        Err(e) => Outcome::failed(id, e.to_string()),
    }
}

async fn submit_and_wait(
    pool: &Pool,
    base: &Path,
    spec: JobLine,
    job_id: String,
    default: BackendChoice,
) -> Result<Outcome> {
    let paths = spec.output_paths(base)?;
    // Reading the inputs is blocking file work.
    let (inputs, base_owned) = (spec.inputs, base.to_owned());
    let tensors = tokio::task::spawn_blocking(move || {
        let mut tensors = BTreeMap::new();
        for (name, input) in inputs {
            let handle = FileInput {
                input,
                base: &base_owned,
            }
            .load(&name)?;
            let shape = handle.shape().to_vec();
            tensors.insert(name, Tensor::new(shape, handle.into_data()));
        }
        Ok::<_, Error>(tensors)
    })
    .await
    .map_err(|e| Error::Panicked(e.to_string()))??;
    let backend = spec.backend.or(match default {
        BackendChoice::Auto => None,
        other => Some(other.name().to_owned()),
    });
    let job = PoolJob {
        inputs: pool.encode(&job_id, &tensors).await?,
        id: job_id,
        kernel: spec.kernel,
        params: spec.params,
        backend,
    };
    drop(tensors);
    pool.submit_patiently(&job, BUSY_FOR).await?;
    let result = pool.wait(&job.id).await?;
    let written = write_outputs(pool, &result, &paths).await;
    pool.forget(&job, &result).await;
    written?;
    Ok(Outcome::pooled(result))
}

/// Writes the outputs asked for from a job's result (an error, saying
/// why, for a job that did not run).
async fn write_outputs(
    pool: &Pool,
    result: &anycore::pool::wire::PoolResult,
    paths: &[(String, std::path::PathBuf)],
) -> Result<()> {
    result.succeeded()?;
    for (name, path) in paths {
        let wire = result.outputs.get(name).ok_or_else(|| {
            let given: Vec<&str> = result.outputs.keys().map(String::as_str).collect();
            Error::BadInput(format!(
                "output '{name}' was asked for, but this job gives only {}",
                given.join(", ")
            ))
        })?;
        let tensor = pool.decode(name, wire).await?;
        let path = path.clone();
        tokio::task::spawn_blocking(move || npy::write(&path, &tensor))
            .await
            .map_err(|e| Error::Panicked(e.to_string()))??;
    }
    Ok(())
}
