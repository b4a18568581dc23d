//! Who may call the service, checked before any route runs.
//!
//! - **Token.** With a token configured (`serve --token-file`,
//!   `ANYCORE_TOKEN`), every route but `/v1/health` needs `Authorization:
//!   Bearer TOKEN`, compared in constant time; else 401.
//! - **Browsers.** A request with an `Origin` header comes from a web page;
//!   it is refused (403) unless that origin was allowed (`--cors ORIGIN`),
//!   so no page a user visits can drive the service. A POST body must say
//!   what it is (`application/json`, `application/octet-stream` for a
//!   `.npy` to `/v1/tensors`, `video/x-yuv4mpeg` or
//!   `application/octet-stream` for a stream to `/v1/video`; else 415): the
//!   types a page's plain form cannot send.
//! - **Host.** A service bound to loopback answers only requests addressed
//!   to a loopback name (`localhost`, `127.0.0.1`, `[::1]`), so a DNS name
//!   rebound to 127.0.0.1 by a hostile page gets 403.
//! - **Size.** A request line and headers over [`HEADER_BYTES`] are a 431
//!   (far larger ones never reach here: hyper refuses them, see
//!   `listen.rs`).
//!
//! Requests no route takes get the API's JSON errors too (404, 405).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api_error::ApiError;

/// What the guard lets in.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The bearer token every route but the health check needs, if any.
    pub token: Option<String>,
    /// The one web origin allowed to call (CORS), if any.
    pub cors: Option<String>,
    /// Answer only requests addressed to a loopback name (the service is
    /// bound to loopback).
    pub loopback_hosts: bool,
}

/// Bytes of a request's line and headers at most (a JSON 431 past them).
pub const HEADER_BYTES: usize = 64 << 10;

/// The checks, in order: host, origin, token, body type.
pub async fn check(
    State(access): State<std::sync::Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    // Counted without formatting the URI: this runs on every request.
    let uri = request.uri();
    let head_bytes = uri.path().len()
        + uri.query().map_or(0, str::len)
        + headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head_bytes > HEADER_BYTES {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!(
                "the request's line and headers are {head_bytes} bytes, over this server's \
                 limit of {HEADER_BYTES}"
            ),
        );
    }
    if access.loopback_hosts
        && let Some(host) = headers.get(header::HOST)
        && !is_loopback_host(host)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            "this service answers only requests addressed to localhost, 127.0.0.1 or [::1]",
        );
    }
    let origin = headers.get(header::ORIGIN).cloned();
    if let Some(origin) = &origin
        && access.cors.as_deref().map(str::as_bytes) != Some(origin.as_bytes())
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "requests from web pages are refused (serve --cors ORIGIN allows one origin)",
        );
    }
    if origin.is_some() && request.method() == Method::OPTIONS {
        // A preflight from the allowed origin.
        return allow_origin(StatusCode::NO_CONTENT.into_response(), origin);
    }
    if let Some(token) = &access.token
        && request.uri().path() != "/v1/health"
        && !bearer_matches(headers.get(header::AUTHORIZATION), token)
    {
        let mut response = refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this service needs a token: send the header 'Authorization: Bearer TOKEN'",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    if request.method() == Method::POST && !body_type_allowed(&request) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body with 'Content-Type: application/json' (or \
             'application/octet-stream' for .npy bytes to /v1/tensors, 'video/x-yuv4mpeg' for \
             a stream to /v1/video)",
        );
    }
    allow_origin(next.run(request).await, origin)
}

/// `404` for a path no route has, as the API's JSON error.
pub async fn not_found(request: Request) -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no route {} (the API is under /v1)", request.uri().path()),
    )
}

/// `405` for a method a route does not take, as the API's JSON error.
pub async fn method_not_allowed(request: Request) -> Response {
    refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!(
            "{} does not take {}",
            request.uri().path(),
            request.method()
        ),
    )
}

fn refuse(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// The response, marked readable by `origin` when one was allowed.
fn allow_origin(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE"),
        );
    }
    response
}

/// `localhost`, `127.0.0.1` or `[::1]`, with or without a port.
fn is_loopback_host(host: &HeaderValue) -> bool {
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        // `[::1]:7878`, `127.0.0.1:7878`, `localhost:7878`; a bare `[::1]`.
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(
        name.to_ascii_lowercase().as_str(),
        "localhost" | "127.0.0.1" | "[::1]"
    )
}

/// Whether the header is `Bearer TOKEN`, compared without an early exit
/// (the time taken does not tell how much of a guess was right).
fn bearer_matches(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.as_bytes().strip_prefix(b"Bearer ")) else {
        return false;
    };
    let want = token.as_bytes();
    let differ = given.len() ^ want.len();
    let mut diff = u8::from(differ != 0);
    for (i, &w) in want.iter().enumerate() {
        diff |= w ^ given.get(i).copied().unwrap_or(!w);
    }
    diff == 0
}

/// Whether a POST says its body is JSON (or `.npy` bytes, where raw
/// arrays are taken).
fn body_type_allowed(request: &Request) -> bool {
    let Some(kind) = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let kind = kind
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let path = request.uri().path();
    kind == "application/json"
        || (path == "/v1/tensors" && kind == "application/octet-stream")
        || (path == "/v1/video"
            && matches!(
                kind.as_str(),
                "video/x-yuv4mpeg" | "application/octet-stream"
            ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_only() {
        for ok in [
            "localhost",
            "localhost:7878",
            "127.0.0.1:1",
            "[::1]:80",
            "[::1]",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7878",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "",
        ] {
            assert!(!is_loopback_host(&HeaderValue::from_static(bad)), "{bad}");
        }
    }

    #[test]
    fn tokens_match_whole() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(bearer_matches(Some(&h("Bearer s3cret")), "s3cret"));
        for bad in [
            "Bearer s3cre",
            "Bearer s3crett",
            "Bearer S3cret",
            "s3cret",
            "Bearer ",
            "Basic s3cret",
        ] {
            assert!(!bearer_matches(Some(&h(bad)), "s3cret"), "{bad}");
        }
        assert!(!bearer_matches(None, "s3cret"));
    }
}
