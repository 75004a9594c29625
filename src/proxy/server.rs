//! Listener lifecycle: accept, cap connections, serve HTTP/1.1 and h2c, drain on shutdown.
//!
//! Used by both the data plane and the admin listener. hyper's header-read timeout is
//! inert without a timer, so both protocol builders get one. A connection over the limit
//! is closed at once, which costs the existing clients nothing.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::ProxyBody;
use crate::config::ServerConfig;

/// How long to wait after a failed `accept` (typically out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// HTTP/2 PINGs find dead peers on otherwise idle connections.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
const H2_MAX_STREAMS: u32 = 256;

/// Connection-level settings shared by every listener.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub header_read: Duration,
    pub max_connections: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
}

impl ConnSettings {
    pub fn from_config(config: &ServerConfig) -> Self {
        ConnSettings {
            header_read: config.timeouts.header_read,
            max_connections: config.limits.max_connections,
            max_headers: config.limits.max_headers,
            max_header_bytes: config.limits.max_header_bytes,
            shutdown_grace: config.timeouts.shutdown_grace,
        }
    }
}

/// Serves `listener` until `shutdown` turns true, then drains for the grace period.
pub async fn serve<H, F>(listener: TcpListener, settings: ConnSettings, handler: H, mut shutdown: watch::Receiver<bool>)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let builder = connection_builder(&settings);
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing");
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "set_nodelay failed");
        }
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let response = handler(request, peer);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let open = graceful.count();
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(open, "grace period over; closing the remaining connections");
    }
}

fn connection_builder(settings: &ConnSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read)
        .max_headers(settings.max_headers)
        .max_buf_size(settings.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    builder
}
