//! The HTTP API's JSON shapes and their conversion to and from jobs.
//!
//! A job: `{"kernel", "params", "backend", "inputs": {NAME: {"dtype",
//! "shape", "data": [...]} | {"npy": "<base64 .npy>"}}, "outputs": "inline" |
//! "npy"}`. A result: the `anycore run --json` report, with each output's
//! array inline (`data`) or as base64 `.npy` (`npy`). A pipeline: a
//! [`PipelineSpec`](crate::coordinator::spec::PipelineSpec) whose inputs
//! are [`ArrayIn`]; its result, a [`PipelineResponse`].

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendChoice, BackendKind, Timings, Traffic};
use crate::coordinator::spec::{InputSource, JobSpec, json_params};
use crate::coordinator::{JobReport, PipelineReport};
use crate::error::{Error, Result};
use crate::kernel::{Plan, Task};
use crate::tensor::{DType, Handle, Tensor, TensorData, npy};

use super::ids::Id;
use super::store::Store;

/// A job as posted to `POST /v1/jobs`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Kernel name.
    pub kernel: String,
    /// Parameters (numbers, strings or booleans).
    #[serde(default, deserialize_with = "crate::kernel::scalar_params")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// `auto` (default), `gpu` or `cpu`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Input arrays by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, ArrayIn>,
    /// How to return outputs.
    #[serde(default)]
    pub outputs: OutputForm,
    /// Outputs to keep in the service's store instead of returning their
    /// elements: each comes back as `{"tensor": ID, "dtype", "shape"}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<String>,
    /// Longest the job may take, from its arrival to its answer, in
    /// milliseconds: past it, it is stopped (504 `deadline_exceeded`). At
    /// most, and by default, the service's limit (`serve --max-job-s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/jobs?wait=false`: answer at once with the job's id.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// Whether to wait for the result (default true).
    pub wait: Option<bool>,
}

/// `POST /v1/pipelines?outputs=npy&timeout_ms=N`: how outputs come back,
/// and the deadline.
#[derive(Debug, Deserialize)]
pub struct PipelineQuery {
    /// How outputs come back (default inline).
    pub outputs: Option<OutputForm>,
    /// Longest the pipeline may take, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// An input array: inline numbers, or a base64 `.npy` file.
///
/// Read by its keys ([`ArrayInVisitor`]), not as an untagged enum: serde
/// buffers an untagged enum's whole value before trying each form, which
/// made a 32 MiB inline body cost over 400 MiB while it was parsed.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ArrayIn {
    /// `{"dtype": "f32", "shape": [2, 2], "data": [1, 2, 3, 4]}`.
    Inline {
        /// Element type.
        dtype: String,
        /// Shape.
        shape: Vec<usize>,
        /// Elements in C order.
        data: Vec<f64>,
    },
    /// `{"npy": "<base64>"}`.
    Npy {
        /// Base64 of the `.npy` bytes.
        npy: String,
    },
    /// `{"tensor": ID}`: a tensor the service stores.
    Stored {
        /// Its id.
        tensor: Id,
    },
}

impl<'de> Deserialize<'de> for ArrayIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(ArrayInVisitor)
    }
}

/// Reads an [`ArrayIn`] from its keys, each value straight into its type.
struct ArrayInVisitor;

/// What an input array may be, for errors.
const ARRAY_FORMS: &str = "an input must be an array: {\"dtype\", \"shape\", \"data\"}, \
     {\"npy\": BASE64} or a stored tensor {\"tensor\": ID} (its id, 32 hex digits)";

impl<'de> serde::de::Visitor<'de> for ArrayInVisitor {
    type Value = ArrayIn;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(ARRAY_FORMS)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<ArrayIn, A::Error> {
        use serde::de::Error as _;
        fn once<T, E: serde::de::Error>(
            slot: &mut Option<T>,
            key: &'static str,
            v: T,
        ) -> std::result::Result<(), E> {
            match slot.replace(v) {
                Some(_) => Err(E::duplicate_field(key)),
                None => Ok(()),
            }
        }
        let (mut dtype, mut shape, mut data, mut npy, mut tensor) = (None, None, None, None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "dtype" => once(&mut dtype, "dtype", map.next_value::<String>()?)?,
                "shape" => once(&mut shape, "shape", map.next_value::<Vec<usize>>()?)?,
                "data" => once(&mut data, "data", map.next_value::<Vec<f64>>()?)?,
                "npy" => once(&mut npy, "npy", map.next_value::<String>()?)?,
                "tensor" => once(&mut tensor, "tensor", map.next_value::<Id>()?)?,
                other => {
                    return Err(A::Error::custom(format!(
                        "unknown key '{other}' in an input; {ARRAY_FORMS}"
                    )));
                }
            }
        }
        match (dtype, shape, data, npy, tensor) {
            (Some(dtype), Some(shape), Some(data), None, None) => {
                Ok(ArrayIn::Inline { dtype, shape, data })
            }
            (None, None, None, Some(npy), None) => Ok(ArrayIn::Npy { npy }),
            (None, None, None, None, Some(tensor)) => Ok(ArrayIn::Stored { tensor }),
            _ => Err(A::Error::custom(ARRAY_FORMS)),
        }
    }
}

/// How outputs come back.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutputForm {
    /// As JSON numbers.
    #[default]
    Inline,
    /// As base64 `.npy` bytes.
    Npy,
}

/// A finished job as the API returns it, and as `anycore run --json`
/// prints it: one report type for every front, whose outputs are
/// [`ArrayOut`] here and paths and small values on the command line.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobResponse<O = ArrayOut> {
    /// Kernel name.
    pub kernel: String,
    /// Where it ran, why, its phases and what it moved.
    #[serde(flatten)]
    pub run: RunInfo,
    /// Output arrays.
    pub outputs: BTreeMap<String, O>,
}

/// Where work ran, why, how long each phase took and what it moved: the
/// head of every report, a job's and a pipeline's (flattened into them).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    /// `gpu` or `cpu`.
    pub backend: String,
    /// Device name.
    pub device: String,
    /// Why it ran there.
    pub placement_reason: String,
    /// Milliseconds per phase.
    pub timings_ms: Timings,
    /// Bytes moved between host and device, and submissions to the device.
    #[serde(default)]
    pub traffic: Traffic,
}

/// An output array.
#[derive(Debug, Serialize, Deserialize)]
pub struct ArrayOut {
    /// Element type.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Elements, when asked for inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Elements>,
    /// Base64 `.npy` bytes, when asked for npy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npy: Option<String>,
    /// Its id in the service's store, when it was kept there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor: Option<Id>,
}

/// A checked job request, ready to run.
pub struct Decoded {
    /// The task.
    pub task: Task,
    /// What it will give ([`Task::planned`]).
    pub plan: Plan,
    /// Where it may run.
    pub choice: BackendChoice,
    /// How its outputs come back.
    pub form: OutputForm,
}

impl JobRequest {
    /// Checks the request and builds the task and its backend choice;
    /// `{"tensor": ID}` inputs come from `store`.
    pub fn into_task(self, store: &Store) -> Result<Decoded> {
        let spec = JobSpec {
            kernel: &self.kernel,
            backend: self.backend.as_deref(),
            params: json_params(&self.params)?,
            outputs: self.keep.iter().map(String::as_str).collect(),
            inputs: self
                .inputs
                .into_iter()
                .map(|(name, input)| (name, StoreInput { input, store }))
                .collect(),
        };
        let (task, plan, choice) = spec.into_planned_task(BackendChoice::Auto)?;
        Ok(Decoded {
            task,
            plan,
            choice,
            form: self.outputs,
        })
    }
}

/// An input that may name a stored tensor.
pub struct StoreInput<'a> {
    /// The input as given.
    pub input: ArrayIn,
    /// Where `{"tensor": ID}` is looked up.
    pub store: &'a Store,
}

impl InputSource for StoreInput<'_> {
    /// Every read of one stored tensor is one tensor.
    fn shared_key(&self) -> Option<String> {
        match self.input {
            ArrayIn::Stored { tensor } => Some(format!("tensor {tensor}")),
            _ => None,
        }
    }

    /// A stored tensor is shared, not copied.
    fn load(self, name: &str) -> Result<Handle> {
        match self.input {
            ArrayIn::Stored { tensor } => self
                .store
                .get(tensor)
                .map_err(|e| e.context(&format!("input '{name}'"))),
            input => input.load(name),
        }
    }
}

impl InputSource for ArrayIn {
    fn load(self, name: &str) -> Result<Handle> {
        self.decode(name).map(Handle::new)
    }
}

impl ArrayIn {
    /// The tensor the JSON gives (input `name`, named in errors).
    pub fn decode(self, name: &str) -> Result<Tensor> {
        self.decode_as(&format!("input '{name}'"))
    }

    /// The tensor the JSON gives; `what` names it in errors (`step 's'
    /// input 'x'`).
    pub fn decode_as(self, what: &str) -> Result<Tensor> {
        let bad = |message: String| Error::BadInput(format!("{what}: {message}"));
        match self {
            ArrayIn::Stored { tensor } => Err(bad(format!(
                "{{\"tensor\": {tensor}}} names a tensor a service stores; here give the \
                 data itself"
            ))),
            ArrayIn::Npy { npy } => {
                let bytes = BASE64
                    .decode(npy.as_bytes())
                    .map_err(|e| bad(format!("'npy' is not valid base64 ({e})")))?;
                npy::from_bytes(&bytes).map_err(bad)
            }
            ArrayIn::Inline { dtype, shape, data } => {
                let dtype = DType::from_name(&dtype).ok_or_else(|| {
                    bad(format!("unknown dtype '{dtype}' (use f32, u32, i32 or u8)"))
                })?;
                let expected = crate::tensor::element_count(&shape);
                if expected != Some(data.len()) {
                    return Err(bad(format!(
                        "shape {shape:?} needs {} elements but 'data' has {}",
                        expected.map_or("too many".into(), |n| n.to_string()),
                        data.len()
                    )));
                }
                let ints = |min: f64, max: f64| -> Result<&[f64]> {
                    match data
                        .iter()
                        .position(|&v| v.fract() != 0.0 || v < min || v > max)
                    {
                        Some(i) => Err(bad(format!(
                            "element {i} ({}) is not a {dtype} value",
                            data[i]
                        ))),
                        None => Ok(&data),
                    }
                };
                let values = match dtype {
                    DType::F32 => TensorData::F32(data.iter().map(|&v| v as f32).collect()),
                    DType::U32 => TensorData::U32(
                        ints(0.0, u32::MAX.into())?
                            .iter()
                            .map(|&v| v as u32)
                            .collect(),
                    ),
                    DType::I32 => TensorData::I32(
                        ints(i32::MIN.into(), i32::MAX.into())?
                            .iter()
                            .map(|&v| v as i32)
                            .collect(),
                    ),
                    DType::U8 => {
                        TensorData::U8(ints(0.0, 255.0)?.iter().map(|&v| v as u8).collect())
                    }
                };
                Ok(Tensor::new(shape, values))
            }
        }
    }
}

impl RunInfo {
    /// The head of a report of work that ran on `backend`.
    fn new(
        backend: BackendKind,
        device: String,
        placement_reason: String,
        timings_ms: Timings,
        traffic: Traffic,
    ) -> Self {
        RunInfo {
            backend: backend.to_string(),
            device,
            placement_reason,
            timings_ms,
            traffic,
        }
    }
}

impl<O> JobResponse<O> {
    /// The report of a finished job, with its outputs described by
    /// `describe`.
    pub fn describe(report: JobReport, describe: impl Fn(&str, Tensor) -> O) -> Self {
        let outputs = report
            .outputs
            .into_iter()
            .map(|(name, t)| {
                let out = describe(&name, t);
                (name, out)
            })
            .collect();
        JobResponse {
            kernel: report.kernel.name().into(),
            run: RunInfo::new(
                report.backend,
                report.device,
                report.placement_reason,
                report.timings,
                report.traffic,
            ),
            outputs,
        }
    }
}

impl JobResponse {
    /// The API's view of a finished job.
    pub fn new(report: JobReport, form: OutputForm) -> Self {
        Self::describe(report, |_, t| ArrayOut::new(t, form))
    }
}

impl ArrayOut {
    /// An output kept in the store as `id`: its dtype and shape, no
    /// elements.
    pub fn kept(t: &Handle, id: Id) -> Self {
        ArrayOut {
            dtype: t.dtype().name().into(),
            shape: t.shape().to_vec(),
            data: None,
            npy: None,
            tensor: Some(id),
        }
    }

    /// An output as the API returns it, in `form`.
    pub fn new(t: Tensor, form: OutputForm) -> Self {
        let (dtype, shape) = (t.dtype().name().into(), t.shape().to_vec());
        let (data, npy) = match form {
            OutputForm::Inline => (Some(Elements::Of(t)), None),
            OutputForm::Npy => (None, Some(BASE64.encode(npy::to_bytes(&t)))),
        };
        ArrayOut {
            dtype,
            shape,
            data,
            npy,
            tensor: None,
        }
    }
}

/// A finished pipeline as the API returns it (`POST /v1/pipelines`), and as
/// `anycore run --pipeline --json` prints it: a job's report plus its
/// steps.
#[derive(Debug, Serialize, Deserialize)]
pub struct PipelineResponse<O = ArrayOut> {
    /// Where every step ran, why, and the phases and traffic over all steps.
    #[serde(flatten)]
    pub run: RunInfo,
    /// Each step, in order.
    pub steps: Vec<StepResponse>,
    /// The outputs asked for, by the names they were asked under.
    pub outputs: BTreeMap<String, O>,
}

/// One step of a [`PipelineResponse`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepResponse {
    /// The step's name.
    pub name: String,
    /// Its kernel.
    pub kernel: String,
    /// Milliseconds per phase.
    pub timings_ms: Timings,
    /// What it moved.
    #[serde(default)]
    pub traffic: Traffic,
}

impl<O> PipelineResponse<O> {
    /// The report of a finished pipeline, with its outputs described by
    /// `describe`.
    pub fn describe(report: PipelineReport, describe: impl Fn(&str, Tensor) -> O) -> Self {
        PipelineResponse {
            run: RunInfo::new(
                report.backend,
                report.device,
                report.placement_reason,
                report.timings,
                report.traffic,
            ),
            steps: report
                .steps
                .into_iter()
                .map(|s| StepResponse {
                    name: s.name,
                    kernel: s.kernel.name().into(),
                    timings_ms: s.timings,
                    traffic: s.traffic,
                })
                .collect(),
            outputs: report
                .outputs
                .into_iter()
                .map(|(name, t)| {
                    let out = describe(&name, t);
                    (name, out)
                })
                .collect(),
        }
    }
}

impl PipelineResponse {
    /// The API's view of a finished pipeline.
    pub fn new(report: PipelineReport, form: OutputForm) -> Self {
        Self::describe(report, |_, t| ArrayOut::new(t, form))
    }
}

/// An output's elements as JSON numbers (NaN and infinities, which JSON
/// lacks, as null).
#[derive(Debug)]
pub enum Elements {
    /// To send: written from the tensor as the response is encoded, with
    /// no JSON tree between (which cost 32 bytes an element).
    Of(Tensor),
    /// As received; `None` for a null.
    Received(Vec<Option<f64>>),
}

impl Elements {
    /// How many there are.
    pub fn len(&self) -> usize {
        match self {
            Elements::Of(t) => t.len(),
            Elements::Received(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Serialize for Elements {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Elements::Of(t) => t.data().serialize(s),
            Elements::Received(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Elements {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Vec::<Option<f64>>::deserialize(d).map(Elements::Received)
    }
}

/// Decodes an [`ArrayOut`] sent as `npy` back into a tensor (for clients).
pub fn decode_npy(out: &ArrayOut) -> Result<Tensor> {
    let text = out
        .npy
        .as_deref()
        .ok_or_else(|| Error::Remote("the server sent no npy bytes".into()))?;
    let bytes = BASE64
        .decode(text.as_bytes())
        .map_err(|e| Error::Remote(format!("the server sent bad base64: {e}")))?;
    npy::from_bytes(&bytes).map_err(Error::Remote)
}

/// Encodes a tensor for a request.
pub fn encode_npy(t: &Tensor) -> ArrayIn {
    ArrayIn::Npy {
        npy: BASE64.encode(npy::to_bytes(t)),
    }
}
