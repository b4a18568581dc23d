//! What the image kernels (`conv2d`, `blur`) share: an image is u8 or f32
//! `[h, w]` (grey) or `[h, w, c]` (c channels, each filtered on its own),
//! row-major with channels interleaved; results keep the input's dtype
//! (u8 rounded half to even and clamped to 0..=255); edges are clamped
//! (`mode='nearest'` in SciPy); an output of up to 4 channels may be
//! written as a `.png`.

use std::borrow::Cow;

use rayon::prelude::*;

use super::profile::{Sweep, random_f32};
use super::{Arg, Inputs, Painter, Picture};
use crate::error::{Error, Result};
use crate::tensor::{DType, Described, Handle, Tensor, TensorData};

/// The image kernels' input `image`.
pub const INPUT: Arg = Arg {
    name: "image",
    doc: "u8/f32 [h, w] or [h, w, c] (each channel on its own); a .png reads as u8",
    optional: false,
};

/// The image kernels' output `out`.
pub const OUTPUT: Arg = Arg {
    name: "out",
    doc: "the image's dtype and shape (u8 rounded and clamped); a .png path gets a picture",
    optional: false,
};

/// The image kernels' bench sweep: n×n images, n up to 4096 (`size_means`
/// says what else the size fixes).
pub const fn sweep(size_means: &'static str) -> Sweep {
    Sweep {
        size_means,
        sizes_as_powers: false,
        max_size: 32_768,
        quick_sizes: &[256, 1024],
        sizes: &[256, 1024, 2048, 4096],
        probe_sizes: [64, 512],
    }
}

/// A random n×n grey f32 image in [-1, 1), for the bench.
pub fn random_image(n: usize, seed: u64, kernel: &str) -> Result<Tensor> {
    let pixels = n
        .checked_mul(n)
        .ok_or_else(|| Error::bad(format!("{kernel} {n}: too large")))?;
    Ok(Tensor::new(
        vec![n, n],
        TensorData::F32(random_f32(pixels, seed)?),
    ))
}

/// An image's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Values a pixel.
    pub channels: usize,
}

impl Layout {
    /// Values in the image.
    pub fn len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Whether it has no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values in a row.
    pub fn row(&self) -> usize {
        self.width * self.channels
    }
}

/// Takes input `name` as an image: its dtype and layout.
pub(crate) fn take<T: Described>(
    inputs: &mut Inputs<T>,
    kernel: &str,
    name: &str,
) -> Result<(T, Layout)> {
    let t = inputs
        .take_optional_any_rank(name, &[DType::U8, DType::F32])?
        .ok_or_else(|| Error::bad(format!("{kernel} needs input '{name}'")))?;
    let layout = match *t.shape() {
        [height, width] => Layout {
            height,
            width,
            channels: 1,
        },
        [height, width, channels] if channels > 0 => Layout {
            height,
            width,
            channels,
        },
        _ => {
            return Err(Error::bad(format!(
                "input '{name}' of {kernel} is {}, but an image is [height, width] or \
                 [height, width, channels]",
                t.describe()
            )));
        }
    };
    Ok((t, layout))
}

/// An image's values as f32 (u8 converted).
pub fn values(h: &Handle) -> Cow<'_, [f32]> {
    data_values(h.data())
}

/// [`values`] of host data.
pub fn data_values(data: &TensorData) -> Cow<'_, [f32]> {
    match data {
        TensorData::F32(v) => Cow::Borrowed(v),
        TensorData::U8(v) => Cow::Owned(
            v.par_iter()
                .with_min_len(PER_TASK)
                .map(|&b| f32::from(b))
                .collect(),
        ),
        other => unreachable!("images are u8 or f32, not {}", other.dtype().name()),
    }
}

/// Values a rayon task converts at least, between u8 and f32 (a frame's
/// plane in a few tasks, a small image in one).
const PER_TASK: usize = 1 << 16;

/// A result in `dtype` with `shape`: f32 as it is, u8 rounded half to
/// even and clamped.
pub fn finish(values: Vec<f32>, dtype: DType, shape: &[usize]) -> Tensor {
    let data = match dtype {
        DType::U8 => TensorData::U8(
            values
                .par_iter()
                .with_min_len(PER_TASK)
                .map(|&v| to_u8(v))
                .collect(),
        ),
        _ => TensorData::F32(values),
    };
    Tensor::new(shape.to_vec(), data)
}

/// One value as a byte: rounded half to even, clamped (NaN is 0).
#[inline]
pub fn to_u8(v: f32) -> u8 {
    // Adding 2^23 leaves no fraction bits: the sum is rounded to a whole
    // number by the FPU's own rounding, half to even, exactly as
    // `round_ties_even` — which on baseline x86-64 (no SSE4.1) is a call
    // to `rintf` per value — and that number is the sum's low mantissa
    // bits (a float-to-int `as` saturates, which does not vectorize
    // there). Together they took a third of a 1080p video blur's time.
    // `max` first makes NaN 0; the clamp keeps the sum exact.
    const WHOLE: f32 = 8_388_608.0;
    #[allow(clippy::manual_clamp)] // clamp keeps NaN; this makes it 0
    let clamped = v.max(0.0).min(255.0);
    (clamped + WHOLE).to_bits() as u8
}

/// Draws an image output of up to 4 channels as a picture (f32 values
/// rounded and clamped to bytes).
pub fn painter() -> Painter {
    Painter {
        draw: |t, _| picture(t),
        param: 0,
    }
}

fn picture(t: &Tensor) -> Option<Picture> {
    let (h, w, c) = match *t.shape() {
        [h, w] => (h, w, 1),
        [h, w, c] if (1..=4).contains(&c) => (h, w, c),
        _ => return None,
    };
    let pixels = match t.data() {
        TensorData::U8(v) => v.clone(),
        TensorData::F32(v) => v.iter().map(|&v| to_u8(v)).collect(),
        _ => return None,
    };
    Some(Picture {
        width: u32::try_from(w).ok()?,
        height: u32::try_from(h).ok()?,
        channels: c as u8,
        pixels,
    })
}

/// `i + offset` clamped to `0..n` (n > 0).
#[inline]
pub fn clamped(i: usize, offset: isize, n: usize) -> usize {
    (i as isize + offset).clamp(0, n as isize - 1) as usize
}

/// One tap of a filter: `weight ×` `src` read `offset` values on.
#[derive(Clone, Copy)]
pub struct Tap<'a> {
    /// The values read (a row).
    pub src: &'a [f32],
    /// The tap's weight.
    pub weight: f32,
    /// Where `out[v]` reads: `src[v + offset]`.
    pub offset: isize,
}

/// Values a block of [`sum_taps`] sums in registers.
const LANES: usize = 64;

/// `out[v] = Σₜ wₜ · srcₜ[v + offₜ]` for v in `lo..hi`, where every tap
/// reads inside its `src`: in blocks of [`LANES`] values summed in
/// registers (one load per tap and value, no store until the block is
/// done). Compiled for the CPU's vector unit only inside a `pulp`
/// dispatch of a `WithSimd` whose `with_simd` is `#[inline(always)]` (a
/// closure's body is compiled apart, without the vector unit's features).
#[inline(always)]
pub fn sum_taps(out: &mut [f32], taps: &[Tap], lo: usize, hi: usize) {
    let mut v = lo;
    while v + LANES <= hi {
        let mut acc = [0.0f32; LANES];
        for t in taps {
            let from = (v as isize + t.offset) as usize;
            let src: &[f32; LANES] = t.src[from..from + LANES].try_into().expect("LANES values");
            for (a, &s) in acc.iter_mut().zip(src) {
                *a += t.weight * s;
            }
        }
        out[v..v + LANES].copy_from_slice(&acc);
        v += LANES;
    }
    for (i, o) in out[v..hi].iter_mut().enumerate() {
        let v = v + i;
        *o = taps
            .iter()
            .map(|t| t.weight * t.src[(v as isize + t.offset) as usize])
            .sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_half_to_even_and_clamp() {
        let mut probes = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            1e30,
            -1e30,
        ];
        for k in -2000..=3000 {
            let v = k as f32 / 8.0; // every half and quarter from -250 to 375
            probes.extend([v, v.next_up(), v.next_down()]);
        }
        for v in probes {
            let want = v.round_ties_even().clamp(0.0, 255.0) as u8;
            assert_eq!(to_u8(v), want, "{v}");
        }
    }
}
