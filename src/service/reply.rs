//! Sending answers: JSON encoded off the async workers when large, and a
//! body that keeps its memory held until the client has taken it.

use std::pin::Pin;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::api::OutputForm;
use super::api_error::ApiError;
use super::budget::Held;
use super::intake::BLOCKING_BYTES;
use crate::error::Error;
use crate::tensor::Spec;

/// A response's JSON, encoded off the async workers when it is expected to
/// be large (`expected` bytes), so that other requests never wait behind
/// it.
pub async fn encode<T: serde::Serialize>(
    build: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    expected: u64,
) -> Result<Bytes, ApiError> {
    // Built there too: `.npy` outputs are encoded as the answer is built.
    let encode = move || {
        serde_json::to_vec(&build()?)
            .map(Bytes::from)
            .map_err(|e| ApiError::from(Error::Internal(format!("cannot encode the answer: {e}"))))
    };
    if expected < BLOCKING_BYTES as u64 {
        return encode();
    }
    tokio::task::spawn_blocking(encode)
        .await
        .map_err(|e| ApiError::from(Error::Panicked(e.to_string())))?
}

/// The 202 of a job posted with `wait=false`: its id, to poll.
pub fn queued(id: super::ids::Id) -> Response {
    (
        axum::http::StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"id": id, "status": "queued"})),
    )
        .into_response()
}

/// A 200 with encoded JSON.
pub fn json_body(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A 200 with encoded JSON that keeps holding `held` until hyper has
/// taken it all: an answer a slow client has not read yet still counts.
pub fn held_json_body(body: Bytes, held: Held) -> Response {
    let body = HeldBody {
        bytes: Some(body),
        _held: Some(held),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::new(body),
    )
        .into_response()
}

/// A response body of one chunk that holds part of the memory budget
/// until it is dropped.
struct HeldBody {
    bytes: Option<Bytes>,
    /// Dropped with the body: after hyper polls past the chunk, which it
    /// does once the chunk is written out (or the connection is gone).
    _held: Option<Held>,
}

impl HttpBody for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let frame = self.bytes.take().map(|b| Ok(hyper::body::Frame::data(b)));
        if frame.is_none() {
            self._held = None;
        }
        std::task::Poll::Ready(frame)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// Memory an answer giving outputs of `specs` in `form` takes as it is
/// encoded: inline, up to 16 bytes of JSON an element; as `.npy`, the file
/// and its base64.
pub fn answer_bytes<'s>(specs: impl Iterator<Item = &'s Spec>, form: OutputForm) -> u64 {
    specs.fold(0u64, |n, spec| {
        let elements = spec.bytes() / spec.dtype.size() as u64;
        let bytes = match form {
            OutputForm::Inline => elements.saturating_mul(16),
            OutputForm::Npy => spec.bytes().saturating_mul(7) / 3,
        };
        n.saturating_add(bytes)
    })
}
