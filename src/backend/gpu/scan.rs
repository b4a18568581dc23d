//! Host side of `shaders/scan.wgsl`: per chunk of the input, the tile sums,
//! their scan (carrying the chunks before), and the tiles scanned in place;
//! then the chunk comes back down.

use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::kernel::scan::{Scan, TILE};
use crate::kernel::{Kernel, Outputs};
use crate::tensor::TensorData;

/// Matches `Params` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    tiles: u32,
    inclusive: u32,
    _pad: u32,
}

pub(super) fn run(exec: &mut Exec, t: &Scan) -> Result<Outputs> {
    let (bits, dtype): (&[u32], u32) = match &t.x {
        TensorData::U32(v) => (v, 0),
        TensorData::I32(v) => (bytemuck::cast_slice(v), 0),
        TensorData::F32(v) => (bytemuck::cast_slice(v), 1),
        TensorData::U8(_) => unreachable!("rejected by Scan::new"),
    };
    let n = bits.len();
    let mut out = vec![0u32; n];
    if n > 0 {
        let gpu = exec.gpu();
        let variant = |entry| gpu.pipeline_at(Kernel::Scan, entry, dtype, &[("DTYPE", f64::from(dtype))]);
        let (sums_of, scan_sums, scan_tiles) =
            (variant("tile_sums"), variant("scan_sums"), variant("scan_tiles"));
        // Whole tiles per chunk, one workgroup each, within one dispatch.
        let tile = TILE as usize;
        let max_tiles = (gpu.binding_elements(4) / tile).min(gpu.max_groups() as usize).max(1);
        let chunk = max_tiles * tile;
        let data = exec.storage((chunk.min(n) * 4) as u64);
        let tiles_cap = chunk.min(n).div_ceil(tile);
        let sums = exec.storage((tiles_cap as u64 + 1) * 4);
        // The carry into the first chunk.
        exec.upload(&[(&sums, &[0u8; 4])])?;
        for (start, len) in grid::chunks(n, chunk) {
            let range = start..start + len;
            exec.upload(&[(&data, bytemuck::cast_slice(&bits[range.clone()]))])?;
            let tiles = len.div_ceil(tile);
            let params = Params {
                n: len as u32,
                tiles: tiles as u32,
                inclusive: u32::from(t.inclusive),
                _pad: 0,
            };
            let storage = || vec![(&data, (len * 4) as u64), (&sums, (tiles as u64 + 1) * 4)];
            let groups = (tiles as u32, 1, 1);
            exec.compute(&[
                Pass::new(&sums_of, storage(), &params, groups),
                Pass::new(&scan_sums, storage(), &params, (1, 1, 1)),
                Pass::new(&scan_tiles, storage(), &params, groups),
            ])?;
            exec.download_into(&data, 0, &mut out[range])?;
        }
    }
    let out = match &t.x {
        TensorData::U32(_) => TensorData::U32(out),
        TensorData::I32(_) => TensorData::I32(bytemuck::cast_vec(out)),
        _ => TensorData::F32(bytemuck::cast_vec(out)),
    };
    Ok(Scan::outputs(out))
}
