//! The `chain` comparison (`anycore bench --chain`): k steps of `axpy` on
//! n elements (yᵢ = 2x + yᵢ₋₁), run as k separate jobs — on the GPU each a
//! round trip through host memory — and as one pipeline, on each backend
//! measured; reported as time per chain, its ratio to the separate jobs,
//! and the bytes each moved between host and device.

use serde::Serialize;

use super::measure::{Repeat, Stats, repeat_each, time_ms};
use crate::backend::{Backend, Traffic};
use crate::error::{Error, Result};
use crate::kernel::axpy::Axpy;
use crate::kernel::profile::random_f32;
use crate::kernel::{Kernel, Task};
use crate::pipeline::{Pipeline, Step};
use crate::tensor::{Tensor, TensorData};

/// Steps per chain.
pub const STEPS: [usize; 3] = [1, 4, 16];

/// Elements per step when `--sizes` does not say: `--quick`, and not.
pub fn default_sizes(quick: bool) -> Vec<usize> {
    if quick { vec![1 << 20] } else { vec![1 << 24] }
}

/// How a chain ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// k jobs, each on its own.
    Jobs,
    /// One pipeline of k steps.
    Pipeline,
}

/// One chain measured.
#[derive(Clone, Debug, Serialize)]
pub struct ChainRow {
    /// `gpu` or `cpu`.
    pub backend: String,
    /// Jobs or pipeline.
    pub mode: Mode,
    /// Steps in the chain.
    pub steps: usize,
    /// Elements per step.
    pub n: usize,
    /// Time per chain.
    pub stats: Stats,
    /// What one chain moved between host and device.
    pub traffic: Traffic,
    /// Median time of the separate jobs over this row's (1 for the jobs).
    pub speedup_vs_jobs: f64,
}

/// The output `out` of a run, as f32s.
fn out(outputs: crate::kernel::Outputs) -> Result<Vec<f32>> {
    match outputs.into_values().next().map(Tensor::into_data) {
        Some(TensorData::F32(v)) => Ok(v),
        _ => Err(Error::Internal("axpy gave no f32 output".into())),
    }
}

/// Chains of each length in [`STEPS`] on `backend`, n elements a step:
/// the separate jobs and the pipeline timed in turn (so that drift in the
/// machine's load falls on both), their results compared.
pub fn measure(backend: &dyn Backend, n: usize, seed: u64, plan: &Repeat) -> Result<Vec<ChainRow>> {
    let x = random_f32(n, seed)?;
    let y0 = random_f32(n, seed + 1)?;
    let mut rows = Vec::new();
    for k in STEPS {
        let (mut jobs_traffic, mut pipeline_traffic) = (Traffic::default(), Traffic::default());
        let (mut jobs_out, mut pipeline_out) = (Vec::new(), Vec::new());
        let stats = repeat_each(plan, 2, || {
            let (jobs, jobs_ms) = time_ms(|| -> Result<_> {
                let mut traffic = Traffic::default();
                let mut y = y0.clone();
                for _ in 0..k {
                    let run = backend.run_owned(Task::Axpy(Axpy::new(2.0, x.clone(), y)?), &[])?;
                    traffic.add(&run.traffic);
                    y = out(run.outputs)?;
                }
                Ok((y, traffic))
            });
            (jobs_out, jobs_traffic) = jobs?;
            let (piped, pipeline_ms) = time_ms(|| -> Result<_> {
                // x given once, read by every step.
                let mut pipeline = Pipeline::new().input("x", Tensor::from_f32(x.clone()));
                for i in 0..k {
                    let step = Step::new(&format!("s{i}"), Kernel::Axpy)
                        .param("a", 2)
                        .input_shared("x", "x");
                    pipeline = pipeline.step(if i == 0 {
                        step.input("y", Tensor::from_f32(y0.clone()))
                    } else {
                        step.input_from("y", &format!("s{}", i - 1), "out")
                    });
                }
                let last = format!("s{}", k - 1);
                let run = pipeline.output("out", &last, "out").check()?.run_on(
                    backend,
                    false,
                    |task, keep| backend.run_owned(task, keep),
                )?;
                Ok((out(run.outputs)?, run.traffic))
            });
            (pipeline_out, pipeline_traffic) = piped?;
            Ok(vec![jobs_ms, pipeline_ms])
        })?;
        if jobs_out != pipeline_out {
            return Err(Error::Internal(format!(
                "chain of {k} on {}: the pipeline's result differs from the jobs'",
                backend.kind()
            )));
        }
        let jobs_median = stats[0].median_ms;
        let row = |mode, stats: Stats, traffic| ChainRow {
            backend: backend.kind().to_string(),
            mode,
            steps: k,
            n,
            stats,
            traffic,
            speedup_vs_jobs: jobs_median / stats.median_ms,
        };
        rows.push(row(Mode::Jobs, stats[0], jobs_traffic));
        rows.push(row(Mode::Pipeline, stats[1], pipeline_traffic));
    }
    Ok(rows)
}
