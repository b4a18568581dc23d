//! A registered kernel's jobs: checked against its definition (dtypes,
//! ranks, parameters, the outputs' shapes by its rules), then run — on the
//! CPU through its Rust fallback, which sees the job as a [`Call`]; on the
//! GPU through `backend::gpu::user`, which reads [`UserTask::uniform`].

use std::fmt;
use std::panic::AssertUnwindSafe;

use super::{Definition, MAX_RANK, Rule, UserId};
use crate::error::{Error, Result};
use crate::kernel::{Inputs, Kernel, KernelTask, Outputs, Params, PlainLoop, Plan};
use crate::tensor::{Described, Handle, Spec, Tensor, TensorData, element_count};

/// The inputs' shapes and the parameters, for a [`ShapeRule`](super::ShapeRule).
pub struct Shapes<'a> {
    def: &'a Definition,
    inputs: &'a [Spec],
    params: &'a [f32],
}

impl Shapes<'_> {
    /// The shape of input `name`.
    ///
    /// # Panics
    /// If the kernel declares no such input.
    pub fn shape(&self, name: &str) -> &[usize] {
        &self.inputs[self.def.input_index(name)].shape
    }

    /// The value of parameter `name`.
    ///
    /// # Panics
    /// If the kernel declares no such parameter.
    pub fn param(&self, name: &str) -> f32 {
        self.params[self.def.param_index(name)]
    }
}

impl Definition {
    fn input_index(&self, name: &str) -> usize {
        self.inputs
            .iter()
            .position(|i| i.name == name)
            .unwrap_or_else(|| panic!("kernel '{}' has no input '{name}'", self.name))
    }

    fn param_index(&self, name: &str) -> usize {
        self.params
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("kernel '{}' has no parameter '{name}'", self.name))
    }

    fn output_index(&self, name: &str) -> usize {
        self.outputs
            .iter()
            .position(|o| o.name == name)
            .unwrap_or_else(|| panic!("kernel '{}' has no output '{name}'", self.name))
    }

    /// Checks a job's inputs and parameters and works out its outputs.
    fn checked<T: Described>(
        &self,
        inputs: &mut Inputs<T>,
        params: &Params,
    ) -> Result<(Vec<T>, Vec<f32>, Vec<Spec>)> {
        let name = self.name;
        let mut taken = Vec::with_capacity(self.inputs.len());
        for i in &self.inputs {
            let t = inputs.take(i.name, &[i.dtype], i.rank)?;
            if t.shape().contains(&0) {
                return Err(Error::bad(format!(
                    "{name}: input '{}' is empty ({}); registered kernels take no empty tensors",
                    i.name,
                    t.describe()
                )));
            }
            taken.push(t);
        }
        let mut values = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let v = match p.default {
                Some(d) => params.f32_or(p.name, d)?,
                None => params.f64_opt(p.name)?.map(|v| v as f32).ok_or_else(|| {
                    Error::bad(format!(
                        "{name} needs parameter '{}' (it has no default)",
                        p.name
                    ))
                })?,
            };
            if !v.is_finite() {
                return Err(Error::bad(format!(
                    "parameter '{}' of {name}: it is beyond the range of f32",
                    p.name
                )));
            }
            values.push(v);
        }
        let specs: Vec<Spec> = taken
            .iter()
            .map(|t| Spec {
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
            })
            .collect();
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for (index, o) in self.outputs.iter().enumerate() {
            let shape = match &o.rule {
                Rule::LikeInput(i) => specs[*i].shape.clone(),
                Rule::Custom(rule) => {
                    let shapes = Shapes {
                        def: self,
                        inputs: &specs,
                        params: &values,
                    };
                    // The program's code, run where the job is checked (a
                    // service's request handler): its panic fails the job.
                    let shape = std::panic::catch_unwind(AssertUnwindSafe(|| rule(&shapes)))
                        .map_err(|panic| {
                            Error::Panicked(format!(
                                "the shape rule of output '{}' of {name}: {}",
                                o.name,
                                crate::error::panic_message(&*panic)
                            ))
                        })?;
                    shape.map_err(|why| Error::bad(format!("{name}: {why}")))?
                }
                Rule::Like(_) => unreachable!("resolved at registration"),
            };
            let spec = Spec {
                dtype: o.dtype,
                shape,
            };
            let fits =
                element_count(&spec.shape).is_some_and(|n| n > 0 && u32::try_from(n).is_ok());
            if !fits || spec.shape.is_empty() || spec.shape.len() > MAX_RANK {
                return Err(Error::bad(format!(
                    "{name}: output '{}' would be {}; outputs have 1 to {MAX_RANK} dimensions \
                     and 1 to 2^32-1 elements",
                    o.name,
                    spec.describe()
                )));
            }
            if index == 0 && spec.shape.len() > 4 {
                return Err(Error::bad(format!(
                    "{name}: output '{}' would be {}; the first output sets the GPU grid and has \
                     at most 4 dimensions",
                    o.name,
                    spec.describe()
                )));
            }
            outputs.push(spec);
        }
        Ok((taken, values, outputs))
    }
}

/// A validated job of a registered kernel.
#[derive(Clone)]
pub struct UserTask {
    id: UserId,
    inputs: Vec<Handle>,
    params: Vec<f32>,
    outputs: Vec<Spec>,
}

impl fmt::Debug for UserTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTask")
            .field("kernel", &self.def().name)
            .field("inputs", &self.inputs)
            .field("params", &self.params)
            .field("outputs", &self.outputs)
            .finish()
    }
}

impl UserTask {
    /// Which kernel this is.
    pub fn kernel(&self) -> Kernel {
        Kernel::User(self.id)
    }

    pub(crate) fn def(&self) -> &'static Definition {
        self.id.def()
    }

    /// The input handles, in declaration order.
    pub fn inputs(&self) -> &[Handle] {
        &self.inputs
    }

    /// The outputs' names and specs, in declaration order.
    pub fn outputs(&self) -> impl Iterator<Item = (&'static str, &Spec)> {
        self.def().outputs.iter().map(|o| o.name).zip(&self.outputs)
    }

    /// The uniform the WGSL reads: the first output's shape innermost
    /// first (1 past its rank), its element count, then the parameters'
    /// bits; zero-padded to a multiple of 16 bytes.
    pub fn uniform(&self) -> Vec<u32> {
        let dims = self.grid_dims();
        let len = dims.iter().product::<u32>();
        let mut words: Vec<u32> = dims.into_iter().chain([len]).collect();
        words.extend(self.params.iter().map(|p| p.to_bits()));
        words.resize(words.len().next_multiple_of(4), 0);
        words
    }

    /// The first output's shape, innermost dimension first, 1 past its
    /// rank (each fits u32: its element count does).
    pub fn grid_dims(&self) -> [u32; 4] {
        let mut dims = [1u32; 4];
        for (d, &n) in dims.iter_mut().zip(self.outputs[0].shape.iter().rev()) {
            *d = n as u32;
        }
        dims
    }

    /// Builds the outputs from what the fallback gave.
    fn finish(&self, data: Vec<TensorData>) -> Outputs {
        let def = self.def();
        assert_eq!(
            data.len(),
            self.outputs.len(),
            "the Rust fallback of '{}' gave {} outputs; it declares {}",
            def.name,
            data.len(),
            self.outputs.len()
        );
        self.outputs()
            .zip(data)
            .map(|((name, spec), data)| {
                let fits = data.dtype() == spec.dtype
                    && element_count(&spec.shape) == Some(data.len());
                assert!(
                    fits,
                    "the Rust fallback of '{}' gave {} {} elements for output '{name}', which is {}",
                    def.name,
                    data.len(),
                    data.dtype(),
                    spec.describe()
                );
                (name.to_owned(), Tensor::new(spec.shape.clone(), data))
            })
            .collect()
    }
}

/// A job's data, for the Rust fallback.
pub struct Call<'a> {
    task: &'a UserTask,
}

impl Call<'_> {
    fn def(&self) -> &'static Definition {
        self.task.def()
    }

    /// Input `name`'s elements.
    ///
    /// # Panics
    /// If the kernel declares no such input.
    pub fn data(&self, name: &str) -> &TensorData {
        self.task.inputs[self.def().input_index(name)].data()
    }

    /// Input `name`'s elements, declared `f32`.
    ///
    /// # Panics
    /// If the kernel declares no such input, or declares it another dtype.
    pub fn f32s(&self, name: &str) -> &[f32] {
        match self.data(name) {
            TensorData::F32(v) => v,
            other => panic!("input '{name}' is {}, not f32", other.dtype()),
        }
    }

    /// Input `name`'s elements, declared `u32`.
    ///
    /// # Panics
    /// If the kernel declares no such input, or declares it another dtype.
    pub fn u32s(&self, name: &str) -> &[u32] {
        match self.data(name) {
            TensorData::U32(v) => v,
            other => panic!("input '{name}' is {}, not u32", other.dtype()),
        }
    }

    /// Input `name`'s elements, declared `i32`.
    ///
    /// # Panics
    /// If the kernel declares no such input, or declares it another dtype.
    pub fn i32s(&self, name: &str) -> &[i32] {
        match self.data(name) {
            TensorData::I32(v) => v,
            other => panic!("input '{name}' is {}, not i32", other.dtype()),
        }
    }

    /// Input `name`'s shape.
    pub fn shape(&self, name: &str) -> &[usize] {
        self.task.inputs[self.def().input_index(name)].shape()
    }

    /// Parameter `name`'s value.
    pub fn param(&self, name: &str) -> f32 {
        self.task.params[self.def().param_index(name)]
    }

    /// The shape output `name` must have.
    pub fn output_shape(&self, name: &str) -> &[usize] {
        &self.task.outputs[self.def().output_index(name)].shape
    }
}

impl KernelTask for UserTask {
    fn plan(mut inputs: Inputs<Spec>, params: &Params) -> Result<Plan> {
        let Kernel::User(id) = inputs.kernel else {
            unreachable!("only registered kernels plan here")
        };
        let def = id.def();
        let (_, _, outputs) = def.checked(&mut inputs, params)?;
        let work = element_count(&outputs[0].shape).unwrap_or(0) as f64;
        Ok(Plan::new(
            def.outputs.iter().map(|o| o.name).zip(outputs),
            work,
        ))
    }

    fn from_job(mut inputs: Inputs, params: &Params) -> Result<Self> {
        let Kernel::User(id) = inputs.kernel else {
            unreachable!("only registered kernels are built here")
        };
        let (inputs, params, outputs) = id.def().checked(&mut inputs, params)?;
        Ok(UserTask {
            id,
            inputs,
            params,
            outputs,
        })
    }

    fn run_cpu(&self) -> Outputs {
        self.finish((self.def().cpu)(&Call { task: self }))
    }

    /// The fallback: a program's kernel has no other sequential form.
    fn reference(&self) -> Outputs {
        self.run_cpu()
    }

    fn work_units(&self) -> f64 {
        element_count(&self.outputs[0].shape).unwrap_or(0) as f64
    }

    fn operands(&self) -> Vec<&Handle> {
        self.inputs.iter().collect()
    }

    fn plain_loop(&self) -> PlainLoop<'_> {
        Box::new(move || drop(self.run_cpu()))
    }
}
