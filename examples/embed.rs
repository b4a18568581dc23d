//! Embedding anycore: start an engine, run a few jobs concurrently, and see
//! where each ran and why.
//!
//! `cargo run --release --example embed`

use anycore::engine::{Engine, EngineConfig};
use anycore::kernel::{Job, Kernel};
use anycore::tensor::{Tensor, TensorData};

#[tokio::main]
async fn main() -> anycore::Result<()> {
    let engine = Engine::start(EngineConfig::default()).await?;

    let n = 1 << 20;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 1e-3).collect();
    let y = vec![1.0f32; n];
    let axpy = Job::new(Kernel::Axpy)
        .input("x", Tensor::from_f32(x.clone()))
        .input("y", Tensor::from_f32(y))
        .param("a", 2.0);
    let sum = Job::new(Kernel::Reduce).input("x", Tensor::from_f32(x));
    let a = Tensor::new(vec![256, 256], TensorData::F32(vec![0.5; 256 * 256]));
    let matmul = Job::new(Kernel::Matmul).input("a", a.clone()).input("b", a);

    // Three jobs in flight at once; each is placed on its own.
    let (axpy, sum, matmul) = tokio::join!(engine.run(axpy), engine.run(sum), engine.run(matmul));
    for report in [axpy?, sum?, matmul?] {
        let out = &report.outputs["out"];
        println!(
            "{:<7} on {} ({}): {} in {:.3} ms — {}",
            report.kernel.name(),
            report.backend,
            report.device,
            out.describe(),
            report.timings.total,
            report.placement_reason
        );
    }
    engine.shutdown().await;
    Ok(())
}
