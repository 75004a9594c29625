//! Upstream faults through real sockets: connect failures and the one retry they allow,
//! requests that must never be repeated, resets mid-response, invalid responses, slow
//! upstreams, the keep-alive race, outlier ejection with alias fallback, the
//! per-upstream connection cap, and h2c and https upstreams (reliability.md #21–#26).
//!
//! Every upstream here is a raw socket server written for the test that records what it
//! receives, so each test can say what reached the origin, not only what the client saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod connect;
mod ejection;
mod keepalive;
mod protocols;
mod responses;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Gateway, PATIENCE, closed_port, local, raw_backend, read_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

// === routes ===

/// A routes file with one function per `(name, upstream URL)`, each reachable at
/// `/NAME-latest`, all with the given `timeout_ms` if any.
fn routes(functions: &[(&str, &str)], timeout_ms: Option<u64>) -> String {
    let mut out = String::from("project_id: p\nfunctions:\n");
    for (name, url) in functions {
        out.push_str(&format!("  - name: {name}\n    upstream: \"{url}\"\n"));
        if let Some(ms) = timeout_ms {
            out.push_str(&format!("    timeout_ms: {ms}\n"));
        }
        out.push_str("    triggers:\n      - { target: latest }\n");
    }
    out
}

fn http(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

// === a client that reports body failures instead of panicking on them ===

/// What the client saw: the head, and the body or how it failed.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Result<Bytes, String>,
    /// From sending the request to the end (or failure) of the body.
    elapsed: Duration,
}

impl Reply {
    fn text(&self) -> String {
        match &self.body {
            Ok(body) => String::from_utf8_lossy(body).into_owned(),
            Err(error) => format!("<body failed: {error}>"),
        }
    }

    fn json(&self) -> serde_json::Value {
        let body = self.body.as_ref().unwrap_or_else(|e| panic!("body failed: {e}"));
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn error_code(&self) -> String {
        self.json()["error_code"].as_str().unwrap_or_default().to_owned()
    }

    fn version(&self) -> &str {
        self.headers.get("x-graygate-version").map_or("", |v| v.to_str().unwrap())
    }
}

/// A fresh client (no connection shared with another probe); `h2` speaks h2c.
fn client(h2: bool) -> Client<HttpConnector, Full<Bytes>> {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(h2);
    builder.build_http()
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    gw: &Gateway,
    method: Method,
    path: &str,
    body: &'static [u8],
) -> Reply {
    try_send(client, gw, method, path, body).await.unwrap_or_else(|e| panic!("no response head: {e}"))
}

/// Like [`send`], but a connection that closes before a response head is `Err`.
async fn try_send(
    client: &Client<HttpConnector, Full<Bytes>>,
    gw: &Gateway,
    method: Method,
    path: &str,
    body: &'static [u8],
) -> Result<Reply, String> {
    let url = format!("http://{}{path}", gw.app.data_addr());
    let request = Request::builder().method(method).uri(url).body(Full::new(Bytes::from_static(body))).unwrap();
    let started = Instant::now();
    let response = tokio::time::timeout(PATIENCE, client.request(request))
        .await
        .expect("the gateway answers in time")
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(PATIENCE, body.collect()).await.expect("the body ends or fails in time");
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.map(|b| b.to_bytes()).map_err(|e| format!("{e:?}")),
        elapsed: started.elapsed(),
    })
}

async fn get(gw: &Gateway, path: &str) -> Reply {
    send(&client(false), gw, Method::GET, path, b"").await
}

// === metrics ===

/// One series of the gateway's exposition, 0 when it does not exist (yet).
async fn sample(gw: &Gateway, series: &str) -> f64 {
    let text = gw.metrics().await;
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

async fn upstream_errors(gw: &Gateway, function: &str, version: &str, kind: &str) -> f64 {
    sample(
        gw,
        &format!("graygate_upstream_errors_total{{function=\"{function}\",kind=\"{kind}\",version=\"{version}\"}}"),
    )
    .await
}

// === recording origins ===

/// One request as the origin read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    head: String,
    body: Vec<u8>,
    /// Which accepted connection (0-based) carried it.
    connection: usize,
}

/// What an origin received: every request and how many connections it accepted.
#[derive(Clone, Default)]
struct Record {
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl Record {
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// What the origin does with a request, given its index over all connections and its
/// index on its own connection (both 0-based).
enum Act {
    /// Writes these bytes and keeps the connection for the next request.
    Answer(Vec<u8>),
    /// Closes without answering (FIN).
    Close,
    /// Closes without answering, with an RST (SO_LINGER 0).
    Reset,
}

type Policy = Arc<dyn Fn(usize, usize) -> Act + Send + Sync>;

fn ok(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

fn status(code: u16, reason: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} {reason}\r\ncontent-length: 0\r\n\r\n").into_bytes()
}

/// Reads one HTTP/1.1 request (head and Content-Length or chunked body) from `stream`,
/// keeping any bytes past it in `buf` for the next request. `None` on EOF or error.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String, Vec<u8>)> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let method = head.split(' ').next().unwrap_or_default().to_owned();
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.lines().any(|line| line.starts_with("transfer-encoding:") && line.contains("chunked"));
    let body_end = loop {
        let body = &buf[head_end..];
        if let Some(length) = length {
            if body.len() >= length {
                break head_end + length;
            }
        } else if chunked {
            if let Some(at) = body.windows(5).position(|w| w == b"0\r\n\r\n") {
                break head_end + at + 5;
            }
        } else {
            break head_end;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let body = buf[head_end..body_end].to_vec();
    buf.drain(..body_end);
    Some((method, head, body))
}

/// Serves one accepted connection: records each request and does what `policy` says;
/// with `idle_close`, a connection idle that long between requests is closed.
async fn serve_recorded(mut stream: TcpStream, record: Record, policy: Policy, idle_close: Option<Duration>) {
    let connection = record.connections.fetch_add(1, Ordering::SeqCst);
    let mut buf = Vec::new();
    for on_connection in 0.. {
        let next = match idle_close {
            Some(idle) => match tokio::time::timeout(idle, read_request(&mut stream, &mut buf)).await {
                Ok(next) => next,
                Err(_) => return,
            },
            None => read_request(&mut stream, &mut buf).await,
        };
        let Some((method, head, body)) = next else { return };
        let index = {
            let mut seen = record.seen.lock().unwrap();
            seen.push(Seen { method, head, body, connection });
            seen.len() - 1
        };
        match policy(index, on_connection) {
            Act::Answer(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Act::Close => return,
            Act::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
        }
    }
}

/// An HTTP/1.1 origin on 127.0.0.1:0 that records what it receives.
async fn origin(
    record: &Record,
    idle_close: Option<Duration>,
    policy: impl Fn(usize, usize) -> Act + Send + Sync + 'static,
) -> SocketAddr {
    let (record, policy): (Record, Policy) = (record.clone(), Arc::new(policy));
    raw_backend(move |stream| serve_recorded(stream, record.clone(), policy.clone(), idle_close)).await
}

// === an upstream whose listen queue is full: connects to it time out ===

/// A listener whose accept queue is full (held by `fillers`): a new connection attempt
/// gets no SYN-ACK and fails only at the gateway's connect timeout. Nothing is accepted
/// until `drain` is called; from then on it serves like [`origin`].
struct Backlogged {
    addr: SocketAddr,
    fillers: Vec<TcpStream>,
    drain: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Backlogged {
    async fn start(record: &Record, policy: impl Fn(usize, usize) -> Act + Send + Sync + 'static) -> Backlogged {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(local()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        loop {
            assert!(fillers.len() < 16, "the accept queue never filled up");
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => fillers.push(stream),
                Ok(Err(error)) => panic!("filler connect failed: {error}"),
                Err(_) => break, // the queue is full: this attempt got no answer
            }
        }
        let (drain, drained) = tokio::sync::oneshot::channel::<()>();
        let (record, policy): (Record, Policy) = (record.clone(), Arc::new(policy));
        tokio::spawn(async move {
            if drained.await.is_err() {
                return;
            }
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_recorded(stream, record.clone(), policy.clone(), None));
            }
        });
        Backlogged { addr, fillers, drain: Some(drain) }
    }

    /// Starts accepting: the queue empties and new connection attempts succeed.
    fn drain(&mut self) {
        if let Some(drain) = self.drain.take() {
            let _ = drain.send(());
        }
        self.fillers.clear();
    }
}

/// Local ports of the sockets now trying to connect to `port` (SYN sent, no answer yet);
/// `None` where /proc/net/tcp cannot be read.
fn connecting_to(port: u16) -> Option<HashSet<u16>> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let hex = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    let ports = table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, state) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        (*state == "02" && hex(remote)? == port).then(|| hex(local)).flatten()
    });
    Some(ports.collect())
}

/// Waits until something is trying to connect to `addr` (the gateway's first attempt is in
/// flight and will time out), or a fixed while where that cannot be seen.
async fn wait_for_connect_attempt(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match connecting_to(addr.port()) {
            None => return tokio::time::sleep(Duration::from_millis(250)).await,
            Some(ports) if !ports.is_empty() => return,
            Some(_) => {}
        }
        assert!(Instant::now() < deadline, "the gateway never tried to connect");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
