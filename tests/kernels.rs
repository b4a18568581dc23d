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

use common::{SIZES, assert_close, random_f32, rng};

/// Runs a task; on the CPU also through `run_owned` (the coordinator's
/// path, which may write over the task's buffers) and checks both agree.
fn run(backend: &dyn Backend, task: &Task) -> anycore::kernel::Outputs {
    let fail = |e| panic!("{} failed on {}: {e}", task.kernel(), common::name(backend));
    let outputs = backend.run(task).unwrap_or_else(fail).outputs;
    if backend.kind() == BackendKind::Cpu {
        let owned = backend.run_owned(task.clone()).unwrap_or_else(fail).outputs;
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

fn axpy_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    // 65,536 × 256 + 3 elements need more than 65,535 workgroups of 256.
    for &n in SIZES.iter().chain(&[65_536 * 256 + 3]) {
        let a = rng.random_range(-3.0f32..3.0);
        let job = Job::new(Kernel::Axpy)
            .input("x", Tensor::from_f32(random_f32(&mut rng, n)))
            .input("y", Tensor::from_f32(random_f32(&mut rng, n)))
            .param("a", a);
        let task = Task::new(job).unwrap();
        let got = run(backend, &task);
        let want = task.reference();
        assert_eq!(got["out"].shape(), &[n]);
        assert_close(
            &format!("axpy n={n}"),
            got["out"].as_f32().unwrap(),
            want["out"].as_f32().unwrap(),
            1e-6,
        );
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
    for op in [ReduceOp::Sum, ReduceOp::Min, ReduceOp::Max] {
        for dtype in 0..3 {
            for &n in SIZES {
                if n == 0 && op != ReduceOp::Sum {
                    continue;
                }
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
    for (m, k, n) in shapes {
        let (a, b) = (random_f32(&mut rng, m * k), random_f32(&mut rng, k * n));
        let job = |a: &[f32], b: &[f32]| {
            Job::new(Kernel::Matmul)
                .input("a", Tensor::new(vec![m, k], TensorData::F32(a.to_vec())))
                .input("b", Tensor::new(vec![k, n], TensorData::F32(b.to_vec())))
        };
        let task = Task::new(job(&a, &b)).unwrap();
        let got = &run(backend, &task)["out"];
        let want = &task.reference()["out"];
        assert_eq!(got.shape(), &[m, n]);
        // Each element is held to f32 rounding of its own terms, (|a|·|b|)ij:
        // a dot product that cancels to near zero is still right, and a
        // missing or extra term (about 1/k of that scale) is not.
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let scale = Task::new(job(&abs(&a), &abs(&b))).unwrap().reference();
        let (got, want) = (got.as_f32().unwrap(), want.as_f32().unwrap());
        for (i, (&scale, (&g, &w))) in scale["out"]
            .as_f32()
            .unwrap()
            .iter()
            .zip(got.iter().zip(want))
            .enumerate()
        {
            let err = (f64::from(g) - f64::from(w)).abs();
            assert!(
                err <= 1e-5 * f64::from(scale) + 1e-30,
                "matmul {m}x{k}x{n}: element {i} ({}, {}) is {g}, expected {w} (error {err:e}, scale {scale})",
                i / n.max(1),
                i % n.max(1),
            );
        }
    }
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

/// An input larger than the device's real storage-binding limit (128 MiB on
/// llvmpipe) is split, not rejected. Skipped where that limit is so large
/// that the input would not fit this machine's memory comfortably.
#[test]
fn gpu_splits_inputs_past_the_real_binding_limit() {
    let Some(gpu) = common::gpu() else { return };
    let limit = gpu.limits().max_storage_buffer_binding_size;
    if limit > 512 << 20 {
        eprintln!("skipping: binding limit {limit} bytes is too large to pass here");
        return;
    }
    let n = (limit / 4) as usize + 1_000_003;
    let mut rng = rng();
    for op in [ReduceOp::Sum, ReduceOp::Max] {
        check_reduce(gpu, op, TensorData::F32(random_f32(&mut rng, n)));
    }
}
