//! `POST /v1/video?filter=blur:sigma=2&filter=…[&backend=…][&in_flight=N]`:
//! a YUV4MPEG2 stream as the request body, the filtered stream as the
//! response body, both streamed — the same [`crate::video::process`] as
//! `anycore video`, on a blocking thread, while the service goes on
//! answering other requests.
//!
//! The filters and the stream's header are checked before the answer
//! starts (a 400 names the problem); the frames in flight are held in the
//! memory budget for the whole stream. A client that stops sending for
//! the body timeout, or stops reading, ends its stream. A stream that goes
//! bad after the answer started (a truncated frame) ends the response
//! early, after the frames before it (all of them sent first): a client
//! sees the body cut short (the reason is logged).

use std::io::{BufReader, BufWriter, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use super::AppState;
use super::api_error::ApiError;
use super::budget::Held;
use crate::backend::BackendChoice;
use crate::engine::OnRuntime;
use crate::error::Error;
use crate::tensor::{DType, Spec};
use crate::video::filter::Filter;
use crate::video::y4m::{Header, Reader};
use crate::video::{self, IN_FLIGHT};

/// Frames in flight a request may ask for.
const MAX_IN_FLIGHT: usize = 16;

/// Video streams at once at most (each holds threads and memory for its
/// whole length); more are 503 `busy`.
pub(super) const MAX_STREAMS: usize = 4;

/// Chunks of the request and response bodies queued between the
/// connection and the video thread, at most.
const CHUNKS: usize = 8;

pub(super) async fn post_video(
    State(state): State<AppState>,
    query: Query<Vec<(String, String)>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::from(Error::BadInput(m));
    let mut filters = Vec::new();
    let (mut choice, mut in_flight) = (BackendChoice::Auto, IN_FLIGHT);
    for (key, value) in query.0 {
        match key.as_str() {
            "filter" => filters.push(Filter::parse(&value)?),
            "backend" => choice = BackendChoice::from_name(&value)?,
            "in_flight" => {
                in_flight = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_IN_FLIGHT).contains(n))
                    .ok_or_else(|| {
                        bad(format!("in_flight '{value}': give 1 to {MAX_IN_FLIGHT}"))
                    })?;
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter '{other}' (filter, backend, in_flight)"
                )));
            }
        }
    }
    state.engine.coordinator().check_choice(choice)?;
    let Ok(stream) = state.videos.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{MAX_STREAMS} video streams are running, the most at once; try again soon"),
        ));
    };
    let (chunks, input) = mpsc::channel(CHUNKS);
    tokio::spawn(forward(body, chunks, state.body_timeout));
    let (out, output) = mpsc::channel::<std::io::Result<Bytes>>(CHUNKS);
    let (opened, header) = oneshot::channel();
    let engine = state.engine.clone();
    let runtime = tokio::runtime::Handle::current();
    let sink = ChannelWrite {
        chunks: out.clone(),
        runtime: runtime.clone(),
        timeout: state.body_timeout,
    };
    let chain = filters.clone();
    tokio::task::spawn_blocking(move || {
        let reader = match Reader::new(BufReader::with_capacity(1 << 20, ChannelRead::new(input))) {
            Ok(reader) => reader,
            Err(e) => return drop(opened.send(Err(e))),
        };
        let (held_tx, held_rx) = oneshot::channel::<Held>();
        if opened.send(Ok((reader.header().clone(), held_tx))).is_err() {
            return;
        }
        // Held until the stream ends; refused, the handler answers.
        let Ok(held) = held_rx.blocking_recv() else {
            return;
        };
        let runner = OnRuntime {
            engine: &engine,
            runtime,
        };
        let sink = BufWriter::with_capacity(1 << 20, sink);
        if let Err(e) = video::process(&runner, reader, sink, &chain, choice, in_flight, |_| {}) {
            log::warn!("a video stream ended early: {e}");
            let _ = out.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        drop((held, stream));
    });
    let (header, held_tx) = header
        .await
        .map_err(|_| ApiError::from(Error::Internal("the video thread ended".into())))??;
    within_limits(&state, &header, &filters)?;
    // Frames between reading and writing, each filtered through an f32
    // copy and an output of each plane, and the chunks queued each way.
    let bytes =
        (header.frame_bytes() as u64).saturating_mul(6 * in_flight as u64 + 2 * CHUNKS as u64 + 2);
    let mut held = Held::default();
    state
        .budget
        .hold(&mut held, bytes, "this video's frames in flight")?;
    let _ = held_tx.send(held);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "video/x-yuv4mpeg")],
        Body::new(ChannelBody {
            chunks: output,
            ending: None,
        }),
    )
        .into_response())
}

/// The service's caps and its limit of work per job, for each plane of
/// each frame as a job of each filter.
fn within_limits(state: &AppState, header: &Header, filters: &[Filter]) -> Result<(), ApiError> {
    let mut work = Vec::new();
    for f in filters {
        let params: Vec<(String, String)> = f
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        state.caps.check_params(f.kernel, &params)?;
        for (i, &(h, w)) in header.planes().iter().enumerate() {
            if !f.planes.contains(i) {
                continue;
            }
            let spec = Spec {
                dtype: DType::U8,
                shape: vec![h, w],
            };
            state
                .caps
                .check_elements([(format!("plane {i} of a frame"), &spec)])?;
            work.push((f.kernel, f.plan(h, w)?.work_units));
        }
    }
    super::within_work_limit(state, &work)
}

/// Forwards the request body's chunks to the video thread; a pause past
/// `timeout` ends the stream with an error.
async fn forward(mut body: Body, chunks: mpsc::Sender<std::io::Result<Bytes>>, timeout: Duration) {
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let item = match tokio::time::timeout(timeout, next).await {
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the request body paused for more than {} s",
                    timeout.as_secs_f64()
                ),
            )),
            Ok(None) => return,
            Ok(Some(Err(e))) => Err(std::io::Error::other(e.to_string())),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Ok(data),
                Err(_) => continue, // trailers
            },
        };
        let failed = item.is_err();
        if chunks.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// The request body as a blocking reader, on the video thread.
struct ChannelRead {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelRead {
    fn new(chunks: mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        ChannelRead {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.current = chunk?,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The response body as a blocking writer, on the video thread: a client
/// that goes, or stops reading for `timeout`, makes writes fail, which
/// ends the stream.
struct ChannelWrite {
    chunks: mpsc::Sender<std::io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl Write for ChannelWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let chunk = Ok(Bytes::copy_from_slice(buf));
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(self.timeout, self.chunks.send(chunk)));
        match sent {
            Ok(Ok(())) => Ok(buf.len()),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} s",
                    self.timeout.as_secs_f64()
                ),
            )),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How long an answer that ends in an error keeps its connection before
/// the error cuts it: hyper aborts a connection on a body's error without
/// sending what it still holds, which would drop whole frames the client
/// should get. A body that waits first lets hyper flush them (it writes
/// out its buffer whenever the body has nothing ready).
const FLUSH_BEFORE_ERROR: Duration = Duration::from_millis(200);

/// The response body, from the video thread's chunks.
struct ChannelBody {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    /// The error that ends the answer, and the wait before it is given.
    ending: Option<(std::io::Error, Pin<Box<tokio::time::Sleep>>)>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.ending.is_none() {
            match self.chunks.poll_recv(cx) {
                Poll::Ready(Some(Err(e))) => {
                    let wait = Box::pin(tokio::time::sleep(FLUSH_BEFORE_ERROR));
                    self.ending = Some((e, wait));
                }
                other => return other.map(|chunk| chunk.map(|c| c.map(hyper::body::Frame::data))),
            }
        }
        let (_, wait) = self.ending.as_mut().expect("set above");
        std::task::ready!(wait.as_mut().poll(cx));
        let (e, _) = self.ending.take().expect("set above");
        Poll::Ready(Some(Err(e)))
    }
}
