//! `scan`: prefix sums of a vector of `u32`, `i32` or `f32`, exclusive
//! (`out[i] = x[0] + … + x[i-1]`, the default) or inclusive (`… + x[i]`, as
//! `numpy.cumsum`).
//!
//! Integer sums wrap modulo 2³² (as `numpy.cumsum(x, dtype=x.dtype)`); `i32`
//! and `u32` share one wrapping sum of the bits. `f32` sums are carried in
//! `f64` on the CPU and in `f32` trees on the GPU; either differs from an
//! exact running sum by rounding relative to the running sum of |x|. (A
//! running sum that leaves f32's range and comes back is finite again on
//! the CPU, and stays infinite on the GPU and in NumPy.)
//!
//! The CPU scan runs in rounds of [`ROUND`] elements, small enough to stay in
//! the last-level cache: each round sums its blocks in parallel, scans the
//! block sums, then scans each block from its offset in parallel — a second
//! pass that reads from the cache, so the round moves about what a copy
//! moves. Within a block, [`LANES`] independent running sums step
//! together, so that the adds' latency does not bound the loop.

use rayon::prelude::*;

use super::profile::{self, Bandwidth, Profile, Unit};
use super::{Arg, Inputs, KernelTask, Outputs, Param, Params, PlainLoop, Plan, ShaderInfo, Signature, Task, Streaming};
use crate::error::{Error, Result};
use crate::tensor::{DType, Handle, Spec, Tensor, TensorData};

/// Input `x`; parameter `inclusive`; output `out`.
pub const SIGNATURE: Signature = Signature {
    summary: "prefix sums of a vector (exclusive by default)",
    inputs: &[Arg {
        name: "x",
        doc: "u32, i32 or f32 [n]",
        optional: false,
    }],
    params: &[Param {
        name: "inclusive",
        default: Some("false"),
        doc: "true: out[i] includes x[i] (numpy.cumsum); false: it does not (out[0] = 0)",
    }],
    outputs: &[Arg {
        name: "out",
        doc: "[n], the dtype of x (integer sums wrap)",
        optional: false,
    }],
    picture_output: None,
    example: "anycore run scan -i x=x.npy -p inclusive=true -o out=out.npy",
};

/// What the bench, the probe and the cost model know of `scan` (the bench
/// scans `u32`, in place, as the coordinator's CPU worker does: repeated
/// runs then stay in range).
pub const PROFILE: Profile = Profile {
    sweep: profile::VECTOR_SWEEP,
    unit: Unit {
        name: "GB/s",
        counts: "8 bytes per element: x read, out written (u32)",
        scale: 1e9,
    },
    amount: |n| 8.0 * n as f64,
    bandwidth: Some(Bandwidth::Copy),
    task: |n, seed| {
        let x = super::random::random_tensor(DType::U32, &[n], seed)?;
        Ok(Task::Scan(Scan::new(x.into_data(), false)?))
    },
    baselines: &[
        profile::Baseline::Numpy(profile::NumpyCode {
            setup: "x = rng.integers(0, 2**32, n, dtype=np.uint32)",
            run: "np.cumsum(x, dtype=np.uint32)",
        }),
        profile::RAYON_LOOP,
    ],
    variants: &[],
};

/// Invocations per workgroup in `shaders/scan.wgsl`.
pub const WORKGROUP: u32 = 256;
/// Elements each invocation scans sequentially (also in the shader).
pub const ITEMS: u32 = 8;
/// Elements per workgroup tile: one partial sum each.
pub const TILE: u32 = WORKGROUP * ITEMS;

/// Scanned a chunk at a time, each chunk's sums offset by the total of
/// the chunks before it.
pub const STREAMING: Streaming = Streaming::Carry(carry);

/// Adds `total` to a chunk's sums and moves it past the chunk: for an
/// exclusive scan past the chunk's last sum plus its last element, for an
/// inclusive one past its last sum. Floats: each chunk's sums are f32
/// already, offset by the total in f64 and rounded again; the total
/// grows by the chunks' f32 totals.
fn carry(params: &Params, x: &Tensor, out: &mut Tensor, total: &mut f64) {
    let inclusive = params.bool_or("inclusive", false).unwrap_or(false);
    fn offset<T: Copy + Send + Sync>(
        x: &[T],
        out: &mut [T],
        total: &mut f64,
        inclusive: bool,
        wide: impl Fn(T) -> f64 + Sync,
        add: impl Fn(T, f64) -> T + Sync,
    ) {
        let (Some(&last_x), Some(&last_out)) = (x.last(), out.last()) else {
            return;
        };
        let before = *total;
        let past = if inclusive {
            wide(last_out)
        } else {
            wide(last_out) + wide(last_x)
        };
        out.par_iter_mut().for_each(|o| *o = add(*o, before));
        *total += past;
    }
    // Integers: the total is a u32 bit pattern, exact in f64, wrapped
    // after every chunk.
    let wrap = |t: &mut f64| *t = (*t as u64 % (1u64 << 32)) as f64;
    match (x.data(), out.data_mut()) {
        (TensorData::F32(x), TensorData::F32(out)) => {
            offset(x, out, total, inclusive, f64::from, |o, t| (f64::from(o) + t) as f32)
        }
        (TensorData::U32(x), TensorData::U32(out)) => {
            offset(x, out, total, inclusive, f64::from, |o, t| o.wrapping_add(t as u32));
            wrap(total);
        }
        (TensorData::I32(x), TensorData::I32(out)) => {
            let bits = |v: i32| f64::from(v as u32);
            offset(x, out, total, inclusive, bits, |o, t| o.wrapping_add(t as u32 as i32));
            wrap(total);
        }
        _ => unreachable!("scan's output has its input's dtype"),
    }
}

/// `shaders/scan.wgsl`: tile sums, a one-workgroup scan of them, and the
/// tiles scanned from their offsets.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "scan.wgsl",
    source: include_str!("../../shaders/scan.wgsl"),
    entry_points: &[
        ("tile_sums", [WORKGROUP, 1, 1]),
        ("scan_sums", [WORKGROUP, 1, 1]),
        ("scan_tiles", [WORKGROUP, 1, 1]),
    ],
    trusted: true,
};

/// Elements per CPU round: 4 MiB of u32, which stays in the cache between
/// the round's two passes.
const ROUND: usize = 1 << 20;
/// Elements per block of a round (one rayon task) at least.
const MIN_BLOCK: usize = 1 << 12;
/// Running sums stepping together within a block of f32 (carried in f64,
/// whose adds take 4 cycles each: eight chains keep the adder busy).
/// Integer adds take one cycle, so integers scan each block in one chain.
const LANES: usize = 8;

/// A validated `scan`.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The values (u32, i32 or f32), one-dimensional.
    pub x: Handle,
    /// Whether `out[i]` includes `x[i]`.
    pub inclusive: bool,
}

impl Scan {
    /// Prefix sums of `x`.
    pub fn new(x: TensorData, inclusive: bool) -> Result<Self> {
        Scan::of(x.into(), inclusive)
    }

    /// Prefix sums of `x`, wherever it is.
    fn of(x: Handle, inclusive: bool) -> Result<Self> {
        if x.dtype() == DType::U8 {
            return Err(Error::bad(
                "scan: input 'x' must be u32, i32 or f32, not u8",
            ));
        }
        Ok(Scan { x, inclusive })
    }

    /// Wraps a result as this kernel's output.
    pub fn outputs(out: TensorData) -> Outputs {
        let n = out.len();
        Outputs::from([("out".to_owned(), Tensor::new(vec![n], out))])
    }

    /// Scans `x` where it lies.
    fn scan_in_place(x: &mut TensorData, inclusive: bool) {
        match x {
            TensorData::U32(v) => scan_rounds::<Wrapping>(v, inclusive),
            TensorData::I32(v) => scan_rounds::<Wrapping>(bytemuck::cast_slice_mut(v), inclusive),
            TensorData::F32(v) => scan_rounds::<Wide>(v, inclusive),
            TensorData::U8(_) => unreachable!("rejected by Scan::new"),
        }
    }
}

impl KernelTask for Scan {
    fn plan(mut inputs: Inputs<Spec>, params: &Params) -> Result<Plan> {
        let x = inputs.take("x", &[DType::U32, DType::I32, DType::F32], 1)?;
        params.bool_or("inclusive", false)?;
        let n = x.shape[0];
        Ok(Plan::new([("out", x)], n as f64))
    }

    fn from_job(mut inputs: Inputs, params: &Params) -> Result<Self> {
        let x = inputs.take("x", &[DType::U32, DType::I32, DType::F32], 1)?;
        let inclusive = params.bool_or("inclusive", false)?;
        Scan::of(x, inclusive)
    }

    fn run_cpu(&self) -> Outputs {
        let mut copy = self.clone();
        copy.run_cpu_in_place()
    }

    /// Scans x where it lies and takes it out as the result.
    fn run_cpu_in_place(&mut self) -> Outputs {
        let empty = TensorData::empty(self.x.dtype()).into();
        // Taken without a copy unless another handle shares x.
        let mut x = std::mem::replace(&mut self.x, empty).into_data();
        Scan::scan_in_place(&mut x, self.inclusive);
        Scan::outputs(x)
    }

    /// Puts the result back as the next run's input (the bench's u32 sums
    /// wrap, so repeated runs stay in range).
    fn restore(&mut self, outputs: Outputs) {
        if let Some(out) = outputs.into_values().next() {
            self.x = out.into_data().into();
        }
    }

    fn reference(&self) -> Outputs {
        let inclusive = self.inclusive;
        let out = match self.x.data() {
            TensorData::U32(v) => TensorData::U32(sequential(v, 0u32, inclusive, |a, &x| {
                a.wrapping_add(x)
            })),
            TensorData::I32(v) => TensorData::I32(sequential(v, 0i32, inclusive, |a, &x| {
                a.wrapping_add(x)
            })),
            TensorData::F32(v) => {
                let wide = sequential(v, 0f64, inclusive, |a, &x| a + f64::from(x));
                TensorData::F32(wide.into_iter().map(|s| s as f32).collect())
            }
            TensorData::U8(_) => unreachable!("rejected by Scan::new"),
        };
        Scan::outputs(out)
    }

    fn operands(&self) -> Vec<&Handle> {
        vec![&self.x]
    }

    fn work_units(&self) -> f64 {
        self.x.len() as f64
    }

    /// The parallel scan a user writes with rayon: each chunk scanned in
    /// place, the chunks' totals scanned, each chunk then offset by its
    /// total — two passes over memory. On its own copy, as wrapping u32
    /// sums (what the bench times).
    fn plain_loop(&self) -> PlainLoop<'_> {
        let mut work = self.x.data().words().expect("rejected by Scan::new").to_vec();
        Box::new(move || {
            let chunk = work.len().div_ceil(rayon::current_num_threads()).max(1);
            let totals: Vec<u32> = work
                .par_chunks_mut(chunk)
                .map(|c| {
                    let mut acc = 0u32;
                    for x in c {
                        acc = acc.wrapping_add(*x);
                        *x = acc;
                    }
                    acc
                })
                .collect();
            let mut offset = 0u32;
            let offsets: Vec<u32> = totals
                .iter()
                .map(|&t| {
                    let o = offset;
                    offset = offset.wrapping_add(t);
                    o
                })
                .collect();
            work.par_chunks_mut(chunk)
                .zip(offsets)
                .for_each(|(c, o)| c.iter_mut().for_each(|x| *x = x.wrapping_add(o)));
        })
    }
}

/// `out[i]` = the fold of `x[..i]` (exclusive) or `x[..=i]` (inclusive).
fn sequential<T, A: Copy>(x: &[T], zero: A, inclusive: bool, add: impl Fn(A, &T) -> A) -> Vec<A> {
    let mut acc = zero;
    x.iter()
        .map(|v| {
            let before = acc;
            acc = add(acc, v);
            if inclusive { acc } else { before }
        })
        .collect()
}

/// A running sum over elements of one type.
trait Sum: Copy + Send + Sync {
    /// The elements.
    type Elem: Copy + Send + Sync;
    /// The empty sum.
    const ZERO: Self;
    /// Adds an element.
    fn add(self, x: Self::Elem) -> Self;
    /// Adds another sum.
    fn join(self, other: Self) -> Self;
    /// The sum as an element.
    fn get(self) -> Self::Elem;
    /// The sum of a block, as fast as memory allows.
    fn block(x: &[Self::Elem]) -> Self;
    /// Running sums that step together within a block (see [`LANES`]).
    const CHAINS: usize;
}

/// Wrapping sums of u32 (and of i32, which add the same bits).
#[derive(Clone, Copy)]
struct Wrapping(u32);

impl Sum for Wrapping {
    type Elem = u32;
    const ZERO: Self = Wrapping(0);
    #[inline(always)]
    fn add(self, x: u32) -> Self {
        Wrapping(self.0.wrapping_add(x))
    }
    fn join(self, other: Self) -> Self {
        self.add(other.0)
    }
    #[inline(always)]
    fn get(self) -> u32 {
        self.0
    }
    fn block(x: &[u32]) -> Self {
        Wrapping(x.iter().fold(0u32, |a, &b| a.wrapping_add(b)))
    }
    const CHAINS: usize = 1;
}

/// f32 sums carried in f64.
#[derive(Clone, Copy)]
struct Wide(f64);

impl Sum for Wide {
    type Elem = f32;
    const ZERO: Self = Wide(0.0);
    #[inline(always)]
    fn add(self, x: f32) -> Self {
        Wide(self.0 + f64::from(x))
    }
    fn join(self, other: Self) -> Self {
        Wide(self.0 + other.0)
    }
    #[inline(always)]
    fn get(self) -> f32 {
        self.0 as f32
    }
    fn block(x: &[f32]) -> Self {
        let arch = pulp::Arch::new();
        Wide(arch.dispatch(super::reduce::SumF64(x)))
    }
    const CHAINS: usize = LANES;
}

/// Scans `v` in place, round by round (see the module's doc).
fn scan_rounds<S: Sum>(v: &mut [S::Elem], inclusive: bool) {
    let mut carry = S::ZERO;
    // A few blocks per thread: enough to balance, few enough that rayon's
    // cost per task stays small beside the block's.
    let block = (ROUND.min(v.len()) / (4 * rayon::current_num_threads())).max(MIN_BLOCK);
    for round in v.chunks_mut(ROUND) {
        // A cancelled job leaves the rest (its result is dropped).
        if super::stop::requested() {
            return;
        }
        // Each block's chains: stretches of (nearly) equal length.
        let sums: Vec<Vec<S>> = round
            .par_chunks(block)
            .map(|block| {
                stretches(block.len(), S::CHAINS)
                    .map(|r| S::block(&block[r]))
                    .collect()
            })
            .collect();
        let mut offsets = sums;
        for chains in &mut offsets {
            for s in chains.iter_mut() {
                let here = *s;
                *s = carry;
                carry = carry.join(here);
            }
        }
        round
            .par_chunks_mut(block)
            .zip(offsets)
            .for_each(|(block, start)| scan_block::<S>(block, &start, inclusive));
    }
}

/// `chains` consecutive ranges that tile 0..len, of equal length but the
/// last, which takes the remainder.
fn stretches(len: usize, chains: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let q = len / chains;
    (0..chains).map(move |c| c * q..if c + 1 == chains { len } else { (c + 1) * q })
}

/// Scans one block from the running sums its chains start at: the chains
/// step together through their first `q` elements, then the last one
/// finishes its remainder alone.
#[inline(always)]
fn scan_block<S: Sum>(block: &mut [S::Elem], start: &[S], inclusive: bool) {
    let step = |a: &mut S, x: &mut S::Elem| {
        let before = *a;
        *a = a.add(*x);
        *x = if inclusive { a.get() } else { before.get() };
    };
    // The running sums live in locals (registers), not in memory.
    if let [start] = start {
        let mut a = *start;
        block.iter_mut().for_each(|x| step(&mut a, x));
        return;
    }
    let mut acc: [S; LANES] = start.try_into().expect("one running sum or LANES");
    let q = block.len() / LANES;
    let (body, tail) = block.split_at_mut(q * LANES);
    if q > 0 {
        let mut parts: [&mut [S::Elem]; LANES] = {
            let mut rest = body;
            std::array::from_fn(|_| {
                let (part, more) = std::mem::take(&mut rest).split_at_mut(q);
                rest = more;
                part
            })
        };
        for i in 0..q {
            for (part, a) in parts.iter_mut().zip(acc.iter_mut()) {
                step(a, &mut part[i]);
            }
        }
    }
    let last = &mut acc[LANES - 1];
    tail.iter_mut().for_each(|x| step(last, x));
}
