//! Hostile input: random `.npy` headers (shapes that overflow, promise
//! more data than they hold, lie about their length) and random shapes and
//! parameters for every kernel's validation. Whatever comes in, the answer
//! is a value or an error — never a panic — and nothing allocates more
//! than a bound proportional to the input (a 500-byte request once made
//! the server allocate 2⁶² bytes and abort).
//!
//! A counting allocator records the largest single allocation made by the
//! thread under test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

mod common;

use anycore::kernel::{Job, Kernel, Task};
use anycore::tensor::{Tensor, TensorData, npy};
use common::rng;
use rand::Rng;
use rand::rngs::SmallRng;

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    // `try_with`: the slot may be gone while a thread shuts down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`, and fails the test if it panicked or made a single allocation
/// larger than `bound` bytes. Returns what `f` returned.
fn bounded<T>(what: &str, bound: usize, f: impl FnOnce() -> T) -> T {
    LARGEST.with(|l| l.set(0));
    let out = catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| panic!("{what}: panicked instead of returning an error"));
    let largest = LARGEST.with(Cell::get);
    assert!(
        largest <= bound,
        "{what}: allocated {largest} bytes at once (bound {bound})"
    );
    out
}

/// A dimension: mostly small, often at or past an overflow edge.
fn dim(rng: &mut SmallRng) -> u64 {
    const EDGES: &[u64] = &[
        0,
        1,
        2,
        3,
        16,
        255,
        1 << 16,
        1 << 31,
        (1 << 31) + 1,
        1 << 32,
        (1 << 32) + 1,
        1 << 40,
        1 << 60,
        1 << 62,
        1 << 63,
        u64::MAX,
    ];
    if rng.random_bool(0.5) {
        EDGES[rng.random_range(0..EDGES.len())]
    } else {
        rng.random_range(0..64)
    }
}

/// A `.npy` file: version 1, 2 or 3 header with a random dtype, order and
/// shape, and a few random data bytes; sometimes a header length that lies.
fn npy_bytes(rng: &mut SmallRng) -> Vec<u8> {
    const DESCRS: &[&str] = &["<f4", "<u4", "<i4", "|u1", ">f4", ">i4", "<f8", "<i8", "zz"];
    let descr = DESCRS[rng.random_range(0..DESCRS.len())];
    let fortran = if rng.random_bool(0.1) {
        "True"
    } else {
        "False"
    };
    let dims: Vec<String> = (0..rng.random_range(0..4))
        .map(|_| dim(rng).to_string())
        .collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    let padded = format!(
        "{header:<width$}\n",
        width = (header.len() + 1).next_multiple_of(64) - 1
    );
    let version: u8 = rng.random_range(1..=3);
    let mut bytes = vec![0x93, b'N', b'U', b'M', b'P', b'Y', version, 0];
    let mut len = padded.len() as u32;
    if rng.random_bool(0.1) {
        len = rng.random(); // a header length that lies
    }
    if version == 1 {
        bytes.extend((len as u16).to_le_bytes());
    } else {
        bytes.extend(len.to_le_bytes());
    }
    bytes.extend(padded.as_bytes());
    let data = rng.random_range(0..64);
    bytes.extend((0..data).map(|_| rng.random::<u8>()));
    if rng.random_bool(0.05) {
        let cut = rng.random_range(0..bytes.len());
        bytes.truncate(cut);
    }
    bytes
}

#[test]
fn npy_reader_survives_random_headers() {
    let mut rng = rng();
    let mut accepted = 0;
    for i in 0..3_000 {
        let bytes = npy_bytes(&mut rng);
        // The file's own bytes, twice over, plus parsing overhead.
        let bound = 2 * bytes.len() + 64 * 1024;
        let what = format!(
            "case {i}: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(140)])
        );
        if let Ok(t) = bounded(&what, bound, || npy::from_bytes(&bytes)) {
            accepted += 1;
            assert!(
                t.data().as_bytes().len() <= bytes.len(),
                "{what}: {t:?} from {} bytes",
                bytes.len()
            );
        }
    }
    // Some valid files must get through, or the generator tests nothing.
    assert!(
        accepted > 10,
        "only {accepted} of 3000 random files were accepted"
    );
}

#[test]
fn npy_reader_refuses_the_shapes_that_once_crashed_the_server() {
    for shape in [
        "(1152921504606846976, 16)",
        "(9223372036854775808, 2)",
        "(4294967296, 4294967296)",
    ] {
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        let padded = format!(
            "{header:<width$}\n",
            width = (header.len() + 11).next_multiple_of(64) - 11
        );
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((padded.len() as u16).to_le_bytes());
        bytes.extend(padded.as_bytes());
        let err = bounded(shape, 64 * 1024, || npy::from_bytes(&bytes)).unwrap_err();
        assert!(err.contains("shape"), "{shape}: {err}");
    }
}

/// A tensor of `shape` (random dims whose product is small) with that many
/// random elements, of a random dtype.
fn tensor(rng: &mut SmallRng) -> Tensor {
    let rank = rng.random_range(0..4);
    let mut shape: Vec<usize> = (0..rank).map(|_| rng.random_range(0..5)).collect();
    // Often a huge dimension beside a zero: an empty tensor that claims
    // an enormous extent.
    if rank >= 2 && rng.random_bool(0.4) {
        let big = dim(rng).min(usize::MAX as u64) as usize;
        shape[0] = big;
        shape[1] = 0;
    }
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .unwrap_or(0);
    let shape = if shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .is_none()
    {
        vec![0]
    } else {
        shape
    };
    let data = match rng.random_range(0..4) {
        0 => TensorData::F32((0..n).map(|_| rng.random()).collect()),
        1 => TensorData::U32((0..n).map(|_| rng.random()).collect()),
        2 => TensorData::I32((0..n).map(|_| rng.random()).collect()),
        _ => TensorData::U8((0..n).map(|_| rng.random()).collect()),
    };
    Tensor::new(shape, data)
}

/// A parameter value: numbers at edges, and text that is not a number.
fn param(rng: &mut SmallRng) -> String {
    const TEXT: &[&str] = &[
        "0",
        "1",
        "-1",
        "256",
        "65535",
        "65536",
        "4294967295",
        "4294967296",
        "18446744073709551616",
        "1e30",
        "-1e30",
        "nan",
        "inf",
        "-0",
        "0.5",
        "",
        "x",
        "sum",
        "min",
        "max",
    ];
    if rng.random_bool(0.7) {
        TEXT[rng.random_range(0..TEXT.len())].to_owned()
    } else {
        rng.random::<u64>().to_string()
    }
}

#[test]
fn kernel_validation_survives_random_shapes_and_params() {
    let mut rng = rng();
    for i in 0..4_000 {
        let kernel = Kernel::ALL[rng.random_range(0..Kernel::ALL.len())];
        let sig = kernel.signature();
        let mut job = Job::new(kernel);
        for name in sig.inputs.iter().map(|a| a.name) {
            if rng.random_bool(0.95) {
                job = job.input(name, tensor(&mut rng));
            }
        }
        for name in sig.params.iter().map(|p| p.name) {
            if rng.random_bool(0.6) {
                job = job.param(name, param(&mut rng));
            }
        }
        let what = format!("case {i}: {kernel} {job:?}");
        let what = &what[..what.len().min(600)];
        // Validation copies nothing large: the inputs here are at most a
        // few hundred elements.
        if let Ok(task) = bounded(what, 64 * 1024, || Task::new(job)) {
            // Whatever validation accepts has an output small enough to
            // allocate (mandelbrot's image is capped at 2³¹ pixels).
            assert_eq!(task.kernel(), kernel);
        }
    }
}

/// Empty inputs bound nothing: (m, 0) × (0, n) would allocate an m×n
/// output, and (2³², 2³²) shapes once wrapped to an empty product.
#[test]
fn matmul_refuses_products_too_large_to_allocate() {
    let empty = |rows: usize, cols: usize| Tensor::new(vec![rows, cols], TensorData::F32(vec![]));
    for (m, n) in [
        (1usize << 32, 1usize << 32),
        (1 << 20, 1 << 20),
        (1 << 40, 1),
    ] {
        let job = Job::new(Kernel::Matmul)
            .input("a", empty(m, 0))
            .input("b", empty(0, n));
        let err = bounded("matmul", 64 * 1024, || Task::new(job))
            .expect_err("an output this large must be refused");
        assert!(err.to_string().contains("more than"), "{m}×{n}: {err}");
    }
    // A small empty product is still fine.
    let job = Job::new(Kernel::Matmul)
        .input("a", empty(3, 0))
        .input("b", empty(0, 5));
    assert!(Task::new(job).is_ok());
}
