//! Host side of `shaders/axpy.wgsl`: `out ← a·x + y`, chunk by chunk.
//!
//! Inputs kept on the device are bound in place, chunk by chunk; host
//! inputs are staged into scratch buffers. The output goes into one buffer
//! kept on the device when the caller keeps it, else into a scratch
//! buffer read back after each chunk.
//!
//! The shader reads and writes whole vec4, so each chunk is bound as
//! ⌈len/4⌉ vec4 (buffers are sized for that), and chunks other than the
//! last hold a multiple of 4 elements (and of the offset alignment). The
//! grid is one-dimensional and capped at [`MAX_GROUPS`]; the shader's
//! grid-stride loop covers the rest.

use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::kernel::axpy::{Axpy, WORKGROUP};
use crate::kernel::{Kernel, Outputs};
use crate::tensor::{DType, Spec};

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
    if n == 0 {
        return Ok(Axpy::outputs(Vec::new()));
    }
    let pipeline = gpu.pipeline(Kernel::Axpy, 0, &[]);
    let chunk = gpu.chunk_elements();
    let cap = grid::vec4_bytes(chunk.min(n));
    let x = exec.source(&t.x, cap)?;
    let y = exec.source(&t.y, cap)?;
    let sink = exec.sink("out", grid::vec4_bytes(n), cap)?;
    let mut out = if sink.is_whole() { Vec::new() } else { vec![0.0f32; n] };
    for (start, len) in grid::chunks(n, chunk) {
        let (from, bytes) = (start as u64 * 4, grid::vec4_bytes(len));
        exec.stage(&[(&x, from, len as u64 * 4), (&y, from, len as u64 * 4)])?;
        let params = Params {
            a: t.a,
            n: len as u32,
            _pad: [0; 2],
        };
        let groups = grid::stream_groups_for(len, WORKGROUP).min(gpu.stream_groups(MAX_GROUPS));
        let ((xb, xo), (yb, yo), (ob, oo)) = (x.at(from), y.at(from), sink.at(from));
        exec.compute(&[Pass::at(
            &pipeline,
            vec![(xb, xo, bytes), (yb, yo, bytes), (ob, oo, bytes)],
            &params,
            (groups, 1, 1),
        )])?;
        if !sink.is_whole() {
            exec.drain(&sink, &mut out[start..start + len])?;
        }
    }
    let spec = Spec {
        dtype: DType::F32,
        shape: vec![n],
    };
    if exec.finish_sink("out", sink, spec) {
        return Ok(Outputs::new());
    }
    Ok(Axpy::outputs(out))
}
