//! Command-line parsing (clap) and the exit-code contract: 0 success, 2 bad
//! usage or bad input, 1 a failure while running. Each subcommand has its
//! own module; clap stays out of the library.

mod batch;
mod bench;
mod devices;
mod inputs;
mod kernels;
mod lines;
mod loadgen;
mod output;
mod pooled;
mod remote;
mod run;
mod serve;
mod video;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use anycore::backend::BackendChoice;

/// Run data-parallel kernels on the GPU (wgpu) or the CPU (rayon).
#[derive(Parser, Debug)]
#[command(name = "anycore", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the GPU adapters wgpu sees and the CPU pool.
    Devices(devices::Args),
    /// List the kernels: inputs, parameters (with defaults) and outputs.
    Kernels(kernels::Args),
    /// Run one kernel on .npy inputs (`anycore kernels` lists them).
    Run(run::Args),
    /// Run many jobs from a JSON-lines file, concurrently.
    Batch(batch::Args),
    /// Serve jobs over HTTP.
    Serve(serve::Args),
    /// Measure each kernel's throughput on the GPU and the CPU beside
    /// baselines timed in the same run.
    Bench(bench::Args),
    /// Load a running `anycore serve` with jobs from many connections and
    /// report throughput, latency percentiles and outcomes.
    Loadgen(loadgen::Args),
    /// Filter a YUV4MPEG2 video frame by frame (between two ffmpeg
    /// processes in a pipe: `ffmpeg … -f yuv4mpegpipe - | anycore video
    /// --filter blur:sigma=2 | ffmpeg -i - …`).
    Video(video::Args),
    /// Join a pool of workers on a NATS JetStream server and run its jobs
    /// (`batch --nats` submits to it).
    Worker(worker::Args),
}

/// `--allow-software-gpu`, the same in every subcommand.
#[derive(clap::Args, Debug, Clone, Copy)]
struct SoftwareGpu {
    /// Accept a software GPU adapter (llvmpipe, SwiftShader, WARP) when no
    /// hardware one exists; also ANYCORE_ALLOW_SOFTWARE_GPU=1.
    #[arg(long = "allow-software-gpu")]
    allow: bool,
}

impl SoftwareGpu {
    /// Whether software adapters count, from the flag or the environment.
    fn allowed(self) -> bool {
        self.allow || anycore::backend::gpu::adapter::software_allowed_by_env()
    }
}

/// Parses `--backend` (`auto`, `gpu` or `cpu`) with the one parser of
/// backend names.
fn backend_choice(name: &str) -> std::result::Result<BackendChoice, String> {
    BackendChoice::from_name(name).map_err(|e| e.to_string())
}

/// A memory size as `--memory-budget` takes it: bytes, or a number with
/// `K`, `M`, `G` or `T` (powers of 1024; `MiB`, `MB` and `m` read alike).
fn memory_size(text: &str) -> std::result::Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' (use K, M, G or T, e.g. 256M)"
            ));
        }
    };
    let number: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 256M, 4G or a number of bytes)"))?;
    number
        .checked_mul(1u64 << shift)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("'{text}' is not a size above 0 that fits in 64 bits"))
}

/// A multi-threaded tokio runtime for the commands that serve many jobs.
fn runtime() -> anycore::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
        .map_err(|e| anycore::Error::Internal(format!("cannot start a tokio runtime: {e}")))
}

/// The bearer token from `--token-file`, else `ANYCORE_TOKEN`, if any: the
/// one a server requires (`serve`) or a client sends (`loadgen`).
fn token(file: Option<&std::path::Path>) -> anycore::Result<Option<String>> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            anycore::Error::BadInput(format!(
                "--token-file {}: cannot read it ({e})",
                path.display()
            ))
        })?,
        None => match std::env::var("ANYCORE_TOKEN") {
            Ok(token) => token,
            Err(_) => return Ok(None),
        },
    };
    let token = token.trim().to_owned();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(anycore::Error::BadInput(
            "the token is empty or holds spaces or control characters".into(),
        ));
    }
    Ok(Some(token))
}

/// A positive number of seconds given to `flag`.
fn seconds(flag: &str, value: f64) -> anycore::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs_f64() <= MAX_SECONDS)
        .ok_or_else(|| {
            anycore::Error::BadInput(format!(
                "{flag} {value}: give a positive number of seconds, at most {MAX_SECONDS:e}"
            ))
        })
}

/// Longest a setting in seconds may be (about 31 years): deadlines are
/// added to clock readings, which must not overflow.
const MAX_SECONDS: f64 = 1e9;

/// `println!` for commands that keep ignoring SIGPIPE (see
/// [`quiet_on_closed_stdout`]): a closed stdout (`anycore loadgen … | head
/// -1`) ends the process quietly, with the status a SIGPIPE would give
/// (128 + 13), instead of `println!`'s panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// One line to stdout, for [`outln!`].
pub fn write_line(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Lets a closed stdout end the process quietly, as it ends `cat` or `ls`
/// (`anycore kernels | head`), instead of a panic in `println!`. Only for
/// commands that talk to no socket or child process: with SIGPIPE at its
/// default, a peer closing one would kill the process instead of giving an
/// error (`serve`, `run --server`, `loadgen`, and `bench` with its NumPy
/// process keep Rust's default of ignoring it).
fn quiet_on_closed_stdout() {
    #[cfg(target_os = "linux")]
    // SAFETY: called at the start of main, before any other thread exists;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Parses the command line, runs it, and maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 on usage errors, as clap does
    let prints_only = match &cli.command {
        // A closed pipe ends `video` as it ends `cat`.
        Command::Devices(_) | Command::Kernels(_) | Command::Batch(_) | Command::Video(_) => true,
        Command::Run(args) => !args.talks_to_a_server(),
        Command::Serve(_) | Command::Bench(_) | Command::Loadgen(_) | Command::Worker(_) => false,
    };
    if prints_only {
        quiet_on_closed_stdout();
    }
    let result = match cli.command {
        Command::Devices(args) => devices::main(args),
        Command::Kernels(args) => kernels::main(args),
        Command::Run(args) => run::main(args),
        Command::Batch(args) => batch::main(args),
        Command::Serve(args) => serve::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Loadgen(args) => loadgen::main(args),
        Command::Video(args) => video::main(args),
        Command::Worker(args) => worker::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_user_error() { 2 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory_size;

    #[test]
    fn memory_sizes_read_as_bytes_and_powers_of_1024() {
        for (text, want) in [
            ("1048576", 1 << 20),
            ("512K", 512 << 10),
            ("256M", 256 << 20),
            ("256mib", 256 << 20),
            ("64MB", 64 << 20),
            ("4G", 4 << 30),
            ("2TiB", 2 << 40),
            ("7b", 7),
        ] {
            assert_eq!(memory_size(text), Ok(want), "{text}");
        }
        for text in [
            "",
            "0",
            "0M",
            "-5",
            "1.5G",
            "5bb",
            "5kibb",
            "12Q",
            "M",
            "99999999999T",
        ] {
            assert!(memory_size(text).is_err(), "{text} accepted");
        }
    }
}
