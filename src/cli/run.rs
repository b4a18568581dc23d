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
use anycore::kernel::{Outputs, Painter, Task};
use anycore::service::api::{JobResponse, PipelineResponse};
use anycore::tensor::{Handle, Tensor, TensorData, npy};
use anycore::{Error, Result};

use super::inputs::{self, InputSpec};
use super::{output, remote};

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
    let spec = JobSpec {
        kernel: kernel_name,
        backend: None,
        params: pairs("-p", "VALUE", &args.params)?
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        outputs: outputs.keys().copied().collect(),
        inputs: pairs("-i", "FILE.npy", &args.inputs)?
            .into_iter()
            .map(|(name, path)| (name.to_owned(), NpyFile(path)))
            .collect(),
    };
    output::check_formats(kernel_name, outputs.iter().map(|(n, p)| (*n, p.as_ref())))?;
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
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        println!(
            "pipeline of {} steps ran on {} ({})",
            report.steps.len(),
            report.run.backend,
            report.run.device
        );
        println!("  why: {}", report.run.placement_reason);
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
    output::check_given(&results, paths.keys().copied())?;
    for (name, tensor) in results {
        let path = paths.get(name.as_str()).map(PathBuf::from);
        if let Some(path) = &path {
            output::write(&tensor, path, painter)?;
        }
        report.outputs.insert(name, OutputReport::new(tensor, path));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        print_human(&report);
    }
    Ok(())
}

fn print_human(r: &Report) {
    println!("{} ran on {} ({})", r.kernel, r.run.backend, r.run.device);
    println!("  why: {}", r.run.placement_reason);
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
    println!("{line}");
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
        println!("{line}");
    }
}
