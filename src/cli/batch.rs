//! `anycore batch JOBS.jsonl`: many jobs, one per line, run concurrently
//! through the engine, with a progress bar, a summary per backend, and
//! optionally one JSON result line per job.
//!
//! A line looks like
//! `{"id": "a", "kernel": "axpy", "inputs": {"x": "x.npy", "y": {"random":
//! {"dtype": "f32", "shape": [1000], "seed": 1}}}, "params": {"a": 2},
//! "outputs": {"out": "out.npy"}, "backend": "auto"}`; paths are relative to
//! the jobs file; an input may also be inline numbers or base64 `.npy`, as
//! the service takes them. A line with `"steps"` is a pipeline (the JSON
//! of `POST /v1/pipelines`, with an optional `"id"` and outputs that may
//! name a `"path"`). A bad line fails its job only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;

use anycore::backend::BackendChoice;
use anycore::coordinator::spec::{JobSpec, PipelineSpec, explain_json, json_params};
use anycore::engine::{Engine, EngineConfig, OnRuntime};
use anycore::kernel::{Kernel, Task};
use anycore::stream::{Chunks, FileJob, Split};
use anycore::tensor::{alloc, npy};
use anycore::{Error, Result};

use super::inputs::{self, FileInput, InputSpec};
use super::lines::{JobLine, Outcome, OutputFiles, pipeline_line};
use super::output;

/// Options of `anycore batch`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The jobs, one JSON object per line.
    jobs: PathBuf,
    /// Jobs run at once (loading, running and writing); at least 1.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Backend for jobs that do not name one.
    #[arg(long, default_value = "auto", value_parser = super::backend_choice)]
    backend: BackendChoice,
    #[command(flatten)]
    software_gpu: super::SoftwareGpu,
    /// Write one JSON line per job here.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Submit the jobs to a pool of `anycore worker`s on this NATS
    /// JetStream server instead of running them here.
    #[arg(long, value_name = "URL", conflicts_with_all = ["memory_budget", "allow"])]
    nats: Option<String>,
    /// The memory jobs' arrays may take (e.g. 4G; default half the
    /// machine's). A line whose `.npy` files exceed its share (the budget
    /// over --concurrency) runs a chunk at a time where its kernel allows;
    /// one that cannot gets the whole budget, past which it is refused.
    #[arg(long, value_name = "SIZE", value_parser = super::memory_size)]
    memory_budget: Option<u64>,
}

pub fn main(args: Args) -> Result<()> {
    let text = std::fs::read_to_string(&args.jobs).map_err(|e| Error::BadFile {
        path: args.jobs.clone(),
        message: format!("cannot read the jobs file: {e}"),
    })?;
    if text.lines().all(|l| l.trim().is_empty()) {
        return Err(Error::BadFile {
            path: args.jobs.clone(),
            message: "holds no jobs (one JSON object per line)".into(),
        });
    }
    let runtime = super::runtime()?;
    let outcomes = match &args.nats {
        Some(url) => runtime.block_on(super::pooled::run_all(
            url,
            &args.jobs,
            args.concurrency,
            args.backend,
            &text,
        ))?,
        None => runtime.block_on(run_all(&args, &text))?,
    };

    if let Some(path) = &args.results {
        let write_err = |source| Error::Write {
            path: path.clone(),
            source,
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(write_err)?);
        for o in &outcomes {
            let line = serde_json::to_string(o).expect("outcome serialises");
            writeln!(file, "{line}").map_err(write_err)?;
        }
        file.flush().map_err(write_err)?;
    }
    print_summary(&outcomes);
    let failed = outcomes.iter().filter(|o| o.status != "ok").count();
    if failed > 0 {
        return Err(Error::BatchFailed {
            failed,
            total: outcomes.len(),
        });
    }
    Ok(())
}

async fn run_all(args: &Args, text: &str) -> Result<Vec<Outcome>> {
    let mut config = EngineConfig::default();
    config.gpu.allow_software = args.software_gpu.allowed();
    let engine = Arc::new(Engine::start(config).await?);
    let base = args.jobs.parent().unwrap_or(Path::new(".")).to_owned();
    let default_backend = args.backend;
    let budget = args.memory_budget.unwrap_or_else(alloc::default_budget);
    let budget = Budget {
        whole: budget,
        share: budget / u64::from(args.concurrency),
        one_at_a_time: Arc::new(Semaphore::new(1)),
    };

    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect();
    let bar = ProgressBar::new(lines.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} jobs  {elapsed_precise}  {msg}")
            .expect("valid template"),
    );
    let limit = Arc::new(Semaphore::new(args.concurrency as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for (order, (line_no, line)) in lines.into_iter().enumerate() {
        let permit = Arc::clone(&limit)
            .acquire_owned()
            .await
            .expect("never closed");
        let (engine, base, line, bar, budget) = (
            Arc::clone(&engine),
            base.clone(),
            line.to_owned(),
            bar.clone(),
            budget.clone(),
        );
        tasks.spawn(async move {
            let outcome = run_line(&engine, &base, line_no, &line, default_backend, &budget).await;
            drop(permit);
            if outcome.status != "ok" {
                let line = format!(
                    "job {} failed: {}",
                    outcome.id,
                    outcome.error.as_deref().unwrap_or("")
                );
                // A hidden bar (stderr is not a terminal) drops println.
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            bar.inc(1);
            (order, outcome)
        });
    }
    let mut outcomes: Vec<(usize, Outcome)> = tasks.join_all().await;
    bar.finish_and_clear();
    engine.shutdown().await;
    outcomes.sort_by_key(|(order, _)| *order);
    Ok(outcomes.into_iter().map(|(_, o)| o).collect())
}

/// The memory budget of the whole batch, a line's share of it, and the
/// turn of the lines that need more than their share.
#[derive(Clone)]
struct Budget {
    whole: u64,
    share: u64,
    one_at_a_time: Arc<Semaphore>,
}

async fn run_line(
    engine: &Arc<Engine>,
    base: &Path,
    line_no: usize,
    line: &str,
    default_backend: BackendChoice,
    budget: &Budget,
) -> Outcome {
    if let Some((id, fields)) = pipeline_line(line, line_no) {
        return run_pipeline_line(engine, base, id, line_no, fields, default_backend).await;
    }
    let parsed: std::result::Result<JobLine, _> = serde_json::from_str(line);
    let id = parsed
        .as_ref()
        .ok()
        .and_then(|j| j.id.clone())
        .unwrap_or_else(|| format!("line {line_no}"));
    let fail = Outcome::failed;
    let spec = match parsed {
        Ok(spec) => spec,
        Err(e) => {
            return fail(
                id,
                format!("line {line_no} is not a valid job: {}", explain_json(&e)),
            );
        }
    };
    // Reading inputs and writing outputs are blocking file work.
    let base_owned = base.to_owned();
    let (whole, share) = (budget.whole, budget.share);
    let prepared = tokio::task::spawn_blocking(move || {
        prepare(spec, &base_owned, default_backend, whole, share)
    })
    .await
    .unwrap_or_else(|e| Err(Error::Panicked(e.to_string())));
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(e) => return fail(id, e.to_string()),
    };
    // Lines that take the whole budget run one at a time.
    let _whole_budget = match prepared.over_share {
        true => Some(budget.one_at_a_time.acquire().await.expect("never closed")),
        false => None,
    };
    let (task, choice, outputs) = match prepared.run {
        Prepare::Whole(task, choice, outputs) => (task, choice, outputs),
        Prepare::Chunks(chunks, choice, outputs) => {
            return run_streamed(engine, id, chunks, choice, outputs).await;
        }
    };
    let painter = task.painter();
    match engine.coordinator().run(task, choice).await {
        Ok(report) => {
            Outcome::ran(
                id.clone(),
                report.backend,
                &report.placement_reason,
                report.timings,
                report.traffic,
            )
            .after_writing(move || {
                output::check_given(
                    report.outputs.keys().map(String::as_str),
                    outputs.iter().map(|(n, _)| n.as_str()),
                )?;
                for (name, path) in outputs {
                    output::write(&report.outputs[&name], &path, painter)?;
                }
                Ok(())
            })
            .await
        }
        Err(e) => fail(id, e.to_string()),
    }
}

/// A line whose arrays exceed its share of the budget, run a chunk at a
/// time from a blocking thread (reading and writing files as it goes);
/// its folded outputs written at the end.
async fn run_streamed(
    engine: &Arc<Engine>,
    id: String,
    chunks: Chunks,
    choice: BackendChoice,
    outputs: OutputFiles,
) -> Outcome {
    let engine = Arc::clone(engine);
    let runtime = tokio::runtime::Handle::current();
    let ran = tokio::task::spawn_blocking(move || {
        let runner = OnRuntime {
            engine: &engine,
            runtime,
        };
        let done = chunks.run(&runner, choice)?;
        output::check_given(
            done.specs.iter().map(|(n, _)| *n),
            outputs.iter().map(|(n, _)| n.as_str()),
        )?;
        for (name, path) in &outputs {
            if let Some(tensor) = done.report.outputs.get(name) {
                npy::write(path, tensor)?;
            }
        }
        Ok(done)
    })
    .await
    .unwrap_or_else(|e| Err(Error::Panicked(e.to_string())));
    match ran {
        Ok(done) => Outcome::ran(
            id,
            done.report.backend,
            &done.report.placement_reason,
            done.report.timings,
            done.report.traffic,
        ),
        Err(e) => Outcome::failed(id, e.to_string()),
    }
}

/// A pipeline's line: checked (in a blocking task: it reads files), run as
/// one unit, its outputs that have a path written.
async fn run_pipeline_line(
    engine: &Engine,
    base: &Path,
    id: String,
    line_no: usize,
    fields: serde_json::Value,
    default_backend: BackendChoice,
) -> Outcome {
    let spec: PipelineSpec<InputSpec> = match serde_json::from_value(fields) {
        Ok(spec) => spec,
        Err(e) => {
            return Outcome::failed(
                id,
                format!(
                    "line {line_no} is not a valid pipeline: {}",
                    explain_json(&e)
                ),
            );
        }
    };
    let base = base.to_owned();
    let prepared =
        tokio::task::spawn_blocking(move || inputs::pipeline(spec, &base, default_backend))
            .await
            .unwrap_or_else(|e| Err(Error::Panicked(e.to_string())));
    let (pipeline, choice, paths) = match prepared {
        Ok(p) => p,
        Err(e) => return Outcome::failed(id, e.to_string()),
    };
    let report = match engine.coordinator().run_pipeline(pipeline, choice).await {
        Ok(report) => report,
        Err(e) => return Outcome::failed(id, e.to_string()),
    };
    Outcome::ran(
        id,
        report.backend,
        &report.placement_reason,
        report.timings,
        report.traffic,
    )
    .after_writing(move || {
        for (name, path) in paths {
            if let Some(path) = path {
                npy::write(&path, &report.outputs[&name])?;
            }
        }
        Ok(())
    })
    .await
}

/// A line ready to run: whole, or in chunks; and whether it takes more
/// than its share of the budget (such lines run one at a time).
struct Prepared {
    run: Prepare,
    over_share: bool,
}

enum Prepare {
    Whole(Task, BackendChoice, OutputFiles),
    Chunks(Chunks, BackendChoice, OutputFiles),
}

/// Turns a parsed line into a checked task (or, when its `.npy` inputs
/// exceed its share of the budget, chunks), its backend and its output
/// files.
fn prepare(
    spec: JobLine,
    base: &Path,
    default_backend: BackendChoice,
    whole: u64,
    share: u64,
) -> Result<Prepared> {
    let paths = spec.output_paths(base)?;
    let mut over_share = false;
    let files: Option<BTreeMap<String, PathBuf>> = spec
        .inputs
        .iter()
        .map(|(name, input)| match input {
            InputSpec::File(path) => Some((name.clone(), base.join(path))),
            _ => None,
        })
        .collect();
    if let Some(inputs) = files {
        let job = FileJob {
            kernel: Kernel::from_name(&spec.kernel)?,
            params: json_params(&spec.params)?.into_iter().collect(),
            inputs,
            outputs: paths.iter().cloned().collect(),
        };
        let choice = match spec.backend.as_deref() {
            Some(name) => BackendChoice::from_name(name)?,
            None => default_backend,
        };
        // A line that cannot run within its share has the whole budget.
        let split = match job.split(share, choice) {
            Ok(split) => split,
            Err(_) => {
                over_share = true;
                job.split(whole, choice)?
            }
        };
        if let Split::Chunks(chunks) = split {
            return Ok(Prepared {
                run: Prepare::Chunks(chunks, choice, paths),
                over_share,
            });
        }
    }
    let job = JobSpec {
        kernel: &spec.kernel,
        backend: spec.backend.as_deref(),
        params: json_params(&spec.params)?,
        outputs: spec.outputs.keys().map(String::as_str).collect(),
        inputs: spec
            .inputs
            .into_iter()
            .map(|(name, input)| (name, FileInput { input, base }))
            .collect(),
    };
    let (task, choice) = job.into_task(default_backend)?;
    Ok(Prepared {
        run: Prepare::Whole(task, choice, paths),
        over_share,
    })
}

fn print_summary(outcomes: &[Outcome]) {
    let mut by_backend: BTreeMap<&str, (usize, usize, Vec<f64>)> = BTreeMap::new();
    for o in outcomes {
        let key = o.backend.as_deref().unwrap_or("(not run)");
        let entry = by_backend.entry(key).or_default();
        entry.0 += 1;
        if o.status != "ok" {
            entry.1 += 1;
        }
        if let Some(t) = &o.timings_ms {
            entry.2.push(t.total);
        }
    }
    println!(
        "{:<10} {:>6} {:>9} {:>12} {:>12}",
        "backend", "jobs", "failures", "total ms", "median ms"
    );
    for (backend, (jobs, failures, mut times)) in by_backend {
        times.sort_by(f64::total_cmp);
        let (total, median) = if times.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            let total: f64 = times.iter().sum();
            (
                format!("{total:.3}"),
                format!("{:.3}", times[times.len() / 2]),
            )
        };
        println!("{backend:<10} {jobs:>6} {failures:>9} {total:>12} {median:>12}");
    }
}
