//! Host side of `shaders/conv2d.wgsl`: the kernel up once, then the image
//! band by band ([`super::bands`]), one dispatch per band (16x16 tiles by
//! channels).

use super::bands::{self, Params};
use super::exec::{Exec, Pass};
use super::grid;
use crate::error::Result;
use crate::kernel::conv2d::{Conv2d, WORKGROUP};
use crate::kernel::{Kernel, Outputs, image};

pub(super) fn run(exec: &mut Exec, t: &Conv2d) -> Result<Outputs> {
    let gpu = exec.gpu();
    let layout = t.layout;
    if layout.is_empty() {
        return Ok(t.finish(Vec::new()));
    }
    let values = image::data_values(exec.host(&t.image)?);
    let k = exec.host(&t.kernel)?.as_bytes().to_vec();
    let pipeline = gpu.pipeline(Kernel::Conv2d, 0, &[]);
    let kern = exec.storage(k.len() as u64);
    exec.upload(&[(&kern, &k)])?;
    let out = bands::run(exec, "conv2d", layout, &values, t.kh / 2, 1, |exec, band, b| {
        let params = Params::new(layout, band, band.rows_in, band.first(), [t.kh as u32, t.kw as u32]);
        let groups = bands::checked_grid(
            exec,
            "conv2d",
            (
                grid::groups_for(layout.width, WORKGROUP[0]),
                grid::groups_for(band.rows_out, WORKGROUP[1]),
                u32::try_from(layout.channels).unwrap_or(u32::MAX),
            ),
        )?;
        let storage = vec![
            (b.input.0, 0, b.input.1),
            (&kern, 0, k.len() as u64),
            (&b.outputs.0[0], 0, b.outputs.1),
        ];
        exec.compute(&[Pass::at(&pipeline, storage, &params, groups)])
    })?;
    Ok(t.finish(out))
}
