//! `histogram`: counts of `f32` values in `bins` equal bins over
//! [`lo`, `hi`], as `numpy.histogram(x, bins, range=(lo, hi))` (NumPy ≥ 2.1)
//! counts them.
//!
//! NumPy's bins are its f32 edges: `e[i]` is `lo + i·(hi − lo)/bins`
//! computed in f64 (`numpy.linspace`) and rounded to f32, with `e[bins] =
//! hi`. A value v lands in bin i when `e[i] ≤ v < e[i+1]`; the last bin also
//! takes `v = e[bins]`; NaN and values outside [`e[0]`, `e[bins]`] are not
//! counted. Edges that are not finite and strictly increasing are refused,
//! as NumPy refuses them ("Too many bins for data range"). Without `lo` and
//! `hi` the range is x's minimum and maximum, as NumPy's default (the edges
//! then computed in f32, as NumPy does for f32 bounds).
//!
//! Both backends estimate i arithmetically and then settle it against the
//! edges (the CPU only where the estimate lies near an edge: see
//! [`binning`]): the result is exactly the bin the edges define. NumPy settles its
//! own estimate by one bin at most, so the two agree wherever NumPy's
//! estimate is within a bin — always with an explicit range (NumPy
//! estimates in f64); with the default range (NumPy estimates in f32) up to
//! about a million bins.

mod binning;

use rayon::prelude::*;

use binning::Binning;

use super::profile::{self, Bandwidth, Profile, Unit, random_f32};
use super::{Arg, Inputs, KernelTask, Outputs, Param, Params, PlainLoop, Plan, ShaderInfo, Signature, Task, Streaming};
use crate::error::{Error, Result};
use crate::tensor::{DType, Handle, Spec, Tensor, TensorData};

/// Input `x`; parameters `bins`, `lo`, `hi`; output `out`.
pub const SIGNATURE: Signature = Signature {
    summary: "counts of values in equal bins, as numpy.histogram",
    inputs: &[Arg {
        name: "x",
        doc: "f32 [n]",
        optional: false,
    }],
    params: &[
        Param {
            name: "bins",
            default: Some("10"),
            doc: "number of equal bins, 1 to 16777216",
        },
        Param {
            name: "lo",
            default: Some("min(x)"),
            doc: "lower edge of the first bin (finite; give lo and hi together)",
        },
        Param {
            name: "hi",
            default: Some("max(x)"),
            doc: "upper edge of the last bin, which includes it (finite, above lo)",
        },
    ],
    outputs: &[Arg {
        name: "out",
        doc: "u32 [bins]: counts (NaN and values outside [lo, hi] not counted)",
        optional: false,
    }],
    picture_output: None,
    example: "anycore run histogram -i x=x.npy -p bins=64 -p lo=-1 -p hi=1 -o out=counts.npy",
};

/// The most bins a histogram may have (64 MiB of counts).
pub const MAX_BINS: u32 = 1 << 24;

/// Bins in the bench's histograms.
const BENCH_BINS: u32 = 256;

/// What the bench, the probe and the cost model know of `histogram` (the
/// bench counts uniform f32 in 256 bins over [-1, 1]).
pub const PROFILE: Profile = Profile {
    sweep: profile::VECTOR_SWEEP,
    unit: Unit {
        name: "GB/s",
        counts: "4 bytes per element read; 256 bins",
        scale: 1e9,
    },
    amount: |n| 4.0 * n as f64,
    bandwidth: Some(Bandwidth::Read),
    task: |n, seed| {
        let x = random_f32(n, seed)?;
        Ok(Task::Histogram(Histogram::new(
            x,
            BENCH_BINS,
            Some((-1.0, 1.0)),
        )?))
    },
    baselines: &[
        profile::Baseline::Numpy(profile::NumpyCode {
            setup: "x = rng.uniform(-1, 1, n).astype(np.float32)",
            run: "np.histogram(x, 256, range=(-1.0, 1.0))",
        }),
        profile::RAYON_LOOP,
    ],
    variants: &[],
};

/// Invocations per workgroup in `shaders/histogram.wgsl`.
pub const WORKGROUP: u32 = 256;
/// Bins a workgroup counts in its own memory (more go straight to the
/// global counts); also in the shader.
pub const LOCAL_BINS: u32 = 4096;

/// Counted a chunk at a time, the counts added; only with an explicit
/// range (the default range is the whole array's minimum and maximum).
pub const STREAMING: Streaming = Streaming::Fold {
    check: |p| match params(p)? {
        (_, Some(_)) => Ok(()),
        (_, None) => Err(Error::bad(
            "histogram: an input larger than the memory budget is counted a chunk at a \
             time, which needs an explicit range: give parameters 'lo' and 'hi' (reduce \
             with op=min and op=max finds them)",
        )),
    },
    fold,
};

/// Adds one chunk's counts to the counts so far.
fn fold(_: &Params, so_far: &mut Outputs, chunk: Outputs) -> Result<()> {
    let (Some(TensorData::U32(a)), Some(TensorData::U32(b))) = (
        so_far.get_mut("out").map(|t| t.data_mut()),
        chunk.get("out").map(Tensor::data),
    ) else {
        return Err(Error::Internal("histogram: a chunk gave no u32 'out'".into()));
    };
    for (a, &b) in a.iter_mut().zip(b) {
        *a = a
            .checked_add(b)
            .ok_or_else(|| Error::bad("histogram: a bin counts more than 2³² − 1 values"))?;
    }
    Ok(())
}

/// `shaders/histogram.wgsl`.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "histogram.wgsl",
    source: include_str!("../../shaders/histogram.wgsl"),
    entry_points: &[("histogram", [WORKGROUP, 1, 1])],
    trusted: true,
};

/// Elements per rayon task.
const CPU_CHUNK: usize = 1 << 16;

/// A validated `histogram`. Its edges are made when it runs
/// ([`Histogram::edges`]): validation allocates nothing for them.
#[derive(Clone, Debug)]
pub struct Histogram {
    /// The values (f32, one-dimensional).
    pub x: Handle,
    /// Number of bins.
    pub bins: u32,
    /// The range the edges span.
    range: Range,
    /// `2·bins / (hi − lo)` in f32: the estimate's scale, applied to half
    /// the distance from the first edge.
    pub scale: f32,
}

/// The range of the edges, and the precision NumPy makes them in.
#[derive(Clone, Copy, Debug)]
enum Range {
    /// An explicit range: `numpy.linspace` in f64.
    Given(f64, f64),
    /// x's minimum and maximum: `numpy.linspace` in f32.
    OfData(f32, f32),
}

/// At least one bin, at most [`MAX_BINS`].
fn check_bins(bins: u32) -> Result<()> {
    if bins == 0 || bins > MAX_BINS {
        return Err(Error::bad(format!(
            "histogram: parameter 'bins' is {bins}; it must be from 1 to {MAX_BINS}"
        )));
    }
    Ok(())
}

/// The parameters `bins` and, given together or not at all, `lo` and `hi`.
fn params(params: &Params) -> Result<(u32, Option<(f64, f64)>)> {
    let bins = params.u32_or("bins", 10)?;
    let range = match (params.f64_opt("lo")?, params.f64_opt("hi")?) {
        (Some(lo), Some(hi)) => Some((lo, hi)),
        (None, None) => None,
        _ => {
            return Err(Error::bad(
                "histogram: give parameters 'lo' and 'hi' together, or neither (then the \
                 range is x's minimum and maximum)",
            ));
        }
    };
    Ok((bins, range))
}

impl Range {
    /// An explicit range: finite, `lo ≤ hi` (NumPy widens an empty range by
    /// ½ each way).
    fn given((lo, hi): (f64, f64)) -> Result<Range> {
        if !(lo.is_finite() && hi.is_finite()) || lo > hi {
            return Err(Error::bad(format!(
                "histogram: the range lo={lo}, hi={hi} must be finite with lo ≤ hi"
            )));
        }
        let (lo, hi) = if lo == hi { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
        Ok(Range::Given(lo, hi))
    }

    /// Every edge of `bins` finite and above the one before, checked one
    /// by one.
    fn check_edges(self, bins: u32) -> Result<()> {
        let mut before = f32::NEG_INFINITY;
        for i in 0..=bins {
            let edge = self.edge(i, bins);
            if !edge.is_finite() || edge <= before {
                return Err(Error::bad(format!(
                    "histogram: too many bins for the range: {bins} bins from {} to {} do \
                     not all have a finite size in f32 (NumPy refuses them too); use fewer \
                     bins or a wider range",
                    self.edge(0, bins),
                    self.edge(bins, bins)
                )));
            }
            before = edge;
        }
        Ok(())
    }

    /// Edge `i` of `bins` as NumPy makes it (`linspace(lo, hi, bins + 1)`:
    /// `i · step + lo`, the last edge exactly `hi`), in f32.
    fn edge(self, i: u32, bins: u32) -> f32 {
        match self {
            Range::Given(_, hi) if i == bins => hi as f32,
            Range::OfData(_, hi) if i == bins => hi,
            Range::Given(lo, hi) => (f64::from(i) * ((hi - lo) / f64::from(bins)) + lo) as f32,
            Range::OfData(lo, hi) => i as f32 * ((hi - lo) / bins as f32) + lo,
        }
    }
}

impl Histogram {
    /// Counts `x` in `bins` bins over `range` (`None`: x's minimum and
    /// maximum, as NumPy's default).
    pub fn new(x: Vec<f32>, bins: u32, range: Option<(f64, f64)>) -> Result<Self> {
        Histogram::of(x.into(), bins, range)
    }

    /// As [`Histogram::new`], wherever `x` is; without a range, `x` must
    /// be on the host (its minimum and maximum make the edges).
    fn of(x: Handle, bins: u32, range: Option<(f64, f64)>) -> Result<Self> {
        check_bins(bins)?;
        let range = match range {
            Some(given) => Range::given(given)?,
            None => {
                let Some(TensorData::F32(data)) = x.host() else {
                    return Err(Error::bad(
                        "histogram: input 'x' is kept on the GPU, so its minimum and maximum \
                         are not known before the job runs; give the range (lo and hi)",
                    ));
                };
                let (lo, hi) = min_max(data)?;
                let (lo, hi) = if lo == hi { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
                Range::OfData(lo, hi)
            }
        };
        range.check_edges(bins)?;
        // Bins per unit of half the distance from the first edge: halves,
        // so that the distance never overflows.
        let width = f64::from(range.edge(bins, bins)) - f64::from(range.edge(0, bins));
        let scale = (2.0 * f64::from(bins) / width) as f32;
        Ok(Histogram {
            x,
            bins,
            range,
            scale,
        })
    }

    /// The bin edges: `bins + 1` ascending f32, as NumPy makes them.
    pub fn edges(&self) -> Vec<f32> {
        (0..=self.bins)
            .map(|i| self.range.edge(i, self.bins))
            .collect()
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.bins as usize
    }

    /// Wraps counts as this kernel's output.
    pub fn outputs(counts: Vec<u32>) -> Outputs {
        let n = counts.len();
        Outputs::from([(
            "out".to_owned(),
            Tensor::new(vec![n], TensorData::U32(counts)),
        )])
    }
}

impl KernelTask for Histogram {
    fn plan(mut inputs: Inputs<Spec>, p: &Params) -> Result<Plan> {
        let x = inputs.take("x", &[DType::F32], 1)?;
        let (bins, range) = params(p)?;
        check_bins(bins)?;
        // Without a range the edges come from the data, checked when it is there.
        if let Some(given) = range {
            Range::given(given)?.check_edges(bins)?;
        }
        let n = x.shape[0];
        // The edges, and the counters of each rayon task (`run_cpu`'s
        // fold: as many as the pool splits the work into, a few a thread).
        let width = (u64::from(bins) + 1) * 4;
        let tasks = n.div_ceil(CPU_CHUNK).clamp(1, 4 * rayon::current_num_threads()) as u64;
        let counters = binning::counter_sets(bins as usize) as u64 * tasks;
        let plan = Plan::new([(
            "out",
            Spec {
                dtype: DType::U32,
                shape: vec![bins as usize],
            },
        )],
        n as f64);
        Ok(plan.with_scratch(width.saturating_mul(1 + counters)))
    }

    fn from_job(mut inputs: Inputs, p: &Params) -> Result<Self> {
        let x = inputs.take("x", &[DType::F32], 1)?;
        let (bins, range) = params(p)?;
        Histogram::of(x, bins, range)
    }

    /// Each rayon task counts into its own counters (see [`binning`]); the
    /// counters are added up.
    fn run_cpu(&self) -> Outputs {
        let edges = self.edges();
        let binning = Binning::new(&edges, self.scale);
        let counters = self
            .x
            .f32s()
            .par_chunks(CPU_CHUNK)
            .fold(
                || binning.counters(),
                |mut counters, chunk| {
                    // A cancelled job skips the rest (its result is dropped).
                    if !super::stop::requested() {
                        binning.count(chunk, &mut counters);
                    }
                    counters
                },
            )
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            })
            .unwrap_or_else(|| binning.counters());
        Histogram::outputs(binning.counts(&counters))
    }

    fn reference(&self) -> Outputs {
        // The definition, by search over the edges.
        let e = &self.edges();
        let bins = self.bins();
        let mut counts = vec![0u32; bins];
        for &v in self.x.f32s() {
            if !(v >= e[0] && v <= e[bins]) {
                continue;
            }
            let i = e.partition_point(|&edge| edge <= v).saturating_sub(1);
            counts[i.min(bins - 1)] += 1;
        }
        Histogram::outputs(counts)
    }

    fn operands(&self) -> Vec<&Handle> {
        vec![&self.x]
    }

    fn work_units(&self) -> f64 {
        self.x.len() as f64
    }

    /// Atomic counters shared by every thread, one `fetch_add` per value
    /// (each settled against the edges): the first parallel histogram one
    /// writes.
    fn plain_loop(&self) -> PlainLoop<'_> {
        use std::sync::atomic::{AtomicU32, Ordering};
        // The last counts the values not counted.
        let counts: Vec<AtomicU32> = (0..=self.bins()).map(|_| AtomicU32::new(0)).collect();
        let edges = self.edges();
        Box::new(move || {
            let binning = Binning::new(&edges, self.scale);
            self.x.f32s().par_chunks(1 << 12).for_each(|chunk| {
                for &v in chunk {
                    counts[binning.settle(v)].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
    }
}

/// The minimum and maximum of `x` (0 and 1 when it is empty, as NumPy);
/// an error when either is not finite.
fn min_max(x: &[f32]) -> Result<(f32, f32)> {
    if x.is_empty() {
        return Ok((0.0, 1.0));
    }
    // NaN poisons the range, as in NumPy (f32::min would skip it).
    let join = |a: (f32, f32), b: (f32, f32)| {
        if a.0.is_nan() || b.0.is_nan() {
            (f32::NAN, f32::NAN)
        } else {
            (a.0.min(b.0), a.1.max(b.1))
        }
    };
    let (lo, hi) = x
        .par_iter()
        .fold(|| (f32::INFINITY, f32::NEG_INFINITY), |acc, &v| join(acc, (v, v)))
        .reduce(|| (f32::INFINITY, f32::NEG_INFINITY), join);
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(Error::bad(format!(
            "histogram: input 'x' ranges over [{lo}, {hi}], which is not finite; give \
             parameters 'lo' and 'hi'"
        )));
    }
    Ok((lo, hi))
}
