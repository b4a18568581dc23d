//! The per-kernel cost model behind the `auto` policy.
//!
//! For each (backend, kernel) pair a job's run time is predicted as
//! `fixed_ms + ms_per_unit · work`, where `work` is the kernel's natural size
//! (elements, multiply-adds, pixel-iterations; see [`work_units`]). The two
//! numbers come from a short probe at start-up (two job sizes per kernel, a
//! line through them), are cached on disk keyed by device so the next start
//! is warm, and are corrected as real runs are observed (see
//! [`CostModel::observe`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::kernel::{Kernel, Task};

/// A job's size in its kernel's natural unit ([`Task::work_units`]).
pub fn work_units(task: &Task) -> f64 {
    task.work_units()
}

/// Predicted time for one (backend, kernel) pair.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Time of an empty job: launch, transfers' fixed costs.
    pub fixed_ms: f64,
    /// Time per unit of work.
    pub ms_per_unit: f64,
    /// Observed / predicted, smoothed; starts at 1.
    #[serde(default = "one")]
    pub correction: f64,
}

fn one() -> f64 {
    1.0
}

impl Line {
    /// A line with no correction yet.
    pub fn new(fixed_ms: f64, ms_per_unit: f64) -> Self {
        Line {
            fixed_ms: fixed_ms.max(0.0),
            ms_per_unit: ms_per_unit.max(0.0),
            correction: 1.0,
        }
    }

    /// The line through two timed jobs `(work, ms)`.
    pub fn through((w1, t1): (f64, f64), (w2, t2): (f64, f64)) -> Self {
        let slope = if w2 > w1 { (t2 - t1) / (w2 - w1) } else { 0.0 };
        // Timing noise can make the small job look slower than the large
        // one; then the large job's average rate is the better guess.
        let slope = if slope > 0.0 { slope } else { t2 / w2.max(1.0) };
        Line::new(t1 - slope * w1, slope)
    }

    /// Predicted milliseconds for `work` units.
    pub fn predict(&self, work: f64) -> f64 {
        (self.fixed_ms + self.ms_per_unit * work) * self.correction
    }
}

/// What moving data between host and GPU memory costs, per byte. The
/// lines of the GPU assume a job's inputs go up and its outputs come down;
/// data already in place saves that, and data only on the GPU costs a CPU
/// job its download (StarPU's `dmda` idea).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Host to GPU.
    pub upload_ms_per_byte: f64,
    /// GPU to host.
    pub download_ms_per_byte: f64,
}

/// Predictions for every (backend, kernel) pair that has been measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    lines: BTreeMap<String, Line>,
    /// Ignore observations (a model fixed by a test or a caller stays fixed).
    #[serde(default)]
    frozen: bool,
    /// What moving data costs, where measured.
    #[serde(default)]
    transfer: Option<Transfer>,
}

fn key(backend: BackendKind, kernel: Kernel) -> String {
    format!("{backend}/{kernel}")
}

impl CostModel {
    /// Stops observations from changing the model.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Sets the line for a pair (tests use this to fix the model).
    pub fn set(&mut self, backend: BackendKind, kernel: Kernel, line: Line) {
        self.lines.insert(key(backend, kernel), line);
    }

    /// Sets what moving data costs.
    pub fn set_transfer(&mut self, transfer: Transfer) {
        self.transfer = Some(transfer);
    }

    /// What moving data costs, if measured.
    pub fn transfer(&self) -> Option<Transfer> {
        self.transfer
    }

    /// The line for a pair, if measured.
    pub fn line(&self, backend: BackendKind, kernel: Kernel) -> Option<Line> {
        self.lines.get(&key(backend, kernel)).copied()
    }

    /// Predicted milliseconds of `task` on `backend`, if that pair is known.
    pub fn predict(&self, backend: BackendKind, task: &Task) -> Option<f64> {
        self.predict_work(backend, &[(task.kernel(), work_units(task))])
            .map(|(ms, _)| ms)
    }

    /// Predicted milliseconds of `work` (kernels with their work units: a
    /// job's one, a pipeline's steps) on `backend`, and of that the lines'
    /// fixed costs; `None` unless every kernel's pair is known.
    pub fn predict_work(&self, backend: BackendKind, work: &[(Kernel, f64)]) -> Option<(f64, f64)> {
        work.iter()
            .try_fold((0.0, 0.0), |(ms, fixed), &(kernel, units)| {
                let line = self.line(backend, kernel)?;
                Some((
                    ms + line.predict(units),
                    fixed + line.fixed_ms * line.correction,
                ))
            })
    }

    /// Folds an observed run time into the pair's correction factor. Each
    /// observation moves the prediction a quarter of the way (in log space)
    /// toward what happened, at most by a factor of 2^0.25, so one outlier —
    /// a cold cache, a first call that spins up threads — cannot wreck it.
    /// `work` is [`work_units`] of the task that ran.
    pub fn observe(&mut self, backend: BackendKind, kernel: Kernel, work: f64, actual_ms: f64) {
        if self.frozen {
            return;
        }
        if let Some(line) = self.lines.get_mut(&key(backend, kernel)) {
            let predicted = line.predict(work);
            if predicted > 0.0 && actual_ms > 0.0 && actual_ms.is_finite() {
                let step = (actual_ms / predicted).clamp(0.5, 2.0).powf(0.25);
                line.correction = (line.correction * step).clamp(0.01, 100.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_through_two_points_predicts_both() {
        let line = Line::through((100.0, 2.0), (1100.0, 12.0));
        assert!((line.predict(100.0) - 2.0).abs() < 1e-9);
        assert!((line.predict(1100.0) - 12.0).abs() < 1e-9);
        assert!((line.fixed_ms - 1.0).abs() < 1e-9);
    }

    #[test]
    fn observations_pull_predictions_toward_reality() {
        let mut model = CostModel::default();
        model.set(BackendKind::Cpu, Kernel::Axpy, Line::new(0.0, 1e-3));
        let task = Task::Axpy(
            crate::kernel::axpy::Axpy::new(1.0, vec![0.0; 1000], vec![0.0; 1000]).unwrap(),
        );
        let before = model.predict(BackendKind::Cpu, &task).unwrap();
        for _ in 0..40 {
            model.observe(BackendKind::Cpu, task.kernel(), work_units(&task), 4.0);
        }
        let after = model.predict(BackendKind::Cpu, &task).unwrap();
        assert!((before - 1.0).abs() < 1e-9);
        assert!((after - 4.0).abs() < 0.1, "{after}");
        // One wild outlier moves it by at most 2^0.25.
        model.observe(BackendKind::Cpu, task.kernel(), work_units(&task), 4000.0);
        let outlier = model.predict(BackendKind::Cpu, &task).unwrap();
        assert!(outlier <= after * 2f64.powf(0.25) + 1e-9, "{outlier}");
    }
}
