//! Repeating a measurement: one warm-up run, then runs until both a minimum
//! count and a time budget are met, summarised as median, min and max.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Result;

/// How long to keep repeating one measurement.
#[derive(Clone, Copy, Debug)]
pub struct Repeat {
    /// Runs at least this many times after the warm-up.
    pub min_runs: usize,
    /// And at most this many.
    pub max_runs: usize,
    /// Between the two, runs until this much wall time has passed.
    pub budget: Duration,
}

impl Repeat {
    /// The settings for `--quick` or a full sweep.
    pub fn new(quick: bool) -> Self {
        if quick {
            Repeat {
                min_runs: 5,
                max_runs: 40,
                budget: Duration::from_millis(400),
            }
        } else {
            Repeat {
                min_runs: 7,
                max_runs: 100,
                budget: Duration::from_millis(1500),
            }
        }
    }

    /// For slow baselines (the naive gemm, one thread): three runs suffice.
    pub fn fewer(&self) -> Self {
        Repeat {
            min_runs: 3,
            ..*self
        }
    }
}

/// Times of repeated runs, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Runs measured (the warm-up is not counted).
    pub runs: usize,
    /// Median.
    pub median_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Stats {
    /// Summarises samples (at least one).
    pub fn of(samples: &[f64]) -> Stats {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Stats {
            runs: n,
            median_ms: median,
            min_ms: sorted[0],
            max_ms: sorted[n - 1],
        }
    }
}

/// Runs `once` for a warm-up and then as `repeat` says. Each call returns
/// `N` timings in milliseconds (a GPU run gives its kernel time and its
/// whole time from the same run); the result summarises each.
pub fn repeat<const N: usize>(
    repeat: &Repeat,
    mut once: impl FnMut() -> Result<[f64; N]>,
) -> Result<[Stats; N]> {
    let stats = repeat_each(repeat, N, || once().map(|t| t.to_vec()))?;
    Ok(std::array::from_fn(|i| stats[i]))
}

/// [`repeat`] for a count known only at run time: `once` returns `n`
/// timings per call (several things timed in turn, so that drift in the
/// machine's load falls on all of them alike).
pub fn repeat_each(
    repeat: &Repeat,
    n: usize,
    mut once: impl FnMut() -> Result<Vec<f64>>,
) -> Result<Vec<Stats>> {
    once()?;
    let start = Instant::now();
    let mut samples: Vec<Vec<f64>> = Vec::new();
    while samples.len() < repeat.max_runs
        && (samples.len() < repeat.min_runs || start.elapsed() < repeat.budget)
    {
        samples.push(once()?);
    }
    Ok((0..n)
        .map(|i| Stats::of(&samples.iter().map(|s| s[i]).collect::<Vec<_>>()))
        .collect())
}

/// Milliseconds `work` takes.
pub fn time_ms<T>(work: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = std::hint::black_box(work());
    (out, start.elapsed().as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_the_middle_of_odd_and_even_counts() {
        assert_eq!(Stats::of(&[3.0, 1.0, 2.0]).median_ms, 2.0);
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(
            (s.median_ms, s.min_ms, s.max_ms, s.runs),
            (2.5, 1.0, 4.0, 4)
        );
    }

    #[test]
    fn repeat_warms_up_then_honours_the_minimum() {
        let mut calls = 0;
        let plan = Repeat {
            min_runs: 4,
            max_runs: 4,
            budget: Duration::from_secs(60),
        };
        let [s] = repeat(&plan, || {
            calls += 1;
            Ok([calls as f64])
        })
        .unwrap();
        assert_eq!(calls, 5, "one warm-up and four measured runs");
        assert_eq!((s.runs, s.min_ms, s.max_ms), (4, 2.0, 5.0));
    }
}
