//! Every kernel against its sequential reference on every backend: fresh
//! random data, sizes across workgroup edges, outputs poisoned first (the
//! GPU test backends fill output buffers with 0xFF bytes; CPU kernels
//! allocate their own outputs, which a missed element would leave 0 — never
//! what random data gives).

mod common;

use anycore::backend::{Backend, BackendKind};
use anycore::kernel::reduce::{Reduce, ReduceOp};
use anycore::kernel::{Job, Kernel, Task};
use anycore::tensor::{Tensor, TensorData};
use rand::Rng;

use common::{SIZES, random_f32, rng};

/// Runs a task; on the CPU also through `run_owned` (the coordinator's
/// path, which may write over the task's buffers) and checks both agree.
fn run(backend: &dyn Backend, task: &Task) -> anycore::kernel::Outputs {
    let fail = |e| panic!("{} failed on {}: {e}", task.kernel(), common::name(backend));
    let outputs = backend.run(task).unwrap_or_else(fail).outputs;
    if backend.kind() == BackendKind::Cpu {
        let owned = backend
            .run_owned(task.clone(), &[])
            .unwrap_or_else(fail)
            .outputs;
        let bits = |o: &anycore::kernel::Outputs| -> Vec<(String, Vec<usize>, Vec<u8>)> {
            o.iter()
                .map(|(k, t)| (k.clone(), t.shape().to_vec(), t.data().as_bytes().to_vec()))
                .collect()
        };
        assert!(
            bits(&owned) == bits(&outputs),
            "{}: run_owned differs from run",
            task.kernel()
        );
    }
    outputs
}

/// Lengths at the edges of the streaming kernels' layout (`axpy`,
/// `reduce`): vec4 of 4 elements, workgroup tiles of 256 × 4 vec4 (4,096
/// elements) per grid-stride step, 16,384-element chunks under
/// `gpu_chunked`. Lengths ≡ 1, 2, 3 (mod 4); one tile ± 1; last tiles that
/// end in each quarter of a tile (5,497 … 15,087: their last vec4 is in the
/// second, third or fourth run of 256); around one chunk, and chunk counts
/// ≡ 1, 2, 3 (mod 4).
const STREAM_EDGES: [usize; 19] = [
    2, 3, 5, 6, 7, 4_095, 4_096, 4_097, 5_497, 5_499, 7_694, 15_086, 15_087, 16_383, 16_385,
    32_771, 65_537, 1_000_001, 1_000_002,
];

fn axpy_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    // The stream edges, and one full sweep of the capped grid (4,096
    // workgroups, `MAX_GROUPS` in backend/gpu/axpy.rs) ± 1, past which the
    // loop takes a second step. That sweep + 1 is also more than 65,535
    // workgroups of 256 would cover.
    let sweep = 4_096 * 4_096;
    let around_sweep = [sweep - 1, sweep + 1];
    let edges = STREAM_EDGES.iter().chain(&around_sweep);
    for &n in SIZES.iter().chain(edges) {
        let a = rng.random_range(-3.0f32..3.0);
        let (x, y) = (random_f32(&mut rng, n), random_f32(&mut rng, n));
        let job = Job::new(Kernel::Axpy)
            .input("x", Tensor::from_f32(x.clone()))
            .input("y", Tensor::from_f32(y.clone()))
            .param("a", a);
        let task = Task::new(job).unwrap();
        let got = run(backend, &task);
        let want = task.reference();
        assert_eq!(got["out"].shape(), &[n]);
        // Each element is held to f32 rounding of its own terms, |a·x| + |y|
        // (a vector norm of the result would fail a short vector whose
        // terms happen to cancel, fused or not); an unwritten element
        // (poison, NaN) or a wrong one (off by a term) is far outside.
        let (got, want) = (got["out"].as_f32().unwrap(), want["out"].as_f32().unwrap());
        for (i, ((&g, &w), (&x, &y))) in got.iter().zip(want).zip(x.iter().zip(&y)).enumerate() {
            let scale = (f64::from(a) * f64::from(x)).abs() + f64::from(y).abs();
            let err = (f64::from(g) - f64::from(w)).abs();
            assert!(
                err <= 1e-6 * scale,
                "axpy n={n}: element {i} is {g}, expected {w} (error {err:e}, scale {scale:e})"
            );
        }
    }
}

fn random_data(rng: &mut impl Rng, dtype: usize, n: usize) -> TensorData {
    match dtype {
        0 => TensorData::F32((0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()),
        // Full range, so integer sums wrap.
        1 => TensorData::U32((0..n).map(|_| rng.random()).collect()),
        _ => TensorData::I32((0..n).map(|_| rng.random()).collect()),
    }
}

fn check_reduce(backend: &dyn Backend, op: ReduceOp, x: TensorData) {
    let n = x.len();
    let abs_sum: f64 = match &x {
        TensorData::F32(v) => v.iter().map(|&f| f64::from(f).abs()).sum(),
        _ => 0.0,
    };
    let dtype = x.dtype();
    let task = Task::Reduce(Reduce::new(op, x).unwrap());
    let got = &run(backend, &task)["out"];
    let want = &task.reference()["out"];
    assert_eq!(got.shape(), &[1], "{op:?} {dtype} n={n}: shape");
    match (got.data(), want.data()) {
        (TensorData::F32(g), TensorData::F32(w)) if op == ReduceOp::Sum && !w[0].is_nan() => {
            let err = (f64::from(g[0]) - f64::from(w[0])).abs();
            assert!(
                err <= 1e-5 * abs_sum + f64::from(f32::MIN_POSITIVE),
                "sum f32 n={n}: got {}, expected {} (error {err:e}, bound {:e})",
                g[0],
                w[0],
                1e-5 * abs_sum
            );
        }
        (TensorData::F32(g), TensorData::F32(w)) => {
            assert!(
                g[0] == w[0] || (g[0].is_nan() && w[0].is_nan()),
                "{op:?} f32 n={n}: got {}, expected {}",
                g[0],
                w[0]
            );
        }
        (g, w) => assert_eq!(g, w, "{op:?} {dtype} n={n}"),
    }
}

fn reduce_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    // The GPU shader masks the lanes past n of the last vec4 (which hold
    // stale data or poison), and the wide pass has at most 2,048 workgroups
    // (`MAX_GROUPS` in backend/gpu/reduce.rs), whose partials the next pass
    // reads as vec4 too. So: the stream edges; partial counts ≢ 0 (mod 4)
    // (4,096 × 5 + 1 gives 6); and one full sweep of the capped grid
    // (2,048 × 4,096) ± 1.
    let edges = STREAM_EDGES.iter().chain(&[4_096 * 5 + 1]);
    let sweep = 2_048 * 4_096;
    for op in [ReduceOp::Sum, ReduceOp::Min, ReduceOp::Max] {
        for dtype in 0..3 {
            for &n in SIZES.iter().chain(edges.clone()) {
                if n == 0 && op != ReduceOp::Sum {
                    continue;
                }
                check_reduce(backend, op, random_data(&mut rng, dtype, n));
            }
            for n in [sweep - 1, sweep + 1] {
                check_reduce(backend, op, random_data(&mut rng, dtype, n));
            }
        }
    }
}

fn reduce_min_max_propagate_nan(backend: &dyn Backend) {
    let mut rng = rng();
    for n in [1, 300, 70_000] {
        let mut x = random_f32(&mut rng, n);
        x[rng.random_range(0..n)] = f32::NAN;
        for op in [ReduceOp::Min, ReduceOp::Max, ReduceOp::Sum] {
            check_reduce(backend, op, TensorData::F32(x.clone()));
        }
    }
}

/// A matmul on fresh random data, with its reference and, per element, the
/// scale its error is held to.
struct MatmulCase {
    shape: (usize, usize, usize),
    task: Task,
    want: Vec<f32>,
    scale: Vec<f32>,
}

impl MatmulCase {
    fn new(rng: &mut rand::rngs::SmallRng, (m, k, n): (usize, usize, usize)) -> Self {
        let (a, b) = (random_f32(rng, m * k), random_f32(rng, k * n));
        let job = |a: &[f32], b: &[f32]| {
            Job::new(Kernel::Matmul)
                .input("a", Tensor::new(vec![m, k], TensorData::F32(a.to_vec())))
                .input("b", Tensor::new(vec![k, n], TensorData::F32(b.to_vec())))
        };
        let task = Task::new(job(&a, &b)).unwrap();
        let want = task.reference()["out"].as_f32().unwrap().to_vec();
        // Each element is held to f32 rounding of its own terms, (|a|·|b|)ij:
        // a dot product that cancels to near zero is still right, and a
        // missing or extra term (about 1/k of that scale) is not.
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let scale = Task::new(job(&abs(&a), &abs(&b))).unwrap().reference()["out"]
            .as_f32()
            .unwrap()
            .to_vec();
        MatmulCase {
            shape: (m, k, n),
            task,
            want,
            scale,
        }
    }

    /// Checks `got` (the outputs of `self.task` from `what`).
    fn check(&self, what: &str, got: &anycore::kernel::Outputs) {
        let (m, k, n) = self.shape;
        let got = &got["out"];
        assert_eq!(got.shape(), &[m, n], "{what}");
        let got = got.as_f32().unwrap();
        for (i, (&scale, (&g, &w))) in self
            .scale
            .iter()
            .zip(got.iter().zip(&self.want))
            .enumerate()
        {
            let err = (f64::from(g) - f64::from(w)).abs();
            assert!(
                err <= 1e-5 * f64::from(scale) + 1e-30,
                "{what} {m}x{k}x{n}: element {i} ({}, {}) is {g}, expected {w} (error {err:e}, scale {scale})",
                i / n.max(1),
                i % n.max(1),
            );
        }
    }
}

fn matmul_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    let shapes = [
        (1, 1, 1),
        (17, 33, 65),
        (64, 64, 64),
        (65, 63, 1),
        (1, 300, 1),
        (127, 1, 129),
        // Edges of the GPU's 128×128 tiles and 8-deep slices of k.
        (128, 8, 128),
        (129, 9, 127),
        (255, 17, 257),
        (513, 257, 129),
        (0, 5, 3),
        (4, 0, 5),
    ];
    for shape in shapes {
        let case = MatmulCase::new(&mut rng, shape);
        case.check("matmul", &run(backend, &case.task));
    }
}

/// Shapes for the variant tests: m, k, n across the 64 and 128 tiles' edges
/// and the 8- and 16-deep slices of k; the first group has k or n not a
/// multiple of 4 (only the scalar-load variants take them), the second has
/// both multiples of 4.
const VARIANT_SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (63, 64, 65),
    (64, 63, 64),
    (65, 127, 63),
    (127, 9, 129),
    (128, 17, 128),
    (129, 128, 127),
    (257, 65, 1),
    (1, 257, 257),
    (300, 517, 259),
    (5, 0, 7),
    (1, 4, 4),
    (63, 64, 68),
    (64, 128, 64),
    (65, 8, 124),
    (127, 132, 128),
    (128, 16, 132),
    (129, 256, 260),
    (257, 20, 4),
    (300, 516, 260),
    // With 64 KiB bindings, slabs of b only 3 columns wide: the vec4
    // variants' blocks fall back to their scalar twins.
    (3, 5000, 8),
];

/// Every matmul shader variant, forced in turn, against the reference at
/// [`VARIANT_SHAPES`]; a `vec4` variant must refuse the shapes it cannot
/// take (which also shows that forcing reaches the shader choice).
fn matmul_variants_match_reference(gpu: &dyn Backend) {
    use anycore::backend::gpu::tune::force_variant;
    use anycore::kernel::matmul::VARIANTS;
    let mut rng = rng();
    for &shape in VARIANT_SHAPES {
        let case = MatmulCase::new(&mut rng, shape);
        let (_, k, n) = shape;
        for v in &VARIANTS {
            let _forced = force_variant(v.name).unwrap();
            let result = gpu.run(&case.task);
            if v.applies(k, n) {
                let run = result.unwrap_or_else(|e| panic!("{} {shape:?}: {e}", v.name));
                case.check(v.name, &run.outputs);
            } else {
                let e = result.expect_err(v.name);
                assert!(e.is_user_error() && e.to_string().contains(v.name), "{e}");
            }
        }
    }
}

/// The variant test on each GPU test backend (not on the CPU, which has no
/// variants): unchecked, chunked, and with naga's runtime checks.
mod matmul_variants {
    use super::{common, matmul_variants_match_reference};

    #[test]
    fn gpu() {
        if let Some(gpu) = common::gpu() {
            matmul_variants_match_reference(gpu);
        }
    }

    #[test]
    fn gpu_chunked() {
        if let Some(gpu) = common::gpu_small_bindings() {
            matmul_variants_match_reference(gpu);
        }
    }

    #[test]
    fn gpu_checked() {
        if let Some(gpu) = common::gpu_checked() {
            matmul_variants_match_reference(gpu);
        }
    }
}

/// The whole tuning path, on llvmpipe (`ANYCORE_MATMUL_TUNE=always`; by
/// default software adapters are not tuned), in separate processes with
/// their own cache folder: the first product of a shape class times every
/// variant and caches the winner, `anycore devices --json` shows it, and a
/// second process takes it from the cache without timing anything.
#[test]
fn matmul_tuning_caches_its_choice() {
    use anycore::kernel::matmul::VARIANTS;
    use anycore::tensor::npy;
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let case = MatmulCase::new(&mut rng(), (96, 132, 100));
    let Task::Matmul(t) = &case.task else {
        unreachable!()
    };
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    for (name, rows, cols, data) in [("a.npy", 96, 132, &t.a), ("b.npy", 132, 100, &t.b)] {
        let tensor = Tensor::new(vec![rows, cols], TensorData::F32(data.f32s().to_vec()));
        npy::write(dir.path().join(name).as_path(), &tensor).unwrap();
    }
    let (a, b, out) = (path("a.npy"), path("b.npy"), path("out.npy"));
    let cache = dir.path().join("cache");
    let envs = [
        ("ANYCORE_CACHE_DIR", cache.to_str().unwrap()),
        ("ANYCORE_MATMUL_TUNE", "always"),
        ("ANYCORE_MATMUL_VARIANT", ""),
        ("RUST_LOG", "anycore=info"),
    ];
    let args = [
        "run",
        "matmul",
        "--backend",
        "gpu",
        "--allow-software-gpu",
        "-i",
        &format!("a={a}"),
        "-i",
        &format!("b={b}"),
        "-o",
        &format!("out={out}"),
    ];
    let class = "128x256x128/vec4";
    let tuned_line = format!("matmul {class}: ");
    let run = |tunes: bool| {
        let _ = std::fs::remove_file(&out);
        let result = common::anycore(&args, &envs);
        let log = common::stderr(&result);
        assert!(result.status.success(), "{log}");
        assert_eq!(log.contains(&tuned_line), tunes, "{log}");
        let got = npy::read(std::path::Path::new(&out)).unwrap();
        case.check(
            "tuned matmul",
            &anycore::kernel::Outputs::from([("out".to_owned(), got)]),
        );
    };
    run(true);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cache.join("matmul-variants.json")).unwrap())
            .unwrap();
    let adapters = file["adapters"].as_object().unwrap();
    assert_eq!(adapters.len(), 1, "{file}");
    let choice = &adapters.values().next().unwrap()[class];
    let winner = choice["variant"].as_str().unwrap();
    assert!(VARIANTS.iter().any(|v| v.name == winner), "{file}");
    // Every variant applies to 96x132x100 and was timed.
    assert_eq!(
        choice["ms"].as_object().unwrap().len(),
        VARIANTS.len(),
        "{file}"
    );

    run(false);

    let devices = common::anycore(&["devices", "--json", "--allow-software-gpu"], &envs);
    let report: serde_json::Value = serde_json::from_slice(&devices.stdout).unwrap();
    let shown = report["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["matmul"]["tuned"][class]["variant"].as_str())
        .collect::<Vec<_>>();
    assert_eq!(shown, [winner], "{report}");
    let variants = report["adapters"][0]["matmul"]["variants"]
        .as_array()
        .unwrap();
    assert_eq!(variants.len(), VARIANTS.len(), "{report}");
}

fn mandelbrot_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    for (width, height) in [(1, 1), (17, 13), (64, 64), (65, 257), (300, 200)] {
        let cx = rng.random_range(-1.0f32..0.0);
        let span = rng.random_range(0.5f32..3.0);
        let max_iter = rng.random_range(1..400u32);
        let job = Job::new(Kernel::Mandelbrot)
            .param("width", width)
            .param("height", height)
            .param("max_iter", max_iter)
            .param("x0", cx - span)
            .param("x1", cx + span)
            .param("y0", -span)
            .param("y1", span * 0.9);
        let task = Task::new(job).unwrap();
        let got = &run(backend, &task)["out"];
        let want = &task.reference()["out"];
        assert_eq!(got.shape(), &[height as usize, width as usize]);
        let (g, w) = (got.as_u32().unwrap(), want.as_u32().unwrap());
        assert!(
            g.iter().all(|&c| c <= max_iter),
            "{width}x{height}: a count exceeds max_iter {max_iter} (unwritten pixel?)"
        );
        assert_counts_match(
            &format!("{width}x{height} max_iter {max_iter}"),
            g,
            w,
            width as usize,
            max_iter,
        );
    }
}

/// Iteration counts from a backend against the reference. GPUs may fuse
/// multiply-adds and divide less exactly, which can change the count of a
/// pixel whose orbit passes |z|² = 4 almost exactly (such pixels lie on the
/// edge between two count bands) or of a point on the chaotic rim of the set
/// (one side says `max_iter`). So a differing pixel must be one of those, or
/// on the image border, and at most 2% of pixels may differ. Wrong rows,
/// bands or offsets differ inside bands, or in far more pixels.
fn assert_counts_match(what: &str, got: &[u32], want: &[u32], width: usize, max_iter: u32) {
    let height = want.len() / width;
    let mut differing = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if g == w {
            continue;
        }
        differing += 1;
        let (r, c) = (i / width, i % width);
        let on_border = r == 0 || c == 0 || r + 1 == height || c + 1 == width;
        let edge = on_border
            || g == max_iter
            || w == max_iter
            || [i - 1, i + 1, i - width, i + width]
                .iter()
                .any(|&j| want[j] != w);
        assert!(
            edge,
            "{what}: pixel (row {r}, col {c}) is {g}, expected {w}, inside a band of equal counts"
        );
    }
    assert!(
        differing * 50 <= got.len(),
        "{what}: {differing} of {} pixels differ",
        got.len()
    );
}

on_each_backend!(
    axpy_matches_reference,
    reduce_matches_reference,
    reduce_min_max_propagate_nan,
    matmul_matches_reference,
    mandelbrot_matches_reference,
);

#[test]
fn cpu_mandelbrot_is_exactly_the_reference() {
    // Same float32 operations in the same order: no pixel may differ.
    let task = Task::Mandelbrot(anycore::kernel::mandelbrot::Mandelbrot::new(123, 77).unwrap());
    let got = run(common::cpu(), &task);
    assert_eq!(got["out"], task.reference()["out"]);
}

#[test]
fn empty_min_is_bad_input() {
    let err = Reduce::new(ReduceOp::Min, TensorData::F32(vec![])).unwrap_err();
    assert!(
        err.is_user_error() && err.to_string().contains("empty"),
        "{err}"
    );
}

/// A float sum of nothing, or of negative zeros, is +0.0 on every backend,
/// as NumPy's is (Rust's float sums start from -0.0).
#[test]
fn float_sums_of_zeros_are_positive_zero() {
    for data in [vec![], vec![-0.0f32], vec![-0.0f32; 1000]] {
        let task = Task::Reduce(Reduce::new(ReduceOp::Sum, TensorData::F32(data.clone())).unwrap());
        let mut backends: Vec<&dyn Backend> = vec![common::cpu()];
        backends.extend(common::gpu().map(|g| g as &dyn Backend));
        for backend in backends {
            let got = run(backend, &task);
            let TensorData::F32(v) = got["out"].data() else {
                panic!("an f32 sum")
            };
            let kind = backend.kind().name();
            assert_eq!(
                v[0].to_bits(),
                0,
                "{kind} of {} zeros: {}",
                data.len(),
                v[0]
            );
        }
        let want = task.reference();
        assert_eq!(want["out"].data(), &TensorData::F32(vec![0.0]));
    }
}

/// An input larger than the device's real storage-binding limit (128 MiB on
/// llvmpipe) is split, not rejected. Skipped where that limit is so large
/// that the input would not fit this machine's memory comfortably.
#[test]
fn gpu_splits_inputs_past_the_real_binding_limit() {
    let Some((gpu, n)) = common::gpu_past_binding_limit() else {
        return;
    };
    let mut rng = rng();
    for op in [ReduceOp::Sum, ReduceOp::Max] {
        check_reduce(gpu, op, TensorData::F32(random_f32(&mut rng, n)));
    }
}

/// `anycore bench`'s "back to back" timing runs every kernel's passes
/// several times in one compute pass: it gives a finite time per run for
/// every kernel (also when jobs are chunked), and leaves the backend sound
/// for the next job, whose result is checked.
#[test]
fn gpu_back_to_back_timing_runs_every_kernel() {
    for gpu in [common::gpu(), common::gpu_small_bindings()]
        .into_iter()
        .flatten()
    {
        let mut rng = rng();
        for kernel in Kernel::ALL {
            let task = anycore::bench::workload::task(kernel, 96, rng.random())
                .expect("a small bench task");
            let ms = gpu
                .time_back_to_back(&task, 3)
                .unwrap_or_else(|e| panic!("{kernel} back to back on {}: {e}", common::name(gpu)));
            // Zero is possible where the clock ticks coarsely.
            assert!(ms.is_finite() && ms >= 0.0, "{kernel}: {ms} ms per run");
        }
        // A job after it runs its kernel once, not three times.
        let task = anycore::bench::workload::task(Kernel::Axpy, 1_001, rng.random()).unwrap();
        let got = run(gpu, &task);
        let want = task.reference();
        common::assert_close(
            "axpy after back-to-back timing",
            got["out"].as_f32().unwrap(),
            want["out"].as_f32().unwrap(),
            1e-6,
        );
    }
}

/// What `Kernel::plan` says a job gives — from its inputs' dtypes and
/// shapes alone — is what the job gives, for a job of every kernel (sort
/// with each payload), at random sizes.
#[test]
fn plans_state_the_outputs_jobs_give() {
    let mut rng = rng();
    let n = rng.random_range(1..5_000);
    let (m, k, c) = (
        rng.random_range(1..40),
        rng.random_range(1..40),
        rng.random_range(1..40),
    );
    let f32s = |rng: &mut rand::rngs::SmallRng, shape: Vec<usize>| {
        let len = shape.iter().product();
        Tensor::new(shape, TensorData::F32(random_f32(rng, len)))
    };
    let u32s = |rng: &mut rand::rngs::SmallRng, len: usize| {
        Tensor::new(
            vec![len],
            TensorData::U32((0..len).map(|_| rng.random()).collect()),
        )
    };
    let jobs = [
        Job::new(Kernel::Axpy)
            .param("a", 2)
            .input("x", f32s(&mut rng, vec![n]))
            .input("y", f32s(&mut rng, vec![n])),
        Job::new(Kernel::Reduce)
            .param("op", "max")
            .input("x", u32s(&mut rng, n)),
        Job::new(Kernel::Matmul)
            .input("a", f32s(&mut rng, vec![m, k]))
            .input("b", f32s(&mut rng, vec![k, c])),
        Job::new(Kernel::Mandelbrot)
            .param("width", c)
            .param("height", m)
            .param("max_iter", 20),
        Job::new(Kernel::Scan).input("x", f32s(&mut rng, vec![n])),
        Job::new(Kernel::Sort).input("keys", f32s(&mut rng, vec![n])),
        Job::new(Kernel::Sort)
            .input("keys", u32s(&mut rng, n))
            .input("values", u32s(&mut rng, n)),
        Job::new(Kernel::Sort)
            .param("indices", true)
            .input("keys", f32s(&mut rng, vec![n])),
        Job::new(Kernel::Histogram)
            .param("bins", k)
            .input("x", f32s(&mut rng, vec![n])),
        Job::new(Kernel::Histogram)
            .param("bins", k)
            .param("lo", -0.5)
            .param("hi", 0.5)
            .input("x", f32s(&mut rng, vec![n])),
        Job::new(Kernel::Map)
            .param("expr", "x * y - 1")
            .input("x", f32s(&mut rng, vec![3, n]))
            .input("y", f32s(&mut rng, vec![1])),
        Job::new(Kernel::Conv2d)
            .input("image", f32s(&mut rng, vec![k, 7, 3]))
            .input("kernel", f32s(&mut rng, vec![3, 5])),
        Job::new(Kernel::Blur).param("sigma", 1.5).input(
            "image",
            Tensor::new(vec![k, 9], TensorData::U8(vec![7; k * 9])),
        ),
    ];
    let mut planned = std::collections::BTreeSet::new();
    for job in jobs {
        let specs = job
            .inputs
            .iter()
            .map(|(k, t)| (k.clone(), t.spec().clone()))
            .collect();
        let plan = job.kernel.plan(specs, &job.params).unwrap();
        let outputs = Task::new(job.clone()).unwrap().run_cpu();
        let given: Vec<_> = outputs
            .iter()
            .map(|(k, t)| (k.as_str(), t.spec()))
            .collect();
        let mut said: Vec<_> = plan.outputs.iter().map(|(k, s)| (*k, s.clone())).collect();
        said.sort_by_key(|(k, _)| *k);
        assert_eq!(said, given, "{}: {:?}", job.kernel, job.params);
        planned.insert(job.kernel);
    }
    assert_eq!(planned.len(), Kernel::ALL.len(), "a job of every kernel");
}

/// A plan refuses what `Task::new` refuses, with the same message.
#[test]
fn plans_refuse_what_jobs_refuse() {
    let spec = |shape: Vec<usize>| anycore::tensor::Spec {
        dtype: anycore::tensor::DType::F32,
        shape,
    };
    let cases = [
        (Kernel::Axpy, vec![("x", vec![3]), ("y", vec![4])], vec![]),
        (
            Kernel::Matmul,
            vec![("a", vec![2, 3]), ("b", vec![4, 2])],
            vec![],
        ),
        (Kernel::Reduce, vec![("x", vec![0])], vec![("op", "min")]),
        (Kernel::Histogram, vec![("x", vec![5])], vec![("bins", "0")]),
        (Kernel::Histogram, vec![("x", vec![5])], vec![("lo", "1")]),
        (Kernel::Scan, vec![("x", vec![2, 2])], vec![]),
        (
            Kernel::Mandelbrot,
            vec![],
            vec![("width", "0"), ("height", "3")],
        ),
        (
            Kernel::Axpy,
            vec![("x", vec![3]), ("y", vec![3])],
            vec![("b", "1")],
        ),
    ];
    for (kernel, inputs, params) in cases {
        let params: std::collections::BTreeMap<String, String> = params
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let specs = inputs
            .iter()
            .map(|(k, s)| (k.to_string(), spec(s.clone())))
            .collect();
        let planned = kernel.plan(specs, &params).unwrap_err().to_string();
        let mut job = Job::new(kernel);
        job.params = params;
        for (name, shape) in inputs {
            let len = shape.iter().product();
            job = job.input(name, Tensor::new(shape, TensorData::F32(vec![0.5; len])));
        }
        let ran = Task::new(job).unwrap_err().to_string();
        assert_eq!(planned, ran, "{kernel}");
    }
}
