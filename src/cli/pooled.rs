//! `anycore batch --nats URL`: every line submitted to the pool of
//! `anycore worker`s on a NATS JetStream server, its result awaited and
//! its outputs written here, with at most `--concurrency` lines in flight.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;

use anycore::backend::BackendChoice;
use anycore::coordinator::spec::{InputSource, PipelineSpec, explain_json};
use anycore::pool::remote::BUSY_FOR;
use anycore::pool::wire::{PIPELINE, PoolJob};
use anycore::pool::{Pool, PoolConfig, redacted};
use anycore::tensor::{Tensor, npy};
use anycore::{Error, Result};

use super::inputs::{self, FileInput, InputSpec};
use super::lines::{JobLine, Outcome, pipeline_line};

/// Runs every line of `text` through the pool at `url`.
pub async fn run_all(
    url: &str,
    jobs_file: &Path,
    concurrency: u32,
    backend: BackendChoice,
    text: &str,
) -> Result<Vec<Outcome>> {
    let pool = Pool::connect(PoolConfig::new(url)).await?;
    if pool.roster().await?.is_empty() {
        eprintln!(
            "anycore: no worker is in the pool on {} yet; the jobs wait until one joins",
            redacted(url)
        );
    }
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
    if let Some((id, fields)) = pipeline_line(line, line_no) {
        let spec = match serde_json::from_value(fields) {
            Ok(spec) => spec,
            Err(e) => {
                let why = format!(
                    "line {line_no} is not a valid pipeline: {}",
                    explain_json(&e)
                );
                return Outcome::failed(id, why);
            }
        };
        return match submit_pipeline(pool, base, spec, job_id, default).await {
            Ok(outcome) => Outcome { id, ..outcome },
            Err(e) => Outcome::failed(id, e.to_string()),
        };
    }
    let parsed: std::result::Result<JobLine, _> = serde_json::from_str(line);
    let id = match &parsed {
        Ok(JobLine { id: Some(id), .. }) => id.clone(),
        _ => format!("line {line_no}"),
    };
    let spec = match parsed {
        Ok(spec) => spec,
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

/// A pipeline's line: its outputs' paths checked and its inputs read
/// here, run as one unit by one worker, its outputs that have a path
/// written.
async fn submit_pipeline(
    pool: &Pool,
    base: &Path,
    mut spec: PipelineSpec<InputSpec>,
    job_id: String,
    default: BackendChoice,
) -> Result<Outcome> {
    if spec.backend.is_none() && default != BackendChoice::Auto {
        spec.backend = Some(default.name().to_owned());
    }
    // Reading the inputs is blocking file work.
    let base = base.to_owned();
    let (spec, paths) = tokio::task::spawn_blocking(move || {
        let paths = inputs::pipeline_outputs(&spec, &base)?;
        let spec = spec.try_map_inputs(|what, input| {
            let handle = FileInput { input, base: &base }.load(what)?;
            let shape = handle.shape().to_vec();
            Ok::<_, Error>(Tensor::new(shape, handle.into_data()))
        })?;
        Ok::<_, Error>((spec, paths))
    })
    .await
    .map_err(|e| Error::Panicked(e.to_string()))??;
    let job = PoolJob {
        backend: spec.backend.clone(),
        pipeline: Some(pool.encode_pipeline(&job_id, spec).await?),
        id: job_id,
        kernel: PIPELINE.to_owned(),
        params: BTreeMap::new(),
        inputs: BTreeMap::new(),
        deadline_unix_ms: None,
    };
    let paths: Vec<_> = paths
        .into_iter()
        .filter_map(|(name, path)| Some((name, path?)))
        .collect();
    run_pooled(pool, job, &paths).await
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
        pipeline: None,
        deadline_unix_ms: None,
    };
    drop(tensors);
    run_pooled(pool, job, &paths).await
}

/// A line's job submitted (a full stream waited out), its result awaited,
/// the outputs that have a path written, and its objects deleted.
async fn run_pooled(
    pool: &Pool,
    job: PoolJob,
    paths: &[(String, std::path::PathBuf)],
) -> Result<Outcome> {
    pool.submit_patiently(&job, BUSY_FOR).await?;
    let result = pool.wait(&job.id).await?;
    let written = write_outputs(pool, &result, paths).await;
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
        let tensor = pool.decode(&format!("array '{name}'"), wire).await?;
        let path = path.clone();
        tokio::task::spawn_blocking(move || npy::write(&path, &tensor))
            .await
            .map_err(|e| Error::Panicked(e.to_string()))??;
    }
    Ok(())
}
