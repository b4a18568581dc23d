//! Kernels a program brings: registered at run time with a name, a
//! signature, WGSL for the GPU and a Rust fallback for the rayon pool, and
//! then run like any kernel of the catalog — placed by the coordinator,
//! reported, kept as handles, chained in pipelines, served by the service
//! of the program that registered it.
//!
//! ```
//! use anycore::kernel::user::{Grid, UserKernel};
//! use anycore::tensor::{DType, TensorData};
//!
//! const WGSL: &str = "
//! struct Call { dims: vec4<u32>, len: u32, a: f32 }
//! @group(0) @binding(0) var<storage, read> x: array<f32>;
//! @group(0) @binding(1) var<storage, read_write> out: array<f32>;
//! @group(0) @binding(2) var<uniform> call: Call;
//! @compute @workgroup_size(64)
//! fn main(@builtin(global_invocation_id) id: vec3<u32>,
//!         @builtin(num_workgroups) groups: vec3<u32>) {
//!     let i = id.x + id.y * groups.x * 64u;
//!     if i < call.len { out[i] = call.a * x[i] * x[i]; }
//! }";
//!
//! let kernel = UserKernel::new("scaled_square_doc", "a·x² elementwise")
//!     .input("x", DType::F32, 1)
//!     .param("a", Some(1.0), "the scale")
//!     .output_like("out", "x")
//!     .wgsl(WGSL, "main", Grid::Elements)
//!     .cpu(|call| {
//!         let a = call.param("a");
//!         vec![TensorData::F32(call.f32s("x").iter().map(|v| a * v * v).collect())]
//!     })
//!     .register()?;
//! assert_eq!(kernel.name(), "scaled_square_doc");
//! # Ok::<(), anycore::Error>(())
//! ```
//!
//! # What the WGSL sees
//!
//! Everything is in bind group 0, in the order the kernel declares it:
//! binding `0..i` the inputs (`var<storage, read>`, a runtime-sized array
//! of the input's dtype), then the outputs (`var<storage, read_write>`;
//! atomics allowed), then a uniform laid out as
//! `struct { dims: vec4<u32>, len: u32, <param>: f32, … }`: the first
//! output's shape innermost dimension first (1 past its rank), its element
//! count, and each parameter in declaration order. Outputs start at zero.
//! naga checks all of this when the kernel is registered (and that the
//! shader stays within what every WebGPU device allows: its workgroup
//! size, its workgroup memory, 8 storage buffers, no override without a
//! default), so a wrong shader is an error there, never at run time.
//!
//! The grid covers the first output ([`Grid`]); a kernel whose work
//! follows an input instead (a histogram) strides over it, up to
//! `arrayLength(&input)`. Shaders keep naga's runtime bounds checks: a
//! program's WGSL is never trusted, and each tensor of a job must fit one
//! storage binding on the GPU (registered kernels are not split into
//! chunks).
//!
//! Registered kernels live as long as the process (a program registers a
//! few, once): their definitions are leaked so that a [`Kernel`] stays a
//! small `Copy` value like the catalog's.

mod task;
mod wgsl;

pub use task::{Call, Shapes, UserTask};

use std::sync::{Arc, RwLock};

use super::profile::{self, Profile, Unit};
use super::{Arg, Kernel, Param, ShaderInfo, Signature};
use crate::error::{Error, Result};
use crate::tensor::{DType, TensorData};

/// Kernels a process may register at most (each is kept for its life).
pub const MAX_REGISTERED: usize = 1024;

/// Dimensions an input may declare at most; the first output (the grid's)
/// has at most 4, the uniform's `dims`.
pub const MAX_RANK: usize = 8;

/// How the GPU grid covers the first output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grid {
    /// One invocation per element, in order: the entry point's workgroup
    /// size must be `(W, 1, 1)`. Past the device's limit of workgroups in
    /// `x` the grid goes on in `y`, so the element of an invocation is
    /// `id.x + id.y * num_workgroups.x * W` (check it against `call.len`).
    Elements,
    /// One invocation per element of the shape: `x` along the innermost
    /// dimension (`dims.x`), `y` along the next (`dims.y`), `z` along the
    /// rest (`dims.z * dims.w`), each rounded up to whole workgroups (check
    /// the ids against `call.dims`). For images.
    Shape,
}

/// The Rust fallback: the outputs' elements, in declaration order, for the
/// shapes the plan gave them ([`Call::output_shape`]).
pub type Fallback = dyn Fn(&Call<'_>) -> Vec<TensorData> + Send + Sync;

/// A shape rule: the output's shape from the inputs' shapes and the
/// parameters, or why the job cannot run.
pub type ShapeRule = dyn Fn(&Shapes<'_>) -> std::result::Result<Vec<usize>, String> + Send + Sync;

/// A kernel being described, to [`UserKernel::register`].
pub struct UserKernel {
    name: String,
    summary: String,
    inputs: Vec<InputDef<String>>,
    params: Vec<ParamDef<String>>,
    /// Name, dtype (`None`: its input's, for [`Rule::Like`]) and shape.
    outputs: Vec<(String, Option<DType>, Rule)>,
    wgsl: Option<(String, String, Grid)>,
    cpu: Option<Arc<Fallback>>,
}

/// An input: while described its name is a `String`, once registered a
/// `&'static str` (nothing is leaked for a description that is refused).
struct InputDef<S = &'static str> {
    name: S,
    dtype: DType,
    rank: usize,
}

struct ParamDef<S = &'static str> {
    name: S,
    default: Option<f32>,
    doc: S,
}

enum Rule {
    /// The shape of an input (by name while described, by index once
    /// registered).
    Like(String),
    LikeInput(usize),
    Custom(Arc<ShapeRule>),
}

impl UserKernel {
    /// A kernel named `name` (letters, digits and `_`, starting with a
    /// letter; not a catalog kernel's) that does what `summary` says.
    pub fn new(name: &str, summary: &str) -> Self {
        UserKernel {
            name: name.to_owned(),
            summary: summary.to_owned(),
            inputs: Vec::new(),
            params: Vec::new(),
            outputs: Vec::new(),
            wgsl: None,
            cpu: None,
        }
    }

    /// An input tensor of `dtype` (f32, u32 or i32) with `rank` dimensions.
    pub fn input(mut self, name: &str, dtype: DType, rank: usize) -> Self {
        self.inputs.push(InputDef {
            name: name.to_owned(),
            dtype,
            rank,
        });
        self
    }

    /// An `f32` parameter, with its default (`None`: a job must give it).
    /// `doc` says what it means, for the signature.
    pub fn param(mut self, name: &str, default: Option<f32>, doc: &str) -> Self {
        self.params.push(ParamDef {
            name: name.to_owned(),
            default,
            doc: doc.to_owned(),
        });
        self
    }

    /// An output with the dtype and shape of input `input`.
    pub fn output_like(mut self, name: &str, input: &str) -> Self {
        self.outputs
            .push((name.to_owned(), None, Rule::Like(input.to_owned())));
        self
    }

    /// An output of `dtype` whose shape `shape` works out from the inputs'
    /// shapes and the parameters (or refuses the job, saying why).
    pub fn output(
        mut self,
        name: &str,
        dtype: DType,
        shape: impl Fn(&Shapes<'_>) -> std::result::Result<Vec<usize>, String> + Send + Sync + 'static,
    ) -> Self {
        self.outputs
            .push((name.to_owned(), Some(dtype), Rule::Custom(Arc::new(shape))));
        self
    }

    /// The GPU implementation: WGSL `source`, its compute entry point, and
    /// how the grid covers the first output.
    pub fn wgsl(mut self, source: &str, entry_point: &str, grid: Grid) -> Self {
        self.wgsl = Some((source.to_owned(), entry_point.to_owned(), grid));
        self
    }

    /// The CPU implementation, run on the rayon pool (use rayon inside it
    /// to use every core); it is also the reference the GPU is compared
    /// with ([`crate::backend::compare`]). It gives each output's elements,
    /// in declaration order; a panic fails the job, not the process.
    pub fn cpu(
        mut self,
        run: impl Fn(&Call<'_>) -> Vec<TensorData> + Send + Sync + 'static,
    ) -> Self {
        self.cpu = Some(Arc::new(run));
        self
    }

    /// Checks the description and its WGSL (parsed and validated by naga,
    /// its bindings and uniform compared with the signature) and adds the
    /// kernel to the process's catalog: [`Kernel::from_name`] finds it from
    /// then on, on every front.
    pub fn register(self) -> Result<Kernel> {
        // Held while the description is checked, so that only a kernel
        // that is added leaks its names.
        let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
        if registry.iter().any(|d| d.name == self.name) {
            return Err(Error::bad(format!(
                "a kernel named '{}' is registered already",
                self.name
            )));
        }
        if registry.len() >= MAX_REGISTERED {
            return Err(Error::bad(format!(
                "cannot register '{}': a process registers at most {MAX_REGISTERED} kernels",
                self.name
            )));
        }
        let def = self.check()?;
        let id = UserId(registry.len() as u16);
        registry.push(Box::leak(Box::new(def)));
        Ok(Kernel::User(id))
    }

    /// The definition, once every rule holds; its names leaked (only
    /// then).
    fn check(self) -> Result<Definition> {
        let name = self.name.as_str();
        let what = format!("kernel '{name}'");
        check_identifier("kernel", name)?;
        if Kernel::ALL.iter().any(|k| k.name() == name) {
            return Err(Error::bad(format!(
                "{what}: the catalog has a kernel of that name"
            )));
        }
        let mut seen: Vec<&str> = Vec::new();
        for (kind, n) in self
            .inputs
            .iter()
            .map(|i| ("input", i.name.as_str()))
            .chain(self.params.iter().map(|p| ("parameter", p.name.as_str())))
        {
            check_identifier(kind, n).map_err(|e| e.context(&what))?;
            if seen.contains(&n) {
                return Err(Error::bad(format!("{what}: '{n}' is declared twice")));
            }
            seen.push(n);
        }
        let mut out_names: Vec<&str> = Vec::new();
        for (n, _, _) in &self.outputs {
            check_identifier("output", n).map_err(|e| e.context(&what))?;
            if out_names.contains(&n.as_str()) {
                return Err(Error::bad(format!(
                    "{what}: output '{n}' is declared twice"
                )));
            }
            out_names.push(n);
        }
        for i in &self.inputs {
            if i.dtype.size() != 4 {
                return Err(Error::bad(format!(
                    "{what}: input '{}' is {}; registered kernels take f32, u32 or i32",
                    i.name, i.dtype
                )));
            }
            if i.rank == 0 || i.rank > MAX_RANK {
                return Err(Error::bad(format!(
                    "{what}: input '{}' has {} dimensions; from 1 to {MAX_RANK} are allowed",
                    i.name, i.rank
                )));
            }
        }
        for p in &self.params {
            if let Some(d) = p.default.filter(|d| !d.is_finite()) {
                return Err(Error::bad(format!(
                    "{what}: parameter '{}' has the default {d}; defaults are finite",
                    p.name
                )));
            }
        }
        if self.outputs.is_empty() {
            return Err(Error::bad(format!("{what} declares no output")));
        }
        // The storage buffers every GPU binds in one stage (WebGPU's
        // default limit; 8).
        let most = wgpu::Limits::default().max_storage_buffers_per_shader_stage as usize;
        let bindings = self.inputs.len() + self.outputs.len();
        if bindings > most {
            return Err(Error::bad(format!(
                "{what} has {bindings} inputs and outputs; not every GPU binds more than {most}"
            )));
        }
        let mut outputs = Vec::new();
        for (index, (n, dtype, rule)) in self.outputs.into_iter().enumerate() {
            let (dtype, rule) = match rule {
                Rule::Like(input) => {
                    let Some(at) = self.inputs.iter().position(|i| i.name == input) else {
                        return Err(Error::bad(format!(
                            "{what}: output '{n}' is shaped like input '{input}', which it does \
                             not declare"
                        )));
                    };
                    if index == 0 && self.inputs[at].rank > 4 {
                        return Err(Error::bad(format!(
                            "{what}: the first output sets the GPU grid and has at most 4 \
                             dimensions; '{input}' has {}",
                            self.inputs[at].rank
                        )));
                    }
                    (self.inputs[at].dtype, Rule::LikeInput(at))
                }
                other => (dtype.unwrap_or(DType::F32), other),
            };
            if dtype.size() != 4 {
                return Err(Error::bad(format!(
                    "{what}: output '{n}' is {dtype}; registered kernels give f32, u32 or i32"
                )));
            }
            outputs.push(OutputDef {
                name: n,
                dtype,
                rule,
            });
        }
        let Some((source, entry, grid)) = self.wgsl else {
            return Err(Error::bad(format!(
                "{what} has no WGSL: give it with .wgsl(source, entry point, grid)"
            )));
        };
        let Some(cpu) = self.cpu else {
            return Err(Error::bad(format!(
                "{what} has no Rust fallback: give it with .cpu(|call| …)"
            )));
        };
        let expected = wgsl::Expected {
            inputs: self
                .inputs
                .iter()
                .map(|i| (i.name.as_str(), i.dtype))
                .collect(),
            outputs: outputs.iter().map(|o| (o.name.as_str(), o.dtype)).collect(),
            params: self.params.iter().map(|p| p.name.as_str()).collect(),
        };
        let workgroup = wgsl::check(&expected, &source, &entry).map_err(|e| e.context(&what))?;
        if grid == Grid::Elements && workgroup[1..] != [1, 1] {
            return Err(Error::bad(format!(
                "{what}: Grid::Elements needs @workgroup_size(W) (or (W, 1, 1)); '{entry}' has \
                 ({}, {}, {})",
                workgroup[0], workgroup[1], workgroup[2]
            )));
        }

        // Every rule holds: from here on the names live as long as the
        // process.
        let inputs: Vec<InputDef> = self
            .inputs
            .iter()
            .map(|i| InputDef {
                name: leak(&i.name),
                dtype: i.dtype,
                rank: i.rank,
            })
            .collect();
        let params: Vec<ParamDef> = self
            .params
            .iter()
            .map(|p| ParamDef {
                name: leak(&p.name),
                default: p.default,
                doc: leak(&p.doc),
            })
            .collect();
        let outputs: Vec<OutputDef> = outputs
            .into_iter()
            .map(|o| OutputDef {
                name: leak(&o.name),
                dtype: o.dtype,
                rule: o.rule,
            })
            .collect();
        let name = leak(name);
        let signature = Signature {
            summary: leak(&self.summary),
            inputs: inputs
                .iter()
                .map(|i| Arg {
                    name: i.name,
                    doc: leak(&format!("{} with {} dimension(s)", i.dtype, i.rank)),
                    optional: false,
                })
                .collect::<Vec<_>>()
                .leak(),
            params: params
                .iter()
                .map(|p| Param {
                    name: p.name,
                    default: p.default.map(|d| leak(&d.to_string())),
                    doc: p.doc,
                })
                .collect::<Vec<_>>()
                .leak(),
            outputs: outputs
                .iter()
                .map(|o| Arg {
                    name: o.name,
                    doc: leak(&o.doc(&inputs)),
                    optional: false,
                })
                .collect::<Vec<_>>()
                .leak(),
            example: "(registered by the program that runs it)",
            picture_output: None,
        };
        let shader = ShaderInfo {
            file: leak(&format!("{name} (registered)")),
            source: leak(&source),
            entry_points: vec![(leak(&entry), workgroup)].leak(),
            trusted: false,
        };
        Ok(Definition {
            name,
            signature,
            shader,
            inputs,
            params,
            outputs,
            grid,
            cpu,
        })
    }
}

fn leak(s: &str) -> &'static str {
    s.to_owned().leak()
}

/// Names on every front (`-i NAME=`, URLs, JSON) are plain identifiers.
fn check_identifier(kind: &str, name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::bad(format!(
            "{kind} name '{name}' must be 1 to 64 letters, digits or '_', starting with a letter"
        )))
    }
}

/// A registered kernel: its index in the process's registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(u16);

static REGISTRY: RwLock<Vec<&'static Definition>> = RwLock::new(Vec::new());

impl UserId {
    /// Its definition.
    pub(crate) fn def(self) -> &'static Definition {
        REGISTRY.read().unwrap_or_else(|e| e.into_inner())[usize::from(self.0)]
    }
}

/// Every registered kernel, in registration order.
pub fn registered() -> Vec<Kernel> {
    let count = REGISTRY.read().unwrap_or_else(|e| e.into_inner()).len();
    (0..count).map(|i| Kernel::User(UserId(i as u16))).collect()
}

/// The registered kernel named `name`, if any.
pub(crate) fn find(name: &str) -> Option<Kernel> {
    REGISTRY
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .position(|d| d.name == name)
        .map(|i| Kernel::User(UserId(i as u16)))
}

/// A registered kernel, checked; lives as long as the process.
pub(crate) struct Definition {
    pub(crate) name: &'static str,
    pub(crate) signature: Signature,
    pub(crate) shader: ShaderInfo,
    inputs: Vec<InputDef>,
    params: Vec<ParamDef>,
    outputs: Vec<OutputDef>,
    pub(crate) grid: Grid,
    cpu: Arc<Fallback>,
}

struct OutputDef<S = &'static str> {
    name: S,
    dtype: DType,
    rule: Rule,
}

impl OutputDef {
    fn doc(&self, inputs: &[InputDef]) -> String {
        match &self.rule {
            Rule::LikeInput(i) => format!("{}, shaped like '{}'", self.dtype, inputs[*i].name),
            _ => format!("{}, shaped by the kernel's rule", self.dtype),
        }
    }
}

/// What a registered kernel's bench and probe know: nothing (a program's
/// kernel has no workload to draw; `auto` places it without a cost model
/// until one is measured).
pub const PROFILE: Profile = Profile {
    sweep: profile::VECTOR_SWEEP,
    unit: Unit {
        name: "Melem/s",
        counts: "elements of the first output",
        scale: 1e6,
    },
    amount: |n| n as f64,
    bandwidth: None,
    task: |_, _| {
        Err(Error::bad(
            "kernels registered by a program have no bench workload",
        ))
    },
    baselines: &[],
    variants: &[],
};
