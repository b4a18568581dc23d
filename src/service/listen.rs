//! The accept loop: HTTP/1.1 connections served by hyper with the bounds
//! `axum::serve` does not set — a deadline for a request's headers (which
//! also closes a kept-alive connection left idle that long), a cap on
//! their size, a cap on open connections (past it, new ones wait in the
//! kernel's backlog) — and a graceful shutdown that closes idle
//! connections and lets requests in progress finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

/// Headers (with the request line) past this many bytes are refused by
/// hyper itself, a plain 431 that closes the connection. Below it, the
/// router's own check answers a JSON 431 ([`super::guard`]).
const HARD_HEADER_BYTES: usize = 256 << 10;

/// Headers hyper parses at most, past which it answers a plain 431.
const HARD_HEADERS: usize = 1000;

/// Accepts connections on `listener` and serves `app` on each until
/// `shutdown` completes; then stops accepting and returns what stops the
/// open connections (see [`Connections::close`]).
pub(crate) async fn accept(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) -> Connections {
    let open = Arc::new(Semaphore::new(
        max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(HARD_HEADER_BYTES)
        .max_headers(HARD_HEADERS)
        .max_buf_size(2 * HARD_HEADER_BYTES);
    tokio::pin!(shutdown);
    loop {
        // A place among the open connections first: past the cap, new ones
        // wait in the listen backlog instead of each holding buffers here.
        let place = tokio::select! {
            place = Arc::clone(&open).acquire_owned() => match place {
                Ok(place) => place,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small answers go out at once, not after Nagle's wait.
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(app.clone());
                    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            log::debug!("connection: {e}");
                        }
                        drop(place);
                    });
                }
                // Out of file descriptors (or a connection reset before it
                // was accepted): wait a little instead of spinning.
                Err(e) => {
                    log::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    Connections(graceful)
}

/// The connections still open once accepting stopped.
pub(crate) struct Connections(GracefulShutdown);

impl Connections {
    /// Closes idle connections at once and the others as soon as their
    /// request in progress is answered; completes when all are closed.
    pub async fn close(self) {
        self.0.shutdown().await;
    }
}
