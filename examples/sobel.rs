//! A kernel of your own: a Sobel edge filter registered with its WGSL and a
//! Rust fallback, then run through the engine like a catalog kernel — on
//! the CPU, on the GPU (a software adapter such as llvmpipe counts here, so
//! that the example shows both on a machine without a card), where `auto`
//! places it, and as the second step of a pipeline after the catalog's
//! `blur` — and checked with `backend::compare` on every backend.
//!
//! `cargo run --release --example sobel [-- IN.png [OUT.png]]` (default
//! input `docs/photo.png`; OUT.png gets the edges). `cargo test --example
//! sobel` runs its test, which CI runs on llvmpipe and the CPU.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anycore::backend::BackendChoice;
use anycore::backend::compare::{Tolerance, on_every_backend};
use anycore::coordinator::cost::CostModel;
use anycore::engine::{BlockingEngine, CostModelSource, EngineConfig};
use anycore::kernel::user::{Call, Grid, UserKernel};
use anycore::kernel::{Job, Kernel};
use anycore::pipeline::{Pipeline, Step};
use anycore::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

/// The GPU side: one invocation per pixel (`Grid::Shape`: x along a row,
/// y down the columns), edges clamped. The uniform's `dims` is the
/// output's shape innermost first: width, height.
const WGSL: &str = r#"
struct Call { dims: vec4<u32>, len: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> image: array<f32>;
@group(0) @binding(1) var<storage, read_write> edges: array<f32>;
@group(0) @binding(2) var<uniform> call: Call;

fn at(x: i32, y: i32) -> f32 {
    let w = i32(call.dims.x);
    let h = i32(call.dims.y);
    return image[clamp(y, 0, h - 1) * w + clamp(x, 0, w - 1)];
}

@compute @workgroup_size(16, 16)
fn sobel(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x >= call.dims.x || id.y >= call.dims.y {
        return;
    }
    let x = i32(id.x);
    let y = i32(id.y);
    let gx = (at(x + 1, y - 1) + 2.0 * at(x + 1, y) + at(x + 1, y + 1))
           - (at(x - 1, y - 1) + 2.0 * at(x - 1, y) + at(x - 1, y + 1));
    let gy = (at(x - 1, y + 1) + 2.0 * at(x, y + 1) + at(x + 1, y + 1))
           - (at(x - 1, y - 1) + 2.0 * at(x, y - 1) + at(x + 1, y - 1));
    edges[id.y * call.dims.x + id.x] = call.scale * sqrt(gx * gx + gy * gy);
}
"#;

/// The CPU side: the same sums, a row per rayon task.
fn sobel_cpu(call: &Call) -> Vec<TensorData> {
    let image = call.f32s("image");
    let (h, w) = (call.shape("image")[0], call.shape("image")[1]);
    let scale = call.param("scale");
    let at = |x: isize, y: isize| {
        image[y.clamp(0, h as isize - 1) as usize * w + x.clamp(0, w as isize - 1) as usize]
    };
    let mut edges = vec![0.0f32; h * w];
    edges.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        let y = y as isize;
        for (x, e) in row.iter_mut().enumerate() {
            let x = x as isize;
            let gx = (at(x + 1, y - 1) + 2.0 * at(x + 1, y) + at(x + 1, y + 1))
                - (at(x - 1, y - 1) + 2.0 * at(x - 1, y) + at(x - 1, y + 1));
            let gy = (at(x - 1, y + 1) + 2.0 * at(x, y + 1) + at(x + 1, y + 1))
                - (at(x - 1, y - 1) + 2.0 * at(x, y - 1) + at(x + 1, y - 1));
            *e = scale * (gx * gx + gy * gy).sqrt();
        }
    });
    vec![TensorData::F32(edges)]
}

/// Registers `sobel` once in this process (a second registration of the
/// name is an error, so it happens inside the `OnceLock`).
fn sobel() -> anycore::Result<Kernel> {
    static SOBEL: OnceLock<Result<Kernel, String>> = OnceLock::new();
    SOBEL
        .get_or_init(|| {
            UserKernel::new(
                "sobel",
                "Sobel edge magnitude of a grey image, edges clamped",
            )
            .input("image", DType::F32, 2)
            .param("scale", Some(1.0), "multiplies the magnitude")
            .output_like("edges", "image")
            .wgsl(WGSL, "sobel", Grid::Shape)
            .cpu(sobel_cpu)
            .register()
            .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(anycore::Error::BadInput)
}

/// A picture as grey f32 in [0, 1]: the mean of its colour channels.
fn grey(picture: &Tensor) -> anycore::Result<Tensor> {
    let shape = picture.shape();
    let (TensorData::U8(pixels), 2 | 3) = (picture.data(), shape.len()) else {
        return Err(anycore::Error::BadInput(format!(
            "{} is not a PNG picture",
            picture.describe()
        )));
    };
    let (h, w) = (shape[0], shape[1]);
    let c = shape.get(2).copied().unwrap_or(1);
    // Grey (and alpha) or colour (and alpha): alpha is left out.
    let colours = if c >= 3 { 3 } else { 1 };
    let values = pixels
        .chunks(c)
        .map(|p| p[..colours].iter().map(|&v| f32::from(v)).sum::<f32>() / (255.0 * colours as f32))
        .collect();
    Ok(Tensor::new(vec![h, w], TensorData::F32(values)))
}

/// An engine with a software GPU allowed (so both backends show without a
/// card) and no probed cost model (`auto` says so in its reason).
fn engine() -> anycore::Result<BlockingEngine> {
    let mut config = EngineConfig::default();
    config.gpu.allow_software = true;
    config.cost_model = CostModelSource::Fixed(CostModel::default());
    BlockingEngine::start(config)
}

/// What [`demo`] gives back.
struct Demo {
    /// The edges of the image (from the CPU's run).
    edges: Tensor,
    /// The backends the CPU, GPU and `auto` runs ran on (for the test).
    #[cfg_attr(not(test), allow(dead_code))]
    ran: Vec<String>,
    /// The edges of the blurred image, from the pipeline (for the test).
    #[cfg_attr(not(test), allow(dead_code))]
    blurred_edges: Tensor,
}

/// Runs `sobel` on `image` on each backend and as a pipeline step, prints
/// where each ran and why, and checks every backend against the fallback.
fn demo(image: &Tensor) -> anycore::Result<Demo> {
    let sobel = sobel()?;
    let engine = engine()?;
    let job = Job::new(sobel)
        .input("image", image.clone())
        .param("scale", 0.25);
    let mut ran = Vec::new();
    let mut edges = None;
    for choice in [BackendChoice::Cpu, BackendChoice::Gpu, BackendChoice::Auto] {
        match engine.run_on(job.clone(), choice) {
            Ok(report) => {
                let out = &report.outputs["edges"];
                println!(
                    "{:<4} sobel on {} ({}): {} in {:.2} ms — {}",
                    choice.name(),
                    report.backend,
                    report.device,
                    out.describe(),
                    report.timings.total,
                    report.placement_reason
                );
                ran.push(report.backend.name().to_owned());
                edges.get_or_insert_with(|| out.clone());
            }
            Err(anycore::Error::NoGpu(why)) => {
                println!("{:<4} sobel: no GPU here ({why})", choice.name())
            }
            Err(e) => return Err(e),
        }
    }

    // A catalog kernel and the program's in one pipeline: on the GPU the
    // blurred image stays in device memory between the steps.
    let pipeline = Pipeline::new()
        .input("image", image.clone())
        .step(
            Step::new("smooth", Kernel::Blur)
                .input_shared("image", "image")
                .param("sigma", 1),
        )
        .step(
            Step::new("edges", sobel)
                .input_from("image", "smooth", "out")
                .param("scale", 0.25),
        )
        .output("edges", "edges", "edges");
    let report = engine.run_pipeline(pipeline)?;
    println!(
        "pipeline blur → sobel on {} ({}) in {:.2} ms — {}",
        report.backend, report.device, report.timings.total, report.placement_reason
    );

    let agreement = on_every_backend(&job, Tolerance::F32)?;
    let devices: Vec<String> = agreement
        .runs
        .iter()
        .map(|r| format!("{} ({})", r.backend, r.device))
        .collect();
    println!("every backend agrees: {}", devices.join(", "));
    if let Some(why) = &agreement.no_gpu {
        println!("(the GPU did not run: {why})");
    }
    Ok(Demo {
        edges: edges.expect("the CPU run gives edges"),
        ran,
        blurred_edges: report.outputs["edges"].clone(),
    })
}

fn main() -> anycore::Result<()> {
    let mut args = std::env::args().skip(1);
    let input = args.next().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/photo.png"),
        PathBuf::from,
    );
    let image = grey(&anycore::tensor::read_file(&input)?)?;
    let edges = demo(&image)?.edges;
    if let Some(out) = args.next() {
        let (h, w) = (edges.shape()[0], edges.shape()[1]);
        let pixels: Vec<u8> = edges
            .as_f32()
            .expect("f32 edges")
            .iter()
            .map(|e| (e.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        anycore::tensor::png::write(Path::new(&out), w as u32, h as u32, 1, &pixels)?;
        println!("edges written to {out}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The Sobel magnitude written out plainly, one pixel at a time.
    fn reference(image: &[f32], h: usize, w: usize, scale: f32) -> Vec<f32> {
        let px = |y: usize, x: usize, dy: isize, dx: isize| {
            let yy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
            let xx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
            f64::from(image[yy * w + xx])
        };
        let mut out = Vec::with_capacity(h * w);
        for y in 0..h {
            for x in 0..w {
                let (mut gx, mut gy) = (0.0, 0.0);
                for (d, k) in [(-1isize, 1.0), (0, 2.0), (1, 1.0)] {
                    gx += k * (px(y, x, d, 1) - px(y, x, d, -1));
                    gy += k * (px(y, x, 1, d) - px(y, x, -1, d));
                }
                out.push((f64::from(scale) * (gx * gx + gy * gy).sqrt()) as f32);
            }
        }
        out
    }

    fn assert_close(what: &str, got: &Tensor, want: &[f32]) {
        let got = got.as_f32().unwrap();
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, r)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - r).abs() <= 1e-5 + 1e-5 * r.abs(),
                "{what} pixel {i}: {g} vs {r}"
            );
        }
    }

    #[test]
    fn sobel_runs_and_agrees_on_every_backend() {
        let seed = rand::random::<u64>();
        eprintln!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // Sizes that straddle the 16×16 workgroup, and a strip.
        for (h, w) in [(1, 1), (15, 17), (33, 16), (1, 70), (64, 63)] {
            let values: Vec<f32> = (0..h * w).map(|_| rng.random_range(-1.0..1.0)).collect();
            let image = Tensor::new(vec![h, w], TensorData::F32(values.clone()));
            let Demo {
                edges,
                ran,
                blurred_edges,
            } = demo(&image).unwrap();
            assert_close(&format!("{h}×{w}"), &edges, &reference(&values, h, w, 0.25));
            // The pipeline's second step saw the first's output.
            let blurred = engine()
                .unwrap()
                .run_on(
                    Job::new(Kernel::Blur)
                        .input("image", image)
                        .param("sigma", 1),
                    BackendChoice::Cpu,
                )
                .unwrap();
            let blurred = blurred.outputs["out"].as_f32().unwrap();
            let want = reference(blurred, h, w, 0.25);
            assert_close(&format!("{h}×{w} blurred"), &blurred_edges, &want);
            assert_eq!(ran[0], "cpu", "{ran:?}");
            let gpu_required = std::env::var("ANYCORE_REQUIRE_GPU_TESTS").is_ok_and(|v| v == "1");
            if gpu_required {
                assert_eq!(
                    ran,
                    ["cpu", "gpu", "gpu"],
                    "forced gpu, then auto with no cost model"
                );
            }
        }
    }

    #[test]
    fn a_picture_becomes_grey_in_zero_to_one() {
        let rgb = Tensor::new(
            vec![1, 2, 3],
            TensorData::U8(vec![255, 255, 255, 0, 51, 102]),
        );
        let g = grey(&rgb).unwrap();
        assert_eq!(g.shape(), &[1, 2]);
        let v = g.as_f32().unwrap();
        assert!(
            (v[0] - 1.0).abs() < 1e-6 && (v[1] - 0.2).abs() < 1e-6,
            "{v:?}"
        );
    }
}
