//! The lines of a jobs file (`anycore batch`) and what became of each:
//! shared by the jobs run here and those sent to a pool (`--nats`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use anycore::backend::{BackendKind, Timings, Traffic};
use anycore::pool::wire::PoolResult;
use anycore::{Error, Result};

use super::inputs::InputSpec;
use super::output;

/// A job's line: `{"id"?, "kernel", "inputs", "params", "outputs",
/// "backend"?}`, paths relative to the jobs file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobLine {
    pub id: Option<String>,
    pub kernel: String,
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    #[serde(default, deserialize_with = "anycore::kernel::scalar_params")]
    pub params: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub outputs: BTreeMap<String, PathBuf>,
    pub backend: Option<String>,
}

/// A pipeline's line (one with `"steps"`): its id (`line N` unless it
/// gives one) and its fields but the id, the JSON of `POST /v1/pipelines`.
pub(super) fn pipeline_line(line: &str, line_no: usize) -> Option<(String, serde_json::Value)> {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(line) else {
        return None;
    };
    if !fields.contains_key("steps") {
        return None;
    }
    let id = match fields.remove("id") {
        Some(serde_json::Value::String(id)) => id,
        _ => format!("line {line_no}"),
    };
    Some((id, serde_json::Value::Object(fields)))
}

/// One job's line in `--results`.
#[derive(Serialize)]
pub(super) struct Outcome {
    pub(super) id: String,
    pub(super) status: &'static str,
    /// The pool's worker that ran it (`--nats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) worker: Option<String>,
    /// Which delivery ran it, from 1 (`--nats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) attempt: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) placement_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) timings_ms: Option<Timings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) traffic: Option<Traffic>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
}

/// Output names and the files they go to.
pub(super) type OutputFiles = Vec<(String, PathBuf)>;

impl JobLine {
    /// Its outputs' files (relative to `base`), checked before anything
    /// runs: each a `.npy` (or a picture's `.png`) in a folder that exists.
    pub(super) fn output_paths(&self, base: &Path) -> Result<OutputFiles> {
        let paths: OutputFiles = self
            .outputs
            .iter()
            .map(|(name, path)| (name.clone(), base.join(path)))
            .collect();
        output::check_formats(
            &self.kernel,
            paths.iter().map(|(n, p)| (n.as_str(), p.as_path())),
        )?;
        Ok(paths)
    }
}

impl Outcome {
    /// A line that ran on `backend`.
    pub(super) fn ran(
        id: String,
        backend: BackendKind,
        why: &str,
        timings: Timings,
        traffic: Traffic,
    ) -> Outcome {
        Outcome {
            id,
            status: "ok",
            backend: Some(backend.to_string()),
            placement_reason: Some(why.to_owned()),
            timings_ms: Some(timings),
            traffic: Some(traffic),
            error: None,
            worker: None,
            attempt: None,
        }
    }

    /// A line the pool's worker ran (its id set by the caller).
    pub(super) fn pooled(result: PoolResult) -> Outcome {
        let run = result.run;
        Outcome {
            id: result.id,
            status: "ok",
            backend: run.as_ref().map(|r| r.backend.clone()),
            placement_reason: run.as_ref().map(|r| r.placement_reason.clone()),
            timings_ms: run.as_ref().map(|r| r.timings_ms),
            traffic: run.map(|r| r.traffic),
            error: None,
            worker: Some(result.worker.name),
            attempt: Some(result.attempt),
        }
    }

    /// This outcome once `write` (blocking file work, run off the async
    /// workers) has written the outputs; an error if it failed.
    pub(super) async fn after_writing(
        self,
        write: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Outcome {
        let written = tokio::task::spawn_blocking(write)
            .await
            .unwrap_or_else(|e| Err(Error::Panicked(e.to_string())));
        match written {
            Ok(()) => self,
            Err(e) => Outcome {
                status: "error",
                error: Some(e.to_string()),
                ..self
            },
        }
    }

    /// A line that failed before or while it ran.
    pub(super) fn failed(id: String, error: String) -> Outcome {
        Outcome {
            id,
            status: "error",
            backend: None,
            placement_reason: None,
            timings_ms: None,
            traffic: None,
            error: Some(error),
            worker: None,
            attempt: None,
        }
    }
}
