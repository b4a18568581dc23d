//! `matmul`: `out = a · b` for `f32` matrices `a` (m×k) and `b` (k×n), any sizes.
//!
//! The CPU path hands the product to `faer`, which runs a tuned gemm on the
//! current rayon pool; the reference is a triple loop accumulating in f64.

use super::{Inputs, Outputs, Params, ShaderInfo, Signature};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor, TensorData};

/// Inputs `a`, `b`; no parameters; output `out`.
pub const SIGNATURE: Signature = Signature {
    inputs: &["a", "b"],
    params: &[],
    outputs: &["out"],
};

/// Output rows and columns one workgroup computes in `shaders/matmul.wgsl`.
pub const TILE: u32 = 128;

/// `shaders/matmul.wgsl`: 16×16 invocations, each computing 4×4 outputs.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "matmul.wgsl",
    source: include_str!("../../shaders/matmul.wgsl"),
    entry_points: &[("matmul", [16, 16, 1])],
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
    /// `a`, row-major m×k.
    pub a: Vec<f32>,
    /// `b`, row-major k×n.
    pub b: Vec<f32>,
}

impl Matmul {
    /// `a` (m×k, row-major) times `b` (k×n, row-major).
    pub fn new(m: usize, k: usize, n: usize, a: Vec<f32>, b: Vec<f32>) -> Result<Self> {
        if a.len() != m * k || b.len() != k * n {
            return Err(Error::bad(format!(
                "matmul: a needs {m}×{k} = {} elements (has {}), b needs {k}×{n} = {} (has {})",
                m * k,
                a.len(),
                k * n,
                b.len()
            )));
        }
        Ok(Matmul { m, k, n, a, b })
    }

    pub(crate) fn from_job(mut inputs: Inputs, _params: &Params) -> Result<Self> {
        let a = inputs.take("a", &[DType::F32], 2)?;
        let b = inputs.take("b", &[DType::F32], 2)?;
        let (m, k, k2, n) = (a.shape()[0], a.shape()[1], b.shape()[0], b.shape()[1]);
        if k != k2 {
            return Err(Error::bad(format!(
                "matmul: 'a' is {} and 'b' is {}; a's columns ({k}) must equal b's rows ({k2})",
                a.describe(),
                b.describe()
            )));
        }
        let (TensorData::F32(a), TensorData::F32(b)) = (a.into_data(), b.into_data()) else {
            unreachable!("dtypes checked above")
        };
        Matmul::new(m, k, n, a, b)
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

    pub(crate) fn run_cpu(&self) -> Outputs {
        use faer::{Accum, MatMut, MatRef, Par};
        let (m, k, n) = (self.m, self.k, self.n);
        let mut out = vec![0.0f32; m * n];
        if m * n > 0 {
            let a = MatRef::from_row_major_slice(&self.a, m, k);
            let b = MatRef::from_row_major_slice(&self.b, k, n);
            let c = MatMut::from_row_major_slice_mut(&mut out, m, n);
            // Par::rayon(0) uses every thread of the pool we were installed in.
            faer::linalg::matmul::matmul(c, Accum::Replace, a, b, 1.0f32, Par::rayon(0));
        }
        self.outputs(out)
    }

    pub(crate) fn reference(&self) -> Outputs {
        let (m, k, n) = (self.m, self.k, self.n);
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for p in 0..k {
                    acc += f64::from(self.a[i * k + p]) * f64::from(self.b[p * n + j]);
                }
                out[i * n + j] = acc as f32;
            }
        }
        self.outputs(out)
    }
}
