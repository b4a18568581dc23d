//! `map` against its sequential reference on every backend: every
//! operation, fresh random data with NaN, infinities and signed zeros
//! sprinkled in, lengths across the vec4, workgroup and chunk edges,
//! inputs of one element broadcast, shapes of any rank; and the errors a
//! user sees for bad expressions and inputs, on the command line too.

mod common;

use anycore::backend::{Backend, BackendKind};
use anycore::kernel::{Job, Kernel, Outputs, Task};
use anycore::tensor::{Tensor, TensorData};
use rand::Rng;
use rand::rngs::SmallRng;

use common::{random_f32, rng};

/// Lengths across vec4 (4), the grid's sweep (256 × 4), the chunked
/// backend's 16,384-element bindings and the CPU's 4,096-element blocks.
const LENGTHS: [usize; 14] = [
    1, 2, 3, 5, 255, 1_023, 1_025, 4_095, 4_097, 16_383, 16_385, 40_961, 65_537, 1_000_003,
];

/// Expressions that between them use every operation.
const EXPRESSIONS: [&str; 14] = [
    "x * 2 + sin(y)",
    "sqrt(x*x + y*y)",
    "(x - y) * z / 3 + -x ** 2 - x % 0.3 + (y - 1) % -0.7",
    "x % y + z % x + (x * 1e9) % 3 + (y * 1e7) % -0.37",
    "where(x < y, cos(z), tan(x)) + (x <= y) - (x > z) * (y >= z) + (x == x) + (y != z)",
    "asin(x) + acos(y) + atan(z * 5) + atan2(x, y)",
    "sinh(x) - cosh(y) + tanh(z * 20)",
    "exp(x * 4) + exp2(y * 4) + log(abs(z)) + log2(abs(x) + 1)",
    "floor(x * 10) + ceil(y * 10) + round(z * 10) + abs(x)",
    "min(x, y) + max(y, z) + clamp(x, -0.5, 0.5) + pow(abs(x), y * 3) + pow(y, 3) + pow(z, 2)",
    "log(x) + sqrt(y) + asin(z * 2) + log2(y)",
    "sin(x * 5000) + cos(y * 1e5)",
    "x + pi * e - inf * 0 * 0 + y",
    "7 - x * 0",
];

/// `n` values in [-1, 1), about one in fifty NaN, ±inf or ±0 (when
/// `specials`).
fn values(rng: &mut SmallRng, n: usize, specials: bool) -> Vec<f32> {
    let mut v = random_f32(rng, n);
    if specials {
        for x in v.iter_mut() {
            if rng.random_ratio(1, 50) {
                *x =
                    [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0][rng.random_range(0..5)];
            }
        }
    }
    v
}

fn run(backend: &dyn Backend, task: &Task) -> Outputs {
    backend
        .run(task)
        .unwrap_or_else(|e| panic!("map failed on {}: {e}", common::name(backend)))
        .outputs
}

/// Each element within `tol · max(1, |want|)` of the reference; NaN
/// exactly where it has NaN, infinities equal.
fn check(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let (got, want) = (got.as_f32().unwrap(), want.as_f32().unwrap());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() || w.is_infinite() {
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan())
        } else {
            (g - w).abs() <= tol * w.abs().max(1.0)
        };
        assert!(ok, "{what}: element {i} is {g}, expected {w}");
    }
}

/// GPUs' transcendental functions are allowed a few ulp more than the C
/// library's (Vulkan's precision rules); the CPU's sin and cos 2 ulp.
fn tolerance(backend: &dyn Backend) -> f32 {
    if backend.kind() == BackendKind::Gpu {
        2e-4
    } else {
        1e-5
    }
}

fn job(expr: &str, inputs: &[(&str, Tensor)]) -> Job {
    let mut job = Job::new(Kernel::Map).param("expr", expr);
    for (name, t) in inputs {
        job = job.input(name, t.clone());
    }
    job
}

fn map_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    for (k, expr) in EXPRESSIONS.iter().enumerate() {
        // Every expression at a few lengths, the first at all of them.
        let lengths: Vec<usize> = if k == 0 {
            LENGTHS.to_vec()
        } else {
            (0..3)
                .map(|_| LENGTHS[rng.random_range(0..LENGTHS.len())])
                .collect()
        };
        for n in lengths {
            let specials = rng.random_bool(0.7);
            let all: Vec<(&str, Tensor)> = ["x", "y", "z"]
                .into_iter()
                .map(|name| (name, Tensor::from_f32(values(&mut rng, n, specials))))
                .filter(|(name, _)| expr.contains(name))
                .collect();
            let task = Task::new(job(expr, &all)).unwrap();
            let got = run(backend, &task);
            let want = task.reference();
            let what = format!(
                "{expr} (n {n}, specials {specials}) on {}",
                common::name(backend)
            );
            check(&what, &got["out"], &want["out"], tolerance(backend));
        }
    }
}

/// Inputs of one element (shape [1] or []) broadcast; shapes of any rank
/// come back as they went in; no inputs at all give one value.
fn map_broadcasts_and_keeps_shapes(backend: &dyn Backend) {
    let mut rng = rng();
    let shapes: [Vec<usize>; 4] = [vec![7, 9], vec![3, 1, 4097], vec![2, 2, 2, 2], vec![5]];
    for shape in shapes {
        let n = shape.iter().product();
        let x = Tensor::new(shape.clone(), TensorData::F32(values(&mut rng, n, false)));
        let a = Tensor::new(vec![1], TensorData::F32(vec![rng.random_range(-2.0..2.0)]));
        let b = Tensor::new(vec![], TensorData::F32(vec![rng.random_range(-2.0..2.0)]));
        // One-element inputs before an array input too (x and z broadcast,
        // y and w not).
        let task = Task::new(job(
            "w * x + z - sin(x) + y",
            &[
                ("w", x.clone()),
                ("x", a.clone()),
                ("z", b.clone()),
                ("y", x.clone()),
            ],
        ))
        .unwrap();
        let got = run(backend, &task);
        check(
            &format!("broadcast first over {shape:?}"),
            &got["out"],
            &task.reference()["out"],
            tolerance(backend),
        );
        let task = Task::new(job("x * y + z - sin(y)", &[("x", x), ("y", a), ("z", b)])).unwrap();
        let got = run(backend, &task);
        assert_eq!(got["out"].shape(), shape.as_slice());
        check(
            &format!("broadcast over {shape:?}"),
            &got["out"],
            &task.reference()["out"],
            tolerance(backend),
        );
    }
    // Only single elements: the larger rank wins, as NumPy broadcasts.
    let one = |shape: Vec<usize>, v: f32| Tensor::new(shape, TensorData::F32(vec![v]));
    let task = Task::new(job(
        "x + y",
        &[("x", one(vec![], 1.5)), ("y", one(vec![1, 1], 2.0))],
    ))
    .unwrap();
    let got = run(backend, &task);
    assert_eq!(
        (got["out"].shape(), got["out"].as_f32().unwrap()),
        (&[1usize, 1][..], &[3.5f32][..])
    );
    // No inputs: the expression's value, shape [].
    let task = Task::new(job("2 ** 10 - 1", &[])).unwrap();
    let got = run(backend, &task);
    assert_eq!(
        (got["out"].shape(), got["out"].as_f32().unwrap()),
        (&[][..], &[1023.0f32][..])
    );
    // An empty input: an empty output.
    let empty = Tensor::new(vec![0, 5], TensorData::F32(vec![]));
    let task = Task::new(job("x + 1", &[("x", empty)])).unwrap();
    assert_eq!(run(backend, &task)["out"].shape(), &[0, 5]);
}

on_each_backend!(map_matches_reference, map_broadcasts_and_keeps_shapes);

/// What a job may not be, and what the message says.
#[test]
fn bad_jobs_are_refused_naming_the_problem() {
    let f = |shape: Vec<usize>| {
        let n = shape.iter().product();
        Tensor::new(shape, TensorData::F32(vec![0.5; n]))
    };
    let cases: Vec<(Job, &str)> = vec![
        (
            job("x * 2 + q", &[("x", f(vec![3]))]),
            "expr: unknown name 'q'",
        ),
        (
            job("x +", &[("x", f(vec![3]))]),
            "ends too early at column 4",
        ),
        (
            job("x + y", &[("x", f(vec![3]))]),
            "reads 'y', but no input 'y' is given",
        ),
        (
            job("x", &[("x", f(vec![3])), ("z", f(vec![3]))]),
            "input 'z' is given, but the expression does not read it",
        ),
        (
            job("x + y", &[("x", f(vec![3])), ("y", f(vec![4]))]),
            "inputs must have one shape",
        ),
        (
            job("x + y", &[("x", f(vec![3, 2])), ("y", f(vec![2, 3]))]),
            "inputs must have one shape",
        ),
        (
            job(
                "x",
                &[("x", Tensor::new(vec![2], TensorData::U32(vec![1, 2])))],
            ),
            "input 'x' of map is u32[2], but it must be f32",
        ),
        (
            Job::new(Kernel::Map).input("x", f(vec![1])),
            "map needs parameter 'expr'",
        ),
        (job("x", &[("q", f(vec![1]))]), "unknown input 'q' for map"),
    ];
    for (job, message) in cases {
        let err = Task::new(job.clone()).expect_err(message).to_string();
        assert!(err.contains(message), "{job:?}: {err}");
        // The plan (what the service checks before admitting) says the same.
        let specs = job
            .inputs
            .iter()
            .map(|(k, t)| (k.clone(), t.spec().clone()))
            .collect();
        if let Err(e) = Kernel::Map.plan(specs, &job.params) {
            assert_eq!(e.to_string(), err);
        } else {
            panic!("{job:?}: the plan accepted it");
        }
    }
}

/// The command line: a bad expression exits 2 naming the column; a good
/// one writes the result.
#[test]
fn the_command_line_runs_map_and_names_bad_expressions() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let out = dir.path().join("out.npy");
    anycore::tensor::npy::write(&x, &Tensor::from_f32(vec![1.0, -2.0, 4.0])).unwrap();
    let input = format!("x={}", x.display());
    let output = format!("out={}", out.display());
    let bad = common::anycore(
        &[
            "run",
            "map",
            "-i",
            &input,
            "-p",
            "expr=x * 2 + q",
            "-o",
            &output,
        ],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        common::stderr(&bad).contains("expr: unknown name 'q'")
            && common::stderr(&bad).contains("at column 9"),
        "{}",
        common::stderr(&bad)
    );
    let good = common::anycore(
        &[
            "run",
            "map",
            "-i",
            &input,
            "-p",
            "expr=where(x > 0, sqrt(x), x % 3)",
            "-o",
            &output,
            "--backend",
            "cpu",
        ],
        &[],
    );
    assert!(good.status.success(), "{}", common::stderr(&good));
    let got = anycore::tensor::npy::read(&out).unwrap();
    assert_eq!(got.as_f32().unwrap(), &[1.0, 1.0, 2.0]);
}
