//! `reduce`: the sum, minimum or maximum of a vector of `f32`, `u32` or `i32`.
//!
//! Integer sums wrap modulo 2³² (as `numpy.sum(x, dtype=x.dtype)`). Float
//! `min`/`max` return NaN when any element is NaN, as NumPy does. The sum of
//! an empty vector is 0; its `min` or `max` is a bad-input error.

use rayon::prelude::*;

use super::profile::{self, Bandwidth, Profile, Unit, random_f32};
use super::{Arg, Inputs, KernelTask, Outputs, Param, Params, PlainLoop, Plan, ShaderInfo, Signature, Task, Streaming};
use crate::error::{Error, Result};
use crate::tensor::{DType, Handle, Spec, Tensor, TensorData};

/// Input `x`; parameter `op`; output `out` (shape `[1]`).
pub const SIGNATURE: Signature = Signature {
    summary: "the sum, minimum or maximum of a vector",
    inputs: &[Arg {
        name: "x",
        doc: "f32, u32 or i32 [n]", optional: false,
    }],
    params: &[Param {
        name: "op",
        default: Some("sum"),
        doc: "sum, min or max (integer sums wrap; min and max of an empty vector are an error; f32 min/max propagate NaN)",
    }],
    outputs: &[Arg {
        name: "out",
        doc: "[1], the dtype of x", optional: false,
    }],
    picture_output: None,
    example: "anycore run reduce -i x=x.npy -p op=max --json",
};

/// What the bench, the probe and the cost model know of `reduce` (the
/// bench times f32 sums).
pub const PROFILE: Profile = Profile {
    sweep: profile::VECTOR_SWEEP,
    unit: Unit {
        name: "GB/s",
        counts: "4 bytes per element read (f32 sum)",
        scale: 1e9,
    },
    amount: |n| 4.0 * n as f64,
    bandwidth: Some(Bandwidth::Read),
    task: |n, seed| {
        let x = TensorData::F32(random_f32(n, seed)?);
        Ok(Task::Reduce(Reduce::new(ReduceOp::Sum, x)?))
    },
    baselines: &[profile::RAYON_LOOP],
    variants: &[],
};

/// Invocations per workgroup in `shaders/reduce.wgsl`.
pub const WORKGROUP: u32 = 256;

/// Reduced a chunk at a time, the chunks' results reduced in turn.
pub const STREAMING: Streaming = Streaming::Fold {
    check: |params| op(params).map(drop),
    fold,
};

/// Folds one chunk's result into the result so far, with the same
/// operation (float sums of the partial results in f32: a rounding per
/// chunk).
fn fold(params: &Params, so_far: &mut Outputs, chunk: Outputs) -> Result<()> {
    let op = op(params)?;
    let (Some(a), Some(b)) = (so_far.get_mut("out"), chunk.get("out")) else {
        return Err(Error::Internal("reduce: a chunk gave no 'out'".into()));
    };
    let value = match (a.data(), b.data()) {
        (TensorData::F32(a), TensorData::F32(b)) => TensorData::F32(vec![match op {
            ReduceOp::Sum => a[0] + b[0],
            _ => f32_combine(op, a[0], b[0]),
        }]),
        (TensorData::U32(a), TensorData::U32(b)) => TensorData::U32(vec![a[0].combine(op, b[0])]),
        (TensorData::I32(a), TensorData::I32(b)) => TensorData::I32(vec![a[0].combine(op, b[0])]),
        _ => return Err(Error::Internal("reduce: chunks gave different dtypes".into())),
    };
    *a = Tensor::new(vec![1], value);
    Ok(())
}

/// `shaders/reduce.wgsl`.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "reduce.wgsl",
    source: include_str!("../../shaders/reduce.wgsl"),
    entry_points: &[("reduce", [WORKGROUP, 1, 1])],
    trusted: true,
};

const CPU_CHUNK: usize = 1 << 16;

/// Which reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum (wrapping for integers).
    Sum,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl ReduceOp {
    /// The parameter value naming it.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Min => "min",
            ReduceOp::Max => "max",
        }
    }
}

/// A validated `reduce`.
#[derive(Clone, Debug)]
pub struct Reduce {
    /// Which reduction.
    pub op: ReduceOp,
    /// The elements (f32, u32 or i32), one-dimensional.
    pub x: Handle,
}

impl Reduce {
    /// Reduces `x` with `op`.
    pub fn new(op: ReduceOp, x: TensorData) -> Result<Self> {
        Reduce::of(op, x.into())
    }

    /// Reduces `x` with `op`, wherever `x` is.
    fn of(op: ReduceOp, x: Handle) -> Result<Self> {
        if x.dtype() == DType::U8 {
            return Err(Error::bad(
                "reduce: input 'x' must be f32, u32 or i32, not u8",
            ));
        }
        check_len(op, x.len())?;
        Ok(Reduce { op, x })
    }

    /// Wraps a single value as this kernel's output (shape `[1]`).
    pub fn outputs(value: TensorData) -> Outputs {
        Outputs::from([("out".to_owned(), Tensor::new(vec![1], value))])
    }

}

impl KernelTask for Reduce {
    fn plan(mut inputs: Inputs<Spec>, params: &Params) -> Result<Plan> {
        let x = inputs.take("x", &[DType::F32, DType::U32, DType::I32], 1)?;
        check_len(op(params)?, x.shape[0])?;
        Ok(Plan::new([(
            "out",
            Spec {
                dtype: x.dtype,
                shape: vec![1],
            },
        )],
        x.shape[0] as f64))
    }

    fn from_job(mut inputs: Inputs, params: &Params) -> Result<Self> {
        let x = inputs.take("x", &[DType::F32, DType::U32, DType::I32], 1)?;
        Reduce::of(op(params)?, x)
    }

    fn run_cpu(&self) -> Outputs {
        let op = self.op;
        let value = match self.x.data() {
            TensorData::F32(v) => {
                let r = match op {
                    // Short runs in f32, everything longer in f64: see
                    // `sum_f64`.
                    ReduceOp::Sum => {
                        // Compiled for the best vector unit the CPU has.
                        let arch = pulp::Arch::new();
                        // A cancelled job skips the rest (its result is dropped).
                        let sum = v
                            .par_chunks(CPU_CHUNK)
                            .map(|block| match super::stop::requested() {
                                true => 0.0,
                                false => arch.dispatch(SumF64(block)),
                            })
                            .sum::<f64>();
                        positive_zero(sum) as f32
                    }
                    _ => v
                        .par_chunks(CPU_CHUNK)
                        .map(|c| {
                            c.iter()
                                .copied()
                                .fold(f32_identity(op), |a, b| f32_combine(op, a, b))
                        })
                        .reduce(|| f32_identity(op), |a, b| f32_combine(op, a, b)),
                };
                TensorData::F32(vec![r])
            }
            TensorData::U32(v) => TensorData::U32(vec![par_int(v, op)]),
            TensorData::I32(v) => TensorData::I32(vec![par_int(v, op)]),
            TensorData::U8(_) => unreachable!("rejected by Reduce::new"),
        };
        Reduce::outputs(value)
    }

    fn reference(&self) -> Outputs {
        let op = self.op;
        let value = match self.x.data() {
            TensorData::F32(v) => TensorData::F32(vec![match op {
                ReduceOp::Sum => positive_zero(v.iter().map(|&x| f64::from(x)).sum()) as f32,
                _ => v
                    .iter()
                    .fold(f32_identity(op), |a, &b| f32_combine(op, a, b)),
            }]),
            TensorData::U32(v) => TensorData::U32(vec![
                v.iter().fold(u32::identity(op), |a, &b| a.combine(op, b)),
            ]),
            TensorData::I32(v) => TensorData::I32(vec![
                v.iter().fold(i32::identity(op), |a, &b| a.combine(op, b)),
            ]),
            TensorData::U8(_) => unreachable!("rejected by Reduce::new"),
        };
        Reduce::outputs(value)
    }

    fn operands(&self) -> Vec<&Handle> {
        vec![&self.x]
    }

    fn work_units(&self) -> f64 {
        self.x.len() as f64
    }

    /// A sum with [`plain_sum`] (f32), `par_iter().sum()` (integers), or
    /// rayon's `min`/`max`: what the operation takes written plainly.
    fn plain_loop(&self) -> PlainLoop<'_> {
        let op = self.op;
        match self.x.data() {
            TensorData::F32(x) if op == ReduceOp::Sum => Box::new(move || {
                std::hint::black_box(plain_sum(x));
            }),
            TensorData::F32(x) => Box::new(move || {
                std::hint::black_box(x.par_iter().copied().reduce(
                    || f32_identity(op),
                    |a, b| f32_combine(op, a, b),
                ));
            }),
            TensorData::U32(x) => Box::new(move || {
                std::hint::black_box(par_int(x, op));
            }),
            TensorData::I32(x) => Box::new(move || {
                std::hint::black_box(par_int(x, op));
            }),
            TensorData::U8(_) => unreachable!("rejected by Reduce::new"),
        }
    }
}

/// `sum` with a zero made +0.0: Rust's float sums start from -0.0 (so an
/// empty sum is -0.0), NumPy's from +0.0 (`np.sum([])` and
/// `np.sum([-0.0])` are both +0.0).
fn positive_zero(sum: f64) -> f64 {
    sum + 0.0
}

/// A rayon sum that keeps up with memory, on the current pool: sixteen f32
/// accumulators per block so the compiler can vectorise (a bare
/// `par_iter().sum()` cannot, and would flatter whatever is compared with
/// it). The bench's plain loop for `reduce`, and its read bandwidth.
pub fn plain_sum(x: &[f32]) -> f32 {
    x.par_chunks(1 << 16)
        .map(|block| {
            let mut acc = [0.0f32; 16];
            let mut chunks = block.chunks_exact(16);
            for c in &mut chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a += v;
                }
            }
            acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
        })
        .sum()
}

/// [`sum_f64`] of a block, compiled for the CPU's vector unit: a
/// `WithSimd` whose body is inlined into `pulp`'s dispatch (a closure's
/// body would be compiled apart, without the unit's features).
pub(crate) struct SumF64<'a>(pub &'a [f32]);

impl pulp::WithSimd for SumF64<'_> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> f64 {
        sum_f64(self.0)
    }
}

/// Sums a block: 32 f32 lanes over runs of 512 elements (16 additions per
/// lane), each run's lanes then added into 32 f64 lanes. As fast as an
/// all-f32 loop, yet the error stays near 20 ulp of Σ|x| at any length
/// (NumPy's pairwise float32 sum is O(log n) ulp; a plain f32 loop, O(n)).
/// Inlined into each `pulp` dispatch.
#[inline(always)]
pub(crate) fn sum_f64(block: &[f32]) -> f64 {
    const LANES: usize = 32;
    const RUN: usize = 16 * LANES;
    let mut totals = [0.0f64; LANES];
    let mut runs = block.chunks_exact(RUN);
    for run in &mut runs {
        let mut lanes = [0.0f32; LANES];
        for c in run.chunks_exact(LANES) {
            for (l, &x) in lanes.iter_mut().zip(c) {
                *l += x;
            }
        }
        for (t, &l) in totals.iter_mut().zip(&lanes) {
            *t += f64::from(l);
        }
    }
    let tail: f64 = runs.remainder().iter().map(|&x| f64::from(x)).sum();
    totals.iter().sum::<f64>() + tail
}

/// The `op` parameter.
fn op(params: &Params) -> Result<ReduceOp> {
    Ok(match params.choice("op", &["sum", "min", "max"], "sum")? {
        "min" => ReduceOp::Min,
        "max" => ReduceOp::Max,
        _ => ReduceOp::Sum,
    })
}

/// Only `sum` has a value for no elements.
fn check_len(op: ReduceOp, n: usize) -> Result<()> {
    if n == 0 && op != ReduceOp::Sum {
        return Err(Error::bad(format!(
            "reduce: the {} of an empty array is undefined (input 'x' has no elements)",
            op.name()
        )));
    }
    Ok(())
}

fn f32_identity(op: ReduceOp) -> f32 {
    match op {
        ReduceOp::Sum => 0.0,
        ReduceOp::Min => f32::INFINITY,
        ReduceOp::Max => f32::NEG_INFINITY,
    }
}

/// Combines two floats; `min`/`max` propagate NaN (Rust's `f32::min` would drop it).
fn f32_combine(op: ReduceOp, a: f32, b: f32) -> f32 {
    match op {
        ReduceOp::Sum => a + b,
        _ if a.is_nan() => a,
        _ if b.is_nan() => b,
        ReduceOp::Min => a.min(b),
        ReduceOp::Max => a.max(b),
    }
}

/// Wrapping integer arithmetic shared by the `u32` and `i32` paths.
trait IntReduce: Copy + Ord + Send + Sync {
    fn identity(op: ReduceOp) -> Self;
    fn combine(self, op: ReduceOp, other: Self) -> Self;
}

macro_rules! int_reduce {
    ($t:ty) => {
        impl IntReduce for $t {
            fn identity(op: ReduceOp) -> Self {
                match op {
                    ReduceOp::Sum => 0,
                    ReduceOp::Min => <$t>::MAX,
                    ReduceOp::Max => <$t>::MIN,
                }
            }
            fn combine(self, op: ReduceOp, other: Self) -> Self {
                match op {
                    ReduceOp::Sum => self.wrapping_add(other),
                    ReduceOp::Min => self.min(other),
                    ReduceOp::Max => self.max(other),
                }
            }
        }
    };
}
int_reduce!(u32);
int_reduce!(i32);

fn par_int<T: IntReduce>(v: &[T], op: ReduceOp) -> T {
    v.par_chunks(CPU_CHUNK)
        .map(|c| c.iter().fold(T::identity(op), |a, &b| a.combine(op, b)))
        .reduce(|| T::identity(op), |a, b| a.combine(op, b))
}
