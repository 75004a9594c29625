//! The pooled HTTP client to upstreams, and how its failures are classified.
//!
//! One client lives for the whole process (a reload must not drop the pool). hyper-util's
//! pool ignores its idle timeout unless a pool timer is set, and its connector has no
//! connect timeout and Nagle on by default: all three are set here.

use std::error::Error as _;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::ServerConfig;
use crate::metrics::UpstreamErrorKind;

pub type UpstreamClient = Client<HttpConnector, Incoming>;

pub fn build_client(config: &ServerConfig) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.timeouts.upstream_connect));
    connector.set_keepalive(Some(config.timeouts.pool_idle));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(config.timeouts.pool_idle)
        .pool_max_idle_per_host(config.limits.pool_max_idle_per_upstream)
        .build(connector)
}

/// Sorts a client error into the `kind` reported in metrics and the 502 message.
pub fn classify(error: &hyper_util::client::legacy::Error) -> UpstreamErrorKind {
    if error.is_connect() {
        return UpstreamErrorKind::Connect;
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>()
            && hyper_error.is_parse()
        {
            return UpstreamErrorKind::Protocol;
        }
        source = cause.source();
    }
    UpstreamErrorKind::Reset
}
