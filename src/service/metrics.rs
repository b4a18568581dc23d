//! Prometheus metrics for `GET /metrics`: jobs by kernel, backend and
//! outcome; job-time histograms; bytes uploaded and downloaded and
//! submissions per backend; queue depth per backend; GPU presence.
//! The text format is small enough to write directly.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::backend::Traffic;
use crate::coordinator::Coordinator;

/// Upper bounds of the job-time histogram buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// A counter of [`Traffic`]: its name, its help text, and its field.
type Counter = (&'static str, &'static str, fn(&Traffic) -> u64);

/// Counters and histograms, updated as jobs finish.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (kernel, backend, outcome) → jobs.
    jobs: BTreeMap<(String, String, String), u64>,
    /// (kernel, backend) → job time histogram.
    seconds: BTreeMap<(String, String), Histogram>,
    /// backend → what its jobs moved.
    traffic: BTreeMap<String, Traffic>,
}

impl Metrics {
    /// Counts what a finished job moved on its backend.
    pub fn record_traffic(&self, backend: &str, traffic: &Traffic) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .traffic
            .entry(backend.into())
            .or_default()
            .add(traffic);
    }

    /// Counts a finished job; `seconds` is its total time when it ran.
    pub fn record(&self, kernel: &str, backend: &str, outcome: &str, seconds: Option<f64>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner
            .jobs
            .entry((kernel.into(), backend.into(), outcome.into()))
            .or_default() += 1;
        if let Some(s) = seconds {
            let h = inner
                .seconds
                .entry((kernel.into(), backend.into()))
                .or_default();
            for (count, bound) in h.counts.iter_mut().zip(BUCKETS) {
                if s <= bound {
                    *count += 1;
                }
            }
            h.count += 1;
            h.sum += s;
        }
    }

    /// The Prometheus text exposition.
    /// The text, with the gauges read from `coordinator` and the memory
    /// budget's (`memory`: its bytes, and the bytes held now).
    pub fn render(&self, coordinator: &Coordinator, memory: (u64, u64)) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out += "# HELP anycore_jobs_total Jobs finished, by kernel, backend and outcome.\n";
        out += "# TYPE anycore_jobs_total counter\n";
        for ((kernel, backend, outcome), n) in &inner.jobs {
            let _ = writeln!(
                out,
                "anycore_jobs_total{{kernel=\"{kernel}\",backend=\"{backend}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out += "# HELP anycore_job_seconds Time from placement to result.\n";
        out += "# TYPE anycore_job_seconds histogram\n";
        for ((kernel, backend), h) in &inner.seconds {
            let labels = format!("kernel=\"{kernel}\",backend=\"{backend}\"");
            for (count, bound) in h.counts.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "anycore_job_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "anycore_job_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "anycore_job_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "anycore_job_seconds_count{{{labels}}} {}", h.count);
        }
        let counters: [Counter; 3] = [
            (
                "uploaded_bytes",
                "Bytes copied from host to device memory.",
                |t: &Traffic| t.uploaded_bytes,
            ),
            (
                "downloaded_bytes",
                "Bytes copied from device to host memory.",
                |t: &Traffic| t.downloaded_bytes,
            ),
            (
                "submissions",
                "Command buffers submitted to the device.",
                |t: &Traffic| t.submissions,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP anycore_{name}_total {help}");
            let _ = writeln!(out, "# TYPE anycore_{name}_total counter");
            for (backend, t) in &inner.traffic {
                let _ = writeln!(
                    out,
                    "anycore_{name}_total{{backend=\"{backend}\"}} {}",
                    value(t)
                );
            }
        }
        let (gpu_depth, cpu_depth) = coordinator.queue_depth();
        out += "# HELP anycore_queue_depth Jobs waiting per backend.\n";
        out += "# TYPE anycore_queue_depth gauge\n";
        let _ = writeln!(out, "anycore_queue_depth{{backend=\"cpu\"}} {cpu_depth}");
        if let Some(d) = gpu_depth {
            let _ = writeln!(out, "anycore_queue_depth{{backend=\"gpu\"}} {d}");
        }
        out += "# HELP anycore_jobs_in_flight Jobs queued or running.\n";
        out += "# TYPE anycore_jobs_in_flight gauge\n";
        let _ = writeln!(out, "anycore_jobs_in_flight {}", coordinator.in_flight());
        out += "# HELP anycore_gpu_present Whether a GPU backend is running (0 once its device is lost).\n";
        out += "# TYPE anycore_gpu_present gauge\n";
        let _ = writeln!(
            out,
            "anycore_gpu_present {}",
            u8::from(coordinator.has_gpu() && coordinator.gpu_lost().is_none())
        );
        out += "# HELP anycore_memory_budget_bytes Host memory requests may hold at once.\n";
        out += "# TYPE anycore_memory_budget_bytes gauge\n";
        let _ = writeln!(out, "anycore_memory_budget_bytes {}", memory.0);
        out += "# HELP anycore_memory_held_bytes Host memory requests hold now.\n";
        out += "# TYPE anycore_memory_held_bytes gauge\n";
        let _ = writeln!(out, "anycore_memory_held_bytes {}", memory.1);
        out
    }
}
