//! Host side of `shaders/axpy.wgsl`: chunks of x and y up, y ← a·x + y in
//! place, y back down.

use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::kernel::axpy::{Axpy, WORKGROUP};
use crate::kernel::{Kernel, Outputs};

/// Matches `Params` in the shader (padded to 16 bytes for uniform layout).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    a: f32,
    n: u32,
    _pad: [u32; 2],
}

pub(super) fn run(exec: &mut Exec, t: &Axpy) -> Result<Outputs> {
    let gpu = exec.gpu();
    let n = t.len();
    let mut out = vec![0.0f32; n];
    if n == 0 {
        return Ok(Axpy::outputs(out));
    }
    let pipeline = gpu.pipeline(Kernel::Axpy, 0, &[]);
    let chunk = gpu.binding_elements(4);
    let cap = (chunk.min(n) * 4) as u64;
    let (xb, yb) = (exec.storage(cap), exec.storage(cap));
    for (start, len) in grid::chunks(n, chunk) {
        let range = start..start + len;
        let bytes = (len * 4) as u64;
        exec.upload(&[
            (&xb, bytemuck::cast_slice(&t.x[range.clone()])),
            (&yb, bytemuck::cast_slice(&t.y[range.clone()])),
        ])?;
        let params = Params {
            a: t.a,
            n: len as u32,
            _pad: [0; 2],
        };
        let (gx, gy) = grid::spread(grid::groups_for(len, WORKGROUP), gpu.max_groups());
        exec.compute(&[Pass::new(
            &pipeline,
            vec![(&xb, bytes), (&yb, bytes)],
            &params,
            (gx, gy, 1),
        )])?;
        exec.download_into(&yb, 0, &mut out[range])?;
    }
    Ok(Axpy::outputs(out))
}
