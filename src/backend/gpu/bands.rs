//! Images on the GPU in bands of rows (`conv2d`, `blur`): each band's
//! output rows, with the input rows within `halo` of them, fit one
//! storage binding; its input goes up, its passes run, its output comes
//! down. The image goes up as f32 (a u8 image is widened on the host) and
//! its result comes home as f32 (narrowed there).

use crate::error::{Error, Result};

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
