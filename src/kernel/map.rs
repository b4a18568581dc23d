//! `map`: an elementwise expression over f32 inputs `x`, `y`, `z`, `w`,
//! `u`, `v` of one shape (inputs of one element broadcast), computed as
//! NumPy's float32 ufuncs compute it (`-p expr='x * 2 + sin(y)'`).
//!
//! [`expr`] parses the expression (one parser for every front) and gives
//! its normal form; [`scalar`] holds the semantics of each operation on
//! one value; [`eval`] runs the CPU path over blocks. The GPU backend
//! writes WGSL for each expression from `shaders/map.wgsl` (see
//! `backend/gpu/map.rs`).

pub mod eval;
pub mod expr;
pub mod scalar;

use rayon::prelude::*;

use self::eval::{BLOCK, Program};
use self::expr::{Expr, INPUTS};
use super::profile::{self, Bandwidth, NumpyCode, Profile, Unit, Variant, random_f32};
use super::{Arg, Inputs, KernelTask, Outputs, Param, Params, PlainLoop, Plan, ShaderInfo, Signature, Task, Streaming};
use crate::error::{Error, Result};
use crate::tensor::{DType, Described, Handle, Spec, Tensor, TensorData, element_count};

macro_rules! input {
    ($name:literal) => {
        Arg {
            name: $name,
            doc: "f32, any shape (one element: broadcast)",
            optional: true,
        }
    };
}

/// Inputs `x`, `y`, `z`, `w`, `u`, `v` (those the expression names);
/// parameter `expr`; output `out`.
pub const SIGNATURE: Signature = Signature {
    summary: "an elementwise expression over f32 inputs, as NumPy's float32 ufuncs",
    inputs: &[input!("x"), input!("y"), input!("z"), input!("w"), input!("u"), input!("v")],
    params: &[Param {
        name: "expr",
        default: None,
        doc: "the expression: inputs x y z w u v, numbers, pi e inf nan, + - * / % ** \
              (% as np.remainder), < <= > >= == != (1 or 0), where(c, a, b), sin cos tan \
              asin acos atan atan2 sinh cosh tanh exp exp2 log log2 sqrt abs floor ceil \
              round min max pow clamp",
    }],
    outputs: &[Arg {
        name: "out",
        doc: "f32, the inputs' shape",
        optional: false,
    }],
    picture_output: None,
    example: "anycore run map -i x=a.npy -i y=b.npy -p expr='x * 2 + sin(y)' -o out=c.npy",
};

/// The expression the bench sweeps.
pub const BENCH_EXPR: &str = "x * 2 + sin(y)";

/// The expression the bench also times at 2^24 (a variant).
pub const BENCH_EXPR_2: &str = "sqrt(x*x + y*y)";

/// A bench task: `expr` over random x and y of `n` elements.
fn bench_task(expr: &str, n: usize, seed: u64) -> Result<Task> {
    let (x, y) = (random_f32(n, seed)?, random_f32(n, seed + 1)?);
    let job = super::Job::new(super::Kernel::Map)
        .input("x", Tensor::from_f32(x))
        .input("y", Tensor::from_f32(y))
        .param("expr", expr);
    Task::new(job)
}

/// The plain rayon loop of `f` over x and y into `out`, `f` inlined.
fn hand_written<'a>(
    x: &'a [f32],
    y: &'a [f32],
    mut out: Vec<f32>,
    f: impl Fn(f32, f32) -> f32 + Send + Sync + 'a,
) -> PlainLoop<'a> {
    Box::new(move || {
        out.par_iter_mut()
            .zip(x.par_iter().zip(y))
            .for_each(|(o, (&x, &y))| *o = f(x, y))
    })
}

/// Two random f32 inputs in [-1, 1), as the bench's expressions take.
const NUMPY_SETUP: &str = "x = rng.uniform(-1, 1, n).astype(np.float32); \
                           y = rng.uniform(-1, 1, n).astype(np.float32)";

/// What the bench, the probe and the cost model know of `map`.
pub const PROFILE: Profile = Profile {
    sweep: profile::VECTOR_SWEEP,
    unit: Unit {
        name: "GB/s",
        counts: "12 bytes per element: x and y read, out written (x * 2 + sin(y))",
        scale: 1e9,
    },
    amount: |n| 12.0 * n as f64,
    bandwidth: Some(Bandwidth::Copy),
    task: |n, seed| bench_task(BENCH_EXPR, n, seed),
    baselines: &[
        profile::Baseline::Numpy(NumpyCode {
            setup: NUMPY_SETUP,
            run: "x * np.float32(2) + np.sin(y)",
        }),
        profile::RAYON_LOOP,
    ],
    variants: &[Variant {
        label: BENCH_EXPR_2,
        size: 1 << 24,
        quick_size: 1 << 20,
        task: |n, seed| bench_task(BENCH_EXPR_2, n, seed),
        numpy: Some(NumpyCode {
            setup: NUMPY_SETUP,
            run: "np.sqrt(x * x + y * y)",
        }),
    }],
};

/// Invocations per workgroup in `shaders/map.wgsl`.
pub const WORKGROUP: u32 = 256;

/// Each output element is computed from the same input elements alone.
pub const STREAMING: Streaming = Streaming::Elementwise;

/// `shaders/map.wgsl`: the template each expression's shader is written
/// from (valid WGSL itself: it maps `x` to itself).
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "map.wgsl",
    source: include_str!("../../shaders/map.wgsl"),
    entry_points: &[("map", [WORKGROUP, 1, 1])],
    trusted: true,
};

/// A validated `map`.
#[derive(Clone, Debug)]
pub struct Map {
    /// The parsed expression.
    pub expr: Expr,
    /// The inputs it reads, by variable index ([`INPUTS`]); those of one
    /// element broadcast.
    pub inputs: Vec<(usize, Handle)>,
    /// The output's shape.
    pub shape: Vec<usize>,
}

/// The expression of a job, parsed.
fn parse(params: &Params) -> Result<Expr> {
    Expr::parse(params.text("expr")?)
}

/// The inputs by variable index, and the output's shape.
type Checked<T> = (Vec<(usize, T)>, Vec<usize>);

/// Checks the inputs against the expression: each it names is given and
/// each given is named; all are f32; those of more than one element share
/// one shape. Gives the inputs by variable index and the output's shape.
fn check_inputs<T: Described>(
    inputs: &mut Inputs<T>,
    expr: &Expr,
) -> Result<Checked<T>> {
    let used = expr.vars();
    let mut taken = Vec::new();
    for (i, name) in INPUTS.iter().enumerate() {
        let Some(t) = inputs.take_optional_any_rank(name, &[DType::F32])? else {
            if used.contains(&i) {
                return Err(Error::bad(format!(
                    "map: the expression reads '{name}', but no input '{name}' is given"
                )));
            }
            continue;
        };
        if !used.contains(&i) {
            return Err(Error::bad(format!(
                "map: input '{name}' is given, but the expression does not read it"
            )));
        }
        taken.push((i, t));
    }
    let mut shape: Option<(usize, Vec<usize>)> = None;
    for (i, t) in &taken {
        if element_count(t.shape()) == Some(1) {
            continue;
        }
        match &shape {
            Some((first, s)) if s.as_slice() != t.shape() => {
                return Err(Error::bad(format!(
                    "map: input '{}' is {} but '{}' is f32 {:?}; inputs must have one shape \
                     (or one element, which broadcasts)",
                    INPUTS[*i],
                    t.describe(),
                    INPUTS[*first],
                    s
                )));
            }
            Some(_) => {}
            None => shape = Some((*i, t.shape().to_vec())),
        }
    }
    // Only single elements (or nothing): the largest of their shapes, as
    // NumPy broadcasts [] with [1].
    let shape = match shape {
        Some((_, s)) => s,
        None => taken
            .iter()
            .map(|(_, t)| t.shape().to_vec())
            .max_by_key(Vec::len)
            .unwrap_or_default(),
    };
    Ok((taken, shape))
}

impl Map {
    /// Elements in the output.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the output is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The expression with each input of one element replaced by its value
    /// (when the output has more), numbers folded; and for each variable,
    /// its place among the array inputs left, in `self.inputs`' order.
    pub fn specialised(&self) -> (Expr, [Option<usize>; INPUTS.len()]) {
        let mut values = [None; INPUTS.len()];
        let mut arrays = [None; INPUTS.len()];
        let mut k = 0;
        for (i, h) in &self.inputs {
            if self.broadcasts(h) {
                values[*i] = Some(h.f32s()[0]);
            } else {
                arrays[*i] = Some(k);
                k += 1;
            }
        }
        (self.expr.substitute(&values), arrays)
    }

    /// Whether input `h` broadcasts (one element, the output more).
    pub fn broadcasts(&self, h: &Handle) -> bool {
        h.len() == 1 && self.len() != 1
    }

    /// Element `i` of the output, by walking the tree (the sequential
    /// reference).
    fn value_at(&self, i: usize) -> f32 {
        fn walk(e: &Expr, get: &dyn Fn(usize) -> f32) -> f32 {
            match e {
                Expr::Var(v) => get(*v),
                Expr::Num(v) => *v,
                Expr::Call(f, args) => {
                    let vals: Vec<f32> = args.iter().map(|a| walk(a, get)).collect();
                    scalar::apply(*f, &vals)
                }
            }
        }
        walk(&self.expr, &|var| {
            let h = &self.inputs.iter().find(|(v, _)| *v == var).expect("checked").1;
            h.f32s()[if h.len() == 1 { 0 } else { i }]
        })
    }

    /// Computes the expression into `out`, which holds input `target`'s
    /// values when it is given (that input's handle is then empty): each
    /// block of it is copied aside before it is written over.
    fn evaluate(&self, out: &mut [f32], target: Option<usize>) {
        let (expr, arrays) = self.specialised();
        let program = Program::new(&expr, &arrays);
        // Broadcast inputs are numbers in `program`; the rest are its
        // arrays, in order (the target's slot is never read from here).
        let arrays_of = |inputs: &[(usize, Handle)]| {
            inputs.iter().filter(|(_, h)| !self.broadcasts(h)).count()
        };
        let target = target.map(|t| arrays_of(&self.inputs[..t]));
        let sources: Vec<&[f32]> = self
            .inputs
            .iter()
            .filter(|(_, h)| !self.broadcasts(h))
            .map(|(_, h)| h.f32s())
            .collect();
        let arch = pulp::Arch::new();
        out.par_chunks_mut(BLOCK).enumerate().for_each_init(
            || (program.scratch(), vec![0.0f32; BLOCK]),
            |(temps, aside), (b, out)| {
                // A cancelled job leaves the rest (its result is dropped).
                if super::stop::requested() {
                    return;
                }
                let (from, len) = (b * BLOCK, out.len());
                if target.is_some() {
                    aside[..len].copy_from_slice(out);
                }
                let mut blocks: [&[f32]; INPUTS.len()] = [&[]; INPUTS.len()];
                for (k, s) in sources.iter().enumerate() {
                    blocks[k] = if Some(k) == target {
                        &aside[..len]
                    } else {
                        s.get(from..from + len).unwrap_or(&[])
                    };
                }
                arch.dispatch(Block {
                    program: &program,
                    blocks: &blocks,
                    temps,
                    out,
                });
            },
        );
    }

    /// Wraps a result as this kernel's outputs.
    pub fn outputs(&self, out: Vec<f32>) -> Outputs {
        let t = Tensor::new(self.shape.clone(), TensorData::F32(out));
        Outputs::from([("out".to_owned(), t)])
    }
}

/// One block of [`Program::run`], compiled for the CPU's vector unit: a
/// `WithSimd` whose body is inlined into `pulp`'s dispatch (a closure's
/// body would be compiled apart, without the unit's features).
struct Block<'a> {
    program: &'a Program,
    blocks: &'a [&'a [f32]],
    temps: &'a mut [Vec<f32>],
    out: &'a mut [f32],
}

impl pulp::WithSimd for Block<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.program.run(self.blocks, self.temps, self.out)
    }
}

impl KernelTask for Map {
    fn plan(mut inputs: Inputs<Spec>, params: &Params) -> Result<Plan> {
        let expr = parse(params)?;
        let (_, shape) = check_inputs(&mut inputs, &expr)?;
        let n = shape.iter().product::<usize>();
        let ops = expr.ops().max(1);
        Ok(Plan::new(
            [(
                "out",
                Spec {
                    dtype: DType::F32,
                    shape,
                },
            )],
            n as f64 * ops as f64,
        ))
    }

    fn from_job(mut inputs: Inputs, params: &Params) -> Result<Self> {
        let expr = parse(params)?;
        let (inputs, shape) = check_inputs(&mut inputs, &expr)?;
        Ok(Map {
            expr,
            inputs,
            shape,
        })
    }

    fn run_cpu(&self) -> Outputs {
        let mut out = vec![0.0f32; self.len()];
        crate::tensor::alloc::advise_huge_pages(&out);
        self.evaluate(&mut out, None);
        self.outputs(out)
    }

    /// Writes the result over the last input that has the output's length
    /// (without a copy unless another handle shares it): no output memory
    /// to fault in, which took longer than the work (25 ms of 30 for
    /// `x * 2 + y` at 2^24 on two cores).
    fn run_cpu_in_place(&mut self) -> Outputs {
        let n = self.len();
        let Some(k) = self.inputs.iter().rposition(|(_, h)| h.len() == n && n > 1) else {
            return self.run_cpu();
        };
        let mut out = std::mem::replace(&mut self.inputs[k].1, Vec::new().into()).into_f32s();
        self.evaluate(&mut out, Some(k));
        self.outputs(out)
    }

    fn restore(&mut self, outputs: Outputs) {
        let n = self.len();
        if let Some(out) = outputs.into_values().next()
            && let Some((_, h)) = self.inputs.iter_mut().rev().find(|(_, h)| h.is_empty() && n > 0)
            && let TensorData::F32(v) = out.into_data()
        {
            *h = v.into();
        }
    }

    fn reference(&self) -> Outputs {
        self.outputs((0..self.len()).map(|i| self.value_at(i)).collect())
    }

    fn operands(&self) -> Vec<&Handle> {
        self.inputs.iter().map(|(_, h)| h).collect()
    }

    fn work_units(&self) -> f64 {
        self.len() as f64 * self.expr.ops().max(1) as f64
    }

    /// The bench's expressions ([`BENCH_EXPR`], [`BENCH_EXPR_2`]) written
    /// by hand as rayon loops; any other expression walks its tree per
    /// element, as a loop that does not know the expression in advance
    /// must.
    fn plain_loop(&self) -> PlainLoop<'_> {
        let mut out = vec![0.0f32; self.len()];
        let is = |text: &str| Expr::parse(text).ok().as_ref() == Some(&self.expr);
        if let [(0, x), (1, y)] = self.inputs.as_slice() {
            let (x, y) = (x.f32s(), y.f32s());
            if is(BENCH_EXPR) {
                return hand_written(x, y, out, |x, y| x * 2.0 + y.sin());
            }
            if is(BENCH_EXPR_2) {
                return hand_written(x, y, out, |x, y| (x * x + y * y).sqrt());
            }
        }
        Box::new(move || {
            out.par_iter_mut()
                .enumerate()
                .for_each(|(i, o)| *o = self.value_at(i))
        })
    }
}
