//! The HTTP API end to end: a real server on 127.0.0.1:0, a real client.

mod common;

use std::time::Duration;

use anycore::backend::gpu::GpuOptions;
use anycore::coordinator::cost::CostModel;
use anycore::engine::{CostModelSource, EngineConfig};
use anycore::kernel::random::random_tensor;
use anycore::kernel::{Job, Kernel, Task};
use anycore::service::ServiceConfig;
use anycore::service::api::{JobResponse, decode_npy, encode_npy};
use anycore::service::guard::Access;
use anycore::tensor::DType;
use common::assert_close;
use common::server::Server;
use serde_json::{Value, json};

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert!(v["error"]["message"].is_string(), "{body}");
    v["error"]["code"].as_str().unwrap().to_owned()
}

/// A job that keeps one CPU thread busy for a while.
fn slow_job() -> String {
    json!({"kernel": "mandelbrot", "params": {"width": 1200, "height": 1200, "max_iter": 3000}})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_inline_and_npy_give_the_reference_results() {
    let server = Server::start(8, 256 << 20).await;
    let (status, _, body) = server.call("GET", "/v1/health", None).await;
    assert_eq!((status, body.contains("ok")), (200, true));

    let x = random_tensor(DType::F32, &[300], 1).unwrap();
    let y = random_tensor(DType::F32, &[300], 2).unwrap();
    let task = Task::new(
        Job::new(Kernel::Axpy)
            .input("x", x.clone())
            .input("y", y.clone())
            .param("a", 0.5),
    )
    .unwrap();
    let want = task.reference();
    let inline = json!({
        "kernel": "axpy",
        "params": {"a": 0.5},
        "inputs": {
            "x": {"dtype": "f32", "shape": [300], "data": x.as_f32().unwrap()},
            "y": {"dtype": "f32", "shape": [300], "data": y.as_f32().unwrap()},
        },
    });
    let (status, _, body) = server
        .call("POST", "/v1/jobs", Some(inline.to_string()))
        .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["backend"], "cpu");
    assert!(
        v["placement_reason"].is_string() && v["timings_ms"]["queued"].is_f64(),
        "{v}"
    );
    let got: Vec<f32> = serde_json::from_value(v["outputs"]["out"]["data"].clone()).unwrap();
    assert_close("inline axpy", &got, want["out"].as_f32().unwrap(), 1e-6);

    let npy = json!({
        "kernel": "axpy",
        "params": {"a": 0.5},
        "inputs": {"x": encode_npy(&x), "y": encode_npy(&y)},
        "outputs": "npy",
        "backend": "cpu",
    });
    let (status, _, body) = server.call("POST", "/v1/jobs", Some(npy.to_string())).await;
    assert_eq!(status, 200, "{body}");
    let response: JobResponse = serde_json::from_str(&body).unwrap();
    let got = decode_npy(&response.outputs["out"]).unwrap();
    assert_close(
        "npy axpy",
        got.as_f32().unwrap(),
        want["out"].as_f32().unwrap(),
        1e-6,
    );

    let (_, _, metrics) = server.call("GET", "/metrics", None).await;
    assert!(
        metrics.contains(r#"anycore_jobs_total{kernel="axpy",backend="cpu",outcome="ok"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("anycore_job_seconds_bucket") && metrics.contains("anycore_gpu_present 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"anycore_queue_depth{backend="cpu"}"#),
        "{metrics}"
    );
    let (status, _, devices) = server.call("GET", "/v1/devices", None).await;
    assert_eq!(status, 200);
    assert!(devices.contains("rayon pool"), "{devices}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_json_errors() {
    let server = Server::start(8, 4096).await;
    let cases = [
        ("{not json", 400, "bad_request"),
        (r#"{"kernel": "nosuch"}"#, 400, "bad_request"),
        (
            r#"{"kernel": "axpy", "inputs": {"q": {"dtype": "f32", "shape": [1], "data": [1]}}}"#,
            400,
            "bad_request",
        ),
        (
            r#"{"kernel": "axpy", "inputs": {"x": {"dtype": "f32", "shape": [2], "data": [1]}}}"#,
            400,
            "bad_request",
        ),
        (
            r#"{"kernel": "reduce", "inputs": {"x": {"dtype": "u32", "shape": [1], "data": [-1]}}}"#,
            400,
            "bad_request",
        ),
        (
            r#"{"kernel": "reduce", "inputs": {"x": {"npy": "@@@"}}}"#,
            400,
            "bad_request",
        ),
        (
            r#"{"kernel": "mandelbrot", "params": {"width": 4, "height": 4}, "backend": "gpu"}"#,
            400,
            "no_gpu",
        ),
    ];
    for (body, status, code) in cases {
        let (got, _, text) = server.call("POST", "/v1/jobs", Some(body.into())).await;
        assert_eq!(got, status, "{body}: {text}");
        assert_eq!(error_code(&text), code, "{body}: {text}");
    }
    let big = json!({"kernel": "reduce", "inputs": {"x": {"dtype": "f32", "shape": [2000], "data": vec![1.0; 2000]}}});
    let (status, _, text) = server.call("POST", "/v1/jobs", Some(big.to_string())).await;
    assert_eq!(
        (status, error_code(&text).as_str()),
        (413, "payload_too_large"),
        "{text}"
    );
    let (status, _, text) = server
        .call("GET", "/v1/jobs/0123456789abcdef0123456789abcdef", None)
        .await;
    assert_eq!((status, error_code(&text).as_str()), (404, "not_found"));
    let (status, _, _) = server
        .call("DELETE", "/v1/jobs/0123456789abcdef0123456789abcdef", None)
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_is_503_with_retry_after_and_async_jobs_can_be_polled_and_cancelled() {
    let server = Server::start(2, 256 << 20).await;
    let (status, _, body) = server
        .call("POST", "/v1/jobs?wait=false", Some(slow_job()))
        .await;
    assert_eq!(status, 202, "{body}");
    let slow: String = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let quick = json!({"kernel": "reduce", "inputs": {"x": {"dtype": "i32", "shape": [3], "data": [1, -5, 9]}}, "params": {"op": "min"}});
    let (status, _, body) = server
        .call("POST", "/v1/jobs?wait=false", Some(quick.to_string()))
        .await;
    assert_eq!(status, 202, "{body}");
    let queued: String = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Two jobs in flight fill it: the next is refused at once, not left hanging.
    let (status, retry, body) = server
        .call("POST", "/v1/jobs", Some(quick.to_string()))
        .await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{body}");
    assert_eq!(error_code(&body), "busy");

    let (status, _, body) = server
        .call("DELETE", &format!("/v1/jobs/{queued}"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    let (_, _, body) = server.call("GET", &format!("/v1/jobs/{slow}"), None).await;
    assert!(
        body.contains("running") || body.contains("queued"),
        "{body}"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut slow_done, mut queued_done) = (None, None);
    while (slow_done.is_none() || queued_done.is_none()) && std::time::Instant::now() < deadline {
        for (id, slot) in [(&slow, &mut slow_done), (&queued, &mut queued_done)] {
            let (_, _, body) = server.call("GET", &format!("/v1/jobs/{id}"), None).await;
            let v: Value = serde_json::from_str(&body).unwrap();
            if v["status"] != "running" && v["status"] != "queued" {
                *slot = Some(v);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let slow_done = slow_done.expect("the slow job finishes");
    assert_eq!(slow_done["status"], "done", "{slow_done}");
    assert_eq!(
        slow_done["result"]["outputs"]["out"]["shape"],
        json!([1200, 1200])
    );
    assert_eq!(queued_done.expect("answered")["status"], "cancelled");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_jobs_in_flight() {
    let server = Server::start(4, 256 << 20).await;
    let url = server.url.clone();
    let client = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(format!("{url}/v1/jobs"))
            .header("content-type", "application/json")
            .send(slow_job())
            .unwrap();
        (
            r.status().as_u16(),
            r.body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_string()
                .unwrap(),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().await; // returns only once the job in flight is done
    let (status, body) = client.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""backend":"cpu""#),
        "{}",
        &body[..200.min(body.len())]
    );
}

/// `POST /v1/pipelines`: a two-step pipeline with inline and `.npy`
/// inputs gives what its jobs give, with one report per step and traffic;
/// bad pipelines are 400s naming the step; paths are refused; `/metrics`
/// counts pipelines.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelines_run_as_one_request_and_bad_ones_are_400s_naming_the_step() {
    let server = Server::start(8, 1 << 20).await;
    let x = random_tensor(DType::F32, &[1_000], 7).unwrap();
    let pipeline = json!({
        "steps": [
            {"name": "scaled", "kernel": "axpy", "params": {"a": 2},
             "inputs": {"x": encode_npy(&x), "y": {"dtype": "f32", "shape": [1000], "data": vec![1.0; 1000]}}},
            {"name": "total", "kernel": "reduce", "params": {"op": "max"},
             "inputs": {"x": {"step": "scaled", "output": "out"}}}],
        "outputs": {"biggest": {"step": "total", "output": "out"},
                    "scaled": {"step": "scaled", "output": "out"}},
        "backend": "cpu"});
    let (status, _, body) = server
        .call(
            "POST",
            "/v1/pipelines?outputs=npy",
            Some(pipeline.to_string()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let r: anycore::service::api::PipelineResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(r.run.backend, "cpu");
    let steps: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(steps, ["scaled", "total"]);
    let scaled = decode_npy(&r.outputs["scaled"]).unwrap();
    let want: Vec<f32> = x.as_f32().unwrap().iter().map(|v| 2.0 * v + 1.0).collect();
    assert_close("scaled", scaled.as_f32().unwrap(), &want, 1e-6);
    let biggest = decode_npy(&r.outputs["biggest"]).unwrap();
    let max = want.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(biggest.as_f32().unwrap(), [max]);

    // x given once at the top, read by two steps.
    let shared = json!({
        "inputs": {"x": encode_npy(&x)},
        "steps": [
            {"name": "double", "kernel": "axpy", "params": {"a": 1},
             "inputs": {"x": {"input": "x"}, "y": {"input": "x"}}},
            {"name": "top", "kernel": "reduce", "params": {"op": "max"},
             "inputs": {"x": {"step": "double", "output": "out"}}}],
        "outputs": {"top": {"step": "top", "output": "out"}}});
    let (status, _, body) = server
        .call("POST", "/v1/pipelines", Some(shared.to_string()))
        .await;
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    let top = x
        .as_f32()
        .unwrap()
        .iter()
        .map(|v| v + v)
        .fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(r["outputs"]["top"]["data"][0].as_f64().unwrap() as f32, top);

    let bad =
        |steps: Value, outputs: Value| json!({"steps": steps, "outputs": outputs}).to_string();
    let one = json!([{"name": "s", "kernel": "scan", "inputs": {"x": {"dtype": "u32", "shape": [2], "data": [1, 2]}}}]);
    let cases = [
        (
            bad(
                json!([{"name": "s", "kernel": "scan", "inputs": {"x": {"step": "t", "output": "out"}}}]),
                json!({"o": {"step": "s", "output": "out"}}),
            ),
            "step 's': there is no step named 't'",
        ),
        (
            bad(
                json!([{"name": "s", "kernel": "scan", "inputs": {"q": {"dtype": "u32", "shape": [1], "data": [1]}}}]),
                json!({"o": {"step": "s", "output": "out"}}),
            ),
            "step 's': unknown input 'q'",
        ),
        (
            bad(
                one.clone(),
                json!({"o": {"step": "s", "output": "out", "path": "/tmp/x.npy"}}),
            ),
            "'path' is for the command line",
        ),
        (bad(one.clone(), json!({})), "at least one output"),
        (
            bad(
                json!([{"name": "s", "kernel": "nope"}]),
                json!({"o": {"step": "s", "output": "out"}}),
            ),
            "step 's': unknown kernel 'nope'",
        ),
        (
            json!({"steps": [], "outputs": {}, "extra": 1}).to_string(),
            "invalid pipeline",
        ),
        (
            json!({"inputs": {"q": {"dtype": "u32", "shape": [1], "data": [1]}}, "steps": one,
                   "outputs": {"o": {"step": "s", "output": "out"}}})
            .to_string(),
            "pipeline input 'q' is read by no step",
        ),
    ];
    for (body, want) in cases {
        let (status, _, text) = server.call("POST", "/v1/pipelines", Some(body)).await;
        assert_eq!(status, 400, "{text}");
        assert_eq!(error_code(&text), "bad_request");
        assert!(text.contains(want), "{text} should say {want:?}");
    }
    let (_, _, metrics) = server.call("GET", "/metrics", None).await;
    assert!(
        metrics
            .contains("anycore_jobs_total{kernel=\"pipeline\",backend=\"cpu\",outcome=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("anycore_uploaded_bytes_total{backend=\"cpu\"} 0"),
        "{metrics}"
    );
    server.stop().await;
}

/// `/v1/tensors`: a tensor stored from `.npy` bytes or JSON comes back
/// byte for byte; jobs and pipelines take it by id and keep outputs as
/// new tensors; unknown ids are 404s with a JSON error; past the store's
/// bounds a 507 with a JSON error; deleting makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_tensors_feed_jobs_and_pipelines_within_bounds() {
    let service = ServiceConfig {
        max_tensors: 4,
        max_tensor_bytes: 64 << 10,
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;
    let x = random_tensor(DType::F32, &[4_000], 3).unwrap();
    let npy_bytes = anycore::tensor::npy::to_bytes(&x);
    let (status, body) = server.bytes("/v1/tensors", Some(npy_bytes.clone())).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let stored: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(stored["dtype"], "f32");
    assert_eq!(stored["shape"], json!([4000]));
    let xid = stored["id"].as_str().unwrap().to_owned();
    let (status, back) = server.bytes(&format!("/v1/tensors/{xid}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(anycore::tensor::npy::from_bytes(&back).unwrap(), x);

    // A job reading it twice, keeping its output.
    let job = json!({"kernel": "axpy", "params": {"a": 2}, "backend": "cpu", "keep": ["out"],
                     "inputs": {"x": {"tensor": xid}, "y": {"tensor": xid}}});
    let (status, _, body) = server.call("POST", "/v1/jobs", Some(job.to_string())).await;
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    let out = &r["outputs"]["out"];
    assert!(out.get("data").is_none(), "{out}");
    assert_eq!(out["shape"], json!([4000]));
    let yid = out["tensor"].as_str().unwrap().to_owned();
    // A pipeline from the kept output, keeping one result and returning one.
    let pipeline = json!({
        "steps": [{"name": "sums", "kernel": "scan", "params": {"inclusive": true},
                   "inputs": {"x": {"tensor": yid}}},
                  {"name": "top", "kernel": "reduce", "params": {"op": "max"},
                   "inputs": {"x": {"tensor": yid}}}],
        "outputs": {"sums": {"step": "sums", "output": "out", "keep": true},
                    "top": {"step": "top", "output": "out"}},
        "backend": "cpu"});
    let (status, _, body) = server
        .call("POST", "/v1/pipelines", Some(pipeline.to_string()))
        .await;
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    let sid = r["outputs"]["sums"]["tensor"].as_str().unwrap().to_owned();
    let want: Vec<f32> = x.as_f32().unwrap().iter().map(|v| 3.0 * v).collect();
    let top = want.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // f32s are written in their shortest round-trip form.
    assert_eq!(
        r["outputs"]["top"]["data"][0].as_f64().map(|v| v as f32),
        Some(top)
    );
    let (_, back) = server.bytes(&format!("/v1/tensors/{sid}"), None).await;
    let sums = anycore::tensor::npy::from_bytes(&back).unwrap();
    let mut total = 0.0f64;
    let want_sums: Vec<f32> = want
        .iter()
        .map(|v| {
            total += f64::from(*v);
            total as f32
        })
        .collect();
    assert_close("kept scan", sums.as_f32().unwrap(), &want_sums, 1e-5);

    // Bounds: 3 stored (x, y, sums); 40 KiB more passes 64 KiB of bytes.
    let big = json!({"dtype": "f32", "shape": [10_000], "data": vec![0.0; 10_000]});
    let (status, _, body) = server
        .call("POST", "/v1/tensors", Some(big.to_string()))
        .await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(error_code(&body), "store_full");
    let small = json!({"dtype": "u32", "shape": [2], "data": [1, 2]});
    let (status, _, _) = server
        .call("POST", "/v1/tensors", Some(small.to_string()))
        .await;
    assert_eq!(status, 201);
    let (status, _, body) = server
        .call("POST", "/v1/tensors", Some(small.to_string()))
        .await;
    assert_eq!(status, 507, "four tensors at most: {body}");
    // Unknown ids, everywhere: 404 with a JSON error.
    let (status, _, body) = server
        .call("DELETE", &format!("/v1/tensors/{xid}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    for (method, path) in [
        ("GET", format!("/v1/tensors/{xid}")),
        ("DELETE", format!("/v1/tensors/{xid}")),
    ] {
        let (status, _, body) = server.call(method, &path, None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
    let job = json!({"kernel": "reduce", "inputs": {"x": {"tensor": xid}}});
    let (status, _, body) = server.call("POST", "/v1/jobs", Some(job.to_string())).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("input 'x'") && body.contains(&format!("id {xid}")),
        "{body}"
    );
    // Deleting x made room for one more.
    let (status, _, _) = server
        .call("POST", "/v1/tensors", Some(small.to_string()))
        .await;
    assert_eq!(status, 201);
    let (status, _, body) = server
        .call("POST", "/v1/tensors", Some("not an array".into()))
        .await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

/// Keeping is all or nothing (a duplicate name or a full store leaves no
/// tensor behind); a pipeline over the step limit is refused before its
/// inputs are read; many steps reading one stored tensor read it right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keeping_is_all_or_nothing_and_limits_come_first() {
    let service = ServiceConfig {
        max_tensors: 3,
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;
    let x = random_tensor(DType::F32, &[300], 9).unwrap();
    let (_, body) = server
        .bytes("/v1/tensors", Some(anycore::tensor::npy::to_bytes(&x)))
        .await;
    let xid = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Whether the store (3 at most, x among them) has room for exactly two
    // more: then nothing was left behind. Leaves it as it was.
    let room_for_two = || {
        let server = &server;
        let x = &x;
        async move {
            let npy = anycore::tensor::npy::to_bytes(x);
            let mut ids = Vec::new();
            for _ in 0..2 {
                let (status, body) = server.bytes("/v1/tensors", Some(npy.clone())).await;
                if status != 201 {
                    return false;
                }
                ids.push(serde_json::from_slice::<Value>(&body).unwrap()["id"].clone());
            }
            let (status, _) = server.bytes("/v1/tensors", Some(npy)).await;
            for id in ids {
                let path = format!("/v1/tensors/{}", id.as_str().unwrap());
                server.call("DELETE", &path, None).await;
            }
            status == 507
        }
    };
    assert!(room_for_two().await);

    let twice =
        json!({"kernel": "reduce", "inputs": {"x": {"tensor": xid}}, "keep": ["out", "out"]});
    let (status, _, body) = server
        .call("POST", "/v1/jobs", Some(twice.to_string()))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("kept twice"), "{body}");
    assert!(
        room_for_two().await,
        "something was stored for a refused job"
    );

    // Three outputs kept with room for two: 507, and none of them stays.
    let steps: Vec<Value> = (0..3)
        .map(|i| json!({"name": format!("s{i}"), "kernel": "scan", "inputs": {"x": {"tensor": xid}}}))
        .collect();
    let outputs: serde_json::Map<String, Value> = (0..3)
        .map(|i| {
            (
                format!("o{i}"),
                json!({"step": format!("s{i}"), "output": "out", "keep": true}),
            )
        })
        .collect();
    let three = json!({"steps": steps, "outputs": outputs});
    let (status, _, body) = server
        .call("POST", "/v1/pipelines", Some(three.to_string()))
        .await;
    assert_eq!(status, 507, "{body}");
    assert!(room_for_two().await, "a tensor was left behind");

    // 200 steps all reading the stored x (loaded once): the sum right.
    let steps: Vec<Value> = (0..200)
        .map(|i| json!({"name": format!("s{i}"), "kernel": "reduce", "inputs": {"x": {"tensor": xid}}}))
        .collect();
    let many = json!({"steps": steps, "outputs": {"last": {"step": "s199", "output": "out"}}});
    let (status, _, body) = server
        .call("POST", "/v1/pipelines", Some(many.to_string()))
        .await;
    assert_eq!(status, 200, "{body}");
    let got = serde_json::from_str::<Value>(&body).unwrap()["outputs"]["last"]["data"][0]
        .as_f64()
        .unwrap();
    let want: f64 = x.as_f32().unwrap().iter().map(|&v| f64::from(v)).sum();
    assert!(
        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
        "{got} vs {want}"
    );

    // Past the step limit, refused before any input is read (an unknown
    // tensor would be a 404).
    let steps: Vec<Value> = (0..257)
        .map(|i| json!({"name": format!("s{i}"), "kernel": "reduce", "inputs": {"x": {"tensor": "0123456789abcdef0123456789abcdef"}}}))
        .collect();
    let over = json!({"steps": steps, "outputs": {"o": {"step": "s0", "output": "out"}}});
    let (status, _, body) = server
        .call("POST", "/v1/pipelines", Some(over.to_string()))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 256"), "{body}");

    let own = json!({"steps": [{"name": "s", "kernel": "scan", "inputs": {"x": {"step": "s", "output": "out"}}}],
                     "outputs": {"o": {"step": "s", "output": "out"}}});
    let (status, _, body) = server
        .call("POST", "/v1/pipelines", Some(own.to_string()))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cannot read its own outputs"), "{body}");

    // Errors of the path and the query string are JSON too; an input in a
    // form the service does not take says which forms it takes.
    for (method, path, status) in [
        ("GET", "/v1/tensors/abc", 404),
        ("DELETE", "/v1/jobs/x1", 404),
        ("GET", "/v1/jobs/1", 404),
    ] {
        let (got, _, body) = server.call(method, path, None).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
    let (status, _, body) = server
        .call("POST", "/v1/pipelines?outputs=npz", Some(own.to_string()))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "bad_request");
    let path_input = json!({"steps": [{"name": "s", "kernel": "scan", "inputs": {"x": "x.npy"}}],
                            "outputs": {"o": {"step": "s", "output": "out"}}});
    let (status, _, body) = server
        .call("POST", "/v1/pipelines", Some(path_input.to_string()))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("in a file or a batch line also a .npy path"),
        "{body}"
    );
    server.stop().await;
}

/// On the GPU a stored tensor is uploaded once and a kept output stays in
/// device memory: the jobs' reports say what moved, and GET brings the
/// result home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_tensors_stay_on_the_gpu_between_jobs() {
    let config = EngineConfig {
        gpu: GpuOptions {
            allow_software: true,
            ..GpuOptions::default()
        },
        cost_model: CostModelSource::Fixed(CostModel::default()),
        ..EngineConfig::default()
    };
    let server = Server::start_engine(config, ServiceConfig::default()).await;
    let (_, _, devices) = server.call("GET", "/v1/devices", None).await;
    if !devices.contains("\"gpu\"") && std::env::var("ANYCORE_REQUIRE_GPU_TESTS").is_err() {
        return server.stop().await;
    }
    let n = 50_000;
    let x = random_tensor(DType::F32, &[n], 11).unwrap();
    let (status, body) = server
        .bytes("/v1/tensors", Some(anycore::tensor::npy::to_bytes(&x)))
        .await;
    assert_eq!(status, 201);
    let xid = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = |job: Value| {
        let server = &server;
        async move {
            let (status, _, body) = server.call("POST", "/v1/jobs", Some(job.to_string())).await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let scaled = post(
        json!({"kernel": "axpy", "params": {"a": 3}, "backend": "gpu",
                             "keep": ["out"],
                             "inputs": {"x": {"tensor": xid}, "y": {"tensor": xid}}}),
    )
    .await;
    assert_eq!(
        scaled["traffic"]["uploaded_bytes"],
        json!(4 * n),
        "x once, for x and y"
    );
    assert_eq!(
        scaled["traffic"]["downloaded_bytes"],
        json!(0),
        "kept on the GPU"
    );
    let sid = scaled["outputs"]["out"]["tensor"]
        .as_str()
        .unwrap()
        .to_owned();
    let total = post(json!({"kernel": "reduce", "backend": "gpu",
                            "inputs": {"x": {"tensor": sid}}}))
    .await;
    assert_eq!(
        total["traffic"]["uploaded_bytes"],
        json!(0),
        "read in place"
    );
    let (status, back) = server.bytes(&format!("/v1/tensors/{sid}"), None).await;
    assert_eq!(status, 200);
    let got = anycore::tensor::npy::from_bytes(&back).unwrap();
    let want: Vec<f32> = x.as_f32().unwrap().iter().map(|&v| 3.0 * v + v).collect();
    assert_close("kept on the GPU", got.as_f32().unwrap(), &want, 1e-6);
    let sum: f64 = want.iter().map(|&v| f64::from(v)).sum();
    let gpu_sum = total["outputs"]["out"]["data"][0].as_f64().unwrap();
    assert!((gpu_sum - sum).abs() <= 1e-5 * want.iter().map(|v| v.abs() as f64).sum::<f64>());
    server.stop().await;
}

/// Who may call: with a token, every route but the health check needs it
/// (401 with `WWW-Authenticate` otherwise); a web page's request (an
/// `Origin`) is refused unless its origin was allowed, which then gets the
/// CORS headers and its preflight; a loopback service answers only
/// loopback names (no DNS rebinding); POST bodies must say they are JSON
/// (or `.npy` bytes for `/v1/tensors`); unknown routes and methods are the
/// API's JSON 404 and 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_those_allowed_may_call() {
    let service = ServiceConfig {
        access: Access {
            token: Some("s3cret-token".into()),
            cors: Some("https://app.example".into()),
            loopback_hosts: true,
        },
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;
    let auth = ("authorization", "Bearer s3cret-token");
    let code = |body: &str| error_code(body);

    let (status, _, _) = server.call_with("GET", "/v1/health", None, &[]).await;
    assert_eq!(status, 200, "the health check needs no token");
    for headers in [
        vec![],
        vec![("authorization", "Bearer s3cret-tokeN")],
        vec![("authorization", "s3cret-token")],
    ] {
        let (status, h, body) = server.call_with("GET", "/v1/devices", None, &headers).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (401, "unauthorized"),
            "{headers:?}"
        );
        assert_eq!(
            h.get("www-authenticate").map(String::as_str),
            Some("Bearer")
        );
        assert!(h["content-type"].starts_with("application/json"));
    }
    let job = json!({"kernel": "reduce", "inputs": {"x": {"dtype": "f32", "shape": [3], "data": [1, 2, 3.5]}}});
    let (status, _, body) = server
        .call_with("POST", "/v1/jobs", Some(job.to_string()), &[auth])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["outputs"]["out"]["data"],
        json!([6.5])
    );

    // Web pages: only the allowed origin, with CORS headers and a preflight.
    let evil = [auth, ("origin", "https://evil.example")];
    let (status, _, body) = server
        .call_with("POST", "/v1/jobs", Some(job.to_string()), &evil)
        .await;
    assert_eq!((status, code(&body).as_str()), (403, "cross_origin"));
    let app = [auth, ("origin", "https://app.example")];
    let (status, h, _) = server.call_with("GET", "/v1/devices", None, &app).await;
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let (status, h, _) = server
        .call_with(
            "OPTIONS",
            "/v1/jobs",
            None,
            &[("origin", "https://app.example")],
        )
        .await;
    assert_eq!(status, 204);
    assert!(h["access-control-allow-headers"].contains("authorization"));

    // A rebound name is not a loopback one.
    for host in [
        "evil.example",
        "evil.example:7878",
        "127.0.0.1.evil.example",
    ] {
        let (status, _, body) = server
            .call_with("GET", "/v1/devices", None, &[auth, ("host", host)])
            .await;
        assert_eq!(
            (status, code(&body).as_str()),
            (403, "forbidden_host"),
            "{host}"
        );
    }
    let (status, _, _) = server
        .call_with("GET", "/v1/devices", None, &[auth, ("host", "localhost:1")])
        .await;
    assert_eq!(status, 200);

    // Bodies say what they are.
    for kind in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let headers = [auth, ("content-type", kind)];
        let (status, _, body) = server
            .call_with("POST", "/v1/jobs", Some(job.to_string()), &headers)
            .await;
        assert_eq!(
            (status, code(&body).as_str()),
            (415, "unsupported_media_type"),
            "{kind}"
        );
    }
    let npy = [auth, ("content-type", "application/octet-stream")];
    let (status, _, body) = server
        .call_with("POST", "/v1/jobs", Some(job.to_string()), &npy)
        .await;
    assert_eq!(status, 415, "only /v1/tensors takes raw bytes: {body}");

    // Requests no route takes: the API's JSON errors.
    let (status, h, body) = server.call_with("GET", "/v2/nothing", None, &[auth]).await;
    assert_eq!((status, code(&body).as_str()), (404, "not_found"));
    assert!(h["content-type"].starts_with("application/json"));
    let (status, _, body) = server.call_with("PUT", "/v1/jobs", None, &[auth]).await;
    assert_eq!((status, code(&body).as_str()), (405, "method_not_allowed"));
    server.stop().await;
}

/// Sends `head` and `body` over a raw connection and reads until the
/// server closes it (or 10 s pass): the answer's text and how long it took.
/// A server that answers and closes before taking everything may reset
/// the connection: then the answer may be lost, and the text is
/// [`RESET`].
fn raw_exchange(addr: &str, head: &str, body: &[u8]) -> (String, Duration) {
    use std::io::{Read, Write};
    let start = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body));
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    if answer.is_empty()
        && let Err(e) = sent
    {
        use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
        assert!(matches!(e.kind(), BrokenPipe | ConnectionReset), "{e}");
        return (RESET.to_owned(), start.elapsed());
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        start.elapsed(),
    )
}

/// What [`raw_exchange`] gives for a connection the server reset.
const RESET: &str = "(connection reset)";

/// A body declared far past the limit is refused at once, unread (413); a
/// body that stops arriving is a 408 once the body timeout passes; the
/// server answers others all the while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_too_large_or_too_slow_are_refused() {
    let service = ServiceConfig {
        body_limit: 1 << 20,
        body_timeout: Duration::from_millis(700),
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let head = |length: u64| {
        format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\n\r\n"
        )
    };
    let (huge, slow) = (head(1 << 40), head(100));
    let (addr2, addr3) = (addr.clone(), addr.clone());
    let early = tokio::task::spawn_blocking(move || raw_exchange(&addr2, &huge, b""));
    let stalled = tokio::task::spawn_blocking(move || raw_exchange(&addr3, &slow, b"{\"kernel\""));
    // Meanwhile the server answers.
    let (status, _, _) = server.call("GET", "/v1/health", None).await;
    assert_eq!(status, 200);
    let (answer, took) = early.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (answer, took) = stalled.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(8),
        "{took:?}"
    );
    server.stop().await;
}

/// Headers that stop arriving close the connection once the header
/// timeout passes, as does a kept-alive connection left idle that long;
/// headers too large are a 431 (JSON where the router sees them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_or_huge_headers_are_cut_off() {
    let service = ServiceConfig {
        header_timeout: Duration::from_millis(600),
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let half = "POST /v1/jobs HTTP/1.1\r\nHost: localh".to_owned();
    let idle = "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned();
    let (a, b) = (addr.clone(), addr.clone());
    let stalled = tokio::task::spawn_blocking(move || raw_exchange(&a, &half, b""));
    let kept_idle = tokio::task::spawn_blocking(move || raw_exchange(&b, &idle, b""));
    let (status, _, _) = server.call("GET", "/v1/health", None).await;
    assert_eq!(status, 200);
    // raw_exchange reads until the server closes (or 10 s pass).
    let (answer, took) = stalled.await.unwrap();
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(8),
        "closed after {took:?}"
    );
    let (answer, took) = kept_idle.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(8), "closed after {took:?}");

    for (bytes, json) in [(100 << 10, true), (3 << 20, false)] {
        let head = format!(
            "GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(bytes)
        );
        let a = addr.clone();
        let (answer, _) = tokio::task::spawn_blocking(move || raw_exchange(&a, &head, b""))
            .await
            .unwrap();
        // Past the hard limit hyper stops reading: the 431 may be lost to
        // the reset of a connection it closed with the headers unread.
        let refused = answer.starts_with("HTTP/1.1 431") || (!json && answer == RESET);
        assert!(refused, "{bytes}: {answer:.200}");
        if json {
            assert!(answer.contains("headers_too_large"), "{answer}");
        }
    }
    server.stop().await;
}

/// A client that never finishes its request does not hold shutdown: the
/// server stops within its shutdown deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_stalled_client() {
    let service = ServiceConfig {
        shutdown_timeout: Duration::from_millis(800),
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    // Half a request's headers, then nothing.
    let stalled = std::net::TcpStream::connect(&addr).unwrap();
    {
        use std::io::Write;
        (&stalled)
            .write_all(b"POST /v1/jobs HTTP/1.1\r\nHost: localh")
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("the server stopped");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(stalled);
}

/// Jobs that would run past the shutdown deadline are cancelled there:
/// the server stops within it (and a little more) with work that would
/// never end running, and a client waiting for such a job hears 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_jobs_running_past_its_deadline() {
    let service = ServiceConfig {
        shutdown_timeout: Duration::from_millis(800),
        max_job: Duration::from_secs(1_000_000),
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;
    let polled = post_async(&server, &endless_job()).await;
    let v = poll_past(&server, &polled, &["queued"]).await;
    assert_eq!(v["status"], "running", "{v}");
    let (url, job) = (server.url.clone(), endless_job().to_string());
    let waiting = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut r = agent
            .post(format!("{url}/v1/jobs"))
            .header("content-type", "application/json")
            .send(job)
            .expect("answered");
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), server.stop())
        .await
        .expect("the server stopped");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let (status, body) = waiting.await.unwrap();
    assert_eq!(
        (status, error_code(&body).as_str()),
        (503, "shutting_down"),
        "{body}"
    );
}

/// A `wait=false` result is kept for its time to live, then dropped: its
/// id answers a 404 that says so (an id never given says something else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_results_expire_and_say_so() {
    let service = ServiceConfig {
        results: anycore::service::results::Limits {
            bytes: 1 << 20,
            ttl: Duration::from_millis(600),
        },
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;
    let job = json!({"kernel": "reduce", "inputs": {"x": {"dtype": "u32", "shape": [2], "data": [4, 5]}}});
    let (status, _, body) = server
        .call("POST", "/v1/jobs?wait=false", Some(job.to_string()))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/jobs/{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = server.call("GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
        if body.contains(r#""status":"done""#) {
            assert!(body.contains("[9]"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, _, body) = server.call("GET", &path, None).await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    assert!(body.contains("no longer kept"), "{body}");
    let (_, _, body) = server
        .call("GET", "/v1/jobs/0123456789abcdef0123456789abcdef", None)
        .await;
    assert!(body.contains("no job with id"), "{body}");
    server.stop().await;
}

/// A one-thread CPU engine whose cost model prices `mandelbrot` at 1 ms
/// per million pixel-iterations, so that the service's work limit applies.
fn priced_mandelbrot() -> EngineConfig {
    use anycore::backend::BackendKind;
    use anycore::coordinator::cost::Line;
    let mut model = CostModel::default();
    model.set(BackendKind::Cpu, Kernel::Mandelbrot, Line::new(0.0, 1e-6));
    model.freeze();
    EngineConfig {
        use_gpu: false,
        cpu_threads: Some(1),
        cost_model: CostModelSource::Fixed(model),
        ..EngineConfig::default()
    }
}

/// Bodies mangled at random — valid jobs and pipelines with bytes flipped,
/// cut short, spliced, or their numbers swapped for hostile ones — never
/// make the service answer 5xx: every answer is a result or a JSON error
/// naming the problem, and the service keeps answering. The work limit
/// (from a cost model) and the memory budget bound what any of them may
/// take: a hostile `max_iter` is a 422, not minutes of work, and no
/// memory is held once all are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_bodies_get_4xx_json_errors_never_5xx() {
    use rand::Rng;
    let config = priced_mandelbrot();
    let service = ServiceConfig {
        body_limit: 1 << 20,
        memory_budget: 64 << 20,
        max_job: Duration::from_secs(5),
        ..ServiceConfig::default()
    };
    let server = Server::start_engine(config, service).await;
    let mut rng = common::rng();
    let seeds = [
        json!({"kernel": "axpy", "params": {"a": 2}, "inputs": {
            "x": {"dtype": "f32", "shape": [3], "data": [1, 2, 3]},
            "y": {"dtype": "f32", "shape": [3], "data": [4, 5, 6]}}}),
        json!({"kernel": "histogram", "params": {"bins": 4, "lo": 0, "hi": 1}, "inputs": {
            "x": {"dtype": "f32", "shape": [4], "data": [0.1, 0.5, 0.9, 2]}}}),
        json!({"kernel": "matmul", "inputs": {
            "a": {"dtype": "f32", "shape": [2, 2], "data": [1, 2, 3, 4]},
            "b": {"dtype": "f32", "shape": [2, 1], "data": [1, 1]}}}),
        json!({"steps": [
            {"name": "s", "kernel": "scan", "inputs": {"x": {"dtype": "u32", "shape": [3], "data": [1, 2, 3]}}},
            {"name": "t", "kernel": "reduce", "inputs": {"x": {"step": "s", "output": "out"}}}],
            "outputs": {"o": {"step": "t", "output": "out"}}}),
        json!({"kernel": "mandelbrot", "params": {"width": 16, "height": 12, "max_iter": 100}}),
    ];
    let hostile = [
        "-1",
        "1e300",
        "4294967296",
        "18446744073709551616",
        "-0",
        "null",
        "\"\"",
        "[]",
        "{}",
        "[1e9, 1e9]",
        "2147483648",
        "NaN",
        "0.5",
    ];
    let mut answered = [0usize; 2]; // 200s, 4xx
    for round in 0..300 {
        let seed = &seeds[round % seeds.len()];
        let mut text = seed.to_string().into_bytes();
        match rng.random_range(0..4) {
            0 => {
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..text.len());
                    text[i] = rng.random();
                }
            }
            1 => text.truncate(rng.random_range(0..text.len())),
            2 => {
                let (i, j) = (
                    rng.random_range(0..text.len()),
                    rng.random_range(0..text.len()),
                );
                let piece = text[i.min(j)..i.max(j)].to_vec();
                let at = rng.random_range(0..text.len());
                text.splice(at..at, piece);
            }
            _ => {
                // A number swapped for a hostile value.
                let s = String::from_utf8(text.clone()).unwrap();
                let digits: Vec<usize> = s
                    .match_indices(|c: char| c.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&at) = digits.get(rng.random_range(0..digits.len().max(1))) {
                    let end = s[at..]
                        .find(|c: char| !c.is_ascii_digit() && c != '.')
                        .map_or(s.len(), |e| at + e);
                    let value = hostile[rng.random_range(0..hostile.len())];
                    text = format!("{}{value}{}", &s[..at], &s[end..]).into_bytes();
                }
            }
        }
        let body = String::from_utf8_lossy(&text).into_owned();
        let path = if seed.get("steps").is_some() {
            "/v1/pipelines"
        } else {
            "/v1/jobs"
        };
        let (status, _, answer) = server.call("POST", path, Some(body.clone())).await;
        assert!(status < 500, "{status} for {body}: {answer}");
        answered[usize::from(status != 200)] += 1;
        if status != 200 {
            let error: Value = serde_json::from_str(&answer)
                .unwrap_or_else(|e| panic!("{status} for {body}: not JSON ({e}): {answer}"));
            let message = error["error"]["message"].as_str().unwrap_or("");
            assert!(!message.is_empty(), "{status} for {body}: {answer}");
        }
    }
    assert!(answered[0] > 0 && answered[1] > 100, "{answered:?}");
    let (status, _, _) = server.call("GET", "/v1/health", None).await;
    assert_eq!(status, 200);
    let (_, _, metrics) = server.call("GET", "/metrics", None).await;
    assert!(
        metrics.contains("anycore_memory_held_bytes 0\n"),
        "{metrics}"
    );
    server.stop().await;
}

/// Work the cost model predicts to run past the service's limit is refused
/// (422, naming the limit) before anything runs; small work runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_predicted_past_the_limit_is_refused() {
    let config = priced_mandelbrot();
    let service = ServiceConfig {
        max_job: Duration::from_secs(2),
        ..ServiceConfig::default()
    };
    let server = Server::start_engine(config, service).await;
    let job = |max_iter: u64| json!({"kernel": "mandelbrot", "params": {"width": 64, "height": 64, "max_iter": max_iter}});
    let (status, _, body) = server
        .call("POST", "/v1/jobs", Some(job(2_147_483_648).to_string()))
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "too_much_work"),
        "{body}"
    );
    assert!(body.contains("limit of 2 s"), "{body}");
    let steps = json!({"steps": [{"name": "m", "kernel": "mandelbrot",
                                  "params": {"width": 64, "height": 64, "max_iter": 4_000_000_000u64}}],
                       "outputs": {"o": {"step": "m", "output": "out"}}});
    let (status, _, body) = server
        .call("POST", "/v1/pipelines", Some(steps.to_string()))
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "too_much_work"),
        "{body}"
    );
    let (status, _, body) = server
        .call("POST", "/v1/jobs", Some(job(64).to_string()))
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

/// A job that would run for hours on one core: a view inside the set,
/// where no pixel escapes before `max_iter`.
fn endless_job() -> Value {
    json!({"kernel": "mandelbrot", "backend": "cpu",
           "params": {"width": 256, "height": 256, "max_iter": 4_000_000_000u64,
                      "x0": -0.3, "x1": 0.1, "y0": -0.2, "y1": 0.2}})
}

/// Polls job `id` until its status is none of `passing`, within 20 s.
async fn poll_past(server: &Server, id: &str, passing: &[&str]) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, body) = server.call("GET", &format!("/v1/jobs/{id}"), None).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        if !passing.iter().any(|p| v["status"] == *p) || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts `job` with `wait=false`; its id.
async fn post_async(server: &Server, job: &Value) -> String {
    let (status, _, body) = server
        .call("POST", "/v1/jobs?wait=false", Some(job.to_string()))
        .await;
    assert_eq!(status, 202, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Cancelling reaches running work: a running job stops when deleted, past
/// its `timeout_ms`, and when the client waiting for it goes away — and
/// the core it held runs the next job. Status tells queued from running;
/// cancelled and timed-out jobs are their own outcomes in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_jobs_stop_when_cancelled_timed_out_or_abandoned() {
    let service = ServiceConfig {
        // Far beyond any job here: only their own deadlines stop them.
        max_job: Duration::from_secs(1_000_000),
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;
    let x = random_tensor(DType::F32, &[1000], 3).unwrap();
    let quick = json!({"kernel": "reduce", "backend": "cpu", "params": {"op": "sum"},
                       "inputs": {"x": {"dtype": "f32", "shape": [1000], "data": x.data().to_f64()}}});

    // Deleted while it runs; the job queued behind it then runs.
    let endless = post_async(&server, &endless_job()).await;
    let v = poll_past(&server, &endless, &["queued"]).await;
    assert_eq!(v["status"], "running", "{v}");
    let behind = post_async(&server, &quick).await;
    let (_, _, body) = server
        .call("GET", &format!("/v1/jobs/{behind}"), None)
        .await;
    assert!(body.contains("\"queued\""), "one core, busy: {body}");
    let (status, _, body) = server
        .call("DELETE", &format!("/v1/jobs/{endless}"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    let v = poll_past(&server, &endless, &["queued", "running"]).await;
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(v["error"]["code"], "cancelled", "{v}");
    let v = poll_past(&server, &behind, &["queued", "running"]).await;
    assert_eq!(v["status"], "done", "{v}");
    let sum = v["result"]["outputs"]["out"]["data"][0].as_f64().unwrap();
    let want: f64 = x.data().to_f64().iter().sum();
    assert!(
        (sum - want).abs() <= 1e-3 * want.abs().max(1.0),
        "{sum} vs {want}"
    );

    // Past its deadline: waited for (504), polled (timed_out), a pipeline.
    let mut timed = endless_job();
    timed["timeout_ms"] = json!(300);
    let (status, _, body) = server
        .call("POST", "/v1/jobs", Some(timed.to_string()))
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (504, "deadline_exceeded"),
        "{body}"
    );
    assert!(body.contains("300 ms"), "{body}");
    let id = post_async(&server, &timed).await;
    let v = poll_past(&server, &id, &["queued", "running"]).await;
    assert_eq!(v["status"], "timed_out", "{v}");
    let steps = json!({"steps": [{"name": "m", "kernel": "mandelbrot", "params": endless_job()["params"]}],
                       "outputs": {"o": {"step": "m", "output": "out"}}});
    let (status, _, body) = server
        .call(
            "POST",
            "/v1/pipelines?timeout_ms=300",
            Some(steps.to_string()),
        )
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (504, "deadline_exceeded"),
        "{body}"
    );

    // Deadlines the service does not take.
    for (ms, want) in [
        (json!(0), 400),
        (json!(2_000_000_000u64), 422),
        (json!(-1), 400),
    ] {
        let mut job = quick.clone();
        job["timeout_ms"] = ms.clone();
        let (status, _, body) = server.call("POST", "/v1/jobs", Some(job.to_string())).await;
        assert_eq!(status, want, "timeout_ms {ms}: {body}");
    }

    // A client that goes away mid-job: its job stops, the core is free.
    let addr = server.url.trim_start_matches("http://").to_owned();
    let body = endless_job().to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    })
    .await
    .unwrap();
    let (status, _, body) = server
        .call("POST", "/v1/jobs", Some(quick.to_string()))
        .await;
    assert_eq!(status, 200, "{body}");

    let (_, _, metrics) = server.call("GET", "/metrics", None).await;
    let count = |outcome: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("anycore_jobs_total") && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("cancelled"), 2.0, "deleted, abandoned:\n{metrics}");
    assert_eq!(count("timed_out"), 3.0, "{metrics}");
    server.stop().await;
}

/// Memory is admitted by bytes: a job whose outputs and answer could
/// never fit the budget is a 413 naming it, a body declared or sent past
/// it too; a job that does not fit while another holds memory is a 503
/// with Retry-After, and fits once that one is gone; small jobs pass
/// meanwhile. /metrics shows the budget and what is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_is_admitted_by_bytes() {
    let service = ServiceConfig {
        memory_budget: 8 << 20,
        max_job: Duration::from_secs(1_000_000),
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;

    // 64 MiB of counts, and their JSON: never.
    let huge = json!({"kernel": "mandelbrot", "params": {"width": 4096, "height": 4096}});
    let (status, _, body) = server
        .call("POST", "/v1/jobs", Some(huge.to_string()))
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "over_memory_budget"),
        "{body}"
    );
    assert!(body.contains("8 MiB"), "{body}");

    // Bodies past the budget, declared or sent in chunks: never.
    let addr = server.url.trim_start_matches("http://").to_owned();
    let a = addr.clone();
    let (answer, _) = tokio::task::spawn_blocking(move || {
        let head = "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                    Content-Length: 9437184\r\n\r\n";
        raw_exchange(&a, head, b"")
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("over_memory_budget"), "{answer}");
    let a = addr.clone();
    let (answer, _) = tokio::task::spawn_blocking(move || {
        let head = "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                    Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let mut chunked = format!("{:x}\r\n", 9 << 20).into_bytes();
        chunked.extend(std::iter::repeat_n(b' ', 9 << 20));
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        raw_exchange(&a, head, &chunked)
    })
    .await
    .unwrap();
    assert!(answer.contains(" 413 "), "{answer:.300}");
    assert!(answer.contains("over_memory_budget"), "{answer:.300}");

    // 1 MiB of counts and 4 MiB of JSON each: one at a time.
    let mut big = endless_job();
    big["params"]["width"] = json!(512);
    big["params"]["height"] = json!(512);
    let first = post_async(&server, &big).await;
    let (status, retry, body) = server.call("POST", "/v1/jobs", Some(big.to_string())).await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{body}");
    assert!(body.contains("memory"), "{body}");
    let (_, _, metrics) = server.call("GET", "/metrics", None).await;
    assert!(
        metrics.contains("anycore_memory_budget_bytes 8388608"),
        "{metrics}"
    );
    let held: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("anycore_memory_held_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(held >= 5.0 * 1024.0 * 1024.0, "{held}");
    let quick = json!({"kernel": "reduce", "inputs": {"x": {"dtype": "i32", "shape": [3], "data": [1, -5, 9]}}});
    // Small jobs are admitted meanwhile (they queue behind it: one core).
    let small = post_async(&server, &quick).await;

    server
        .call("DELETE", &format!("/v1/jobs/{first}"), None)
        .await;
    let v = poll_past(&server, &first, &["queued", "running"]).await;
    assert_eq!(v["status"], "cancelled", "{v}");
    let v = poll_past(&server, &small, &["queued", "running"]).await;
    assert_eq!(v["result"]["outputs"]["out"]["data"], json!([5]), "{v}");
    big["timeout_ms"] = json!(200);
    let (status, _, body) = server.call("POST", "/v1/jobs", Some(big.to_string())).await;
    assert_eq!(status, 504, "admitted once the first is gone: {body}");
    let (_, _, metrics) = server.call("GET", "/metrics", None).await;
    assert!(
        metrics.contains("anycore_memory_held_bytes 0\n"),
        "{metrics}"
    );
    server.stop().await;
}

/// Caps an operator sets: a parameter's largest value (a default counts)
/// and a tensor's largest element count, for jobs and pipelines, each a
/// 422 `over_cap` naming the cap before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_on_parameters_and_elements_are_422s() {
    use anycore::service::caps::Caps;
    let service = ServiceConfig {
        caps: Caps::new(&["mandelbrot.max_iter=1000".into()], Some(1000)).unwrap(),
        ..ServiceConfig::default()
    };
    let server = Server::start_with(8, service).await;
    let mandelbrot = |side: u32, max_iter: u32| json!({"kernel": "mandelbrot", "params": {"width": side, "height": side, "max_iter": max_iter}});
    let post = |path: &'static str, body: Value| {
        let server = &server;
        async move { server.call("POST", path, Some(body.to_string())).await }
    };
    let (status, _, body) = post("/v1/jobs", mandelbrot(10, 1000)).await;
    assert_eq!(status, 200, "at the cap: {body}");
    let (status, _, body) = post("/v1/jobs", mandelbrot(10, 1001)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "over_cap"),
        "{body}"
    );
    assert!(body.contains("cap of 1000"), "{body}");
    let (status, _, body) = post("/v1/jobs", mandelbrot(32, 10)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "over_cap"),
        "{body}"
    );
    assert!(body.contains("output 'out' has 1024 elements"), "{body}");
    let n = 1001;
    let x = json!({"dtype": "f32", "shape": [n], "data": vec![1.0; n]});
    let (status, _, body) = post(
        "/v1/jobs",
        json!({"kernel": "axpy", "inputs": {"x": x, "y": x}}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "over_cap"),
        "{body}"
    );
    assert!(body.contains("an input has 1001 elements"), "{body}");
    let steps = |max_iter: u32| {
        json!({"steps": [{"name": "m", "kernel": "mandelbrot",
                          "params": {"width": 8, "height": 8, "max_iter": max_iter}}],
               "outputs": {"o": {"step": "m", "output": "out"}}})
    };
    let (status, _, body) = post("/v1/pipelines", steps(5000)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "over_cap"),
        "{body}"
    );
    let (status, _, body) = post("/v1/pipelines", steps(500)).await;
    assert_eq!(status, 200, "{body}");
    // A parameter that is an array is refused, naming it, unread.
    let (status, _, body) = post(
        "/v1/jobs",
        json!({"kernel": "axpy", "params": {"a": vec![0; 100]}}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "bad_request"),
        "{body}"
    );
    assert!(body.contains("parameter 'a' to be a number"), "{body}");
    server.stop().await;
}
