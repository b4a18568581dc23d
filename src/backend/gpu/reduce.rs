//! Host side of `shaders/reduce.wgsl`.
//!
//! Per chunk of the input: a wide pass folds it into at most
//! [`MAX_GROUPS`] partial values, then a one-workgroup pass folds those into
//! `results[chunk]`. With several chunks, a last one-workgroup pass folds the
//! per-chunk results. The (op, dtype) pair selects a specialised pipeline.
//!
//! The shader loads whole vec4, so every source is bound as ⌈len/4⌉ vec4
//! (buffers are sized for that; the shader masks the lanes past `len`), and
//! chunks other than the last hold a multiple of 4 elements.

use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::kernel::reduce::{Reduce, ReduceOp, WORKGROUP};
use crate::kernel::{Kernel, KernelTask, Outputs};
use crate::tensor::TensorData;

/// Workgroups in the wide pass: about twice what a large GPU holds at once
/// (an H100 keeps 132 SMs × 8 groups of 256 resident), few enough that one
/// workgroup folds their partials quickly (2 vec4 per invocation). A
/// multiple of 4, so the partials buffer holds whole vec4.
const MAX_GROUPS: u32 = 2048;

/// Matches `Params` in the shader (padded to 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    out_offset: u32,
    _pad: [u32; 2],
}

/// Folds the first `len` values of `src` into `dst[out_offset + group]`.
fn fold<'a>(
    pipeline: &'a wgpu::ComputePipeline,
    (src, len): (&'a wgpu::Buffer, usize),
    (dst, out_offset): (&'a wgpu::Buffer, usize),
    groups: u32,
) -> Pass<'a> {
    let params = Params {
        n: len as u32,
        out_offset: out_offset as u32,
        _pad: [0; 2],
    };
    let storage = vec![(src, grid::vec4_bytes(len)), (dst, dst.size())];
    Pass::new(pipeline, storage, &params, (groups, 1, 1))
}

pub(super) fn run(exec: &mut Exec, t: &Reduce) -> Result<Outputs> {
    let (bits, dtype): (&[u32], u32) = match &t.x {
        TensorData::F32(v) => (bytemuck::cast_slice(v), 0),
        TensorData::U32(v) => (v, 1),
        TensorData::I32(v) => (bytemuck::cast_slice(v), 2),
        TensorData::U8(_) => unreachable!("rejected by Reduce::new"),
    };
    let n = bits.len();
    if n == 0 {
        // Only `sum` accepts an empty input (Reduce::new); its value is 0.
        return Ok(t.reference());
    }
    let op = match t.op {
        ReduceOp::Sum => 0,
        ReduceOp::Min => 1,
        ReduceOp::Max => 2,
    };
    let gpu = exec.gpu();
    let pipeline = gpu.pipeline(
        Kernel::Reduce,
        op * 3 + dtype,
        &[("OP", f64::from(op)), ("DTYPE", f64::from(dtype))],
    );
    // Whole vec4 per chunk, so that its padded binding fits the limit.
    let chunk = gpu.binding_elements(16) * 4;
    let chunks = n.div_ceil(chunk);
    let src = exec.storage(grid::vec4_bytes(chunk.min(n)));
    let partials = exec.output(grid::vec4_bytes(gpu.stream_groups(MAX_GROUPS) as usize));
    let results = exec.output(grid::vec4_bytes(chunks));
    for (i, (start, len)) in grid::chunks(n, chunk).enumerate() {
        exec.upload(&[(&src, bytemuck::cast_slice(&bits[start..start + len]))])?;
        let groups = grid::stream_groups_for(len, WORKGROUP).min(gpu.stream_groups(MAX_GROUPS));
        exec.compute(&[
            fold(&pipeline, (&src, len), (&partials, 0), groups),
            fold(&pipeline, (&partials, groups as usize), (&results, i), 1),
        ])?;
    }
    let mut value = [0u32];
    if chunks == 1 {
        exec.download_into(&results, 0, &mut value)?;
    } else {
        // A buffer cannot be read and written by one dispatch, so the last
        // fold writes into `partials`.
        exec.compute(&[fold(&pipeline, (&results, chunks), (&partials, 0), 1)])?;
        exec.download_into(&partials, 0, &mut value)?;
    }
    let value = match &t.x {
        TensorData::F32(_) => TensorData::F32(vec![f32::from_bits(value[0])]),
        TensorData::U32(_) => TensorData::U32(vec![value[0]]),
        _ => TensorData::I32(vec![value[0] as i32]),
    };
    Ok(Reduce::outputs(value))
}
