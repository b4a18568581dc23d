//! `conv2d`: correlation of an image (u8 or f32, `[h, w]` or `[h, w, c]`,
//! each channel on its own) with an odd-sized f32 `kernel`, edges clamped:
//! `out[r, x] = Σᵢⱼ kernel[i, j] · image[r + i − kh/2, x + j − kw/2]`, as
//! `scipy.ndimage.correlate(image, kernel, mode='nearest')` per channel
//! (u8 results rounded and clamped; see [`super::image`]).
//!
//! The CPU accumulates each output row from shifted input rows, one
//! vectorized slice operation per kernel tap; the GPU tiles the image
//! through workgroup memory.

use rayon::prelude::*;

use super::image::{self, Layout};
use super::profile::{self, Profile, Unit, random_f32};
use super::{Arg, Inputs, KernelTask, Outputs, Painter, PlainLoop, Plan, ShaderInfo, Signature, Task, Streaming};
use crate::error::{Error, Result};
use crate::tensor::{DType, Described, Handle, Spec, Tensor, TensorData};

/// Inputs `image` and `kernel`; output `out`.
pub const SIGNATURE: Signature = Signature {
    summary: "correlation of an image with an odd-sized kernel, edges clamped",
    inputs: &[
        image::INPUT,
        Arg {
            name: "kernel",
            doc: "f32 [kh, kw], odd sides, at most 49",
            optional: false,
        },
    ],
    params: &[],
    outputs: &[image::OUTPUT],
    picture_output: Some("out"),
    example: "anycore run conv2d -i image=in.png -i kernel=k.npy -o out=out.png",
};

/// A kernel's longest side: the GPU stages a tile of the image with a
/// border of half of it in workgroup memory.
pub const MAX_SIDE: usize = 49;

/// The bench's kernel side.
const BENCH_SIDE: usize = 5;

/// What the bench, the probe and the cost model know of `conv2d`: a size
/// is the n of an n×n grey f32 image, correlated with a 5×5 kernel.
pub const PROFILE: Profile = Profile {
    sweep: image::sweep("the n of n×n images (grey f32, 5×5 kernel)"),
    unit: Unit {
        name: "GFLOP/s",
        counts: "2·25 floating-point operations per pixel (5×5 kernel)",
        scale: 1e9,
    },
    amount: |n| 2.0 * (BENCH_SIDE * BENCH_SIDE) as f64 * (n as f64).powi(2),
    bandwidth: None,
    task: |n, seed| {
        let image = image::random_image(n, seed, "conv2d")?;
        let k = random_f32(BENCH_SIDE * BENCH_SIDE, seed + 1)?;
        let kernel = Tensor::new(vec![BENCH_SIDE, BENCH_SIDE], TensorData::F32(k));
        Task::new(
            super::Job::new(super::Kernel::Conv2d)
                .input("image", image)
                .input("kernel", kernel),
        )
    },
    baselines: &[profile::RAYON_LOOP],
    variants: &[],
};

/// Invocations per workgroup in `shaders/conv2d.wgsl` (a 16×16 tile).
pub const WORKGROUP: [u32; 3] = [16, 16, 1];

/// Needs whole arrays (a chunk of rows would need its neighbours' rows).
pub const STREAMING: Streaming = Streaming::Whole;

/// `shaders/conv2d.wgsl`.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "conv2d.wgsl",
    source: include_str!("../../shaders/conv2d.wgsl"),
    entry_points: &[("conv2d", WORKGROUP)],
    trusted: true,
};

/// A validated `conv2d`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// The image.
    pub image: Handle,
    /// Its layout.
    pub layout: Layout,
    /// The kernel (f32, `kh × kw`).
    pub kernel: Handle,
    /// Kernel rows.
    pub kh: usize,
    /// Kernel columns.
    pub kw: usize,
}

/// Checks the kernel input: f32 `[kh, kw]`, odd sides of at most
/// [`MAX_SIDE`].
fn take_kernel<T: Described>(inputs: &mut Inputs<T>) -> Result<(T, usize, usize)> {
    let k = inputs.take("kernel", &[DType::F32], 2)?;
    let (kh, kw) = (k.shape()[0], k.shape()[1]);
    if kh % 2 == 0 || kw % 2 == 0 || kh > MAX_SIDE || kw > MAX_SIDE {
        return Err(Error::bad(format!(
            "input 'kernel' of conv2d is {}, but its sides must be odd (a centre pixel) and at \
             most {MAX_SIDE}",
            k.describe()
        )));
    }
    Ok((k, kh, kw))
}

impl Conv2d {
    /// Wraps a result (f32 values) as this kernel's outputs, in the image's
    /// dtype.
    pub fn finish(&self, values: Vec<f32>) -> Outputs {
        let t = image::finish(values, self.image.dtype(), self.image.shape());
        Outputs::from([("out".to_owned(), t)])
    }

    /// Output element `i` by the definition, summed in f64 (`WIDE`: the
    /// reference) or f32 (the plain loop).
    fn value_at<const WIDE: bool>(&self, img: &[f32], k: &[f32], i: usize) -> f32 {
        let Layout {
            height,
            width,
            channels,
        } = self.layout;
        let (r, x, ch) = (i / (width * channels), i / channels % width, i % channels);
        let (ry, rx) = ((self.kh / 2) as isize, (self.kw / 2) as isize);
        let (mut wide, mut narrow) = (0.0f64, 0.0f32);
        for a in 0..self.kh {
            for b in 0..self.kw {
                let sr = image::clamped(r, a as isize - ry, height);
                let sx = image::clamped(x, b as isize - rx, width);
                let (w, v) = (k[a * self.kw + b], img[(sr * width + sx) * channels + ch]);
                if WIDE {
                    wide += f64::from(w) * f64::from(v);
                } else {
                    narrow += w * v;
                }
            }
        }
        if WIDE { wide as f32 } else { narrow }
    }
}

/// One output row of a `conv2d`, compiled for the CPU's vector unit (see
/// [`image::sum_taps`]): the interior by `sum_taps` over every tap of
/// every kernel row, the clamped edges apart.
struct Row<'a> {
    task: &'a Conv2d,
    img: &'a [f32],
    r: usize,
    out: &'a mut [f32],
}

impl pulp::WithSimd for Row<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Row { task: t, img, r, out } = self;
        let Layout {
            height,
            width,
            channels: c,
        } = t.layout;
        let n = t.layout.row();
        let (ry, rx) = ((t.kh / 2) as isize, t.kw / 2);
        let k = t.kernel.f32s();
        let mut taps = Vec::with_capacity(t.kh * t.kw);
        for a in 0..t.kh {
            let sr = image::clamped(r, a as isize - ry, height);
            for b in 0..t.kw {
                taps.push(image::Tap {
                    src: &img[sr * n..(sr + 1) * n],
                    weight: k[a * t.kw + b],
                    offset: (b as isize - rx as isize) * c as isize,
                });
            }
        }
        // Values whose every tap lies inside the row.
        let lo = (rx * c).min(n);
        let hi = (width.saturating_sub(rx) * c).max(lo);
        image::sum_taps(out, &taps, lo, hi);
        for v in (0..lo).chain(hi..n) {
            let (x, ch) = (v / c, v % c);
            out[v] = taps
                .iter()
                .enumerate()
                .map(|(i, tap)| {
                    let sx = image::clamped(x, (i % t.kw) as isize - rx as isize, width);
                    tap.weight * tap.src[sx * c + ch]
                })
                .sum();
        }
    }
}

impl KernelTask for Conv2d {
    fn plan(mut inputs: Inputs<Spec>, _params: &super::Params) -> Result<Plan> {
        let (img, layout) = image::take(&mut inputs, "conv2d", "image")?;
        let (_, kh, kw) = take_kernel(&mut inputs)?;
        let work = layout.len() as f64 * (kh * kw) as f64;
        // A u8 image is read as f32 once.
        let scratch = if img.dtype == DType::U8 { layout.len() as u64 * 4 } else { 0 };
        Ok(Plan::new([("out", img)], work).with_scratch(scratch))
    }

    fn from_job(mut inputs: Inputs, _params: &super::Params) -> Result<Self> {
        let (image, layout) = image::take(&mut inputs, "conv2d", "image")?;
        let (kernel, kh, kw) = take_kernel(&mut inputs)?;
        Ok(Conv2d {
            image,
            layout,
            kernel,
            kh,
            kw,
        })
    }

    fn run_cpu(&self) -> Outputs {
        if self.layout.is_empty() {
            return self.finish(Vec::new());
        }
        let img = image::values(&self.image);
        let row = self.layout.row();
        let arch = pulp::Arch::new();
        let mut out = vec![0.0f32; self.layout.len()];
        crate::tensor::alloc::advise_huge_pages(&out);
        out.par_chunks_mut(row).enumerate().for_each(|(r, out)| {
            if super::stop::requested() {
                return;
            }
            arch.dispatch(Row {
                task: self,
                img: &img,
                r,
                out,
            })
        });
        self.finish(out)
    }

    fn reference(&self) -> Outputs {
        let img = image::values(&self.image);
        let k = self.kernel.f32s();
        let out = (0..self.layout.len()).map(|i| self.value_at::<true>(&img, k, i)).collect();
        self.finish(out)
    }

    fn operands(&self) -> Vec<&Handle> {
        vec![&self.image, &self.kernel]
    }

    fn work_units(&self) -> f64 {
        self.layout.len() as f64 * (self.kh * self.kw) as f64
    }

    fn painter(&self) -> Option<Painter> {
        Some(image::painter())
    }

    /// Each output value in parallel by the definition, clamped indices
    /// and all.
    fn plain_loop(&self) -> PlainLoop<'_> {
        let img = image::values(&self.image).into_owned();
        let mut out = vec![0.0f32; self.layout.len()];
        Box::new(move || {
            let k = self.kernel.f32s();
            out.par_iter_mut()
                .enumerate()
                .for_each(|(i, o)| *o = self.value_at::<false>(&img, k, i))
        })
    }
}
