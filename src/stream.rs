//! Arrays larger than memory: a job over `.npy` files whose arrays do not
//! fit its memory budget runs a chunk at a time. A reader thread reads the
//! next chunk of every input while the engine computes this one and a
//! writer thread writes the one before, so the three overlap and at most
//! a few chunks are held at once, whatever the files' size.
//!
//! How a kernel's outputs come from its chunks' outputs is the kernel's
//! own [`Streaming`]: the same chunk of an elementwise output, a fold of
//! reductions and counts, a running total carried across a scan. A
//! kernel that needs whole arrays runs only within the budget; past it the
//! job is refused with the budget it would need.
//!
//! ```no_run
//! # use std::collections::BTreeMap;
//! # use std::path::PathBuf;
//! use anycore::backend::BackendChoice;
//! use anycore::engine::{BlockingEngine, EngineConfig};
//! use anycore::kernel::Kernel;
//! use anycore::stream::{FileJob, Split};
//!
//! let job = FileJob {
//!     kernel: Kernel::Reduce,
//!     params: BTreeMap::new(),
//!     inputs: BTreeMap::from([("x".to_owned(), PathBuf::from("big.npy"))]),
//!     outputs: BTreeMap::new(),
//! };
//! if let Split::Chunks(chunks) = job.split(256 << 20, BackendChoice::Auto)? {
//!     let engine = BlockingEngine::start(EngineConfig::default())?;
//!     let done = chunks.run(&engine, BackendChoice::Auto)?;
//!     println!("sum {:?} in {} chunks", done.report.outputs["out"], done.chunks);
//! }
//! # Ok::<(), anycore::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use crate::backend::{BackendChoice, BackendKind, Timings, Traffic};
use crate::coordinator::JobReport;
use crate::engine::Runner;
use crate::error::{Error, Result};
use crate::kernel::{Kernel, Outputs, Streaming};
use crate::pipeline::{Pipeline, Step};
use crate::tensor::npy::{ChunkReader, ChunkWriter};
use crate::tensor::{Spec, Tensor, TensorData};

/// Chunks held at once, each with its inputs and outputs: one being read,
/// one waiting, one computing (its inputs and outputs both, and a copy on
/// the way to or from a device), one waiting to be written and one being
/// written.
const CHUNKS_HELD: u64 = 8;

/// Chunks are whole multiples of this many elements.
const CHUNK_STEP: usize = 1 << 12;

/// The most elements a chunk takes on the CPU, however large the budget:
/// 2 MiB of f32, which the reader's copy out of the page cache leaves in
/// the L3 cache for the kernel to read. Measured here (2 GiB through
/// `reduce` and `map`, 2 cores, 1 MiB L2, 32 MiB L3): 16 MiB chunks ran at
/// 0.5× `cat FILE > /dev/null`, 2 MiB ones at 0.7–0.85× (1 and 4 MiB a
/// little slower).
const MAX_CHUNK_CPU: usize = 1 << 19;

/// The most elements a chunk takes on a GPU: 16 MiB of f32, where each
/// chunk's transfers are long beside the fixed cost of a job on the
/// device (on an H200, 4 MiB jobs of `axpy` ran end to end at 0.4× the
/// rate of 64 MiB ones).
const MAX_CHUNK_GPU: usize = 1 << 22;

const MIB: u64 = 1 << 20;

/// A job over `.npy` files: each input read from a file, the outputs that
/// have a path written to it.
#[derive(Clone, Debug)]
pub struct FileJob {
    /// The kernel.
    pub kernel: Kernel,
    /// Parameters as text.
    pub params: BTreeMap<String, String>,
    /// Input files by input name.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Where to write outputs, by output name (`.npy`).
    pub outputs: BTreeMap<String, PathBuf>,
}

/// How a [`FileJob`] runs within a memory budget.
pub enum Split {
    /// Whole: its arrays fit (or an input is not a `.npy` file).
    Whole,
    /// In chunks.
    Chunks(Chunks),
}

/// A job split into chunks along its inputs' elements, ready to run.
pub struct Chunks {
    job: FileJob,
    streaming: &'static Streaming,
    /// The inputs read in chunks, by name.
    streamed: Vec<(String, ChunkReader)>,
    /// Inputs of one element, given whole to every chunk.
    broadcast: Vec<(String, Tensor)>,
    /// The whole job's outputs.
    outputs: Vec<(&'static str, Spec)>,
    /// Elements along which it is split.
    len: usize,
    /// Elements a chunk.
    chunk: usize,
    budget: u64,
}

/// A finished chunked run.
#[derive(Debug)]
pub struct Streamed {
    /// The run as one job's report: where the chunks ran, why and how the
    /// job was split, phases summed over the chunks (`total` the whole
    /// run's), and the outputs folded from the chunks (reductions,
    /// counts), which are small; the others went to their files chunk by
    /// chunk.
    pub report: JobReport,
    /// Every output's dtype and shape.
    pub specs: Vec<(&'static str, Spec)>,
    /// Chunks run.
    pub chunks: usize,
    /// Elements a chunk.
    pub chunk_elements: usize,
    /// Bytes of input read.
    pub bytes_read: u64,
}

impl FileJob {
    /// Decides how the job runs within `budget` bytes of arrays: whole if
    /// its inputs and outputs fit (or an input is not a `.npy` file), in
    /// chunks if they do not and its kernel streams. A kernel that does
    /// not stream, or a budget too small for even one chunk, is a
    /// bad-input error saying what budget it needs. The job is checked
    /// here, from the files' headers: no data is read. Chunks are larger
    /// when `choice` is the GPU ([`MAX_CHUNK_GPU`]).
    pub fn split(&self, budget: u64, choice: BackendChoice) -> Result<Split> {
        let max_chunk = match choice {
            BackendChoice::Gpu => MAX_CHUNK_GPU,
            BackendChoice::Cpu | BackendChoice::Auto => MAX_CHUNK_CPU,
        };
        if self.inputs.values().any(|p| !is_npy(p)) {
            return Ok(Split::Whole);
        }
        let kernel = self.kernel;
        // Names first, as a whole job checks them: before any file opens.
        kernel.params(&self.params)?;
        for name in self.inputs.keys() {
            kernel.check_input(name)?;
        }
        let mut readers = Vec::new();
        for (name, path) in &self.inputs {
            readers.push((name.clone(), ChunkReader::open(path)?));
        }
        let specs = readers
            .iter()
            .map(|(n, r)| (n.clone(), r.layout().spec.clone()))
            .collect();
        let plan = kernel.plan(specs, &self.params)?;
        let input_bytes = readers
            .iter()
            .fold(0u64, |n, (_, r)| n.saturating_add(r.layout().spec.bytes()));
        let needs = input_bytes.saturating_add(plan.working_bytes());
        if needs <= budget {
            return Ok(Split::Whole);
        }
        let streaming = kernel.streaming();
        let whole_only = || {
            Error::bad(format!(
                "{kernel} needs its whole arrays in memory at once: about {} of inputs and \
                 outputs, more than the memory budget of {}; give --memory-budget {} or more",
                Size(needs),
                Size(budget),
                Size(needs).flag()
            ))
        };
        match streaming {
            Streaming::Whole => return Err(whole_only()),
            Streaming::Fold { check, .. } => check(&kernel.params(&self.params)?)?,
            Streaming::Elementwise | Streaming::Carry(_) => {}
        }
        let len = readers
            .iter()
            .map(|(_, r)| r.layout().len())
            .max()
            .unwrap_or(0);
        let mut streamed = Vec::new();
        let mut broadcast = Vec::new();
        for (name, mut reader) in readers {
            let n = reader.layout().len();
            if n == len {
                streamed.push((name, reader));
            } else if n == 1 {
                let shape = reader.layout().spec.shape.clone();
                broadcast.push((name, Tensor::new(shape, reader.read(1)?)));
            } else {
                // The kernel's own checks accept no such job.
                return Err(whole_only());
            }
        }
        // A fold's outputs are held whole, three at a time (so far, a
        // chunk's, one computing); other outputs are chunks like the
        // inputs. Bytes an element of the split length takes in a chunk:
        let folds = matches!(streaming, Streaming::Fold { .. });
        let element_bytes = streamed
            .iter()
            .map(|(_, r)| r.layout().spec.dtype.size() as u64)
            .chain(
                plan.outputs
                    .iter()
                    .filter(|_| !folds)
                    .map(|(_, s)| s.dtype.size() as u64),
            )
            .sum::<u64>()
            .max(1);
        let folded = match folds {
            true => plan.output_bytes().saturating_mul(3),
            false => 0,
        };
        let chunk_within = |fixed: u64| {
            let fits = budget.saturating_sub(fixed) / (CHUNKS_HELD * element_bytes);
            (fits.min(max_chunk as u64) as usize) / CHUNK_STEP * CHUNK_STEP
        };
        // Then what a chunk's computing takes beside (a histogram's edges
        // and counters), as planned for a chunk of that size: no more for
        // a smaller one.
        let scratch = |chunk: usize| -> Result<u64> {
            let specs = streamed
                .iter()
                .map(|(name, r)| {
                    let dtype = r.layout().spec.dtype;
                    (
                        name.clone(),
                        Spec {
                            dtype,
                            shape: vec![chunk],
                        },
                    )
                })
                .chain(broadcast.iter().map(|(name, t)| (name.clone(), t.spec())))
                .collect();
            Ok(kernel.plan(specs, &self.params)?.scratch_bytes)
        };
        let mut chunk = chunk_within(folded);
        if chunk > 0 {
            chunk = chunk_within(folded.saturating_add(scratch(chunk)?));
        }
        if chunk == 0 {
            let least = folded
                .saturating_add(scratch(CHUNK_STEP)?)
                .saturating_add(CHUNKS_HELD * element_bytes * CHUNK_STEP as u64);
            // Whole, if that takes less.
            return Err(Error::bad(format!(
                "the memory budget of {} is too small to run {kernel} in chunks: give \
                 --memory-budget {} or more",
                Size(budget),
                Size(least.min(needs)).flag()
            )));
        }
        Ok(Split::Chunks(Chunks {
            job: self.clone(),
            streaming,
            streamed,
            broadcast,
            outputs: plan.outputs,
            len,
            chunk,
            budget,
        }))
    }
}

/// A memory size for messages: MiB, or KiB below one.
pub struct Size(pub u64);

impl Size {
    /// As `--memory-budget` takes it, rounded up.
    pub fn flag(&self) -> String {
        match self.0 {
            n if n >= MIB => format!("{}M", n.div_ceil(MIB)),
            n => format!("{}K", n.div_ceil(1024)),
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            n if n >= MIB && n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n if n >= MIB => write!(f, "{:.1} MiB", n as f64 / MIB as f64),
            n if n % 1024 == 0 => write!(f, "{} KiB", n / 1024),
            n if n >= 1024 => write!(f, "{:.1} KiB", n as f64 / 1024.0),
            n => write!(f, "{n} bytes"),
        }
    }
}

/// Whether a path names a `.npy` file (by its extension).
fn is_npy(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// A chunk of every streamed input, in order.
type ChunkIn = Result<Vec<(String, Tensor)>>;

impl Chunks {
    /// Elements a chunk.
    pub fn chunk_elements(&self) -> usize {
        self.chunk
    }

    /// Runs the chunks on `runner`, the first placed by `choice` and the
    /// rest on the backend it went to, reading, computing and writing
    /// overlapped. Outputs with a path are written there (renamed into
    /// place once whole: a failed run leaves none).
    pub fn run(self, runner: &dyn Runner, choice: BackendChoice) -> Result<Streamed> {
        let start = Instant::now();
        let Chunks {
            job,
            streaming,
            streamed,
            broadcast,
            outputs: specs,
            len,
            chunk,
            budget,
        } = self;
        let kernel = job.kernel;
        let params = kernel.params(&job.params)?;
        let chunks = len.div_ceil(chunk);
        let bytes_read = streamed
            .iter()
            .fold(0u64, |n, (_, r)| n.saturating_add(r.layout().spec.bytes()));
        // The outputs written chunk by chunk: all but a fold's.
        let mut writers = Vec::new();
        for (name, spec) in &specs {
            if matches!(streaming, Streaming::Fold { .. }) {
                break;
            }
            if let Some(path) = job.outputs.get(*name) {
                writers.push((name.to_string(), ChunkWriter::create(path, spec)?));
            }
        }
        let (in_tx, in_rx) = sync_channel::<ChunkIn>(1);
        let (out_tx, out_rx) = sync_channel::<Outputs>(1);
        std::thread::scope(|scope| {
            let reader = std::thread::Builder::new()
                .name("anycore-stream-read".into())
                .spawn_scoped(scope, move || read_chunks(streamed, chunk, chunks, in_tx))
                .map_err(|e| Error::Internal(format!("cannot start the stream reader: {e}")))?;
            let writer = std::thread::Builder::new()
                .name("anycore-stream-write".into())
                .spawn_scoped(scope, move || write_chunks(writers, chunks, out_rx))
                .map_err(|e| Error::Internal(format!("cannot start the stream writer: {e}")))?;
            let computed = (|| {
                let mut run = Run {
                    choice,
                    first: None,
                    timings: Timings::default(),
                    traffic: Traffic::default(),
                };
                let mut folded: Option<Outputs> = None;
                let mut total = 0.0f64;
                for inputs in in_rx.iter() {
                    let inputs = inputs?;
                    // The chunk's last input element, for a running total.
                    let last = match (streaming, inputs.first()) {
                        (Streaming::Carry(_), Some((_, x))) => Some(last_element(x)),
                        _ => None,
                    };
                    let mut step = Step::new("chunk", kernel);
                    for (name, value) in &job.params {
                        step = step.param(name, value);
                    }
                    for (name, tensor) in inputs.into_iter().chain(broadcast.iter().cloned()) {
                        step = step.input(&name, tensor);
                    }
                    let mut outputs = run.chunk(runner, step, &specs)?;
                    match streaming {
                        Streaming::Fold { fold, .. } => match folded.as_mut() {
                            None => folded = Some(outputs),
                            Some(so_far) => fold(&params, so_far, outputs)?,
                        },
                        Streaming::Carry(carry) => {
                            let last = last.expect("a carried kernel has an input");
                            for out in outputs.values_mut() {
                                carry(&params, &last, out, &mut total);
                            }
                            send(&out_tx, outputs)?;
                        }
                        Streaming::Elementwise | Streaming::Whole => send(&out_tx, outputs)?,
                    }
                }
                drop(out_tx);
                Ok((run, folded.unwrap_or_default()))
            })();
            // After an error the channels close: the reader stops at its
            // next chunk, the writer drops its files unfinished.
            drop(in_rx);
            let read = reader
                .join()
                .map_err(|_| Error::Internal("the stream reader panicked".into()));
            let written = writer
                .join()
                .map_err(|_| Error::Internal("the stream writer panicked".into()));
            // A failed write stops the run: its error is the one to tell.
            written??;
            let (run, outputs) = computed?;
            read??;
            let (backend, device, reason) =
                run.first
                    .unwrap_or((BackendKind::Cpu, String::new(), "no chunk ran".to_owned()));
            let mut timings = run.timings;
            timings.total = start.elapsed().as_secs_f64() * 1e3;
            Ok(Streamed {
                report: JobReport {
                    kernel,
                    backend,
                    device,
                    placement_reason: format!(
                        "{reason}; streamed in {chunks} chunks of {chunk} elements (memory budget \
                     {})",
                        Size(budget)
                    ),
                    timings,
                    traffic: run.traffic,
                    outputs,
                    kept: BTreeMap::new(),
                },
                specs,
                chunks,
                chunk_elements: chunk,
                bytes_read,
            })
        })
    }
}

/// The state of a chunked run: where its first chunk went, and the
/// phases so far.
struct Run {
    choice: BackendChoice,
    first: Option<(BackendKind, String, String)>,
    timings: Timings,
    traffic: Traffic,
}

impl Run {
    /// Runs one chunk, the first where `choice` places it and the rest on
    /// the same backend.
    fn chunk(
        &mut self,
        runner: &dyn Runner,
        step: Step,
        specs: &[(&str, Spec)],
    ) -> Result<Outputs> {
        let mut pipeline = Pipeline::new().step(step);
        for (name, _) in specs {
            pipeline = pipeline.output(name, "chunk", name);
        }
        let report = runner.run_pipeline(pipeline, self.choice)?;
        if self.first.is_none() {
            self.choice = match report.backend {
                BackendKind::Gpu => BackendChoice::Gpu,
                BackendKind::Cpu => BackendChoice::Cpu,
            };
            self.first = Some((report.backend, report.device, report.placement_reason));
        }
        self.timings.add(&report.timings);
        self.traffic.add(&report.traffic);
        Ok(report.outputs)
    }
}

/// A tensor's last element, as a one-element tensor.
fn last_element(x: &Tensor) -> Tensor {
    let n = x.len();
    let data = match x.data() {
        TensorData::F32(v) => TensorData::F32(v[n.saturating_sub(1)..].to_vec()),
        TensorData::U32(v) => TensorData::U32(v[n.saturating_sub(1)..].to_vec()),
        TensorData::I32(v) => TensorData::I32(v[n.saturating_sub(1)..].to_vec()),
        TensorData::U8(v) => TensorData::U8(v[n.saturating_sub(1)..].to_vec()),
    };
    Tensor::new(vec![data.len()], data)
}

/// Passes a chunk's outputs to the writer.
fn send(to: &SyncSender<Outputs>, outputs: Outputs) -> Result<()> {
    to.send(outputs)
        .map_err(|_| Error::Internal("the stream writer stopped".into()))
}

/// Reads `chunks` chunks of `chunk` elements of every input, in order,
/// until the receiver goes away.
fn read_chunks(
    mut inputs: Vec<(String, ChunkReader)>,
    chunk: usize,
    chunks: usize,
    to: SyncSender<ChunkIn>,
) -> Result<()> {
    for _ in 0..chunks {
        let next = inputs
            .iter_mut()
            .map(|(name, reader)| {
                let data = reader.read(chunk)?;
                Ok((name.clone(), Tensor::new(vec![data.len()], data)))
            })
            .collect::<Result<Vec<_>>>();
        let failed = next.is_err();
        if to.send(next).is_err() || failed {
            break;
        }
    }
    Ok(())
}

/// Writes each chunk's outputs to their files, and finishes the files
/// once all `chunks` came; if the run stopped early they are dropped
/// unfinished (removed), and only a write's own failure is an error.
fn write_chunks(
    mut writers: Vec<(String, ChunkWriter)>,
    chunks: usize,
    from: Receiver<Outputs>,
) -> Result<()> {
    let mut came = 0;
    for outputs in from.iter() {
        came += 1;
        for (name, writer) in &mut writers {
            if let Some(out) = outputs.get(name.as_str()) {
                writer.write(out.data())?;
            }
        }
    }
    if came == chunks {
        for (_, writer) in writers {
            writer.finish()?;
        }
    }
    Ok(())
}
