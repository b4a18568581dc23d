//! The pool's workers, as they announce themselves: each puts its
//! [`Presence`] in the key-value bucket [`WORKERS`] under its name every
//! [`HEARTBEAT`], and deletes it when it stops. The bucket keeps an entry
//! [`FORGET_AFTER`]; a worker that died unannounced is gone from the roster
//! that long after its last heartbeat.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::wire::WorkerInfo;
use super::{Pool, nats};
use crate::error::Result;

/// The key-value bucket of workers' presences, by name.
pub const WORKERS: &str = "anycore_workers";

/// How often a worker announces itself.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// How long an announcement lasts (three heartbeats).
pub const FORGET_AFTER: Duration = Duration::from_secs(15);

/// What a worker has done so far.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Messages taken from the stream.
    pub consumed: u64,
    /// Jobs acknowledged done (ran, refused, dead-lettered or already
    /// done).
    pub acked: u64,
    /// Messages that were a job's second or later delivery.
    pub redelivered: u64,
    /// Jobs put on the dead-letter stream.
    pub dead_lettered: u64,
    /// Jobs that ran here.
    pub ran: u64,
}

/// A worker's announcement: who it is, what it has and takes, and what it
/// has done.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Presence {
    /// Its name, host and GPU (as results name it).
    #[serde(flatten)]
    pub info: WorkerInfo,
    /// Its CPU pool, as a job's `device` names it.
    pub cpu: String,
    /// Where it runs jobs that ask for no backend: `auto`, `gpu` or `cpu`.
    pub backend: String,
    /// The classes of jobs it takes (`gpu`, `cpu`, `any`).
    pub takes: Vec<String>,
    /// Jobs it runs at once at most.
    pub concurrency: usize,
    /// Jobs it is running now.
    pub running: usize,
    /// Seconds since the Unix epoch when it started.
    pub started_unix_s: u64,
    /// Its counters.
    pub counts: Counts,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Pool {
    /// Announces a worker (again): its entry lasts [`FORGET_AFTER`].
    pub async fn announce(&self, presence: &Presence) -> Result<()> {
        let bytes = serde_json::to_vec(presence).expect("a presence serialises");
        self.workers
            .put(roster_key(&presence.info.name), bytes.into())
            .await
            .map_err(|e| nats("cannot announce the worker", e))?;
        Ok(())
    }

    /// Takes a stopping worker off the roster.
    pub async fn withdraw(&self, name: &str) {
        if let Err(e) = self.workers.delete(roster_key(name)).await {
            log::warn!("taking worker {name} off the roster: {e}");
        }
    }

    /// The workers that announced themselves lately, by name.
    pub async fn roster(&self) -> Result<Vec<Presence>> {
        let mut keys = self
            .workers
            .keys()
            .await
            .map_err(|e| nats("cannot list the workers", e))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|e| nats("cannot list the workers", e))?);
        }
        let mut presences = Vec::new();
        for key in names {
            let entry = self
                .workers
                .get(&key)
                .await
                .map_err(|e| nats("cannot read a worker's entry", e))?;
            // Gone in between, or not ours to read: skipped.
            if let Some(p) = entry.and_then(|b| serde_json::from_slice::<Presence>(&b).ok()) {
                presences.push(p);
            }
        }
        presences.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        Ok(presences)
    }
}

/// A worker's key: its name with anything a key may not hold as `_`.
fn roster_key(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '=' => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::roster_key;

    #[test]
    fn keys_hold_only_what_a_key_may() {
        assert_eq!(roster_key("box-1:4242"), "box-1_4242");
        assert_eq!(roster_key("a.b c/*>"), "a_b_c___");
    }
}
