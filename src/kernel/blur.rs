//! `blur`: a Gaussian blur of an image (u8 or f32, `[h, w]` or
//! `[h, w, c]`, each channel on its own), edges clamped, as
//! `scipy.ndimage.gaussian_filter(image, (sigma, sigma[, 0]),
//! mode='nearest', truncate=4.0)`: separable, the columns (axis 0) first,
//! then the rows, with SciPy's weights — `exp(−x²/2σ²)` for |x| ≤ radius,
//! normalised to sum 1 (computed in f64), radius `int(4σ + 0.5)` unless
//! given. u8 results are rounded and clamped once, at the end
//! ([`super::image`]); SciPy on a u8 array rounds after each axis, so it
//! may differ from ours by 1.
//!
//! The CPU makes each output row in one go: the column pass into a row
//! in cache (2·radius + 1 input rows, contiguous slices), then the row
//! pass from it, so the image is read once and written once. The GPU runs
//! the two passes as two dispatches over bands of rows.

use rayon::prelude::*;

use super::image::{self, Layout, Tap};
use super::profile::{self, Bandwidth, NumpyCode, Profile, Unit};
use super::{Inputs, KernelTask, Outputs, Painter, Param, Params, PlainLoop, Plan, ShaderInfo, Signature, Task, Streaming};
use crate::error::{Error, Result};
use crate::tensor::{DType, Handle, Spec, Tensor, TensorData};

/// Input `image`; parameters `sigma`, `radius`; output `out`.
pub const SIGNATURE: Signature = Signature {
    summary: "Gaussian blur of an image, edges clamped (scipy.ndimage.gaussian_filter)",
    inputs: &[image::INPUT],
    params: &[
        Param {
            name: "sigma",
            default: None,
            doc: "the Gaussian's standard deviation in pixels (> 0)",
        },
        Param {
            name: "radius",
            default: Some("int(4·sigma + 0.5)"),
            doc: "taps each side (at most 4096), as SciPy's truncate=4.0",
        },
    ],
    outputs: &[image::OUTPUT],
    picture_output: Some("out"),
    example: "anycore run blur -i image=in.png -p sigma=3 -o out=out.png",
};

/// Taps each side at most.
pub const MAX_RADIUS: usize = 4096;

/// The bench's sigma.
const BENCH_SIGMA: f64 = 2.0;

/// What the bench, the probe and the cost model know of `blur`: a size is
/// the n of an n×n grey f32 image, blurred with sigma 2.
pub const PROFILE: Profile = Profile {
    sweep: image::sweep("the n of n×n images (grey f32, sigma 2)"),
    unit: Unit {
        name: "GB/s",
        counts: "8 bytes per pixel: the image read once and written once (f32)",
        scale: 1e9,
    },
    amount: |n| 8.0 * (n as f64).powi(2),
    bandwidth: Some(Bandwidth::Copy),
    task: |n, seed| {
        let image = image::random_image(n, seed, "blur")?;
        Task::new(
            super::Job::new(super::Kernel::Blur)
                .input("image", image)
                .param("sigma", BENCH_SIGMA),
        )
    },
    baselines: &[
        // SciPy where it is installed (scripts/install-deps.sh --numpy);
        // else the same in NumPy: edge-padded shifted sums per axis.
        profile::Baseline::Numpy(NumpyCode {
            setup: "x = rng.uniform(-1, 1, (n, n)).astype(np.float32)
try:
    from scipy.ndimage import gaussian_filter
    blur = lambda: gaussian_filter(x, 2.0, mode='nearest', truncate=4.0)
except ImportError:
    t = np.arange(-8, 9)
    w = np.exp(-0.5 * t * t / 4.0)
    w = (w / w.sum()).astype(np.float32)
    def blur():
        p = np.pad(x, ((8, 8), (0, 0)), mode='edge')
        y = sum(w[i] * p[i:i + n] for i in range(17))
        p = np.pad(y, ((0, 0), (8, 8)), mode='edge')
        return sum(w[i] * p[:, i:i + n] for i in range(17))",
            run: "blur()",
        }),
        profile::RAYON_LOOP,
    ],
    variants: &[],
};

/// Invocations per workgroup of `shaders/blur.wgsl`'s entry points.
pub const WORKGROUP: [u32; 3] = [64, 4, 1];

/// Needs whole arrays (a chunk of rows would need its neighbours' rows).
pub const STREAMING: Streaming = Streaming::Whole;

/// `shaders/blur.wgsl`.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "blur.wgsl",
    source: include_str!("../../shaders/blur.wgsl"),
    entry_points: &[("columns", WORKGROUP), ("rows", WORKGROUP)],
    trusted: true,
};

/// A validated `blur`.
#[derive(Clone, Debug)]
pub struct Blur {
    /// The image.
    pub image: Handle,
    /// Its layout.
    pub layout: Layout,
    /// The weights, 2·radius + 1 of them, summing to 1.
    pub weights: Vec<f32>,
    /// The image's dtype and shape (the result's), kept apart as a run in
    /// place takes the image's values.
    dtype: DType,
    shape: Vec<usize>,
}

/// Sigma and radius from the parameters, checked.
fn sigma_radius(p: &Params) -> Result<(f64, usize)> {
    let sigma = p
        .f64_opt("sigma")?
        .ok_or_else(|| Error::bad("blur needs parameter 'sigma' (it has no default)"))?;
    if sigma <= 0.0 {
        return Err(Error::bad(format!(
            "parameter 'sigma' of blur: {sigma} is not above 0"
        )));
    }
    let radius = match p.f64_opt("radius")? {
        Some(r) if r >= 0.0 && r.fract() == 0.0 => r,
        Some(r) => {
            return Err(Error::bad(format!(
                "parameter 'radius' of blur: {r} is not a whole number of pixels"
            )));
        }
        // SciPy's: int(truncate * sigma + 0.5).
        None => (4.0 * sigma + 0.5).floor(),
    };
    if radius > MAX_RADIUS as f64 {
        return Err(Error::bad(format!(
            "blur: a radius of {radius} pixels (sigma {sigma}) is more than {MAX_RADIUS}"
        )));
    }
    Ok((sigma, radius as usize))
}

/// SciPy's Gaussian weights: `exp(−x²/2σ²)` for x in −radius..=radius,
/// normalised, in f64.
pub fn weights(sigma: f64, radius: usize) -> Vec<f32> {
    let r = radius as f64;
    let phi: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let x = i as f64 - r;
            (-0.5 / (sigma * sigma) * x * x).exp()
        })
        .collect();
    let sum: f64 = phi.iter().sum();
    phi.iter().map(|p| (p / sum) as f32).collect()
}

impl Blur {
    /// Taps each side.
    pub fn radius(&self) -> usize {
        self.weights.len() / 2
    }

    /// Wraps a result (f32 values) as this kernel's outputs, in the image's
    /// dtype.
    pub fn finish(&self, values: Vec<f32>) -> Outputs {
        let t = image::finish(values, self.dtype, &self.shape);
        Outputs::from([("out".to_owned(), t)])
    }

    /// The column pass at row `y`: `row[v] = Σᵢ wᵢ · input(y + i − r)[v]`
    /// (rows clamped), `input(sy)` giving input row sy.
    #[inline(always)]
    fn column_pass<'a>(&self, y: usize, input: impl Fn(usize) -> &'a [f32], row: &mut [f32]) {
        let h = self.layout.height;
        let r = self.radius() as isize;
        let taps: Vec<Tap> = self
            .weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Tap {
                src: input(image::clamped(y, i as isize - r, h)),
                weight,
                offset: 0,
            })
            .collect();
        let n = row.len();
        image::sum_taps(row, &taps, 0, n);
    }

    /// The row pass: `out[x, ch] = Σⱼ wⱼ · row[x + j − r, ch]` (columns
    /// clamped): the interior by [`image::sum_taps`], the edges apart.
    #[inline(always)]
    fn row_pass(&self, row: &[f32], out: &mut [f32]) {
        let Layout {
            width, channels, ..
        } = self.layout;
        let (r, c, n) = (self.radius(), channels, self.layout.row());
        // Values whose every tap lies inside the row.
        let lo = (r * c).min(n);
        let hi = (width.saturating_sub(r) * c).max(lo);
        let taps: Vec<Tap> = self
            .weights
            .iter()
            .enumerate()
            .map(|(j, &weight)| Tap {
                src: row,
                weight,
                offset: (j as isize - r as isize) * c as isize,
            })
            .collect();
        image::sum_taps(out, &taps, lo, hi);
        for v in (0..lo).chain(hi..n) {
            let (x, ch) = (v / c, v % c);
            out[v] = self
                .weights
                .iter()
                .enumerate()
                .map(|(j, &w)| w * row[image::clamped(x, j as isize - r as isize, width) * c + ch])
                .sum();
        }
    }

    /// Blurs `data` (the image's values as f32) in place. The image is cut
    /// into strips of rows, one rayon task each, each strip made row by
    /// row from the top ([`Strip`]): a row's column pass reads the
    /// original rows around it — those above, already written over, from
    /// a ring of their originals; those past the strip's ends from copies
    /// taken before any strip started — then the row pass writes the row
    /// over itself. No output memory to fault in, which took longer than
    /// the arithmetic (as for `map`).
    fn blur_in_place(&self, data: &mut [f32]) {
        if self.layout.is_empty() {
            return;
        }
        let (h, n, r) = (self.layout.height, self.layout.row(), self.radius());
        let strips = (rayon::current_num_threads() * 4).clamp(1, h);
        let per = h.div_ceil(strips);
        // For each strip of rows a..end: the originals of rows a − r .. a
        // and end .. end + r (clamped to the image).
        let halos: Vec<(usize, Vec<f32>, Vec<f32>)> = (0..h)
            .step_by(per)
            .map(|a| {
                let end = (a + per).min(h);
                let (above, below) = (a.saturating_sub(r), (end + r).min(h));
                (above, data[above * n..a * n].to_vec(), data[end * n..below * n].to_vec())
            })
            .collect();
        let arch = pulp::Arch::new();
        data.par_chunks_mut(per * n)
            .enumerate()
            .zip(&halos)
            .for_each(|((k, strip), (above, top, bottom))| {
                arch.dispatch(Strip {
                    blur: self,
                    first: k * per,
                    strip,
                    above: *above,
                    top,
                    bottom,
                })
            });
    }
}

/// One strip of rows of [`Blur::blur_in_place`], compiled for the CPU's
/// vector unit (see [`image::sum_taps`]).
struct Strip<'a> {
    blur: &'a Blur,
    /// Its first row.
    first: usize,
    /// Its rows.
    strip: &'a mut [f32],
    /// The first row of `top`.
    above: usize,
    /// The originals of the rows above it (from `above`).
    top: &'a [f32],
    /// The originals of the rows below it.
    bottom: &'a [f32],
}

impl pulp::WithSimd for Strip<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Strip {
            blur,
            first: a,
            strip,
            above,
            top,
            bottom,
        } = self;
        let (n, r) = (blur.layout.row(), blur.radius());
        let end = a + strip.len() / n;
        let mut ring = vec![0.0f32; r.max(1) * n];
        let mut row = vec![0.0f32; n];
        for y in a..end {
            // A cancelled job leaves the rest (its result is dropped).
            if super::stop::requested() {
                return;
            }
            {
                let (strip, ring) = (&*strip, &ring);
                fn at(rows: &[f32], i: usize, n: usize) -> &[f32] {
                    &rows[i * n..(i + 1) * n]
                }
                let input = |sy: usize| -> &[f32] {
                    let at = |rows, i| at(rows, i, n);
                    if sy < a {
                        at(top, sy - above)
                    } else if sy >= end {
                        at(bottom, sy - end)
                    } else if sy < y {
                        at(ring, sy % r.max(1))
                    } else {
                        at(strip, sy - a)
                    }
                };
                blur.column_pass(y, input, &mut row);
            }
            let own = &mut strip[(y - a) * n..(y - a + 1) * n];
            if r > 0 {
                ring[y % r * n..(y % r + 1) * n].copy_from_slice(own);
            }
            blur.row_pass(&row, own);
        }
    }
}

impl KernelTask for Blur {
    fn plan(mut inputs: Inputs<Spec>, params: &Params) -> Result<Plan> {
        let (img, layout) = image::take(&mut inputs, "blur", "image")?;
        let (_, radius) = sigma_radius(params)?;
        let work = layout.len() as f64 * (2 * radius + 1) as f64 * 2.0;
        // A u8 image is read as f32 once.
        let scratch = if img.dtype == DType::U8 { layout.len() as u64 * 4 } else { 0 };
        Ok(Plan::new([("out", img)], work).with_scratch(scratch))
    }

    fn from_job(mut inputs: Inputs, params: &Params) -> Result<Self> {
        let (image, layout) = image::take(&mut inputs, "blur", "image")?;
        let (sigma, radius) = sigma_radius(params)?;
        Ok(Blur {
            dtype: image.dtype(),
            shape: image.shape().to_vec(),
            image,
            layout,
            weights: weights(sigma, radius),
        })
    }

    fn run_cpu(&self) -> Outputs {
        let mut data = image::values(&self.image).into_owned();
        self.blur_in_place(&mut data);
        self.finish(data)
    }

    /// Writes over the image's own values when it is f32 and not shared
    /// (a u8 image is widened into new memory either way).
    fn run_cpu_in_place(&mut self) -> Outputs {
        let mut data = match self.image.dtype() {
            DType::F32 => std::mem::replace(&mut self.image, Vec::new().into()).into_f32s(),
            _ => image::values(&self.image).into_owned(),
        };
        self.blur_in_place(&mut data);
        self.finish(data)
    }

    fn restore(&mut self, outputs: Outputs) {
        if self.image.is_empty()
            && let Some(out) = outputs.into_values().next()
            && let TensorData::F32(v) = out.into_data()
        {
            self.image = Handle::new(Tensor::new(self.shape.clone(), TensorData::F32(v)));
        }
    }

    /// Both passes over the whole image, sums in f64.
    fn reference(&self) -> Outputs {
        let Layout {
            height,
            width,
            channels,
        } = self.layout;
        let img = image::values(&self.image);
        let r = self.radius() as isize;
        let n = self.layout.row();
        let mut columns = vec![0.0f32; self.layout.len()];
        for (i, c) in columns.iter_mut().enumerate() {
            let (y, v) = (i / n.max(1), i % n.max(1));
            let sum: f64 = self.weights.iter().enumerate().map(|(k, &w)| {
                let sy = image::clamped(y, k as isize - r, height);
                f64::from(w) * f64::from(img[sy * n + v])
            }).sum();
            *c = sum as f32;
        }
        let out = (0..self.layout.len())
            .map(|i| {
                let (y, x, ch) = (i / n, i / channels % width, i % channels);
                let sum: f64 = self.weights.iter().enumerate().map(|(k, &w)| {
                    let sx = image::clamped(x, k as isize - r, width);
                    f64::from(w) * f64::from(columns[y * n + sx * channels + ch])
                }).sum();
                sum as f32
            })
            .collect();
        self.finish(out)
    }

    fn operands(&self) -> Vec<&Handle> {
        vec![&self.image]
    }

    fn work_units(&self) -> f64 {
        self.layout.len() as f64 * self.weights.len() as f64 * 2.0
    }

    fn painter(&self) -> Option<Painter> {
        Some(image::painter())
    }

    /// Two passes as a user would write them with rayon: the columns into
    /// an intermediate image, then the rows, each value by its clamped
    /// taps.
    fn plain_loop(&self) -> PlainLoop<'_> {
        let img = image::values(&self.image).into_owned();
        let Layout {
            height,
            width,
            channels,
        } = self.layout;
        let (n, r) = (self.layout.row(), self.radius() as isize);
        let mut mid = vec![0.0f32; self.layout.len()];
        let mut out = vec![0.0f32; self.layout.len()];
        Box::new(move || {
            let w = &self.weights;
            mid.par_iter_mut().enumerate().for_each(|(i, m)| {
                let (y, v) = (i / n, i % n);
                *m = w.iter().enumerate().map(|(k, &w)| w * img[image::clamped(y, k as isize - r, height) * n + v]).sum();
            });
            out.par_iter_mut().enumerate().for_each(|(i, o)| {
                let (y, x, ch) = (i / n, i / channels % width, i % channels);
                *o = w.iter().enumerate().map(|(k, &w)| w * mid[y * n + image::clamped(x, k as isize - r, width) * channels + ch]).sum();
            });
        })
    }
}
