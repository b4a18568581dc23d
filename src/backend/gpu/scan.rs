//! Host side of `shaders/scan.wgsl`: per chunk of the input, the tile sums,
//! their scan (carrying the chunks before), and the tiles scanned in place;
//! then the chunk comes back down. [`ScanPipelines`] also serves other
//! kernels' encodings that scan on the device (`sort` scans its counts).

use super::exec::{Exec, Pass};
use super::{GpuBackend, grid};
use crate::error::Result;
use crate::kernel::scan::{Scan, TILE};
use crate::kernel::{Kernel, Outputs};
use crate::tensor::{DType, Spec, TensorData};

/// Matches `Params` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    tiles: u32,
    inclusive: u32,
    _pad: u32,
}

/// The scan's three pipelines for one dtype.
pub(super) struct ScanPipelines {
    tile_sums: wgpu::ComputePipeline,
    scan_sums: wgpu::ComputePipeline,
    scan_tiles: wgpu::ComputePipeline,
}

impl ScanPipelines {
    /// For wrapping u32 (and i32) sums (`float`: f32 sums).
    fn new(gpu: &GpuBackend, float: bool) -> Self {
        let dtype = u32::from(float);
        let at = |entry| gpu.pipeline_at(Kernel::Scan, entry, dtype, &[("DTYPE", f64::from(dtype))]);
        ScanPipelines {
            tile_sums: at("tile_sums"),
            scan_sums: at("scan_sums"),
            scan_tiles: at("scan_tiles"),
        }
    }

    /// For wrapping u32 sums.
    pub fn wrapping(gpu: &GpuBackend) -> Self {
        ScanPipelines::new(gpu, false)
    }

    /// Bytes of the `sums` buffer a scan of `len` elements in one dispatch
    /// needs: the carry, then one sum per tile.
    pub fn sums_bytes(len: usize) -> u64 {
        (len.div_ceil(TILE as usize) as u64 + 1) * 4
    }

    /// The passes that scan the first `len` elements of `data` in place,
    /// starting from the carry in `sums[0]` (which they leave as the
    /// carry past them); `len` spans at most one dispatch of tiles.
    pub fn passes<'a>(
        &'a self,
        data: &'a wgpu::Buffer,
        len: usize,
        sums: &'a wgpu::Buffer,
        inclusive: bool,
    ) -> [Pass<'a>; 3] {
        let tiles = len.div_ceil(TILE as usize);
        let params = Params {
            n: len as u32,
            tiles: tiles as u32,
            inclusive: u32::from(inclusive),
            _pad: 0,
        };
        let storage = || vec![(data, (len * 4) as u64), (sums, (tiles as u64 + 1) * 4)];
        let groups = (tiles as u32, 1, 1);
        [
            Pass::new(&self.tile_sums, storage(), &params, groups),
            Pass::new(&self.scan_sums, storage(), &params, (1, 1, 1)),
            Pass::new(&self.scan_tiles, storage(), &params, groups),
        ]
    }
}

pub(super) fn run(exec: &mut Exec, t: &Scan) -> Result<Outputs> {
    let (n, dtype) = (t.x.len(), t.x.dtype());
    if n == 0 {
        return Ok(Scan::outputs(TensorData::empty(dtype)));
    }
    let gpu = exec.gpu();
    let pipelines = ScanPipelines::new(gpu, dtype == DType::F32);
    // Whole tiles per chunk, one workgroup each, within one dispatch.
    let tile = TILE as usize;
    let max_tiles = (gpu.binding_elements(4) / tile).min(gpu.max_groups() as usize).max(1);
    let chunk = max_tiles * tile;
    // Each chunk is scanned in place in `data`: uploaded there, or copied
    // there from the input's kept buffer (so neither needs a scratch
    // buffer of its own), and copied on into a kept output.
    let x = exec.source(&t.x, 0)?;
    let sink = exec.sink("out", (n * 4) as u64, 0)?;
    let data = exec.storage((chunk.min(n) * 4) as u64);
    let sums = exec.storage(ScanPipelines::sums_bytes(chunk.min(n)));
    // The carry into the first chunk.
    exec.clear(&sums, 4);
    let mut out = if sink.is_whole() { Vec::new() } else { vec![0u32; n] };
    for (start, len) in grid::chunks(n, chunk) {
        let (from, bytes) = (start as u64 * 4, len as u64 * 4);
        exec.load(&x, from, bytes, &data)?;
        exec.compute(&pipelines.passes(&data, len, &sums, t.inclusive))?;
        if sink.is_whole() {
            exec.copy_range((&data, 0), sink.at(from), bytes);
        } else {
            exec.download_into(&data, 0, &mut out[start..start + len])?;
        }
    }
    if exec.finish_sink("out", sink, Spec { dtype, shape: vec![n] }) {
        return Ok(Outputs::new());
    }
    Ok(Scan::outputs(TensorData::from_words(dtype, out)))
}
