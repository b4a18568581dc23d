//! Baselines timed in the same run as the kernels: the machine's memory
//! bandwidth, and each kernel's own (its profile's `baselines`): the plain
//! rayon loop of the same operation, NumPy doing it, single threads. This machine is shared and noisy; a ratio to a
//! baseline measured minutes apart means more than an absolute time.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use rayon::prelude::*;
use serde::Serialize;

use super::measure::{Repeat, Stats, repeat, time_ms};
use super::model::BaselineName;
use crate::backend::Backend;
use crate::backend::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::kernel::profile::{Baseline, NumpyCode};
use crate::kernel::reduce::plain_sum;
use crate::kernel::{Kernel, Task};

/// Bytes in each buffer of the bandwidth tests: far past any cache.
pub const BANDWIDTH_BYTES: usize = 256 << 20;

/// The machine's memory bandwidth as a parallel copy and a parallel read
/// see it, in GB/s.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Bandwidth {
    /// Parallel copy between two 256 MiB buffers, read and write bytes counted.
    pub copy_gbps: f64,
    /// Parallel sum over a 256 MiB buffer.
    pub read_gbps: f64,
}

/// Measures [`Bandwidth`] on `pool`.
pub fn bandwidth(pool: &rayon::ThreadPool, plan: &Repeat) -> Result<Bandwidth> {
    let n = BANDWIDTH_BYTES / 4;
    let src: Vec<f32> = pool.install(|| (0..n).into_par_iter().map(|i| i as f32).collect());
    let mut dst = vec![0.0f32; n];
    let [copy] = repeat(plan, || {
        let ((), ms) = time_ms(|| pool.install(|| parallel_copy(&src, &mut dst)));
        Ok([ms])
    })?;
    let [read] = repeat(plan, || Ok([time_ms(|| sum_loop(pool, &src)).1]))?;
    let gbps = |bytes: usize, s: Stats| bytes as f64 / (s.median_ms * 1e-3) / 1e9;
    Ok(Bandwidth {
        copy_gbps: gbps(2 * BANDWIDTH_BYTES, copy),
        read_gbps: gbps(BANDWIDTH_BYTES, read),
    })
}

fn parallel_copy(src: &[f32], dst: &mut [f32]) {
    dst.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// A parallel sum over `x` on `pool` ([`plain_sum`]).
fn sum_loop(pool: &rayon::ThreadPool, x: &[f32]) -> f32 {
    pool.install(|| plain_sum(x))
}

/// One timed run of a baseline, in milliseconds.
pub type Once<'a> = Box<dyn FnMut() -> Result<f64> + 'a>;

/// A kernel's baselines that can be timed at `size` (a rayon loop within
/// its limit; NumPy where it runs), in the profile's order: the first is
/// the one the kernel's rows are compared with.
pub fn available(kernel: Kernel, size: usize, have_numpy: bool) -> Vec<Baseline> {
    kernel
        .profile()
        .baselines
        .iter()
        .copied()
        .filter(|b| match b {
            Baseline::RayonLoop { max_size } => size <= *max_size,
            Baseline::Numpy(_) => have_numpy,
            Baseline::SingleThreads => true,
        })
        .collect()
}

/// The curve a baseline's first timer draws, which rows compared with it
/// name.
pub fn main_curve(b: &Baseline) -> BaselineName {
    match b {
        Baseline::RayonLoop { .. } => BaselineName::RayonLoop,
        Baseline::Numpy(_) => BaselineName::Numpy,
        Baseline::SingleThreads => BaselineName::ThreadsTimesSingle,
    }
}

/// What the baselines are timed with.
pub struct Kit<'a> {
    /// The pool the plain loops run on (as many threads as the CPU
    /// backend's).
    pub pool: &'a rayon::ThreadPool,
    /// A one-thread CPU backend.
    pub single: &'a CpuBackend,
    /// NumPy, when it runs.
    pub numpy: Option<&'a mut Numpy>,
}

/// The timers of baseline `b` on `task` (of `size`), each ready to run
/// once: its curves' names and their runs. A NumPy baseline takes the kit's
/// NumPy for as long as the timers live.
pub fn timers<'a>(
    b: &Baseline,
    task: &'a Task,
    size: usize,
    kit: &mut Kit<'a>,
) -> Result<Vec<(BaselineName, Once<'a>)>> {
    let pool = kit.pool;
    Ok(match b {
        Baseline::RayonLoop { .. } => {
            let mut run = task.plain_loop();
            let once: Once<'a> = Box::new(move || Ok(time_ms(|| pool.install(&mut run)).1));
            vec![(BaselineName::RayonLoop, once)]
        }
        Baseline::Numpy(code) => {
            let numpy = kit
                .numpy
                .take()
                .ok_or_else(|| Error::Internal("a NumPy baseline without NumPy".into()))?;
            numpy.prepare(code, size)?;
            vec![(
                BaselineName::Numpy,
                Box::new(move || numpy.run_ms()) as Once<'a>,
            )]
        }
        Baseline::SingleThreads => {
            let threads = pool.current_num_threads();
            let single = kit.single;
            let singles = (0..threads)
                .map(|_| CpuBackend::new(Some(1)))
                .collect::<Result<Vec<_>>>()?;
            vec![
                (
                    BaselineName::ThreadsTimesSingle,
                    Box::new(move || Ok(single.run(task)?.timings.total / threads as f64)),
                ),
                (
                    BaselineName::SinglesAtOnce,
                    Box::new(move || Ok(singles_at_once(&singles, task)? / threads as f64)),
                ),
            ]
        }
    })
}

/// Milliseconds for each backend in `singles` to run `task` once, all
/// started together.
fn singles_at_once(singles: &[CpuBackend], task: &Task) -> Result<f64> {
    let (ran, ms) = time_ms(|| {
        std::thread::scope(|scope| {
            let runs: Vec<_> = singles
                .iter()
                .map(|single| scope.spawn(|| single.run(task)))
                .collect();
            runs.into_iter().try_for_each(|run| {
                run.join()
                    .map_err(|_| Error::Panicked("a single-thread run panicked".into()))?
                    .map(drop)
            })
        })
    });
    ran.map(|()| ms)
}

/// NumPy in a Python process that stays up for the whole bench, so its
/// runs can alternate with ours: the machine's noise then falls on both
/// alike. Each run is timed inside Python; what it runs is a kernel's
/// [`NumpyCode`].
pub struct Numpy {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// "NumPy 2.4.6 (scipy-openblas 0.3.31)".
    pub library: String,
}

/// Reads one JSON command a line from stdin: `{"setup", "run", "n"}` runs
/// `setup` with `n`, `np` and `rng` at hand, then the `run` expression once
/// (warm-up); `"run"` times the expression once. Answers one line each.
const NUMPY_SERVER: &str = r#"
import json, sys, time
import numpy as np
try:
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    blas = ("%s %s" % (cfg.get("name", "?"), cfg.get("version", ""))).strip()
except Exception:
    blas = "unknown BLAS"
print("NumPy %s (%s)" % (np.__version__, blas), flush=True)
rng = np.random.default_rng(1)
run = None
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd == "run":
        t = time.perf_counter()
        run()
        print((time.perf_counter() - t) * 1e3, flush=True)
    else:
        env = {"np": np, "rng": rng, "n": cmd["n"]}
        exec(cmd["setup"], env)
        run = eval("lambda: " + cmd["run"], env)
        run()
        print("ready", flush=True)
"#;

impl Numpy {
    /// Starts Python (`$ANYCORE_PYTHON` or `python3`) with NumPy on
    /// `threads` BLAS threads. `Err` says why not (no Python, no NumPy):
    /// the bench goes on without a reference gemm.
    pub fn start(threads: usize) -> std::result::Result<Numpy, String> {
        let python = std::env::var("ANYCORE_PYTHON").unwrap_or_else(|_| "python3".into());
        let threads = threads.to_string();
        let mut child = Command::new(&python)
            .args(["-c", NUMPY_SERVER])
            .env("OPENBLAS_NUM_THREADS", &threads)
            .env("OMP_NUM_THREADS", &threads)
            .env("MKL_NUM_THREADS", &threads)
            // OpenBLAS threads otherwise spin for a while after each product,
            // taking cores from the run that follows it.
            .env("OPENBLAS_THREAD_TIMEOUT", "4")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {python}: {e}"))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err("no pipes to Python".into());
        };
        let mut numpy = Numpy {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            library: String::new(),
        };
        numpy.library = numpy
            .answer()
            .map_err(|e| format!("{python} with NumPy: {e}"))?;
        Ok(numpy)
    }

    /// Makes the inputs of `code` at size `n` and runs it once.
    pub fn prepare(&mut self, code: &NumpyCode, n: usize) -> Result<()> {
        let command = serde_json::json!({"setup": code.setup, "run": code.run, "n": n});
        self.ask(&command.to_string()).map(drop)
    }

    /// Milliseconds of one run of the prepared code, as Python timed it.
    pub fn run_ms(&mut self) -> Result<f64> {
        let answer = self.ask("\"run\"")?;
        answer
            .parse()
            .map_err(|_| Error::Internal(format!("NumPy answered '{answer}'")))
    }

    fn ask(&mut self, command: &str) -> Result<String> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| Error::Internal(format!("NumPy stopped: {e}")))?;
        self.answer()
            .map_err(|e| Error::Internal(format!("NumPy: {e}")))
    }

    fn answer(&mut self) -> std::result::Result<String, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let mut err = String::new();
                if let Some(mut stderr) = self.child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                Err(err.lines().last().unwrap_or("exited").to_owned())
            }
            Ok(_) => Ok(line.trim().to_owned()),
        }
    }
}

impl Drop for Numpy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_is_right_and_every_plain_loop_runs() {
        // (The plain loops keep their results to themselves, so that a run
        // times only the operation; here they must just run.)
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let x: Vec<f32> = (0..100_003).map(|i| (i % 3) as f32).collect();
        assert_eq!(sum_loop(&pool, &x), x.iter().sum::<f32>());
        for kernel in Kernel::ALL {
            let task = (kernel.profile().task)(37, 1).unwrap();
            let mut run = task.plain_loop();
            pool.install(&mut run);
        }
    }
}
