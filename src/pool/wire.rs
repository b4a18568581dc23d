//! What travels through NATS: a job on the work-queue stream, its result
//! in the key-value bucket, and the arrays of both — inline as base64
//! `.npy` when small, by name in the object store when not.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::coordinator::spec::{PipelineSpec, StepInputSpec};
use crate::error::{Error, Result};
use crate::service::api::{RunInfo, StepResponse};
use crate::tensor::{DType, Spec, Tensor, npy};

/// A job as a front puts it on the stream; its id is also the message id
/// (the stream drops a resubmission) and the key of its result.
/// Unknown fields are ignored: a worker older than its front still runs
/// its jobs.
#[derive(Debug, Serialize, Deserialize)]
pub struct PoolJob {
    /// The job's id: letters, digits, `-` and `_`.
    pub id: String,
    /// Kernel name ([`PIPELINE`] for a pipeline).
    pub kernel: String,
    /// Parameters (numbers, strings or booleans), as the HTTP API takes
    /// them.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// `gpu`, `cpu` or none (anywhere): which workers may take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Input arrays by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, WireArray>,
    /// A pipeline, run as one unit by one worker, in place of a kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineSpec<WireArray>>,
    /// When its time is up, in milliseconds since the Unix epoch (its
    /// front's deadline, counted from its arrival there): a worker stops
    /// it then, and ends a job delivered later at once, unrun. A worker
    /// runs no job longer than its `--max-job-s` either. (The machines'
    /// clocks are taken to agree, to well under a job's time.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_unix_ms: Option<u64>,
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// The `kernel` of a pipeline's job (and the last token of its subject).
pub const PIPELINE: &str = "pipeline";

impl PoolJob {
    /// Every array it carries: its inputs, or its pipeline's.
    pub fn arrays(&self) -> Vec<&WireArray> {
        let mut arrays: Vec<&WireArray> = self.inputs.values().collect();
        if let Some(p) = &self.pipeline {
            arrays.extend(p.inputs.values());
            for step in &p.steps {
                arrays.extend(step.inputs.values().filter_map(|i| match i {
                    StepInputSpec::Given(w) => Some(w),
                    _ => None,
                }));
            }
        }
        arrays
    }
}

/// An array on the wire.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WireArray {
    /// Element type.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Base64 `.npy` bytes, for a small array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npy: Option<String>,
    /// Its name in the object store, for a large one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

impl WireArray {
    /// A small array, inline.
    pub fn inline(tensor: &Tensor) -> WireArray {
        WireArray {
            dtype: tensor.dtype().name().to_owned(),
            shape: tensor.shape().to_vec(),
            npy: Some(BASE64.encode(npy::to_bytes(tensor))),
            object: None,
        }
    }

    /// A large array, by its object's name.
    pub fn stored(tensor: &Tensor, object: String) -> WireArray {
        WireArray {
            dtype: tensor.dtype().name().to_owned(),
            shape: tensor.shape().to_vec(),
            npy: None,
            object: Some(object),
        }
    }

    /// Its element type and shape, if its dtype is one anycore knows.
    pub fn spec(&self) -> Option<Spec> {
        Some(Spec {
            dtype: DType::from_name(&self.dtype)?,
            shape: self.shape.clone(),
        })
    }

    /// The tensor of inline bytes, or of an object's bytes; `what` names
    /// it in errors (`array 'x'`, `step 's' input 'x'`).
    pub fn decode(&self, what: &str, object: Option<Vec<u8>>) -> Result<Tensor> {
        let bad = |m: String| Error::BadInput(format!("{what}: {m}"));
        let bytes = match (&self.npy, object) {
            (Some(text), _) => BASE64
                .decode(text.as_bytes())
                .map_err(|e| bad(format!("'npy' is not valid base64 ({e})")))?,
            (None, Some(bytes)) => bytes,
            (None, None) => return Err(bad("neither 'npy' nor a stored object".into())),
        };
        let tensor = npy::from_bytes(&bytes).map_err(bad)?;
        if tensor.dtype().name() != self.dtype || tensor.shape() != self.shape.as_slice() {
            return Err(bad(format!(
                "holds {} where {} {:?} was declared",
                tensor.describe(),
                self.dtype,
                self.shape
            )));
        }
        Ok(tensor)
    }
}

/// Who ran a job.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerInfo {
    /// The worker's name (`host:pid` unless given).
    pub name: String,
    /// Its host.
    pub host: String,
    /// Its GPU, if it has one it uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
}

/// How a job ended.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It ran; the outputs are there.
    Ok,
    /// Bad input: refused at once, never retried.
    BadInput,
    /// It failed on every attempt and went to the dead-letter stream.
    DeadLetter,
    /// It ran past its deadline and was stopped (never retried).
    TimedOut,
}

/// A job's result, as the worker that finished it stores it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PoolResult {
    /// The job's id.
    pub id: String,
    /// Its kernel.
    pub kernel: String,
    /// How it ended.
    pub status: Status,
    /// What went wrong, unless it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The worker that ran it (or gave up on it).
    pub worker: WorkerInfo,
    /// Which delivery of the job this was, from 1.
    pub attempt: u64,
    /// Where it ran, why, its phases and traffic, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    /// Output arrays by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, WireArray>,
    /// A pipeline's steps, each with its phases and traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResponse>,
}

impl PoolResult {
    /// Ok for a job that ran; else an error saying why not (bad input;
    /// dead-lettered, naming the worker that gave up).
    pub fn succeeded(&self) -> Result<()> {
        let why = || self.error.clone().unwrap_or_default();
        match self.status {
            Status::Ok => Ok(()),
            Status::BadInput => Err(Error::BadInput(why())),
            Status::DeadLetter => Err(Error::Remote(format!(
                "dead-lettered by {}: {}",
                self.worker.name,
                why()
            ))),
            Status::TimedOut => Err(Error::Remote(format!(
                "stopped by {}: {}",
                self.worker.name,
                why()
            ))),
        }
    }
}

/// Checks a job id: 1 to 128 letters, digits, `-` or `_` (it is a message
/// id, a key and part of object names).
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(Error::BadInput(format!(
            "job id '{id}' must be 1 to 128 letters, digits, '-' or '_'"
        ))),
    }
}
