//! Images on the GPU in bands of rows (the image kernels): each band's
//! output rows, with the input rows within `halo` of them, fit one
//! storage binding; its input goes up, its passes run, its output comes
//! down. The image goes up as f32 (a u8 image is widened on the host) and
//! its result comes home as f32 (narrowed there).

use super::exec::Exec;
use crate::error::{Error, Result};
use crate::kernel::image::Layout;

/// The uniform both image shaders take: the image's width and channels,
/// the band's input and output rows and where its first output row is
/// among its inputs, and two values of the kernel's own.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    width: u32,
    channels: u32,
    rows_in: u32,
    rows_out: u32,
    first: u32,
    own: [u32; 2],
    _pad: u32,
}

impl Params {
    /// For a pass over `band` of an image of `layout`, reading `rows_in`
    /// rows with its first output row at `first` among them.
    pub fn new(layout: Layout, band: &Band, rows_in: usize, first: usize, own: [u32; 2]) -> Self {
        Params {
            width: layout.width as u32,
            channels: layout.channels as u32,
            rows_in: rows_in as u32,
            rows_out: band.rows_out as u32,
            first: first as u32,
            own,
            _pad: 0,
        }
    }
}

/// Checks a band's dispatch grid against the device's limit per
/// dimension (a row of millions of values, or tens of thousands of
/// channels, would pass it); the error names `kernel`.
pub(super) fn checked_grid(
    exec: &Exec,
    kernel: &str,
    grid: (u32, u32, u32),
) -> Result<(u32, u32, u32)> {
    let most = exec.gpu().max_groups();
    if grid.0 > most || grid.1 > most || grid.2 > most {
        return Err(Error::Gpu(format!(
            "{kernel}: the image needs a grid of {}×{}×{} workgroups, more than the {most} a \
             dimension allows here (rows too long, or too many channels); run it on the CPU",
            grid.0, grid.1, grid.2
        )));
    }
    Ok(grid)
}

/// Buffers of one band: its input rows, and `scratch` outputs each as
/// large as its output rows (the last one is brought home).
pub(super) struct BandBuffers<'b> {
    /// The input rows and their bytes.
    pub input: (&'b wgpu::Buffer, u64),
    /// The outputs, and the bytes of each.
    pub outputs: (&'b [wgpu::Buffer], u64),
}

/// Runs an image of `layout` (its `values` as f32) through `passes`, band
/// by band ([`bands`]): each band's input rows go up, `passes` records
/// its dispatches into `outputs` buffers (the last holds the result), and
/// the result comes down into the returned values.
pub(super) fn run(
    exec: &mut Exec,
    kernel: &str,
    layout: Layout,
    values: &[f32],
    halo: usize,
    outputs: usize,
    mut passes: impl FnMut(&mut Exec, &Band, BandBuffers) -> Result<()>,
) -> Result<Vec<f32>> {
    let row = layout.row();
    let plan = bands(
        kernel,
        layout.height,
        row,
        halo,
        exec.gpu().binding_elements(4),
    )?;
    let most_in = plan.iter().map(|b| b.rows_in).max().unwrap_or(0) * row * 4;
    let most_out = plan.iter().map(|b| b.rows_out).max().unwrap_or(0) * row * 4;
    let input = exec.storage(most_in as u64);
    let scratch: Vec<wgpu::Buffer> = (0..outputs.max(1))
        .map(|_| exec.output(most_out as u64))
        .collect();
    let mut out = vec![0.0f32; layout.len()];
    for band in plan {
        let (from, to) = (band.first_in * row, (band.first_in + band.rows_in) * row);
        exec.upload(&[(&input, bytemuck::cast_slice(&values[from..to]))])?;
        let bytes_out = (band.rows_out * row * 4) as u64;
        let buffers = BandBuffers {
            input: (&input, ((to - from) * 4) as u64),
            outputs: (&scratch, bytes_out),
        };
        passes(exec, &band, buffers)?;
        let first = band.first_out * row;
        let last = scratch.last().expect("at least one output");
        exec.download_into(last, 0, &mut out[first..first + band.rows_out * row])?;
    }
    Ok(out)
}

/// Most rows a band's dispatch covers: 65,535 workgroups of 4 rows (the
/// blur's) in the grid's second dimension.
const MAX_ROWS: usize = 65_535 * 4;

/// One band of an image of `height` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Band {
    /// Its first input row (in the image).
    pub first_in: usize,
    /// Input rows it holds.
    pub rows_in: usize,
    /// Its first output row (in the image).
    pub first_out: usize,
    /// Output rows.
    pub rows_out: usize,
}

impl Band {
    /// Where its first output row is among its input rows.
    pub fn first(&self) -> usize {
        self.first_out - self.first_in
    }
}

/// The bands of an image of `height` rows of `row` values, each output row
/// needing the input rows within `halo` of it, for bindings of at most
/// `binding` values. The error names `kernel`.
pub(super) fn bands(
    kernel: &str,
    height: usize,
    row: usize,
    halo: usize,
    binding: usize,
) -> Result<Vec<Band>> {
    let fit = (binding / row.max(1)).saturating_sub(2 * halo);
    if fit == 0 {
        return Err(Error::Gpu(format!(
            "{kernel}: {} rows of {row} values do not fit one storage binding here ({binding} \
             values); run it on the CPU",
            2 * halo + 1
        )));
    }
    let per_band = fit.min(MAX_ROWS);
    Ok((0..height)
        .step_by(per_band)
        .map(|first_out| {
            let rows_out = per_band.min(height - first_out);
            let first_in = first_out.saturating_sub(halo);
            let end_in = (first_out + rows_out + halo).min(height);
            Band {
                first_in,
                rows_in: end_in - first_in,
                first_out,
                rows_out,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_the_image_with_their_halos() {
        for (height, row, halo, binding) in [
            (100, 10, 3, 300),
            (7, 5, 0, 5),
            (1, 4, 8, 1000),
            (1000, 3, 2, 64),
        ] {
            let bands = bands("k", height, row, halo, binding).unwrap();
            let mut next = 0;
            for b in &bands {
                assert_eq!(b.first_out, next);
                next += b.rows_out;
                assert!(
                    b.rows_in * row <= binding && b.rows_out * row <= binding,
                    "{b:?}"
                );
                assert_eq!(b.first_in, b.first_out.saturating_sub(halo));
                assert_eq!(
                    b.first_in + b.rows_in,
                    (b.first_out + b.rows_out + halo).min(height)
                );
            }
            assert_eq!(next, height);
        }
        assert!(
            bands("blur", 10, 100, 8, 1000)
                .unwrap_err()
                .to_string()
                .contains("blur: 17 rows")
        );
    }
}
