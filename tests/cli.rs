//! The command line as a user drives it: `.npy` files in and out, JSON
//! reports, `devices`, and bad input answered with exit code 2 and a message
//! that names the problem.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use anycore::kernel::{Job, Kernel, Task};
use anycore::tensor::{Tensor, TensorData, npy};
use common::{anycore, assert_close, random_f32, rng, stderr};
use rand::Rng;

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Writes a random f32 matrix and returns its path and the tensor.
fn matrix(dir: &Path, name: &str, rows: usize, cols: usize) -> (PathBuf, Tensor) {
    let t = Tensor::new(
        vec![rows, cols],
        TensorData::F32(random_f32(&mut rng(), rows * cols)),
    );
    let path = dir.join(name);
    npy::write(&path, &t).unwrap();
    (path, t)
}

/// `run matmul` on one backend, checked against the reference.
fn matmul_via_cli(backend_args: &[&str], expect_backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (m, k, n) in [(1, 1, 1), (17, 33, 65), (513, 257, 129)] {
        let (a_path, a) = matrix(dir.path(), "a.npy", m, k);
        let (b_path, b) = matrix(dir.path(), "b.npy", k, n);
        let c_path = dir.path().join("c.npy");
        let (ia, ib, oc) = (
            format!("a={}", a_path.display()),
            format!("b={}", b_path.display()),
            format!("out={}", c_path.display()),
        );
        let mut args = vec!["run", "matmul", "-i", &ia, "-i", &ib, "-o", &oc, "--json"];
        args.extend_from_slice(backend_args);
        let report = json(&anycore(&args, &[]));
        assert_eq!(report["kernel"], "matmul");
        assert_eq!(report["backend"], expect_backend, "{report}");
        assert!(
            report["placement_reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
        );
        for phase in ["upload", "compute", "download", "total"] {
            assert!(report["timings_ms"][phase].as_f64().is_some(), "{report}");
        }
        assert_eq!(report["outputs"]["out"]["dtype"], "f32");
        assert_eq!(report["outputs"]["out"]["shape"], serde_json::json!([m, n]));

        let task = Task::new(Job::new(Kernel::Matmul).input("a", a).input("b", b)).unwrap();
        let want = &task.reference()["out"];
        let got = npy::read(&c_path).unwrap();
        assert_eq!(got.shape(), &[m, n]);
        assert_close(
            &format!("cli matmul {m}x{k}x{n}"),
            got.as_f32().unwrap(),
            want.as_f32().unwrap(),
            1e-5,
        );
    }
}

#[test]
fn run_matmul_on_cpu() {
    matmul_via_cli(&["--backend", "cpu"], "cpu");
}

#[test]
fn run_matmul_on_gpu() {
    if common::gpu().is_some() {
        matmul_via_cli(&["--backend", "gpu", "--allow-software-gpu"], "gpu");
    }
}

#[test]
fn reduce_reports_small_outputs_inline() {
    let dir = tempfile::tempdir().unwrap();
    let x: Vec<i32> = (0..1000).map(|i| (i * 7919) % 2001 - 1000).collect();
    let path = dir.path().join("x.npy");
    npy::write(
        &path,
        &Tensor::new(vec![x.len()], TensorData::I32(x.clone())),
    )
    .unwrap();
    let input = format!("x={}", path.display());
    let report = json(&anycore(
        &[
            "run",
            "reduce",
            "-i",
            &input,
            "-p",
            "op=max",
            "--json",
            "--backend",
            "cpu",
        ],
        &[],
    ));
    assert_eq!(report["outputs"]["out"]["dtype"], "i32");
    assert_eq!(
        report["outputs"]["out"]["data"][0],
        *x.iter().max().unwrap()
    );
}

#[test]
fn mandelbrot_writes_a_png_of_the_right_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.png");
    let out = format!("out={}", path.display());
    let report = json(&anycore(
        &[
            "run",
            "mandelbrot",
            "-p",
            "width=97",
            "-p",
            "height=61",
            "-o",
            &out,
            "--json",
        ],
        &[],
    ));
    assert_eq!(
        report["outputs"]["out"]["shape"],
        serde_json::json!([61, 97])
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!((info.width, info.height), (97, 61));
}

/// Hides every Vulkan driver from the loader. `VK_DRIVER_FILES` is the newer
/// name and wins over `VK_ICD_FILENAMES` where it is set, so both are set.
const NO_VULKAN_DRIVERS: &[(&str, &str)] = &[
    ("VK_ICD_FILENAMES", "/nonexistent.json"),
    ("VK_DRIVER_FILES", "/nonexistent.json"),
];

/// A job that needs no input files.
const TINY_JOB: &[&str] = &["run", "mandelbrot", "-p", "width=8", "-p", "height=8"];

#[test]
fn without_any_adapter_auto_runs_on_the_cpu_and_says_why() {
    let out = anycore(
        &[TINY_JOB, &["--json"]].concat(),
        &[NO_VULKAN_DRIVERS, &[("ANYCORE_ALLOW_SOFTWARE_GPU", "1")]].concat(),
    );
    let report = json(&out);
    assert_eq!(report["backend"], "cpu");
    let reason = report["placement_reason"].as_str().unwrap();
    assert!(reason.contains("no GPU adapter"), "{reason}");
}

#[test]
fn software_adapter_is_not_used_unless_allowed() {
    let report = json(&anycore(
        &[TINY_JOB, &["--json"]].concat(),
        &[("ANYCORE_ALLOW_SOFTWARE_GPU", "0")],
    ));
    // Whatever auto chose (a hardware GPU, or the CPU), it was not the
    // software adapter, and a CPU placement says why.
    assert!(
        !report["device"].as_str().unwrap().contains("llvmpipe"),
        "{report}"
    );
    if report["backend"] == "cpu" {
        let reason = report["placement_reason"].as_str().unwrap();
        assert!(
            !reason.is_empty() && !reason.contains("allowed by"),
            "{reason}"
        );
    }
}

#[test]
fn backend_gpu_without_adapter_is_exit_2_with_advice() {
    let out = anycore(
        &[TINY_JOB, &["--backend", "gpu"]].concat(),
        NO_VULKAN_DRIVERS,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains("--backend gpu needs a GPU") && msg.contains("install"),
        "{msg}"
    );
}

#[test]
fn devices_lists_adapters_and_the_cpu_pool() {
    let report = json(&anycore(
        &["devices", "--json", "--allow-software-gpu"],
        &[],
    ));
    // Named as the service's /v1/devices names them.
    assert!(
        report["cpu"].as_str().unwrap().starts_with("rayon pool, "),
        "{report}"
    );
    assert!(report.get("gpu").is_some(), "{report}");
    let adapters = report["adapters"].as_array().unwrap();
    if common::gpu().is_some() {
        assert!(!adapters.is_empty(), "{report}");
        let a = &adapters[0];
        for key in ["name", "backend", "device_type", "driver", "used_by_auto"] {
            assert!(!a[key].is_null(), "missing {key}: {report}");
        }
        assert!(
            a["limits"]["max_storage_buffer_binding_size"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    let text = anycore(&["devices"], &[]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("--backend auto uses"));
}

/// Runs a command that must fail with exit code 2 and a message containing
/// every one of `needles`.
fn assert_bad_input(args: &[&str], needles: &[&str]) {
    let out = anycore(args, &[]);
    let msg = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {msg}");
    for needle in needles {
        assert!(msg.contains(needle), "{args:?}: '{needle}' not in: {msg}");
    }
    assert!(!msg.contains("panicked"), "{args:?}: {msg}");
}

#[test]
fn bad_input_is_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let (a34, _) = matrix(dir.path(), "a34.npy", 3, 4);
    let (b52, _) = matrix(dir.path(), "b52.npy", 5, 2);
    std::fs::write(p("text.npy"), "just text").unwrap();
    npy::write(
        &dir.path().join("ints.npy"),
        &Tensor::new(vec![3], TensorData::I32(vec![1, 2, 3])),
    )
    .unwrap();
    let a34 = format!("a={}", a34.display());
    let b52 = format!("b={}", b52.display());
    let missing = format!("x={}", p("missing.npy"));
    let text = format!("x={}", p("text.npy"));
    let ints = format!("x={}", p("ints.npy"));
    let y_ints = format!("y={}", p("ints.npy"));

    assert_bad_input(&["run", "nosuch"], &["unknown kernel 'nosuch'", "matmul"]);
    assert_bad_input(
        &["run", "axpy", "-i", &missing, "-i", &y_ints],
        &["missing.npy", "cannot open"],
    );
    assert_bad_input(
        &["run", "axpy", "-i", &text, "-i", &y_ints],
        &["text.npy", "not a valid .npy"],
    );
    assert_bad_input(
        &["run", "axpy", "-i", &ints, "-i", &y_ints],
        &["input 'x' of axpy is i32[3]", "f32"],
    );
    assert_bad_input(
        &["run", "matmul", "-i", &a34, "-i", &b52],
        &["a's columns (4) must equal b's rows (5)"],
    );
    assert_bad_input(&["run", "matmul", "-i", &a34], &["matmul needs input 'b'"]);
    assert_bad_input(
        &["run", "axpy", "-i", "x"],
        &["-i expects NAME=FILE.npy, got 'x'"],
    );
    assert_bad_input(
        &["run", "matmul", "-i", "q=a.npy"],
        &["unknown input 'q' for matmul"],
    );
    assert_bad_input(
        &[
            "run",
            "mandelbrot",
            "-p",
            "width=10",
            "-p",
            "height=10",
            "-p",
            "zoom=2",
        ],
        &["unknown parameter 'zoom'", "max_iter"],
    );
    assert_bad_input(
        &["run", "mandelbrot", "-p", "width=ten", "-p", "height=10"],
        &["parameter 'width' of mandelbrot: 'ten'"],
    );
    assert_bad_input(
        &["run", "mandelbrot", "-p", "height=10"],
        &["needs parameter 'width'"],
    );
    assert_bad_input(
        &["run", "reduce", "-i", &ints, "-p", "op=median"],
        &["'median' is not one of sum, min, max"],
    );
    assert_bad_input(
        &[
            "run",
            "mandelbrot",
            "-p",
            "width=4",
            "-p",
            "height=4",
            "-o",
            "img=x.npy",
        ],
        &["unknown output 'img'"],
    );
    assert_bad_input(
        &["run", "matmul", "-i", &a34, "-i", &b52, "-o", "out=c.png"],
        &["only mandelbrot"],
    );
    assert_bad_input(&["run", "axpy", "--backend", "tpu"], &["tpu"]);
}

/// `anycore kernels` lists every kernel with its inputs, parameters and
/// outputs, as text and as JSON; one kernel by name; an unknown name is
/// bad usage (exit 2).
#[test]
fn kernels_lists_the_catalog() {
    let out = anycore(&["kernels"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for kernel in Kernel::ALL {
        let sig = kernel.signature();
        assert!(text.contains(kernel.name()), "{kernel} missing:\n{text}");
        for p in sig.params {
            assert!(
                text.contains(&format!("-p {}", p.name)),
                "{kernel} {}:\n{text}",
                p.name
            );
        }
    }

    let out = anycore(&["kernels", "--json"], &[]);
    let all = json(&out);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = Kernel::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names, want);

    let out = anycore(&["kernels", "mandelbrot", "--json"], &[]);
    let one = json(&out);
    assert_eq!(one["name"], "mandelbrot");
    assert_eq!(one["params"][0]["name"], "width");
    assert!(one["params"][0]["default"].is_null(), "width is required");
    assert!(
        one["example"]
            .as_str()
            .unwrap()
            .starts_with("anycore run mandelbrot")
    );

    let out = anycore(&["kernels", "nope"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown kernel 'nope'"),
        "{}",
        stderr(&out)
    );
}

/// The README's kernel table names every kernel in the catalog.
#[test]
fn readme_kernel_table_names_every_kernel() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for kernel in Kernel::ALL {
        assert!(
            readme
                .lines()
                .any(|l| l.starts_with(&format!("| `{}` |", kernel.name()))),
            "README.md's kernel table has no row for {kernel}"
        );
    }
}

/// The defaults `anycore kernels` documents are the ones validation
/// applies: a job that leaves a parameter out builds the same task as one
/// that passes the documented default.
#[test]
fn documented_defaults_are_the_applied_ones() {
    let mut rng = rng();
    for kernel in Kernel::ALL {
        let base = || {
            let mut job = Job::new(kernel);
            for a in kernel.signature().inputs.iter().filter(|a| !a.optional) {
                let t = match (kernel, a.name) {
                    (Kernel::Matmul, _) => {
                        Tensor::new(vec![2, 2], TensorData::F32(vec![0.5, -1.0, 2.0, 0.25]))
                    }
                    _ => Tensor::from_f32(vec![0.5, -1.0, 2.0]),
                };
                job = job.input(a.name, t);
            }
            for p in kernel
                .signature()
                .params
                .iter()
                .filter(|p| p.default.is_none())
            {
                job = job.param(p.name, 7);
            }
            job
        };
        for p in kernel.signature().params {
            let Some(default) = p.default else { continue };
            // Defaults computed from the data (histogram's lo = min(x)) are
            // tested with their kernel.
            if default.contains('(') {
                continue;
            }
            let implicit = Task::new(base()).unwrap();
            let explicit = Task::new(base().param(p.name, default)).unwrap();
            assert_eq!(
                format!("{implicit:?}"),
                format!("{explicit:?}"),
                "{kernel}: '{}' documented as {default}",
                p.name
            );
            // And a different value does change the task (the test can fail).
            let other = if default == "sum" {
                "max".to_owned()
            } else if default == "false" {
                "true".to_owned()
            } else {
                format!("{}", rng.random_range(3..9))
            };
            let changed = Task::new(base().param(p.name, &other)).unwrap();
            assert_ne!(
                format!("{implicit:?}"),
                format!("{changed:?}"),
                "{kernel}: '{}'",
                p.name
            );
        }
    }
}

/// An output path that cannot be written as asked — not a `.npy`, or in a
/// folder that does not exist — is refused with exit 2 before the job
/// runs, naming the output.
#[test]
fn unwritable_output_paths_are_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    npy::write(&x, &Tensor::from_f32(vec![1.0, 2.0])).unwrap();
    let input = format!("x={}", x.display());
    for (out, says) in [
        (dir.path().join("out.txt"), "end the path in .npy"),
        (
            dir.path().join("no-such-dir").join("out.npy"),
            "does not exist",
        ),
    ] {
        let output = format!("out={}", out.display());
        let result = anycore(
            &[
                "run",
                "scan",
                "-i",
                &input,
                "-o",
                &output,
                "--backend",
                "cpu",
            ],
            &[],
        );
        assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
        let err = stderr(&result);
        assert!(err.contains("output 'out'") && err.contains(says), "{err}");
        assert!(!out.exists());
    }
}

/// A closed stdout (`anycore kernels | head`) ends the process as it ends
/// other Unix tools, not with a panic.
#[test]
#[cfg(target_os = "linux")]
fn a_closed_stdout_is_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // every write now fails with EPIPE
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anycore"))
        .arg("kernels")
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        out.status.signal(),
        Some(13),
        "ended by SIGPIPE: {:?}",
        out.status
    );
}

/// What a new user's try of the command line found, each an exit 2 that
/// says what to do: a server address without its scheme, a software GPU
/// asked of a job sent to a server, a batch with no jobs or no concurrency.
#[test]
fn careless_command_lines_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    npy::write(&dir.path().join("x.npy"), &Tensor::from_f32(vec![1.0, 2.5])).unwrap();
    let x = format!("x={}", p("x.npy"));
    assert_bad_input(
        &["run", "reduce", "-i", &x, "--server", "127.0.0.1:7878"],
        &["give the scheme too", "http://127.0.0.1:7878"],
    );
    assert_bad_input(
        &[
            "run",
            "reduce",
            "-i",
            &x,
            "--server",
            "http://127.0.0.1:1",
            "--allow-software-gpu",
        ],
        &["--allow-software-gpu", "the server's"],
    );
    std::fs::write(p("empty.jsonl"), "\n  \n").unwrap();
    assert_bad_input(
        &["batch", &p("empty.jsonl")],
        &["empty.jsonl", "holds no jobs"],
    );
    std::fs::write(
        p("one.jsonl"),
        r#"{"kernel": "mandelbrot", "params": {"width": 4, "height": 4}}"#,
    )
    .unwrap();
    assert_bad_input(
        &["batch", &p("one.jsonl"), "--concurrency", "0"],
        &["--concurrency", "0"],
    );
}
