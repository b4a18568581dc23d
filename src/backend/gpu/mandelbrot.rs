//! Host side of `shaders/mandelbrot.wgsl`: the image is rendered in bands
//! of rows, each small enough for one storage binding and one grid.

use super::exec::{Exec, Pass};
use super::grid;
use crate::error::{Error, Result};
use crate::kernel::mandelbrot::{Mandelbrot, WORKGROUP_EDGE};
use crate::kernel::{Kernel, Outputs};

/// Matches `Params` in the shader (36 bytes, padded to 48).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    width: u32,
    height: u32,
    row_offset: u32,
    rows: u32,
    max_iter: u32,
    x0: f32,
    x1: f32,
    y0: f32,
    y1: f32,
    _pad: [u32; 3],
}

pub(super) fn run(exec: &mut Exec, t: &Mandelbrot) -> Result<Outputs> {
    let gpu = exec.gpu();
    let edge = WORKGROUP_EDGE as usize;
    let width = t.width as usize;
    let max_extent = gpu.max_groups() as usize * edge;
    if width > max_extent {
        return Err(Error::Gpu(format!(
            "mandelbrot: width {width} is more than one dispatch spans ({max_extent})"
        )));
    }
    let band = (gpu.binding_elements(4) / width).min(max_extent).max(1);
    let pipeline = gpu.pipeline(Kernel::Mandelbrot, 0, &[]);
    let mut counts = vec![0u32; t.pixels()];
    let out = exec.output((band.min(t.height as usize) * width * 4) as u64);
    for (row0, rows) in grid::chunks(t.height as usize, band) {
        let params = Params {
            width: t.width,
            height: t.height,
            row_offset: row0 as u32,
            rows: rows as u32,
            max_iter: t.max_iter,
            x0: t.x0,
            x1: t.x1,
            y0: t.y0,
            y1: t.y1,
            _pad: [0; 3],
        };
        let groups = (
            grid::groups_for(width, WORKGROUP_EDGE),
            grid::groups_for(rows, WORKGROUP_EDGE),
            1,
        );
        let bytes = (rows * width * 4) as u64;
        exec.compute(&[Pass::new(&pipeline, vec![(&out, bytes)], &params, groups)])?;
        exec.download_into(&out, 0, &mut counts[row0 * width..(row0 + rows) * width])?;
    }
    Ok(t.outputs(counts))
}
