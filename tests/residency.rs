//! Data that stays where it is computed: pipelines that move only their
//! inputs and results, handles uploaded once however often they are read,
//! kept outputs that stay on the GPU until read, and a small device budget
//! that spills instead of failing. Checked through the byte counters every
//! report carries, on each backend.

mod common;

use anycore::backend::gpu::GpuOptions;
use anycore::backend::{BackendChoice, BackendKind};
use anycore::coordinator::cost::{CostModel, Line, Transfer};
use anycore::engine::{BlockingEngine, CostModelSource, EngineConfig};
use anycore::kernel::{Job, Kernel};
use anycore::pipeline::{Pipeline, Step};
use anycore::tensor::{Handle, Tensor, TensorData};
use rand::Rng;

use common::{backends, random_f32, rng};

/// An engine whose GPU treats bindings as 64 KiB, so that inputs kept on
/// the device are bound chunk by chunk at offsets.
fn small_bindings() -> BlockingEngine {
    common::engine(GpuOptions {
        max_binding_bytes: Some(64 << 10),
        ..GpuOptions::default()
    })
}

fn f32s(t: &Tensor) -> &[f32] {
    t.as_f32().expect("f32 output")
}

/// [`common::three_steps`], only `total` asked for.
fn three_steps(x: &Tensor, y: &Tensor) -> Pipeline {
    common::three_steps(x, y).output("total", "total", "out")
}

/// The three steps as separate jobs, each result brought home.
fn three_jobs(engine: &BlockingEngine, x: &Tensor, y: &Tensor, on: BackendChoice) -> Tensor {
    let run = |job: Job| engine.run_on(job, on).expect("job").outputs["out"].clone();
    let scaled = run(Job::new(Kernel::Axpy)
        .param("a", 2)
        .input("x", x.clone())
        .input("y", y.clone()));
    let again = run(Job::new(Kernel::Axpy)
        .param("a", -0.5)
        .input("x", scaled)
        .input("y", x.clone()));
    run(Job::new(Kernel::Reduce)
        .param("op", "sum")
        .input("x", again))
}

/// A 3-step pipeline gives what its three jobs give one by one; on the GPU
/// it uploads each external input once (x, read by two steps, included)
/// and downloads only the one result: 8n bytes up, 4 bytes down.
#[test]
fn a_pipeline_moves_only_its_inputs_and_its_results() {
    let mut rng = rng();
    for engine in [common::engine(GpuOptions::default()), small_bindings()] {
        // Sizes around the 64 KiB bindings' chunk edges, and larger.
        for n in [1, 16_383, 16_384, 16_385, rng.random_range(40_000..300_000)] {
            let x = Tensor::from_f32(random_f32(&mut rng, n));
            let y = Tensor::from_f32(random_f32(&mut rng, n));
            for on in backends(&engine) {
                let want = three_jobs(&engine, &x, &y, on);
                let report = engine.run_pipeline_on(three_steps(&x, &y), on).unwrap();
                assert_eq!(report.outputs["total"], want, "n={n} on {on:?}");
                let t = report.traffic;
                if on == BackendChoice::Gpu {
                    assert_eq!(t.uploaded_bytes, 8 * n as u64, "n={n}: {t:?}");
                    assert_eq!(t.downloaded_bytes, 4, "n={n}: {t:?}");
                } else {
                    assert_eq!(t, Default::default());
                }
            }
        }
    }
}

/// A handle read by 100 GPU jobs is uploaded once; every job's sum is
/// right; on the CPU nothing moves.
#[test]
fn a_handle_read_by_a_hundred_jobs_is_uploaded_once() {
    let engine = common::engine(GpuOptions::default());
    let mut rng = rng();
    let n = rng.random_range(100_000..400_000);
    let data = random_f32(&mut rng, n);
    let want: f64 = data.iter().map(|&v| f64::from(v)).sum();
    let tolerance = 1e-5 * data.iter().map(|&v| f64::from(v).abs()).sum::<f64>();
    for on in backends(&engine) {
        let x = Handle::from(data.clone());
        let mut uploaded = 0;
        for _ in 0..100 {
            let job = Job::new(Kernel::Reduce).input("x", x.clone());
            let report = engine.run_on(job, on).unwrap();
            let got = f64::from(f32s(&report.outputs["out"])[0]);
            assert!((got - want).abs() <= tolerance, "{got} vs {want} on {on:?}");
            uploaded += report.traffic.uploaded_bytes;
        }
        let once = if on == BackendChoice::Gpu {
            4 * n as u64
        } else {
            0
        };
        assert_eq!(uploaded, once, "n={n} on {on:?}");
        assert_eq!(x.location().device, on == BackendChoice::Gpu);
    }
}

/// A kept output stays where it was computed (on the GPU: nothing comes
/// home) until it is read; a CPU job reading it brings it home once; a GPU
/// job reads it in place.
#[test]
fn kept_outputs_stay_on_the_gpu_until_read() {
    let engine = small_bindings();
    let mut rng = rng();
    let n = rng.random_range(20_000..200_000);
    let (x, y) = (random_f32(&mut rng, n), random_f32(&mut rng, n));
    let want: Vec<f32> = x.iter().zip(&y).map(|(&x, &y)| 3.0 * x + y).collect();
    let close = |got: &[f32]| {
        got.iter()
            .zip(&want)
            .all(|(&g, &w)| (g - w).abs() <= 1e-6 * w.abs().max(1.0))
    };
    for on in backends(&engine) {
        let gpu = on == BackendChoice::Gpu;
        let made = |engine: &BlockingEngine| {
            let job = Job::new(Kernel::Axpy)
                .param("a", 3)
                .input("x", x.clone())
                .input("y", y.clone())
                .keep("out");
            let report = engine.run_on(job, on).unwrap();
            assert!(!report.outputs.contains_key("out"), "kept, not returned");
            assert_eq!(report.traffic.downloaded_bytes, 0, "nothing came home");
            report.kept["out"].clone()
        };
        let out = made(&engine);
        assert_eq!(out.location().host, !gpu, "on {on:?}");
        assert_eq!(out.spec().shape, vec![n]);
        // Read explicitly: its data, and now a host copy too.
        assert!(close(f32s(&engine.read(&out).unwrap())), "on {on:?}");
        assert!(out.location().host);

        // A CPU job on a handle only on the GPU brings it home once.
        let out = made(&engine);
        let sum = |on| {
            let job = Job::new(Kernel::Reduce).input("x", out.clone());
            let report = engine.run_on(job, on).unwrap();
            (f32s(&report.outputs["out"])[0], report.traffic)
        };
        let (cpu_sum, moved) = sum(BackendChoice::Cpu);
        assert_eq!(moved.downloaded_bytes, if gpu { 4 * n as u64 } else { 0 });
        let (_, moved) = sum(BackendChoice::Cpu);
        assert_eq!(moved.downloaded_bytes, 0, "the host copy stays");
        let want_sum: f64 = want.iter().map(|&v| f64::from(v)).sum();
        let tolerance = 2e-5 * want.iter().map(|&v| f64::from(v).abs()).sum::<f64>();
        assert!((f64::from(cpu_sum) - want_sum).abs() <= tolerance);
        if gpu {
            // Read in place on the GPU: nothing up but its 4-byte result down.
            let (gpu_sum, moved) = sum(BackendChoice::Gpu);
            assert_eq!((moved.uploaded_bytes, moved.downloaded_bytes), (0, 4));
            assert!((f64::from(gpu_sum) - want_sum).abs() <= tolerance);
        }
    }
}

/// With a 64 MiB device budget, 1 GiB of handles kept on the GPU still
/// works: the least recently used spill to host memory, and every result
/// — read back, or read by later GPU jobs — is right.
#[test]
fn a_small_device_budget_spills_instead_of_failing() {
    let engine = common::engine(GpuOptions {
        memory_budget_bytes: Some(64 << 20),
        ..GpuOptions::default()
    });
    if !engine.engine().coordinator().has_gpu() {
        return;
    }
    let mut rng = rng();
    let n = (8 << 20) + rng.random_range(0..1000); // 32 MiB of f32 each
    let data = random_f32(&mut rng, n);
    let x = Handle::from(data.clone());
    let mut kept = Vec::new();
    let mut spilled = 0;
    for i in 0..32 {
        let a = i as f32 - 16.0;
        let job = Job::new(Kernel::Axpy)
            .param("a", a)
            .input("x", x.clone())
            .input("y", x.clone())
            .keep("out");
        let report = engine.run_on(job, BackendChoice::Gpu).unwrap();
        spilled += report.traffic.downloaded_bytes;
        kept.push((a, report.kept["out"].clone()));
    }
    let live: u64 = kept.iter().map(|(_, h)| h.bytes()).sum();
    assert!(live >= 1 << 30, "{live} bytes live");
    assert!(spilled >= 900 << 20, "only {spilled} bytes spilled");
    let check = |a: f32, got: &TensorData| {
        let TensorData::F32(got) = got else {
            panic!("f32")
        };
        let bad = got
            .iter()
            .zip(&data)
            .position(|(&g, &x)| (g - (a * x + x)).abs() > 1e-6 * (a * x + x).abs().max(1.0));
        assert_eq!(bad, None, "a={a}");
    };
    // The oldest are spilled (host only); GPU jobs read them again.
    for (a, h) in kept.iter().take(3) {
        assert!(
            !h.location().device && h.location().host,
            "{:?}",
            h.location()
        );
        let job = Job::new(Kernel::Axpy)
            .param("a", 0)
            .input("x", h.clone())
            .input("y", h.clone());
        let report = engine.run_on(job, BackendChoice::Gpu).unwrap();
        check(*a, report.outputs["out"].data());
    }
    for (a, h) in &kept {
        check(*a, engine.read(h).unwrap().data());
    }
}

/// `auto` counts what moving the data would cost: with host inputs a
/// transfer-bound job goes to the CPU; with its inputs kept only on the
/// GPU (a chain of kept outputs), the same job stays on the GPU, and the
/// reason says why.
#[test]
fn auto_placement_counts_where_the_data_is() {
    // The GPU's line includes moving 12 bytes an element at 1 GB/s; the
    // CPU's is 12x faster on host data.
    let mut model = CostModel::default();
    model.set(BackendKind::Cpu, Kernel::Axpy, Line::new(0.01, 1e-6));
    model.set(BackendKind::Gpu, Kernel::Axpy, Line::new(0.05, 12.1e-6));
    model.set_transfer(Transfer {
        upload_ms_per_byte: 1e-6,
        download_ms_per_byte: 1e-6,
    });
    model.freeze();
    let engine = BlockingEngine::start(EngineConfig {
        gpu: GpuOptions {
            allow_software: true,
            ..GpuOptions::default()
        },
        cost_model: CostModelSource::Fixed(model),
        ..EngineConfig::default()
    })
    .unwrap();
    if !engine.engine().coordinator().has_gpu() {
        return;
    }
    let mut rng = rng();
    let n = rng.random_range(500_000..1_000_000);
    let (x, y) = (random_f32(&mut rng, n), random_f32(&mut rng, n));
    let job = || {
        Job::new(Kernel::Axpy)
            .input("x", x.clone())
            .input("y", y.clone())
    };
    let on_host = engine.run(job()).unwrap();
    assert_eq!(
        on_host.backend,
        BackendKind::Cpu,
        "{}",
        on_host.placement_reason
    );
    let kept = engine
        .run_on(job().keep("out"), BackendChoice::Gpu)
        .unwrap()
        .kept["out"]
        .clone();
    let chained = Job::new(Kernel::Axpy)
        .input("x", kept.clone())
        .input("y", kept.clone())
        .keep("out");
    let report = engine.run(chained).unwrap();
    assert_eq!(
        report.backend,
        BackendKind::Gpu,
        "{}",
        report.placement_reason
    );
    assert!(
        report.placement_reason.contains("only there"),
        "{}",
        report.placement_reason
    );
    assert_eq!(report.traffic.uploaded_bytes, 0, "read in place");
    // The result is right: 2·kept, read back.
    let kept_data = engine.read(&kept).unwrap();
    let doubled = engine.read(&report.kept["out"]).unwrap();
    let want: Vec<f32> = f32s(&kept_data).iter().map(|&v| 2.0 * v).collect();
    assert_eq!(f32s(&doubled), &want[..]);
}

/// A pipeline whose data is already on the GPU, its result kept there,
/// moves nothing and goes to the device as one submission; its result is
/// what the CPU computes.
#[test]
fn a_resident_pipeline_is_one_submission() {
    // Not poisoned: each poisoning write goes after the passes before it.
    let engine = BlockingEngine::start(EngineConfig {
        gpu: GpuOptions {
            allow_software: true,
            poison_outputs: false,
            max_binding_bytes: Some(64 << 10),
            ..GpuOptions::default()
        },
        cost_model: CostModelSource::Fixed(CostModel::default()),
        ..EngineConfig::default()
    })
    .unwrap();
    if !engine.engine().coordinator().has_gpu() {
        return;
    }
    let mut rng = rng();
    let n = rng.random_range(50_000..200_000);
    let (x, y) = (
        Handle::from(random_f32(&mut rng, n)),
        Handle::from(random_f32(&mut rng, n)),
    );
    // Put both on the device.
    for h in [&x, &y] {
        let job = Job::new(Kernel::Reduce).input("x", h.clone());
        engine.run_on(job, BackendChoice::Gpu).unwrap();
    }
    let chain = |keep: bool| {
        let mut p = Pipeline::new().input("x", x.clone()).step(
            Step::new("s0", Kernel::Axpy)
                .param("a", 0.5)
                .input_shared("x", "x")
                .input("y", y.clone()),
        );
        for i in 1..8 {
            p = p.step(
                Step::new(&format!("s{i}"), Kernel::Axpy)
                    .param("a", 0.5)
                    .input_shared("x", "x")
                    .input_from("y", &format!("s{}", i - 1), "out"),
            );
        }
        let p = p.output("out", "s7", "out");
        if keep { p.keep("out") } else { p }
    };
    let report = engine
        .run_pipeline_on(chain(true), BackendChoice::Gpu)
        .unwrap();
    let t = report.traffic;
    assert_eq!(
        (t.uploaded_bytes, t.downloaded_bytes, t.submissions),
        (0, 0, 1),
        "{t:?}"
    );
    let got = engine.read(&report.kept["out"]).unwrap();
    let want = engine
        .run_pipeline_on(chain(false), BackendChoice::Cpu)
        .unwrap();
    let close = f32s(&got)
        .iter()
        .zip(f32s(&want.outputs["out"]))
        .all(|(&g, &w)| (g - w).abs() <= 1e-5 * w.abs().max(1.0));
    assert!(close, "the GPU's chain differs from the CPU's");
}

/// A handle kept on the GPU outlives its engine: the engine brings it home
/// as it stops.
#[test]
fn kept_handles_come_home_when_the_engine_stops() {
    let engine = common::engine(GpuOptions::default());
    if !engine.engine().coordinator().has_gpu() {
        return;
    }
    let mut rng = rng();
    let n = rng.random_range(1_000..100_000);
    let x = random_f32(&mut rng, n);
    let job = Job::new(Kernel::Axpy)
        .param("a", 1)
        .input("x", x.clone())
        .input("y", x.clone())
        .keep("out");
    let kept = engine.run_on(job, BackendChoice::Gpu).unwrap().kept["out"].clone();
    assert!(!kept.location().host);
    drop(engine);
    let want: Vec<f32> = x.iter().map(|&v| v + v).collect();
    assert!(!kept.location().device);
    assert_eq!(kept.f32s(), &want[..]);
}

/// `scan` and `matmul` (a product that fits one block) read kept inputs in
/// place and keep their outputs on the device too: a pipeline of them
/// moves only its inputs up and its result down, and gives what the CPU
/// gives.
#[test]
fn scans_and_products_keep_their_data_on_the_gpu() {
    let engine = small_bindings();
    let mut rng = rng();
    let (m, k, n) = (
        rng.random_range(1..40),
        rng.random_range(1..40),
        rng.random_range(1..40),
    );
    let a = Tensor::new(vec![m, k], TensorData::F32(random_f32(&mut rng, m * k)));
    let b = Tensor::new(vec![k, n], TensorData::F32(random_f32(&mut rng, k * n)));
    let c = Tensor::new(vec![n, m], TensorData::F32(random_f32(&mut rng, n * m)));
    let len = rng.random_range(20_000..100_000);
    let x = Tensor::from_f32(random_f32(&mut rng, len));
    let pipeline = || {
        Pipeline::new()
            .step(
                Step::new("ab", Kernel::Matmul)
                    .input("a", a.clone())
                    .input("b", b.clone()),
            )
            .step(
                Step::new("abc", Kernel::Matmul)
                    .input_from("a", "ab", "out")
                    .input("b", c.clone()),
            )
            .step(
                Step::new("sums", Kernel::Scan)
                    .param("inclusive", true)
                    .input("x", x.clone()),
            )
            .step(
                Step::new("total", Kernel::Reduce)
                    .param("op", "max")
                    .input_from("x", "sums", "out"),
            )
            .output("abc", "abc", "out")
            .output("top", "total", "out")
    };
    let want = engine
        .run_pipeline_on(pipeline(), BackendChoice::Cpu)
        .unwrap();
    for on in backends(&engine)
        .into_iter()
        .filter(|&b| b == BackendChoice::Gpu)
    {
        let report = engine.run_pipeline_on(pipeline(), on).unwrap();
        let close = |name: &str, tol: f32| {
            let (g, w) = (f32s(&report.outputs[name]), f32s(&want.outputs[name]));
            assert_eq!(g.len(), w.len());
            for (i, (&g, &w)) in g.iter().zip(w).enumerate() {
                assert!(
                    (g - w).abs() <= tol * w.abs().max(1.0),
                    "{name}[{i}]: {g} vs {w}"
                );
            }
        };
        close("abc", 1e-4);
        close("top", 1e-4);
        let t = report.traffic;
        let up = 4 * (m * k + k * n + n * m + len) as u64;
        assert_eq!(t.uploaded_bytes, up, "{t:?}");
        assert_eq!(t.downloaded_bytes, 4 * (m * m + 1) as u64, "{t:?}");
    }
}
