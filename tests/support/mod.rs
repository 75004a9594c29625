//! Test support: real gateways, real upstreams and a real client, all on 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use graygate::app::App;
use graygate::config::ServerConfig;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every test bounds its waits with this.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A gateway over a routes file in its own temporary directory.
pub struct Gateway {
    pub app: App,
    pub dir: tempfile::TempDir,
    pub routes_path: PathBuf,
    pub client: TestClient,
}

impl Gateway {
    /// Starts a gateway on ephemeral ports with `routes` as its routes file.
    pub async fn start(routes: &str) -> Gateway {
        Self::start_with(routes, |_| {}).await
    }

    pub async fn start_with(routes: &str, tune: impl FnOnce(&mut ServerConfig)) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let routes_path = dir.path().join("routes.yaml");
        std::fs::write(&routes_path, routes).expect("write routes");
        let mut config = ServerConfig::with_defaults(local(), local(), routes_path.clone()).expect("config");
        config.reload.debounce = Duration::from_millis(50);
        tune(&mut config);
        let app = App::start(config).await.expect("gateway starts");
        let client = TestClient::new(app.data_addr());
        Gateway { app, dir, routes_path, client }
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.app.admin_addr())
    }

    pub async fn metrics(&self) -> String {
        let response = self.client.send_to(&self.admin_url("/metrics"), Method::GET, &[], Bytes::new()).await;
        assert_eq!(response.status, StatusCode::OK);
        response.text()
    }

    /// Waits until the routing table's generation reaches `generation`.
    pub async fn wait_for_generation(&self, generation: u64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.app.routes().current().generation() < generation {
            assert!(
                tokio::time::Instant::now() < deadline,
                "generation {generation} never applied (at {})",
                self.app.routes().current().generation()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// What a test needs from an answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `X-Graygate-Version` the gateway reported.
    pub fn version(&self) -> String {
        self.headers.get("x-graygate-version").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }
}

/// A pooled HTTP/1.1 client aimed at one gateway.
#[derive(Clone)]
pub struct TestClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TestClient {
    pub fn new(addr: SocketAddr) -> Self {
        TestClient { base: format!("http://{addr}"), client: Client::builder(TokioExecutor::new()).build_http() }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.request(Method::GET, path, headers, Bytes::new()).await
    }

    pub async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
        let url = format!("{}{path}", self.base);
        self.send_to(&url, method, headers, body).await
    }

    /// Like `request`, but `None` when the connection fails (a server not listening yet).
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Option<Answer> {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).ok()?;
        let response = tokio::time::timeout(PATIENCE, self.client.request(request)).await.ok()?.ok()?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(PATIENCE, body.collect()).await.ok()?.ok()?.to_bytes();
        Some(Answer { status: parts.status, headers: parts.headers, body })
    }

    pub async fn send_to(&self, url: &str, method: Method, headers: &[(&str, &str)], body: Bytes) -> Answer {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).expect("request");
        let response = tokio::time::timeout(PATIENCE, self.client.request(request))
            .await
            .expect("answer in time")
            .expect("request succeeds");
        let (parts, body) = response.into_parts();
        let body =
            tokio::time::timeout(PATIENCE, body.collect()).await.expect("body in time").expect("body").to_bytes();
        Answer { status: parts.status, headers: parts.headers, body }
    }
}

/// Starts echo backends (graygate's demo backend) named after versions.
pub async fn backends(names: &[&str]) -> HashMap<String, SocketAddr> {
    let mut map = HashMap::new();
    for name in names {
        let addr = graygate::demo::spawn_backend(name).await.expect("backend");
        map.insert((*name).to_owned(), addr);
    }
    map
}

/// Replaces `@name@` in a template with `http://ADDR` of the backend of that name.
pub fn render(template: &str, backends: &HashMap<String, SocketAddr>) -> String {
    let mut out = template.to_owned();
    for (name, addr) in backends {
        out = out.replace(&format!("@{name}@"), &format!("http://{addr}"));
    }
    out
}

/// An address where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind(local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A backend that reads the request head and then answers only after `delay`.
pub async fn slow_backend(delay: Duration) -> SocketAddr {
    raw_backend(move |mut stream| async move {
        read_head(&mut stream).await;
        tokio::time::sleep(delay).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow").await;
    })
    .await
}

/// A backend that promises 100 bytes, sends 10 and closes the connection.
pub async fn truncating_backend() -> SocketAddr {
    raw_backend(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789").await;
        let _ = stream.flush().await;
    })
    .await
}

/// A backend that answers with bytes that are not HTTP.
pub async fn garbage_backend() -> SocketAddr {
    raw_backend(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream.write_all(b"SMTP ready\r\n\r\n").await;
    })
    .await
}

/// Accepts connections and hands each to `serve` on its own task.
pub async fn raw_backend<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = std::sync::Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let serve = serve.clone();
            tokio::spawn(async move { serve(stream).await });
        }
    });
    addr
}

/// Reads until the end of a request head (or EOF).
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// Writes `contents` to `path` the way editors do: a temporary file renamed over it.
pub fn save_by_rename(path: &Path, contents: &str) {
    let tmp = path.with_extension("yaml.swp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Counts answers by `X-Graygate-Version` over `n` sequential requests.
pub async fn split(client: &TestClient, path: &str, headers: &[(&str, &str)], n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let answer = client.get_with(path, headers).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        *counts.entry(answer.version()).or_insert(0) += 1;
    }
    counts
}

/// A backend that reports each request head on the returned channel as it arrives, then
/// holds its answer (`200`, body `slow`) until the test calls `notify_one()` on the
/// returned `Notify` (or `PATIENCE` passes): a request in flight for as long as needed.
pub async fn gated_backend()
-> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>, std::sync::Arc<tokio::sync::Notify>) {
    let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let addr = raw_backend(move |mut stream| {
        let arrived = arrived.clone();
        let gate = gate.clone();
        async move {
            read_head(&mut stream).await;
            let _ = arrived.send(());
            let _ = tokio::time::timeout(PATIENCE, gate.notified()).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow").await;
        }
    })
    .await;
    (addr, arrivals, release)
}

/// Reads one series (`name{labels}`) from a Prometheus text exposition.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Stops `gateway` and starts a new one over the same routes file (same directory), as a
/// restart of the process would; `tune` adjusts the new gateway's settings.
pub async fn restart(gateway: Gateway, tune: impl FnOnce(&mut ServerConfig)) -> Gateway {
    let Gateway { app, dir, routes_path, .. } = gateway;
    tokio::time::timeout(PATIENCE, app.shutdown()).await.expect("gateway stops in time");
    let mut config = ServerConfig::with_defaults(local(), local(), routes_path.clone()).expect("config");
    config.reload.debounce = Duration::from_millis(50);
    tune(&mut config);
    let app = App::start(config).await.expect("gateway restarts");
    let client = TestClient::new(app.data_addr());
    Gateway { app, dir, routes_path, client }
}
