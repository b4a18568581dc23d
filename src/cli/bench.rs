//! `anycore bench`: sweep sizes of each kernel on each backend beside
//! baselines timed in the same run; print a table, and optionally write the
//! report as JSON and a log-log chart as SVG.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use anycore::backend::BackendKind;
use anycore::backend::gpu::GpuOptions;
use anycore::bench::{self, Config, report, svg};
use anycore::kernel::Kernel;
use anycore::{Error, Result};

/// Options of `anycore bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A kernel to measure (repeatable; `anycore kernels` lists them). All
    /// of them when not given.
    #[arg(long = "kernel", value_name = "KERNEL")]
    kernels: Vec<String>,
    /// Sizes for every chosen kernel, comma-separated: elements for the
    /// vector kernels, n of n×n for matmul and mandelbrot. Each kernel has
    /// its own sweep when not given.
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    sizes: Option<Vec<usize>>,
    /// Backends to measure, comma-separated (cpu,gpu). Without this, a
    /// missing GPU is noted and skipped; naming gpu makes it required.
    #[arg(long, value_delimiter = ',', value_name = "cpu,gpu")]
    backend: Option<Vec<String>>,
    #[command(flatten)]
    software_gpu: super::SoftwareGpu,
    /// Fewer sizes and shorter repeats (under a minute on two cores).
    #[arg(long)]
    quick: bool,
    /// Write the whole report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a log-log chart of throughput against size to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also compare chains of 1, 4 and 16 `axpy` steps run as separate
    /// jobs and as one pipeline, on each backend (n = 2^24 elements a
    /// step, 2^20 with --quick, or --sizes). Alone, without --kernel, only
    /// the chains are measured.
    #[arg(long)]
    chain: bool,
}

pub fn main(args: Args) -> Result<()> {
    let config = config(&args)?;
    // Open the output files first: a bad path should not cost a whole sweep.
    let json = args.json.as_deref().map(create).transpose()?;
    let chart = args.svg.as_deref().map(create).transpose()?;

    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {elapsed_precise}  {msg}")
            .expect("valid template"),
    );
    let report = bench::run(&config, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(p.step);
    })?;
    bar.finish_and_clear();
    print!("{}", report::table(&report));

    if let Some((file, path)) = json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Internal(format!("cannot encode the report: {e}")))?;
        write_all(file, path, text.as_bytes())?;
    }
    if let Some((file, path)) = chart {
        write_all(file, path, svg::chart(&report).as_bytes())?;
    }
    Ok(())
}

fn config(args: &Args) -> Result<Config> {
    let kernels = if args.kernels.is_empty() && args.chain {
        Vec::new()
    } else if args.kernels.is_empty() {
        Kernel::ALL.to_vec()
    } else {
        let mut kernels = Vec::new();
        for name in &args.kernels {
            let kernel =
                Kernel::from_name(name).map_err(|e| Error::BadInput(format!("--kernel: {e}")))?;
            if !kernels.contains(&kernel) {
                kernels.push(kernel);
            }
        }
        kernels
    };
    let (backends, require_gpu) = match &args.backend {
        None => (vec![BackendKind::Cpu, BackendKind::Gpu], false),
        Some(names) => {
            let mut backends = Vec::new();
            for name in names {
                let kind = BackendKind::from_name(name)
                    .map_err(|e| Error::BadInput(format!("--backend: {e} (or both: cpu,gpu)")))?;
                if !backends.contains(&kind) {
                    backends.push(kind);
                }
            }
            let gpu = backends.contains(&BackendKind::Gpu);
            (backends, gpu)
        }
    };
    if let Some(sizes) = &args.sizes
        && sizes.is_empty()
    {
        return Err(Error::BadInput("--sizes: give at least one size".into()));
    }
    let mut gpu = GpuOptions::from_env();
    gpu.allow_software = args.software_gpu.allowed();
    Ok(Config {
        kernels,
        sizes: args.sizes.clone(),
        backends,
        require_gpu,
        gpu,
        quick: args.quick,
        seed: args.seed,
        chain: args.chain.then(|| {
            args.sizes
                .clone()
                .unwrap_or_else(|| bench::chain::default_sizes(args.quick))
        }),
    })
}

fn create(path: &Path) -> Result<(File, &Path)> {
    let file = File::create(path)
        .map_err(|e| Error::BadInput(format!("cannot write {}: {e}", path.display())))?;
    Ok((file, path))
}

fn write_all(mut file: File, path: &Path, bytes: &[u8]) -> Result<()> {
    file.write_all(bytes).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}
