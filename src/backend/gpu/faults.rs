//! Fault injection, for tests: a GPU that loses its device, runs out of
//! memory, runs slowly or panics, on cue, so that the tests can show what
//! the coordinator and the service do about each (re-run on the CPU, fail
//! one job with a clear error, mark the GPU lost) without a faulty GPU.
//!
//! Off unless asked for: [`GpuOptions::faults`](super::GpuOptions::faults),
//! or the environment variable [`ENV`] for a process (`anycore serve`).
//! The spec is read once, when the backend opens; a bad one is an error
//! there. When it is off, a job pays one branch.
//!
//! The spec is a comma-separated list, N counting the jobs (and
//! pipelines) the coordinator's GPU worker has started on this backend,
//! from 1:
//!
//! - `lost@N`: job N and every later one fail as after a device loss, and
//!   the backend reports itself lost ([`crate::backend::Backend::lost`]);
//! - `oom@N`: job N fails as when wgpu cannot allocate a buffer;
//! - `panic@N`: job N panics inside the backend;
//! - `slow=MS`: every job first sleeps MS milliseconds.
//!
//! Several may be given: `oom@2,oom@5,slow=20,lost@9`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};

/// The environment variable `GpuOptions::from_env` reads the spec from.
pub const ENV: &str = "ANYCORE_GPU_FAULTS";

/// The faults to inject, and the jobs seen so far.
#[derive(Debug, Default)]
pub(super) struct Faults {
    lost_at: Option<u64>,
    oom_at: Vec<u64>,
    panic_at: Vec<u64>,
    slow: Option<Duration>,
    jobs: AtomicU64,
}

impl Faults {
    /// Parses a spec (see the module docs); `None` for an empty one.
    pub fn parse(spec: &str) -> Result<Option<Faults>> {
        let bad = |why: String| {
            Error::bad(format!(
                "bad GPU fault spec '{spec}' ({ENV}): {why}; \
                 expected a comma-separated list of lost@N, oom@N, panic@N, slow=MS"
            ))
        };
        let number = |item: &str, text: &str, least: u64| {
            text.trim()
                .parse::<u64>()
                .ok()
                .filter(|&n| n >= least)
                .ok_or_else(|| bad(format!("'{item}' needs a whole number of at least {least}")))
        };
        let mut faults = Faults::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some((name, n)) = item.split_once('@') {
                let n = number(item, n, 1)?;
                match name.trim() {
                    "lost" => faults.lost_at = Some(faults.lost_at.map_or(n, |at| at.min(n))),
                    "oom" => faults.oom_at.push(n),
                    "panic" => faults.panic_at.push(n),
                    other => return Err(bad(format!("unknown fault '{other}'"))),
                }
            } else if let Some((name, ms)) = item.split_once('=') {
                match name.trim() {
                    "slow" => faults.slow = Some(Duration::from_millis(number(item, ms, 0)?)),
                    other => return Err(bad(format!("unknown setting '{other}'"))),
                }
            } else {
                return Err(bad(format!("'{item}' is neither FAULT@N nor slow=MS")));
            }
        }
        let none = faults.lost_at.is_none()
            && faults.oom_at.is_empty()
            && faults.panic_at.is_empty()
            && faults.slow.is_none();
        Ok((!none).then_some(faults))
    }

    /// Counts a job and injects what the spec says for it: a sleep, a loss
    /// (recorded in `lost`, which the caller then reports), an
    /// out-of-memory error, or a panic.
    pub fn before_job(&self, lost: &OnceLock<String>) -> Result<()> {
        let n = self.jobs.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(pause) = self.slow {
            std::thread::sleep(pause);
        }
        if let Some(at) = self.lost_at.filter(|&at| n >= at) {
            let _ = lost.set(format!("injected fault lost@{at}"));
        }
        if self.oom_at.contains(&n) {
            // What wgpu's out-of-memory error scope reports, with where it came from.
            return Err(Error::Gpu(format!(
                "out of memory: a buffer could not be allocated (injected fault oom@{n})"
            )));
        }
        if self.panic_at.contains(&n) {
            panic!("injected fault panic@{n}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_or_say_what_is_wrong() {
        assert!(Faults::parse("").unwrap().is_none());
        assert!(Faults::parse(" , ").unwrap().is_none());
        let f = Faults::parse("oom@2, oom@5,slow=20,lost@9,panic@3")
            .unwrap()
            .unwrap();
        assert_eq!(f.oom_at, [2, 5]);
        assert_eq!(f.panic_at, [3]);
        assert_eq!(f.lost_at, Some(9));
        assert_eq!(f.slow, Some(Duration::from_millis(20)));
        for (spec, says) in [
            ("lost@0", "at least 1"),
            ("oom@x", "whole number"),
            ("melt@3", "unknown fault 'melt'"),
            ("fast=3", "unknown setting 'fast'"),
            ("lost", "neither"),
            ("slow=-1", "whole number"),
        ] {
            let e = Faults::parse(spec).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains(ENV), "{spec}: {e}");
        }
    }

    #[test]
    fn faults_fire_on_their_jobs() {
        let f = Faults::parse("oom@1,panic@2,lost@3").unwrap().unwrap();
        let lost = OnceLock::new();
        assert!(matches!(f.before_job(&lost), Err(Error::Gpu(m)) if m.contains("out of memory")));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = f.before_job(&lost);
        }));
        assert!(panicked.is_err());
        assert!(lost.get().is_none());
        f.before_job(&lost).unwrap();
        assert_eq!(
            lost.get().map(String::as_str),
            Some("injected fault lost@3")
        );
    }
}
