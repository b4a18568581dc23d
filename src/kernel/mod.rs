//! The kernel catalog.
//!
//! Each kernel has a module here, beside its shader in `shaders/`: what it
//! takes and gives (its [`Signature`]), how a [`Job`] becomes a validated,
//! typed task, its rayon implementation, and a plain sequential `reference`
//! that tests compare every backend against, and its [`Profile`] (what a
//! size means, its bench sweep and unit, a task of a size, its work units).
//!
//! The catalog is one list, [`catalog!`]: a line per kernel names its
//! module and its task type. From it come the [`Kernel`] and [`Task`] enums
//! and every match over them; each per-kernel fact is asked of the module
//! (`SIGNATURE`, `PROFILE`, `SHADER`) or of its task type through
//! [`KernelTask`]. A backend that encodes each kernel its own way expands
//! the same list with a macro of its own (the GPU backend does), so a
//! kernel it lacks fails to compile. Nothing here knows about backends.

pub mod image;
mod params;
pub mod profile;
pub mod random;
pub mod stop;
pub mod streaming;
pub mod user;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

pub use self::profile::Profile;
pub use self::streaming::Streaming;

pub use params::{Params, param_text, scalar_params};

use crate::error::{Error, Result};
use crate::tensor::{DType, Described, Handle, Spec, Tensor};

/// The catalog: one line per kernel, `Variant: module::TaskType`, in the
/// order `anycore kernels` lists them. A kernel's name is its module's.
/// Expands `$then! { … }` with the list, so that each user of the list
/// writes its matches once for every kernel.
macro_rules! catalog {
    ($then:ident) => {
        $then! {
            Axpy: axpy::Axpy,
            Reduce: reduce::Reduce,
            Matmul: matmul::Matmul,
            Mandelbrot: mandelbrot::Mandelbrot,
            Scan: scan::Scan,
            Sort: sort::Sort,
            Histogram: histogram::Histogram,
            Map: map::Map,
            Conv2d: conv2d::Conv2d,
            Blur: blur::Blur,
        }
    };
}
pub(crate) use catalog;

/// Declares the kernel modules and the enums over them.
macro_rules! declare_kernels {
    ($($variant:ident: $module:ident::$task:ident,)*) => {
        $(pub mod $module;)*

        /// The kernels anycore knows: the catalog's, and those the program
        /// registered ([`user`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kernel {
            $(#[doc = concat!("[`", stringify!($module), "`]: ", "see its module.")] $variant,)*
            /// A kernel the program registered ([`user::UserKernel::register`]).
            User(user::UserId),
        }

        impl Kernel {
            /// Every catalog kernel, in catalog order (registered ones:
            /// [`user::registered`]).
            pub const ALL: [Kernel; [$(Kernel::$variant),*].len()] = [$(Kernel::$variant),*];

            /// The name used on the command line.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kernel::$variant => stringify!($module),)*
                    Kernel::User(id) => id.def().name,
                }
            }

            /// Its inputs, parameters and outputs.
            pub fn signature(self) -> &'static Signature {
                match self {
                    $(Kernel::$variant => &$module::SIGNATURE,)*
                    Kernel::User(id) => &id.def().signature,
                }
            }

            /// What the bench, the probe and the cost model know of it.
            pub fn profile(self) -> &'static Profile {
                match self {
                    $(Kernel::$variant => &$module::PROFILE,)*
                    Kernel::User(_) => &user::PROFILE,
                }
            }

            /// How it runs over arrays larger than memory.
            pub fn streaming(self) -> &'static Streaming {
                match self {
                    $(Kernel::$variant => &$module::STREAMING,)*
                    Kernel::User(_) => &Streaming::Whole,
                }
            }

            /// Its shader.
            pub fn shader(self) -> &'static ShaderInfo {
                match self {
                    $(Kernel::$variant => &$module::SHADER,)*
                    Kernel::User(id) => &id.def().shader,
                }
            }

            fn validate(self, inputs: Inputs, params: &Params) -> Result<Task> {
                Ok(match self {
                    $(Kernel::$variant => Task::$variant($module::$task::from_job(inputs, params)?),)*
                    Kernel::User(_) => Task::User(user::UserTask::from_job(inputs, params)?),
                })
            }

            fn plan_checked(self, inputs: Inputs<Spec>, params: &Params) -> Result<Plan> {
                match self {
                    $(Kernel::$variant => $module::$task::plan(inputs, params),)*
                    Kernel::User(_) => user::UserTask::plan(inputs, params),
                }
            }
        }

        /// A validated job, typed per kernel, ready for any backend.
        #[derive(Clone, Debug)]
        pub enum Task {
            $(#[doc = concat!("See [`", stringify!($module), "`].")] $variant($module::$task),)*
            /// See [`user`].
            User(user::UserTask),
        }

        impl Task {
            /// Which kernel this is.
            pub fn kernel(&self) -> Kernel {
                match self {
                    $(Task::$variant(_) => Kernel::$variant,)*
                    Task::User(t) => t.kernel(),
                }
            }

            /// Runs on the current rayon pool (call it inside
            /// `ThreadPool::install`).
            pub fn run_cpu(&self) -> Outputs {
                match self { $(Task::$variant(t) => t.run_cpu(),)* Task::User(t) => t.run_cpu() }
            }

            /// Like [`Task::run_cpu`], but may write results over the task's
            /// own buffers instead of fresh memory (and take them out of the
            /// task).
            pub fn run_cpu_in_place(&mut self) -> Outputs {
                match self { $(Task::$variant(t) => t.run_cpu_in_place(),)* Task::User(t) => t.run_cpu_in_place() }
            }

            /// Puts back what [`Task::run_cpu_in_place`] took out, so that the
            /// task can run again.
            pub fn restore(&mut self, outputs: Outputs) {
                match self { $(Task::$variant(t) => t.restore(outputs),)* Task::User(t) => t.restore(outputs) }
            }

            /// The job's size in its kernel's natural unit (elements,
            /// multiply-adds, pixel-iterations), for the cost model.
            pub fn work_units(&self) -> f64 {
                match self { $(Task::$variant(t) => t.work_units(),)* Task::User(t) => t.work_units() }
            }

            /// The tensors it reads.
            pub fn operands(&self) -> Vec<&Handle> {
                match self { $(Task::$variant(t) => t.operands(),)* Task::User(t) => t.operands() }
            }

            /// How to draw its picture output, for kernels that have one
            /// ([`Signature::picture_output`]).
            pub fn painter(&self) -> Option<Painter> {
                match self { $(Task::$variant(t) => t.painter(),)* Task::User(t) => t.painter() }
            }

            /// The plain sequential result, for tests.
            pub fn reference(&self) -> Outputs {
                match self { $(Task::$variant(t) => t.reference(),)* Task::User(t) => t.reference() }
            }

            /// The plain rayon loop of the task's operation, on its own
            /// copies of the inputs: one run per call, on the current pool.
            pub fn plain_loop(&self) -> PlainLoop<'_> {
                match self { $(Task::$variant(t) => t.plain_loop(),)* Task::User(t) => t.plain_loop() }
            }
        }
    };
}
catalog!(declare_kernels);

/// What every kernel's validated task type does; [`Task`] passes each call
/// to the task's own kernel (a match the catalog writes, not a trait
/// object).
pub(crate) trait KernelTask {
    /// Checks a job's inputs' dtypes and shapes and its parameters against
    /// the kernel's rules (ranges, bounded sizes), and says what it gives:
    /// everything that can be known before the data is there. Every job
    /// passes through it before [`KernelTask::from_job`], and every step of
    /// a pipeline before the pipeline runs.
    fn plan(inputs: Inputs<Spec>, params: &Params) -> Result<Plan>
    where
        Self: Sized;

    /// Builds the task from a job that [`KernelTask::plan`] accepted; only
    /// the checks that need the data are left here.
    fn from_job(inputs: Inputs, params: &Params) -> Result<Self>
    where
        Self: Sized;

    /// Runs on the current rayon pool.
    fn run_cpu(&self) -> Outputs;

    /// Like `run_cpu`, but may write results over the task's own buffers
    /// (and take them out of the task); [`KernelTask::restore`] puts them
    /// back.
    fn run_cpu_in_place(&mut self) -> Outputs {
        self.run_cpu()
    }

    /// Puts back what `run_cpu_in_place` took out of the task, so that it
    /// can run again (the bench repeats one task).
    fn restore(&mut self, outputs: Outputs) {
        drop(outputs);
    }

    /// The plain sequential result, for tests.
    fn reference(&self) -> Outputs;

    /// The job's size in the kernel's natural unit (elements, multiply-adds,
    /// pixel-iterations), for the cost model.
    fn work_units(&self) -> f64;

    /// The tensors it reads (which the coordinator brings home before a
    /// CPU run, and the cost model counts the moves of).
    fn operands(&self) -> Vec<&Handle>;

    /// How to draw its picture output ([`Signature::picture_output`]).
    fn painter(&self) -> Option<Painter> {
        None
    }

    /// The plain rayon loop of the same operation, the way a user would
    /// write it, on its own copies of the inputs: the bench's
    /// [`profile::Baseline::RayonLoop`]. Runs once per call, on the current
    /// pool.
    fn plain_loop(&self) -> PlainLoop<'_>;
}

/// One run of a plain rayon loop per call.
pub type PlainLoop<'a> = Box<dyn FnMut() + Send + 'a>;

/// What a kernel takes and gives: the contract of `-i`, `-p`, `-o`, as
/// `anycore kernels` shows it.
#[derive(Debug, Serialize)]
pub struct Signature {
    /// One line: what the kernel computes.
    pub summary: &'static str,
    /// Input tensors (required unless marked optional).
    pub inputs: &'static [Arg],
    /// Parameters.
    pub params: &'static [Param],
    /// Output tensors.
    pub outputs: &'static [Arg],
    /// A command line that runs it.
    pub example: &'static str,
    /// The output that a `.png` path may receive as a picture, if any
    /// ([`Task::painter`] draws it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture_output: Option<&'static str>,
}

/// An output drawn as a picture: bytes, row-major, `channels` a pixel
/// (1 grey, 2 grey and alpha, 3 RGB, 4 RGBA).
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes a pixel, 1 to 4.
    pub channels: u8,
    /// The pixels.
    pub pixels: Vec<u8>,
}

/// How to draw a task's picture output, taken before the task runs (the
/// task is gone by the time its outputs are written).
#[derive(Clone, Copy, Debug)]
pub struct Painter {
    /// Draws an output, given `param`.
    pub(crate) draw: fn(&Tensor, u32) -> Option<Picture>,
    /// What the drawing needs of the task (mandelbrot: `max_iter`).
    pub(crate) param: u32,
}

impl Painter {
    /// The output as a picture, or `None` if it is not one.
    pub fn draw(&self, output: &Tensor) -> Option<Picture> {
        (self.draw)(output, self.param)
    }
}

/// An input or output tensor.
#[derive(Debug, Serialize)]
pub struct Arg {
    /// Its name (`-i NAME=…`, `-o NAME=…`).
    pub name: &'static str,
    /// Dtypes and shape, e.g. `f32 [n]`.
    pub doc: &'static str,
    /// Whether a job may leave it out (inputs only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A parameter.
#[derive(Debug, Serialize)]
pub struct Param {
    /// Its name (`-p NAME=…`).
    pub name: &'static str,
    /// The value used when it is not given (`None`: required).
    pub default: Option<&'static str>,
    /// What it means and which values it takes.
    pub doc: &'static str,
}

/// A kernel's WGSL source and the entry points the Rust side dispatches.
#[derive(Debug)]
pub struct ShaderInfo {
    /// File name under `shaders/`.
    pub file: &'static str,
    /// The WGSL text, compiled into the binary.
    pub source: &'static str,
    /// Entry point names with the workgroup size the host code assumes.
    pub entry_points: &'static [(&'static str, [u32; 3])],
    /// Whether the shader may run without naga's runtime checks (index
    /// clamps, loop bounds) and without zeroing workgroup memory: every
    /// index it makes is in bounds and it writes workgroup memory before
    /// reading it, which the tests prove by running it both ways
    /// (`ANYCORE_GPU_CHECKED=1` keeps the checks).
    pub trusted: bool,
}

impl Kernel {
    /// Looks a kernel up by name.
    pub fn from_name(name: &str) -> Result<Kernel> {
        Kernel::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .or_else(|| user::find(name))
            .ok_or_else(|| {
                let known: Vec<&str> = Kernel::ALL
                    .into_iter()
                    .chain(user::registered())
                    .map(|k| k.name())
                    .collect();
                Error::bad(format!(
                    "unknown kernel '{name}' (known kernels: {})",
                    known.join(", ")
                ))
            })
    }

    /// Checks that `name` is one of this kernel's inputs.
    pub fn check_input(self, name: &str) -> Result<()> {
        let names: Vec<&str> = self.signature().inputs.iter().map(|a| a.name).collect();
        self.check_known("input", "takes", name, &names)
    }

    /// Checks that `name` is one of this kernel's parameters.
    pub fn check_param(self, name: &str) -> Result<()> {
        let names: Vec<&str> = self.signature().params.iter().map(|p| p.name).collect();
        self.check_known("parameter", "takes", name, &names)
    }

    /// Checks that `name` is one of this kernel's outputs.
    pub fn check_output(self, name: &str) -> Result<()> {
        let names: Vec<&str> = self.signature().outputs.iter().map(|a| a.name).collect();
        self.check_known("output", "gives", name, &names)
    }

    fn check_known(self, what: &str, verb: &str, name: &str, known: &[&str]) -> Result<()> {
        if known.contains(&name) {
            return Ok(());
        }
        let list = if known.is_empty() {
            "nothing".to_owned()
        } else {
            known.join(", ")
        };
        Err(Error::bad(format!(
            "unknown {what} '{name}' for {self} (it {verb}: {list})"
        )))
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A job as a user states it: a kernel, named input tensors (or handles
/// to tensors the engine holds), parameters as text, and the outputs to
/// keep as handles instead of bringing home. [`Task::new`] checks it.
#[derive(Clone, Debug)]
pub struct Job {
    /// Which kernel to run.
    pub kernel: Kernel,
    /// Input tensors by name.
    pub inputs: BTreeMap<String, Handle>,
    /// Parameters by name, as text (`"2.5"`, `"max"`).
    pub params: BTreeMap<String, String>,
    /// Outputs to keep where they were computed, returned as handles.
    pub keep: Vec<String>,
}

impl Job {
    /// A job with no inputs or parameters yet.
    pub fn new(kernel: Kernel) -> Self {
        Job {
            kernel,
            inputs: BTreeMap::new(),
            params: BTreeMap::new(),
            keep: Vec::new(),
        }
    }

    /// Adds an input: a tensor, or a handle to one the engine holds.
    pub fn input(mut self, name: &str, tensor: impl Into<Handle>) -> Self {
        self.inputs.insert(name.to_owned(), tensor.into());
        self
    }

    /// Keeps output `name` where it is computed, as a handle
    /// (`JobReport::kept`), instead of bringing it home.
    pub fn keep(mut self, name: &str) -> Self {
        if !self.keep.iter().any(|k| k == name) {
            self.keep.push(name.to_owned());
        }
        self
    }

    /// Adds a parameter.
    pub fn param(mut self, name: &str, value: impl ToString) -> Self {
        self.params.insert(name.to_owned(), value.to_string());
        self
    }
}

/// Output tensors by name.
pub type Outputs = BTreeMap<String, Tensor>;

impl Task {
    /// Checks a job against its kernel's signature and the kernel's own rules
    /// (dtypes, shapes, parameter ranges).
    pub fn new(job: Job) -> Result<Task> {
        Task::planned(job).map(|(task, _)| task)
    }

    /// [`Task::new`], and what the task will give ([`Plan`]: its outputs,
    /// work and scratch memory), for whoever admits it.
    pub fn planned(job: Job) -> Result<(Task, Plan)> {
        let kernel = job.kernel;
        for name in &job.keep {
            kernel.check_output(name)?;
        }
        let params = kernel.params(&job.params)?;
        let inputs = Inputs::new(kernel, job.inputs)?;
        let plan = kernel.plan_checked(inputs.specs(), &params)?;
        Ok((kernel.validate(inputs, &params)?, plan))
    }

    /// [`Task::planned`], then the memory the plan needs asked of the
    /// system ([`Plan::reserve`]): how a front admits a job to run here.
    /// Checking alone asks nothing of the system, so a job checked before
    /// it is sent elsewhere (`run --server`) is not refused for this
    /// machine's memory, and checking allocates nothing large.
    pub fn admitted(job: Job) -> Result<(Task, Plan)> {
        let kernel = job.kernel;
        let (task, plan) = Task::planned(job)?;
        plan.reserve(kernel)?;
        Ok((task, plan))
    }
}

/// What a job will give, known before it runs: its outputs' dtypes and
/// shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The outputs the job gives, by name, in signature order.
    pub outputs: Vec<(&'static str, Spec)>,
    /// The job's size in its kernel's natural unit, as
    /// [`Task::work_units`] will say: what the cost model predicts from.
    pub work_units: f64,
    /// Host memory the CPU implementation takes beside its inputs and
    /// outputs, at most.
    pub scratch_bytes: u64,
}

impl Plan {
    /// A plan giving `outputs`, of `work_units`.
    pub(crate) fn new(
        outputs: impl IntoIterator<Item = (&'static str, Spec)>,
        work_units: f64,
    ) -> Self {
        Plan {
            outputs: outputs.into_iter().collect(),
            work_units,
            scratch_bytes: 0,
        }
    }

    /// The plan, with `bytes` of scratch memory.
    pub(crate) fn with_scratch(mut self, bytes: u64) -> Self {
        self.scratch_bytes = bytes;
        self
    }

    /// Bytes of its outputs.
    pub fn output_bytes(&self) -> u64 {
        self.outputs
            .iter()
            .fold(0u64, |n, (_, s)| n.saturating_add(s.bytes()))
    }

    /// Host memory the task takes beside its inputs, at most: its outputs
    /// and its scratch.
    pub fn working_bytes(&self) -> u64 {
        self.output_bytes().saturating_add(self.scratch_bytes)
    }

    /// Asks the system whether the memory [`Plan::working_bytes`] says
    /// `kernel` takes can be had now ([`crate::tensor::alloc::check`]).
    pub fn reserve(&self, kernel: Kernel) -> Result<()> {
        crate::tensor::alloc::check(self.working_bytes(), format_args!("{kernel}'s outputs"))
    }

    /// The spec of output `name`, if the job gives it.
    pub fn output(&self, name: &str) -> Option<&Spec> {
        self.outputs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
    }
}

impl Kernel {
    /// Checks a job given only its inputs' dtypes and shapes (the checks of
    /// [`Task::new`] that need no data) and says what it would give.
    pub fn plan(
        self,
        inputs: BTreeMap<String, Spec>,
        params: &BTreeMap<String, String>,
    ) -> Result<Plan> {
        let params = self.params(params)?;
        self.plan_checked(Inputs::new(self, inputs)?, &params)
    }

    pub(crate) fn params<'p>(self, params: &'p BTreeMap<String, String>) -> Result<Params<'p>> {
        for name in params.keys() {
            self.check_param(name)?;
        }
        Ok(Params::new(self.name(), params))
    }
}

/// A job's input tensors (or only their specs), checked against the
/// signature; kernels take them out one by one with the checks they need.
pub(crate) struct Inputs<T = Handle> {
    kernel: Kernel,
    map: BTreeMap<String, T>,
}

impl Inputs {
    /// The inputs' specs, for [`KernelTask::plan`].
    fn specs(&self) -> Inputs<Spec> {
        Inputs {
            kernel: self.kernel,
            map: self
                .map
                .iter()
                .map(|(k, t)| (k.clone(), t.spec().clone()))
                .collect(),
        }
    }
}

impl<T: Described> Inputs<T> {
    fn new(kernel: Kernel, map: BTreeMap<String, T>) -> Result<Self> {
        for name in map.keys() {
            kernel.check_input(name)?;
        }
        for arg in kernel.signature().inputs.iter().filter(|a| !a.optional) {
            let name = arg.name;
            if !map.contains_key(name) {
                let all: Vec<&str> = kernel.signature().inputs.iter().map(|a| a.name).collect();
                return Err(Error::bad(format!(
                    "{kernel} needs input '{name}' (its inputs: {})",
                    all.join(", ")
                )));
            }
        }
        Ok(Inputs { kernel, map })
    }

    /// Takes an optional input, if the job gave it, with the checks of
    /// [`Inputs::take`].
    pub(crate) fn take_optional(
        &mut self,
        name: &str,
        dtypes: &[DType],
        rank: usize,
    ) -> Result<Option<T>> {
        if self.map.contains_key(name) {
            self.take(name, dtypes, rank).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Takes an optional input of any shape, if the job gave it, which
    /// must have one of `dtypes`.
    pub(crate) fn take_optional_any_rank(
        &mut self,
        name: &str,
        dtypes: &[DType],
    ) -> Result<Option<T>> {
        let Some(t) = self.map.remove(name) else {
            return Ok(None);
        };
        self.check_dtype(name, &t, dtypes)?;
        Ok(Some(t))
    }

    fn check_dtype(&self, name: &str, t: &T, dtypes: &[DType]) -> Result<()> {
        let kernel = self.kernel;
        if !dtypes.contains(&t.dtype()) {
            let want: Vec<&str> = dtypes.iter().map(|d| d.name()).collect();
            return Err(Error::bad(format!(
                "input '{name}' of {kernel} is {}, but it must be {}",
                t.describe(),
                want.join(" or ")
            )));
        }
        Ok(())
    }

    /// Takes an input, which must have one of `dtypes` and `rank` dimensions.
    pub(crate) fn take(&mut self, name: &str, dtypes: &[DType], rank: usize) -> Result<T> {
        let kernel = self.kernel;
        let t = self
            .map
            .remove(name)
            .ok_or_else(|| Error::bad(format!("{kernel} needs input '{name}'")))?;
        self.check_dtype(name, &t, dtypes)?;
        if t.shape().len() != rank {
            return Err(Error::bad(format!(
                "input '{name}' of {kernel} is {}, but it must have {rank} dimension{}",
                t.describe(),
                if rank == 1 { "" } else { "s" }
            )));
        }
        Ok(t)
    }
}
