//! `sort`: keys of `u32`, `i32` or `f32` in ascending order, stable, with
//! optional `u32` values moved with their keys, or the permutation that
//! sorts them (`indices`: an argsort).
//!
//! Floats sort in IEEE 754 total order: −NaN < −inf < … < −0 < +0 < … <
//! +inf < +NaN. Every dtype becomes u32 "order bits" that compare as
//! unsigned integers in that order (i32: the sign bit flipped; f32: all
//! bits flipped when negative, else the sign bit set), is sorted as such,
//! and is turned back.
//!
//! Both backends run radix sorts, stable in every pass. The CPU's takes
//! 8-bit digits, skipping digits that every key shares: it scatters by the
//! most significant digit that varies across the pool, then sorts each
//! bucket by the lower digits — in the cache, least significant first, on
//! one thread, or split again the same way when the bucket is large (see
//! `sort_between`). The GPU's is an LSD sort of eight 4-bit digits (see
//! `shaders/sort.wgsl`).
//!
//! `indices` is the stable argsort of the keys in this order: for integers
//! `numpy.argsort(kind='stable')`; for floats NumPy's order differs only in
//! that it ties −0 with +0 and puts every NaN last.

use rayon::prelude::*;

use super::profile::{self, Profile, Unit};
use super::{Arg, Inputs, KernelTask, Outputs, Param, Params, PlainLoop, Plan, ShaderInfo, Signature, Task, Streaming};
use crate::error::{Error, Result};
use crate::tensor::{DType, Handle, Spec, Tensor, TensorData, alloc};

/// Inputs `keys` and optional `values`; parameter `indices`; outputs
/// `keys`, `values`, `indices`.
pub const SIGNATURE: Signature = Signature {
    summary: "keys in ascending order, stable, moving values with them or giving the argsort",
    inputs: &[
        Arg {
            name: "keys",
            doc: "u32, i32 or f32 [n]",
            optional: false,
        },
        Arg {
            name: "values",
            doc: "u32 [n], moved with their keys",
            optional: true,
        },
    ],
    params: &[Param {
        name: "indices",
        default: Some("false"),
        doc: "true: also give 'indices', each sorted key's position in the input (the stable argsort in this order); not with 'values'",
    }],
    outputs: &[
        Arg {
            name: "keys",
            doc: "[n], the dtype of keys, ascending (f32 in IEEE total order)",
            optional: false,
        },
        Arg {
            name: "values",
            doc: "u32 [n], when values were given",
            optional: false,
        },
        Arg {
            name: "indices",
            doc: "u32 [n], when indices=true",
            optional: false,
        },
    ],
    picture_output: None,
    example: "anycore run sort -i keys=k.npy -i values=v.npy -o keys=sorted.npy -o values=moved.npy",
};

/// What the bench, the probe and the cost model know of `sort` (the bench
/// sorts u32 keys alone).
pub const PROFILE: Profile = Profile {
    sweep: profile::VECTOR_SWEEP,
    unit: Unit {
        name: "Mkeys/s",
        counts: "u32 keys sorted",
        scale: 1e6,
    },
    amount: |n| n as f64,
    bandwidth: None,
    task: |n, seed| {
        let keys = super::random::random_tensor(DType::U32, &[n], seed)?;
        Ok(Task::Sort(Sort::new(keys.into_data(), Payload::None)?))
    },
    baselines: &[
        profile::Baseline::Numpy(profile::NumpyCode {
            setup: "x = rng.integers(0, 2**32, n, dtype=np.uint32)",
            run: "np.sort(x)",
        }),
        profile::RAYON_LOOP,
    ],
    variants: &[],
};

/// Invocations per workgroup in `shaders/sort.wgsl`.
pub const WORKGROUP: u32 = 256;
/// Keys each invocation handles (also in the shader).
pub const ITEMS: u32 = 8;
/// Keys per workgroup tile.
pub const TILE: u32 = WORKGROUP * ITEMS;
/// Bits per GPU digit (also in the shader).
pub const GPU_DIGIT_BITS: u32 = 4;

/// Needs the whole array (sorted runs and a merge are not built: a sort
/// larger than the memory budget is refused, naming the budget it needs).
pub const STREAMING: Streaming = Streaming::Whole;

/// `shaders/sort.wgsl`: per pass, each tile's digit counts, then the tiles
/// scattered to the places the scanned counts give them.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "sort.wgsl",
    source: include_str!("../../shaders/sort.wgsl"),
    entry_points: &[
        ("count", [WORKGROUP, 1, 1]),
        ("scatter", [WORKGROUP, 1, 1]),
    ],
    trusted: true,
};

/// Bits per CPU digit.
const DIGIT_BITS: u32 = 8;
/// Buckets per CPU digit.
const BUCKETS: usize = 1 << DIGIT_BITS;
/// Keys per part of a CPU pass at least (fewer parts for fewer keys).
const MIN_PART: usize = 1 << 14;
/// Sorts of at most this many keys run on one thread, digit by digit.
const SMALL: usize = 1 << 14;
/// Buckets of more keys than this (1 MiB), and than half a thread's share
/// of the whole sort, are split again across the pool; smaller ones are
/// sorted by one thread. (Spread keys make buckets of 2^18 keys from 2^26:
/// splitting those again costs a pass and gains nothing.)
const SPLIT: usize = 1 << 18;
/// CPU digits in a key.
const PASSES: usize = (32 / DIGIT_BITS) as usize;

/// What moves with the keys.
#[derive(Clone, Debug)]
pub enum Payload {
    /// Nothing: the keys alone.
    None,
    /// Values given with the keys (u32, one-dimensional).
    Values(Handle),
    /// The keys' positions in the input (an argsort).
    Indices,
}

/// A validated `sort`.
#[derive(Clone, Debug)]
pub struct Sort {
    /// The keys (u32, i32 or f32), one-dimensional.
    pub keys: Handle,
    /// What moves with them.
    pub payload: Payload,
}

impl Sort {
    /// Sorts `keys`, moving `payload` with them.
    pub fn new(keys: TensorData, payload: Payload) -> Result<Self> {
        Sort::of(keys.into(), payload)
    }

    /// Sorts `keys`, moving `payload` with them, wherever they are.
    fn of(keys: Handle, payload: Payload) -> Result<Self> {
        if keys.dtype() == DType::U8 {
            return Err(Error::bad(
                "sort: input 'keys' must be u32, i32 or f32, not u8",
            ));
        }
        let values = match &payload {
            Payload::Values(v) => Some(v.len()),
            _ => None,
        };
        check_lens(keys.len(), values)?;
        Ok(Sort { keys, payload })
    }

    /// The keys as order bits.
    pub fn order_bits(&self) -> Vec<u32> {
        let mut bits = self.keys.data().words().expect("rejected by Sort::new").to_vec();
        to_order(self.keys.dtype(), &mut bits);
        bits
    }

    /// The payload as the sort starts it: values, the positions 0..n, or
    /// nothing.
    pub fn start_payload(&self) -> Option<Vec<u32>> {
        match &self.payload {
            Payload::None => None,
            Payload::Values(v) => Some(u32s(v).to_vec()),
            Payload::Indices => Some((0..self.keys.len() as u32).collect()),
        }
    }

    /// This kernel's outputs from sorted order bits and the payload moved
    /// with them.
    pub fn outputs(&self, mut bits: Vec<u32>, payload: Option<Vec<u32>>) -> Outputs {
        let dtype = self.keys.dtype();
        from_order(dtype, &mut bits);
        let keys = TensorData::from_words(dtype, bits);
        let n = keys.len();
        let mut out = Outputs::from([("keys".to_owned(), Tensor::new(vec![n], keys))]);
        let name = match self.payload {
            Payload::None => None,
            Payload::Values(_) => Some("values"),
            Payload::Indices => Some("indices"),
        };
        if let (Some(name), Some(p)) = (name, payload) {
            out.insert(name.to_owned(), Tensor::new(vec![n], TensorData::U32(p)));
        }
        out
    }
}

/// Turns raw bits into order bits, in place.
fn to_order(dtype: DType, bits: &mut [u32]) {
    match dtype {
        DType::I32 => bits.par_iter_mut().for_each(|b| *b ^= 1 << 31),
        DType::F32 => bits.par_iter_mut().for_each(|b| {
            *b = if *b >> 31 == 1 { !*b } else { *b | 1 << 31 }
        }),
        _ => {}
    }
}

/// Turns order bits back into raw bits, in place.
fn from_order(dtype: DType, bits: &mut [u32]) {
    match dtype {
        DType::I32 => bits.par_iter_mut().for_each(|b| *b ^= 1 << 31),
        DType::F32 => bits.par_iter_mut().for_each(|b| {
            *b = if *b >> 31 == 1 { *b & !(1 << 31) } else { !*b }
        }),
        _ => {}
    }
}

/// The `indices` parameter, which input 'values' excludes.
fn indices(params: &Params, has_values: bool) -> Result<bool> {
    let indices = params.bool_or("indices", false)?;
    if indices && has_values {
        return Err(Error::bad(
            "sort: give input 'values' or parameter indices=true, not both",
        ));
    }
    Ok(indices)
}

/// Values, when given, match the keys one for one; the keys' positions fit
/// u32 (the indices output).
fn check_lens(keys: usize, values: Option<usize>) -> Result<()> {
    if let Some(values) = values
        && values != keys
    {
        return Err(Error::bad(format!(
            "sort: input 'values' has {values} elements but 'keys' has {keys}; they must match"
        )));
    }
    if keys > u32::MAX as usize {
        return Err(Error::bad(format!(
            "sort: {keys} keys are more than indices of u32 can number"
        )));
    }
    Ok(())
}

impl KernelTask for Sort {
    fn plan(mut inputs: Inputs<Spec>, params: &Params) -> Result<Plan> {
        let keys = inputs.take("keys", &[DType::U32, DType::I32, DType::F32], 1)?;
        let values = inputs.take_optional("values", &[DType::U32], 1)?;
        let indices = indices(params, values.is_some())?;
        check_lens(keys.shape[0], values.as_ref().map(|v| v.shape[0]))?;
        let u32s = Spec {
            dtype: DType::U32,
            shape: keys.shape.clone(),
        };
        let payload = match (values.is_some(), indices) {
            (true, _) => Some(("values", u32s)),
            (false, true) => Some(("indices", u32s)),
            (false, false) => None,
        };
        let n = keys.shape[0];
        // The radix passes' second buffer, for the keys and the payload.
        let scratch = keys.bytes().saturating_add(payload.as_ref().map_or(0, |(_, p)| p.bytes()));
        Ok(Plan::new([("keys", keys)].into_iter().chain(payload), n as f64).with_scratch(scratch))
    }

    fn from_job(mut inputs: Inputs, params: &Params) -> Result<Self> {
        let keys = inputs.take("keys", &[DType::U32, DType::I32, DType::F32], 1)?;
        let values = inputs.take_optional("values", &[DType::U32], 1)?;
        let indices = indices(params, values.is_some())?;
        let payload = match (values, indices) {
            (Some(v), _) => Payload::Values(v),
            (None, true) => Payload::Indices,
            (None, false) => Payload::None,
        };
        Sort::of(keys, payload)
    }

    fn run_cpu(&self) -> Outputs {
        let mut bits = self.order_bits();
        let mut payload = self.start_payload();
        radix_sort(&mut bits, payload.as_deref_mut());
        self.outputs(bits, payload)
    }

    /// Sorts the task's own keys (and values) where they lie, leaving it
    /// empty.
    fn run_cpu_in_place(&mut self) -> Outputs {
        let dtype = self.keys.dtype();
        let empty = Sort {
            keys: TensorData::empty(dtype).into(),
            payload: Payload::None,
        };
        let Sort { keys, payload } = std::mem::replace(self, empty);
        // Taken without a copy unless other handles share them.
        let mut bits = keys.into_data().into_words().expect("rejected by Sort::new");
        to_order(dtype, &mut bits);
        let (kind, mut moved) = match payload {
            Payload::None => (Payload::None, None),
            Payload::Values(v) => match v.into_data() {
                TensorData::U32(v) => (Payload::Values(Vec::new().into()), Some(v)),
                _ => unreachable!("values are u32 (Sort::plan)"),
            },
            Payload::Indices => (Payload::Indices, Some((0..bits.len() as u32).collect())),
        };
        radix_sort(&mut bits, moved.as_deref_mut());
        let named = Sort {
            keys: TensorData::empty(dtype).into(),
            payload: kind,
        };
        named.outputs(bits, moved)
    }

    /// Puts the sorted keys back as the next run's input.
    fn restore(&mut self, outputs: Outputs) {
        let mut outputs = outputs;
        if let Some(keys) = outputs.remove("keys") {
            self.keys = keys.into_data().into();
        }
        if let Some(values) = outputs.remove("values")
        {
            self.payload = Payload::Values(values.into_data().into());
        }
        if outputs.remove("indices").is_some() {
            self.payload = Payload::Indices;
        }
    }

    fn reference(&self) -> Outputs {
        let bits = self.order_bits();
        let mut order: Vec<u32> = (0..bits.len() as u32).collect();
        // A stable comparison sort of the order bits.
        order.sort_by_key(|&i| bits[i as usize]);
        let sorted = order.iter().map(|&i| bits[i as usize]).collect();
        let payload = match &self.payload {
            Payload::None => None,
            Payload::Values(v) => {
                let v = u32s(v);
                Some(order.iter().map(|&i| v[i as usize]).collect())
            }
            Payload::Indices => Some(order),
        };
        self.outputs(sorted, payload)
    }

    fn operands(&self) -> Vec<&Handle> {
        match &self.payload {
            Payload::Values(v) => vec![&self.keys, v],
            _ => vec![&self.keys],
        }
    }

    fn work_units(&self) -> f64 {
        self.keys.len() as f64
    }

    /// rayon's parallel pattern-defeating quicksort on a copy of the order
    /// bits (keys alone; with a payload, pairs).
    fn plain_loop(&self) -> PlainLoop<'_> {
        let bits = self.order_bits();
        let mut work = bits.clone();
        Box::new(move || {
            work.copy_from_slice(&bits);
            work.par_sort_unstable();
        })
    }
}

/// The elements of a u32 handle.
fn u32s(h: &Handle) -> &[u32] {
    match h.data() {
        TensorData::U32(v) => v,
        _ => unreachable!("values are u32 (Sort::plan)"),
    }
}

/// Sorts order bits ascending, stably, moving `payload` (as long as the
/// keys, or empty) with them.
pub fn radix_sort(keys: &mut [u32], payload: Option<&mut [u32]>) {
    let n = keys.len();
    let all: Vec<usize> = (0..PASSES).collect();
    let split = (n / (2 * rayon::current_num_threads())).max(SPLIT);
    match payload {
        None => {
            let mut scratch = scratch(n);
            let (a, b) = (keys, &mut scratch[..]);
            if n <= SMALL {
                sort_local::<false>(a, b, &mut [], &mut [], &all, true);
            } else {
                sort_between::<false>(a, b, &mut [], &mut [], &all, true, split);
            }
        }
        Some(p) => {
            assert_eq!(p.len(), n, "a payload moves with the keys, one for one");
            let (mut scratch, mut scratch_p) = (scratch(n), scratch(n));
            let (a, b, pb) = (keys, &mut scratch[..], &mut scratch_p[..]);
            if n <= SMALL {
                sort_local::<true>(a, b, p, pb, &all, true);
            } else {
                sort_between::<true>(a, b, p, pb, &all, true, split);
            }
        }
    }
}

/// `n` words of scratch memory, zeroed lazily by the kernel, on huge
/// pages where the system gives them ([`alloc::advise_huge_pages`]): the
/// scatter's 256 streams miss the TLB less.
fn scratch(n: usize) -> Vec<u32> {
    let v = vec![0u32; n];
    alloc::advise_huge_pages(&v);
    v
}

/// Sorts the keys in `a` by the digits `passes` (least significant first),
/// using `b` (as long) as scratch, and leaves them in `a` (`end_in_a`) or
/// in `b`; `pa` and `pb` (as long, or empty unless `MOVE`) move along.
///
/// The keys are scattered across the pool by the most significant digit
/// that varies (each part of the input counts its digits, which gives
/// every part its places in every bucket, and the parts scatter in order,
/// so the pass is stable); then the buckets are sorted by the lower digits
/// in parallel: each by one thread in the cache ([`sort_local`]), or split
/// again the same way when it holds more than `split` keys, so that keys
/// bunched in a few buckets do not leave one thread with most of them.
fn sort_between<const MOVE: bool>(
    a: &mut [u32],
    b: &mut [u32],
    pa: &mut [u32],
    pb: &mut [u32],
    passes: &[usize],
    end_in_a: bool,
    split: usize,
) {
    let n = a.len();
    let parts = (n / MIN_PART).clamp(1, 4 * rayon::current_num_threads());
    let part_len = n.div_ceil(parts);
    // Every digit of every part, in one read.
    let counts: Vec<[[u32; BUCKETS]; PASSES]> = a
        .par_chunks(part_len)
        .map(|part| {
            let mut c = [[0u32; BUCKETS]; PASSES];
            count_digits(part, &mut c, passes);
            c
        })
        .collect();
    // Digits that are the same for every key change nothing.
    let live: Vec<usize> = passes
        .iter()
        .copied()
        .filter(|&p| {
            (0..BUCKETS).all(|d| counts.iter().map(|c| c[p][d] as usize).sum::<usize>() != n)
        })
        .collect();
    let Some((&top, lower)) = live.split_last() else {
        if !end_in_a {
            b.copy_from_slice(a);
            pb.copy_from_slice(pa);
        }
        return;
    };
    // Each part's first place in each bucket of the top digit: buckets in
    // order, parts in order within a bucket.
    let mut starts = vec![[0usize; BUCKETS]; counts.len()];
    let mut bounds = [0usize; BUCKETS + 1];
    let mut at = 0;
    for d in 0..BUCKETS {
        bounds[d] = at;
        for (s, c) in starts.iter_mut().zip(&counts) {
            s[d] = at;
            at += c[top][d] as usize;
        }
    }
    bounds[BUCKETS] = n;
    {
        let dst = SharedOut::new(b);
        let dst_payload = SharedOut::new(pb);
        let src_payload: &[u32] = pa;
        a.par_chunks(part_len)
            .zip(starts)
            .enumerate()
            .for_each(|(i, (part, mut place))| {
                let first = i * part_len;
                for (j, &k) in part.iter().enumerate() {
                    let at = &mut place[digit(k, top)];
                    // SAFETY: the places handed to the parts are disjoint
                    // and within 0..n: part p has its count of bucket d's
                    // places from `starts[p][d]`, and the starts tile 0..n
                    // (`a` is borrowed throughout, so the keys counted are
                    // the keys scattered).
                    unsafe {
                        dst.write(*at, k);
                        if MOVE {
                            dst_payload.write(*at, src_payload[first + j]);
                        }
                    }
                    *at += 1;
                }
            });
    }
    // The buckets now lie in `b`; each is sorted by the lower digits with
    // its stretch of `a` as scratch, and ends where the whole must.
    let mut buckets = Vec::with_capacity(BUCKETS);
    let (mut a_rest, mut b_rest, mut pa_rest, mut pb_rest) = (a, b, pa, pb);
    for d in 0..BUCKETS {
        let len = bounds[d + 1] - bounds[d];
        let plen = if MOVE { len } else { 0 };
        let (a_here, a_more) = std::mem::take(&mut a_rest).split_at_mut(len);
        let (b_here, b_more) = std::mem::take(&mut b_rest).split_at_mut(len);
        let (pa_here, pa_more) = std::mem::take(&mut pa_rest).split_at_mut(plen);
        let (pb_here, pb_more) = std::mem::take(&mut pb_rest).split_at_mut(plen);
        (a_rest, b_rest, pa_rest, pb_rest) = (a_more, b_more, pa_more, pb_more);
        if len > 0 {
            buckets.push((b_here, a_here, pb_here, pa_here));
        }
    }
    buckets.into_par_iter().for_each(|(held, other, p_held, p_other)| {
        // A cancelled job leaves the rest (its result is dropped).
        if super::stop::requested() {
            return;
        }
        if held.len() > split {
            sort_between::<MOVE>(held, other, p_held, p_other, lower, !end_in_a, split)
        } else {
            sort_local::<MOVE>(held, other, p_held, p_other, lower, !end_in_a)
        }
    });
}

/// Adds the digits `passes` of `keys` to `counts[pass]`.
fn count_digits(keys: &[u32], counts: &mut [[u32; BUCKETS]], passes: &[usize]) {
    for &k in keys {
        for &p in passes {
            counts[p][digit(k, p)] += 1;
        }
    }
}

/// Sorts the keys in `a` by the digits `passes` (least significant first)
/// on this thread, scattering between `a` and `b`, and leaves them in `a`
/// (`end_in_a`) or in `b`; `pa` and `pb` move along when `MOVE`.
fn sort_local<const MOVE: bool>(
    a: &mut [u32],
    b: &mut [u32],
    pa: &mut [u32],
    pb: &mut [u32],
    passes: &[usize],
    end_in_a: bool,
) {
    let n = a.len();
    let mut counts = [[0u32; BUCKETS]; PASSES];
    count_digits(a, &mut counts, passes);
    let mut sides = [(a, pa), (b, pb)];
    let mut from = 0;
    for &p in passes {
        if counts[p].iter().any(|&c| c as usize == n) {
            continue;
        }
        let mut place = [0usize; BUCKETS];
        let mut at = 0;
        for (pl, &c) in place.iter_mut().zip(&counts[p]) {
            *pl = at;
            at += c as usize;
        }
        let [x, y] = &mut sides;
        let ((src, src_p), (dst, dst_p)) = if from == 0 { (x, y) } else { (y, x) };
        for (j, &k) in src.iter().enumerate() {
            let at = &mut place[digit(k, p)];
            dst[*at] = k;
            if MOVE {
                dst_p[*at] = src_p[j];
            }
            *at += 1;
        }
        from = 1 - from;
    }
    let want = if end_in_a { 0 } else { 1 };
    if from != want {
        let [(a, pa), (b, pb)] = sides;
        if from == 0 {
            b.copy_from_slice(a);
            pb.copy_from_slice(pa);
        } else {
            a.copy_from_slice(b);
            pa.copy_from_slice(pb);
        }
    }
}

/// Digit `pass` (least significant first) of a key.
#[inline(always)]
fn digit(key: u32, pass: usize) -> usize {
    ((key >> (pass as u32 * DIGIT_BITS)) as usize) & (BUCKETS - 1)
}

/// A slice that several threads write at disjoint places, for as long as
/// it is borrowed.
struct SharedOut<'a> {
    ptr: *mut u32,
    len: usize,
    slice: std::marker::PhantomData<&'a mut [u32]>,
}

// SAFETY: writers use disjoint indices (see `sort_between`), and the slice
// stays borrowed while they do.
unsafe impl Sync for SharedOut<'_> {}
unsafe impl Send for SharedOut<'_> {}

impl<'a> SharedOut<'a> {
    fn new(out: &'a mut [u32]) -> Self {
        SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            slice: std::marker::PhantomData,
        }
    }

    /// Writes `v` at `i`.
    ///
    /// # Safety
    /// No other thread may access index `i` meanwhile.
    #[inline(always)]
    unsafe fn write(&self, i: usize, v: u32) {
        debug_assert!(i < self.len);
        // SAFETY: `i` is in bounds (checked in debug builds) and no other
        // thread touches it (the caller's promise).
        unsafe { self.ptr.add(i).write(v) }
    }
}
