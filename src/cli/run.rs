//! `anycore run KERNEL`: read `.npy` inputs, run one kernel on the chosen
//! backend, write the outputs, report where it ran and how long it took.
//! `anycore run --pipeline FILE.json`: the same for a pipeline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use anycore::backend::{BackendChoice, Timings, Traffic};
use anycore::coordinator::cost::CostModel;
use anycore::coordinator::spec::{InputSource, JobSpec, PipelineSpec, explain_json};
use anycore::engine::{BlockingEngine, CostModelSource, EngineConfig};
use anycore::kernel::{Kernel, Outputs, Painter, Task};
use anycore::service::api::{JobResponse, PipelineResponse};
use anycore::stream::{Chunks, FileJob, Size, Split};
use anycore::tensor::{Handle, Tensor, TensorData, alloc, npy};
use anycore::{Error, Result};

use super::inputs::{self, InputSpec};
use super::{outln, output, remote};

/// Outputs with at most this many elements have their values in the report.
const INLINE_VALUES: usize = 16;

/// Options of `anycore run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kernel to run (`anycore kernels` lists them, with their inputs,
    /// parameters and outputs).
    #[arg(required_unless_present = "pipeline")]
    kernel: Option<String>,
    /// Run a pipeline from a JSON file instead of one kernel: the JSON of
    /// the service's `POST /v1/pipelines`, whose inputs may also be `.npy`
    /// paths and whose outputs may name a "path" (both relative to the
    /// file).
    #[arg(
        long,
        value_name = "FILE.json",
        conflicts_with_all = ["kernel", "inputs", "params", "outputs", "server"]
    )]
    pipeline: Option<PathBuf>,
    /// Where to run it: auto, gpu or cpu.
    #[arg(long, default_value = "auto", value_parser = super::backend_choice)]
    backend: BackendChoice,
    #[command(flatten)]
    software_gpu: super::SoftwareGpu,
    /// An input array: NAME=FILE.npy (repeatable).
    #[arg(short = 'i', long = "input", value_name = "NAME=FILE.npy")]
    inputs: Vec<String>,
    /// A parameter: NAME=VALUE (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Where to write an output: NAME=FILE (.npy, or .png for a picture
    /// output such as mandelbrot's).
    #[arg(short = 'o', long = "output", value_name = "NAME=FILE")]
    outputs: Vec<String>,
    /// The memory the job's arrays may take (e.g. 256M, 4G; default half
    /// the machine's). Larger `.npy` inputs run a chunk at a time where
    /// the kernel allows (axpy, map, reduce, scan, and histogram with lo
    /// and hi); other kernels are refused, naming the budget they need.
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = super::memory_size,
        conflicts_with_all = ["pipeline", "server"]
    )]
    memory_budget: Option<u64>,
    /// Print one JSON object describing the run on stdout.
    #[arg(long)]
    json: bool,
    /// Send the job to a running `anycore serve` (e.g. http://127.0.0.1:7878)
    /// instead of running it here.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
}

impl Args {
    /// Whether the job goes to a running `anycore serve`.
    pub fn talks_to_a_server(&self) -> bool {
        self.server.is_some()
    }
}

/// The one job report of every front (the service's), with the outputs
/// as the command line gives them: their paths and small values.
type Report = JobResponse<OutputReport>;

impl OutputReport {
    /// An output as reported: its dtype and shape, its path if it was
    /// written, its values if it is small.
    fn new(tensor: Tensor, path: Option<PathBuf>) -> Self {
        OutputReport {
            dtype: tensor.dtype().name(),
            shape: tensor.shape().to_vec(),
            path,
            data: (tensor.len() <= INLINE_VALUES).then(|| tensor.into_data()),
        }
    }
}

#[derive(Serialize)]
struct OutputReport {
    dtype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    /// The elements themselves, for small outputs such as a reduction
    /// (named as the service names them).
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<TensorData>,
}

/// Splits `NAME=VALUE` as given to `flag`.
fn split_pair<'a>(flag: &str, what: &str, text: &'a str) -> Result<(&'a str, &'a str)> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok((name, value)),
        _ => Err(Error::BadInput(format!(
            "{flag} expects NAME={what}, got '{text}'"
        ))),
    }
}

/// Collects `NAME=VALUE` pairs, rejecting a name given twice.
fn pairs<'a>(flag: &str, what: &str, items: &'a [String]) -> Result<BTreeMap<&'a str, &'a str>> {
    let mut map = BTreeMap::new();
    for item in items {
        let (name, value) = split_pair(flag, what, item)?;
        if map.insert(name, value).is_some() {
            return Err(Error::BadInput(format!("{flag} {name} is given twice")));
        }
    }
    Ok(map)
}

/// An input given as `-i NAME=FILE.npy` (or `FILE.png`).
struct NpyFile<'a>(&'a str);

impl InputSource for NpyFile<'_> {
    fn load(self, _name: &str) -> Result<Handle> {
        anycore::tensor::read_file(self.0.as_ref()).map(Handle::new)
    }
}

pub fn main(args: Args) -> Result<()> {
    if let Some(file) = &args.pipeline {
        return run_pipeline(&args, file);
    }
    let kernel_name = args.kernel.as_deref().unwrap_or_default();
    let outputs = pairs("-o", "FILE", &args.outputs)?;
    let params: BTreeMap<String, String> = pairs("-p", "VALUE", &args.params)?
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let inputs = pairs("-i", "FILE.npy", &args.inputs)?;
    output::check_formats(kernel_name, outputs.iter().map(|(n, p)| (*n, p.as_ref())))?;
    if args.server.is_none() {
        let job = FileJob {
            kernel: Kernel::from_name(kernel_name)?,
            params: params.clone(),
            inputs: inputs
                .iter()
                .map(|(n, p)| (n.to_string(), p.into()))
                .collect(),
            outputs: outputs
                .iter()
                .map(|(n, p)| (n.to_string(), p.into()))
                .collect(),
        };
        let budget = args.memory_budget.unwrap_or_else(alloc::default_budget);
        if let Split::Chunks(chunks) = job.split(budget, args.backend)? {
            return run_streamed(&args, chunks, budget, &outputs);
        }
    }
    let spec = JobSpec {
        kernel: kernel_name,
        backend: None,
        params: params.into_iter().collect(),
        outputs: outputs.keys().copied().collect(),
        inputs: inputs
            .into_iter()
            .map(|(name, path)| (name.to_owned(), NpyFile(path)))
            .collect(),
    };
    let (job, _) = spec.into_job(args.backend)?;
    let kernel = job.kernel;
    let (report, results, painter) = match &args.server {
        Some(url) => {
            if args.software_gpu.allow {
                return Err(Error::BadInput(
                    "--allow-software-gpu is the server's to give (anycore serve \
                     --allow-software-gpu); a job sent with --server runs on the server's devices"
                        .into(),
                ));
            }
            let request = remote::request(&job, args.backend.name());
            let task = Task::new(job)?; // checked here first: bad input never travels
            let response = remote::post(url, &request)?;
            let outputs = remote::outputs(&response)?;
            let report = Report {
                kernel: kernel.name().into(),
                run: response.run,
                outputs: BTreeMap::new(),
            };
            (report, outputs, task.painter())
        }
        None => run_here(&args, Task::admitted(job)?.0)?,
    };
    finish(report, results, painter, &outputs, args.json)
}

/// Runs a job whose arrays exceed the memory budget a chunk at a time,
/// writes its outputs and prints the report.
fn run_streamed(
    args: &Args,
    chunks: Chunks,
    budget: u64,
    paths: &BTreeMap<&str, &str>,
) -> Result<()> {
    let engine = engine(args, args.backend)?;
    let done = chunks.run(&engine, args.backend).map_err(no_gpu)?;
    output::check_given(done.specs.iter().map(|(n, _)| *n), paths.keys().copied())?;
    // Folded outputs (reductions, counts) come back and are written
    // here; the others were written chunk by chunk.
    for (name, tensor) in &done.report.outputs {
        if let Some(path) = paths.get(name.as_str()) {
            npy::write(path.as_ref(), tensor)?;
        }
    }
    let mut report = Report::describe(done.report, |name, tensor| {
        OutputReport::new(tensor, paths.get(name).map(PathBuf::from))
    });
    for (name, spec) in &done.specs {
        if !report.outputs.contains_key(*name) {
            let out = OutputReport {
                dtype: spec.dtype.name(),
                shape: spec.shape.clone(),
                path: paths.get(name).map(PathBuf::from),
                data: None,
            };
            report.outputs.insert(name.to_string(), out);
        }
    }
    let seconds = report.run.timings_ms.total / 1e3;
    let stream = StreamInfo {
        chunks: done.chunks,
        chunk_elements: done.chunk_elements,
        memory_budget_mib: budget as f64 / MIB,
        read_mb_per_s: done.bytes_read as f64 / 1e6 / seconds.max(1e-9),
    };
    if args.json {
        print_json(&report, Some(stream));
    } else {
        print_human(&report);
        outln!(
            "  streamed: {} chunks of {} elements, {:.0} MB/s of input, budget {}",
            stream.chunks,
            stream.chunk_elements,
            stream.read_mb_per_s,
            Size(budget)
        );
        print_peak_rss();
    }
    Ok(())
}

/// How a streamed run was split, for `--json`.
#[derive(Serialize)]
struct StreamInfo {
    chunks: usize,
    chunk_elements: usize,
    memory_budget_mib: f64,
    read_mb_per_s: f64,
}

const MIB: f64 = (1u64 << 20) as f64;

/// The report as one JSON line, with the process's peak memory (and how
/// a streamed run was split).
fn print_json(report: &impl Serialize, stream: Option<StreamInfo>) {
    #[derive(Serialize)]
    struct WithMemory<'a, R> {
        #[serde(flatten)]
        report: &'a R,
        #[serde(skip_serializing_if = "Option::is_none")]
        peak_rss_mib: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        stream: Option<StreamInfo>,
    }
    let line = WithMemory {
        report,
        peak_rss_mib: peak_rss_mib(),
        stream,
    };
    outln!(
        "{}",
        serde_json::to_string(&line).expect("report serialises")
    );
}

/// The process's peak resident memory in MiB, where the system says.
fn peak_rss_mib() -> Option<f64> {
    alloc::peak_rss_bytes().map(|b| (b as f64 / MIB * 10.0).round() / 10.0)
}

fn print_peak_rss() {
    if let Some(mib) = peak_rss_mib() {
        outln!("  peak memory: {mib} MiB");
    }
}

/// An engine for work that runs on `choice`.
fn engine(args: &Args, choice: BackendChoice) -> Result<BlockingEngine> {
    let mut config = EngineConfig::default();
    config.gpu.allow_software = args.software_gpu.allowed();
    config.use_gpu = choice != BackendChoice::Cpu;
    if choice != BackendChoice::Auto {
        // The choice is made: no cost model needed.
        config.cost_model = CostModelSource::Fixed(CostModel::default());
    }
    BlockingEngine::start(config)
}

/// `--backend gpu` without a GPU, said the command line's way.
fn no_gpu(e: Error) -> Error {
    match e {
        Error::NoGpu(why) => Error::NoGpu(format!("--backend gpu needs a GPU adapter: {why}")),
        other => other,
    }
}

/// Runs the task in this process, through the same coordinator and
/// placement policy as `batch` and `serve`.
fn run_here(args: &Args, task: Task) -> Result<(Report, Outputs, Option<Painter>)> {
    let choice = args.backend;
    let painter = task.painter();
    let engine = engine(args, choice)?;
    let report = engine.run_task(task, choice).map_err(no_gpu)?;
    log::info!(
        "{} on {}: {}",
        report.kernel,
        report.device,
        report.placement_reason
    );
    // The outputs are written and described by `finish`.
    let mut report = report;
    let outputs = std::mem::take(&mut report.outputs);
    let summary = Report::describe(report, |_, t| OutputReport::new(t, None));
    Ok((summary, outputs, painter))
}

/// `run --pipeline FILE`: checks the whole pipeline, runs it, writes the
/// outputs that name a path and prints the report.
fn run_pipeline(args: &Args, file: &Path) -> Result<()> {
    let bad = |message: String| Error::BadFile {
        path: file.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(file).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let spec: PipelineSpec<InputSpec> = serde_json::from_str(&text)
        .map_err(|e| bad(format!("not a valid pipeline: {}", explain_json(&e))))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let (pipeline, choice, paths) = inputs::pipeline(spec, base, args.backend)?;
    let engine = engine(args, choice)?;
    let report = engine
        .run_checked_pipeline(pipeline, choice)
        .map_err(no_gpu)?;
    let mut written = BTreeMap::new();
    for (name, path) in paths {
        if let Some(path) = &path {
            npy::write(path, &report.outputs[&name])?;
        }
        written.insert(name, path);
    }
    let report = PipelineResponse::describe(report, |name, t| {
        OutputReport::new(t, written[name].clone())
    });
    if args.json {
        print_json(&report, None);
    } else {
        outln!(
            "pipeline of {} steps ran on {} ({})",
            report.steps.len(),
            report.run.backend,
            report.run.device
        );
        outln!("  why: {}", report.run.placement_reason);
        print_time("", &report.run.timings_ms, &report.run.traffic);
        for step in &report.steps {
            print_time(
                &format!("{} ({})", step.name, step.kernel),
                &step.timings_ms,
                &step.traffic,
            );
        }
        print_outputs(&report.outputs, "give its output a \"path\"");
    }
    Ok(())
}

/// Writes the outputs asked for and prints the report.
fn finish(
    mut report: Report,
    results: Outputs,
    painter: Option<Painter>,
    paths: &BTreeMap<&str, &str>,
    json: bool,
) -> Result<()> {
    output::check_given(results.keys().map(String::as_str), paths.keys().copied())?;
    for (name, tensor) in results {
        let path = paths.get(name.as_str()).map(PathBuf::from);
        if let Some(path) = &path {
            output::write(&tensor, path, painter)?;
        }
        report.outputs.insert(name, OutputReport::new(tensor, path));
    }
    if json {
        print_json(&report, None);
    } else {
        print_human(&report);
        print_peak_rss();
    }
    Ok(())
}

fn print_human(r: &Report) {
    outln!("{} ran on {} ({})", r.kernel, r.run.backend, r.run.device);
    outln!("  why: {}", r.run.placement_reason);
    print_time("", &r.run.timings_ms, &r.run.traffic);
    print_outputs(&r.outputs, "add -o NAME=FILE");
}

/// One line of times (and, where anything moved, traffic), labelled.
fn print_time(label: &str, t: &Timings, traffic: &Traffic) {
    let label = if label.is_empty() {
        "time".to_owned()
    } else {
        format!("  {label}")
    };
    let mut line = format!(
        "  {label}: {:.3} ms total (upload {:.3}, compute {:.3}, download {:.3})",
        t.total, t.upload, t.compute, t.download
    );
    if *traffic != Traffic::default() {
        line += &format!(
            "; moved {} B up, {} B down in {} submissions",
            traffic.uploaded_bytes, traffic.downloaded_bytes, traffic.submissions
        );
    }
    outln!("{line}");
}

/// The outputs, each with its values when small and its path; `hint` says
/// how to give one a path.
fn print_outputs(outputs: &BTreeMap<String, OutputReport>, hint: &str) {
    for (name, o) in outputs {
        let desc = anycore::tensor::describe_name(o.dtype, &o.shape);
        let mut line = format!("  {name}: {desc}");
        if let Some(v) = &o.data {
            line += &format!(" = {}", serde_json::to_string(v).expect("values serialise"));
        }
        match &o.path {
            Some(p) => line += &format!(" -> {}", p.display()),
            None => line += &format!(" (not written; {hint})"),
        }
        outln!("{line}");
    }
}
