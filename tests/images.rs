//! `conv2d` and `blur` against their sequential references on every
//! backend: fresh random images, u8 and f32, grey and with channels,
//! sizes across the GPU's 16×16 tiles and (on the chunked backend) bands
//! of rows; kernels of several shapes; sigmas small and large; and what a
//! bad job is told. PNG in and out through the command line.

mod common;

use anycore::backend::Backend;
use anycore::kernel::{Job, Kernel, Outputs, Task};
use anycore::tensor::{Tensor, TensorData};
use rand::Rng;
use rand::rngs::SmallRng;

use common::rng;

fn run(backend: &dyn Backend, task: &Task) -> Outputs {
    backend
        .run(task)
        .unwrap_or_else(|e| panic!("{} failed on {}: {e}", task.kernel(), common::name(backend)))
        .outputs
}

/// A random image: f32 in [0, 255) or u8.
fn image(rng: &mut SmallRng, shape: &[usize], u8s: bool) -> Tensor {
    let n = shape.iter().product();
    let data = if u8s {
        TensorData::U8((0..n).map(|_| rng.random()).collect())
    } else {
        TensorData::F32((0..n).map(|_| rng.random_range(0.0f32..255.0)).collect())
    };
    Tensor::new(shape.to_vec(), data)
}

/// f32 outputs within a relative norm of 1e-5 of the reference (sums in
/// another order); u8 outputs within 1 of it (a sum on the edge of .5
/// may round either way), and the same shape and dtype.
fn check(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(
        (got.dtype(), got.shape()),
        (want.dtype(), want.shape()),
        "{what}"
    );
    match (got.data(), want.data()) {
        (TensorData::F32(g), TensorData::F32(w)) => common::assert_close(what, g, w, 1e-5),
        (TensorData::U8(g), TensorData::U8(w)) => {
            for (i, (&g, &w)) in g.iter().zip(w).enumerate() {
                assert!(
                    g.abs_diff(w) <= 1,
                    "{what}: element {i} is {g}, expected {w}"
                );
            }
        }
        _ => panic!("{what}: unexpected dtypes"),
    }
}

/// Shapes across 16×16 tiles, with and without channels.
const SHAPES: [&[usize]; 7] = [
    &[1, 1],
    &[5, 3],
    &[16, 16],
    &[17, 33, 3],
    &[64, 31, 4],
    &[200, 129],
    &[3, 300, 2],
];

fn conv2d_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    for shape in SHAPES {
        for (kh, kw) in [(1, 1), (3, 3), (5, 5), (1, 7), (9, 3)] {
            let u8s = rng.random_bool(0.4);
            let k: Vec<f32> = (0..kh * kw).map(|_| rng.random_range(-1.0..1.0)).collect();
            let abs_k: Vec<f32> = k.iter().map(|w| w.abs()).collect();
            let img = image(&mut rng, shape, u8s);
            let job = |k: Vec<f32>| {
                let job = Job::new(Kernel::Conv2d)
                    .input("image", img.clone())
                    .input("kernel", Tensor::new(vec![kh, kw], TensorData::F32(k)));
                Task::new(job).unwrap()
            };
            let task = job(k);
            let what = format!(
                "conv2d {shape:?} u8 {u8s} kernel {kh}x{kw} on {}",
                common::name(backend)
            );
            let (got, want) = (run(backend, &task), task.reference());
            if u8s {
                check(&what, &got["out"], &want["out"]);
            } else {
                // Signed weights may cancel: the error of a sum in another
                // order is relative to Σ|w·x|, not to the sum.
                let scale = job(abs_k).reference();
                within_scale(&what, &got["out"], &want["out"], &scale["out"]);
            }
        }
    }
}

/// f32 outputs each within 1e-5 of `scale` (Σ|w·x| at that element) of
/// the reference.
fn within_scale(what: &str, got: &Tensor, want: &Tensor, scale: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let (g, w, s) = (
        got.as_f32().unwrap(),
        want.as_f32().unwrap(),
        scale.as_f32().unwrap(),
    );
    for (i, ((&g, &w), &s)) in g.iter().zip(w).zip(s).enumerate() {
        let bound = 1e-5 * f64::from(s) + 1e-6;
        assert!(
            (f64::from(g) - f64::from(w)).abs() <= bound,
            "{what}: element {i} is {g}, expected {w} (within {bound:e})"
        );
    }
}

fn blur_matches_reference(backend: &dyn Backend) {
    let mut rng = rng();
    for shape in SHAPES {
        for sigma in [0.5, 2.0, 5.0] {
            let u8s = rng.random_bool(0.4);
            let job = Job::new(Kernel::Blur)
                .input("image", image(&mut rng, shape, u8s))
                .param("sigma", sigma);
            let task = Task::new(job).unwrap();
            let what = format!(
                "blur {shape:?} u8 {u8s} sigma {sigma} on {}",
                common::name(backend)
            );
            let Task::Blur(b) = &task else {
                panic!("a blur")
            };
            // The GPU needs 2·radius + 1 rows in one binding: the chunked
            // backend's 64 KiB (16,384 values) may refuse, saying so.
            let rows = (2 * b.radius() + 1) * b.layout.row();
            match backend.run(&task) {
                Err(e)
                    if rows > 16_384
                        && e.to_string().contains("do not fit one storage binding") => {}
                got => {
                    let got = got.unwrap_or_else(|e| panic!("{what}: {e}")).outputs;
                    check(&what, &got["out"], &task.reference()["out"]);
                }
            }
        }
    }
    // An explicit radius, and a large image (bands on the chunked GPU).
    let job = Job::new(Kernel::Blur)
        .input("image", image(&mut rng, &[333, 257], false))
        .param("sigma", 1.3)
        .param("radius", 2);
    let task = Task::new(job).unwrap();
    check(
        "blur radius 2",
        &run(backend, &task)["out"],
        &task.reference()["out"],
    );
}

on_each_backend!(conv2d_matches_reference, blur_matches_reference);

/// The weights are SciPy's: a Gaussian over int(4σ + 0.5) taps each side,
/// summing to 1.
#[test]
fn blur_weights_are_scipys() {
    for (sigma, radius) in [(0.5, 2), (1.1, 4), (2.0, 8), (5.0, 20)] {
        let job = Job::new(Kernel::Blur)
            .input("image", Tensor::new(vec![1, 1], TensorData::F32(vec![1.0])))
            .param("sigma", sigma);
        let Task::Blur(b) = Task::new(job).unwrap() else {
            panic!("a blur")
        };
        assert_eq!(b.radius(), radius, "sigma {sigma}");
        let sum: f32 = b.weights.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6, "{sum}");
        let w = |x: f64| (-x * x / (2.0 * sigma * sigma)).exp();
        assert!((f64::from(b.weights[radius + 1] / b.weights[radius]) - w(1.0)).abs() < 1e-6);
    }
}

/// What a bad image job is told.
#[test]
fn bad_image_jobs_are_refused_naming_the_problem() {
    let f = |shape: Vec<usize>| {
        let n = shape.iter().product();
        Tensor::new(shape, TensorData::F32(vec![0.5; n]))
    };
    let cases: Vec<(Job, &str)> = vec![
        (
            Job::new(Kernel::Conv2d)
                .input("image", f(vec![4, 4]))
                .input("kernel", f(vec![2, 3])),
            "its sides must be odd",
        ),
        (
            Job::new(Kernel::Conv2d)
                .input("image", f(vec![4, 4]))
                .input("kernel", f(vec![51, 1])),
            "at most 49",
        ),
        (
            Job::new(Kernel::Conv2d)
                .input("image", f(vec![4]))
                .input("kernel", f(vec![3, 3])),
            "an image is [height, width] or [height, width, channels]",
        ),
        (
            Job::new(Kernel::Conv2d)
                .input(
                    "image",
                    Tensor::new(vec![2, 2], TensorData::U32(vec![1; 4])),
                )
                .input("kernel", f(vec![3, 3])),
            "input 'image' of conv2d is u32[2, 2], but it must be u8 or f32",
        ),
        (
            Job::new(Kernel::Blur).input("image", f(vec![4, 4])),
            "blur needs parameter 'sigma'",
        ),
        (
            Job::new(Kernel::Blur)
                .input("image", f(vec![4, 4]))
                .param("sigma", 0),
            "is not above 0",
        ),
        (
            Job::new(Kernel::Blur)
                .input("image", f(vec![4, 4]))
                .param("sigma", 5000),
            "more than 4096",
        ),
        (
            Job::new(Kernel::Blur)
                .input("image", f(vec![4, 4]))
                .param("sigma", 1)
                .param("radius", 1.5),
            "not a whole number",
        ),
    ];
    for (job, message) in cases {
        let err = Task::new(job.clone()).expect_err(message).to_string();
        assert!(err.contains(message), "{job:?}: {err}");
    }
}

/// A PNG in, blurred, and a PNG out that reads back as the same pixels
/// the .npy output holds.
#[test]
fn png_in_and_out_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rng();
    for channels in [1usize, 3, 4] {
        let (w, h) = (37u32, 23u32);
        let pixels: Vec<u8> = (0..(w * h) as usize * channels)
            .map(|_| rng.random())
            .collect();
        let input = dir.path().join(format!("in{channels}.png"));
        anycore::tensor::png::write(&input, w, h, channels as u8, &pixels).unwrap();
        let (png_out, npy_out) = (dir.path().join("out.png"), dir.path().join("out.npy"));
        for out in [&png_out, &npy_out] {
            let run = common::anycore(
                &[
                    "run",
                    "blur",
                    "-i",
                    &format!("image={}", input.display()),
                    "-p",
                    "sigma=3",
                    "-o",
                    &format!("out={}", out.display()),
                    "--backend",
                    "cpu",
                ],
                &[],
            );
            assert!(run.status.success(), "{}", common::stderr(&run));
        }
        let picture = anycore::tensor::png::read(&png_out).unwrap();
        let array = anycore::tensor::npy::read(&npy_out).unwrap();
        assert_eq!(picture.shape(), array.shape());
        assert_eq!(picture.data().as_bytes(), array.data().as_bytes());
        let want: &[usize] = if channels == 1 {
            &[23, 37]
        } else {
            &[23, 37, channels]
        };
        assert_eq!(array.shape(), want);
    }
    // A file that is not a PNG: exit 2, naming it.
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"not a picture").unwrap();
    let run = common::anycore(
        &[
            "run",
            "blur",
            "-i",
            &format!("image={}", junk.display()),
            "-p",
            "sigma=1",
            "-o",
            "out=/tmp/x.npy",
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(2), "{}", common::stderr(&run));
    assert!(
        common::stderr(&run).contains("junk.png"),
        "{}",
        common::stderr(&run)
    );
}

/// A row too long for one dispatch's grid is a clear error on the GPU (the
/// CPU takes it).
#[test]
fn rows_past_the_gpus_grid_are_refused_with_a_reason() {
    let Some(gpu) = common::gpu() else { return };
    let values = 65_535 * 64 + 1;
    let job = Job::new(Kernel::Blur)
        .input(
            "image",
            Tensor::new(vec![1, values], TensorData::F32(vec![0.5; values])),
        )
        .param("sigma", 0.5); // radius 2: five rows fit one binding, so the grid refuses
    let task = Task::new(job).unwrap();
    let err = gpu
        .run(&task)
        .expect_err("too wide for one grid")
        .to_string();
    assert!(
        err.contains("blur: the image needs a grid of") && err.contains("run it on the CPU"),
        "{err}"
    );
    let out = common::cpu().run(&task).unwrap().outputs;
    assert!(
        out["out"]
            .as_f32()
            .unwrap()
            .iter()
            .all(|&v| (v - 0.5).abs() < 1e-6)
    );
}
