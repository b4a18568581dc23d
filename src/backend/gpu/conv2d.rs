//! Host side of `shaders/conv2d.wgsl`: the kernel up once, then the image
//! band by band ([`super::bands`]): up, one dispatch per band (16x16 tiles
//! by channels), down.

use super::bands::bands;
use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::kernel::conv2d::{Conv2d, WORKGROUP};
use crate::kernel::{Kernel, Outputs, image};

/// Matches `Params` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    width: u32,
    channels: u32,
    rows_in: u32,
    rows_out: u32,
    first: u32,
    kh: u32,
    kw: u32,
    _pad: u32,
}

pub(super) fn run(exec: &mut Exec, t: &Conv2d) -> Result<Outputs> {
    let gpu = exec.gpu();
    let layout = t.layout;
    if layout.is_empty() {
        return Ok(t.finish(Vec::new()));
    }
    let row = layout.row();
    let values = image::data_values(exec.host(&t.image)?);
    let k = exec.host(&t.kernel)?.as_bytes().to_vec();
    let pipeline = gpu.pipeline(Kernel::Conv2d, 0, &[]);
    let kern = exec.storage(k.len() as u64);
    exec.upload(&[(&kern, &k)])?;
    let mut out = vec![0.0f32; layout.len()];
    let plan = bands("conv2d", layout.height, row, t.kh / 2, gpu.binding_elements(4))?;
    let most_in = plan.iter().map(|b| b.rows_in).max().unwrap_or(0) * row * 4;
    let most_out = plan.iter().map(|b| b.rows_out).max().unwrap_or(0) * row * 4;
    let (input, output) = (exec.storage(most_in as u64), exec.output(most_out as u64));
    for band in plan {
        let (from, to) = (band.first_in * row, (band.first_in + band.rows_in) * row);
        exec.upload(&[(&input, bytemuck::cast_slice(&values[from..to]))])?;
        let params = Params {
            width: layout.width as u32,
            channels: layout.channels as u32,
            rows_in: band.rows_in as u32,
            rows_out: band.rows_out as u32,
            first: band.first() as u32,
            kh: t.kh as u32,
            kw: t.kw as u32,
            _pad: 0,
        };
        let groups = (
            grid::groups_for(layout.width, WORKGROUP[0]),
            grid::groups_for(band.rows_out, WORKGROUP[1]),
            layout.channels as u32,
        );
        let bytes_out = (band.rows_out * row * 4) as u64;
        let storage = vec![
            (&input, 0, ((to - from) * 4) as u64),
            (&kern, 0, k.len() as u64),
            (&output, 0, bytes_out),
        ];
        exec.compute(&[Pass::at(&pipeline, storage, &params, groups)])?;
        let first = band.first_out * row;
        exec.download_into(&output, 0, &mut out[first..first + band.rows_out * row])?;
    }
    Ok(t.finish(out))
}
