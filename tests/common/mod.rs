//! Shared test helpers: the backends to test on, fresh random data, and
//! comparisons that say which element differs.
#![allow(dead_code)] // each test binary uses a different subset

pub mod server;

use std::process::{Command, Output};
use std::sync::OnceLock;

use anycore::backend::cpu::CpuBackend;
use anycore::backend::gpu::{GpuBackend, GpuOptions};
use anycore::backend::{Backend, BackendChoice};
use anycore::coordinator::cost::CostModel;
use anycore::engine::{BlockingEngine, CostModelSource, EngineConfig};
use anycore::kernel::Kernel;
use anycore::pipeline::{Pipeline, Step};
use anycore::tensor::Tensor;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Runs the `anycore` binary with `args` and extra environment variables.
pub fn anycore(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anycore"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("anycore runs")
}

/// A finished command's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The CPU backend, shared by the tests of one binary.
pub fn cpu() -> &'static CpuBackend {
    static CPU: OnceLock<CpuBackend> = OnceLock::new();
    CPU.get_or_init(|| CpuBackend::new(None).expect("CPU pool"))
}

/// Whether a missing GPU must fail the test rather than skip it (CI sets this).
pub fn gpu_required() -> bool {
    std::env::var("ANYCORE_REQUIRE_GPU_TESTS").is_ok_and(|v| v == "1")
}

fn open_gpu(options: GpuOptions) -> Option<GpuBackend> {
    let options = GpuOptions {
        allow_software: true,
        poison_outputs: true,
        ..options
    };
    match GpuBackend::new(&options) {
        Ok(gpu) => Some(gpu),
        Err(e) if gpu_required() => {
            panic!("ANYCORE_REQUIRE_GPU_TESTS=1 but the GPU backend cannot start: {e}")
        }
        Err(e) => {
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

/// The GPU backend (software adapters allowed, outputs poisoned), or `None`
/// when there is no adapter and GPU tests are not required.
pub fn gpu() -> Option<&'static GpuBackend> {
    static GPU: OnceLock<Option<GpuBackend>> = OnceLock::new();
    GPU.get_or_init(|| open_gpu(GpuOptions::default())).as_ref()
}

/// The GPU backend and a length of f32s just past its real storage-binding
/// limit (128 MiB on llvmpipe), for tests that inputs that large are split,
/// not refused; `None` without a GPU, or where the limit is too large for
/// such an input to fit this machine's memory comfortably.
pub fn gpu_past_binding_limit() -> Option<(&'static GpuBackend, usize)> {
    let gpu = gpu()?;
    let limit = gpu.limits().max_storage_buffer_binding_size;
    if limit > 512 << 20 {
        eprintln!("skipping: binding limit {limit} bytes is too large to pass here");
        return None;
    }
    Some((gpu, (limit / 4) as usize + 1_000_003))
}

/// A GPU backend that treats bindings as 64 KiB and stages transfers in
/// 4 KiB chunks, so that small jobs take the chunked paths (and wrap the
/// staging rings many times) as large ones do on real devices.
pub fn gpu_small_bindings() -> Option<&'static GpuBackend> {
    static GPU: OnceLock<Option<GpuBackend>> = OnceLock::new();
    GPU.get_or_init(|| {
        open_gpu(GpuOptions {
            max_binding_bytes: Some(64 << 10),
            staging_chunk_bytes: Some(4 << 10),
            ..GpuOptions::default()
        })
    })
    .as_ref()
}

/// An engine with the GPU (llvmpipe allowed, outputs poisoned, `gpu`'s
/// other options) when there is one, and a fixed, empty cost model.
pub fn engine(gpu: GpuOptions) -> BlockingEngine {
    let engine = BlockingEngine::start(EngineConfig {
        gpu: GpuOptions {
            allow_software: true,
            poison_outputs: true,
            ..gpu
        },
        cost_model: CostModelSource::Fixed(CostModel::default()),
        ..EngineConfig::default()
    })
    .expect("engine");
    if gpu_required() {
        assert!(
            engine.engine().coordinator().has_gpu(),
            "ANYCORE_REQUIRE_GPU_TESTS=1 but the engine has no GPU"
        );
    }
    engine
}

/// scaled = 2·x + y; again = -0.5·scaled + x; total = Σ again: steps
/// reading earlier steps' outputs, x given once to the pipeline and read by
/// two steps; no outputs asked for yet.
pub fn three_steps(x: &Tensor, y: &Tensor) -> Pipeline {
    Pipeline::new()
        .input("x", x.clone())
        .step(
            Step::new("scaled", Kernel::Axpy)
                .param("a", 2)
                .input_shared("x", "x")
                .input("y", y.clone()),
        )
        .step(
            Step::new("again", Kernel::Axpy)
                .param("a", -0.5)
                .input_from("x", "scaled", "out")
                .input_shared("y", "x"),
        )
        .step(
            Step::new("total", Kernel::Reduce)
                .param("op", "sum")
                .input_from("x", "again", "out"),
        )
}

/// The backends an engine has: the CPU, and the GPU when there is one.
pub fn backends(engine: &BlockingEngine) -> Vec<BackendChoice> {
    let mut choices = vec![BackendChoice::Cpu];
    if engine.engine().coordinator().has_gpu() {
        choices.push(BackendChoice::Gpu);
    }
    choices
}

/// Writes `mod cpu`, `mod gpu`, `mod gpu_chunked` (bindings of 64 KiB)
/// and `mod gpu_checked` (runtime checks kept), each with one `#[test]` per
/// body, so a body written once runs on every backend (a GPU body is skipped, or fails
/// under ANYCORE_REQUIRE_GPU_TESTS=1, when there is no adapter).
/// The GPU backend with naga's runtime checks kept in every shader
/// (`GpuOptions::runtime_checks`), so trusted shaders are tested both ways.
pub fn gpu_checked() -> Option<&'static GpuBackend> {
    static GPU: OnceLock<Option<GpuBackend>> = OnceLock::new();
    GPU.get_or_init(|| {
        open_gpu(GpuOptions {
            runtime_checks: true,
            ..GpuOptions::default()
        })
    })
    .as_ref()
}

#[macro_export]
macro_rules! on_each_backend {
    ($($body:ident),* $(,)?) => {
        mod cpu {
            $(#[test] fn $body() { super::$body($crate::common::cpu()); })*
        }
        mod gpu {
            $(#[test] fn $body() {
                if let Some(gpu) = $crate::common::gpu() { super::$body(gpu); }
            })*
        }
        mod gpu_chunked {
            $(#[test] fn $body() {
                if let Some(gpu) = $crate::common::gpu_small_bindings() { super::$body(gpu); }
            })*
        }
        mod gpu_checked {
            $(#[test] fn $body() {
                if let Some(gpu) = $crate::common::gpu_checked() { super::$body(gpu); }
            })*
        }
    };
}

/// A generator with a fresh seed, printed so a failure can be replayed
/// with `ANYCORE_TEST_SEED=<seed>`.
pub fn rng() -> SmallRng {
    let seed = std::env::var("ANYCORE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("ANYCORE_TEST_SEED={seed}");
    SmallRng::seed_from_u64(seed)
}

/// `n` floats uniform in [-1, 1).
pub fn random_f32(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Asserts `got` matches `want` (from a sequential reference): same length,
/// NaN exactly where `want` has NaN, equal infinities, and a relative error
/// norm ‖got − want‖ / ‖want‖ of at most `tol`. Names the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (mut err2, mut ref2) = (0.0f64, 0.0f64);
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || g.is_nan() || w.is_infinite() || g.is_infinite() {
            let same = (w.is_nan() && g.is_nan()) || g == w;
            assert!(same, "{what}: element {i} is {g}, expected {w}");
            continue;
        }
        let d = f64::from(g) - f64::from(w);
        err2 += d * d;
        ref2 += f64::from(w) * f64::from(w);
        if d.abs() > worst.1 {
            worst = (i, d.abs());
        }
    }
    let rel = if ref2 > 0.0 {
        (err2 / ref2).sqrt()
    } else {
        err2.sqrt()
    };
    assert!(
        rel <= tol,
        "{what}: relative error {rel:e} > {tol:e}; worst at element {}: got {}, expected {}",
        worst.0,
        got[worst.0],
        want[worst.0]
    );
}

/// Sizes that straddle workgroup edges, plus one in the millions that is not
/// a power of two.
pub const SIZES: &[usize] = &[0, 1, 63, 64, 65, 255, 256, 257, 1_000_003];

/// A backend's name for messages.
pub fn name(b: &dyn Backend) -> String {
    format!("{} ({})", b.kind(), b.device())
}
