//! `anycore serve` as a process: `run --server` against it, the README's
//! Python client against it, and SIGTERM ending it with exit 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anycore::kernel::random::random_tensor;
use anycore::kernel::{Job, Kernel, Task};
use anycore::tensor::{DType, npy};
use common::assert_close;

/// A running `anycore serve`, killed if a test fails before stopping it
/// (else it would outlive the test and hold its output pipes open).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The token the test server needs.
const TOKEN: &str = "test-token-5f3a";

/// Starts `anycore serve` on a free port (bodies up to 1 MiB, the token
/// [`TOKEN`] from a file) and returns it with its URL.
fn start_server() -> (Server, String) {
    start_server_with(None, &[])
}

/// [`start_server`], under `ulimit -v KIB` when given, with `extra`
/// arguments.
fn start_server_with(ulimit_kib: Option<u64>, extra: &[&str]) -> (Server, String) {
    let cache = std::env::temp_dir().join("anycore-test-cache");
    let token_file =
        std::env::temp_dir().join(format!("anycore-test-token-{}", std::process::id()));
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut command = match ulimit_kib {
        // `exec`: the server is the shell's process, so killing it works.
        Some(kib) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -v {kib} && exec \"$0\" \"$@\"")])
                .arg(env!("CARGO_BIN_EXE_anycore"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_anycore")),
    };
    let mut child = command
        .args(["serve", "--addr", "127.0.0.1:0", "--body-limit-mib", "1"])
        .args(extra)
        .arg("--token-file")
        .arg(&token_file)
        .env("ANYCORE_CACHE_DIR", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("anycore serve starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("serving on ")
                .nth(1)
                .map(|r| r.split_whitespace().next().unwrap().to_owned())
        })
        .expect("the server says where it listens");
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Server(child), url)
}

#[test]
fn run_with_server_matches_local_results_and_sigterm_exits_0() {
    let (mut server, url) = start_server();
    let dir = tempfile::tempdir().unwrap();
    let a = random_tensor(DType::F32, &[33, 17], 1).unwrap();
    let b = random_tensor(DType::F32, &[17, 9], 2).unwrap();
    npy::write(&dir.path().join("a.npy"), &a).unwrap();
    npy::write(&dir.path().join("b.npy"), &b).unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let remote = |token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_anycore"));
        command
            .args(["run", "matmul", "--server", &url, "--json"])
            .args([
                "-i",
                &format!("a={}", p("a.npy")),
                "-i",
                &format!("b={}", p("b.npy")),
            ])
            .args(["-o", &format!("out={}", p("c.npy"))])
            .env_remove("ANYCORE_TOKEN");
        if let Some(token) = token {
            command.env("ANYCORE_TOKEN", token);
        }
        command.output().unwrap()
    };
    // Without the token: the server's 401, as the user's error.
    let refused = remote(None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("token"),
        "{stderr}"
    );
    let out = remote(Some(TOKEN));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["outputs"]["out"]["shape"],
        serde_json::json!([33, 9])
    );
    let task = Task::new(Job::new(Kernel::Matmul).input("a", a).input("b", b)).unwrap();
    let got = npy::read(&dir.path().join("c.npy")).unwrap();
    assert_close(
        "remote matmul",
        got.as_f32().unwrap(),
        task.reference()["out"].as_f32().unwrap(),
        1e-5,
    );

    // The server's refusal of a job (here: over its 1 MiB body limit) is
    // the user's error: exit 2, with the server's reason.
    let big = random_tensor(DType::F32, &[400_000], 3).unwrap();
    npy::write(&dir.path().join("big.npy"), &big).unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_anycore"))
        .args([
            "run",
            "reduce",
            "--server",
            &url,
            "-i",
            &format!("x={}", p("big.npy")),
        ])
        .env("ANYCORE_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("413"), "{stderr}");

    // The README's Python client, where NumPy is there to check it.
    let has_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if has_numpy {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/client_example.py");
        let py = Command::new("python3")
            .arg(script)
            .arg(&url)
            .env("ANYCORE_TOKEN", TOKEN)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&py.stdout);
        assert!(
            py.status.success()
                && text.contains("equal to NumPy")
                && text.contains("its sum matches NumPy"),
            "{text}{}",
            String::from_utf8_lossy(&py.stderr)
        );
    }

    let kill = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = server.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM should drain and exit 0");
}

/// Serving beyond loopback without a token is refused before anything
/// starts (exit 2, saying how to give one).
#[test]
fn serving_beyond_loopback_needs_a_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_anycore"))
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env_remove("ANYCORE_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("without a token") && stderr.contains("--token-file"),
        "{stderr}"
    );
}

#[test]
fn run_with_an_unreachable_server_is_exit_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_anycore"))
        .args([
            "run",
            "mandelbrot",
            "--server",
            "http://127.0.0.1:9",
            "-p",
            "width=4",
            "-p",
            "height=4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// 4 GiB of address space: far less than the 8 GiB a 46000² `mandelbrot`
/// gives.
const ULIMIT_KIB: u64 = 4 << 20;

/// Memory the system refuses is an error, never an abort: `run` exits 1
/// saying so; the service answers 507 and goes on answering.
#[test]
fn memory_the_system_refuses_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("ulimit -v {ULIMIT_KIB} && exec \"$0\" \"$@\""),
        ])
        .arg(env!("CARGO_BIN_EXE_anycore"))
        .args(["run", "mandelbrot", "--backend", "cpu"])
        .args(["-p", "width=46000", "-p", "height=46000", "-o"])
        .arg(format!("out={}", dir.path().join("m.npy").display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the system refused"), "{stderr}");

    let (_server, url) = start_server_with(Some(ULIMIT_KIB), &["--memory-mib", "100000"]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let post = |job: &str| {
        let mut r = agent
            .post(format!("{url}/v1/jobs"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .send(job)
            .expect("answered");
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let (status, body) =
        post(r#"{"kernel": "mandelbrot", "params": {"width": 46000, "height": 46000}}"#);
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("out_of_memory"), "{body}");
    let (status, body) = post(
        r#"{"kernel": "reduce", "inputs": {"x": {"dtype": "i32", "shape": [2], "data": [4, 5]}}}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("[9]"), "{body}");
}
