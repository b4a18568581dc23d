//! Host side of `shaders/matmul.wgsl`.
//!
//! The shader has several variants (entry points, see
//! [`crate::kernel::matmul::VARIANTS`]); [`super::tune`] picks one per
//! product — forced, cached, tuned on the card, or a fixed default on
//! software adapters.
//!
//! When a, b or c is larger than one storage binding, the product is cut
//! into blocks: column slabs of b (packed on the host when narrower than b)
//! times row blocks of a, each giving one block of c. Slabs are cut at
//! multiples of the largest tile, or at least of 4 columns, so that blocks
//! of a product that allows the `vec4` variants allow them too. Each
//! block's grid also stays within the per-dimension workgroup limit.

use super::exec::{Exec, Pass};
use crate::error::{Error, Result};
use crate::kernel::matmul::{MAX_TILE, Matmul, VARIANTS};
use crate::kernel::{Kernel, Outputs};
use crate::tensor::{DType, Spec, TensorData};

/// Matches `Dims` in the shader (padded to 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    m: u32,
    k: u32,
    n: u32,
    _pad: u32,
}

/// What the host needs to time variants on a job's own buffers: the first
/// block's shape and its `a` and `b` on the device.
pub(super) struct Problem<'a> {
    pub shape: Shape,
    pub a: &'a wgpu::Buffer,
    pub b: &'a wgpu::Buffer,
}

/// The extents of one product (or block of one) on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

/// One dispatch of a variant with tiles of `tile` over `a` (m×k), `b` (k×n)
/// and `c` (m×n), each bound from its start.
pub(super) fn pass<'a>(
    pipeline: &'a wgpu::ComputePipeline,
    a: &'a wgpu::Buffer,
    b: &'a wgpu::Buffer,
    c: &'a wgpu::Buffer,
    shape: Shape,
    tile: u32,
) -> Pass<'a> {
    let Shape { m, k, n } = shape;
    let dims = Dims {
        m: m as u32,
        k: k as u32,
        n: n as u32,
        _pad: 0,
    };
    // Bindings must not be empty: k = 0 still binds one (unused) element.
    let storage = vec![
        (a, (m * k).max(1) as u64 * 4),
        (b, (k * n).max(1) as u64 * 4),
        (c, (m * n * 4) as u64),
    ];
    let tile = tile as usize;
    let groups = (n.div_ceil(tile) as u32, m.div_ceil(tile) as u32, 1);
    Pass::new(pipeline, storage, &dims, groups)
}

/// Rows per block and columns per slab that fit the device.
fn block_shape(t: &Matmul, binding_elems: usize, max_groups: u32) -> Result<(usize, usize)> {
    let max_tile = MAX_TILE as usize;
    // The smallest tile makes the most workgroups per row or column.
    let min_tile = VARIANTS.iter().map(|v| v.tile).min().unwrap_or(MAX_TILE) as usize;
    let max_extent = max_groups as usize * min_tile;
    if t.k > binding_elems {
        return Err(Error::Gpu(format!(
            "matmul: k = {} is more than one storage binding holds ({binding_elems} f32); \
             run it on the CPU",
            t.k
        )));
    }
    // Column slab: all of b if it fits, else as many whole tiles as fit (or
    // whole groups of 4 columns, which keeps the vec4 variants usable).
    let mut cols = t.n.min(binding_elems / t.k.max(1)).min(max_extent);
    if cols < t.n {
        if cols > max_tile {
            cols -= cols % max_tile;
        } else if cols > 4 {
            cols -= cols % 4;
        }
    }
    let rows =
        t.m.min(binding_elems / t.k.max(1))
            .min(binding_elems / cols.max(1))
            .min(max_extent);
    Ok((rows.max(1), cols.max(1)))
}

pub(super) fn run(exec: &mut Exec, t: &Matmul) -> Result<Outputs> {
    let (m, k, n) = (t.m, t.k, t.n);
    if m == 0 || n == 0 {
        return Ok(t.outputs(vec![0.0f32; m * n]));
    }
    let gpu = exec.gpu();
    let (rows, cols) = block_shape(t, gpu.binding_elements(4), gpu.max_groups())?;
    if rows == m && cols == n && k > 0 {
        return run_whole(exec, t);
    }
    let mut out = vec![0.0f32; m * n];
    // Blocks of a and b are gathered on the host, so both must be there.
    let (a, b) = (exec.host(&t.a)?, exec.host(&t.b)?);
    let (TensorData::F32(a), TensorData::F32(b)) = (a, b) else {
        unreachable!("matmul's inputs are f32 (Matmul::plan)")
    };
    let a_buf = exec.storage((rows * k).max(1) as u64 * 4);
    let b_buf = exec.storage((k * cols).max(1) as u64 * 4);
    let c_buf = exec.output((rows * cols * 4) as u64);
    let mut chosen = None;
    let mut block = Vec::new();
    for j0 in (0..n).step_by(cols) {
        let nb = cols.min(n - j0);
        let slab: Vec<f32>;
        let b_part: &[f32] = if nb == n {
            b
        } else {
            slab = (0..k)
                .flat_map(|p| &b[p * n + j0..p * n + j0 + nb])
                .copied()
                .collect();
            &slab
        };
        if k > 0 {
            exec.upload(&[(&b_buf, bytemuck::cast_slice(b_part))])?;
        }
        for i0 in (0..m).step_by(rows) {
            let mb = rows.min(m - i0);
            if k > 0 {
                exec.upload(&[(&a_buf, bytemuck::cast_slice(&a[i0 * k..(i0 + mb) * k]))])?;
            }
            let shape = Shape { m: mb, k, n: nb };
            // Chosen once per product, on its first block (whose a and b
            // are now on the device, for tuning to run on).
            let variant = match chosen {
                Some(v) => v,
                None => {
                    let problem = Problem {
                        shape,
                        a: &a_buf,
                        b: &b_buf,
                    };
                    let v = gpu.matmul_tuner.choose(gpu, Shape { m, k, n }, &problem)?;
                    *chosen.insert(v)
                }
            };
            // A narrow last slab may not allow what the product allows.
            let variant = if variant.applies(k, nb) {
                variant
            } else {
                variant.any_shape()
            };
            let pipeline = gpu.pipeline_at(Kernel::Matmul, variant.name, 0, &[]);
            exec.compute(&[pass(&pipeline, &a_buf, &b_buf, &c_buf, shape, variant.tile)])?;
            if nb == n {
                exec.download_into(&c_buf, 0, &mut out[i0 * n..(i0 + mb) * n])?;
            } else {
                block.resize(mb * nb, 0.0);
                exec.download_into(&c_buf, 0, &mut block)?;
                for (r, row) in block.chunks_exact(nb).enumerate() {
                    out[(i0 + r) * n + j0..][..nb].copy_from_slice(row);
                }
            }
        }
    }
    Ok(t.outputs(out))
}

/// A product that fits the device in one block: a and b bound whole
/// (where they are kept on the device, in place), and the output kept
/// there when the caller keeps it.
fn run_whole(exec: &mut Exec, t: &Matmul) -> Result<Outputs> {
    let (m, k, n) = (t.m, t.k, t.n);
    let gpu = exec.gpu();
    let (a_bytes, b_bytes, c_bytes) = ((m * k * 4) as u64, (k * n * 4) as u64, (m * n * 4) as u64);
    let a = exec.source(&t.a, a_bytes)?;
    let b = exec.source(&t.b, b_bytes)?;
    exec.stage(&[(&a, 0, a_bytes), (&b, 0, b_bytes)])?;
    let sink = exec.sink("out", c_bytes, c_bytes)?;
    let ((a_buf, _), (b_buf, _), (c_buf, _)) = (a.at(0), b.at(0), sink.at(0));
    let shape = Shape { m, k, n };
    let problem = Problem {
        shape,
        a: a_buf,
        b: b_buf,
    };
    let variant = gpu.matmul_tuner.choose(gpu, shape, &problem)?;
    let pipeline = gpu.pipeline_at(Kernel::Matmul, variant.name, 0, &[]);
    exec.compute(&[pass(&pipeline, a_buf, b_buf, c_buf, shape, variant.tile)])?;
    let mut out = if sink.is_whole() { Vec::new() } else { vec![0.0f32; m * n] };
    exec.drain(&sink, &mut out)?;
    let spec = Spec {
        dtype: DType::F32,
        shape: vec![m, n],
    };
    if exec.finish_sink("out", sink, spec) {
        return Ok(Outputs::new());
    }
    Ok(t.outputs(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(m: usize, k: usize, n: usize) -> Matmul {
        Matmul::new(m, k, n, vec![0.0; m * k], vec![0.0; k * n]).unwrap()
    }

    #[test]
    fn slabs_keep_groups_of_four_columns() {
        // 64 KiB bindings (16,384 floats), k = 300: 54 columns fit, cut to 52.
        assert_eq!(
            block_shape(&product(10, 300, 1000), 16_384, 65_535)
                .unwrap()
                .1,
            52
        );
        // k = 2000: 8 columns fit.
        assert_eq!(
            block_shape(&product(10, 2000, 1000), 16_384, 65_535)
                .unwrap()
                .1,
            8
        );
        // 300 fit: cut to whole 128 tiles.
        assert_eq!(
            block_shape(&product(10, 50, 1000), 16_384, 65_535).unwrap(),
            (10, 256)
        );
        // All of b fits: not cut.
        assert_eq!(
            block_shape(&product(10, 5, 99), 16_384, 65_535).unwrap(),
            (10, 99)
        );
        assert!(block_shape(&product(1, 20_000, 1), 16_384, 65_535).is_err());
    }
}
