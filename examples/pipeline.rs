//! A chain of steps as one pipeline: placed once, run on one backend, the
//! outputs of each step handed to the next — on the GPU kept in device
//! memory, so that only x and y go up and only the two results come down;
//! prints each step's time and the bytes it moved between host and device.
//!
//! `cargo run --release --example pipeline [-- cpu|gpu]` (`gpu` accepts a
//! software adapter).

use anycore::backend::BackendChoice;
use anycore::engine::{BlockingEngine, EngineConfig};
use anycore::kernel::Kernel;
use anycore::pipeline::{Pipeline, Step};
use anycore::tensor::Tensor;

fn main() -> anycore::Result<()> {
    let choice = match std::env::args().nth(1) {
        Some(name) => BackendChoice::from_name(&name)?,
        None => BackendChoice::Auto,
    };
    let mut config = EngineConfig::default();
    config.gpu.allow_software = choice == BackendChoice::Gpu;
    let engine = BlockingEngine::start(config)?;

    let n = 1 << 22;
    let x = Tensor::from_f32((0..n).map(|i| (i % 1000) as f32 * 1e-3).collect());
    let y = Tensor::from_f32(vec![1.0; n]);
    // y₁ = 2x + y; y₂ = 2x + y₁; … eight times (x given once, read by
    // every step); then the sum and the histogram of the last, over
    // [0, 20) (a histogram of data on the GPU needs its range given).
    let mut pipeline = Pipeline::new().input("x", x).step(
        Step::new("axpy1", Kernel::Axpy)
            .param("a", 2)
            .input_shared("x", "x")
            .input("y", y),
    );
    for k in 2..=8 {
        pipeline = pipeline.step(
            Step::new(&format!("axpy{k}"), Kernel::Axpy)
                .param("a", 2)
                .input_shared("x", "x")
                .input_from("y", &format!("axpy{}", k - 1), "out"),
        );
    }
    let pipeline = pipeline
        .step(Step::new("sum", Kernel::Reduce).input_from("x", "axpy8", "out"))
        .step(
            Step::new("counts", Kernel::Histogram)
                .param("bins", 8)
                .param("lo", 0)
                .param("hi", 20)
                .input_from("x", "axpy8", "out"),
        )
        .output("sum", "sum", "out")
        .output("counts", "counts", "out");

    let report = engine.run_pipeline_on(pipeline, choice)?;
    println!(
        "{} steps on {} ({}) in {:.2} ms: {}",
        report.steps.len(),
        report.backend,
        report.device,
        report.timings.total,
        report.placement_reason
    );
    for step in &report.steps {
        let t = &step.traffic;
        println!(
            "  {:<7} {:<9} {:>8.3} ms, {:>9} B up, {:>9} B down, {} submissions",
            step.name,
            step.kernel.name(),
            step.timings.total,
            t.uploaded_bytes,
            t.downloaded_bytes,
            t.submissions
        );
    }
    let t = &report.traffic;
    println!(
        "moved {} B up and {} B down in {} submissions",
        t.uploaded_bytes, t.downloaded_bytes, t.submissions
    );
    println!("sum = {:?}", report.outputs["sum"].as_f32());
    println!("counts = {:?}", report.outputs["counts"].as_u32());
    Ok(())
}
