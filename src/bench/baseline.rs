//! Baselines timed in the same run as the kernels: the machine's memory
//! bandwidth, plain rayon loops of the same operations, and NumPy's `a @ b`
//! as the reference gemm. This machine is shared and noisy; a ratio to a
//! baseline measured minutes apart means more than an absolute time.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use rayon::prelude::*;
use serde::Serialize;

use super::measure::{Repeat, Stats, repeat, time_ms};
use crate::error::{Error, Result};
use crate::kernel::mandelbrot::Mandelbrot;

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

/// The plain rayon loop `y ← a·x + y`, in place, the way a user would
/// write it.
pub fn axpy_loop(pool: &rayon::ThreadPool, a: f32, x: &[f32], y: &mut [f32]) {
    pool.install(|| y.par_iter_mut().zip(x).for_each(|(y, &x)| *y += a * x));
}

/// A rayon sum that keeps up with memory: sixteen f32 accumulators per
/// block so the compiler can vectorise (a bare `par_iter().sum()` cannot,
/// and would flatter whatever is compared with it).
pub fn sum_loop(pool: &rayon::ThreadPool, x: &[f32]) -> f32 {
    pool.install(|| {
        x.par_chunks(1 << 16)
            .map(|block| {
                let mut acc = [0.0f32; 16];
                let mut chunks = block.chunks_exact(16);
                for c in &mut chunks {
                    for (a, &v) in acc.iter_mut().zip(c) {
                        *a += v;
                    }
                }
                acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
            })
            .sum()
    })
}

/// The plain rayon gemm: rows of `c = a·b` in parallel, each an i-k-j loop
/// over row-major n×n matrices (no blocking, no packing).
pub fn gemm_loop(pool: &rayon::ThreadPool, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    pool.install(|| {
        c.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            row.fill(0.0);
            for (p, &aip) in a[i * n..(i + 1) * n].iter().enumerate() {
                for (c, &b) in row.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                    *c += aip * b;
                }
            }
        })
    });
}

/// The plain rayon Mandelbrot: rows in parallel, one pixel at a time
/// ([`Mandelbrot::count`], the kernel's scalar definition).
pub fn mandelbrot_loop(pool: &rayon::ThreadPool, m: &Mandelbrot) -> Vec<u32> {
    let mut counts = vec![0u32; m.pixels()];
    pool.install(|| {
        counts
            .par_chunks_mut(m.width as usize)
            .enumerate()
            .for_each(|(r, row)| {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = m.count(r as u32, c as u32);
                }
            })
    });
    counts
}

/// NumPy's `a @ b` (f32) in a Python process that stays up for the whole
/// bench, so its runs can alternate with ours: the machine's noise then
/// falls on both alike. Each run is timed inside Python.
pub struct Numpy {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// "NumPy 2.4.6 (scipy-openblas 0.3.31)".
    pub library: String,
}

/// Reads commands from stdin: `n` makes two random n×n f32 matrices and
/// runs the product once (warm-up); `run` times one product. Answers one
/// line each.
const NUMPY_SERVER: &str = r#"
import sys, time
import numpy as np
try:
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    blas = ("%s %s" % (cfg.get("name", "?"), cfg.get("version", ""))).strip()
except Exception:
    blas = "unknown BLAS"
print("NumPy %s (%s)" % (np.__version__, blas), flush=True)
rng = np.random.default_rng(1)
a = b = None
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "run":
        t = time.perf_counter()
        a @ b
        print((time.perf_counter() - t) * 1e3, flush=True)
    else:
        n = int(cmd)
        a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
        b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
        a @ b
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

    /// Makes the n×n inputs and runs the product once.
    pub fn prepare(&mut self, n: usize) -> Result<()> {
        self.ask(&n.to_string()).map(drop)
    }

    /// Milliseconds of one `a @ b`, as Python timed it.
    pub fn run_ms(&mut self) -> Result<f64> {
        let answer = self.ask("run")?;
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

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
    }

    #[test]
    fn the_baseline_loops_compute_what_they_claim() {
        let pool = pool();
        let n = 37;
        let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let mut c = vec![f32::NAN; n * n];
        gemm_loop(&pool, n, &a, &b, &mut c);
        for i in [0, 17, n - 1] {
            for j in [0, 20, n - 1] {
                let want: f32 = (0..n).map(|p| a[i * n + p] * b[p * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-3, "c[{i},{j}]");
            }
        }
        let x: Vec<f32> = (0..100_003).map(|i| (i % 3) as f32).collect();
        assert_eq!(sum_loop(&pool, &x), x.iter().sum::<f32>());
        let mut y = vec![1.0f32; x.len()];
        axpy_loop(&pool, 2.0, &x, &mut y);
        assert!(y.iter().zip(&x).all(|(&y, &x)| y == 2.0 * x + 1.0));
    }
}
