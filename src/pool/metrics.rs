//! Prometheus text for the pool: a front's jobs (`serve --nats`), the
//! pool's queue, dead letters and workers, and a worker's own counters
//! (`worker --metrics-addr`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Pool;
use super::roster::{Counts, Presence};
use super::wire::Status;
use crate::error::Result;

/// What a front has done.
#[derive(Debug, Default)]
pub struct FrontCounts {
    /// Jobs put on the stream.
    pub submitted: AtomicU64,
    /// Jobs refused because the stream was full.
    pub busy: AtomicU64,
    /// Jobs whose answer was not here by their deadline (504).
    pub deadline_missed: AtomicU64,
    /// Results answered, by how the job ended.
    pub ok: AtomicU64,
    /// … refused as bad input by a worker.
    pub bad_input: AtomicU64,
    /// … dead-lettered.
    pub dead_lettered: AtomicU64,
    /// … stopped by their worker at their deadline.
    pub timed_out: AtomicU64,
}

impl FrontCounts {
    /// Counts a result answered.
    pub fn ended(&self, status: Status) {
        let counter = match status {
            Status::Ok => &self.ok,
            Status::BadInput => &self.bad_input,
            Status::DeadLetter => &self.dead_lettered,
            Status::TimedOut => &self.timed_out,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes one metric's help, type and samples (`labels` → value).
fn metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        match labels.is_empty() {
            true => {
                let _ = writeln!(out, "{name} {value}");
            }
            false => {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    }
}

/// A label value, quoted as the text format wants.
fn quoted(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A worker's counter: its name, its help text, and its value.
type WorkerCounter = (&'static str, &'static str, fn(&Counts) -> u64);

/// Workers' counters as the `anycore_pool_worker_*` metrics, each
/// worker's samples labelled with its labels.
fn worker_samples(out: &mut String, workers: &[(String, Counts)]) {
    let each: [WorkerCounter; 5] = [
        ("consumed", "Messages taken from the job stream.", |c| {
            c.consumed
        }),
        (
            "acked",
            "Jobs acknowledged done (ran, refused, dead-lettered or found done).",
            |c| c.acked,
        ),
        (
            "redelivered",
            "Messages that were a job's second or later delivery.",
            |c| c.redelivered,
        ),
        (
            "dead_lettered",
            "Jobs put on the dead-letter stream.",
            |c| c.dead_lettered,
        ),
        ("ran", "Jobs run.", |c| c.ran),
    ];
    for (name, help, value) in each {
        metric(
            out,
            &format!("anycore_pool_worker_{name}_total"),
            "counter",
            help,
            workers
                .iter()
                .map(|(labels, counts)| (labels.clone(), value(counts))),
        );
    }
}

/// A worker's metrics: its counters, and its jobs running now.
pub fn render_worker(presence: &Presence) -> String {
    let mut out = String::new();
    let labels = format!("worker=\"{}\"", quoted(&presence.info.name));
    worker_samples(&mut out, &[(labels.clone(), presence.counts)]);
    metric(
        &mut out,
        "anycore_pool_worker_running",
        "gauge",
        "Jobs running now.",
        [(labels.clone(), presence.running as u64)],
    );
    metric(
        &mut out,
        "anycore_pool_worker_slots",
        "gauge",
        "Jobs it runs at once at most.",
        [(labels, presence.concurrency as u64)],
    );
    out
}

/// A front's metrics: its own counters, then the pool's queue, dead
/// letters and each worker's counters (read from the server now).
pub async fn render_front(counts: &FrontCounts, pool: &Pool) -> Result<String> {
    let mut out = String::new();
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    metric(
        &mut out,
        "anycore_pool_jobs_submitted_total",
        "counter",
        "Jobs this front put on the job stream.",
        [(String::new(), n(&counts.submitted))],
    );
    metric(
        &mut out,
        "anycore_pool_jobs_busy_total",
        "counter",
        "Jobs refused (503) because the job stream was full.",
        [(String::new(), n(&counts.busy))],
    );
    metric(
        &mut out,
        "anycore_pool_jobs_deadline_missed_total",
        "counter",
        "Jobs whose result was not here by their deadline (504).",
        [(String::new(), n(&counts.deadline_missed))],
    );
    metric(
        &mut out,
        "anycore_pool_results_total",
        "counter",
        "Results this front answered, by how the job ended.",
        [
            ("status=\"ok\"".to_owned(), n(&counts.ok)),
            ("status=\"bad_input\"".to_owned(), n(&counts.bad_input)),
            (
                "status=\"dead_letter\"".to_owned(),
                n(&counts.dead_lettered),
            ),
            ("status=\"timed_out\"".to_owned(), n(&counts.timed_out)),
        ],
    );
    metric(
        &mut out,
        "anycore_pool_jobs_waiting",
        "gauge",
        "Jobs on the job stream: queued, or taken and not yet acknowledged.",
        [(String::new(), pool.waiting().await?)],
    );
    metric(
        &mut out,
        "anycore_pool_dead_letters",
        "gauge",
        "Jobs on the dead-letter stream.",
        [(String::new(), pool.dead_lettered().await?)],
    );
    let roster = pool.roster().await?;
    metric(
        &mut out,
        "anycore_pool_workers",
        "gauge",
        "Workers that announced themselves lately.",
        [(String::new(), roster.len() as u64)],
    );
    let workers: Vec<(String, Counts)> = roster
        .iter()
        .map(|p| (format!("worker=\"{}\"", quoted(&p.info.name)), p.counts))
        .collect();
    worker_samples(&mut out, &workers);
    Ok(out)
}
