//! Host side of `shaders/axpy.wgsl`: chunks of x and y up, y ← a·x + y in
//! place, y back down.
//!
//! The shader reads and writes whole vec4, so each chunk is bound as
//! ⌈len/4⌉ vec4 (buffers are sized for that), and chunks other than the
//! last hold a multiple of 4 elements. The grid is one-dimensional and
//! capped at [`MAX_GROUPS`]; the shader's grid-stride loop covers the rest.

use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::kernel::axpy::{Axpy, WORKGROUP};
use crate::kernel::{Kernel, Outputs};

/// Workgroups per dispatch at most: several times what a large GPU holds
/// at once (an H100 keeps 132 SMs × 8 groups of 256 resident), so the
/// last wave's imbalance stays small, yet far below the 65,535 per
/// dimension limit, so no 2-D spreading is needed.
const MAX_GROUPS: u32 = 4096;

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
    // Whole vec4 per chunk, so that its padded binding fits the limit.
    let chunk = gpu.binding_elements(16) * 4;
    let cap = grid::vec4_bytes(chunk.min(n));
    let (xb, yb) = (exec.storage(cap), exec.storage(cap));
    for (start, len) in grid::chunks(n, chunk) {
        let range = start..start + len;
        let bytes = grid::vec4_bytes(len);
        exec.upload(&[
            (&xb, bytemuck::cast_slice(&t.x[range.clone()])),
            (&yb, bytemuck::cast_slice(&t.y[range.clone()])),
        ])?;
        let params = Params {
            a: t.a,
            n: len as u32,
            _pad: [0; 2],
        };
        let groups = grid::stream_groups_for(len, WORKGROUP).min(gpu.stream_groups(MAX_GROUPS));
        exec.compute(&[Pass::new(
            &pipeline,
            vec![(&xb, bytes), (&yb, bytes)],
            &params,
            (groups, 1, 1),
        )])?;
        exec.download_into(&yb, 0, &mut out[range])?;
    }
    Ok(Axpy::outputs(out))
}
