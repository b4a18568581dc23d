//! Inputs as the command line's JSON gives them (`batch` lines, `run
//! --pipeline` files): a `.npy` path relative to the file, generated data
//! (`{"random": {"dtype", "shape", "seed"}}`), or any form the service
//! takes (inline numbers, base64 `.npy`); and pipelines read that way.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use anycore::backend::BackendChoice;
use anycore::coordinator::spec::{InputSource, PipelineSpec};
use anycore::kernel::random::random_tensor;
use anycore::pipeline::CheckedPipeline;
use anycore::service::api::ArrayIn;
use anycore::tensor::{DType, Handle};
use anycore::{Error, Result};

use super::output;

/// An input as a JSON file or line states it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum InputSpec {
    /// A `.npy` file, relative to the JSON file.
    File(PathBuf),
    /// Generated data.
    Random {
        /// What to generate.
        random: RandomSpec,
    },
    /// Inline numbers or base64 `.npy`, as the service takes them.
    Array(ArrayIn),
}

/// `{"dtype", "shape", "seed"}` of generated data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSpec {
    dtype: String,
    shape: Vec<usize>,
    #[serde(default)]
    seed: u64,
}

/// An input with the folder its path is relative to.
pub struct FileInput<'a> {
    pub input: InputSpec,
    pub base: &'a Path,
}

impl InputSource for FileInput<'_> {
    fn load(self, name: &str) -> Result<Handle> {
        let tensor = match self.input {
            InputSpec::File(path) => anycore::tensor::read_file(&self.base.join(path)),
            InputSpec::Random { random } => {
                let dtype = DType::from_name(&random.dtype).ok_or_else(|| {
                    Error::BadInput(format!(
                        "input '{name}': unknown dtype '{}' (use f32, u32, i32 or u8)",
                        random.dtype
                    ))
                })?;
                random_tensor(dtype, &random.shape, random.seed)
            }
            InputSpec::Array(array) => array.decode(name),
        };
        tensor.map(Handle::new)
    }
}

/// Output names, and the files they go to when they have one.
pub type OutputPaths = Vec<(String, Option<PathBuf>)>;

/// Where each output of a pipeline from a JSON file or line goes, paths
/// relative to `base`, checked before anything runs: always a `.npy` (a
/// pipeline's outputs are not drawn), never kept (no store here).
pub fn pipeline_outputs<I>(spec: &PipelineSpec<I>, base: &Path) -> Result<OutputPaths> {
    let mut paths = Vec::with_capacity(spec.outputs.len());
    for (name, out) in &spec.outputs {
        if out.keep {
            return Err(Error::BadInput(format!(
                "pipeline output '{name}': \"keep\" stores an output in a service; here \
                 give it a \"path\""
            )));
        }
        let path = out.path.as_ref().map(|p| base.join(p));
        if let Some(path) = &path {
            if output::is_png(path) {
                return Err(Error::BadInput(format!(
                    "pipeline output '{name}' -> {}: a pipeline's outputs are written as .npy",
                    path.display()
                )));
            }
            output::check_path(name, path)?;
        }
        paths.push((name.clone(), path));
    }
    Ok(paths)
}

/// A pipeline from a JSON file or line, its inputs' and outputs' paths
/// relative to `base`: checked, where it asks to run, and where each
/// output goes ([`pipeline_outputs`]).
pub fn pipeline(
    spec: PipelineSpec<InputSpec>,
    base: &Path,
    default: BackendChoice,
) -> Result<(CheckedPipeline, BackendChoice, OutputPaths)> {
    let paths = pipeline_outputs(&spec, base)?;
    let (pipeline, choice, _) = spec
        .map_inputs(|input| FileInput { input, base })
        .into_pipeline(default)?;
    Ok((pipeline, choice, paths))
}
