//! Hostile and broken clients against a real gateway, byte for byte over raw sockets.
//!
//! Every test runs a gateway on 127.0.0.1:0 in front of a *recording* origin that keeps
//! each request head and body it receives (and whether the body arrived complete), so the
//! assertions are about what reached the origin, not only about what the client was told.
//! The numbers in the comments are those of the hostile-input battery this file was
//! written against (request smuggling, oversized and malformed heads, floods).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod clients;
mod framing;
mod limits;
mod paths;
mod responses;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use graygate::config::{ServerConfig, TlsPaths};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use support::{Gateway, PATIENCE, gated_backend, raw_backend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

// ============================================================================================
// A byte-level HTTP/1.1 wire: requests and answers framed by hand, on any stream.
// ============================================================================================

/// One side of a connection with its read buffer (pipelined bytes stay for the next read).
struct Wire<S> {
    stream: S,
    buf: Vec<u8>,
}

/// An answer as the client received it.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl<S> Wire<S> {
    fn new(stream: S) -> Self {
        Wire { stream, buf: Vec::new() }
    }

    fn stream_ref(&self) -> &S {
        &self.stream
    }
}

impl<S: AsyncWrite + Unpin> Wire<S> {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }
}

impl<S: AsyncRead + Unpin> Wire<S> {
    /// Reads more bytes into the buffer: `false` on EOF or an error.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next message head (up to and without the blank line), or `None` at EOF.
    async fn head(&mut self) -> Option<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Some(head);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Exactly `n` bytes, or what arrived before EOF as the error.
    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return Err(std::mem::take(&mut self.buf));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// One CRLF-terminated line (without the CRLF).
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// A strictly parsed chunked body up to and including its terminating 0-chunk and
    /// trailers; anything short of that is returned as the error (the data seen so far).
    async fn chunked(&mut self) -> Result<Vec<u8>, Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let Some(line) = self.line().await else { return Err(body) };
            let size = String::from_utf8_lossy(&line);
            let size = size.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size, 16) else { return Err(body) };
            if size == 0 {
                loop {
                    match self.line().await {
                        Some(trailer) if trailer.is_empty() => return Ok(body),
                        Some(_) => {}
                        None => return Err(body),
                    }
                }
            }
            match self.exact(size + 2).await {
                Ok(data) if data.ends_with(b"\r\n") => body.extend_from_slice(&data[..size]),
                Ok(data) | Err(data) => {
                    body.extend_from_slice(&data[..data.len().min(size)]);
                    return Err(body);
                }
            }
        }
    }

    /// The body a message head announces (`Content-Length`, chunked, or none).
    async fn body_for(&mut self, head: &str, until_eof: bool) -> Result<Vec<u8>, Vec<u8>> {
        let chunked = header(head, "transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return self.chunked().await;
        }
        if let Some(length) = header(head, "content-length") {
            let length: usize = length.parse().map_err(|_| Vec::new())?;
            return self.exact(length).await;
        }
        if until_eof {
            while self.fill().await {}
            return Ok(std::mem::take(&mut self.buf));
        }
        Ok(Vec::new())
    }

    /// The next answer, or `None` if the connection ended (or stalled past `PATIENCE`)
    /// before a complete one arrived.
    async fn reply(&mut self) -> Option<Reply> {
        let read = async {
            let head = self.head().await?;
            let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
            let bodiless = status < 200 || status == 204 || status == 304;
            let body = if bodiless { Vec::new() } else { self.body_for(&head, true).await.ok()? };
            Some(Reply { status, head, body })
        };
        tokio::time::timeout(PATIENCE, read).await.ok().flatten()
    }

    /// Every byte until the peer closes (or `within` passes).
    async fn everything(&mut self, within: Duration) -> Vec<u8> {
        let _ = tokio::time::timeout(within, async { while self.fill().await {} }).await;
        std::mem::take(&mut self.buf)
    }

    /// Reads until the peer closes (what arrives stays in the buffer): how long that took,
    /// or `None` if the connection was still open after `within`.
    async fn closed_within(&mut self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let drain = async { while self.fill().await {} };
        tokio::time::timeout(within, drain).await.ok().map(|()| started.elapsed())
    }
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        header(&self.head, name)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a graygate JSON error with this status and `error_code`.
    fn assert_error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}\n{}", self.head, self.text());
        assert_eq!(self.header("content-type").as_deref(), Some("application/json"), "{what}: {}", self.head);
        assert_eq!(self.json()["error_code"], code, "{what}: {}", self.text());
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The first value of header `name` in a message head (case-insensitive).
fn header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

async fn connect(addr: SocketAddr) -> Wire<TcpStream> {
    let stream = tokio::time::timeout(PATIENCE, TcpStream::connect(addr)).await.expect("connect in time").unwrap();
    stream.set_nodelay(true).unwrap();
    Wire::new(stream)
}

/// Sends `bytes` on a fresh connection and reads one answer (if any comes).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (Wire<TcpStream>, Option<Reply>) {
    let mut wire = connect(addr).await;
    // The gateway may close on us while we still write; what it answered is what counts.
    let _ = wire.send(bytes).await;
    let reply = wire.reply().await;
    (wire, reply)
}

// ============================================================================================
// The recording origin.
// ============================================================================================

/// One request as the origin received it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
    /// The body arrived to its end (its full Content-Length, or the terminating 0-chunk).
    complete: bool,
}

impl Seen {
    fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    fn has(&self, name: &str) -> bool {
        header(&self.head, name).is_some()
    }
}

/// What the recording origin saw, shared with the test.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl Recorder {
    fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn complete(&self) -> Vec<Seen> {
        self.all().into_iter().filter(|s| s.complete).collect()
    }

    /// Waits a moment for anything still in flight to the origin, then asserts nothing came.
    async fn assert_nothing(&self, what: &str) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(self.count(), 0, "{what}: the origin received {:#?}", self.all());
    }
}

/// An origin that records every request (head, body, completeness) and answers `200` with
/// the request target as the body, on keep-alive connections.
async fn recording_backend() -> (SocketAddr, Recorder) {
    let recorder = Recorder::default();
    let shared = recorder.clone();
    let addr = raw_backend(move |stream| {
        let recorder = shared.clone();
        async move {
            recorder.connections.fetch_add(1, Ordering::SeqCst);
            let mut wire = Wire::new(stream);
            while let Some(head) = wire.head().await {
                let index = {
                    let mut seen = recorder.seen.lock().unwrap();
                    seen.push(Seen { head: head.clone(), body: Vec::new(), complete: false });
                    seen.len() - 1
                };
                let body = wire.body_for(&head, false).await;
                let complete = body.is_ok();
                {
                    let mut seen = recorder.seen.lock().unwrap();
                    seen[index].complete = complete;
                    seen[index].body = body.unwrap_or_else(|partial| partial);
                }
                if !complete {
                    return;
                }
                let target = recorder.seen.lock().unwrap()[index].target().to_owned();
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{target}", target.len());
                if wire.send(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, recorder)
}

/// An origin that answers every request with `answer` (keep-alive), counting connections.
async fn canned_backend(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    let addr = raw_backend(move |stream| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut wire = Wire::new(stream);
            while let Some(head) = wire.head().await {
                if wire.body_for(&head, false).await.is_err() || wire.send(answer).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, connections)
}

// ============================================================================================
// Gateways.
// ============================================================================================

/// Function `hello` on the recording origin (`/hello-prod`, `/pub`), a `/admin` trigger on
/// a second function, and one `/hello-NAME` trigger per extra version.
fn routes(origin: SocketAddr, admin: SocketAddr, extra: &[(&str, SocketAddr)]) -> String {
    let mut versions = format!("      - {{ version: v1, upstream: \"http://{origin}\" }}\n");
    let mut triggers = "      - { target: prod }\n      - { name: API_pub, path: /pub, target: prod }\n".to_owned();
    for (name, addr) in extra {
        versions.push_str(&format!("      - {{ version: {name}, upstream: \"http://{addr}\" }}\n"));
        triggers.push_str(&format!("      - {{ target: {name} }}\n"));
    }
    format!(
        "project_id: p\nfunctions:\n  - name: hello\n    upstream: \"http://{origin}\"\n    versions:\n{versions}    \
         aliases:\n      - {{ name: prod, version: v1 }}\n    triggers:\n{triggers}  - name: secret\n    \
         upstream: \"http://{admin}\"\n    triggers:\n      - {{ name: API_admin, path: /admin, target: latest }}\n"
    )
}

struct Setup {
    gw: Gateway,
    origin: Recorder,
    /// The origin behind the protected `/admin` trigger.
    admin: Recorder,
}

impl Setup {
    fn addr(&self) -> SocketAddr {
        self.gw.app.data_addr()
    }
}

async fn start(extra: &[(&str, SocketAddr)], tune: impl FnOnce(&mut ServerConfig)) -> Setup {
    let (origin_addr, origin) = recording_backend().await;
    let (admin_addr, admin) = recording_backend().await;
    let gw = Gateway::start_with(&routes(origin_addr, admin_addr, extra), tune).await;
    Setup { gw, origin, admin }
}

const GET: &[u8] = b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\n\r\n";

/// What a deadline may overrun by on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);

/// A connection closed (after `closed`) by a timer of `deadline`, not before it nor long after.
fn assert_closed_by_deadline(closed: Option<Duration>, deadline: Duration, what: &str) {
    let closed = closed.unwrap_or_else(|| panic!("{what}: still open long after the deadline"));
    assert!(closed <= deadline + SLACK, "{what}: closed only after {closed:?}");
    assert!(closed >= deadline.mul_f32(0.8), "{what}: closed before the deadline ({closed:?}): not the timer");
}
