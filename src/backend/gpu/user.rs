//! Host side of a kernel the program registered (`kernel::user`): every
//! input up whole (or bound where it is kept), every output in one buffer,
//! one dispatch over the first output as its [`Grid`] says, the outputs
//! home (or kept). A program's kernel is not split into chunks, so each
//! tensor must fit one storage binding. Outputs start at zero.

use super::exec::{Exec, Pass};
use crate::error::{Error, Result};
use crate::kernel::Outputs;
use crate::kernel::user::{Grid, UserTask};
use crate::tensor::{Tensor, TensorData};

pub(super) fn run(exec: &mut Exec, t: &UserTask) -> Result<Outputs> {
    let gpu = exec.gpu();
    let kernel = t.kernel();
    let too_large = |what: String, bytes: u64| {
        Error::Gpu(format!(
            "{kernel}: {what} is {} MiB, more than one GPU storage binding holds here ({} MiB); \
             a registered kernel is not split into chunks: run it on the CPU",
            bytes >> 20,
            gpu.max_binding >> 20
        ))
    };
    let mut sources = Vec::with_capacity(t.inputs().len());
    for (h, arg) in t.inputs().iter().zip(kernel.signature().inputs) {
        if h.bytes() > gpu.max_binding {
            return Err(too_large(format!("input '{}'", arg.name), h.bytes()));
        }
        sources.push(exec.source(h, h.bytes())?);
    }
    let parts: Vec<_> = sources
        .iter()
        .zip(t.inputs())
        .map(|(s, h)| (s, 0, h.bytes()))
        .collect();
    exec.stage(&parts)?;
    let mut sinks = Vec::new();
    for (name, spec) in t.outputs() {
        let bytes = spec.bytes();
        if bytes > gpu.max_binding {
            return Err(too_large(format!("output '{name}'"), bytes));
        }
        sinks.push(exec.sink(name, bytes, bytes)?);
    }
    let mut bindings: Vec<_> = sources
        .iter()
        .zip(t.inputs())
        .map(|(s, h)| {
            let (b, o) = s.at(0);
            (b, o, h.bytes())
        })
        .collect();
    let pipeline = gpu.user_pipeline(kernel, t.inputs().len(), sinks.len())?;
    for (sink, (_, spec)) in sinks.iter().zip(t.outputs()) {
        let (b, o) = sink.at(0);
        // Outputs start at zero (atomic counters need it; a pooled buffer
        // holds another job's data).
        exec.clear(b, spec.bytes());
        bindings.push((b, o, spec.bytes()));
    }
    let groups = groups(t, exec.gpu().max_groups())?;
    exec.compute(&[Pass::with_words(&pipeline, bindings, &t.uniform(), groups)])?;
    let mut outputs = Outputs::new();
    for (sink, (name, spec)) in sinks.into_iter().zip(t.outputs()) {
        if sink.is_whole() {
            exec.finish_sink(name, sink, spec.clone());
            continue;
        }
        let mut words = vec![0u32; spec.shape.iter().product()];
        exec.drain(&sink, &mut words)?;
        let data = TensorData::from_words(spec.dtype, words);
        outputs.insert(name.to_owned(), Tensor::new(spec.shape.clone(), data));
    }
    Ok(outputs)
}

/// The dispatch grid over the first output ([`Grid`]), within `most`
/// workgroups per dimension.
fn groups(t: &UserTask, most: u32) -> Result<(u32, u32, u32)> {
    let [wx, wy, wz] = t.kernel().shader().entry_points[0].1;
    let [d0, d1, d2, d3] = t.grid_dims().map(u64::from);
    let over = |n: u64, w: u32| n.div_ceil(u64::from(w));
    let (x, y, z) = match t.def().grid {
        Grid::Elements => {
            let needed = over(d0 * d1 * d2 * d3, wx);
            let x = needed.min(u64::from(most));
            (x, needed.div_ceil(x), 1)
        }
        Grid::Shape => (over(d0, wx), over(d1, wy), over(d2 * d3, wz)),
    };
    let fits = |n: u64| u32::try_from(n).ok().filter(|&n| n <= most);
    match (fits(x), fits(y), fits(z)) {
        (Some(x), Some(y), Some(z)) => Ok((x, y, z)),
        _ => Err(Error::Gpu(format!(
            "{}: its output needs a grid of {x}×{y}×{z} workgroups, more than the {most} a \
             dimension allows here; run it on the CPU",
            t.kernel()
        ))),
    }
}
