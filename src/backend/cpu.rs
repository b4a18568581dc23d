//! The CPU backend: every kernel's rayon implementation, run on a pool
//! this backend owns (so its size is known and it never competes with a
//! caller's own global pool).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::{Backend, BackendKind, Run, Timings, Traffic};
use crate::error::{Error, Result};
use crate::kernel::{Outputs, Task};

/// Runs tasks on a rayon thread pool.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
}

impl CpuBackend {
    /// A pool of `threads` threads; `None` means one per logical core
    /// (or `RAYON_NUM_THREADS`, which rayon honours).
    pub fn new(threads: Option<usize>) -> Result<Self> {
        let watch = Arc::new(crate::kernel::stop::Watch::default());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.unwrap_or(0))
            .thread_name(|i| format!("anycore-cpu-{i}"))
            // A job watched on the worker's thread (one of these) is seen
            // by every thread its loops run on.
            .start_handler(move |_| crate::kernel::stop::share(Arc::clone(&watch)))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the CPU thread pool: {e}")))?;
        Ok(CpuBackend { pool })
    }

    /// Threads in the pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }
}

impl Backend for CpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn device(&self) -> String {
        format!("rayon pool, {} threads", self.threads())
    }

    fn run_keeping(&self, task: &Task, keep: &[String]) -> Result<Run> {
        Ok(self.timed(|| task.run_cpu(), keep))
    }

    fn run_owned(&self, mut task: Task, keep: &[String]) -> Result<Run> {
        let run = self.timed(|| task.run_cpu_in_place(), keep);
        // What is left of the inputs is freed after the clock stops: freeing
        // is the caller's cost whichever backend ran the job (unmapping
        // 64 MiB takes longer than summing it).
        drop(task);
        Ok(run)
    }
    /// On a pool thread: [`rayon::ThreadPool::install`] wakes a pool thread
    /// and then the caller, which cost a 16-element job 17 µs on two cores
    /// (see `benches/coordinator_overhead.rs`); from inside the pool the
    /// jobs' own `install`s run in place.
    fn host(&self, serve: &mut (dyn FnMut() + Send)) {
        self.pool.install(serve)
    }
}

impl CpuBackend {
    /// Runs a task, writing results over its own buffers where the kernel
    /// can ([`Task::run_cpu_in_place`]; the task may be left without them).
    pub fn run_in_place(&self, task: &mut Task) -> Run {
        self.timed(|| task.run_cpu_in_place(), &[])
    }

    /// Runs `work` on the pool, timing it; the outputs named in `keep`
    /// become handles.
    fn timed(&self, work: impl FnOnce() -> Outputs + Send, keep: &[String]) -> Run {
        let start = Instant::now();
        let outputs = self.pool.install(work);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let timings = Timings {
            compute: ms,
            total: ms,
            ..Timings::default()
        };
        Run::keeping(outputs, BTreeMap::new(), keep, timings, Traffic::default())
    }
}
