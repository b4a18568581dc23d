//! Host side of `shaders/matmul.wgsl`.
//!
//! When a, b or c is larger than one storage binding, the product is cut
//! into blocks: column slabs of b (packed on the host when narrower than b)
//! times row blocks of a, each giving one block of c. Each block's grid also
//! stays within the per-dimension workgroup limit.

use super::exec::{Exec, Pass};
use crate::error::{Error, Result};
use crate::kernel::matmul::{Matmul, TILE};
use crate::kernel::{Kernel, Outputs};

/// Matches `Dims` in the shader (padded to 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    m: u32,
    k: u32,
    n: u32,
    _pad: u32,
}

/// Rows per block and columns per slab that fit the device.
fn block_shape(t: &Matmul, binding_elems: usize, max_groups: u32) -> Result<(usize, usize)> {
    let tile = TILE as usize;
    let max_extent = max_groups as usize * tile;
    if t.k > binding_elems {
        return Err(Error::Gpu(format!(
            "matmul: k = {} is more than one storage binding holds ({binding_elems} f32); \
             run it on the CPU",
            t.k
        )));
    }
    // Column slab: all of b if it fits, else as many whole tiles as fit.
    let mut cols = t.n.min(binding_elems / t.k.max(1)).min(max_extent);
    if cols < t.n && cols > tile {
        cols -= cols % tile;
    }
    let rows =
        t.m.min(binding_elems / t.k.max(1))
            .min(binding_elems / cols.max(1))
            .min(max_extent);
    Ok((rows.max(1), cols.max(1)))
}

pub(super) fn run(exec: &mut Exec, t: &Matmul) -> Result<Outputs> {
    let (m, k, n) = (t.m, t.k, t.n);
    let mut out = vec![0.0f32; m * n];
    if m == 0 || n == 0 {
        return Ok(t.outputs(out));
    }
    let gpu = exec.gpu();
    let pipeline = gpu.pipeline(Kernel::Matmul, 0, &[]);
    let (rows, cols) = block_shape(t, gpu.binding_elements(4), gpu.max_groups())?;
    // Bindings must not be empty: k = 0 still binds one (unused) element.
    let a_buf = exec.storage((rows * k).max(1) as u64 * 4);
    let b_buf = exec.storage((k * cols).max(1) as u64 * 4);
    let c_buf = exec.output((rows * cols * 4) as u64);
    let mut block = Vec::new();
    for j0 in (0..n).step_by(cols) {
        let nb = cols.min(n - j0);
        let slab: Vec<f32>;
        let b_part: &[f32] = if nb == n {
            &t.b
        } else {
            slab = (0..k)
                .flat_map(|p| &t.b[p * n + j0..p * n + j0 + nb])
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
                exec.upload(&[(&a_buf, bytemuck::cast_slice(&t.a[i0 * k..(i0 + mb) * k]))])?;
            }
            let dims = Dims {
                m: mb as u32,
                k: k as u32,
                n: nb as u32,
                _pad: 0,
            };
            let storage = vec![
                (&a_buf, (mb * k).max(1) as u64 * 4),
                (&b_buf, (k * nb).max(1) as u64 * 4),
                (&c_buf, (mb * nb * 4) as u64),
            ];
            let groups = (
                nb.div_ceil(TILE as usize) as u32,
                mb.div_ceil(TILE as usize) as u32,
                1,
            );
            exec.compute(&[Pass::new(&pipeline, storage, &dims, groups)])?;
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
