//! `anycore loadgen`: loads a running `anycore serve` and says how it held
//! up — throughput, latency percentiles, and what each answer was.
//!
//! In the spirit of wrk, oha and Triton's perf_analyzer: a closed loop on
//! each of N keep-alive HTTP/1.1 connections (send a job, wait for its
//! answer, send the next). It must cost little per request, so that it
//! measures the server and not itself: each job's body is serialised once
//! and shared (`Bytes` clones a pointer), answers are read and dropped
//! unparsed, and latencies go into a fixed histogram per connection, merged
//! at the end. Only every K-th answer of a connection is parsed, and
//! compared with the job's outputs computed here once before the run
//! ([`anycore::service::verify`]).
//!
//! Jobs come from a mix file (JSON lines, each a `POST /v1/jobs` body,
//! optionally `{"weight": W, "job": {...}}`), checked up front through the
//! same path from JSON to task that the service takes, or are a 16-element
//! `axpy`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use anycore::coordinator::spec::explain_json;
use anycore::kernel::Outputs;
use anycore::service::api::{JobRequest, JobResponse};
use anycore::service::store::Store;
use anycore::service::verify;
use anycore::{Error, Result};

use super::outln;

/// Options of `anycore loadgen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The service, e.g. http://127.0.0.1:7878; jobs go to URL/v1/jobs.
    #[arg(long)]
    url: String,
    /// Connections, each sending one job after another.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Jobs in all, shared among the connections [default: 10000].
    #[arg(long, conflicts_with = "duration")]
    jobs: Option<u64>,
    /// Seconds to send jobs for, instead of a number of jobs.
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// A JSON-lines file of jobs as posted to /v1/jobs, each line a job or
    /// `{"weight": W, "job": {...}}`; each request picks a line by weight.
    /// Default: a 16-element f32 axpy.
    #[arg(long, value_name = "FILE")]
    mix: Option<PathBuf>,
    /// Check every K-th answer of each connection against the job run here
    /// on the CPU (0: never).
    #[arg(long, value_name = "K", default_value_t = 100)]
    verify_every: u64,
    /// Seconds one request may take; past it, it counts as a transport
    /// error and its connection is replaced.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    timeout_s: f64,
    /// Threads sending requests (1, as wrk's -t1; more if one cannot keep
    /// up with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// A file holding the service's bearer token (`ANYCORE_TOKEN` gives the
    /// token itself).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
}

/// Jobs sent when the run gives neither `--jobs` nor `--duration`.
const DEFAULT_JOBS: u64 = 10_000;

pub fn main(args: Args) -> Result<()> {
    if args.concurrency == 0 || args.threads == 0 {
        return Err(Error::BadInput(
            "--concurrency and --threads take at least 1".into(),
        ));
    }
    let target = Target::parse(&args.url)?;
    let token = super::token(args.token_file.as_deref())?;
    let quota = match (args.jobs, args.duration) {
        (_, Some(s)) => Quota::Until(super::seconds("--duration", s)?),
        (Some(0), _) => return Err(Error::BadInput("--jobs takes at least 1".into())),
        (jobs, None) => Quota::Jobs {
            total: jobs.unwrap_or(DEFAULT_JOBS),
            taken: AtomicU64::new(0),
        },
    };
    let timeout = super::seconds("--timeout-s", args.timeout_s)?;
    let mix = match &args.mix {
        Some(path) => Mix::from_file(path, args.verify_every > 0)?,
        None => Mix::default_axpy(args.verify_every > 0)?,
    };
    let auth = match token {
        Some(token) => Some(
            HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| Error::BadInput(format!("the token cannot be a header: {e}")))?,
        ),
        None => None,
    };
    let runtime = if args.threads == 1 {
        // One thread, as wrk -t1: no hand-offs between threads per request.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| Error::Internal(format!("cannot start a tokio runtime: {e}")))?;
    let report = runtime.block_on(async {
        let addr = target.resolve().await?;
        let shared = Arc::new(Shared {
            mix,
            path: target.path.clone(),
            host: target.host.clone(),
            auth,
            addr,
            quota,
            verify_every: args.verify_every,
            timeout,
            start: Instant::now(),
        });
        let connections: Vec<_> = (0..args.concurrency)
            .map(|i| tokio::spawn(connection(Arc::clone(&shared), i as u64)))
            .collect();
        let mut tally = Tally::default();
        for c in connections {
            let t = c
                .await
                .map_err(|e| Error::Internal(format!("a connection's task failed: {e}")))?;
            tally.merge(t);
        }
        Ok::<_, Error>(Report::new(&args, &tally, shared.start.elapsed()))
    })?;
    report.print(args.json);
    report.verdict()
}

/// Where the jobs go.
struct Target {
    /// `host:port` to connect to.
    connect: String,
    /// The `Host` header.
    host: HeaderValue,
    /// The path of the jobs route (after any prefix the URL has).
    path: Uri,
}

impl Target {
    /// Checks `--url`: plain HTTP, a host, no query.
    fn parse(url: &str) -> Result<Target> {
        super::remote::check_scheme("--url", url)?;
        let bad = |why: &str| Error::BadInput(format!("--url {url}: {why}"));
        let uri: Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "loadgen speaks plain HTTP only; put it beside the service, or behind the \
                 proxy that ends TLS",
            ));
        }
        if uri.query().is_some() {
            return Err(bad("give the service's address without a query"));
        }
        let authority = uri.authority().ok_or_else(|| bad("it names no host"))?;
        let connect = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let path = format!("{}/v1/jobs", uri.path().trim_end_matches('/'));
        Ok(Target {
            connect,
            host: HeaderValue::from_str(authority.as_str()).map_err(|_| bad("bad host"))?,
            path: path.parse().map_err(|_| bad("bad path"))?,
        })
    }

    /// Looks the host up once, so that reconnecting costs no DNS.
    async fn resolve(&self) -> Result<SocketAddr> {
        tokio::net::lookup_host(&self.connect)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| Error::Remote(format!("cannot resolve {}", self.connect)))
    }
}

/// One job of the mix, ready to send many times.
struct MixJob {
    /// The request body, serialised once.
    body: Bytes,
    /// The outputs the job must give, computed here (when verifying).
    expected: Option<Outputs>,
}

/// The jobs to send and how often each is picked.
struct Mix {
    jobs: Vec<MixJob>,
    /// Running sums of the weights, for picking by weight.
    cumulative: Vec<f64>,
}

impl Mix {
    /// A 16-element f32 `axpy` (`out = 2·x + y`).
    fn default_axpy(verify: bool) -> Result<Mix> {
        let x: Vec<f64> = (0..16).map(f64::from).collect();
        let y: Vec<f64> = (0..16).map(|i| 0.5 * f64::from(i) - 3.0).collect();
        let job = serde_json::json!({
            "kernel": "axpy",
            "params": {"a": 2},
            "inputs": {
                "x": {"dtype": "f32", "shape": [16], "data": x},
                "y": {"dtype": "f32", "shape": [16], "data": y},
            },
        });
        let job =
            prepare(job, verify).map_err(|e| Error::Internal(format!("the default job: {e}")))?;
        Ok(Mix {
            jobs: vec![job],
            cumulative: vec![1.0],
        })
    }

    /// The jobs of a mix file; a line that cannot be sent as it is stops the
    /// run before it starts, naming the file and the line.
    fn from_file(path: &Path, verify: bool) -> Result<Mix> {
        let bad = |message: String| Error::BadFile {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read the mix file: {e}")))?;
        let mut mix = Mix {
            jobs: Vec::new(),
            cumulative: Vec::new(),
        };
        let mut total = 0.0;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = |message: String| bad(format!("line {}: {message}", i + 1));
            let (weight, job) = mix_line(line).map_err(at)?;
            mix.jobs
                .push(prepare(job, verify).map_err(|e| at(e.to_string()))?);
            total += weight;
            mix.cumulative.push(total);
        }
        if mix.jobs.is_empty() {
            return Err(bad(
                "holds no jobs (one JSON job per line, as posted to /v1/jobs)".into(),
            ));
        }
        Ok(mix)
    }

    /// A job picked by weight.
    fn pick(&self, rng: &mut SmallRng) -> &MixJob {
        if self.jobs.len() == 1 {
            return &self.jobs[0];
        }
        let total = self.cumulative[self.cumulative.len() - 1];
        let r = rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c <= r);
        &self.jobs[i.min(self.jobs.len() - 1)]
    }
}

/// A mix line's weight and job: a job as posted, or `{"weight", "job"}`.
fn mix_line(line: &str) -> std::result::Result<(f64, serde_json::Value), String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err("not a JSON object".into());
    };
    let Some(job) = fields.remove("job") else {
        return Ok((1.0, serde_json::Value::Object(fields)));
    };
    let weight = match fields.remove("weight") {
        None => 1.0,
        Some(w) => w
            .as_f64()
            .filter(|w| w.is_finite() && *w > 0.0)
            .ok_or_else(|| format!("weight {w}: give a positive number"))?,
    };
    if let Some(other) = fields.keys().next() {
        return Err(format!(
            "unknown field '{other}' beside \"job\" (only \"weight\" goes there)"
        ));
    }
    Ok((weight, job))
}

/// Checks a job through the service's own path (JSON → request → task)
/// and computes its outputs when they will be verified.
fn prepare(job: serde_json::Value, verify: bool) -> Result<MixJob> {
    let body = Bytes::from(serde_json::to_vec(&job).expect("JSON serialises"));
    let request: JobRequest = serde_json::from_value(job)
        .map_err(|e| Error::BadInput(format!("not a valid job: {}", explain_json(&e))))?;
    if !request.keep.is_empty() {
        // Each answer would store its outputs: the run would fill the store.
        return Err(Error::BadInput(
            "\"keep\" stores outputs in the service on every request; leave it out".into(),
        ));
    }
    // No stored tensors here: a `{"tensor": ID}` input is refused, naming it.
    let task = request.into_task(&Store::new(0, 0))?.task;
    Ok(MixJob {
        body,
        expected: verify.then(|| task.run_cpu()),
    })
}

/// How many jobs to send: a number in all, or until a time.
enum Quota {
    Jobs { total: u64, taken: AtomicU64 },
    Until(Duration),
}

/// What every connection reads.
struct Shared {
    mix: Mix,
    path: Uri,
    host: HeaderValue,
    auth: Option<HeaderValue>,
    addr: SocketAddr,
    quota: Quota,
    verify_every: u64,
    timeout: Duration,
    /// When the run began.
    start: Instant,
}

impl Shared {
    /// Whether another job may start.
    fn take(&self) -> bool {
        match &self.quota {
            Quota::Jobs { total, taken } => taken.fetch_add(1, Ordering::Relaxed) < *total,
            Quota::Until(d) => self.start.elapsed() < *d,
        }
    }
}

/// One connection's closed loop: send, wait, read, record; reconnect after
/// a transport error.
async fn connection(shared: Arc<Shared>, index: u64) -> Tally {
    let mut tally = Tally::default();
    let mut rng = SmallRng::seed_from_u64(index);
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut sent = 0u64;
    while shared.take() {
        let job = shared.mix.pick(&mut rng);
        // A connection the server closed between requests is replaced
        // without counting against it: no request was lost on it.
        if sender.as_ref().is_some_and(SendRequest::is_closed) {
            sender = None;
        }
        let open = match sender.as_mut() {
            Some(s) => s,
            None => match tokio::time::timeout(shared.timeout, connect(shared.addr)).await {
                Ok(Ok(s)) => sender.insert(s),
                Ok(Err(e)) => {
                    tally.transport(format!("cannot connect to {}: {e}", shared.addr));
                    // Without a pause a refused connect would spin a core.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => {
                    tally.transport(format!("no connection to {} in time", shared.addr));
                    continue;
                }
            },
        };
        sent += 1;
        let verify = shared.verify_every > 0 && sent.is_multiple_of(shared.verify_every);
        let mut request = Request::new(Full::new(job.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = shared.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, shared.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(auth) = &shared.auth {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        let began = Instant::now();
        let answer = tokio::time::timeout(shared.timeout, exchange(open, request, verify)).await;
        let latency = began.elapsed();
        match answer {
            Ok(Ok((status, body))) => tally.answer(status, latency, body, job, verify),
            Ok(Err(e)) => {
                tally.transport(format!("{e}"));
                sender = None;
            }
            Err(_) => {
                tally.transport(format!("no answer within {:?}", shared.timeout));
                sender = None;
            }
        }
    }
    tally
}

/// A new HTTP/1.1 connection, its driver running on its own task.
async fn connect(addr: SocketAddr) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    // Requests are small and each waits for its answer: Nagle's algorithm
    // would hold them back for the peer's delayed ACK.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    // Its errors come back through the requests sent on it.
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request and reads its answer: kept when it will be parsed (a
/// sampled answer, an error's message), else read and dropped.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    keep: bool,
) -> std::result::Result<(StatusCode, Option<Bytes>), hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    if keep || status != StatusCode::OK {
        return Ok((status, Some(body.collect().await?.to_bytes())));
    }
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok((status, None))
}

/// Answers by outcome. `ok + busy + client_error + server_error +
/// transport` is the number of jobs sent; `wrong` counts the verified `ok`
/// answers whose outputs differ from the job run here.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Counts {
    /// 200.
    ok: u64,
    /// 503: the queue was full (or the service was stopping).
    busy: u64,
    /// Other 4xx: the service refused the job.
    client_error: u64,
    /// Anything else: 5xx but 503, or an unexpected status.
    server_error: u64,
    /// No answer: the connection failed or timed out.
    transport: u64,
    /// Verified answers that differ from the local result.
    wrong: u64,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    counts: Counts,
    /// Latencies of `ok` answers.
    latency: Histogram,
    /// Answers parsed and compared.
    verified: u64,
    /// The first message of each kind of failure.
    first: BTreeMap<&'static str, String>,
}

impl Tally {
    fn transport(&mut self, message: String) {
        self.counts.transport += 1;
        self.first.entry("transport").or_insert(message);
    }

    fn answer(
        &mut self,
        status: StatusCode,
        latency: Duration,
        body: Option<Bytes>,
        job: &MixJob,
        verify: bool,
    ) {
        let kind = match status.as_u16() {
            200 => {
                self.counts.ok += 1;
                self.latency.record(latency);
                if let (true, Some(body), Some(expected)) = (verify, body, &job.expected) {
                    self.verified += 1;
                    let checked = serde_json::from_slice::<JobResponse>(&body)
                        .map_err(|e| format!("not a job result ({e})"))
                        .and_then(|got| verify::check_response(&got, expected));
                    if let Err(why) = checked {
                        self.counts.wrong += 1;
                        self.first.entry("wrong").or_insert(why);
                    }
                }
                return;
            }
            503 => {
                self.counts.busy += 1;
                "busy"
            }
            400..=499 => {
                self.counts.client_error += 1;
                "client_error"
            }
            _ => {
                self.counts.server_error += 1;
                "server_error"
            }
        };
        self.first
            .entry(kind)
            .or_insert_with(|| error_message(status, body.as_deref()));
    }

    fn merge(&mut self, other: Tally) {
        let (a, b) = (&mut self.counts, other.counts);
        a.ok += b.ok;
        a.busy += b.busy;
        a.client_error += b.client_error;
        a.server_error += b.server_error;
        a.transport += b.transport;
        a.wrong += b.wrong;
        self.latency.merge(&other.latency);
        self.verified += other.verified;
        for (kind, message) in other.first {
            self.first.entry(kind).or_insert(message);
        }
    }
}

/// A failed answer in words: its status and the service's message.
fn error_message(status: StatusCode, body: Option<&[u8]>) -> String {
    let body = body.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    format!("{status}: {message}")
}

/// Latencies in nanoseconds, in a fixed log-linear histogram (as HDR
/// histograms do): values below 128 exactly, above it 64 buckets per power
/// of two, so a percentile is within 1.6% of the truth, with no
/// allocation per request and a cheap merge.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_ns: u128,
    max_ns: u64,
}

/// Sub-buckets per power of two, as bits.
const SUB_BITS: u32 = 6;
/// Buckets to cover every `u64`.
const BUCKETS: usize = ((64 - SUB_BITS as usize) << SUB_BITS) + (1 << SUB_BITS);

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl Histogram {
    /// The bucket of `v`.
    fn bucket(v: u64) -> usize {
        if v < 2 << SUB_BITS {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        // The top SUB_BITS + 1 bits, the first always 1.
        let top = (v >> shift) as usize;
        ((shift as usize + 1) << SUB_BITS) + top - (1 << SUB_BITS)
    }

    /// The largest value of bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < 2 << SUB_BITS {
            return i as u64;
        }
        let shift = (i >> SUB_BITS) - 1;
        let top = ((i & ((1 << SUB_BITS) - 1)) + (1 << SUB_BITS)) as u64;
        // In u128: the last bucket's top is 2^64 - 1.
        u64::try_from(((u128::from(top) + 1) << shift) - 1).unwrap_or(u64::MAX)
    }

    fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::bucket(ns)] += 1;
        self.total += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The value at or below which a fraction `q` of the values lie (the
    /// top of its bucket, never past the largest value seen).
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::upper(i).min(self.max_ns));
            }
        }
        Some(self.max_ns)
    }
}

/// Latency percentiles of the `ok` answers, in milliseconds (`null` when
/// there were none).
#[derive(Debug, Serialize)]
struct Latency {
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
}

/// The run's report, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    url: String,
    concurrency: usize,
    threads: usize,
    /// Jobs sent.
    jobs: u64,
    elapsed_s: f64,
    /// `ok` answers per second.
    throughput_jobs_per_s: f64,
    latency_ms: Latency,
    outcomes: Counts,
    /// Answers parsed and compared with the local result.
    verified: u64,
    /// The first message of each kind of failure.
    errors: BTreeMap<&'static str, String>,
}

impl Report {
    fn new(args: &Args, tally: &Tally, elapsed: Duration) -> Report {
        let c = tally.counts;
        // Microseconds are as fine as the histogram is.
        let ms = |ns: f64| (ns / 1e3).round() / 1e3;
        let h = &tally.latency;
        let q = |q: f64| h.quantile(q).map(|ns| ms(ns as f64));
        let elapsed_s = elapsed.as_secs_f64();
        Report {
            url: args.url.clone(),
            concurrency: args.concurrency,
            threads: args.threads,
            jobs: c.ok + c.busy + c.client_error + c.server_error + c.transport,
            elapsed_s,
            throughput_jobs_per_s: c.ok as f64 / elapsed_s.max(1e-9),
            latency_ms: Latency {
                p50: q(0.50),
                p90: q(0.90),
                p99: q(0.99),
                max: (h.total > 0).then(|| ms(h.max_ns as f64)),
                mean: (h.total > 0).then(|| ms(h.sum_ns as f64 / h.total as f64)),
            },
            outcomes: c,
            verified: tally.verified,
            errors: tally.first.clone(),
        }
    }

    fn print(&self, json: bool) {
        if json {
            outln!(
                "{}",
                serde_json::to_string(self).expect("report serialises")
            );
            return;
        }
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        let l = &self.latency_ms;
        let c = &self.outcomes;
        outln!(
            "{} jobs to {} over {} connections ({} thread{}) in {:.2} s",
            self.jobs,
            self.url,
            self.concurrency,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.elapsed_s
        );
        outln!("  throughput  {:.0} jobs/s", self.throughput_jobs_per_s);
        outln!(
            "  latency ms  p50 {}  p90 {}  p99 {}  max {}  mean {}  (of {} ok)",
            show(l.p50),
            show(l.p90),
            show(l.p99),
            show(l.max),
            show(l.mean),
            c.ok
        );
        outln!(
            "  outcomes    ok {}  busy {}  client_error {}  server_error {}  transport {}  \
             wrong {} (of {} verified)",
            c.ok,
            c.busy,
            c.client_error,
            c.server_error,
            c.transport,
            c.wrong,
            self.verified
        );
        for (kind, message) in &self.errors {
            outln!("  first {kind}: {message}");
        }
    }

    /// Ok when every job was answered 200 and every verified answer was
    /// right; else the failure (exit 1), saying what went wrong.
    fn verdict(&self) -> Result<()> {
        let c = &self.outcomes;
        let failed = self.jobs - c.ok;
        if failed == 0 && c.wrong == 0 {
            return Ok(());
        }
        let mut parts = Vec::new();
        for (n, what) in [
            (c.busy, "busy (503)"),
            (c.client_error, "refused (4xx)"),
            (c.server_error, "server errors"),
            (c.transport, "lost to transport errors"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if c.wrong > 0 {
            parts.push(format!(
                "{} of {} verified answers wrong",
                c.wrong, self.verified
            ));
        }
        Err(Error::Remote(format!(
            "{failed} of {} jobs failed: {}",
            self.jobs,
            parts.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for v in (0..1_000_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let b = Histogram::bucket(v);
            assert!(b >= last && b < BUCKETS, "{v} -> {b}");
            assert!(Histogram::upper(b) >= v, "{v} above its bucket {b}");
            // Within 1/64 of the value: the percentiles' precision.
            assert!(Histogram::upper(b) - v <= v >> SUB_BITS, "{v} -> {b}");
            last = b;
        }
        assert_eq!(Histogram::bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_ordered_and_near_the_truth() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((p50 as f64 / 500_000.0 - 1.0).abs() < 0.02, "{p50}");
        assert!((p99 as f64 / 990_000.0 - 1.0).abs() < 0.02, "{p99}");
        assert!(p99 <= h.quantile(1.0).unwrap() && h.quantile(1.0).unwrap() == 1_000_000);
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn mix_lines_take_a_job_or_a_weighted_job() {
        assert_eq!(mix_line(r#"{"kernel": "axpy"}"#).unwrap().0, 1.0);
        assert_eq!(
            mix_line(r#"{"weight": 3, "job": {"kernel": "axpy"}}"#)
                .unwrap()
                .0,
            3.0
        );
        for bad in [
            r#"{"weight": 0, "job": {}}"#,
            r#"{"weight": "x", "job": {}}"#,
            r#"{"job": {}, "other": 1}"#,
            "[1]",
            "{",
        ] {
            assert!(mix_line(bad).is_err(), "{bad}");
        }
    }
}
