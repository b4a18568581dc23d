//! Host side of `shaders/blur.wgsl`: the weights up once, then the image
//! band by band ([`super::bands`]): up, the column pass into a scratch
//! band, the row pass from it, down.

use super::bands::bands;
use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::kernel::blur::{Blur, WORKGROUP};
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
    radius: u32,
    _pad: [u32; 2],
}

pub(super) fn run(exec: &mut Exec, t: &Blur) -> Result<Outputs> {
    let gpu = exec.gpu();
    let layout = t.layout;
    if layout.is_empty() {
        return Ok(t.finish(Vec::new()));
    }
    let row = layout.row();
    let values = image::data_values(exec.host(&t.image)?);
    let columns = gpu.pipeline_at(Kernel::Blur, "columns", 0, &[]);
    let rows = gpu.pipeline_at(Kernel::Blur, "rows", 0, &[]);
    let weights = exec.storage((t.weights.len() * 4) as u64);
    exec.upload(&[(&weights, bytemuck::cast_slice(&t.weights))])?;
    let mut out = vec![0.0f32; layout.len()];
    let plan = bands("blur", layout.height, row, t.radius(), gpu.binding_elements(4))?;
    let most_in = plan.iter().map(|b| b.rows_in).max().unwrap_or(0) * row * 4;
    let most_out = plan.iter().map(|b| b.rows_out).max().unwrap_or(0) * row * 4;
    let input = exec.storage(most_in as u64);
    let (middle, output) = (exec.output(most_out as u64), exec.output(most_out as u64));
    let w_bytes = (t.weights.len() * 4) as u64;
    for band in plan {
        let (from, to) = (band.first_in * row, (band.first_in + band.rows_in) * row);
        exec.upload(&[(&input, bytemuck::cast_slice(&values[from..to]))])?;
        let params = |rows_in: usize, first: usize| Params {
            width: layout.width as u32,
            channels: layout.channels as u32,
            rows_in: rows_in as u32,
            rows_out: band.rows_out as u32,
            first: first as u32,
            radius: t.radius() as u32,
            _pad: [0; 2],
        };
        let groups = (
            grid::groups_for(row, WORKGROUP[0]),
            grid::groups_for(band.rows_out, WORKGROUP[1]),
            1,
        );
        let bytes_out = (band.rows_out * row * 4) as u64;
        exec.compute(&[
            Pass::at(
                &columns,
                vec![(&input, 0, ((to - from) * 4) as u64), (&weights, 0, w_bytes), (&middle, 0, bytes_out)],
                &params(band.rows_in, band.first()),
                groups,
            ),
            Pass::at(
                &rows,
                vec![(&middle, 0, bytes_out), (&weights, 0, w_bytes), (&output, 0, bytes_out)],
                &params(band.rows_out, 0),
                groups,
            ),
        ])?;
        let first = band.first_out * row;
        exec.download_into(&output, 0, &mut out[first..first + band.rows_out * row])?;
    }
    Ok(t.finish(out))
}
