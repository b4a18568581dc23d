//! Baselines timed in the same run as the kernels: the machine's memory
//! bandwidth, plain rayon loops of the same operations, and NumPy's `a @ b`
//! as the reference gemm. This machine is shared and noisy; a ratio to a
//! baseline measured minutes apart means more than an absolute time.

use std::io::Write;
use std::process::{Command, Stdio};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::measure::{Repeat, Stats, repeat, time_ms};
use crate::error::Result;

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
    pool.install(|| {
        y.par_iter_mut()
            .zip(x)
            .for_each(|(y, &x)| *y = a * x + *y)
    });
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

/// NumPy's `a @ b` (f32), timed by NumPy's own process.
#[derive(Clone, Debug, Deserialize)]
pub struct NumpyGemm {
    /// "NumPy 2.4.6 (scipy-openblas …)".
    pub library: String,
    /// Median, min and max per size.
    pub times: Vec<NumpyTime>,
}

/// One size of [`NumpyGemm`].
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct NumpyTime {
    /// n of n×n.
    pub size: usize,
    /// Runs after the warm-up.
    pub runs: usize,
    /// Median milliseconds.
    pub median_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

const NUMPY_GEMM: &str = r#"
import json, sys, time
import numpy as np
sizes, min_runs, max_runs, budget = json.loads(sys.stdin.read())
try:
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    blas = "%s %s" % (cfg.get("name", "?"), cfg.get("version", ""))
except Exception:
    blas = "unknown BLAS"
rng = np.random.default_rng(1)
times = []
for n in sizes:
    a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    a @ b
    samples, start = [], time.perf_counter()
    while len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() - start < budget):
        t = time.perf_counter()
        a @ b
        samples.append((time.perf_counter() - t) * 1e3)
    samples.sort()
    k = len(samples)
    median = samples[k // 2] if k % 2 else (samples[k // 2 - 1] + samples[k // 2]) / 2
    times.append(dict(size=n, runs=k, median_ms=median, min_ms=samples[0], max_ms=samples[-1]))
print(json.dumps(dict(library="NumPy %s (%s)" % (np.__version__, blas.strip()), times=times)))
"#;

/// Times NumPy's `a @ b` at each size on `threads` BLAS threads. Python is
/// `$ANYCORE_PYTHON` or `python3`. `Err` says why there is no figure (no
/// Python, no NumPy) — the bench goes on without it.
pub fn numpy_gemm(
    sizes: &[usize],
    threads: usize,
    plan: &Repeat,
) -> std::result::Result<NumpyGemm, String> {
    let python = std::env::var("ANYCORE_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args(["-c", NUMPY_GEMM])
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {python}: {e}"))?;
    let request = serde_json::json!([sizes, plan.min_runs, plan.max_runs, plan.budget.as_secs_f64()]);
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(request.to_string().as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{python} failed: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no message");
        return Err(format!("{python} with NumPy failed: {last}"));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cannot read NumPy's timings: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
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
