//! Taking requests in: a body read within a size limit and a deadline,
//! counted against the memory budget as it arrives, and decoded off the
//! async workers when it is large.

use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderMap, StatusCode, header};

use super::api_error::ApiError;
use super::budget::{Budget, Held};
use crate::error::Error;

/// How a request's body is taken in: at most `limit` bytes, within
/// `timeout`, held in `budget`.
#[derive(Clone, Copy)]
pub struct Intake<'a> {
    /// Largest body in bytes (413 past it).
    pub limit: usize,
    /// Longest a body may take to arrive (408 past it).
    pub timeout: Duration,
    /// The memory budget bodies count against.
    pub budget: &'a Budget,
}

/// Reads a request's body ([`read_body`]) and holds, beside it, what
/// decoding it takes ([`decoding_bytes`]) in the memory budget.
pub async fn read_request(
    intake: Intake<'_>,
    headers: &HeaderMap,
    body: Body,
    decoding: Decoding,
) -> Result<(Bytes, Held), ApiError> {
    let mut held = Held::default();
    let body = read_body(&intake, headers, body, &mut held).await?;
    let decoding = decoding_bytes(&body, decoding);
    intake
        .budget
        .hold(&mut held, decoding, "decoding this request")?;
    Ok((body, held))
}

/// How much memory decoding a body takes beside it, per byte.
#[derive(Clone, Copy)]
pub enum Decoding {
    /// A job or a tensor: JSON numbers become f64s and then the input's
    /// own elements (a two-byte number, `0,`, takes 12); base64 becomes
    /// bytes and then a tensor.
    Arrays = 7,
    /// A pipeline: an array inside a step is buffered by serde before it
    /// is known to be one (a step input may be several things), 32 bytes
    /// an element, before it is decoded.
    Buffered = 33,
}

/// Memory a request body takes while it is decoded, beside itself, at
/// most.
pub fn decoding_bytes(body: &[u8], decoding: Decoding) -> u64 {
    (body.len() as u64).saturating_mul(decoding as u64)
}

/// Bodies at least this large are decoded off the async workers.
pub const BLOCKING_BYTES: usize = 64 << 10;

/// Runs `decode` (JSON, base64, `.npy`) on a blocking thread when the body
/// is large, so that other requests (a health check) never wait behind it
/// on the async workers.
pub async fn off_runtime<T: Send + 'static>(
    body: Bytes,
    decode: impl FnOnce(Bytes) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if body.len() < BLOCKING_BYTES {
        return decode(body);
    }
    tokio::task::spawn_blocking(move || decode(body))
        .await
        .map_err(|e| ApiError::from(Error::Panicked(e.to_string())))?
}

/// Bytes of an oversized body read and thrown away before the 413.
const DRAIN_BYTES: usize = 64 << 20;

/// Reads a request body of at most `intake.limit` bytes, within
/// `intake.timeout` (else 408: a client that sends half a body does not
/// hold the connection). Past the limit it reads on, discarding up to
/// [`DRAIN_BYTES`] more, before answering 413: a server that stops reading
/// makes a client still sending see a broken pipe instead of the reason. A
/// body declared (`Content-Length`) larger than that is refused at once,
/// unread.
async fn read_body(
    intake: &Intake<'_>,
    headers: &HeaderMap,
    body: Body,
    held: &mut Held,
) -> Result<Bytes, ApiError> {
    let limit = intake.limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(DRAIN_BYTES) as u64) {
        return Err(too_large(limit));
    }
    // A body counts against the memory budget as it arrives (held from
    // the headers alone, it would let idle clients fill the budget); one
    // declared larger than the whole budget is refused at once.
    if let Some(n) = declared {
        intake
            .budget
            .could_hold(n.min(limit as u64), "this request's body")?;
    }
    let timeout = intake.timeout;
    tokio::time::timeout(timeout, read_within(body, limit, intake.budget, held))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs_f64()
                ),
            ))
        })
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is over this server's limit of {limit} bytes"),
    )
}

/// [`read_body`]'s reading, without the deadline; what is kept is held in
/// `budget` as it grows.
async fn read_within(
    mut body: Body,
    limit: usize,
    budget: &Budget,
    held: &mut Held,
) -> Result<Bytes, ApiError> {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    // Refused by the memory budget partway: read on, discarding, as past
    // the limit, so that the client reads the reason.
    let mut refused = None;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read the request body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit && refused.is_none() {
            if seen as u64 > held.bytes() {
                // In steps of a MiB, not a semaphore call per frame.
                let step = (seen as u64).next_multiple_of(1 << 20).min(limit as u64);
                if let Err(e) = budget.hold(held, step, "this request's body") {
                    refused = Some((e, seen));
                    kept = Vec::new();
                    continue;
                }
            }
            kept.extend_from_slice(&data);
        } else if seen > limit.saturating_add(DRAIN_BYTES)
            || refused
                .as_ref()
                .is_some_and(|(_, at)| seen > at.saturating_add(DRAIN_BYTES))
        {
            break;
        }
    }
    if let Some((e, _)) = refused {
        return Err(e);
    }
    if seen > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(kept))
}
