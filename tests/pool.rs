//! Jobs through NATS JetStream: a real `nats-server -js` on a free
//! loopback port with a temporary store, `anycore worker` processes, and
//! `anycore batch --nats` as the front. Skipped where nats-server is not
//! installed, unless `ANYCORE_REQUIRE_NATS=1` (CI sets it;
//! `scripts/install-deps.sh --nats` installs it).

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anycore::kernel::random::random_tensor;
use anycore::kernel::{Job, Kernel, Task};
use anycore::tensor::{DType, Tensor, TensorData, npy};
use serde_json::{Value, json};

/// A nats-server with JetStream, stopped on drop.
struct Nats {
    child: Child,
    url: String,
    port: u16,
    store: tempfile::TempDir,
}

impl Nats {
    /// Starts one, or `None` (skip) where nats-server is missing.
    fn start() -> Option<Nats> {
        if Command::new("nats-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("ANYCORE_REQUIRE_NATS").as_deref() != Ok("1"),
                "ANYCORE_REQUIRE_NATS=1 but nats-server is not installed \
                 (scripts/install-deps.sh --nats)"
            );
            eprintln!("skipping: nats-server not found");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = tempfile::tempdir().unwrap();
        Some(Nats {
            child: Nats::spawn(port, store.path()),
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store,
        })
    }

    /// A nats-server on `port` keeping its streams in `store`, once it
    /// listens.
    fn spawn(port: u16, store: &Path) -> Child {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Kills the server (SIGKILL: no clean shutdown) and starts it again
    /// on the same port and store.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Nats::spawn(self.port, self.store.path());
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `anycore worker` process, killed on drop; its stderr in a file.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    /// Starts a worker named `name` with `extra` arguments (2 s ack wait,
    /// 2 deliveries at most: the tests' consumers) and waits until it is
    /// pulling.
    fn start(nats: &Nats, dir: &Path, name: &str, extra: &[&str], envs: &[(&str, &str)]) -> Worker {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_anycore"))
            .args([
                "worker",
                "--nats",
                &nats.url,
                "--name",
                name,
                "--ack-wait-s",
                "2",
            ])
            .args(["--max-deliver", "2"])
            .args(extra)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let worker = Worker { child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !worker.text().contains("takes") {
            assert!(
                Instant::now() < deadline,
                "worker {name} did not start: {}",
                worker.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        worker
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it with SIGTERM (it finishes what it holds) and returns how
    /// many jobs it ran.
    fn stop(mut self) -> u64 {
        // SAFETY: kill(2) with a live child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "worker did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = self.text();
        let ran = text
            .split("ran ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok());
        ran.unwrap_or_else(|| panic!("no summary in the worker's log: {text}"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `anycore batch --nats` over `lines`; its output and the result
/// lines in order.
fn batch(url: &str, dir: &Path, lines: &[Value]) -> (Output, Vec<Value>) {
    let jobs = dir.join("jobs.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&jobs, text.join("\n")).unwrap();
    let results = dir.join("results.jsonl");
    let out = common::anycore(
        &[
            "batch",
            jobs.to_str().unwrap(),
            "--nats",
            url,
            "--concurrency",
            "16",
            "--results",
            results.to_str().unwrap(),
        ],
        &[],
    );
    let results = std::fs::read_to_string(&results)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, results)
}

/// `{"random": …}` as a batch line takes it, and the same tensor here.
fn random(dtype: &str, n: usize, seed: u64) -> (Value, Tensor) {
    let tensor = random_tensor(DType::from_name(dtype).unwrap(), &[n], seed).unwrap();
    (
        json!({"random": {"dtype": dtype, "shape": [n], "seed": seed}}),
        tensor,
    )
}

/// A job's output `out` by the sequential reference.
fn reference(job: Job) -> Tensor {
    Task::new(job).unwrap().reference().remove("out").unwrap()
}

/// Asserts an output equals the reference: floats by relative norm (the
/// same kernels, maybe summed in another order), the rest exactly.
fn assert_same(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    match (got.data(), want.data()) {
        (TensorData::F32(g), TensorData::F32(w)) => common::assert_close(what, g, w, 1e-5),
        (g, w) => assert!(g == w, "{what}: differs from the reference"),
    }
}

#[test]
fn five_hundred_mixed_jobs_through_two_workers_are_right_and_each_runs_once() {
    let Some(nats) = Nats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let workers = [
        Worker::start(&nats, dir.path(), "w1", &["--backend", "cpu"], &[]),
        Worker::start(
            &nats,
            dir.path(),
            "w2",
            &["--backend", "cpu", "--concurrency", "2"],
            &[],
        ),
    ];
    let mut lines = Vec::new();
    let mut wants = Vec::new();
    for i in 0..500u64 {
        let n = 1 + (i as usize * 37) % 5000;
        let out = format!("out{i}.npy");
        let (line, job) = match i % 4 {
            0 => {
                let ((xj, x), (yj, y)) = (random("f32", n, i), random("f32", n, i + 1000));
                let line = json!({"kernel": "axpy", "inputs": {"x": xj, "y": yj}, "params": {"a": 0.5}, "outputs": {"out": out}});
                (
                    line,
                    Job::new(Kernel::Axpy)
                        .input("x", x)
                        .input("y", y)
                        .param("a", 0.5),
                )
            }
            1 => {
                let (xj, x) = random("i32", n, i);
                let line = json!({"kernel": "reduce", "inputs": {"x": xj}, "params": {"op": "max"}, "outputs": {"out": out}});
                (
                    line,
                    Job::new(Kernel::Reduce).input("x", x).param("op", "max"),
                )
            }
            2 => {
                let (xj, x) = random("u32", n, i);
                let line = json!({"kernel": "scan", "inputs": {"x": xj}, "outputs": {"out": out}});
                (line, Job::new(Kernel::Scan).input("x", x))
            }
            _ => {
                let (xj, x) = random("f32", n, i);
                let line = json!({"kernel": "map", "inputs": {"x": xj}, "params": {"expr": "x * x - 1"}, "outputs": {"out": out}});
                (
                    line,
                    Job::new(Kernel::Map)
                        .input("x", x)
                        .param("expr", "x * x - 1"),
                )
            }
        };
        lines.push(line);
        wants.push(reference(job));
    }
    // And a pipeline's line, run as one unit by one worker.
    let (xj, x) = random("f32", 4097, 9);
    lines.push(json!({"id": "piped", "steps": [
        {"name": "s", "kernel": "scan", "inputs": {"x": xj}},
        {"name": "r", "kernel": "reduce", "params": {"op": "max"},
         "inputs": {"x": {"step": "s", "output": "out"}}}],
        "outputs": {"top": {"step": "r", "output": "out", "path": "piped.npy"}}}));
    let scanned = reference(Job::new(Kernel::Scan).input("x", x));
    let piped = reference(
        Job::new(Kernel::Reduce)
            .input("x", scanned)
            .param("op", "max"),
    );
    let (out, results) = batch(&nats.url, dir.path(), &lines);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(results.len(), 501);
    assert_eq!(results[500]["id"], "piped", "{}", results[500]);
    assert_eq!(results[500]["status"], "ok", "{}", results[500]);
    let got = npy::read(&dir.path().join("piped.npy")).unwrap();
    assert_same("the pipeline's line", &got, &piped);
    for (i, (result, want)) in results.iter().zip(&wants).enumerate() {
        assert_eq!(result["status"], "ok", "{result}");
        assert_eq!(result["attempt"], 1, "{result}");
        let got = npy::read(&dir.path().join(format!("out{i}.npy"))).unwrap();
        assert_same(&format!("job {i}"), &got, want);
    }
    let ran: u64 = workers.into_iter().map(Worker::stop).sum();
    assert_eq!(ran, 501, "jobs run in all, over both workers");
}

#[test]
fn a_job_whose_worker_is_killed_is_finished_by_another() {
    let Some(nats) = Nats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let doomed = Worker::start(
        &nats,
        dir.path(),
        "doomed",
        &["--backend", "cpu", "--concurrency", "1"],
        &[],
    );
    // A few seconds of work on two cores.
    let line = json!({"id": "slow", "kernel": "mandelbrot",
        "params": {"width": 3000, "height": 3000, "max_iter": 3000},
        "outputs": {"out": "m.npy"}});
    let front = {
        let (url, dir) = (nats.url.clone(), dir.path().to_owned());
        std::thread::spawn(move || batch(&url, &dir, &[line]))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !doomed.text().contains("started job") {
        assert!(
            Instant::now() < deadline,
            "the job never started: {}",
            doomed.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(doomed); // SIGKILL mid-job: no result, no acknowledgement
    let rescuer = Worker::start(&nats, dir.path(), "rescuer", &["--backend", "cpu"], &[]);
    let (out, results) = front.join().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(results[0]["worker"], "rescuer", "{}", results[0]);
    assert_eq!(results[0]["attempt"], 2, "{}", results[0]);
    // The rayon implementation here (the sequential one takes minutes).
    let want = Task::new(
        Job::new(Kernel::Mandelbrot)
            .param("width", 3000)
            .param("height", 3000)
            .param("max_iter", 3000),
    )
    .unwrap()
    .run_cpu()
    .remove("out")
    .unwrap();
    assert_same(
        "mandelbrot",
        &npy::read(&dir.path().join("m.npy")).unwrap(),
        &want,
    );
    assert_eq!(rescuer.stop(), 1);
}

/// Whether this machine has a GPU adapter for the tests (llvmpipe will
/// do); a GPU test without one is skipped, or fails under
/// `ANYCORE_REQUIRE_GPU_TESTS=1`.
fn has_gpu() -> bool {
    let found = common::gpu().is_some();
    assert!(
        found || !common::gpu_required(),
        "ANYCORE_REQUIRE_GPU_TESTS=1 but no GPU adapter"
    );
    found
}

#[test]
fn bad_input_fails_at_once_and_a_failing_job_is_dead_lettered() {
    let Some(nats) = Nats::start() else { return };
    if !has_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Every GPU job it runs panics: each delivery fails.
    let worker = Worker::start(
        &nats,
        dir.path(),
        "faulty",
        &["--allow-software-gpu"],
        &[("ANYCORE_GPU_FAULTS", "panic@1,panic@2,panic@3")],
    );
    let (xj, _) = random("f32", 1000, 1);
    let lines = [
        json!({"id": "bad", "kernel": "axpy", "inputs": {"x": xj.clone()}, "outputs": {"out": "bad.npy"}}),
        json!({"id": "doomed", "kernel": "axpy", "backend": "gpu", "inputs": {"x": xj.clone(), "y": xj}}),
    ];
    let (out, results) = batch(&nats.url, dir.path(), &lines);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let error = |i: usize| results[i]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error(0).contains("needs input 'y'"), "{}", results[0]);
    assert!(!dir.path().join("bad.npy").exists());
    assert!(
        error(1).contains("dead-lettered")
            && error(1).contains("2 attempts")
            && error(1).contains("panicked"),
        "{}",
        results[1]
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dead = runtime.block_on(async {
        let pool = anycore::pool::Pool::connect(anycore::pool::PoolConfig::new(&nats.url)).await?;
        pool.dead_lettered().await
    });
    assert_eq!(
        dead.unwrap(),
        1,
        "the dead-letter stream holds the failing job only"
    );
    // The bad input ran nowhere; the failing job twice, on the GPU.
    assert_eq!(worker.stop(), 0);
}

#[test]
fn gpu_only_jobs_wait_for_a_worker_with_a_gpu() {
    let Some(nats) = Nats::start() else { return };
    if !has_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cpu = Worker::start(&nats, dir.path(), "cpu-only", &["--backend", "cpu"], &[]);
    let (xj, x) = random("f32", 5000, 7);
    let lines = [
        json!({"id": "g", "kernel": "axpy", "backend": "gpu", "inputs": {"x": xj.clone(), "y": xj.clone()}, "params": {"a": 3}, "outputs": {"out": "g.npy"}}),
        json!({"id": "any", "kernel": "reduce", "inputs": {"x": xj}, "outputs": {"out": "r.npy"}}),
    ];
    let front = {
        let (url, dir) = (nats.url.clone(), dir.path().to_owned());
        std::thread::spawn(move || batch(&url, &dir, &lines))
    };
    // The CPU worker takes the job for anywhere, not the GPU one.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("r.npy").exists() {
        assert!(
            Instant::now() < deadline,
            "the job for any worker never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!front.is_finished(), "the GPU job ran without a GPU worker");
    let gpu = Worker::start(
        &nats,
        dir.path(),
        "with-gpu",
        &["--allow-software-gpu"],
        &[],
    );
    let (out, results) = front.join().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(results[0]["worker"], "with-gpu", "{}", results[0]);
    assert_eq!(results[0]["backend"], "gpu", "{}", results[0]);
    assert_eq!(results[1]["worker"], "cpu-only", "{}", results[1]);
    let want = reference(
        Job::new(Kernel::Axpy)
            .input("x", x.clone())
            .input("y", x)
            .param("a", 3),
    );
    assert_same(
        "gpu axpy",
        &npy::read(&dir.path().join("g.npy")).unwrap(),
        &want,
    );
    assert_eq!((cpu.stop(), gpu.stop()), (1, 1));
}

#[test]
fn large_arrays_travel_through_the_object_store() {
    let Some(nats) = Nats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(&nats, dir.path(), "w", &["--backend", "cpu"], &[]);
    // 64 MiB in (two 32 MiB arrays), 32 MiB out: far past max_payload.
    let n = 8 << 20;
    let ((xj, x), (yj, y)) = (random("f32", n, 11), random("f32", n, 12));
    let line = json!({"kernel": "axpy", "inputs": {"x": xj, "y": yj}, "params": {"a": -2}, "outputs": {"out": "out.npy"}});
    let (out, results) = batch(&nats.url, dir.path(), &[line]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(results[0]["status"], "ok");
    let got = npy::read(&dir.path().join("out.npy")).unwrap();
    let (x, y, got) = (
        x.as_f32().unwrap(),
        y.as_f32().unwrap(),
        got.as_f32().unwrap(),
    );
    assert_eq!(got.len(), n);
    if let Some(i) = (0..n).find(|&i| got[i] != -2.0 * x[i] + y[i]) {
        panic!("element {i}: {} from x {} y {}", got[i], x[i], y[i]);
    }
    assert_eq!(worker.stop(), 1);
}

#[test]
fn a_job_whose_workers_die_on_every_attempt_is_dead_lettered_unrun() {
    let Some(nats) = Nats::start() else { return };
    if !has_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let slow = [("ANYCORE_GPU_FAULTS", "slow=20000")];
    let line = json!({"id": "cursed", "kernel": "reduce", "backend": "gpu",
        "inputs": {"x": random("f32", 100, 3).0}});
    let front = {
        let (url, dir) = (nats.url.clone(), dir.path().to_owned());
        std::thread::spawn(move || batch(&url, &dir, &[line]))
    };
    // Each of the two attempts (--max-deliver 2) dies with its worker.
    for name in ["first", "second"] {
        let worker = Worker::start(&nats, dir.path(), name, &["--allow-software-gpu"], &slow);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !worker.text().contains("started job") {
            assert!(
                Instant::now() < deadline,
                "{name} never started the job: {}",
                worker.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(worker); // SIGKILL
    }
    let last = Worker::start(&nats, dir.path(), "last", &["--allow-software-gpu"], &[]);
    let (out, results) = front.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let error = results[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("dead-lettered by last") && error.contains("after 2 attempts"),
        "{error}"
    );
    assert_eq!(last.stop(), 0, "the third delivery is not run");
}

/// An `anycore serve --nats` process, killed on drop; its address read
/// from its log.
struct Front {
    child: Child,
    url: String,
}

impl Front {
    fn start(nats: &Nats, dir: &Path, extra: &[&str]) -> Front {
        let log = dir.join("front.log");
        let child = Command::new(env!("CARGO_BIN_EXE_anycore"))
            .args(["serve", "--addr", "127.0.0.1:0", "--nats", &nats.url])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("serving on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "the front did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        Front { child, url }
    }

    /// A request (a body is posted as JSON); the status, the Retry-After
    /// header and the body.
    fn call(&self, path: &str, body: Option<&Value>) -> (u16, Option<String>, String) {
        http(&format!("{}{path}", self.url), body)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url`, or POST `body` to it as JSON; the status, the Retry-After
/// header and the body (within a minute).
fn http(url: &str, body: Option<&Value>) -> (u16, Option<String>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = match body {
        Some(b) => agent
            .post(url)
            .header("content-type", "application/json")
            .send(b.to_string()),
        None => agent.get(url).call(),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{url}: {e}"));
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.body_mut().read_to_string().unwrap();
    (response.status().as_u16(), retry, text)
}

/// An input array as the HTTP API takes it, inline.
fn inline(t: &Tensor) -> Value {
    let data: Vec<f64> = match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
    };
    json!({"dtype": t.dtype().name(), "shape": t.shape(), "data": data})
}

/// An output array of a report, inline, as a tensor of `like`'s type.
fn output(report: &Value, like: &Tensor) -> Tensor {
    let out = &report["outputs"]["out"];
    let shape: Vec<usize> = serde_json::from_value(out["shape"].clone()).unwrap();
    let data: Vec<f64> = serde_json::from_value(out["data"].clone()).unwrap();
    let data = match like.data() {
        TensorData::F32(_) => TensorData::F32(data.iter().map(|&x| x as f32).collect()),
        TensorData::U32(_) => TensorData::U32(data.iter().map(|&x| x as u32).collect()),
        TensorData::I32(_) => TensorData::I32(data.iter().map(|&x| x as i32).collect()),
        TensorData::U8(_) => TensorData::U8(data.iter().map(|&x| x as u8).collect()),
    };
    Tensor::new(shape, data)
}

/// Polls a `wait=false` job until it ends (within a minute); its body.
fn poll(front: &Front, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, text) = front.call(&format!("/v1/jobs/{id}"), None);
        if status == 200 {
            let body: Value = serde_json::from_str(&text).unwrap();
            if body["status"] != "queued" {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not end: {status} {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A metric's value in Prometheus text (the first sample of `name` whose
/// labels contain `labels`).
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}{{{labels}}} in:\n{text}"))
}

#[test]
fn the_http_front_and_the_library_run_jobs_through_the_pool() {
    let Some(nats) = Nats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port().to_string();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let worker = Worker::start(
        &nats,
        dir.path(),
        "w1",
        &[
            "--backend",
            "cpu",
            "--metrics-addr",
            &metrics_addr,
            "--shutdown-timeout-s",
            "1",
        ],
        &[],
    );
    let front = Front::start(&nats, dir.path(), &[]);

    // Waited for: the report names the worker and the attempt.
    let (x, y) = (random("f32", 4099, 1).1, random("f32", 4099, 2).1);
    let job = json!({"kernel": "axpy", "params": {"a": 1.5},
        "inputs": {"x": inline(&x), "y": inline(&y)}});
    let (status, _, text) = front.call("/v1/jobs", Some(&job));
    assert_eq!(status, 200, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["worker"]["name"], "w1", "{report}");
    assert_eq!(report["attempt"], 1);
    assert_eq!(report["backend"], "cpu");
    assert_eq!(report["id"].as_str().map(str::len), Some(32), "{report}");
    let want = reference(
        Job::new(Kernel::Axpy)
            .input("x", x)
            .input("y", y)
            .param("a", 1.5),
    );
    assert_same("axpy through the front", &output(&report, &want), &want);

    // Posted with wait=false, then polled.
    let x = random("i32", 1000, 3).1;
    let job = json!({"kernel": "scan", "inputs": {"x": inline(&x)}});
    let (status, _, text) = front.call("/v1/jobs?wait=false", Some(&job));
    assert_eq!(status, 202, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = poll(&front, &id);
    assert_eq!(body["status"], "done", "{body}");
    let want = reference(Job::new(Kernel::Scan).input("x", x));
    assert_same("scan polled", &output(&body["result"], &want), &want);

    // Bad input: refused, with the reason, not retried.
    let job = json!({"kernel": "axpy", "inputs": {"x": inline(&want)}});
    let (status, _, text) = front.call("/v1/jobs", Some(&job));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("needs input 'y'"), "{text}");
    let (status, _, text) = front.call("/v1/jobs", Some(&json!({"kernel": "nope"})));
    assert_eq!(status, 400, "{text}");
    let (status, _, text) = front.call("/v1/tensors", Some(&json!({})));
    assert_eq!(status, 501, "{text}");
    assert!(text.contains("not_pooled"), "{text}");

    // A pipeline: run as one unit by one worker, its steps reported.
    let (x, y) = (random("f32", 3001, 5).1, random("f32", 3001, 6).1);
    let pipeline = json!({
        "steps": [
            {"name": "a", "kernel": "axpy", "params": {"a": 2},
             "inputs": {"x": inline(&x), "y": inline(&y)}},
            {"name": "m", "kernel": "map", "params": {"expr": "x * x"},
             "inputs": {"x": {"step": "a", "output": "out"}}}],
        "outputs": {"out": {"step": "m", "output": "out"}}});
    let (status, _, text) = front.call("/v1/pipelines", Some(&pipeline));
    assert_eq!(status, 200, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["worker"]["name"], "w1", "{report}");
    assert_eq!(
        report["steps"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    let axpy = reference(
        Job::new(Kernel::Axpy)
            .input("x", x)
            .input("y", y)
            .param("a", 2.0),
    );
    let want = reference(
        Job::new(Kernel::Map)
            .input("x", axpy)
            .param("expr", "x * x"),
    );
    assert_same("pipeline through the front", &output(&report, &want), &want);
    let mut bad = pipeline.clone();
    bad["steps"][1]["inputs"]["x"]["step"] = json!("nowhere");
    let (status, _, text) = front.call("/v1/pipelines", Some(&bad));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("nowhere"), "{text}");

    // Past its deadline, the worker stops the job (seconds of work asked,
    // 300 ms given): 504, and polling says it timed out.
    let slow = json!({"kernel": "mandelbrot", "timeout_ms": 300,
        "params": {"width": 512, "height": 512, "max_iter": 1000000}});
    let started = Instant::now();
    let (status, _, text) = front.call("/v1/jobs", Some(&slow));
    assert_eq!(status, 504, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let id = text.split("job ").nth(1).unwrap()[..32].to_owned();
    let body = poll(&front, &id);
    assert_eq!(body["status"], "timed_out", "{body}");

    // The library's remote engine: the same job API as a local engine.
    let x = random("f32", 5000, 4).1;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let remote = runtime.block_on(async {
        let engine = anycore::pool::remote::RemoteEngine::connect(&nats.url)
            .await
            .unwrap();
        engine
            .run(
                Job::new(Kernel::Map)
                    .input("x", x.clone())
                    .param("expr", "x * 2 + 1"),
            )
            .await
            .unwrap()
    });
    assert_eq!(remote.worker.name, "w1");
    let want = reference(
        Job::new(Kernel::Map)
            .input("x", x)
            .param("expr", "x * 2 + 1"),
    );
    assert_same(
        "map through the remote engine",
        &remote.report.outputs["out"],
        &want,
    );

    // The pool's workers and counters: the front's view and the worker's.
    let (status, _, text) = front.call("/v1/devices", None);
    assert_eq!(status, 200, "{text}");
    let devices: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(devices["workers"][0]["name"], "w1", "{devices}");
    assert_eq!(devices["workers"][0]["takes"], json!(["cpu", "any"]));
    let (_, _, text) = front.call("/metrics", None);
    // Bad jobs were refused here, before the pool; the slow one counted.
    assert_eq!(metric(&text, "anycore_pool_jobs_submitted_total", ""), 4.0);
    assert_eq!(metric(&text, "anycore_pool_workers", ""), 1.0);
    let (status, _, text) = http(&format!("http://{metrics_addr}/metrics"), None);
    assert_eq!(status, 200, "{text}");
    assert_eq!(metric(&text, "anycore_pool_worker_ran_total", "w1"), 4.0);
    assert_eq!(metric(&text, "anycore_pool_worker_acked_total", "w1"), 5.0);
    // The roster's counts are as of the worker's last heartbeat (5 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = common::anycore(&["devices", "--nats", &nats.url, "--json"], &[]);
        assert!(listed.status.success(), "{}", common::stderr(&listed));
        let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
        if listed["workers"][0]["counts"]["ran"] == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{listed}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Stopped while it runs a long job (a minute's deadline): it waits
    // --shutdown-timeout-s (1 s), cancels the job and exits.
    let long = json!({"kernel": "mandelbrot", "timeout_ms": 60000,
        "params": {"width": 512, "height": 512, "max_iter": 100000000}});
    let (status, _, text) = front.call("/v1/jobs?wait=false", Some(&long));
    assert_eq!(status, 202, "{text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while worker.text().matches("started job").count() < 6 {
        assert!(Instant::now() < deadline, "{}", worker.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopping = Instant::now();
    assert_eq!(worker.stop(), 4);
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "{:?}",
        stopping.elapsed()
    );
}

#[test]
fn a_full_stream_answers_503_and_a_restarted_server_loses_no_job() {
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // No worker yet: the stream fills.
    let front = Front::start(
        &nats,
        dir.path(),
        &["--pool-max-jobs", "5", "--max-elements", "100000"],
    );
    // Checked here as on one machine: past a cap, refused before the pool.
    let big = json!({"kernel": "mandelbrot", "params": {"width": 1000, "height": 1000}});
    let (status, _, text) = front.call("/v1/jobs?wait=false", Some(&big));
    assert_eq!(status, 422, "{text}");
    let mut jobs = Vec::new();
    for i in 0..5 {
        let x = random("f32", 1000 + i, i as u64).1;
        let job = json!({"kernel": "reduce", "inputs": {"x": inline(&x)}});
        let (status, _, text) = front.call("/v1/jobs?wait=false", Some(&job));
        assert_eq!(status, 202, "{text}");
        let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        jobs.push((id, x));
    }
    let job = json!({"kernel": "reduce", "inputs": {"x": inline(&jobs[0].1)}});
    let (status, retry, text) = front.call("/v1/jobs?wait=false", Some(&job));
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{text}");
    assert!(text.contains("\"busy\""), "{text}");

    // Killed and started again on its store: the accepted jobs are there.
    nats.restart();
    let worker = Worker::start(&nats, dir.path(), "after", &["--backend", "cpu"], &[]);
    for (id, x) in jobs {
        let body = poll(&front, &id);
        assert_eq!(body["status"], "done", "{body}");
        let want = reference(Job::new(Kernel::Reduce).input("x", x));
        assert_same(&format!("job {id}"), &output(&body["result"], &want), &want);
    }
    assert_eq!(worker.stop(), 5);

    // Killed again while a worker runs jobs, one at a time (~0.1 s each):
    // every job is answered, whether its worker stored the result before,
    // during or after the server was gone.
    let worker = Worker::start(
        &nats,
        dir.path(),
        "during",
        &["--backend", "cpu", "--concurrency", "1"],
        &[],
    );
    let mut jobs = Vec::new();
    for i in 0..5 {
        let params = json!({"width": 256, "height": 256, "max_iter": 20000,
            "x0": -2.0 - 0.01 * f64::from(i)});
        let job = json!({"kernel": "mandelbrot", "params": params});
        let (status, _, text) = front.call("/v1/jobs?wait=false", Some(&job));
        assert_eq!(status, 202, "{text}");
        let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        jobs.push((id, params));
    }
    poll(&front, &jobs[0].0);
    nats.restart();
    for (id, params) in jobs {
        let body = poll(&front, &id);
        assert_eq!(body["status"], "done", "{body}");
        let mut job = Job::new(Kernel::Mandelbrot);
        for (name, value) in params.as_object().unwrap() {
            job = job.param(name, value.as_f64().unwrap());
        }
        let want = reference(job);
        assert_same(&format!("job {id}"), &output(&body["result"], &want), &want);
    }
    // A job whose result could not be stored while the server was gone
    // runs again; none runs less than once.
    assert!(worker.stop() >= 5);
}
