//! The start-up probe that calibrates the cost model: per kernel, a small
//! and a larger job on each backend, timed after a warm-up run (which also
//! compiles the GPU pipelines), and a [`Line`] through the two times.

use std::time::Instant;

use super::cost::{Line, Transfer, work_units};
use crate::backend::Backend;
use crate::kernel::{Kernel, Task};

/// What the probe measured on one backend.
#[derive(Debug, Default)]
pub struct Probe {
    /// A line per kernel whose probe ran.
    pub lines: Vec<(Kernel, Line)>,
    /// What moving data to and from its memory costs (a GPU's).
    pub transfer: Option<Transfer>,
}

/// A small and a larger job of `kernel`, sized to take milliseconds (the
/// kernel's own [`crate::kernel::profile::Sweep::probe_sizes`]).
fn probe_tasks(kernel: Kernel) -> Option<[Task; 2]> {
    let profile = kernel.profile();
    let [small, large] = profile.sweep.probe_sizes;
    Some([
        (profile.task)(small, 1).ok()?,
        (profile.task)(large, 2).ok()?,
    ])
}

/// The best of three runs, in milliseconds (the first run before them
/// warms caches and compiles pipelines).
fn time(backend: &dyn Backend, task: &Task) -> Option<f64> {
    backend.run(task).ok()?;
    (0..3)
        .map(|_| {
            let start = Instant::now();
            backend.run(task).ok()?;
            Some(start.elapsed().as_secs_f64() * 1e3)
        })
        .try_fold(f64::INFINITY, |best, t| t.map(|t| best.min(t)))
}

/// Measures every kernel on `backend` (kernels whose probe fails are left
/// out: the policy then falls back to its default for them), and its
/// transfers.
pub fn probe(backend: &dyn Backend) -> Probe {
    let transfer = backend.transfer_ms_per_byte().map(|(up, down)| Transfer {
        upload_ms_per_byte: up,
        download_ms_per_byte: down,
    });
    let lines = Kernel::ALL
        .into_iter()
        .filter_map(|kernel| {
            let [small, large] = probe_tasks(kernel)?;
            let points = (
                (work_units(&small), time(backend, &small)?),
                (work_units(&large), time(backend, &large)?),
            );
            let line = Line::through(points.0, points.1);
            log::info!(
                "probe {kernel} on {}: {:.3} ms + {:.3e} ms/unit",
                backend.kind(),
                line.fixed_ms,
                line.ms_per_unit
            );
            Some((kernel, line))
        })
        .collect();
    Probe { lines, transfer }
}
