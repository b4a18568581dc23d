//! Pipelines: an ordered list of steps, each a job whose inputs are tensors
//! or outputs of earlier steps, run as one unit on one backend.
//!
//! [`Pipeline::check`] checks the whole pipeline before anything runs: the
//! steps' names (unique, every reference to an earlier step and to an
//! output that step gives), each step's inputs and parameters through its
//! kernel's [`Plan`] (dtypes and shapes of outputs flowing from step to
//! step), and the outputs asked for. Errors name the step.
//!
//! [`CheckedPipeline::run`] then runs the steps in order through a
//! function that runs one task (the coordinator passes its backend's):
//! each step's outputs that later steps read (or that are asked for) are
//! kept where they were computed — on the GPU, in device memory — and
//! handed to those steps as handles (the last reader gets the only one, so
//! a CPU kernel may write over it); the others are dropped. Only the
//! outputs asked for come home, at the end (or stay as handles, for those
//! the caller keeps), and every step's timings are reported.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::backend::{Backend, Fetched, Run, Timings, Traffic};
use crate::error::{Error, Result};
use crate::kernel::{Job, Kernel, Outputs, Plan, Task};
use crate::tensor::{Handle, Spec, Tensor};

/// Most steps a pipeline may have.
pub const MAX_STEPS: usize = 256;

/// At most [`MAX_STEPS`] steps: checked by [`Pipeline::check`], and by
/// fronts before they read any step's inputs.
pub fn check_step_count(steps: usize) -> Result<()> {
    if steps > MAX_STEPS {
        return Err(Error::bad(format!(
            "a pipeline has {steps} steps; at most {MAX_STEPS} are allowed"
        )));
    }
    Ok(())
}

/// A pipeline as a caller states it; [`Pipeline::check`] checks it.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    /// Tensors given once for several steps to read, by name (on the GPU
    /// uploaded once, at the first read).
    pub inputs: Vec<(String, Handle)>,
    /// The steps, in the order they run.
    pub steps: Vec<Step>,
    /// The results wanted, by the name they are returned under.
    pub outputs: Vec<(String, StepOutput)>,
    /// Names of results to return as handles, kept where they were
    /// computed, instead of bringing them home.
    pub keep: Vec<String>,
}

/// One step: a job whose inputs may be earlier steps' outputs.
#[derive(Clone, Debug)]
pub struct Step {
    /// Its name, unique in the pipeline.
    pub name: String,
    /// Its kernel.
    pub kernel: Kernel,
    /// Parameters as text, by name.
    pub params: BTreeMap<String, String>,
    /// Inputs by name.
    pub inputs: BTreeMap<String, StepInput>,
}

/// Where a step's input comes from.
#[derive(Clone, Debug)]
pub enum StepInput {
    /// A tensor given with the step (or a handle to one the engine holds).
    Tensor(Handle),
    /// One of the pipeline's own inputs, by name.
    Shared(String),
    /// An output of an earlier step.
    Output(StepOutput),
}

/// An output of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepOutput {
    /// The step's name.
    pub step: String,
    /// The output's name.
    pub output: String,
}

impl Step {
    /// A step named `name` running `kernel`, with no inputs or parameters
    /// yet.
    pub fn new(name: &str, kernel: Kernel) -> Self {
        Step {
            name: name.to_owned(),
            kernel,
            params: BTreeMap::new(),
            inputs: BTreeMap::new(),
        }
    }

    /// Adds a parameter.
    pub fn param(mut self, name: &str, value: impl ToString) -> Self {
        self.params.insert(name.to_owned(), value.to_string());
        self
    }

    /// Adds an input: a tensor, or a handle to one the engine holds.
    pub fn input(mut self, name: &str, tensor: impl Into<Handle>) -> Self {
        self.inputs
            .insert(name.to_owned(), StepInput::Tensor(tensor.into()));
        self
    }

    /// Adds an input that is the pipeline's input `shared`.
    pub fn input_shared(mut self, name: &str, shared: &str) -> Self {
        self.inputs
            .insert(name.to_owned(), StepInput::Shared(shared.to_owned()));
        self
    }

    /// Adds an input that is output `output` of the earlier step `step`.
    pub fn input_from(mut self, name: &str, step: &str, output: &str) -> Self {
        self.inputs.insert(
            name.to_owned(),
            StepInput::Output(StepOutput {
                step: step.to_owned(),
                output: output.to_owned(),
            }),
        );
        self
    }
}

impl Pipeline {
    /// A pipeline with no steps yet.
    pub fn new() -> Self {
        Pipeline::default()
    }

    /// Gives a tensor that several steps may read (as
    /// [`Step::input_shared`]).
    pub fn input(mut self, name: &str, tensor: impl Into<Handle>) -> Self {
        self.inputs.push((name.to_owned(), tensor.into()));
        self
    }

    /// Appends a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Asks for output `output` of step `step`, returned as `name`.
    pub fn output(mut self, name: &str, step: &str, output: &str) -> Self {
        self.outputs.push((
            name.to_owned(),
            StepOutput {
                step: step.to_owned(),
                output: output.to_owned(),
            },
        ));
        self
    }

    /// Returns result `name` as a handle, kept where it was computed.
    pub fn keep(mut self, name: &str) -> Self {
        self.keep.push(name.to_owned());
        self
    }

    /// Checks the whole pipeline before anything runs (see the module's
    /// documentation); errors name the step.
    pub fn check(self) -> Result<CheckedPipeline> {
        if self.steps.is_empty() {
            return Err(Error::bad("a pipeline needs at least one step"));
        }
        check_step_count(self.steps.len())?;
        if self.outputs.is_empty() {
            return Err(Error::bad(
                "a pipeline needs at least one output (which step's output to return)",
            ));
        }
        for (i, (name, _)) in self.inputs.iter().enumerate() {
            if name.is_empty() || self.inputs[..i].iter().any(|(other, _)| other == name) {
                return Err(Error::bad(format!(
                    "pipeline input '{name}' needs a name of its own"
                )));
            }
            let read = self.steps.iter().flat_map(|s| s.inputs.values());
            if !read
                .into_iter()
                .any(|i| matches!(i, StepInput::Shared(n) if n == name))
            {
                return Err(Error::bad(format!(
                    "pipeline input '{name}' is read by no step"
                )));
            }
        }
        let mut plans: Vec<Plan> = Vec::with_capacity(self.steps.len());
        for (i, step) in self.steps.iter().enumerate() {
            let at = |e: Error| e.context(&format!("step '{}'", step.name));
            if step.name.is_empty() {
                return Err(Error::bad(format!("step {} has no name", i + 1)));
            }
            if self.steps[..i].iter().any(|s| s.name == step.name) {
                return Err(Error::bad(format!(
                    "step name '{}' is used twice; each step needs its own",
                    step.name
                )));
            }
            let mut specs = BTreeMap::new();
            for (name, input) in &step.inputs {
                let spec = match input {
                    StepInput::Tensor(t) => t.spec().clone(),
                    StepInput::Shared(shared) => self
                        .inputs
                        .iter()
                        .find(|(n, _)| n == shared)
                        .map(|(_, t)| t.spec().clone())
                        .ok_or_else(|| {
                            at(Error::bad(format!(
                                "there is no pipeline input named '{shared}'"
                            )))
                        })?,
                    StepInput::Output(from) => {
                        let spec = self.spec_of(&plans, i, from).map_err(at)?;
                        spec.clone()
                    }
                };
                specs.insert(name.clone(), spec);
            }
            plans.push(step.kernel.plan(specs, &step.params).map_err(at)?);
        }
        for (i, (name, from)) in self.outputs.iter().enumerate() {
            if self.outputs[..i].iter().any(|(other, _)| other == name) {
                return Err(Error::bad(format!(
                    "pipeline output '{name}' is named twice"
                )));
            }
            self.spec_of(&plans, plans.len(), from)
                .map_err(|e| e.context(&format!("pipeline output '{name}'")))?;
        }
        for name in &self.keep {
            if !self.outputs.iter().any(|(n, _)| n == name) {
                return Err(Error::bad(format!(
                    "pipeline output '{name}' is to be kept, but no output has that name"
                )));
            }
        }
        Ok(CheckedPipeline {
            pipeline: self,
            plans,
        })
    }

    /// The spec of `from`, an output of one of the first `before` steps.
    fn spec_of<'p>(&self, plans: &'p [Plan], before: usize, from: &StepOutput) -> Result<&'p Spec> {
        let Some(k) = self.steps[..before]
            .iter()
            .position(|s| s.name == from.step)
        else {
            let itself = self.steps.get(before).is_some_and(|s| s.name == from.step);
            let later = self.steps[before..].iter().any(|s| s.name == from.step);
            return Err(Error::bad(if itself {
                "a step cannot read its own outputs".to_owned()
            } else if later {
                format!(
                    "step '{}' comes later; a step can use only earlier steps' outputs",
                    from.step
                )
            } else {
                format!("there is no step named '{}'", from.step)
            }));
        };
        let step = &self.steps[k];
        step.kernel.check_output(&from.output)?;
        plans[k].output(&from.output).ok_or_else(|| {
            Error::bad(format!(
                "step '{}' ({}) does not give output '{}' with these inputs and parameters",
                step.name, step.kernel, from.output
            ))
        })
    }
}

/// A pipeline that [`Pipeline::check`] accepted, ready to run.
#[derive(Clone, Debug)]
pub struct CheckedPipeline {
    pipeline: Pipeline,
    plans: Vec<Plan>,
}

/// A finished pipeline on one backend: the outputs asked for, and each
/// step's timings.
#[derive(Debug)]
pub struct PipelineRun {
    /// The outputs asked for, by the names they were asked under, brought
    /// home.
    pub outputs: Outputs,
    /// The outputs asked for as handles ([`Pipeline::keep`]).
    pub kept: BTreeMap<String, Handle>,
    /// Each step, in order.
    pub steps: Vec<StepRun>,
    /// The phases added up over the steps; `total` is the whole run.
    pub timings: Timings,
    /// What moved between host and device, over all steps.
    pub traffic: Traffic,
}

/// One step of a finished pipeline.
#[derive(Debug)]
pub struct StepRun {
    /// The step's name.
    pub name: String,
    /// Its kernel.
    pub kernel: Kernel,
    /// Its phases.
    pub timings: Timings,
    /// What it moved between host and device.
    pub traffic: Traffic,
}

impl CheckedPipeline {
    /// Each step's kernel and work units, for the cost model.
    pub fn work(&self) -> impl Iterator<Item = (Kernel, f64)> + '_ {
        self.pipeline
            .steps
            .iter()
            .zip(&self.plans)
            .map(|(s, p)| (s.kernel, p.work_units))
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.pipeline.steps.len()
    }

    /// Whether there are no steps (never, once checked).
    pub fn is_empty(&self) -> bool {
        self.pipeline.steps.is_empty()
    }

    /// Every tensor the pipeline is given (shared inputs and step inputs).
    pub fn given(&self) -> impl Iterator<Item = &Handle> {
        let steps = self.pipeline.steps.iter().flat_map(|s| s.inputs.values());
        let given = steps.filter_map(|i| match i {
            StepInput::Tensor(h) => Some(h),
            _ => None,
        });
        self.pipeline.inputs.iter().map(|(_, h)| h).chain(given)
    }

    /// Bytes of the step outputs that later steps read: what a backend
    /// keeps in place between steps (the GPU would otherwise read each
    /// back and upload it again).
    pub fn intermediate_bytes(&self) -> u64 {
        let p = &self.pipeline;
        let read = p.steps.iter().flat_map(|s| s.inputs.values());
        read.filter_map(|i| match i {
            StepInput::Output(from) => {
                let k = p.steps.iter().position(|s| s.name == from.step)?;
                Some(self.plans[k].output(&from.output)?.bytes())
            }
            _ => None,
        })
        .sum()
    }

    /// Each step's name and plan, in order.
    pub fn plans(&self) -> impl Iterator<Item = (&str, &Plan)> {
        let names = self.pipeline.steps.iter().map(|s| s.name.as_str());
        names.zip(&self.plans)
    }

    /// Host memory the steps take beside what the pipeline is given, at
    /// most: every step's outputs (as if none were freed early) and the
    /// largest scratch of any step.
    pub fn working_bytes(&self) -> u64 {
        let outputs = self
            .plans
            .iter()
            .fold(0u64, |n, p| n.saturating_add(p.output_bytes()));
        let scratch = self.plans.iter().map(|p| p.scratch_bytes).max();
        outputs.saturating_add(scratch.unwrap_or(0))
    }

    /// Asks the system whether the memory [`CheckedPipeline::working_bytes`]
    /// says the steps take can be had now: how a front admits a pipeline
    /// to run here (checking alone asks nothing, as for
    /// [`crate::kernel::Task::admitted`]).
    pub fn reserve(self) -> Result<Self> {
        crate::tensor::alloc::check(self.working_bytes(), "the pipeline's steps")?;
        Ok(self)
    }

    /// The dtypes and shapes of the outputs asked for, by the names they
    /// are asked under.
    pub fn output_specs(&self) -> impl Iterator<Item = (&str, &Spec)> {
        let p = &self.pipeline;
        p.outputs.iter().filter_map(move |(name, from)| {
            let k = p.steps.iter().position(|s| s.name == from.step)?;
            Some((name.as_str(), self.plans[k].output(&from.output)?))
        })
    }

    /// Runs the pipeline on `backend` as one batch (on the GPU, its
    /// dispatches in as few submissions as its transfers allow), each step
    /// through `step` (which runs a task there, keeping the outputs named).
    /// `copy_kept`: the caller holds a copy of the pipeline (to re-run it
    /// elsewhere), so each given tensor has one more handle than readers.
    pub fn run_on(
        self,
        backend: &dyn Backend,
        copy_kept: bool,
        mut step: impl FnMut(Task, &[String]) -> Result<Run>,
    ) -> Result<PipelineRun> {
        let mut pipeline = Some(self);
        let mut done = None;
        let last = backend.batched(usize::from(copy_kept), &mut || {
            if let Some(p) = pipeline.take() {
                done = Some(p.run(&mut step, |handles| backend.fetch(handles)));
            }
        });
        // A step's own error says more than the batch's.
        let mut run =
            done.unwrap_or_else(|| Err(Error::Internal("the batch ran nothing".into())))?;
        let last = last?;
        run.timings.compute += last.compute_ms;
        run.timings.total += last.ms;
        run.traffic.add(&last.traffic);
        Ok(run)
    }

    /// Runs the steps in order, each through `run` (which runs one task on
    /// a backend, keeping the outputs named), then brings the outputs asked
    /// for home through `fetch`. A failing step stops the pipeline; its
    /// error names the step.
    pub fn run(
        self,
        mut run: impl FnMut(Task, &[String]) -> Result<Run>,
        mut fetch: impl FnMut(&[Handle]) -> Result<Fetched>,
    ) -> Result<PipelineRun> {
        let start = Instant::now();
        let Pipeline {
            inputs,
            steps,
            outputs,
            keep,
        } = self.pipeline;
        // How many more times each tensor is read: pipeline inputs and step
        // outputs, by later steps' inputs and (outputs) as results.
        let mut uses: BTreeMap<Source, usize> = BTreeMap::new();
        let wanted = outputs.iter().map(|(_, from)| Source::of(from));
        let read = steps
            .iter()
            .flat_map(|s| s.inputs.values())
            .filter_map(|i| match i {
                StepInput::Output(from) => Some(Source::of(from)),
                StepInput::Shared(name) => Some(Source::Input(name.clone())),
                StepInput::Tensor(_) => None,
            });
        for source in read.chain(wanted) {
            *uses.entry(source).or_default() += 1;
        }
        let mut kept: Kept = inputs
            .into_iter()
            .map(|(name, t)| (Source::Input(name), t))
            .collect();
        let mut runs = Vec::with_capacity(steps.len());
        let mut timings = Timings::default();
        let mut traffic = Traffic::default();
        for step in steps {
            if crate::kernel::stop::requested() {
                return Err(Error::Cancelled);
            }
            let mut job = Job::new(step.kernel);
            job.params = step.params;
            for (name, input) in step.inputs {
                let tensor = match input {
                    StepInput::Tensor(t) => t,
                    StepInput::Output(from) => take(&mut uses, &mut kept, Source::of(&from))?,
                    StepInput::Shared(name) => take(&mut uses, &mut kept, Source::Input(name))?,
                };
                job.inputs.insert(name, tensor);
            }
            let at = |e: Error| e.context(&format!("step '{}'", step.name));
            // Kept: the outputs that are read later or asked for.
            let wanted: Vec<String> = step
                .kernel
                .signature()
                .outputs
                .iter()
                .map(|a| a.name.to_owned())
                .filter(|o| uses.contains_key(&Source::Output(step.name.clone(), o.clone())))
                .collect();
            let done = Task::new(job)
                .and_then(|task| run(task, &wanted))
                .map_err(at)?;
            for (output, handle) in done.kept {
                kept.insert(Source::Output(step.name.clone(), output), handle);
            }
            timings.add(&done.timings);
            traffic.add(&done.traffic);
            runs.push(StepRun {
                name: step.name,
                kernel: step.kernel,
                timings: done.timings,
                traffic: done.traffic,
            });
        }
        let mut results = BTreeMap::new();
        let mut home = Vec::new();
        for (name, from) in outputs {
            let handle = take(&mut uses, &mut kept, Source::of(&from))?;
            if keep.contains(&name) {
                results.insert(name, handle);
            } else {
                home.push((name, handle));
            }
        }
        let handles: Vec<Handle> = home.iter().map(|(_, h)| h.clone()).collect();
        let fetched = fetch(&handles)?;
        drop(handles);
        timings.download += fetched.download_ms;
        timings.compute += fetched.compute_ms;
        traffic.add(&fetched.traffic);
        let outputs = home
            .into_iter()
            .map(|(name, h)| {
                let shape = h.shape().to_vec();
                (name, Tensor::new(shape, h.into_data()))
            })
            .collect();
        timings.total = start.elapsed().as_secs_f64() * 1e3;
        Ok(PipelineRun {
            outputs,
            kept: results,
            steps: runs,
            timings,
            traffic,
        })
    }
}

/// A tensor a step reads: a pipeline input, or a step's output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// A pipeline input, by name.
    Input(String),
    /// (step, output name).
    Output(String, String),
}

impl Source {
    fn of(from: &StepOutput) -> Source {
        Source::Output(from.step.clone(), from.output.clone())
    }
}

/// Tensors waiting for their readers.
type Kept = BTreeMap<Source, Handle>;

/// `source` for one of its reads: moved out at its last read (so that its
/// reader holds the only handle), shared before. Missing only when a
/// backend gave other outputs than the plan said: an internal error, not
/// a panic.
fn take(uses: &mut BTreeMap<Source, usize>, kept: &mut Kept, source: Source) -> Result<Handle> {
    let missing = || Error::Internal(format!("{source:?} was not made as its plan said"));
    let left = uses.get_mut(&source).ok_or_else(missing)?;
    *left = left.saturating_sub(1);
    let tensor = if *left == 0 {
        kept.remove(&source)
    } else {
        kept.get(&source).cloned()
    };
    tensor.ok_or_else(missing)
}
