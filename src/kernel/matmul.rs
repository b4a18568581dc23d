//! `matmul`: `out = a · b` for `f32` matrices `a` (m×k) and `b` (k×n), any sizes.
//!
//! The CPU path hands the product to `faer`, which runs a tuned gemm on the
//! current rayon pool; the reference is a triple loop accumulating in f64.
//!
//! The GPU path is `shaders/matmul.wgsl`, which comes in several
//! [`VARIANTS`] (entry points): tile size, depth of the k slices, scalar or
//! `vec4` global loads, one or two tile buffers. This module describes them;
//! `backend::gpu::tune` picks one per shape on the card in use.

use super::profile::{self, Baseline, NumpyCode, Profile, Unit, random_f32};
use rayon::prelude::*;

use super::{Arg, Inputs, KernelTask, Outputs, Params, PlainLoop, Plan, ShaderInfo, Signature, Task, Streaming};
use crate::error::{Error, Result};
use crate::tensor::{DType, Handle, MAX_ELEMENTS, Spec, Tensor, TensorData};

/// Inputs `a`, `b`; no parameters; output `out`.
pub const SIGNATURE: Signature = Signature {
    summary: "the matrix product a·b (f32, row-major)",
    inputs: &[
        Arg {
            name: "a",
            doc: "f32 [m, k]", optional: false,
        },
        Arg {
            name: "b",
            doc: "f32 [k, n]", optional: false,
        },
    ],
    params: &[],
    outputs: &[Arg {
        name: "out",
        doc: "f32 [m, n]", optional: false,
    }],
    picture_output: None,
    example: "anycore run matmul -i a=A.npy -i b=B.npy -o out=C.npy",
};

/// What the bench, the probe and the cost model know of `matmul`: a size
/// is the n of n×n by n×n.
pub const PROFILE: Profile = Profile {
    sweep: profile::Sweep {
        size_means: "the n of n×n matrices",
        sizes_as_powers: false,
        max_size: 16_384,
        quick_sizes: &[128, 512, 1024],
        sizes: &profile::powers::<6>(6, 1),
        probe_sizes: [32, 256],
    },
    unit: Unit {
        name: "GFLOP/s",
        counts: "2·n³ floating-point operations for n×n by n×n (f32)",
        scale: 1e9,
    },
    amount: |n| 2.0 * (n as f64).powi(3),
    bandwidth: None,
    task: |n, seed| {
        let elements = n
            .checked_mul(n)
            .ok_or_else(|| Error::bad(format!("matmul {n}: too large")))?;
        let (a, b) = (random_f32(elements, seed)?, random_f32(elements, seed + 1)?);
        Ok(Task::Matmul(Matmul::new(n, n, n, a, b)?))
    },
    baselines: &[
        Baseline::Numpy(NumpyCode {
            setup: "a = rng.uniform(-1, 1, (n, n)).astype(np.float32); \
                    b = rng.uniform(-1, 1, (n, n)).astype(np.float32)",
            run: "a @ b",
        }),
        // Past n = 2048 one run of the plain loop takes many seconds.
        Baseline::RayonLoop { max_size: 2048 },
    ],
    variants: &[],
};

/// Invocations per workgroup of every entry point of `shaders/matmul.wgsl`.
pub const WORKGROUP: [u32; 3] = [16, 16, 1];

/// One way `shaders/matmul.wgsl` computes the product: an entry point, with
/// what the host needs to dispatch it and to know where it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Variant {
    /// Name, also the shader's entry point (`ANYCORE_MATMUL_VARIANT=<name>`
    /// forces it).
    pub name: &'static str,
    /// Rows and columns of `out` one workgroup computes.
    pub tile: u32,
    /// Depth of the slices of `a` and `b` staged per step of `k`.
    pub depth: u32,
    /// Reads `a` and `b` and writes `out` as `vec4`: only for `k` and `n`
    /// multiples of 4 (and `k > 0`), see [`Variant::applies`].
    pub vec4: bool,
    /// Workgroup memory it declares, in bytes (checked against the device).
    pub workgroup_bytes: u32,
    /// One line on how it works, for `anycore devices`.
    pub about: &'static str,
}

/// Bytes of the shader's small workgroup tiles (`wa`, `wb`: 272 + 256 vec4).
const SMALL_TILES: u32 = (272 + 256) * 16;
/// Bytes of its large ones (`wa2`, `wb2`: 528 + 512 vec4).
const LARGE_TILES: u32 = (528 + 512) * 16;

/// The entry points of `shaders/matmul.wgsl`, the first two for any shape.
pub const VARIANTS: [Variant; 6] = [
    Variant {
        name: "mm128",
        tile: 128,
        depth: 8,
        vec4: false,
        workgroup_bytes: SMALL_TILES,
        about: "128x128 tile, 8x8 per invocation, k slices of 8, scalar loads (any shape)",
    },
    Variant {
        name: "mm64",
        tile: 64,
        depth: 16,
        vec4: false,
        workgroup_bytes: SMALL_TILES,
        about: "64x64 tile, 4x4 per invocation, k slices of 16, scalar loads (any shape)",
    },
    Variant {
        name: "mm128v4",
        tile: 128,
        depth: 8,
        vec4: true,
        workgroup_bytes: SMALL_TILES,
        about: "128x128 tile, 8x8 per invocation, k slices of 8, vec4 loads and stores",
    },
    Variant {
        name: "mm128v4k16",
        tile: 128,
        depth: 16,
        vec4: true,
        workgroup_bytes: LARGE_TILES,
        about: "128x128 tile, 8x8 per invocation, k slices of 16, vec4 loads and stores",
    },
    Variant {
        name: "mm128v4db",
        tile: 128,
        depth: 8,
        vec4: true,
        workgroup_bytes: LARGE_TILES,
        about: "128x128 tile, 8x8 per invocation, k slices of 8 double-buffered, vec4",
    },
    Variant {
        name: "mm64v4",
        tile: 64,
        depth: 16,
        vec4: true,
        workgroup_bytes: SMALL_TILES,
        about: "64x64 tile, 4x4 per invocation, k slices of 16, vec4 loads and stores",
    },
];

/// The largest tile of any variant (the host cuts column slabs to it).
pub const MAX_TILE: u32 = 128;

impl Variant {
    /// Whether it computes an `m×k` by `k×n` product: the `vec4` ones need
    /// `k` and `n` multiples of 4 and `k > 0` (a binding of `a` must hold a
    /// whole `vec4`).
    pub fn applies(&self, k: usize, n: usize) -> bool {
        !self.vec4 || vec4_shape(k, n)
    }

    /// The variant of the same tile that takes any shape.
    pub fn any_shape(&self) -> &'static Variant {
        let name = if self.tile == 64 { "mm64" } else { "mm128" };
        variant(name).expect("the scalar variants exist")
    }
}

/// Whether a product with these `k` and `n` can be read and written as
/// `vec4`: rows of `a` and `b` then start on whole `vec4`s.
pub fn vec4_shape(k: usize, n: usize) -> bool {
    k > 0 && k.is_multiple_of(4) && n.is_multiple_of(4)
}

/// The variant called `name`.
pub fn variant(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name == name)
}

/// `(entry point, workgroup size)` of every variant, for [`SHADER`].
const ENTRY_POINTS: [(&str, [u32; 3]); VARIANTS.len()] = {
    let mut eps = [("", WORKGROUP); VARIANTS.len()];
    let mut i = 0;
    while i < VARIANTS.len() {
        eps[i].0 = VARIANTS[i].name;
        i += 1;
    }
    eps
};

/// Needs whole matrices.
pub const STREAMING: Streaming = Streaming::Whole;

/// `shaders/matmul.wgsl`: one entry point per [`Variant`], all 16×16
/// invocations.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "matmul.wgsl",
    source: include_str!("../../shaders/matmul.wgsl"),
    entry_points: &ENTRY_POINTS,
    trusted: true,
};

/// A validated `matmul`.
#[derive(Clone, Debug)]
pub struct Matmul {
    /// Rows of `a` and `out`.
    pub m: usize,
    /// Columns of `a`, rows of `b`.
    pub k: usize,
    /// Columns of `b` and `out`.
    pub n: usize,
    /// `a`, row-major m×k (f32).
    pub a: Handle,
    /// `b`, row-major k×n (f32).
    pub b: Handle,
}

/// Products with fewer multiply-adds than this (128³) run on the calling
/// thread alone, which then is the only one whose SIMD state needs
/// clearing: a broadcast to every pool thread costs about 15 µs, as much as
/// a whole 64³ product. (faer itself goes parallel from 4096·4 on; below
/// 128³ that gains little on a few cores: 64³ took 13 µs parallel, 18–27
/// sequential, 27 parallel with the broadcast, on 2 cores.)
const PAR_MIN_WORK: u64 = 1 << 21;

/// Multiply-adds at least in one panel of rows of a parallel product
/// (~10 ms on two cores), between which a cancelled job stops.
const PANEL_WORK: u64 = 1 << 30;

/// Rows at least in one panel.
const PANEL_ROWS: u64 = 256;

/// Zeroes the upper halves of the AVX registers on the calling thread.
///
/// faer's gemm returns with them dirty on the threads that ran it; every
/// later non-VEX (SSE) instruction on those threads then pays a transition
/// penalty, which made the CPU `mandelbrot` 3× slower after one `matmul` in
/// the same pool (14 → 45 ms at 1024², on an AMD EPYC; a `vzeroupper` on
/// each pool thread brought it back to 14 ms). The same fix as oneDNN's
/// (uxlfoundation/oneDNN#247): clean up after the library, where it ends.
fn clear_upper_simd_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        #[target_feature(enable = "avx")]
        fn zero_upper() {
            // Safe inside an AVX function; it clears only bits that hold no
            // live value across a call.
            std::arch::x86_64::_mm256_zeroupper()
        }
        // SAFETY: the CPU has AVX.
        unsafe { zero_upper() }
    }
}

impl Matmul {
    /// `a` (m×k, row-major) times `b` (k×n, row-major).
    pub fn new(m: usize, k: usize, n: usize, a: Vec<f32>, b: Vec<f32>) -> Result<Self> {
        Matmul::of(m, k, n, a.into(), b.into())
    }

    /// As [`Matmul::new`], wherever `a` and `b` are.
    fn of(m: usize, k: usize, n: usize, a: Handle, b: Handle) -> Result<Self> {
        let (a_len, b_len) = check_dims(m, k, n)?;
        if a.len() != a_len || b.len() != b_len {
            return Err(Error::bad(format!(
                "matmul: a needs {m}×{k} = {a_len} elements (has {}), b needs {k}×{n} = {b_len} (has {})",
                a.len(),
                b.len()
            )));
        }
        Ok(Matmul { m, k, n, a, b })
    }

    /// Wraps a row-major m×n result as this kernel's outputs.
    pub fn outputs(&self, out: Vec<f32>) -> Outputs {
        let t = Tensor::new(vec![self.m, self.n], TensorData::F32(out));
        Outputs::from([("out".to_owned(), t)])
    }

    /// Multiply-adds in the product (the GFLOP count is twice this).
    pub fn multiply_adds(&self) -> u64 {
        (self.m * self.k * self.n) as u64
    }

}

/// The elements of a (m×k) and of b (k×n), each and the product's at most
/// [`MAX_ELEMENTS`]: checked, so that (2³², 2³²) inputs cannot wrap to an
/// empty product, and the output (allocated from m and n alone, which empty
/// inputs, (m, 0) by (0, n), do not bound) stays bounded.
fn check_dims(m: usize, k: usize, n: usize) -> Result<(usize, usize)> {
    let count = |r: usize, c: usize| r.checked_mul(c).filter(|&e| e <= MAX_ELEMENTS);
    let (Some(a_len), Some(b_len)) = (count(m, k), count(k, n)) else {
        return Err(Error::bad(format!(
            "matmul: a ({m}×{k}) or b ({k}×{n}) has more than {MAX_ELEMENTS} elements"
        )));
    };
    if count(m, n).is_none() {
        return Err(Error::bad(format!(
            "matmul: the product would be {m}×{n}, more than {MAX_ELEMENTS} elements"
        )));
    }
    Ok((a_len, b_len))
}

impl KernelTask for Matmul {
    fn plan(mut inputs: Inputs<Spec>, _params: &Params) -> Result<Plan> {
        let a = inputs.take("a", &[DType::F32], 2)?;
        let b = inputs.take("b", &[DType::F32], 2)?;
        let (m, k, k2, n) = (a.shape[0], a.shape[1], b.shape[0], b.shape[1]);
        if k != k2 {
            return Err(Error::bad(format!(
                "matmul: 'a' is {} and 'b' is {}; a's columns ({k}) must equal b's rows ({k2})",
                a.describe(),
                b.describe()
            )));
        }
        check_dims(m, k, n)?;
        Ok(Plan::new([(
            "out",
            Spec {
                dtype: DType::F32,
                shape: vec![m, n],
            },
        )],
        (m * k * n) as f64))
    }

    fn from_job(mut inputs: Inputs, _params: &Params) -> Result<Self> {
        let a = inputs.take("a", &[DType::F32], 2)?;
        let b = inputs.take("b", &[DType::F32], 2)?;
        let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
        Matmul::of(m, k, n, a, b)
    }

    fn run_cpu(&self) -> Outputs {
        use faer::{Accum, MatMut, MatRef, Par};
        let (m, k, n) = (self.m, self.k, self.n);
        let mut out = vec![0.0f32; m * n];
        if m * n > 0 {
            let a = MatRef::from_row_major_slice(self.a.f32s(), m, k);
            let b = MatRef::from_row_major_slice(self.b.f32s(), k, n);
            let c = MatMut::from_row_major_slice_mut(&mut out, m, n);
            let work = (m as u64) * (k as u64) * (n as u64);
            if work < PAR_MIN_WORK {
                faer::linalg::matmul::matmul(c, Accum::Replace, a, b, 1.0f32, Par::Seq);
                clear_upper_simd_state();
            } else {
                // In panels of rows, so that a cancelled job stops between
                // them; a panel is large enough that faer's packing of `b`
                // for each costs little beside its multiply-adds.
                let rows = (PANEL_WORK / (k as u64 * n as u64).max(1)).max(PANEL_ROWS) as usize;
                let (mut a, mut c) = (a, c);
                while c.nrows() > 0 && !super::stop::requested() {
                    let take = rows.min(c.nrows());
                    let (a_top, a_rest) = a.split_at_row(take);
                    let (c_top, c_rest) = c.split_at_row_mut(take);
                    // Par::rayon(0) uses every thread of the pool we were installed in.
                    faer::linalg::matmul::matmul(c_top, Accum::Replace, a_top, b, 1.0f32, Par::rayon(0));
                    (a, c) = (a_rest, c_rest);
                }
                rayon::broadcast(|_| clear_upper_simd_state());
            }
        }
        self.outputs(out)
    }

    fn reference(&self) -> Outputs {
        let (m, k, n) = (self.m, self.k, self.n);
        let (a, b) = (self.a.f32s(), self.b.f32s());
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for p in 0..k {
                    acc += f64::from(a[i * k + p]) * f64::from(b[p * n + j]);
                }
                out[i * n + j] = acc as f32;
            }
        }
        self.outputs(out)
    }

    fn operands(&self) -> Vec<&Handle> {
        vec![&self.a, &self.b]
    }

    fn work_units(&self) -> f64 {
        self.multiply_adds() as f64
    }

    /// Rows of `out` in parallel, each an i-k-j loop (no blocking, no
    /// packing), into its own output.
    fn plain_loop(&self) -> PlainLoop<'_> {
        let (k, n) = (self.k, self.n);
        let (a, b) = (self.a.f32s(), self.b.f32s());
        let mut c = vec![0.0f32; self.m * n];
        Box::new(move || {
            c.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| {
                row.fill(0.0);
                for (p, &aip) in a[i * k..(i + 1) * k].iter().enumerate() {
                    for (c, &b) in row.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                        *c += aip * b;
                    }
                }
            })
        })
    }
}
