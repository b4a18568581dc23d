//! A service under test: `anycore::service::serve` in this process on
//! 127.0.0.1:0, and a blocking client for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anycore::coordinator::cost::CostModel;
use anycore::engine::{CostModelSource, Engine, EngineConfig};
use anycore::service::{ServiceConfig, serve};
use tokio::sync::oneshot;

/// `anycore::service::serve` on 127.0.0.1:0, in this process, and a client
/// for it (each call bounded, so a server that never answers fails the
/// test instead of hanging it).
pub struct Server {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// A CPU-only engine of one thread, at most `max_in_flight` jobs,
    /// bodies up to `body_limit` bytes.
    pub async fn start(max_in_flight: usize, body_limit: usize) -> Server {
        let service = ServiceConfig {
            body_limit,
            ..ServiceConfig::default()
        };
        Server::start_with(max_in_flight, service).await
    }

    /// Such an engine, and `service`'s settings.
    pub async fn start_with(max_in_flight: usize, service: ServiceConfig) -> Server {
        let config = EngineConfig {
            use_gpu: false,
            cpu_threads: Some(1),
            max_in_flight,
            cost_model: CostModelSource::Fixed(CostModel::default()),
            ..EngineConfig::default()
        };
        Server::start_engine(config, service).await
    }

    /// An engine of `config`, and `service`'s settings.
    pub async fn start_engine(config: EngineConfig, service: ServiceConfig) -> Server {
        Server::serving(Engine::start(config).await.unwrap(), service).await
    }

    /// Serves `engine` with `service`.
    pub async fn serving(engine: Engine, service: ServiceConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let engine = Arc::new(engine);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, engine, service, async {
            let _ = stopped.await;
        }));
        Server {
            url,
            stop: Some(stop),
            task,
        }
    }

    /// Sends a request (a POST's body as JSON); returns status,
    /// Retry-After and the body.
    pub async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<String>,
    ) -> (u16, Option<String>, String) {
        let (status, headers, body) = self.call_with(method, path, body, &[]).await;
        (status, headers.get("retry-after").cloned(), body)
    }

    /// Sends a request with extra headers (a POST's body as JSON unless
    /// they say otherwise); returns status, the response's headers (names
    /// in lower case) and the body.
    pub async fn call_with(
        &self,
        method: &'static str,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (u16, BTreeMap<String, String>, String) {
        let url = format!("{}{path}", self.url);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let agent = agent();
            fn add<B>(
                mut r: ureq::RequestBuilder<B>,
                headers: &[(String, String)],
            ) -> ureq::RequestBuilder<B> {
                for (k, v) in headers {
                    r = r.header(k, v);
                }
                r
            }
            let typed = headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
            let mut response = match (method, body) {
                ("POST", Some(b)) if typed => add(agent.post(&url), &headers).send(b),
                ("POST", Some(b)) => add(agent.post(&url), &headers)
                    .header("content-type", "application/json")
                    .send(b),
                ("DELETE", _) => add(agent.delete(&url), &headers).call(),
                ("OPTIONS", _) => add(agent.options(&url), &headers).call(),
                ("PUT", _) => add(agent.put(&url), &headers).send_empty(),
                _ => add(agent.get(&url), &headers).call(),
            }
            .expect("the server answers");
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let text = response
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_string()
                .unwrap();
            (response.status().as_u16(), headers, text)
        })
        .await
        .unwrap()
    }

    /// POSTs raw bytes, or GETs (with `body` None); answers the status
    /// and the body's bytes.
    pub async fn bytes(&self, path: &str, body: Option<Vec<u8>>) -> (u16, Vec<u8>) {
        let url = format!("{}{path}", self.url);
        tokio::task::spawn_blocking(move || {
            let agent = agent();
            let mut response = match body {
                Some(b) => agent
                    .post(&url)
                    .header("content-type", "application/octet-stream")
                    .send(&b[..]),
                None => agent.get(&url).call(),
            }
            .expect("the server answers");
            let bytes = response
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()
                .unwrap();
            (response.status().as_u16(), bytes)
        })
        .await
        .unwrap()
    }

    /// Stops the service and waits for it to end.
    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// A client that reads error statuses as answers, and gives up after a
/// minute: a server that never answers fails the test, not hangs it.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}
