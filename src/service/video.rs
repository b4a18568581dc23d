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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    let (out, output) = mpsc::channel::<Bytes>(CHUNKS);
    // Set when the whole stream went out: the answer ends properly only
    // then (an error, a panic, a client gone: it is cut short).
    let finished = Arc::new(AtomicBool::new(false));
    let (opened, header) = oneshot::channel();
    let engine = state.engine.clone();
    let runtime = tokio::runtime::Handle::current();
    let sink = ChannelWrite {
        chunks: out,
        runtime: runtime.clone(),
        timeout: state.body_timeout,
    };
    let whole = finished.clone();
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
        let mut sink = BufWriter::with_capacity(1 << 20, sink);
        let done = video::process(
            &runner,
            reader,
            &mut sink,
            &chain,
            choice,
            in_flight,
            |_| {},
        )
        .and_then(|_| {
            sink.flush()
                .map_err(|e| Error::Internal(format!("cannot send the stream: {e}")))
        });
        match done {
            Ok(()) => whole.store(true, Ordering::SeqCst),
            Err(e) => log::warn!("a video stream ended early: {e}"),
        }
        // Dropping the sink closes the answer's channel.
        drop((sink, held, stream));
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
            finished,
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
/// `timeout` ends the stream with an error. Once the video thread stops
/// reading (its stream went bad, say) the rest of the body is read and
/// dropped, for at most `timeout` more: a connection closed with request
/// bytes unread is reset, and a reset throws away the frames the client
/// has not yet read.
async fn forward(mut body: Body, chunks: mpsc::Sender<std::io::Result<Bytes>>, timeout: Duration) {
    let mut draining = None;
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
        if let Some(until) = draining {
            if failed || tokio::time::Instant::now() > until {
                return;
            }
            continue;
        }
        if failed {
            let _ = chunks.send(item).await;
            return;
        }
        if chunks.send(item).await.is_err() {
            draining = Some(tokio::time::Instant::now() + timeout);
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
    chunks: mpsc::Sender<Bytes>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl Write for ChannelWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let chunk = Bytes::copy_from_slice(buf);
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

/// How long an answer that ends early keeps its connection before it is
/// cut: hyper aborts a connection on a body's error without sending what
/// it still holds, which would drop whole frames the client should get. A
/// body that waits first lets hyper flush them (it writes out its buffer
/// whenever the body has nothing ready), for a client reading at least
/// about 1 MB/s.
const FLUSH_BEFORE_ERROR: Duration = Duration::from_secs(2);

/// The response body, from the video thread's chunks.
struct ChannelBody {
    chunks: mpsc::Receiver<Bytes>,
    /// Whether the stream went out whole (else its end is an error).
    finished: Arc<AtomicBool>,
    /// The wait before the error that ends an answer cut short.
    ending: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.ending.is_none() {
            match std::task::ready!(self.chunks.poll_recv(cx)) {
                Some(chunk) => return Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk)))),
                None if self.finished.load(Ordering::SeqCst) => return Poll::Ready(None),
                None => self.ending = Some(Box::pin(tokio::time::sleep(FLUSH_BEFORE_ERROR))),
            }
        }
        let wait = self.ending.as_mut().expect("set above");
        std::task::ready!(wait.as_mut().poll(cx));
        Poll::Ready(Some(Err(std::io::Error::other(
            "the video stream ended early (the server's log says why)",
        ))))
    }
}
