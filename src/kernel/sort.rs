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
//! Both backends run an LSD radix sort. The CPU's takes 8-bit digits (four
//! passes, a pass skipped when every key has the same digit): the keys are
//! split into parts, each part counts its digits, the counts give every
//! part its place in each bucket, and the parts scatter in parallel, each
//! in order, so the sort is stable. The GPU's takes 4-bit digits (see
//! `shaders/sort.wgsl`).

use rayon::prelude::*;

use super::profile::{self, Profile, Unit};
use super::{
    Arg, Inputs, KernelTask, Outputs, Param, Params, PlainLoop, ShaderInfo, Signature, Task,
};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor, TensorData};

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
        doc: "true: also give 'indices', each sorted key's position in the input (numpy.argsort(kind='stable')); not with 'values'",
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
    size_means: "keys",
    sizes_as_powers: true,
    max_size: profile::VECTOR_MAX,
    quick_sizes: &profile::VECTOR_QUICK_SIZES,
    sizes: &profile::VECTOR_SIZES,
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
    probe_sizes: [1 << 12, 1 << 20],
    baselines: &[
        profile::Baseline::Numpy(profile::NumpyCode {
            setup: "x = rng.integers(0, 2**32, n, dtype=np.uint32)",
            run: "np.sort(x)",
        }),
        profile::RAYON_LOOP,
    ],
};

/// Invocations per workgroup in `shaders/sort.wgsl`.
pub const WORKGROUP: u32 = 256;
/// Keys each invocation handles (also in the shader).
pub const ITEMS: u32 = 8;
/// Keys per workgroup tile.
pub const TILE: u32 = WORKGROUP * ITEMS;
/// Bits per GPU digit (also in the shader).
pub const GPU_DIGIT_BITS: u32 = 4;

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

/// What moves with the keys.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// Nothing: the keys alone.
    None,
    /// Values given with the keys.
    Values(Vec<u32>),
    /// The keys' positions in the input (an argsort).
    Indices,
}

/// A validated `sort`.
#[derive(Clone, Debug)]
pub struct Sort {
    /// The keys (u32, i32 or f32).
    pub keys: TensorData,
    /// What moves with them.
    pub payload: Payload,
}

impl Sort {
    /// Sorts `keys`, moving `payload` with them.
    pub fn new(keys: TensorData, payload: Payload) -> Result<Self> {
        if keys.dtype() == DType::U8 {
            return Err(Error::bad(
                "sort: input 'keys' must be u32, i32 or f32, not u8",
            ));
        }
        if let Payload::Values(v) = &payload
            && v.len() != keys.len()
        {
            return Err(Error::bad(format!(
                "sort: input 'values' has {} elements but 'keys' has {}; they must match",
                v.len(),
                keys.len()
            )));
        }
        if keys.len() > u32::MAX as usize {
            return Err(Error::bad(format!(
                "sort: {} keys are more than indices of u32 can number",
                keys.len()
            )));
        }
        Ok(Sort { keys, payload })
    }

    /// The keys as order bits.
    pub fn order_bits(&self) -> Vec<u32> {
        let mut bits = self.keys.words().expect("rejected by Sort::new").to_vec();
        to_order(self.keys.dtype(), &mut bits);
        bits
    }

    /// The payload as the sort starts it: values, the positions 0..n, or
    /// nothing.
    pub fn start_payload(&self) -> Option<Vec<u32>> {
        match &self.payload {
            Payload::None => None,
            Payload::Values(v) => Some(v.clone()),
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

impl KernelTask for Sort {
    fn from_job(mut inputs: Inputs, params: &Params) -> Result<Self> {
        let keys = inputs.take("keys", &[DType::U32, DType::I32, DType::F32], 1)?;
        let values = inputs.take_optional("values", &[DType::U32], 1)?;
        let indices = params.bool_or("indices", false)?;
        let payload = match (values, indices) {
            (Some(_), true) => {
                return Err(Error::bad(
                    "sort: give input 'values' or parameter indices=true, not both",
                ));
            }
            (Some(v), false) => match v.into_data() {
                TensorData::U32(v) => Payload::Values(v),
                _ => unreachable!("dtype checked above"),
            },
            (None, true) => Payload::Indices,
            (None, false) => Payload::None,
        };
        Sort::new(keys.into_data(), payload)
    }

    fn run_cpu(&self) -> Outputs {
        let mut bits = self.order_bits();
        let mut payload = self.start_payload();
        radix_sort(&mut bits, payload.as_mut());
        self.outputs(bits, payload)
    }

    /// Sorts the task's own keys (and values) where they lie, leaving it
    /// empty.
    fn run_cpu_in_place(&mut self) -> Outputs {
        let dtype = self.keys.dtype();
        let empty = Sort {
            keys: TensorData::empty(dtype),
            payload: Payload::None,
        };
        let Sort { keys, payload } = std::mem::replace(self, empty);
        let mut bits = keys.into_words().expect("rejected by Sort::new");
        to_order(dtype, &mut bits);
        let (kind, mut moved) = match payload {
            Payload::None => (Payload::None, None),
            Payload::Values(v) => (Payload::Values(Vec::new()), Some(v)),
            Payload::Indices => (Payload::Indices, Some((0..bits.len() as u32).collect())),
        };
        radix_sort(&mut bits, moved.as_mut());
        let named = Sort {
            keys: TensorData::empty(dtype),
            payload: kind,
        };
        named.outputs(bits, moved)
    }

    /// Puts the sorted keys back as the next run's input.
    fn restore(&mut self, outputs: Outputs) {
        let mut outputs = outputs;
        if let Some(keys) = outputs.remove("keys") {
            self.keys = keys.into_data();
        }
        if let Some(values) = outputs.remove("values")
            && let TensorData::U32(v) = values.into_data()
        {
            self.payload = Payload::Values(v);
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
            Payload::Values(v) => Some(order.iter().map(|&i| v[i as usize]).collect()),
            Payload::Indices => Some(order),
        };
        self.outputs(sorted, payload)
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

/// Sorts order bits ascending, stably, moving `payload` with them.
pub fn radix_sort(keys: &mut Vec<u32>, mut payload: Option<&mut Vec<u32>>) {
    let n = keys.len();
    if n < 2 {
        return;
    }
    // One read counts every digit of every key: passes whose digit is the
    // same for all keys are skipped.
    let passes = (32 / DIGIT_BITS) as usize;
    let totals = keys
        .par_chunks(1 << 16)
        .fold(
            || vec![[0usize; BUCKETS]; passes],
            |mut counts, chunk| {
                for &k in chunk {
                    for (p, c) in counts.iter_mut().enumerate() {
                        c[digit(k, p)] += 1;
                    }
                }
                counts
            },
        )
        .reduce_with(|mut a, b| {
            for (a, b) in a.iter_mut().zip(&b) {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            }
            a
        })
        .expect("at least one chunk");
    let parts = (n / MIN_PART).clamp(1, 4 * rayon::current_num_threads());
    let part_len = n.div_ceil(parts);
    let mut scratch_keys = vec![0u32; n];
    let mut scratch_payload = payload.as_ref().map(|p| vec![0u32; p.len()]);
    for (pass, total) in totals.iter().enumerate() {
        if total.iter().any(|&c| c == n) {
            continue;
        }
        // Each part's count per bucket, then each part's first place in
        // each bucket: buckets in order, parts in order within a bucket.
        let counts: Vec<[usize; BUCKETS]> = keys
            .par_chunks(part_len)
            .map(|part| {
                let mut c = [0usize; BUCKETS];
                for &k in part {
                    c[digit(k, pass)] += 1;
                }
                c
            })
            .collect();
        let mut starts = vec![[0usize; BUCKETS]; counts.len()];
        let mut next = 0;
        for b in 0..BUCKETS {
            for (s, c) in starts.iter_mut().zip(&counts) {
                s[b] = next;
                next += c[b];
            }
        }
        let dst = SharedOut::new(&mut scratch_keys);
        let dst_payload = scratch_payload.as_mut().map(|p| SharedOut::new(p));
        let src_payload = payload.as_deref();
        keys.par_chunks(part_len)
            .zip(starts)
            .enumerate()
            .for_each(|(i, (part, mut at))| {
                let first = i * part_len;
                for (j, &k) in part.iter().enumerate() {
                    let d = digit(k, pass);
                    // SAFETY: the places handed to the parts are disjoint
                    // and within 0..n: each part has `counts[part][b]`
                    // places from `starts[part][b]` in bucket b, and the
                    // starts tile 0..n.
                    unsafe {
                        dst.write(at[d], k);
                        if let (Some(dp), Some(sp)) = (&dst_payload, src_payload) {
                            dp.write(at[d], sp[first + j]);
                        }
                    }
                    at[d] += 1;
                }
            });
        std::mem::swap(keys, &mut scratch_keys);
        if let (Some(p), Some(s)) = (payload.as_deref_mut(), scratch_payload.as_mut()) {
            std::mem::swap(p, s);
        }
    }
}

/// Digit `pass` (least significant first) of a key.
#[inline(always)]
fn digit(key: u32, pass: usize) -> usize {
    ((key >> (pass as u32 * DIGIT_BITS)) as usize) & (BUCKETS - 1)
}

/// A slice that several threads write at disjoint places.
struct SharedOut {
    ptr: *mut u32,
    len: usize,
}

// SAFETY: writers use disjoint indices (see `radix_sort`).
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}

impl SharedOut {
    fn new(out: &mut [u32]) -> Self {
        SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
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
