//! Listener lifecycle: accept, cap connections, detect the protocol, serve, drain.
//!
//! Used by the data plane and the admin listener. A connection over the limit is closed at
//! once (existing clients are untouched). Before HTTP starts, the TLS handshake (ALPN picks
//! h2 or HTTP/1.1) or, in plain text, the read that tells the HTTP/2 preface from HTTP/1
//! runs under a deadline — hyper-util's auto-detection has none, so a silent socket would
//! sit there forever. hyper's own timeouts need a timer, so both builders get one. An idle
//! connection is shut down gracefully; on shutdown every connection drains, and whatever
//! is still open when the grace period ends is closed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::ProxyBody;
use super::gated::Gated;
use super::io::{Activity, ConnIo};
use crate::config::ServerConfig;

/// How long to wait after a failed `accept` (typically out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// At most one log line per this long about failing `accept`s (each is counted).
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// HTTP/2 PINGs find dead peers on otherwise quiet connections (more often when the idle
/// timeout is short, so a dead peer is found before the connection would be closed anyway).
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
const H2_MAX_STREAMS: u32 = 256;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connection-level settings shared by every listener.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub header_read: Duration,
    pub keepalive_idle: Duration,
    pub tls_handshake: Duration,
    pub max_connections: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
}

/// What every connection of one listener shares.
struct Shared<H> {
    settings: ConnSettings,
    tls: Option<TlsAcceptor>,
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
    handler: H,
}

impl ConnSettings {
    pub fn from_config(config: &ServerConfig) -> Self {
        ConnSettings {
            header_read: config.timeouts.header_read,
            keepalive_idle: config.timeouts.keepalive_idle,
            tls_handshake: config.timeouts.tls_handshake,
            max_connections: config.limits.max_connections,
            max_headers: config.limits.max_headers,
            max_header_bytes: config.limits.max_header_bytes,
            shutdown_grace: config.timeouts.shutdown_grace,
        }
    }
}

/// Failed `accept`s of one listener: all counted, logged at most once per interval. Out of
/// file descriptors, every accept fails as fast as it is retried, and a line per failure
/// would fill the disk the gateway is already short of.
pub struct AcceptErrors {
    listener: &'static str,
    counter: prometheus::IntCounter,
    /// When the last line was written, and the failures since that it did not report.
    logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    pub fn new(listener: &'static str, counter: prometheus::IntCounter) -> Self {
        AcceptErrors { listener, counter, logged: None, unlogged: 0 }
    }

    fn record(&mut self, error: &std::io::Error) {
        self.counter.inc();
        match self.logged {
            Some(at) if at.elapsed() < ACCEPT_LOG_INTERVAL => self.unlogged += 1,
            Some(at) => {
                let failures = self.unlogged + 1;
                let secs = at.elapsed().as_secs();
                tracing::warn!(listener = self.listener, %error, failures, "accept failed {failures} times in {secs} s");
                (self.logged, self.unlogged) = (Some(Instant::now()), 0);
            }
            None => {
                tracing::warn!(listener = self.listener, %error, "accept failed; repeats are logged once per 10 s");
                (self.logged, self.unlogged) = (Some(Instant::now()), 0);
            }
        }
    }
}

/// Serves `listener` until `shutdown` turns true, then drains for the grace period.
pub async fn serve<H, F>(
    listener: TcpListener,
    settings: ConnSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: H,
    mut accept_errors: AcceptErrors,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let max_connections = settings.max_connections;
    let limit = Arc::new(Semaphore::new(max_connections));
    let (h1, h2) = builders(&settings);
    let shared = Arc::new(Shared { settings, tls: tls.map(TlsAcceptor::from), h1, h2, handler });
    let (abort, aborted) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                accept_errors.record(&error);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing");
            continue;
        };
        let (shared, stop, aborted) = (Arc::clone(&shared), shutdown.clone(), aborted.clone());
        tokio::spawn(async move {
            connection(stream, peer, &shared, stop, aborted).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it ends: all of them back means drained.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(shared.settings.shutdown_grace, limit.acquire_many(all)).await.is_err() {
        tracing::warn!("grace period over; closing the remaining connections");
        let _ = abort.send(true);
    }
}

async fn connection<H, F>(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared<H>,
    stop: watch::Receiver<bool>,
    aborted: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set_nodelay failed");
    }
    let activity = Activity::new();
    // Until a connection has sent its first byte there is nothing to drain: on shutdown it is
    // closed at once, not left to its handshake or header-read deadline. Once a byte came,
    // the request it starts is served (the byte is looked for first).
    let accepted = tokio::time::Instant::now();
    let first = if shared.tls.is_some() { shared.settings.tls_handshake } else { shared.settings.header_read };
    let mut waiting = stop.clone();
    let mut byte = [0; 1];
    let arrived = tokio::select! {
        biased;
        peeked = tokio::time::timeout(first, stream.peek(&mut byte)) => matches!(peeked, Ok(Ok(1..))),
        _ = stopped(&mut waiting) => false,
    };
    if !arrived {
        return tracing::debug!(%peer, "nothing sent before the deadline or shutdown; closing");
    }
    let left = |deadline: Duration| deadline.saturating_sub(accepted.elapsed());
    match &shared.tls {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(left(shared.settings.tls_handshake), acceptor.accept(stream)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = ConnIo::new(bytes::Bytes::new(), tls);
            let io = if h2 { io } else { io.http1() };
            // Boxed: a TLS session is kilobytes, and unboxed it would size every plain
            // connection's task too (an idle keep-alive connection's memory is mostly that).
            Box::pin(serve_io(io, h2, peer, shared, &activity, stop, aborted)).await;
        }
        None => {
            let Some((prefix, h2)) = detect(&mut stream, left(shared.settings.header_read)).await else {
                return tracing::debug!(%peer, "no request before the header-read deadline; closing");
            };
            let io = ConnIo::new(prefix, stream);
            let io = if h2 { io } else { io.http1() };
            serve_io(io, h2, peer, shared, &activity, stop, aborted).await;
        }
    }
}

/// Reads until the bytes are, or cannot be, the HTTP/2 preface; `None` on a timeout or EOF.
async fn detect(stream: &mut TcpStream, deadline: Duration) -> Option<(bytes::Bytes, bool)> {
    let mut seen = BytesMut::with_capacity(H2_PREFACE.len());
    let read = async {
        while seen.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&seen) {
            if stream.read_buf(&mut seen).await.ok()? == 0 {
                return None;
            }
        }
        Some(())
    };
    tokio::time::timeout(deadline, read).await.ok()??;
    let h2 = seen.starts_with(H2_PREFACE);
    Some((seen.freeze(), h2))
}

async fn serve_io<IO, H, F>(
    io: IO,
    h2: bool,
    peer: SocketAddr,
    shared: &Shared<H>,
    activity: &Arc<Activity>,
    stop: watch::Receiver<bool>,
    aborted: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let service = service_fn(|request| {
        let in_flight = activity.begin();
        // Boxed per request: hyper keeps a slot the size of the service's future for the
        // whole connection, and the proxy's future is kilobytes that an idle connection need
        // not hold. The box holds the handler's future itself and the wrapper only points to
        // it: a wrapper that owned the future would hold it twice (captured, then awaited)
        // and copy its kilobytes at the first poll.
        let response = Box::pin((shared.handler)(request, peer));
        async move {
            let response = response.await;
            drop(in_flight);
            Ok::<_, Infallible>(response)
        }
    });
    let idle = shared.settings.keepalive_idle;
    if h2 {
        let connection = shared.h2.serve_connection(TokioIo::new(io), service);
        // Boxed for the same reason as the TLS session: HTTP/1 connections are the many.
        Box::pin(drive(connection, activity, idle, stop, aborted, peer)).await;
    } else {
        let connection = shared.h1.serve_connection(TokioIo::new(io), service);
        drive(connection, activity, idle, stop, aborted, peer).await;
    }
}

/// Runs a connection to its end: gracefully shut down when idle or on shutdown, dropped
/// when the grace period is over.
async fn drive<C>(
    connection: C,
    activity: &Activity,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
    mut aborted: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(connection);
    // Shutdown or idleness asks the connection to close gracefully; abort drops it. Both are
    // gated: polled on their own wake-ups, not on each of the connection's.
    let mut close = Gated::new(async {
        let mut check = tokio::time::interval((idle / 4).max(Duration::from_millis(100)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::select! {
            _ = stopped(&mut stop) => {}
            _ = async { loop { check.tick().await; if activity.idle_for() >= idle { break; } } } => {}
        }
    });
    let mut abort = Gated::new(stopped(&mut aborted));
    let mut closing = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            return Poll::Ready(());
        }
        if abort.poll_gated(cx).is_ready() {
            return Poll::Ready(());
        }
        if !closing && close.poll_gated(cx).is_ready() {
            connection.as_mut().graceful_shutdown();
            closing = true;
            // The connection acts on it when polled next.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await;
}

/// Resolves once the flag turns true (the guard `wait_for` returns is not `Send`).
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

fn builders(
    settings: &ConnSettings,
) -> (hyper::server::conn::http1::Builder, hyper::server::conn::http2::Builder<TokioExecutor>) {
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read)
        // Twice the configured limits: up to them, the handler answers with a JSON 431.
        .max_headers(settings.max_headers.saturating_mul(2))
        .max_buf_size(settings.max_header_bytes.saturating_mul(2))
        .keep_alive(true);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    let ping = H2_KEEPALIVE.min(settings.keepalive_idle / 3).max(Duration::from_millis(100));
    h2.timer(TokioTimer::new())
        .keep_alive_interval(ping)
        .keep_alive_timeout(ping.max(Duration::from_secs(1)))
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(settings.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(256);
    (h1, h2)
}
