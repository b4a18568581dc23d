//! `anycore run --server URL`: the job goes to a running `anycore serve`
//! over HTTP instead of running here. Arrays travel as base64 `.npy`.

use std::collections::BTreeMap;

use anycore::kernel::{Job, Outputs};
use anycore::service::api::{self, JobRequest, JobResponse, OutputForm};
use anycore::{Error, Result};

/// The request for `job`, outputs asked for as `.npy`.
pub fn request(job: &Job, backend: &str) -> JobRequest {
    JobRequest {
        kernel: job.kernel.name().to_owned(),
        params: job
            .params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
        backend: Some(backend.to_owned()),
        inputs: job
            .inputs
            .iter()
            .filter_map(|(k, t)| Some((k.clone(), api::encode_npy(&t.to_tensor()?))))
            .collect(),
        outputs: OutputForm::Npy,
        timeout_ms: None,
        keep: Vec::new(),
    }
}

/// Refuses a service URL (given to `flag`) without its scheme, which
/// would otherwise fail later as an unreachable host.
pub fn check_scheme(flag: &str, url: &str) -> Result<()> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "{flag} {url}: give the scheme too, e.g. http://{url}"
        )))
    }
}

/// Posts the job and waits for its result. A 4xx answer is the job's fault
/// (exit 2, with the server's message); anything else is a failure.
pub fn post(url: &str, request: &JobRequest) -> Result<JobResponse> {
    check_scheme("--server", url)?;
    let endpoint = format!("{}/v1/jobs", url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let body = serde_json::to_string(request).expect("request serialises");
    let mut request = agent
        .post(&endpoint)
        .header("content-type", "application/json");
    // A service that needs a token gets the one in ANYCORE_TOKEN.
    if let Ok(token) = std::env::var("ANYCORE_TOKEN") {
        request = request.header("authorization", format!("Bearer {}", token.trim()));
    }
    let mut response = request
        .send(body)
        .map_err(|e| Error::Remote(format!("cannot reach {endpoint}: {e}")))?;
    let status = response.status();
    let text = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .map_err(|e| Error::Remote(format!("reading the answer from {endpoint}: {e}")))?;
    if status.is_success() {
        return serde_json::from_str(&text).map_err(|e| {
            Error::Remote(format!(
                "{endpoint} answered something else than a job result: {e}"
            ))
        });
    }
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    if status.is_client_error() {
        Err(Error::BadInput(format!(
            "{endpoint} refused the job ({status}): {message}"
        )))
    } else {
        Err(Error::Remote(format!(
            "{endpoint} failed ({status}): {message}"
        )))
    }
}

/// The response's arrays.
pub fn outputs(response: &JobResponse) -> Result<Outputs> {
    let mut out = BTreeMap::new();
    for (name, array) in &response.outputs {
        out.insert(name.clone(), api::decode_npy(array)?);
    }
    Ok(out)
}
