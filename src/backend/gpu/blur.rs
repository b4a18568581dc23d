//! Host side of `shaders/blur.wgsl`: the weights up once, then the image
//! band by band ([`super::bands`]): the column pass into a scratch band,
//! the row pass from it.

use super::bands::{self, Params};
use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::kernel::blur::{Blur, WORKGROUP};
use crate::kernel::{Kernel, Outputs, image};

pub(super) fn run(exec: &mut Exec, t: &Blur) -> Result<Outputs> {
    let gpu = exec.gpu();
    let layout = t.layout;
    if layout.is_empty() {
        return Ok(t.finish(Vec::new()));
    }
    let values = image::data_values(exec.host(&t.image)?);
    let columns = gpu.pipeline_at(Kernel::Blur, "columns", 0, &[]);
    let rows = gpu.pipeline_at(Kernel::Blur, "rows", 0, &[]);
    let w_bytes = (t.weights.len() * 4) as u64;
    let weights = exec.storage(w_bytes);
    exec.upload(&[(&weights, bytemuck::cast_slice(&t.weights))])?;
    let radius = [t.radius() as u32, 0];
    let out = bands::run(exec, "blur", layout, &values, t.radius(), 2, |exec, band, b| {
        let groups = bands::checked_grid(
            exec,
            "blur",
            (
                grid::groups_for(layout.row(), WORKGROUP[0]),
                grid::groups_for(band.rows_out, WORKGROUP[1]),
                1,
            ),
        )?;
        let ([middle, output], bytes) = (b.outputs.0, b.outputs.1) else {
            unreachable!("two outputs asked for")
        };
        exec.compute(&[
            Pass::at(
                &columns,
                vec![(b.input.0, 0, b.input.1), (&weights, 0, w_bytes), (middle, 0, bytes)],
                &Params::new(layout, band, band.rows_in, band.first(), radius),
                groups,
            ),
            Pass::at(
                &rows,
                vec![(middle, 0, bytes), (&weights, 0, w_bytes), (output, 0, bytes)],
                &Params::new(layout, band, band.rows_out, 0, radius),
                groups,
            ),
        ])
    })?;
    Ok(t.finish(out))
}
