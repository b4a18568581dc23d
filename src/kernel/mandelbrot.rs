//! `mandelbrot`: iteration counts of the Mandelbrot set over a rectangle.
//!
//! The pixel in row r, column k samples the point
//! `(x0 + (k+½)(x1−x0)/width) + i·(y0 + (r+½)(y1−y0)/height)` in float32.
//! Starting from z = 0, its count is the first n < `max_iter` at which
//! |z|² > 4 before the n-th update z ← z² + p, or `max_iter` if none.
//! GPUs may fuse multiply-adds, so a few pixels on the set's chaotic
//! boundary can differ by a count between backends.

use rayon::prelude::*;

use super::profile::{self, Baseline, Profile, Unit};
use super::{Arg, Inputs, KernelTask, Outputs, Painter, Param, Params, Picture, PlainLoop, Plan, ShaderInfo, Signature, Task, Streaming};
use crate::error::{Error, Result};
use crate::tensor::{DType, Handle, Spec, Tensor, TensorData};

/// No inputs; parameters below; output `out` (u32\[height, width\]).
pub const SIGNATURE: Signature = Signature {
    summary: "Mandelbrot iteration counts over a rectangle of the complex plane",
    inputs: &[],
    params: &[
        Param {
            name: "width",
            default: None,
            doc: "image width in pixels (width·height ≤ 2³¹)",
        },
        Param {
            name: "height",
            default: None,
            doc: "image height in pixels",
        },
        Param {
            name: "max_iter",
            default: Some("256"),
            doc: "iterations at most per pixel",
        },
        Param {
            name: "x0",
            default: Some("-2.5"),
            doc: "real part of the left edge",
        },
        Param {
            name: "x1",
            default: Some("1"),
            doc: "real part of the right edge",
        },
        Param {
            name: "y0",
            default: Some("-1.25"),
            doc: "imaginary part of the top edge",
        },
        Param {
            name: "y1",
            default: Some("1.25"),
            doc: "imaginary part of the bottom edge",
        },
    ],
    outputs: &[Arg {
        name: "out",
        doc: "u32 [height, width] iteration counts; a .png path gets a coloured picture", optional: false,
    }],
    picture_output: Some("out"),
    example: "anycore run mandelbrot -p width=1920 -p height=1080 -o out=mandelbrot.png",
};

/// What the bench, the probe and the cost model know of `mandelbrot`: a
/// size is the n of an n×n image of the default view.
pub const PROFILE: Profile = Profile {
    sweep: profile::Sweep {
        size_means: "the n of an n×n image",
        sizes_as_powers: false,
        max_size: 46_340,
        quick_sizes: &[256, 1024],
        sizes: &profile::powers::<7>(6, 1),
        probe_sizes: [64, 256],
    },
    unit: Unit {
        name: "Mpixel/s",
        counts: "n² pixels, 256 iterations at most",
        scale: 1e6,
    },
    amount: |n| (n as f64) * (n as f64),
    bandwidth: None,
    task: |n, _seed| {
        let edge =
            u32::try_from(n).map_err(|_| Error::bad(format!("mandelbrot {n}: too large")))?;
        Ok(Task::Mandelbrot(Mandelbrot::new(edge, edge)?))
    },
    baselines: &[Baseline::SingleThreads, profile::RAYON_LOOP],
    variants: &[],
};

/// Workgroup edge (16×16 pixels) in `shaders/mandelbrot.wgsl`.
pub const WORKGROUP_EDGE: u32 = 16;

/// Has no input to stream.
pub const STREAMING: Streaming = Streaming::Whole;

/// `shaders/mandelbrot.wgsl`.
pub const SHADER: ShaderInfo = ShaderInfo {
    file: "mandelbrot.wgsl",
    source: include_str!("../../shaders/mandelbrot.wgsl"),
    entry_points: &[("mandelbrot", [WORKGROUP_EDGE, WORKGROUP_EDGE, 1])],
    trusted: false,
};

/// Pixels the CPU iterates together (two AVX2 vectors, one AVX-512).
const LANES: usize = 16;

/// Iterations between looks at whether the job was cancelled (a look
/// costs a lock; 2¹⁶ iterations of 16 lanes take ~0.5 ms).
const STOP_EVERY: u32 = 1 << 16;

/// Largest image anycore renders: 2³¹ pixels (8 GiB of counts).
const MAX_PIXELS: u64 = 1 << 31;

/// A validated `mandelbrot`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mandelbrot {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Iteration cap.
    pub max_iter: u32,
    /// Left edge (real part).
    pub x0: f32,
    /// Right edge.
    pub x1: f32,
    /// Top edge (imaginary part) — row 0.
    pub y0: f32,
    /// Bottom edge.
    pub y1: f32,
}

impl Mandelbrot {
    /// The default view (−2.5…1 × −1.25…1.25) at 256 iterations.
    pub fn new(width: u32, height: u32) -> Result<Self> {
        Mandelbrot {
            width,
            height,
            max_iter: 256,
            x0: -2.5,
            x1: 1.0,
            y0: -1.25,
            y1: 1.25,
        }
        .validated()
    }

    fn validated(self) -> Result<Self> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::bad(format!(
                "mandelbrot: width and height must be at least 1 (got {}×{})",
                self.width, self.height
            )));
        }
        if self.pixels() as u64 > MAX_PIXELS {
            return Err(Error::bad(format!(
                "mandelbrot: {}×{} is more than {MAX_PIXELS} pixels",
                self.width, self.height
            )));
        }
        Ok(self)
    }

    /// Number of pixels.
    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The real part of column `col`'s centre.
    #[inline(always)]
    fn x_at(&self, col: u32) -> f32 {
        self.x0 + (col as f32 + 0.5) * (self.x1 - self.x0) / self.width as f32
    }

    /// The imaginary part of row `row`'s centre.
    #[inline(always)]
    fn y_at(&self, row: u32) -> f32 {
        self.y0 + (row as f32 + 0.5) * (self.y1 - self.y0) / self.height as f32
    }

    /// The count for one pixel: the definition above, in float32.
    pub fn count(&self, row: u32, col: u32) -> u32 {
        let (px, py) = (self.x_at(col), self.y_at(row));
        let (mut zr, mut zi) = (0.0f32, 0.0f32);
        for n in 0..self.max_iter {
            let (zr2, zi2) = (zr * zr, zi * zi);
            if zr2 + zi2 > 4.0 {
                return n;
            }
            zi = 2.0 * zr * zi + py;
            zr = zr2 - zi2 + px;
        }
        self.max_iter
    }

    /// Wraps row-major counts as this kernel's outputs.
    pub fn outputs(&self, counts: Vec<u32>) -> Outputs {
        let shape = vec![self.height as usize, self.width as usize];
        Outputs::from([(
            "out".to_owned(),
            Tensor::new(shape, TensorData::U32(counts)),
        )])
    }

    /// Counts for one row: [`LANES`] pixels at a time stepping together
    /// (the compiler turns each step into vector instructions), the last
    /// few one by one. Bit for bit what [`Mandelbrot::count`] gives: the
    /// same float32 operations in the same order. Inlined into each `pulp`
    /// dispatch ([`Row`]), so it is compiled for the best vector unit the
    /// CPU has.
    #[inline(always)]
    fn count_row(&self, row: u32, out: &mut [u32]) {
        let done = out.len() / LANES * LANES;
        for (b, block) in out[..done].chunks_exact_mut(LANES).enumerate() {
            let col0 = (b * LANES) as u32;
            let px: [f32; LANES] = std::array::from_fn(|i| self.x_at(col0 + i as u32));
            let py = self.y_at(row);
            let (mut zr, mut zi) = ([0.0f32; LANES], [0.0f32; LANES]);
            // max_iter marks a lane still inside; an escaped lane keeps its
            // count while its z runs on unused.
            let mut count = [self.max_iter; LANES];
            for n in 0..self.max_iter {
                for i in 0..LANES {
                    let (zr2, zi2) = (zr[i] * zr[i], zi[i] * zi[i]);
                    let escaped = zr2 + zi2 > 4.0 && count[i] == self.max_iter;
                    count[i] = if escaped { n } else { count[i] };
                    zi[i] = 2.0 * zr[i] * zi[i] + py;
                    zr[i] = zr2 - zi2 + px[i];
                }
                if n % 8 == 7 && count.iter().all(|&c| c != self.max_iter) {
                    break;
                }
                // A huge max_iter keeps one block for minutes: look up now
                // and then whether the job was cancelled.
                if n % STOP_EVERY == STOP_EVERY - 1 && super::stop::requested() {
                    return;
                }
            }
            block.copy_from_slice(&count);
        }
        for (c, v) in out.iter_mut().enumerate().skip(done) {
            *v = self.count(row, c as u32);
        }
    }

}

impl Mandelbrot {
    /// The view the parameters describe, checked.
    fn from_params(p: &Params) -> Result<Self> {
        Mandelbrot {
            width: p.u32_required("width")?,
            height: p.u32_required("height")?,
            max_iter: p.u32_or("max_iter", 256)?,
            x0: p.f32_or("x0", -2.5)?,
            x1: p.f32_or("x1", 1.0)?,
            y0: p.f32_or("y0", -1.25)?,
            y1: p.f32_or("y1", 1.25)?,
        }
        .validated()
    }
}

/// One row of counts, compiled for the CPU's vector unit: a `WithSimd`
/// whose body is inlined into `pulp`'s dispatch (a closure's body would be
/// compiled apart, without the unit's features).
struct Row<'a> {
    task: &'a Mandelbrot,
    r: u32,
    out: &'a mut [u32],
}

impl pulp::WithSimd for Row<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.task.count_row(self.r, self.out)
    }
}

impl KernelTask for Mandelbrot {
    fn plan(_inputs: Inputs<Spec>, p: &Params) -> Result<Plan> {
        let m = Mandelbrot::from_params(p)?;
        Ok(Plan::new([(
            "out",
            Spec {
                dtype: DType::U32,
                shape: vec![m.height as usize, m.width as usize],
            },
        )],
        m.work_units()))
    }

    fn from_job(_inputs: Inputs, p: &Params) -> Result<Self> {
        Mandelbrot::from_params(p)
    }


    fn run_cpu(&self) -> Outputs {
        let mut counts = vec![0u32; self.pixels()];
        let arch = pulp::Arch::new();
        counts
            .par_chunks_mut(self.width as usize)
            .enumerate()
            .for_each(|(r, row)| {
                if !super::stop::requested() {
                    arch.dispatch(Row {
                        task: self,
                        r: r as u32,
                        out: row,
                    })
                }
            });
        self.outputs(counts)
    }

    fn reference(&self) -> Outputs {
        let counts = (0..self.height)
            .flat_map(|r| (0..self.width).map(move |c| (r, c)))
            .map(|(r, c)| self.count(r, c))
            .collect();
        self.outputs(counts)
    }

    // Iterations per pixel vary with the view; max_iter bounds them.
    fn operands(&self) -> Vec<&Handle> {
        Vec::new()
    }

    fn work_units(&self) -> f64 {
        self.pixels() as f64 * f64::from(self.max_iter.max(1))
    }

    fn painter(&self) -> Option<Painter> {
        Some(Painter {
            draw: picture,
            param: self.max_iter,
        })
    }

    /// Rows in parallel, one pixel at a time ([`Mandelbrot::count`], the
    /// scalar definition).
    fn plain_loop(&self) -> PlainLoop<'_> {
        let mut counts = vec![0u32; self.pixels()];
        Box::new(move || {
            counts
                .par_chunks_mut(self.width as usize)
                .enumerate()
                .for_each(|(r, row)| {
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = self.count(r as u32, c as u32);
                    }
                })
        })
    }
}

/// The counts image as a picture, coloured for `max_iter` ([`to_rgb`]);
/// `None` for a tensor that is not a [height, width] image of counts.
pub fn picture(counts: &Tensor, max_iter: u32) -> Option<Picture> {
    let (height, width) = match counts.shape() {
        &[h, w] => (u32::try_from(h).ok()?, u32::try_from(w).ok()?),
        _ => return None,
    };
    Some(Picture {
        width,
        height,
        channels: 3,
        pixels: to_rgb(counts.as_u32()?, max_iter),
    })
}

/// Colours counts for a picture: a smooth palette outside the set, black
/// inside (count == `max_iter`). Returns RGB bytes, row-major.
pub fn to_rgb(counts: &[u32], max_iter: u32) -> Vec<u8> {
    counts
        .iter()
        .flat_map(|&n| {
            if n >= max_iter {
                return [0, 0, 0];
            }
            // Sinusoidal palette on a square-root scale: detail near the set
            // without the outer bands washing out.
            let t = (n as f32 / max_iter.max(1) as f32).sqrt();
            let channel = |phase: f32| {
                let v = 0.5 + 0.5 * (std::f32::consts::TAU * (t * 1.5 + phase)).cos();
                (v * 255.0) as u8
            };
            [channel(0.0), channel(0.1), channel(0.2)]
        })
        .collect()
}
