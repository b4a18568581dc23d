//! `anycore video`: a YUV4MPEG2 stream in (a file or stdin), each frame
//! through a chain of filters, the stream out (a file or stdout), so that
//! it sits between two `ffmpeg` processes in a pipe. Progress on stderr
//! when it is a terminal, a summary on stderr at the end.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use anycore::backend::BackendChoice;
use anycore::coordinator::cost::CostModel;
use anycore::engine::{BlockingEngine, CostModelSource, EngineConfig};
use anycore::tensor::output_file::OutputFile;
use anycore::video::filter::Filter;
use anycore::video::y4m::Reader;
use anycore::video::{self, Summary};
use anycore::{Error, Result};

/// Frames in flight at most, for `--in-flight`.
const MAX_IN_FLIGHT: usize = 64;

/// Options of `anycore video`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A filter: NAME[:KEY=VALUE,...] (repeatable; applied in order):
    /// `blur:sigma=2`, `conv2d:kernel=sharpen` (box3, sharpen, edge,
    /// emboss, or rows such as `kernel=0 -1 0/-1 5 -1/0 -1 0`),
    /// `map:expr=255-x`; `planes=all|luma|chroma` picks the planes (all by
    /// default).
    #[arg(long = "filter", value_name = "NAME[:K=V,...]")]
    filters: Vec<String>,
    /// Where to run the filters: auto, gpu or cpu.
    #[arg(long, default_value = "auto", value_parser = super::backend_choice)]
    backend: BackendChoice,
    #[command(flatten)]
    software_gpu: super::SoftwareGpu,
    /// The input stream (.y4m), or - for stdin.
    #[arg(
        short = 'i',
        long = "input",
        default_value = "-",
        value_name = "IN.y4m"
    )]
    input: PathBuf,
    /// The output stream (.y4m), or - for stdout.
    #[arg(
        short = 'o',
        long = "output",
        default_value = "-",
        value_name = "OUT.y4m"
    )]
    output: PathBuf,
    /// Frames in flight at most (read ahead, computing, waiting to be
    /// written in order): memory is about this many frames.
    #[arg(long, default_value_t = video::IN_FLIGHT, value_name = "N")]
    in_flight: usize,
    /// Print the summary as one JSON object (on stderr, as the text one).
    #[arg(long)]
    json: bool,
}

pub fn main(args: Args) -> Result<()> {
    let filters = args
        .filters
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>>>()?;
    if !(1..=MAX_IN_FLIGHT).contains(&args.in_flight) {
        return Err(Error::BadInput(format!(
            "--in-flight {}: give 1 to {MAX_IN_FLIGHT} frames",
            args.in_flight
        )));
    }
    let to_file = args.output.as_os_str() != "-";
    if to_file {
        super::output::check_destination("-o", &args.output)?;
    }
    let input: Box<dyn Read + Send> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(&args.input).map_err(|e| Error::BadFile {
            path: args.input.clone(),
            message: format!("cannot open it: {e}"),
        })?)
    };
    let reader = Reader::new(BufReader::with_capacity(1 << 20, input)).map_err(|e| match e {
        Error::BadInput(m) if args.input.as_os_str() != "-" => Error::BadFile {
            path: args.input.clone(),
            message: m,
        },
        e => e,
    })?;
    let engine = engine(&args)?;
    engine
        .engine()
        .coordinator()
        .check_choice(args.backend)
        .map_err(|e| match e {
            Error::NoGpu(why) => Error::NoGpu(format!("--backend gpu needs a GPU adapter: {why}")),
            e => e,
        })?;
    // Only now, with the stream's header read and the backend there, does
    // the output begin: a file under a partial name, renamed into place at
    // the end (so `-o` may name the input), or stdout.
    let write_err = |source| Error::Write {
        path: args.output.clone(),
        source,
    };
    let mut file = None;
    let output: Box<dyn Write> = if to_file {
        Box::new(file.insert(OutputFile::create(&args.output).map_err(write_err)?))
    } else {
        Box::new(std::io::stdout().lock())
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
        bar
    });
    let mut sink = BufWriter::with_capacity(1 << 20, output);
    let summary = video::process(
        &engine,
        reader,
        &mut sink,
        &filters,
        args.backend,
        args.in_flight,
        |s| {
            if let Some(bar) = &bar {
                bar.set_message(line(s));
                bar.tick();
            }
        },
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    // The frames written are whole, also when the stream went bad later:
    // the file goes into place unless a write to it failed (then it is
    // torn, and that failure is the error to tell).
    let flushed = sink.flush();
    drop(sink);
    if let Some(file) = file
        && let Err(e) = flushed.and_then(|()| file.finish())
    {
        return Err(match summary {
            Err(Error::BadInput(stream)) => write_err(std::io::Error::new(
                e.kind(),
                format!("{e} (the stream had also gone bad: {stream})"),
            )),
            _ => write_err(e),
        });
    }
    let summary = summary?;
    if args.json {
        let json = serde_json::to_string(&summary).expect("a summary serialises");
        eprintln!("{json}");
    } else {
        eprintln!("{}", line(&summary));
    }
    Ok(())
}

/// `120 frames 1920×1080 in 4.10 s: 29.3 fps (91.0 MB/s) on cpu`
fn line(s: &Summary) -> String {
    let on: Vec<String> = s
        .backends
        .iter()
        .map(|(b, n)| format!("{b} ({n})"))
        .collect();
    format!(
        "{} frames {}×{} in {:.2} s: {:.1} fps ({:.1} MB/s){}",
        s.frames,
        s.width,
        s.height,
        s.seconds,
        s.fps,
        s.mb_per_s,
        if on.is_empty() {
            String::new()
        } else {
            format!(" on {}", on.join(", "))
        }
    )
}

/// An engine for the run: software GPUs as the flag says, the cost model
/// probed only when `auto` needs it.
fn engine(args: &Args) -> Result<BlockingEngine> {
    let mut config = EngineConfig::default();
    config.gpu.allow_software = args.software_gpu.allowed();
    config.use_gpu = args.backend != BackendChoice::Cpu;
    if args.backend != BackendChoice::Auto {
        config.cost_model = CostModelSource::Fixed(CostModel::default());
    }
    BlockingEngine::start(config)
}
