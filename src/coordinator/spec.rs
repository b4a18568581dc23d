//! The one path from a job as text to a checked task, shared by every
//! front: `anycore run`'s flags, a `batch` line and a service request each
//! state a [`JobSpec`] with inputs of their own kind ([`InputSource`]), and
//! [`JobSpec::into_job`] checks it in one order: the kernel's name, the
//! backend's, the parameters' and the outputs' names, the inputs' names
//! (before any input is read or decoded, so a typo costs nothing), then
//! each input.

use crate::backend::BackendChoice;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

use crate::kernel::{Job, Kernel, Task, param_text};
use crate::tensor::Tensor;

/// Where a front's input comes from: a file, generated data, inline
/// numbers, base64 bytes.
pub trait InputSource {
    /// Reads or decodes the tensor for input `name` (named in errors).
    fn load(self, name: &str) -> Result<Tensor>;
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
        let (job, choice) = self.into_job(default)?;
        Ok((Task::new(job)?, choice))
    }
}
