//! Host side of `shaders/histogram.wgsl`: the edges and zeroed counts up
//! once, then each chunk of x up and counted into them, the counts down.

use super::exec::{Exec, Pass};
use super::grid;
use crate::error::{Error, Result};
use crate::kernel::histogram::{Histogram, WORKGROUP};
use crate::kernel::{Kernel, Outputs};

/// Workgroups per dispatch at most: enough to fill a large GPU, few enough
/// that flushing each workgroup's local counts stays cheap.
const MAX_GROUPS: u32 = 1024;

/// Matches `Params` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    bins: u32,
    scale: f32,
    /// 1: find bins by binary search (`scale` is not finite).
    search: u32,
}

pub(super) fn run(exec: &mut Exec, t: &Histogram) -> Result<Outputs> {
    let gpu = exec.gpu();
    let bins = t.bins();
    let edge_list = t.edges();
    if edge_list.len() > gpu.binding_elements(4) {
        return Err(Error::Gpu(format!(
            "histogram: {bins} bins need more than one storage binding here"
        )));
    }
    // GPUs may flush subnormal numbers to zero (WGSL allows it; NVIDIA's
    // Vulkan driver does): edges there would all read as 0, and so would
    // the values between them. Such a range is binned on the CPU.
    if let Some(e) = edge_list
        .iter()
        .find(|e| **e != 0.0 && e.abs() < f32::MIN_POSITIVE)
    {
        return Err(Error::Gpu(format!(
            "histogram: edge {e:e} is subnormal, which GPUs may flush to zero; binned on the CPU"
        )));
    }
    let mut counts = vec![0u32; bins];
    let n = t.x.len();
    let pipeline = gpu.pipeline(Kernel::Histogram, 0, &[]);
    let edges = exec.storage((edge_list.len() * 4) as u64);
    let totals = exec.storage((bins * 4) as u64);
    exec.upload(&[
        (&edges, bytemuck::cast_slice(&edge_list)),
        (&totals, bytemuck::cast_slice(&counts)),
    ])?;
    let chunk = gpu.chunk_elements();
    let x = exec.source(&t.x, (chunk.min(n) * 4) as u64)?;
    for (start, len) in grid::chunks(n, chunk) {
        let from = start as u64 * 4;
        exec.stage(&[(&x, from, len as u64 * 4)])?;
        let (xb, xo) = x.at(from);
        let params = Params {
            n: len as u32,
            bins: bins as u32,
            scale: t.scale,
            search: u32::from(!t.scale.is_finite()),
        };
        let groups = grid::groups_for(len, WORKGROUP).min(MAX_GROUPS);
        let storage = vec![
            (xb, xo, (len * 4) as u64),
            (&edges, 0, (edge_list.len() * 4) as u64),
            (&totals, 0, (bins * 4) as u64),
        ];
        exec.compute(&[Pass::at(&pipeline, storage, &params, (groups, 1, 1))])?;
    }
    exec.download_into(&totals, 0, &mut counts)?;
    Ok(Histogram::outputs(counts))
}
