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
use crate::tensor::{DType, Spec, TensorData};

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

/// Folds the `len` values of `src` from byte `offset` into
/// `dst[out_offset + group]`.
fn fold<'a>(
    pipeline: &'a wgpu::ComputePipeline,
    (src, offset, len): (&'a wgpu::Buffer, u64, usize),
    (dst, out_offset): (&'a wgpu::Buffer, usize),
    groups: u32,
) -> Pass<'a> {
    let params = Params {
        n: len as u32,
        out_offset: out_offset as u32,
        _pad: [0; 2],
    };
    let storage = vec![(src, offset, grid::vec4_bytes(len)), (dst, 0, dst.size())];
    Pass::at(pipeline, storage, &params, (groups, 1, 1))
}

pub(super) fn run(exec: &mut Exec, t: &Reduce) -> Result<Outputs> {
    let dtype = match t.x.dtype() {
        DType::F32 => 0,
        DType::U32 => 1,
        DType::I32 => 2,
        DType::U8 => unreachable!("rejected by Reduce::new"),
    };
    let n = t.x.len();
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
    let chunk = gpu.chunk_elements();
    let chunks = n.div_ceil(chunk);
    let src = exec.source(&t.x, grid::vec4_bytes(chunk.min(n)))?;
    let partials = exec.output(grid::vec4_bytes(gpu.stream_groups(MAX_GROUPS) as usize));
    let results = exec.output(grid::vec4_bytes(chunks));
    // The value lands in the output's own buffer (kept on the device when
    // the caller keeps it): a buffer cannot be read and written by one
    // dispatch, so the last fold writes there.
    let sink = exec.sink("out", 16, 16)?;
    let (out, _) = sink.at(0);
    for (i, (start, len)) in grid::chunks(n, chunk).enumerate() {
        let from = start as u64 * 4;
        exec.stage(&[(&src, from, len as u64 * 4)])?;
        let (xb, xo) = src.at(from);
        let groups = grid::stream_groups_for(len, WORKGROUP).min(gpu.stream_groups(MAX_GROUPS));
        let into = if chunks == 1 { (out, 0) } else { (&results, i) };
        exec.compute(&[
            fold(&pipeline, (xb, xo, len), (&partials, 0), groups),
            fold(&pipeline, (&partials, 0, groups as usize), into, 1),
        ])?;
    }
    if chunks > 1 {
        exec.compute(&[fold(&pipeline, (&results, 0, chunks), (out, 0), 1)])?;
    }
    let mut value = [0u32];
    exec.drain(&sink, &mut value)?;
    if exec.finish_sink("out", sink, Spec { dtype: t.x.dtype(), shape: vec![1] }) {
        return Ok(Outputs::new());
    }
    Ok(Reduce::outputs(TensorData::from_words(t.x.dtype(), value.to_vec())))
}
