//! Results of `wait=false` jobs, kept for `GET /v1/jobs/{id}` within
//! bounds: at most [`KEPT_RESULTS`] finished results, at most a budget of
//! bytes, none older than a time to live — the oldest go first, so a
//! long-running server's memory stays bounded. An id whose result was
//! dropped is remembered (a bounded number of them) so that its 404 says so.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ApiError;
use super::ids::Id;
use crate::coordinator::Control;
use axum::body::Bytes;

/// Finished results kept at most, whatever their size.
pub const KEPT_RESULTS: usize = 10_000;

/// Ids of dropped results remembered at most (16 bytes each).
const FORGOTTEN: usize = 100_000;

/// A job posted with `wait=false`.
pub(super) enum Entry {
    /// Queued or running: the caller's view of it.
    Running(Arc<Control>),
    /// Its result, as the JSON of a [`JobResponse`](super::api::JobResponse).
    Done(Bytes),
    Failed(ApiError),
}

/// The bounds on kept results.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of finished results kept at most (as their outputs weigh).
    pub bytes: usize,
    /// How long a finished result is kept.
    pub ttl: Duration,
}

impl Default for Limits {
    /// 1 GiB, one hour.
    fn default() -> Self {
        Limits {
            bytes: 1 << 30,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// Running jobs and the newest finished results.
pub(super) struct JobTable {
    limits: Limits,
    entries: HashMap<Id, Entry>,
    /// Finished jobs, oldest first: id, when, bytes.
    finished: VecDeque<(Id, Instant, usize)>,
    bytes: usize,
    forgotten: HashSet<Id>,
    forgotten_order: VecDeque<Id>,
}

/// What the table says of an id.
pub(super) enum Lookup<'a> {
    Known(&'a Entry),
    /// Its result was dropped (too old, or past the bounds).
    Dropped,
    Unknown,
}

impl JobTable {
    pub fn new(limits: Limits) -> Self {
        JobTable {
            limits,
            entries: HashMap::new(),
            finished: VecDeque::new(),
            bytes: 0,
            forgotten: HashSet::new(),
            forgotten_order: VecDeque::new(),
        }
    }

    /// Records a running job.
    pub fn start(&mut self, id: Id, control: Arc<Control>) {
        self.entries.insert(id, Entry::Running(control));
    }

    /// Records a job's result, then drops the oldest results past the
    /// bounds (running jobs stay).
    pub fn finish(&mut self, id: Id, entry: Entry) {
        let bytes = weight(&entry);
        self.entries.insert(id, entry);
        self.finished.push_back((id, Instant::now(), bytes));
        self.bytes += bytes;
        self.expire();
    }

    /// The entry for `id` (after dropping expired results).
    pub fn lookup(&mut self, id: Id) -> Lookup<'_> {
        self.expire();
        match self.entries.get(&id) {
            Some(entry) => Lookup::Known(entry),
            None if self.forgotten.contains(&id) => Lookup::Dropped,
            None => Lookup::Unknown,
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&(id, at, bytes)) = self.finished.front() {
            let over = self.finished.len() > KEPT_RESULTS
                || self.bytes > self.limits.bytes
                || now.duration_since(at) > self.limits.ttl;
            if !over {
                break;
            }
            self.finished.pop_front();
            self.bytes -= bytes;
            self.entries.remove(&id);
            self.forgotten.insert(id);
            self.forgotten_order.push_back(id);
            if self.forgotten_order.len() > FORGOTTEN
                && let Some(old) = self.forgotten_order.pop_front()
            {
                self.forgotten.remove(&old);
            }
        }
    }
}

/// What a finished entry holds in memory, roughly: its encoded result,
/// and a little more.
fn weight(entry: &Entry) -> usize {
    match entry {
        Entry::Done(json) => json.len() + 512,
        _ => 512,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn failed() -> Entry {
        Entry::Failed(ApiError::new(StatusCode::CONFLICT, "cancelled", "x"))
    }

    #[test]
    fn only_the_newest_finished_results_are_kept_and_running_jobs_stay() {
        let mut jobs = JobTable::new(Limits::default());
        let running = Id::random();
        jobs.start(running, Arc::default());
        let ids: Vec<Id> = (0..KEPT_RESULTS + 5).map(|_| Id::random()).collect();
        for &id in &ids {
            jobs.finish(id, failed());
        }
        assert!(matches!(
            jobs.lookup(running),
            Lookup::Known(Entry::Running { .. })
        ));
        assert!(
            ids[..5]
                .iter()
                .all(|&id| matches!(jobs.lookup(id), Lookup::Dropped))
        );
        assert!(
            ids[5..]
                .iter()
                .all(|&id| matches!(jobs.lookup(id), Lookup::Known(_)))
        );
        assert!(matches!(jobs.lookup(Id::random()), Lookup::Unknown));
    }

    #[test]
    fn results_past_the_byte_budget_or_their_time_go_first() {
        let mut jobs = JobTable::new(Limits {
            bytes: 3 * 512,
            ttl: Duration::from_millis(200),
        });
        let ids: Vec<Id> = (0..5).map(|_| Id::random()).collect();
        for &id in &ids {
            jobs.finish(id, failed());
        }
        // 512 bytes each: three fit.
        assert!(
            ids[..2]
                .iter()
                .all(|&id| matches!(jobs.lookup(id), Lookup::Dropped))
        );
        assert!(
            ids[2..]
                .iter()
                .all(|&id| matches!(jobs.lookup(id), Lookup::Known(_)))
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            ids.iter()
                .all(|&id| matches!(jobs.lookup(id), Lookup::Dropped))
        );
    }
}
