//! `scan`, `sort` and `histogram` against their sequential references on
//! every backend: fresh random data, sizes across the GPU's tiles (2,048
//! elements), workgroups (256), the chunked backend's 16,384-element
//! bindings and the scan's one-workgroup pass (2,048 tiles), integer sums
//! that wrap, ties that test stability, and the floats that order or bin
//! awkwardly (signed zeros, infinities, NaN of both signs, values on bin
//! edges).

mod common;

use anycore::backend::{Backend, BackendKind};
use anycore::kernel::histogram::Histogram;
use anycore::kernel::scan::Scan;
use anycore::kernel::sort::{Payload, Sort};
use anycore::kernel::{Job, Kernel, Outputs, Task};
use anycore::tensor::{Tensor, TensorData};
use rand::Rng;
use rand::rngs::SmallRng;

use common::{random_f32, rng};

/// Lengths at the edges of the tiles, the workgroups and the chunked
/// backend's bindings.
const EDGES: [usize; 17] = [
    0, 1, 2, 3, 255, 256, 257, 2_047, 2_048, 2_049, 4_095, 4_097, 16_383, 16_384, 16_385, 65_537,
    1_048_579,
];

/// Past 2,048 tiles of 2,048: the scan's one-workgroup pass loops.
const MANY_TILES: usize = 2_048 * 2_048 + 3;

fn run(backend: &dyn Backend, task: &Task) -> Outputs {
    backend
        .run(task)
        .unwrap_or_else(|e| panic!("{} failed on {}: {e}", task.kernel(), common::name(backend)))
        .outputs
}

fn random_data(rng: &mut SmallRng, dtype: usize, n: usize) -> TensorData {
    match dtype {
        0 => TensorData::U32((0..n).map(|_| rng.random()).collect()),
        1 => TensorData::I32((0..n).map(|_| rng.random()).collect()),
        _ => TensorData::F32(random_f32(rng, n)),
    }
}

fn check_scan(backend: &dyn Backend, x: TensorData, inclusive: bool) {
    let n = x.len();
    let what = format!("scan {} n={n} inclusive={inclusive}", x.dtype());
    let running_abs: Vec<f64> = match &x {
        TensorData::F32(v) => v
            .iter()
            .scan(0.0f64, |s, &f| {
                *s += f64::from(f).abs();
                Some(*s)
            })
            .collect(),
        _ => Vec::new(),
    };
    let task = Task::Scan(Scan::new(x, inclusive).unwrap());
    let got = run(backend, &task);
    let want = task.reference();
    let (got, want) = (&got["out"], &want["out"]);
    assert_eq!(got.shape(), &[n], "{what}: shape");
    match (got.data(), want.data()) {
        (TensorData::F32(g), TensorData::F32(w)) => {
            for (i, (&g, &w)) in g.iter().zip(w).enumerate() {
                // Rounding grows with the running sum of |x| up to this
                // element (an exclusive sum stops one short; the bound is
                // the same).
                let bound = 1e-5 * running_abs[i] + 1e-30;
                let err = (f64::from(g) - f64::from(w)).abs();
                assert!(
                    err <= bound,
                    "{what}: element {i} is {g}, expected {w} (error {err:e} > {bound:e})"
                );
            }
        }
        (g, w) => {
            if let Some(i) =
                (0..n).find(|&i| g.as_bytes()[4 * i..4 * i + 4] != w.as_bytes()[4 * i..4 * i + 4])
            {
                panic!("{what}: element {i} differs from the sequential sum");
            }
        }
    }
}

fn scan_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    for (k, &n) in EDGES.iter().enumerate() {
        for dtype in 0..3 {
            check_scan(backend, random_data(&mut rng, dtype, n), k % 2 == 0);
        }
    }
    check_scan(backend, random_data(&mut rng, 2, MANY_TILES), true);
    check_scan(backend, random_data(&mut rng, 0, MANY_TILES), false);
}

/// Keys with ties (a few distinct values, so that stability shows), and
/// for f32 the values whose order is easy to get wrong.
fn random_keys(rng: &mut SmallRng, dtype: usize, n: usize) -> TensorData {
    match dtype {
        0 => TensorData::U32((0..n).map(|_| rng.random_range(0..50) << 26).collect()),
        1 => TensorData::I32(
            (0..n)
                .map(|_| rng.random_range(-25..25) * 3_000_001)
                .collect(),
        ),
        _ => {
            let special = [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, 1.5, -1.5];
            let nans = [
                f32::NAN.to_bits(),
                (-f32::NAN).to_bits(),
                0x7f80_0001,
                0xffc0_0123,
            ];
            TensorData::F32(
                (0..n)
                    .map(|_| match rng.random_range(0..10) {
                        0 => special[rng.random_range(0..special.len())],
                        1 => f32::from_bits(nans[rng.random_range(0..nans.len())]),
                        _ => rng.random_range(-4.0f32..4.0).round(),
                    })
                    .collect(),
            )
        }
    }
}

fn check_sort(backend: &dyn Backend, keys: TensorData, payload: Payload) {
    let what = format!("sort {} n={} {payload:?}", keys.dtype(), keys.len());
    let what = &what[..what.len().min(80)];
    let task = Task::Sort(Sort::new(keys, payload).unwrap());
    let got = run(backend, &task);
    let want = task.reference();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: output names"
    );
    for (name, w) in &want {
        let g = &got[name];
        assert_eq!(g.shape(), w.shape(), "{what}: shape of {name}");
        // Bit for bit: NaN payloads and signed zeros included.
        if let Some(i) = (0..w.len()).find(|&i| {
            g.data().as_bytes()[4 * i..4 * i + 4] != w.data().as_bytes()[4 * i..4 * i + 4]
        }) {
            panic!("{what}: {name}[{i}] differs from the stable sequential sort");
        }
    }
}

/// Sorts that fit one binding of every backend (the chunked GPU backend's
/// is 16,384 keys: a sort cannot be split).
fn sort_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    for &n in EDGES.iter().filter(|&&n| n <= 16_384) {
        for dtype in 0..3 {
            let keys = random_keys(&mut rng, dtype, n);
            let values =
                Payload::Values(TensorData::U32((0..n).map(|_| rng.random()).collect()).into());
            check_sort(backend, keys.clone(), values);
            check_sort(backend, keys.clone(), Payload::Indices);
            check_sort(backend, random_data(&mut rng, dtype, n), Payload::None);
        }
    }
}

fn check_histogram(backend: &dyn Backend, x: Vec<f32>, bins: u32, range: Option<(f64, f64)>) {
    let what = format!("histogram n={} bins={bins} range={range:?}", x.len());
    let task = Task::Histogram(Histogram::new(x, bins, range).unwrap());
    let got = run(backend, &task);
    let want = task.reference();
    let (g, w) = (got["out"].as_u32().unwrap(), want["out"].as_u32().unwrap());
    assert_eq!(g.len(), bins as usize, "{what}: bins");
    if let Some(i) = (0..g.len()).find(|&i| g[i] != w[i]) {
        panic!("{what}: bin {i} counts {}, expected {}", g[i], w[i]);
    }
}

/// Values in and around [lo, hi], some exactly on edges, NaN and
/// infinities among them.
fn histogram_data(rng: &mut SmallRng, n: usize, edges: &[f32]) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.random_range(0..20) {
            0 => edges[rng.random_range(0..edges.len())],
            1 => [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN][rng.random_range(0..4)],
            _ => rng.random_range(-3.0f32..3.0),
        })
        .collect()
}

fn histogram_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    // 4,096 bins fit a workgroup's own counters; 4,097 go to global ones.
    let cases = [
        (1, -1.0, 1.0),
        (7, -2.5, 0.1),
        (4_096, -3.0, 3.0),
        (4_097, -1.7, 2.2),
    ];
    for (k, &n) in EDGES.iter().enumerate() {
        let (bins, lo, hi) = cases[k % cases.len()];
        let edges = Histogram::new(Vec::new(), bins, Some((lo, hi)))
            .unwrap()
            .edges();
        check_histogram(
            backend,
            histogram_data(&mut rng, n, &edges),
            bins,
            Some((lo, hi)),
        );
    }
    // A range as wide as f32 goes (its width overflows f32), values spread
    // over it: each bin is still settled in a step or two.
    let wide: Vec<f32> = (0..10_007)
        .map(|_| 3.0e38 * rng.random_range(-1.0f32..1.0))
        .collect();
    check_histogram(backend, wide, 4_097, Some((-3.0e38, 3.0e38)));
    // A range too narrow for f32 to scale (its bins per unit overflow), of
    // normal numbers: bins found by search, on every backend.
    let (lo, bins) = (1.0e-37f32, 3_001);
    let width = 3.4e-40f32;
    let narrow = Histogram::new(Vec::new(), bins, Some((lo.into(), (lo + width).into()))).unwrap();
    assert!(narrow.scale.is_infinite());
    let edges = narrow.edges();
    let data = (0..30_011)
        .map(|_| lo + width * rng.random_range(-0.1f32..1.1))
        .chain(edges.iter().copied().step_by(7))
        .collect();
    check_histogram(backend, data, bins, Some((lo.into(), (lo + width).into())));
    // A range of subnormal numbers: the CPU bins it; a GPU, which may
    // flush subnormals to zero, declines it (the engine then runs it on
    // the CPU).
    let (lo, hi, bins) = (0.0, 1e-38, 3_001);
    let edges = Histogram::new(Vec::new(), bins, Some((lo, hi)))
        .unwrap()
        .edges();
    let tiny: Vec<f32> = histogram_data(&mut rng, 30_011, &edges)
        .into_iter()
        .map(|v| v * 1e-38)
        .chain(edges.iter().copied().step_by(7))
        .collect();
    let task = Task::Histogram(Histogram::new(tiny.clone(), bins, Some((lo, hi))).unwrap());
    match backend.run(&task) {
        Err(anycore::Error::Gpu(why)) if backend.kind() == BackendKind::Gpu => {
            assert!(why.contains("subnormal"), "{why}");
        }
        _ => check_histogram(backend, tiny, bins, Some((lo, hi))),
    }
    // The default range: x's own minimum and maximum.
    check_histogram(backend, random_f32(&mut rng, 100_003), 13, None);
    check_histogram(backend, vec![2.5; 999], 3, None);
}

on_each_backend!(
    scan_matches_reference,
    sort_matches_reference,
    histogram_matches_reference
);

/// Sorts of more keys than the chunked backend's binding, on the backends
/// that hold them: the CPU and the GPU with its real limits.
#[test]
fn large_sorts_match_reference() {
    let mut rng = rng();
    let n = 1_048_579;
    for backend in [
        Some(common::cpu() as &dyn Backend),
        common::gpu().map(|g| g as &dyn Backend),
    ]
    .into_iter()
    .flatten()
    {
        for dtype in 0..3 {
            let keys = random_data(&mut rng, dtype, n);
            check_sort(backend, keys, Payload::Indices);
        }
        let keys = random_keys(&mut rng, 2, n);
        check_sort(
            backend,
            keys,
            Payload::Values(TensorData::U32((0..n as u32).rev().collect()).into()),
        );
    }
}

/// A sort past one binding is refused on the GPU, saying why and where to
/// go instead; it does not run wrong.
#[test]
fn gpu_refuses_a_sort_past_one_binding() {
    let Some(gpu) = common::gpu_small_bindings() else {
        return;
    };
    let task = Task::Sort(Sort::new(TensorData::U32(vec![7; 16_385]), Payload::None).unwrap());
    let err = gpu.run(&task).unwrap_err().to_string();
    assert!(err.contains("sort") && err.contains("CPU"), "{err}");
}

/// Bad jobs are refused before anything runs, naming the input or
/// parameter and the problem.
#[test]
fn bad_jobs_name_the_problem() {
    let f32s = |n| Tensor::from_f32(vec![1.0; n]);
    let u32s = |n| Tensor::new(vec![n], TensorData::U32(vec![1; n]));
    let u8s = Tensor::new(vec![4], TensorData::U8(vec![1; 4]));
    let cases: Vec<(Job, &str)> = vec![
        (Job::new(Kernel::Scan).input("x", u8s.clone()), "'x'"),
        (
            Job::new(Kernel::Scan)
                .input("x", f32s(3))
                .param("inclusive", "yes"),
            "inclusive",
        ),
        (Job::new(Kernel::Sort).input("keys", u8s), "'keys'"),
        (
            Job::new(Kernel::Sort)
                .input("keys", u32s(3))
                .input("values", u32s(4)),
            "'values'",
        ),
        (
            Job::new(Kernel::Sort)
                .input("keys", u32s(3))
                .input("values", f32s(3)),
            "'values'",
        ),
        (
            Job::new(Kernel::Sort)
                .input("keys", u32s(3))
                .input("values", u32s(3))
                .param("indices", true),
            "not both",
        ),
        (
            Job::new(Kernel::Histogram)
                .input("x", f32s(3))
                .param("bins", 0),
            "'bins'",
        ),
        (
            Job::new(Kernel::Histogram)
                .input("x", f32s(3))
                .param("bins", 1 << 30),
            "'bins'",
        ),
        (
            Job::new(Kernel::Histogram)
                .input("x", f32s(3))
                .param("lo", 2)
                .param("hi", 1),
            "lo",
        ),
        (
            Job::new(Kernel::Histogram)
                .input("x", f32s(3))
                .param("lo", 2),
            "together",
        ),
        (
            Job::new(Kernel::Histogram)
                .input("x", f32s(3))
                .param("bins", 1000)
                .param("lo", 1)
                .param("hi", 1.00001),
            "too many bins",
        ),
        (
            Job::new(Kernel::Histogram)
                .input("x", f32s(3))
                .param("lo", "-1e39")
                .param("hi", 0),
            "too many bins",
        ),
        (
            Job::new(Kernel::Histogram)
                .input("x", f32s(3))
                .param("hi", "inf")
                .param("lo", 0),
            "'hi'",
        ),
        (
            Job::new(Kernel::Histogram).input("x", Tensor::from_f32(vec![1.0, f32::NAN])),
            "not finite",
        ),
        (Job::new(Kernel::Histogram).input("x", u32s(3)), "'x'"),
    ];
    for (job, needle) in cases {
        let what = format!("{job:?}");
        let err = Task::new(job).expect_err(&what[..what.len().min(200)]);
        assert!(err.is_user_error(), "{err}");
        assert!(
            err.to_string().contains(needle),
            "{err} (wanted '{needle}')"
        );
    }
}

/// An output the job does not give (`indices` without `indices=true`) is
/// refused with exit 2, naming it, on the command line and in a batch —
/// not skipped, and not a panic.
#[test]
fn an_output_the_job_does_not_give_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.npy");
    let tensor = Tensor::new(vec![3], TensorData::U32(vec![3, 1, 2]));
    anycore::tensor::npy::write(&keys, &tensor).unwrap();
    let out = dir.path().join("indices.npy");
    let (keys, out) = (keys.to_str().unwrap(), out.to_str().unwrap());
    let run = common::anycore(
        &[
            "run",
            "sort",
            "--backend",
            "cpu",
            "-i",
            &format!("keys={keys}"),
            "-o",
            &format!("indices={out}"),
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(2), "{}", common::stderr(&run));
    assert!(
        common::stderr(&run).contains("'indices'"),
        "{}",
        common::stderr(&run)
    );
    let jobs = dir.path().join("jobs.jsonl");
    let line = format!(
        r#"{{"id": "a", "kernel": "sort", "backend": "cpu", "inputs": {{"keys": "{keys}"}}, "outputs": {{"indices": "{out}"}}}}"#
    );
    std::fs::write(&jobs, line + "\n").unwrap();
    let results = dir.path().join("results.jsonl");
    let batch = common::anycore(
        &[
            "batch",
            jobs.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!batch.status.success());
    let outcome = std::fs::read_to_string(&results).unwrap();
    assert!(
        outcome.contains("'indices'") && outcome.contains("error"),
        "{outcome}"
    );
}

/// Inputs larger than the device's real storage-binding limit (128 MiB on
/// llvmpipe) are split, not refused: the scan carries its sum from chunk
/// to chunk, the histogram adds each chunk's counts. Skipped where that
/// limit is too large for this machine's memory.
#[test]
fn gpu_scans_and_counts_past_the_real_binding_limit() {
    let Some((gpu, n)) = common::gpu_past_binding_limit() else {
        return;
    };
    let mut rng = rng();
    check_scan(gpu, random_data(&mut rng, 0, n), true);
    check_histogram(gpu, random_f32(&mut rng, n), 100, Some((-1.0, 1.0)));
}
