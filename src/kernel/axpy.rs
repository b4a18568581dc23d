//! `axpy`: `out = a·x + y` over two `f32` vectors of the same length.

use rayon::prelude::*;

use super::profile::{self, Bandwidth, Profile, Unit, random_f32};
use super::{Arg, Inputs, KernelTask, Outputs, Param, Params, PlainLoop, Plan, ShaderInfo, Signature, Task, Streaming};
use crate::error::{Error, Result};
use crate::tensor::{DType, Handle, Spec, Tensor, TensorData};

/// Inputs `x`, `y`; parameter `a`; output `out`.
pub const SIGNATURE: Signature = Signature {
    summary: "a·x + y over two vectors",
    inputs: &[
        Arg {
            name: "x",
            doc: "f32 [n]", optional: false,
        },
        Arg {
            name: "y",
            doc: "f32 [n]", optional: false,
        },
    ],
    params: &[Param {
        name: "a",
        default: Some("1"),
        doc: "the scale of x (f32)",
    }],
    outputs: &[Arg {
        name: "out",
        doc: "f32 [n]: a·x + y", optional: false,
    }],
    picture_output: None,
    example: "anycore run axpy -i x=x.npy -i y=y.npy -p a=2 -o out=out.npy",
};

/// The scale the bench's tasks use (any value does; this one keeps repeated
/// in-place runs of the baseline loop from growing without bound).
pub const BENCH_A: f32 = 0.5;

/// What the bench, the probe and the cost model know of `axpy`.
pub const PROFILE: Profile = Profile {
    sweep: profile::VECTOR_SWEEP,
    unit: Unit {
        name: "GB/s",
        counts: "12 bytes per element: x and y read, y written",
        scale: 1e9,
    },
    amount: |n| 12.0 * n as f64,
    bandwidth: Some(Bandwidth::Copy),
    task: |n, seed| {
        let (x, y) = (random_f32(n, seed)?, random_f32(n, seed + 1)?);
        Ok(Task::Axpy(Axpy::new(BENCH_A, x, y)?))
    },
    baselines: &[profile::RAYON_LOOP],
    variants: &[],
};

/// Invocations per workgroup in `shaders/axpy.wgsl`.
pub const WORKGROUP: u32 = 256;

/// Each output element is computed from the same input elements alone.
pub const STREAMING: Streaming = Streaming::Elementwise;

/// `shaders/axpy.wgsl`.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "axpy.wgsl",
    source: include_str!("../../shaders/axpy.wgsl"),
    entry_points: &[("axpy", [WORKGROUP, 1, 1])],
    trusted: true,
};

/// Elements per rayon task: large enough that scheduling costs vanish.
const CPU_CHUNK: usize = 1 << 16;

/// A validated `axpy`.
#[derive(Clone, Debug)]
pub struct Axpy {
    /// The scale.
    pub a: f32,
    /// Scaled vector (f32).
    pub x: Handle,
    /// Added vector (f32).
    pub y: Handle,
}

impl Axpy {
    /// `a·x + y`; the vectors must have the same length.
    pub fn new(a: f32, x: Vec<f32>, y: Vec<f32>) -> Result<Self> {
        Axpy::of(a, x.into(), y.into())
    }

    /// `a·x + y` of two f32 vectors of the same length, wherever they are.
    fn of(a: f32, x: Handle, y: Handle) -> Result<Self> {
        if x.len() != y.len() {
            return Err(Error::bad(format!(
                "axpy: x has {} elements but y has {}; they must match",
                x.len(),
                y.len()
            )));
        }
        Ok(Axpy { a, x, y })
    }


    /// Number of elements.
    pub fn len(&self) -> usize {
        self.x.len()
    }

    /// Whether the vectors are empty.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// Wraps a result vector as this kernel's outputs.
    pub fn outputs(out: Vec<f32>) -> Outputs {
        Outputs::from([("out".to_owned(), Tensor::from_f32(out))])
    }
}

impl KernelTask for Axpy {
    fn plan(mut inputs: Inputs<Spec>, params: &Params) -> Result<Plan> {
        let x = inputs.take("x", &[DType::F32], 1)?;
        let y = inputs.take("y", &[DType::F32], 1)?;
        params.f32_or("a", 1.0)?;
        if x.shape != y.shape {
            return Err(Error::bad(format!(
                "axpy: input 'x' is {} but 'y' is {}; they must have the same shape",
                x.describe(),
                y.describe()
            )));
        }
        let n = x.shape[0];
        Ok(Plan::new([("out", x)], n as f64))
    }

    fn from_job(mut inputs: Inputs, params: &Params) -> Result<Self> {
        let x = inputs.take("x", &[DType::F32], 1)?;
        let y = inputs.take("y", &[DType::F32], 1)?;
        let a = params.f32_or("a", 1.0)?;
        Axpy::of(a, x, y)
    }

    fn run_cpu(&self) -> Outputs {
        let a = self.a;
        // An indexed collect fills the vector in parallel, without zeroing it first.
        let out = self
            .x
            .f32s()
            .par_iter()
            .zip(self.y.f32s())
            .with_min_len(CPU_CHUNK)
            .map(|(&x, &y)| a * x + y)
            .collect();
        Axpy::outputs(out)
    }

    /// `y ← a·x + y` in place, then y taken out as the result: no output
    /// memory to fault in, so the loop moves only the 12 bytes per element
    /// it must.
    fn run_cpu_in_place(&mut self) -> Outputs {
        let a = self.a;
        // Taken without a copy unless another handle shares y.
        let mut y = std::mem::replace(&mut self.y, Vec::new().into()).into_f32s();
        y.par_chunks_mut(CPU_CHUNK)
            .zip(self.x.f32s().par_chunks(CPU_CHUNK))
            .for_each(|(y, x)| {
                // A cancelled job leaves the rest (its result is dropped).
                if super::stop::requested() {
                    return;
                }
                for (y, &x) in y.iter_mut().zip(x) {
                    *y += a * x;
                }
            });
        Axpy::outputs(y)
    }

    fn reference(&self) -> Outputs {
        let out = self
            .x
            .f32s()
            .iter()
            .zip(self.y.f32s())
            .map(|(&x, &y)| (f64::from(self.a) * f64::from(x) + f64::from(y)) as f32)
            .collect();
        Axpy::outputs(out)
    }

    fn restore(&mut self, outputs: Outputs) {
        if let Some(out) = outputs.into_values().next()
            && let TensorData::F32(y) = out.into_data()
        {
            self.y = y.into();
        }
    }

    fn operands(&self) -> Vec<&Handle> {
        vec![&self.x, &self.y]
    }

    fn work_units(&self) -> f64 {
        self.len() as f64
    }

    /// `y ← a·x + y` in place with `par_iter_mut`, on its own copy of y.
    fn plain_loop(&self) -> PlainLoop<'_> {
        let (x, mut y) = (self.x.f32s(), self.y.f32s().to_vec());
        Box::new(move || y.par_iter_mut().zip(x).for_each(|(y, &x)| *y += self.a * x))
    }
}
