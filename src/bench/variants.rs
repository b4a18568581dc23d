//! Kernels' variants ([`crate::kernel::profile::Variant`]: other
//! parameters of a kernel, such as `map`'s other expressions), each timed
//! at one size on every backend measured, beside NumPy and the plain rayon
//! loop, all in turn run after run (so that drift in the machine's load
//! falls on all alike).

use super::baseline::Numpy;
use super::measure::{Repeat, repeat_each, time_ms};
use super::model::VariantRow;
use crate::backend::Backend;
use crate::backend::cpu::CpuBackend;
use crate::error::Result;
use crate::kernel::Kernel;
use crate::kernel::profile::Variant;

/// The size `variant` is measured at.
pub fn size(variant: &Variant, sizes: Option<&[usize]>, quick: bool) -> usize {
    match sizes.and_then(|s| s.iter().max()) {
        Some(&n) => n,
        None if quick => variant.quick_size,
        None => variant.size,
    }
}

/// Times `variant` of `kernel` at size `n` on `cpu` (when `measure_cpu`)
/// and `gpu`, with NumPy (when it runs and the variant has code for it)
/// and the plain rayon loop on `pool`.
#[allow(clippy::too_many_arguments)]
pub fn measure(
    kernel: Kernel,
    variant: &Variant,
    n: usize,
    seed: u64,
    cpu: Option<&CpuBackend>,
    gpu: Option<&dyn Backend>,
    pool: &rayon::ThreadPool,
    numpy: Option<&mut Numpy>,
    plan: &Repeat,
) -> Result<Vec<VariantRow>> {
    let mut work = (variant.task)(n, seed)?;
    let task = work.clone();
    let mut plain = task.plain_loop();
    let mut numpy = match (numpy, &variant.numpy) {
        (Some(numpy), Some(code)) => {
            numpy.prepare(code, n)?;
            Some(numpy)
        }
        _ => None,
    };
    let has_numpy = numpy.is_some();
    // Four timings a round; those of what is not measured are 0 and never
    // reported.
    let stats = repeat_each(plan, 4, || {
        let cpu_ms = match cpu {
            Some(cpu) => {
                let run = cpu.run_in_place(&mut work);
                work.restore(run.outputs);
                run.timings.total
            }
            None => 0.0,
        };
        let gpu_ms = match gpu {
            Some(gpu) => gpu.run(&task)?.timings.total,
            None => 0.0,
        };
        let numpy_ms = match numpy.as_deref_mut() {
            Some(numpy) => numpy.run_ms()?,
            None => 0.0,
        };
        let loop_ms = time_ms(|| pool.install(&mut plain)).1;
        Ok(vec![cpu_ms, gpu_ms, numpy_ms, loop_ms])
    })?;
    let (numpy_median, loop_median) = (stats[2].median_ms, stats[3].median_ms);
    let unit = kernel.profile().unit;
    let amount = (kernel.profile().amount)(n);
    let backends = [
        (cpu.is_some(), "cpu", stats[0]),
        (gpu.is_some(), "gpu", stats[1]),
    ];
    Ok(backends
        .into_iter()
        .filter(|(measured, _, _)| *measured)
        .map(|(_, backend, stats)| VariantRow {
            kernel: kernel.name().into(),
            variant: variant.label.into(),
            size: n,
            backend: backend.into(),
            stats,
            rate: amount / (stats.median_ms * 1e-3) / unit.scale,
            vs_numpy: has_numpy.then(|| numpy_median / stats.median_ms),
            vs_rayon_loop: loop_median / stats.median_ms,
        })
        .collect())
}
