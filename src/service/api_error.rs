//! Errors as the API returns them: `{"error": {"code", "message"}}` with a
//! status for each [`Error`], and `Retry-After` on every 503.

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::QueryRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ids::Id;
use crate::error::Error;

/// An error as the API returns it.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error's code (`bad_request`, `busy`, …).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// An error of `status` and `code`, saying `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// Its JSON: `{"error": {"code", "message"}}`.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::BadInput(_) | Error::BadFile { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::NoGpu(_) => (StatusCode::BAD_REQUEST, "no_gpu"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::StoreFull(_) => (StatusCode::INSUFFICIENT_STORAGE, "store_full"),
            Error::OutOfMemory(_) => (StatusCode::INSUFFICIENT_STORAGE, "out_of_memory"),
            Error::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Error::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Error::Cancelled => (StatusCode::CONFLICT, "cancelled"),
            Error::DeadlineExceeded { .. } => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// A query string the route cannot read, as the API's JSON error.
pub fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
}

/// A job's or a stored tensor's id in the path: a JSON 404 when it is not
/// an id at all (no such id can exist).
pub struct PathId(pub Id);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
        text.parse()
            .map(PathId)
            .map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, "not_found", e))
    }
}
