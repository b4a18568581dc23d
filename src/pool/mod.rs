//! Several machines: jobs through NATS JetStream, run by `anycore worker`
//! processes wherever they are, instead of a scheduler of our own.
//!
//! - **Jobs** go on the work-queue stream [`JOBS`] under
//!   `jobs.<class>.<kernel>`, the class saying who may run them: `gpu`,
//!   `cpu` or `any`. Each class has one shared pull consumer; a worker with
//!   a usable GPU pulls from `gpu` and `any`, a CPU-only worker from `cpu`
//!   and `any`, each only as many messages as it has free slots. A job's
//!   id is its message id: the stream drops a resubmission.
//! - **Results** go in the key-value bucket [`RESULTS`] under the job's
//!   id, stored before the job's message is acknowledged; a redelivered
//!   job whose result is there is acknowledged without running again. So
//!   a job runs at least once and takes effect once.
//! - **Arrays** travel inline as base64 `.npy` while a message stays well
//!   under the server's `max_payload`, and through the object store
//!   [`ARRAYS`] past that.
//! - **Failures**: bad input is refused at once (its result says why, no
//!   retry); another failure is retried after a delay, up to the
//!   consumer's `max_deliver` attempts, after which the job goes to the
//!   dead-letter stream [`DEAD`] and its result says so. A worker killed
//!   mid-job leaves the message unacknowledged: it is delivered again
//!   after the ack wait. Long jobs tell the server they are in progress.

pub mod front;
pub mod metrics;
pub mod remote;
pub mod roster;
pub mod wire;
pub mod worker;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use self::wire::{PoolJob, PoolResult, WireArray, check_id};
use crate::coordinator::spec::PipelineSpec;
use crate::error::{Error, Result};
use crate::tensor::{Tensor, npy};

/// The work-queue stream of jobs (`jobs.<class>.<kernel>`).
pub const JOBS: &str = "ANYCORE_JOBS";
/// The stream of jobs that failed every attempt (`dead.<kernel>`).
pub const DEAD: &str = "ANYCORE_DEAD";
/// The key-value bucket of results, by job id.
pub const RESULTS: &str = "anycore_results";
/// The object store of large arrays.
pub const ARRAYS: &str = "anycore_arrays";

/// Bytes of a message left for its subject and headers when an array's
/// chunk fills the rest.
const CHUNK_HEADROOM: usize = 4 << 10;

/// Who may take a job: the consumers of the job stream, one per class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Only a worker with a usable GPU.
    Gpu,
    /// Only a worker without one (or told to use the CPU).
    Cpu,
    /// Any worker.
    Any,
}

impl Class {
    /// The class of a job asking for `backend` (`gpu`, `cpu`, `auto` or
    /// none).
    pub fn of(backend: Option<&str>) -> Result<Class> {
        match backend {
            Some("gpu") => Ok(Class::Gpu),
            Some("cpu") => Ok(Class::Cpu),
            None | Some("auto") => Ok(Class::Any),
            Some(other) => Err(Error::BadInput(format!(
                "unknown backend '{other}' (use auto, gpu or cpu)"
            ))),
        }
    }

    /// Its name: the consumer's, and the subject's second token.
    pub fn name(self) -> &'static str {
        match self {
            Class::Gpu => "gpu",
            Class::Cpu => "cpu",
            Class::Any => "any",
        }
    }
}

/// How to reach the pool, and the limits it is created with.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// How long a delivered job may go without an acknowledgement (or a
    /// sign of progress) before it is delivered again.
    pub ack_wait: Duration,
    /// Deliveries of a job at most before it is dead-lettered.
    pub max_deliver: i64,
    /// Jobs the stream holds at most; past it a submission is refused
    /// (busy).
    pub max_jobs: i64,
    /// Bytes the stream holds at most, likewise.
    pub max_bytes: i64,
}

impl PoolConfig {
    /// The defaults for a server at `url`.
    pub fn new(url: &str) -> PoolConfig {
        PoolConfig {
            url: url.to_owned(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 4,
            max_jobs: 100_000,
            max_bytes: 1 << 30,
        }
    }
}

/// A NATS URL as it may be shown: without its credentials (with a
/// scheme or without).
pub fn redacted(url: &str) -> String {
    let Some((before, host)) = url.rsplit_once('@') else {
        return url.to_owned();
    };
    match before.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://***@{host}"),
        None => format!("***@{host}"),
    }
}

/// A NATS error, said the pool's way.
fn nats(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("NATS: {what}: {e}"))
}

/// The key-value bucket `name`, made if missing, whose entries last
/// `max_age`.
async fn bucket(js: &jetstream::Context, name: &str, max_age: Duration) -> Result<kv::Store> {
    // A bucket is a stream of a known shape (NATS ADR-8), made here as
    // `create_key_value` would make it: that call first reads the
    // account's info, whose reply from nats-server 2.9 (Debian 12's)
    // async-nats 0.51 cannot parse.
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| nats(&format!("cannot create the bucket {name}"), e))?;
    js.get_key_value(name)
        .await
        .map_err(|e| nats(&format!("cannot open the bucket {name}"), e))
}

/// A connection to the pool: the job stream, the results, the arrays.
#[derive(Clone)]
pub struct Pool {
    js: jetstream::Context,
    results: kv::Store,
    workers: kv::Store,
    arrays: object_store::ObjectStore,
    config: PoolConfig,
    /// Bytes of arrays a message carries inline at most.
    inline_bytes: usize,
    /// Bytes a message may have at most (the server's `max_payload`).
    max_payload: usize,
    /// The job stream's limits as made (by whoever made it first): jobs,
    /// bytes.
    limits: (i64, i64),
}

impl Pool {
    /// Connects, and creates the streams, bucket and store where they are
    /// missing (file storage: they outlive a server restart).
    pub async fn connect(config: PoolConfig) -> Result<Pool> {
        // Connected before it returns (no retry on the first connect): the
        // server's `max_payload` is known, and a wrong URL says so at once.
        let shown = redacted(&config.url);
        let addr: async_nats::ServerAddr = config
            .url
            .parse()
            .map_err(|e| Error::BadInput(format!("--nats {shown}: not a NATS URL ({e})")))?;
        let mut options =
            async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
        // Credentials in the URL (`nats://USER:PASS@HOST`, `nats://TOKEN@HOST`),
        // which async-nats 0.51 parses but does not send.
        let decoded = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        options = match (addr.username(), addr.password()) {
            (Some(user), Some(pass)) => options.user_and_password(decoded(user), decoded(pass)),
            (Some(token), None) => options.token(decoded(token)),
            _ => options,
        };
        let client = options
            .connect(addr)
            .await
            .map_err(|e| nats(&format!("cannot connect to {shown}"), e))?;
        // Base64 takes 4/3; a third of the payload is left for the rest.
        let max_payload = client.server_info().max_payload;
        let inline_bytes = max_payload / 2;
        let js = jetstream::new(client);
        let jobs = js
            .get_or_create_stream(stream::Config {
                name: JOBS.into(),
                subjects: vec!["jobs.>".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                max_messages: config.max_jobs,
                max_bytes: config.max_bytes,
                discard: stream::DiscardPolicy::New,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| nats("cannot create the job stream", e))?;
        let made = &jobs.cached_info().config;
        let limits = (made.max_messages, made.max_bytes);
        js.get_or_create_stream(stream::Config {
            name: DEAD.into(),
            subjects: vec!["dead.>".into()],
            storage: stream::StorageType::File,
            max_bytes: config.max_bytes,
            ..Default::default()
        })
        .await
        .map_err(|e| nats("cannot create the dead-letter stream", e))?;
        let results = bucket(&js, RESULTS, Duration::from_secs(24 * 3600)).await?;
        let workers = bucket(&js, roster::WORKERS, roster::FORGET_AFTER).await?;
        let arrays = match js.get_object_store(ARRAYS).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: ARRAYS.into(),
                    max_age: Duration::from_secs(24 * 3600),
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| nats("cannot create the array store", e))?,
        };
        Ok(Pool {
            js,
            results,
            workers,
            arrays,
            config,
            inline_bytes,
            max_payload,
            limits,
        })
    }

    /// The pull consumer of `class`, shared by every worker that takes it.
    pub async fn consumer(&self, class: Class) -> Result<consumer::PullConsumer> {
        let stream = self
            .js
            .get_stream(JOBS)
            .await
            .map_err(|e| nats("cannot open the job stream", e))?;
        stream
            .get_or_create_consumer(
                class.name(),
                consumer::pull::Config {
                    durable_name: Some(class.name().into()),
                    filter_subject: format!("jobs.{}.>", class.name()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    // One more than the attempts: a job whose worker died
                    // on its last attempt comes once more, to be
                    // dead-lettered unrun (`worker::Worker::handle`).
                    max_deliver: self.config.max_deliver.saturating_add(1),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| nats(&format!("cannot open the '{}' consumer", class.name()), e))
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The job stream's limits as it was made (perhaps by another
    /// process, with other settings): jobs, bytes.
    pub fn limits(&self) -> (i64, i64) {
        self.limits
    }

    /// Arrays for a message: inline while they fit in what a message
    /// carries, the rest stored as objects named `{prefix}.{name}`.
    pub async fn encode(
        &self,
        prefix: &str,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<BTreeMap<String, WireArray>> {
        let mut left = self.inline_bytes;
        let mut out = BTreeMap::new();
        for (name, tensor) in tensors {
            let bytes = tensor.spec().bytes() as usize + 128;
            let wire = if bytes <= left {
                left -= bytes;
                WireArray::inline(tensor)
            } else {
                let object = format!("{prefix}.{name}");
                let data = npy::to_bytes(tensor);
                // Chunks as large as a message may be (async-nats's
                // default is 128 KiB): each is a publish awaiting its ack.
                let meta = object_store::ObjectMetadata {
                    name: object.clone(),
                    chunk_size: Some(
                        self.max_payload
                            .saturating_sub(CHUNK_HEADROOM)
                            .max(64 << 10),
                    ),
                    ..Default::default()
                };
                if let Err(e) = self.arrays.put(meta, &mut data.as_slice()).await {
                    // None left behind: those stored so far go too.
                    self.delete_objects(out.values()).await;
                    return Err(nats(&format!("cannot store array '{name}'"), e));
                }
                WireArray::stored(tensor, object)
            };
            out.insert(name.clone(), wire);
        }
        Ok(out)
    }

    /// The tensor an array on the wire stands for, fetched from the object
    /// store if it is there; `what` names it in errors (`array 'x'`,
    /// `step 's' input 'x'`).
    pub async fn decode(&self, what: &str, wire: &WireArray) -> Result<Tensor> {
        let Some(object) = &wire.object else {
            return wire.decode(what, None);
        };
        let mut reader = self.arrays.get(object.as_str()).await.map_err(|e| {
            let why = format!("{what}: object '{object}' cannot be read ({e})");
            match e.kind() {
                object_store::GetErrorKind::NotFound | object_store::GetErrorKind::InvalidName => {
                    Error::BadInput(why)
                }
                _ => nats("reading an array", why),
            }
        })?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| nats(&format!("cannot read {what}"), e))?;
        wire.decode(what, Some(bytes))
    }

    /// A pipeline's arrays for a message ([`Pool::encode`]'s way), its
    /// objects named `{prefix}.iN`.
    pub async fn encode_pipeline(
        &self,
        prefix: &str,
        spec: PipelineSpec<Tensor>,
    ) -> Result<PipelineSpec<WireArray>> {
        let mut tensors = BTreeMap::new();
        let keyed = spec.try_map_inputs(|_, tensor| {
            let key = format!("i{}", tensors.len());
            tensors.insert(key.clone(), tensor);
            Ok::<_, Error>(key)
        })?;
        let mut wires = self.encode(prefix, &tensors).await?;
        drop(tensors);
        keyed.try_map_inputs(|name, key| {
            wires
                .remove(&key)
                .ok_or_else(|| Error::Internal(format!("{name}: not encoded")))
        })
    }

    /// A pipeline's tensors, fetched ([`Pool::decode`] for each).
    pub async fn decode_pipeline(
        &self,
        spec: PipelineSpec<WireArray>,
    ) -> Result<PipelineSpec<Tensor>> {
        let mut wires = Vec::new();
        let keyed = spec.try_map_inputs(|name, wire| {
            wires.push((name.to_owned(), wire));
            Ok::<_, Error>(wires.len() - 1)
        })?;
        let mut tensors = Vec::with_capacity(wires.len());
        for (name, wire) in &wires {
            tensors.push(Some(self.decode(name, wire).await?));
        }
        keyed.try_map_inputs(|name, i| {
            tensors[i]
                .take()
                .ok_or_else(|| Error::Internal(format!("{name}: decoded twice")))
        })
    }

    /// Puts a job on the stream for the workers of its class; busy when
    /// the stream is full.
    pub async fn submit(&self, job: &PoolJob) -> Result<()> {
        check_id(&job.id)?;
        let class = Class::of(job.backend.as_deref())?;
        let subject = format!("jobs.{}.{}", class.name(), job.kernel);
        let payload = serde_json::to_vec(job).expect("a job serialises");
        if payload.len() > self.max_payload {
            return Err(Error::BadInput(format!(
                "job {}: its message is {} bytes, over the NATS server's max_payload of {} \
                 (fewer steps or parameters)",
                job.id,
                payload.len(),
                self.max_payload
            )));
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(job.id.as_str());
        let ack = self
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| nats("cannot submit a job", e))?;
        ack.await.map_err(|e| {
            let text = e.to_string();
            if text.contains("maximum") {
                Error::Busy
            } else {
                nats("the job was not accepted", text)
            }
        })?;
        Ok(())
    }

    /// A job's result, if it is stored.
    pub async fn result(&self, id: &str) -> Result<Option<PoolResult>> {
        let entry = self
            .results
            .get(id)
            .await
            .map_err(|e| nats("cannot read a result", e))?;
        entry
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| nats("a stored result is not valid", e))
            })
            .transpose()
    }

    /// Waits for a job's result, however long; a watch that fails (the
    /// server restarting) is made again.
    pub async fn wait(&self, id: &str) -> Result<PoolResult> {
        loop {
            match self.watch_once(id).await {
                Ok(Some(result)) => return Ok(result),
                Ok(None) => {}
                Err(e) => log::warn!("waiting for job {id}: {e}; watching again"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One watch for a job's result: the result, or `None` if the watch
    /// ended without it.
    async fn watch_once(&self, id: &str) -> Result<Option<PoolResult>> {
        // Watch first, then look: a result stored in between is seen by
        // one or the other.
        let mut watch = self
            .results
            .watch(id)
            .await
            .map_err(|e| nats("cannot watch for a result", e))?;
        if let Some(result) = self.result(id).await? {
            return Ok(Some(result));
        }
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| nats("watching for a result", e))?;
            if entry.operation == kv::Operation::Put {
                return serde_json::from_slice(&entry.value)
                    .map(Some)
                    .map_err(|e| nats("a stored result is not valid", e));
            }
        }
        Ok(None)
    }

    /// Deletes the objects a job's arrays were stored as, once its result
    /// was read (a dead-lettered job's inputs are kept, for a look).
    pub async fn forget(&self, job: &PoolJob, result: &PoolResult) {
        self.forget_inputs(&job.arrays(), result).await;
        self.delete_objects(result.outputs.values()).await;
    }

    /// Deletes the objects of a finished job's inputs (not a dead-lettered
    /// one's: they are kept, for a look).
    pub async fn forget_inputs(&self, inputs: &[&WireArray], result: &PoolResult) {
        if result.status != wire::Status::DeadLetter {
            self.delete_objects(inputs.iter().copied()).await;
        }
    }

    /// Deletes the objects of `arrays` that were stored.
    pub async fn delete_objects<'a>(&self, arrays: impl Iterator<Item = &'a WireArray>) {
        for wire in arrays {
            if let Some(object) = &wire.object
                && let Err(e) = self.arrays.delete(object.as_str()).await
            {
                log::warn!("deleting array {object}: {e}");
            }
        }
    }

    /// Jobs waiting on the job stream (queued, or delivered and not yet
    /// acknowledged).
    pub async fn waiting(&self) -> Result<u64> {
        self.stream_messages(JOBS).await
    }

    /// Stores a job's result (before its message is acknowledged).
    pub async fn store(&self, result: &PoolResult) -> Result<()> {
        let bytes = serde_json::to_vec(result).expect("a result serialises");
        self.results
            .put(result.id.as_str(), bytes.into())
            .await
            .map_err(|e| nats("cannot store a result", e))?;
        Ok(())
    }

    /// Jobs on the dead-letter stream.
    pub async fn dead_lettered(&self) -> Result<u64> {
        self.stream_messages(DEAD).await
    }

    async fn stream_messages(&self, name: &str) -> Result<u64> {
        let mut stream = self
            .js
            .get_stream(name)
            .await
            .map_err(|e| nats(&format!("cannot open the stream {name}"), e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| nats(&format!("cannot read the stream {name}"), e))?;
        Ok(info.state.messages)
    }

    /// Puts a job that failed every attempt on the dead-letter stream,
    /// with why.
    pub async fn dead_letter(&self, kernel: &str, payload: Vec<u8>, why: &str) -> Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Anycore-Reason", why.replace(['\r', '\n'], " ").as_str());
        let ack = self
            .js
            .publish_with_headers(format!("dead.{kernel}"), headers, payload.into())
            .await
            .map_err(|e| nats("cannot dead-letter a job", e))?;
        ack.await.map_err(|e| nats("cannot dead-letter a job", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn credentials_are_not_shown() {
        assert_eq!(redacted("nats://u:p@h:4222"), "nats://***@h:4222");
        assert_eq!(redacted("nats://tok@h"), "nats://***@h");
        assert_eq!(redacted("nats://h:4222"), "nats://h:4222");
        assert_eq!(redacted("u:p@h:4222"), "***@h:4222");
        assert_eq!(redacted("nats://u:p@ss@h"), "nats://***@h");
    }
}
