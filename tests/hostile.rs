//! Hostile and broken clients against a real gateway, byte for byte over raw sockets.
//!
//! Every test runs a gateway on 127.0.0.1:0 in front of a *recording* origin that keeps
//! each request head and body it receives (and whether the body arrived complete), so the
//! assertions are about what reached the origin, not only about what the client was told.
//! The numbers in the comments are those of the hostile-input battery this file was
//! written against (request smuggling, oversized and malformed heads, floods).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

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

// ============================================================================================
// 1-4. Request framing: smuggling, conflicting lengths, bad Transfer-Encoding, bad headers.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cl_plus_te_never_lets_a_smuggled_request_through() {
    let s = start(&[], |_| {}).await;
    let smuggled = b"GET /hello-prod/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    let body = [b"0\r\n\r\n".as_slice(), smuggled].concat();
    let framings = [
        format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", body.len()),
        format!("Transfer-Encoding: chunked\r\nContent-Length: {}\r\n", body.len()),
        // CL.TE the other way round: a length that stops inside the chunked framing.
        "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n".to_owned(),
    ];
    let mut answered = Vec::new();
    for (i, framing) in framings.iter().enumerate() {
        let request =
            [format!("POST /hello-prod/first{i} HTTP/1.1\r\nHost: gw\r\n{framing}\r\n").as_bytes(), &body].concat();
        let (mut wire, reply) = exchange(s.addr(), &request).await;
        // hyper uses the chunked framing, drops the Content-Length and closes afterwards
        // (a 400 would do as well); the bytes after the 0-chunk are never a request.
        if let Some(reply) = &reply {
            assert!(reply.status == 200 || reply.status == 400, "{framing:?}: {}", reply.head);
            if reply.status == 200 {
                answered.push(format!("/first{i}"));
            }
        }
        let closed = wire.closed_within(Duration::from_secs(3)).await;
        assert!(closed.is_some(), "{framing:?}: the connection stays open after an ambiguous framing");
        assert!(wire.buf.is_empty(), "{framing:?}: a second answer came back: {}", String::from_utf8_lossy(&wire.buf));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = s.origin.all();
    let targets: Vec<&str> = seen.iter().map(Seen::target).collect();
    assert_eq!(targets, answered, "exactly the one request per connection, never the smuggled one: {seen:#?}");
    for request in &seen {
        assert!(
            !(request.has("content-length") && request.has("transfer-encoding")),
            "the origin got an ambiguous framing: {}",
            request.head
        );
        assert!(
            header(&request.head, "content-length").is_none_or(|cl| cl == request.body.len().to_string()),
            "the client's Content-Length went upstream: {}",
            request.head
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_lengths_are_400_and_nothing_upstream() {
    let s = start(&[], |_| {}).await;
    for lengths in ["Content-Length: 3\r\nContent-Length: 4\r\n", "Content-Length: 3, 4\r\n", "Content-Length: +3\r\n"]
    {
        let request = format!("POST /hello-prod HTTP/1.1\r\nHost: gw\r\n{lengths}\r\nabcd");
        let (mut wire, reply) = exchange(s.addr(), request.as_bytes()).await;
        let reply = reply.unwrap_or_else(|| panic!("{lengths:?}: no answer"));
        assert_eq!(reply.status, 400, "{lengths:?}: {}", reply.head);
        assert!(wire.closed_within(Duration::from_secs(3)).await.is_some(), "{lengths:?}: connection kept open");
    }
    s.origin.assert_nothing("conflicting Content-Length").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transfer_encodings_are_refused() {
    let s = start(&[], |_| {}).await;
    let body = "5\r\nhello\r\n0\r\n\r\n";
    let cases = [
        ("HTTP/1.1", "Transfer-Encoding: xchunked\r\n"),
        ("HTTP/1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: xchunked\r\n"),
        ("HTTP/1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
        ("HTTP/1.1", "Transfer-Encoding: chunked, identity\r\n"),
        ("HTTP/1.0", "Transfer-Encoding: chunked\r\n"),
    ];
    for (version, te) in cases {
        let request = format!("POST /hello-prod {version}\r\nHost: gw\r\n{te}\r\n{body}");
        let (mut wire, reply) = exchange(s.addr(), request.as_bytes()).await;
        if let Some(reply) = &reply {
            assert_eq!(reply.status, 400, "{version} {te:?}: {}", reply.head);
        }
        assert!(wire.closed_within(Duration::from_secs(3)).await.is_some(), "{version} {te:?}: connection kept open");
    }
    s.origin.assert_nothing("bad Transfer-Encoding").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_before_colon_and_obs_fold_are_400() {
    let s = start(&[], |_| {}).await;
    let cases: [&[u8]; 3] = [
        b"POST /hello-prod HTTP/1.1\r\nHost: gw\r\nContent-Length : 3\r\n\r\nabc",
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nX-Folded: a\r\n\tTransfer-Encoding: chunked\r\n\r\n",
    ];
    for request in cases {
        let what = String::from_utf8_lossy(request);
        let (_, reply) = exchange(s.addr(), request).await;
        let reply = reply.unwrap_or_else(|| panic!("{what:?}: no answer"));
        assert_eq!(reply.status, 400, "{what:?}: {}", reply.head);
    }
    s.origin.assert_nothing("malformed header lines").await;
}

// ============================================================================================
// 5. Invalid chunk sizes: the error comes after the headers, so it must abort the upstream.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunk_sizes_never_complete_upstream_and_are_never_200() {
    let s = start(&[], |_| {}).await;
    let bad_chunks = [
        "Z\r\nhello\r\n0\r\n\r\n",
        "FFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "3\r\nabc\r\nZ\r\nhello\r\n0\r\n\r\n",
        "3\r\nabc\r\nFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        "3\r\nabc\r\n5\nhello\r\n0\r\n\r\n",
    ];
    // Whatever follows the broken chunk must never be read as a next request either.
    let smuggled = "GET /hello-prod/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    for chunks in bad_chunks {
        let request =
            format!("POST /hello-prod HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}{smuggled}");
        let (mut wire, reply) = exchange(s.addr(), request.as_bytes()).await;
        // Closed without an answer is acceptable too.
        if let Some(reply) = &reply {
            reply.assert_error(400, "APIG.0201", chunks);
        }
        assert!(wire.closed_within(Duration::from_secs(3)).await.is_some(), "{chunks:?}: connection kept open");
        assert!(wire.buf.is_empty(), "{chunks:?}: a second answer: {}", String::from_utf8_lossy(&wire.buf));
    }

    // The bad chunk after a good one that is already on its way upstream: the upstream
    // request is aborted, never finished with a terminating chunk.
    let mut wire = connect(s.addr()).await;
    wire.send(b"POST /hello-prod/partial HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !s.origin.all().iter().any(|r| r.target() == "/partial") {
        assert!(Instant::now() < deadline, "the streamed request never reached the origin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = wire.send(format!("Z\r\nhello\r\n0\r\n\r\n{smuggled}").as_bytes()).await;
    if let Some(reply) = wire.reply().await {
        reply.assert_error(400, "APIG.0201", "a bad chunk after a forwarded one");
    }
    assert!(wire.closed_within(Duration::from_secs(3)).await.is_some(), "connection kept open after a bad chunk");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = s.origin.all();
    assert!(
        seen.iter().all(|r| !r.complete),
        "the origin received a complete request built from a bad body: {seen:#?}"
    );
    assert!(seen.iter().all(|r| r.target() != "/smuggled"), "bytes after a bad chunk became a request: {seen:#?}");
}

// ============================================================================================
// 6-7. Hop-by-hop smuggling and pipelining.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_upgrade_headers_never_reach_the_origin() {
    let s = start(&[], |_| {}).await;
    let requests: [&[u8]; 3] = [
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nConnection: close, X-Internal\r\nX-Internal: admin=1\r\nTE: trailers\r\n\r\n",
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive\r\nConnection: X-Internal, TE\r\nX-Internal: 1\r\nTE: trailers, deflate\r\nKeep-Alive: timeout=5\r\n\r\n",
    ];
    for request in requests {
        let what = String::from_utf8_lossy(request);
        let (_, reply) = exchange(s.addr(), request).await;
        let reply = reply.unwrap_or_else(|| panic!("{what:?}: no answer"));
        assert_ne!(reply.status, 101, "{what:?}: the gateway agreed to an upgrade");
        assert_eq!(reply.status, 200, "{what:?}: {}", reply.head);
    }
    let seen = s.origin.all();
    assert_eq!(seen.len(), requests.len(), "{seen:#?}");
    for request in &seen {
        for name in ["x-internal", "te", "upgrade", "http2-settings", "keep-alive"] {
            assert!(!request.has(name), "{name} reached the origin: {}", request.head);
        }
        let connection = header(&request.head, "connection").unwrap_or_default().to_ascii_lowercase();
        assert!(!connection.contains("x-internal") && !connection.contains("upgrade"), "{}", request.head);
    }
}

/// `HTTP2-Settings` is connection-specific (RFC 7540 §3.2.1) even when a client forgets to
/// name it in `Connection`: it must not reach the origin either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_headers_without_a_connection_token_never_reach_the_origin() {
    let s = start(&[], |_| {}).await;
    let request =
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let (_, reply) = exchange(s.addr(), request).await;
    let reply = reply.expect("an answer");
    assert_eq!(reply.status, 200, "{}", reply.head);
    let seen = s.origin.all();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].has("upgrade"), "{}", seen[0].head);
    assert!(!seen[0].has("http2-settings"), "HTTP2-Settings reached the origin: {}", seen[0].head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_reach_the_origin_and_answer_in_order() {
    let s = start(&[], |_| {}).await;
    let mut wire = connect(s.addr()).await;
    wire.send(
        b"POST /hello-prod/one HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc\
          GET /hello-prod/two HTTP/1.1\r\nHost: gw\r\n\r\n\
          GET /hello-prod/three HTTP/1.1\r\nHost: gw\r\n\r\n",
    )
    .await
    .unwrap();
    for expected in ["/one", "/two", "/three"] {
        let reply = wire.reply().await.unwrap_or_else(|| panic!("no answer for {expected}"));
        assert_eq!(reply.status, 200, "{}", reply.head);
        assert_eq!(reply.text(), expected, "answers come back in order");
    }
    let targets: Vec<String> = s.origin.all().iter().map(|r| r.target().to_owned()).collect();
    assert_eq!(targets, ["/one", "/two", "/three"]);
    assert_eq!(s.origin.all()[0].body, b"abc");
}

// ============================================================================================
// 8. Paths: no traversal, no encoded separators, slashes merged.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_and_encoded_slashes_are_400_and_never_forwarded() {
    let s = start(&[], |_| {}).await;
    let paths = [
        "/pub/..%2fadmin",
        "/pub/..%2Fadmin",
        "/pub/%2e%2e/admin",
        "/pub/%2E%2e%2Fadmin",
        "/pub/../admin",
        "/hello-prod/../admin",
        "/hello-prod/%2e%2e/x",
        "/hello-prod/.%2e/x",
        "/hello-prod/./x",
        "/hello-prod%2fx",
        "/hello-prod/a%2Fb",
        "/%2fhello-prod",
        "/hello-prod/%5c..%5cadmin",
        "/hello-prod/%00",
        "//pub/..//admin",
    ];
    for path in paths {
        let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
        let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
        let reply = reply.unwrap_or_else(|| panic!("{path}: no answer"));
        reply.assert_error(400, "APIG.0201", path);
    }
    s.origin.assert_nothing("refused paths").await;
    s.admin.assert_nothing("the protected route").await;

    // Runs of slashes are merged: `//hello-prod` routes like `/hello-prod`.
    for (path, upstream) in [("//hello-prod", "/"), ("//hello-prod//x///y", "/x/y"), ("/pub//z", "/z")] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
        let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
        let reply = reply.unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(reply.status, 200, "{path}: {}\n{}", reply.head, reply.text());
        assert_eq!(reply.text(), upstream, "{path}");
    }
    s.admin.assert_nothing("the protected route").await;
}

// ============================================================================================
// 9. Invalid upstream responses.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_obs_fold_response_is_502() {
    let (fold, connections) =
        canned_backend(b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok").await;
    let s = start(&[("fold", fold)], |_| {}).await;
    for _ in 0..2 {
        let (_, reply) = exchange(s.addr(), b"GET /hello-fold HTTP/1.1\r\nHost: gw\r\n\r\n").await;
        reply.expect("an answer").assert_error(502, "APIG.0202", "obs-fold from the upstream");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2, "a connection that sent an invalid response is not reused");
}

/// An upstream response with both Content-Length and Transfer-Encoding is ambiguous
/// (RFC 9112 §6.3: the sender is broken, and a proxy must not pass the framing on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cl_plus_te_response_is_502() {
    let answers: [&'static [u8]; 3] = [
        // A Content-Length reader sees the 5 bytes "0\r\n\r\n"; a chunked reader sees nothing.
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for answer in answers {
        let what = String::from_utf8_lossy(answer);
        let (clte, _) = canned_backend(answer).await;
        let s = start(&[("clte", clte)], |_| {}).await;
        for _ in 0..2 {
            let mut wire = connect(s.addr()).await;
            wire.send(b"GET /hello-clte HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").await.unwrap();
            let raw = wire.everything(Duration::from_secs(3)).await;
            let got = String::from_utf8_lossy(&raw);
            let reply = Wire::new(std::io::Cursor::new(raw.clone())).reply().await;
            let reply =
                reply.unwrap_or_else(|| panic!("upstream {what:?}: no complete answer; the client got {got:?}"));
            assert_eq!(reply.status, 502, "upstream {what:?}: the client got {got:?}");
            reply.assert_error(502, "APIG.0202", &what);
        }
    }
}

/// After an upstream answered with both framings, its connection must not go back to the
/// pool: bytes the upstream sent past the chunked end (a whole response, if it meant the
/// Content-Length) would otherwise be read as the answer to the next user's request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cl_plus_te_response_never_poisons_the_next_request() {
    let connections = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (counter, once) = (Arc::clone(&connections), Arc::clone(&first));
    let upstream = raw_backend(move |stream| {
        let (counter, once) = (Arc::clone(&counter), Arc::clone(&once));
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut wire = Wire::new(stream);
            while wire.head().await.is_some() {
                let sent = if once.swap(false, Ordering::SeqCst) {
                    // A chunked reader stops after "0\r\n\r\n"; what follows, a moment later,
                    // is a complete response of its own.
                    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
                    let sent = wire.send(head).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    sent.and(wire.send(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned").await)
                } else {
                    wire.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean").await
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let s = start(&[("clte", upstream)], |_| {}).await;
    let mut answers = Vec::new();
    for i in 0..3 {
        let mut wire = connect(s.addr()).await;
        let request = format!("GET /hello-clte/{i} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        wire.send(request.as_bytes()).await.unwrap();
        let reply = wire.reply().await.unwrap_or_else(|| panic!("request {i}: no answer"));
        answers.push((reply.status, reply.text()));
    }
    assert_eq!(answers[0].0, 502, "{answers:?}");
    assert_eq!(
        answers[1..],
        [(200, "clean".to_owned()), (200, "clean".to_owned())],
        "other users got the bytes smuggled after an ambiguous response (upstream connections: {})",
        connections.load(Ordering::SeqCst)
    );
}

// ============================================================================================
// 10-11. Header and body limits.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_is_431_and_others_are_still_served() {
    let s = start(&[], |_| {}).await;
    let request = with_headers;
    // 100 headers (Host and 99 more) is the default limit: still served.
    let (_, reply) = exchange(s.addr(), request(100).as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 200);
    assert_eq!(s.origin.count(), 1);

    let (mut wire, reply) = exchange(s.addr(), request(101).as_bytes()).await;
    let reply = reply.expect("an answer to 101 headers");
    assert_eq!(reply.status, 431, "{}", reply.head);
    assert_eq!(s.gw.client.get("/hello-prod").await.status, StatusCode::OK, "a parallel client is served");
    // The refused connection is closed, or still answers.
    if wire.closed_within(Duration::from_millis(500)).await.is_none() {
        wire.send(GET).await.unwrap();
        assert_eq!(wire.reply().await.expect("usable").status, 200);
    }
    assert_eq!(s.origin.all().iter().filter(|r| r.has("x-h100")).count(), 0, "the 101-header request went upstream");
}

/// A request with `count` headers in all (Host and `count - 1` more).
fn with_headers(count: usize) -> String {
    let mut request = "GET /hello-prod HTTP/1.1\r\nHost: gw\r\n".to_owned();
    for i in 1..count {
        request.push_str(&format!("X-H{i}: v\r\n"));
    }
    request + "\r\n"
}

/// The limits are the configured ones, not hyper's defaults (100 headers, ~400 KB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limits_follow_the_configuration() {
    let s = start(&[], |config| config.limits.max_headers = 20).await;
    let (_, reply) = exchange(s.addr(), with_headers(20).as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 200);
    let (_, reply) = exchange(s.addr(), with_headers(21).as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 431);

    // The default head limit is 64 KiB: 32 KB passes, 100 KB does not.
    let big = |kb: usize| format!("GET /hello-prod HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n", "b".repeat(kb * 1024));
    let (_, reply) = exchange(s.addr(), big(32).as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 200);
    let (_, reply) = exchange(s.addr(), big(100).as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 431);
    assert_eq!(s.origin.count(), 2, "only the two requests within the limits went upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_kb_header_is_431_and_others_are_still_served() {
    let s = start(&[], |_| {}).await;
    let request = format!("GET /hello-prod HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n", "a".repeat(500 * 1024));
    let (read, mut write) = TcpStream::connect(s.addr()).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        // The gateway stops reading at its limit: the rest of this write may fail.
        let _ = write.write_all(request.as_bytes()).await;
        write
    });
    let mut reader = Wire::new(read);
    let parallel = s.gw.client.get("/hello-prod").await;
    assert_eq!(parallel.status, StatusCode::OK, "a parallel client is served while the big head arrives");
    let reply = reader.reply().await.expect("an answer to a 500 KB header");
    assert_eq!(reply.status, 431, "{}", reply.head);
    assert!(reader.closed_within(Duration::from_secs(3)).await.is_some(), "the connection is closed");
    let _ = writer.await;
    assert_eq!(s.origin.all().iter().filter(|r| r.has("x-big")).count(), 0, "the big head went upstream");
    let mut wire = connect(s.addr()).await;
    wire.send(GET).await.unwrap();
    assert_eq!(wire.reply().await.expect("a new connection is served").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_and_never_complete_upstream() {
    let s = start(&[], |config| config.limits.max_body_bytes = 1024).await;

    // Declared too large: refused before anything goes upstream.
    let body = "x".repeat(2048);
    let request = format!("POST /hello-prod HTTP/1.1\r\nHost: gw\r\nContent-Length: 2048\r\n\r\n{body}");
    let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
    let reply = reply.expect("an answer");
    reply.assert_error(413, "APIG.0201", "Content-Length 2048");
    // Refused after routing: the answer names the version, as every routed answer does.
    assert!(reply.header("x-graygate-version").is_some(), "{}", reply.head);
    assert!(reply.header("x-request-id").is_some(), "{}", reply.head);
    s.origin.assert_nothing("a declared oversized body").await;

    // At the limit: fine, both ways (the limit is not off by one).
    let body = "y".repeat(1024);
    let request = format!("POST /hello-prod/cl HTTP/1.1\r\nHost: gw\r\nContent-Length: 1024\r\n\r\n{body}");
    let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 200);
    let chunk = format!("100\r\n{}\r\n", "z".repeat(256));
    let request = format!(
        "POST /hello-prod/te HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(4)
    );
    let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 200);
    let sizes: Vec<usize> = s.origin.complete().iter().map(|r| r.body.len()).collect();
    assert_eq!(sizes, [1024, 1024]);

    // Chunked and growing past the limit: 413 (or a cut), never a complete body upstream.
    let request = format!(
        "POST /hello-prod/big HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(8)
    );
    let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
    if let Some(reply) = reply {
        reply.assert_error(413, "APIG.0201", "a chunked body past the limit");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for request in s.origin.all().iter().filter(|r| r.target() == "/big") {
        assert!(!request.complete, "the oversized body arrived complete upstream");
        assert!(request.body.len() <= 1024, "{} bytes went upstream", request.body.len());
    }
}

// ============================================================================================
// 12-13. Slow and idle clients.
// ============================================================================================

const HEADER_READ: Duration = Duration::from_secs(1);
/// What a deadline may overrun by on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);

fn assert_closed_by_deadline(closed: Option<Duration>, deadline: Duration, what: &str) {
    let closed = closed.unwrap_or_else(|| panic!("{what}: still open long after the deadline"));
    assert!(closed <= deadline + SLACK, "{what}: closed only after {closed:?}");
    assert!(closed >= deadline.mul_f32(0.8), "{what}: closed before the deadline ({closed:?}): not the timer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_at_the_header_read_deadline() {
    let s = start(&[], |config| config.timeouts.header_read = HEADER_READ).await;
    let mut wire = connect(s.addr()).await;
    let closed = wire.closed_within(HEADER_READ + Duration::from_secs(5)).await;
    assert_closed_by_deadline(closed, HEADER_READ, "silent socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_sent_only_p_is_closed_at_the_header_read_deadline() {
    // "P" may still be the HTTP/2 preface: the protocol detection itself must time out.
    let s = start(&[], |config| config.timeouts.header_read = HEADER_READ).await;
    let mut wire = connect(s.addr()).await;
    wire.send(b"P").await.unwrap();
    let closed = wire.closed_within(HEADER_READ + Duration::from_secs(5)).await;
    assert_closed_by_deadline(closed, HEADER_READ, "\"P\"");
    let mut wire = connect(s.addr()).await;
    wire.send(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let closed = wire.closed_within(HEADER_READ + Duration::from_secs(5)).await;
    assert_closed_by_deadline(closed, HEADER_READ, "half an HTTP/2 preface");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_closed_at_the_header_read_deadline() {
    let s = start(&[], |config| config.timeouts.header_read = HEADER_READ).await;
    let stream = TcpStream::connect(s.addr()).await.unwrap();
    let (read, mut write) = stream.into_split();
    let started = Instant::now();
    let dripper = tokio::spawn(async move {
        if write.write_all(b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nX-Slow: ").await.is_err() {
            return;
        }
        // One header byte every 300 ms, for far longer than the deadline.
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if write.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let mut wire = Wire::new(read);
    let closed = wire.closed_within(HEADER_READ + Duration::from_secs(5)).await.map(|_| started.elapsed());
    assert_closed_by_deadline(closed, HEADER_READ, "slowloris");
    dripper.abort();
    s.origin.assert_nothing("a head that never completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keepalive_connection_is_closed() {
    let s = start(&[], |config| config.timeouts.header_read = HEADER_READ).await;
    let mut wire = connect(s.addr()).await;
    wire.send(GET).await.unwrap();
    assert_eq!(wire.reply().await.expect("an answer").status, 200);
    let closed = wire.closed_within(HEADER_READ + Duration::from_secs(5)).await;
    assert_closed_by_deadline(closed, HEADER_READ, "idle keep-alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2c_connection_is_closed_after_keepalive_idle() {
    let idle = Duration::from_secs(1);
    let s = start(&[], |config| config.timeouts.keepalive_idle = idle).await;
    let stream = TcpStream::connect(s.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("http://{}/hello-prod", s.addr())).body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    response.into_body().collect().await.unwrap();
    let started = Instant::now();
    let ended = tokio::time::timeout(idle + Duration::from_secs(3), connection).await;
    assert!(ended.is_ok(), "the idle h2c connection is still open after {:?}", started.elapsed());
    assert!(started.elapsed() >= idle.mul_f32(0.8), "closed before the idle timeout: {:?}", started.elapsed());
    drop(sender);
}

/// The server's own HTTP/2 keep-alive PINGs move bytes on an idle connection; if they counted
/// as activity, with `keepalive_idle` above the PING interval (a third of it) an idle h2
/// connection would never be closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2c_connection_is_closed_even_when_keepalive_idle_exceeds_the_ping_interval() {
    let idle = Duration::from_secs(3);
    let s = start(&[], |config| config.timeouts.keepalive_idle = idle).await;
    let stream = TcpStream::connect(s.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("http://{}/hello-prod", s.addr())).body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request)).await.unwrap().unwrap();
    response.into_body().collect().await.unwrap();
    let ended = tokio::time::timeout(idle + Duration::from_secs(4), connection).await;
    assert!(ended.is_ok(), "an idle h2c connection outlived keepalive_idle ({idle:?}): PINGs count as activity");
    drop(sender);
}

// ============================================================================================
// 14. The connection cap.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_and_existing_ones_still_served() {
    let (gated, mut arrivals, release) = gated_backend().await;
    let s = start(&[("gated", gated)], |config| config.limits.max_connections = 3).await;

    // One connection with a request in flight, two idle keep-alive connections.
    let mut busy = connect(s.addr()).await;
    busy.send(b"GET /hello-gated HTTP/1.1\r\nHost: gw\r\n\r\n").await.unwrap();
    tokio::time::timeout(PATIENCE, arrivals.recv()).await.expect("the held request reaches its upstream");
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut wire = connect(s.addr()).await;
        wire.send(GET).await.unwrap();
        assert_eq!(wire.reply().await.expect("an answer").status, 200);
        idle.push(wire);
    }

    // 20 more: each is closed at once, unserved.
    let mut extra = Vec::new();
    for _ in 0..20 {
        let addr = s.addr();
        extra.push(tokio::spawn(async move {
            let mut wire = connect(addr).await;
            let _ = wire.send(GET).await;
            let mut received = Vec::new();
            let drain = async {
                while wire.fill().await {
                    received.append(&mut wire.buf);
                }
            };
            let closed = tokio::time::timeout(Duration::from_secs(3), drain).await.is_ok();
            (closed, received)
        }));
    }
    for task in extra {
        let (closed, received) = task.await.unwrap();
        assert!(closed, "a connection over the cap was left open");
        assert!(received.is_empty(), "a connection over the cap was served: {}", String::from_utf8_lossy(&received));
    }
    assert_eq!(s.origin.count(), 2, "only the two admitted requests reached the origin");

    // The three admitted connections are unharmed.
    release.notify_one();
    let reply = busy.reply().await.expect("the held request completes");
    assert_eq!((reply.status, reply.text().as_str()), (200, "slow"));
    for wire in &mut idle {
        wire.send(GET).await.unwrap();
        assert_eq!(wire.reply().await.expect("an idle connection still answers").status, 200);
    }

    // A slot freed is a slot reusable.
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, reply) = exchange(s.addr(), GET).await;
        if reply.as_ref().is_some_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "no new connection admitted after one closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ============================================================================================
// 15. TLS: HTTP/1.1 and h2 over ALPN, the handshake deadline, certificate hot reload.
// ============================================================================================

struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate: PEM chain, PEM key and the DER a client sees.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "graygate test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        Pki { ca }
    }

    fn leaf(&self, common_name: &str, serial: u64) -> Leaf {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(connector: &tokio_rustls::TlsConnector, addr: SocketAddr) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(PATIENCE, connector.connect(name, tcp)).await.expect("handshake in time").unwrap()
}

fn peer_certificate(tls: &Tls) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().expect("a server certificate")[0].clone().into_owned()
}

fn write_leaf(dir: &Path, leaf: &Leaf) -> TlsPaths {
    let paths = TlsPaths { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&paths.cert, &leaf.cert_pem).unwrap();
    std::fs::write(&paths.key, &leaf.key_pem).unwrap();
    paths
}

async fn tls_gateway(pki: &Pki, certs: &tempfile::TempDir) -> (Setup, Leaf) {
    let leaf = pki.leaf("graygate one", 1);
    let paths = write_leaf(certs.path(), &leaf);
    let s = start(&[], |config| {
        config.tls = Some(paths);
        config.timeouts.tls_handshake = Duration::from_secs(1);
        config.reload.debounce = Duration::from_millis(50);
        config.reload.poll = Duration::from_millis(500);
    })
    .await;
    (s, leaf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_http1_and_h2_by_alpn() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let (s, leaf) = tls_gateway(&pki, &certs).await;

    // HTTP/1.1 (the only protocol offered).
    let tls = tls_connect(&pki.connector(&[b"http/1.1"]), s.addr()).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"http/1.1".as_slice()));
    assert_eq!(peer_certificate(&tls), leaf.der);
    let mut wire = Wire::new(tls);
    wire.send(b"GET /hello-prod/one HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let reply = wire.reply().await.expect("an answer over TLS");
    assert_eq!((reply.status, reply.text().as_str()), (200, "/one"));

    // h2, offered first with HTTP/1.1 as a fallback.
    let tls = tls_connect(&pki.connector(&[b"h2", b"http/1.1"]), s.addr()).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::get("https://localhost/hello-prod/two").body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "/two");

    let seen = s.origin.all();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(header(&request.head, "x-forwarded-proto").as_deref(), Some("https"), "{}", request.head);
        assert!(request.head.lines().next().unwrap_or("").ends_with(" HTTP/1.1"), "{}", request.head);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_says_hello_is_closed_at_the_handshake_deadline() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let (s, _) = tls_gateway(&pki, &certs).await;
    let mut wire = connect(s.addr()).await;
    let closed = wire.closed_within(Duration::from_secs(6)).await;
    assert_closed_by_deadline(closed, Duration::from_secs(1), "no ClientHello");
    // And the listener still handshakes with everyone else.
    let tls = tls_connect(&pki.connector(&[b"http/1.1"]), s.addr()).await;
    let mut wire = Wire::new(tls);
    wire.send(GET).await.unwrap();
    assert_eq!(wire.reply().await.expect("an answer").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_certificate_is_served_to_new_connections_only() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let (s, first) = tls_gateway(&pki, &certs).await;
    let connector = pki.connector(&[b"http/1.1"]);

    let old = tls_connect(&connector, s.addr()).await;
    assert_eq!(peer_certificate(&old), first.der);
    let mut old = Wire::new(old);
    old.send(GET).await.unwrap();
    assert_eq!(old.reply().await.expect("an answer").status, 200);

    let second = pki.leaf("graygate two", 2);
    assert_ne!(second.der, first.der);
    write_leaf(certs.path(), &second);

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tls = tls_connect(&connector, s.addr()).await;
        if peer_certificate(&tls) == second.der {
            let mut wire = Wire::new(tls);
            wire.send(GET).await.unwrap();
            assert_eq!(wire.reply().await.expect("an answer with the new certificate").status, 200);
            break;
        }
        assert_eq!(peer_certificate(&tls), first.der, "only the old or the new certificate is ever served");
        assert!(Instant::now() < deadline, "the new certificate was not picked up within 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The connection opened before the reload still works, on its old certificate.
    assert_eq!(peer_certificate(old.stream_ref()), first.der);
    old.send(GET).await.unwrap();
    assert_eq!(old.reply().await.expect("the old connection still answers").status, 200);
}

// ============================================================================================
// 16. Graceful shutdown.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight_and_refuses_new_connections() {
    let (gated, mut arrivals, release) = gated_backend().await;
    let s = start(&[("gated", gated)], |_| {}).await;
    let addr = s.addr();
    let mut busy = connect(addr).await;
    busy.send(b"GET /hello-gated HTTP/1.1\r\nHost: gw\r\n\r\n").await.unwrap();
    tokio::time::timeout(PATIENCE, arrivals.recv()).await.expect("the request reaches its upstream");

    let Setup { gw: Gateway { app, dir: _dir, .. }, .. } = s;
    let shutdown = tokio::spawn(app.shutdown());

    // New connections are refused once the listener is gone, while the request is held.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        assert!(Instant::now() < deadline, "new connections still accepted 3 s into shutdown");
        match TcpStream::connect(addr).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Caught in the backlog as the listener closed (reset, or accepted by the kernel
            // and then dropped): keep trying until the port refuses.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("unexpected connect error: {error}"),
            Ok(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!shutdown.is_finished(), "shutdown finished with a request still in flight");

    release.notify_one();
    let reply = busy.reply().await.expect("the request in flight completes");
    assert_eq!((reply.status, reply.text().as_str()), (200, "slow"));
    tokio::time::timeout(PATIENCE, shutdown).await.expect("shutdown completes once drained").unwrap();
}
