//! The one path from a job as text to a checked task, shared by every
//! front: `anycore run`'s flags, a `batch` line and a service request each
//! state a [`JobSpec`] with inputs of their own kind ([`InputSource`]), and
//! [`JobSpec::into_job`] checks it in one order: the kernel's name, the
//! backend's, the parameters' and the outputs' names, the inputs' names
//! (before any input is read or decoded, so a typo costs nothing), then
//! each input. A pipeline ([`PipelineSpec`], the same JSON in every front)
//! goes the same way: every step's names first, then the inputs, then the
//! pipeline as a whole.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::error::{Error, Result};
use crate::kernel::{Job, Kernel, Plan, Task, param_text};
use crate::pipeline::{CheckedPipeline, Pipeline, Step, StepInput, StepOutput, check_step_count};
use crate::tensor::Handle;

/// Where a front's input comes from: a file, generated data, inline
/// numbers, base64 bytes, a stored tensor.
pub trait InputSource {
    /// Reads or decodes the tensor for input `name` (named in errors), or
    /// finds the handle it names.
    fn load(self, name: &str) -> Result<Handle>;

    /// A name for the tensor this input stands for when several inputs may
    /// stand for the same one (a stored tensor's id): a pipeline loads it
    /// once, as one of its shared inputs.
    fn shared_key(&self) -> Option<String> {
        None
    }
}

/// A tensor already in hand (decoded by the front, fetched by a worker).
impl InputSource for Handle {
    fn load(self, _name: &str) -> Result<Handle> {
        Ok(self)
    }
}

/// A job as a front states it, nothing checked yet.
#[derive(Debug)]
pub struct JobSpec<'a, I> {
    /// The kernel's name.
    pub kernel: &'a str,
    /// The backend's name, if the job names one.
    pub backend: Option<&'a str>,
    /// Parameters as text, by name.
    pub params: Vec<(String, String)>,
    /// Names of the outputs the job wants.
    pub outputs: Vec<&'a str>,
    /// Inputs by name.
    pub inputs: Vec<(String, I)>,
}

/// A JSON decoding error in words a user can act on: serde names the
/// untagged enum an input failed to match; this says which forms it takes.
pub fn explain_json(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let forms = if text.contains("untagged enum StepInputSpec") {
        "a step's input must be an earlier step's output {\"step\", \"output\"}, a pipeline \
         input {\"input\": NAME}, or an array"
    } else if text.contains("untagged enum") {
        "an input must be an array"
    } else {
        return text;
    };
    let at = text
        .find(" at line ")
        .map_or(String::new(), |i| text[i..].to_owned());
    format!(
        "{forms}: {{\"dtype\", \"shape\", \"data\"}}, {{\"npy\": BASE64}} or a stored tensor \
         {{\"tensor\": ID}} (its id, 32 hex digits); in a file or a batch line also a .npy path or \
         {{\"random\": {{\"dtype\", \"shape\", \"seed\"}}}}{at}"
    )
}

/// Parameters given as JSON (a batch line, a service request) as the text
/// jobs take; arrays and objects are refused, naming the parameter.
pub fn json_params(params: &BTreeMap<String, serde_json::Value>) -> Result<Vec<(String, String)>> {
    params
        .iter()
        .map(|(name, value)| Ok((name.clone(), param_text(name, value)?)))
        .collect()
}

impl<I: InputSource> JobSpec<'_, I> {
    /// The checked job, its kernel, and where it asks to run (`default`
    /// when it does not say).
    pub fn into_job(self, default: BackendChoice) -> Result<(Job, BackendChoice)> {
        let kernel = Kernel::from_name(self.kernel)?;
        let choice = match self.backend {
            Some(name) => BackendChoice::from_name(name)?,
            None => default,
        };
        let mut job = Job::new(kernel);
        for (name, value) in self.params {
            kernel.check_param(&name)?;
            job = job.param(&name, value);
        }
        for name in &self.outputs {
            kernel.check_output(name)?;
        }
        for (i, (name, _)) in self.inputs.iter().enumerate() {
            kernel.check_input(name)?;
            if self.inputs[..i].iter().any(|(other, _)| other == name) {
                return Err(Error::bad(format!("input '{name}' is given twice")));
            }
        }
        for (name, source) in self.inputs {
            let tensor = source.load(&name)?;
            job = job.input(&name, tensor);
        }
        Ok((job, choice))
    }

    /// [`JobSpec::into_job`], then the kernel's own checks.
    pub fn into_task(self, default: BackendChoice) -> Result<(Task, BackendChoice)> {
        self.into_planned_task(default)
            .map(|(task, _, choice)| (task, choice))
    }

    /// [`JobSpec::into_task`], with what the task will give, admitted to
    /// run here ([`Task::admitted`]).
    pub fn into_planned_task(self, default: BackendChoice) -> Result<(Task, Plan, BackendChoice)> {
        let (job, choice) = self.into_job(default)?;
        let (task, plan) = Task::admitted(job)?;
        Ok((task, plan, choice))
    }
}

/// A pipeline as every front states it in JSON:
/// `{"inputs"?: {NAME: INPUT}, "steps": [{"name", "kernel", "params",
/// "inputs": {NAME: INPUT | {"step", "output"} | {"input"}}}], "outputs":
/// {NAME: {"step", "output", "path"?, "keep"?}}, "backend"?}`, with inputs
/// `I` of the front's own kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(serialize = "I: Serialize", deserialize = "I: Deserialize<'de>")
)]
pub struct PipelineSpec<I> {
    /// Inputs given once for several steps (`{"input": NAME}` in a step).
    #[serde(default = "BTreeMap::new")]
    pub inputs: BTreeMap<String, I>,
    /// The steps, in order.
    pub steps: Vec<StepSpec<I>>,
    /// The results wanted, by the name they are returned under.
    pub outputs: BTreeMap<String, OutputSpec>,
    /// `auto`, `gpu` or `cpu`.
    #[serde(default)]
    pub backend: Option<String>,
}

/// One step of a [`PipelineSpec`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(serialize = "I: Serialize", deserialize = "I: Deserialize<'de>")
)]
pub struct StepSpec<I> {
    /// Its name, unique in the pipeline.
    pub name: String,
    /// Its kernel's name.
    pub kernel: String,
    /// Parameters (numbers, strings or booleans).
    #[serde(default, deserialize_with = "crate::kernel::scalar_params")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Inputs by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, StepInputSpec<I>>,
}

/// A step's input: an earlier step's output, or an input of the front's
/// own kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepInputSpec<I> {
    /// `{"step": NAME, "output": NAME}`.
    Output(StepRef),
    /// `{"input": NAME}`: one of the pipeline's own inputs.
    Shared(SharedRef),
    /// A tensor the front reads or decodes.
    Given(I),
}

/// `{"step": NAME, "output": NAME}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRef {
    /// The step's name.
    pub step: String,
    /// Its output's name.
    pub output: String,
}

/// `{"input": NAME}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedRef {
    /// The pipeline input's name.
    pub input: String,
}

/// A result wanted: a step's output, and where the command line writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// The step's name.
    pub step: String,
    /// Its output's name.
    pub output: String,
    /// A `.npy` file to write it to (command-line fronts only).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Keep it in the service's store instead of returning its elements
    /// (the service only).
    #[serde(default)]
    pub keep: bool,
}

impl<I> PipelineSpec<I> {
    /// The same pipeline with each given input passed through `f` (to
    /// give file paths their folder, say).
    pub fn map_inputs<J>(self, f: impl Fn(I) -> J) -> PipelineSpec<J> {
        let mapped = self.try_map_inputs(|_, i| Ok::<_, std::convert::Infallible>(f(i)));
        match mapped {
            Ok(spec) => spec,
            Err(never) => match never {},
        }
    }

    /// The same pipeline with each given input passed through `f`, in
    /// order, with what names it (`pipeline input 'x'`, `step 's' input
    /// 'x'`); the first error ends it.
    pub fn try_map_inputs<J, E>(
        self,
        mut f: impl FnMut(&str, I) -> std::result::Result<J, E>,
    ) -> std::result::Result<PipelineSpec<J>, E> {
        let mut inputs = BTreeMap::new();
        for (name, input) in self.inputs {
            let input = f(&format!("pipeline input '{name}'"), input)?;
            inputs.insert(name, input);
        }
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in self.steps {
            let mut step_inputs = BTreeMap::new();
            for (name, input) in step.inputs {
                let input = match input {
                    StepInputSpec::Output(r) => StepInputSpec::Output(r),
                    StepInputSpec::Shared(r) => StepInputSpec::Shared(r),
                    StepInputSpec::Given(i) => {
                        StepInputSpec::Given(f(&format!("step '{}' input '{name}'", step.name), i)?)
                    }
                };
                step_inputs.insert(name, input);
            }
            steps.push(StepSpec {
                name: step.name,
                kernel: step.kernel,
                params: step.params,
                inputs: step_inputs,
            });
        }
        Ok(PipelineSpec {
            inputs,
            steps,
            outputs: self.outputs,
            backend: self.backend,
        })
    }
}

/// A pipeline from its spec: checked, where it asks to run, and each
/// result's path if it has one.
pub type Admitted = (
    CheckedPipeline,
    BackendChoice,
    Vec<(String, Option<PathBuf>)>,
);

impl<I: InputSource> PipelineSpec<I> {
    /// The checked pipeline, admitted to run here (its memory reserved:
    /// [`CheckedPipeline::reserve`]), where it asks to run (`default` when
    /// it does not say), and each result's path if it has one.
    pub fn into_pipeline(self, default: BackendChoice) -> Result<Admitted> {
        let (pipeline, choice, paths) = self.into_checked_pipeline(default)?;
        Ok((pipeline.reserve()?, choice, paths))
    }

    /// [`PipelineSpec::into_pipeline`] for a front that has it run
    /// elsewhere: checked, nothing reserved here. Checks every step's
    /// kernel, parameter and input names before any input is read, then
    /// reads the inputs, then checks the pipeline as a whole
    /// ([`Pipeline::check`]).
    pub fn into_checked_pipeline(self, default: BackendChoice) -> Result<Admitted> {
        let choice = match &self.backend {
            Some(name) => BackendChoice::from_name(name)?,
            None => default,
        };
        // Before any input is loaded: each step's inputs cost memory.
        check_step_count(self.steps.len())?;
        let mut kernels = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let at = |e: Error| e.context(&format!("step '{}'", step.name));
            let kernel = Kernel::from_name(&step.kernel).map_err(at)?;
            for name in step.params.keys() {
                kernel.check_param(name).map_err(at)?;
            }
            for name in step.inputs.keys() {
                kernel.check_input(name).map_err(at)?;
            }
            kernels.push(kernel);
        }
        let mut pipeline = Pipeline::new();
        for (name, source) in self.inputs {
            let tensor = source
                .load(&name)
                .map_err(|e| e.context(&format!("pipeline input '{name}'")))?;
            pipeline = pipeline.input(&name, tensor);
        }
        // Inputs standing for one tensor become one pipeline input, loaded
        // once, named " KEY" (a leading space, unlikely in the JSON's own
        // input names; a clash is refused by `check` as a name used twice).
        let mut shared: Vec<String> = Vec::new();
        for (spec, kernel) in self.steps.into_iter().zip(kernels) {
            let at = |e: Error| e.context(&format!("step '{}'", spec.name));
            let mut step = Step::new(&spec.name, kernel);
            for (name, value) in json_params(&spec.params).map_err(at)? {
                step = step.param(&name, value);
            }
            for (name, input) in spec.inputs {
                let input = match input {
                    StepInputSpec::Output(r) => StepInput::Output(StepOutput {
                        step: r.step,
                        output: r.output,
                    }),
                    StepInputSpec::Shared(r) => StepInput::Shared(r.input),
                    StepInputSpec::Given(source) => match source.shared_key() {
                        Some(key) => {
                            let key = format!(" {key}");
                            if !shared.contains(&key) {
                                let tensor = source.load(&name).map_err(at)?;
                                pipeline = pipeline.input(&key, tensor);
                                shared.push(key.clone());
                            }
                            StepInput::Shared(key)
                        }
                        None => StepInput::Tensor(source.load(&name).map_err(at)?),
                    },
                };
                step.inputs.insert(name, input);
            }
            pipeline = pipeline.step(step);
        }
        let mut paths = Vec::with_capacity(self.outputs.len());
        for (name, out) in self.outputs {
            pipeline = pipeline.output(&name, &out.step, &out.output);
            if out.keep {
                pipeline = pipeline.keep(&name);
            }
            paths.push((name, out.path));
        }
        Ok((pipeline.check()?, choice, paths))
    }
}
