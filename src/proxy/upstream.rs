//! The pooled clients to upstreams, one per protocol, and how their failures are classified.
//!
//! They live for the whole process (a reload must not drop the pools). HTTP/1 upstreams go
//! through graygate's own pool (`pool`), driven in the request's task; h2c and https ones
//! through hyper-util's legacy client, whose connection tasks suit multiplexing. Its pool
//! ignores its idle timeout unless a pool timer is set, and its connector has no connect
//! timeout and Nagle on by default: all three are set here. `https://` upstreams use rustls
//! with the ring provider (never two providers in one build) and the system roots or a
//! configured CA; `h2c://` upstreams get prior-knowledge HTTP/2 over plain TCP.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{CaptureConnection, HttpConnector, capture_connection};
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::body::{RequestBody, UpstreamBody};
use super::pool::{Http1Pool, Lease, PoolSettings, SendError};
use crate::config::ServerConfig;
use crate::metrics::UpstreamErrorKind;
use crate::routing::{Protocol, Upstream};

pub struct UpstreamClients {
    http1: Arc<Http1Pool>,
    h2c: Client<HttpConnector, RequestBody>,
    https: Client<HttpsConnector<HttpConnector>, RequestBody>,
}

/// A response head, and the connection its body arrives on.
pub struct Sent {
    pub response: Response<Incoming>,
    via: Via,
}

enum Via {
    Pool(Lease),
    Legacy(CaptureConnection),
}

/// Why an exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Pool(#[from] SendError),
    #[error(transparent)]
    Legacy(#[from] ClientError),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("cannot read the upstream CA bundle {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("TLS client setup: {0}")]
    Tls(#[from] rustls::Error),
}

// === impl UpstreamClients ===

impl UpstreamClients {
    pub fn build(config: &ServerConfig) -> Result<Self, ClientSetupError> {
        let connector = || {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(config.timeouts.upstream_connect));
            connector.set_keepalive(Some(config.timeouts.pool_idle));
            connector.enforce_http(false);
            connector
        };
        let builder = || {
            let mut builder = Client::builder(TokioExecutor::new());
            builder
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(config.timeouts.pool_idle)
                .pool_max_idle_per_host(config.limits.pool_max_idle_per_upstream);
            builder
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(config.upstream_ca.as_deref())?)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector());
        let pool = PoolSettings {
            connect_timeout: config.timeouts.upstream_connect,
            idle_timeout: config.timeouts.pool_idle,
            max_idle_per_upstream: config.limits.pool_max_idle_per_upstream,
        };
        Ok(UpstreamClients {
            http1: Http1Pool::spawn(pool),
            h2c: builder().http2_only(true).build(connector()),
            https: builder().build(https),
        })
    }

    /// Sends `request` (its URI from [`Upstream::uri`]) to `upstream`. With `retry_connect`
    /// (an idempotent request without a body), a failed connect is tried once more on a
    /// fresh connection.
    pub async fn send(
        &self,
        upstream: &Upstream,
        mut request: Request<RequestBody>,
        retry_connect: bool,
    ) -> Result<Sent, UpstreamError> {
        if upstream.protocol == Protocol::Http1 {
            request.headers_mut().insert(http::header::HOST, upstream.host.clone());
            let authority = upstream.authority();
            let (response, lease) =
                self.http1.send(authority.as_str(), authority.host(), upstream.port(), request, retry_connect).await?;
            return Ok(Sent { response, via: Via::Pool(lease) });
        }
        self.send_legacy(upstream.protocol, request, retry_connect).await
    }

    /// h2c and https. Boxed: hyper-util's request futures are kilobytes, and unboxed they
    /// would size every request's future, HTTP/1 ones included (each await moves it).
    fn send_legacy(
        &self,
        protocol: Protocol,
        request: Request<RequestBody>,
        retry_connect: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Sent, UpstreamError>> + Send + '_>> {
        Box::pin(async move {
            // The legacy client consumes the request even when it cannot connect: keep what
            // a second try needs (a bodiless request is its head).
            let again = retry_connect.then(|| {
                let mut again = Request::new(request.body().retry());
                *again.method_mut() = request.method().clone();
                *again.uri_mut() = request.uri().clone();
                *again.headers_mut() = request.headers().clone();
                again
            });
            match (self.legacy(protocol, request).await, again) {
                (Err(error), Some(again)) if error.is_connect() => {
                    tracing::debug!(%error, "connect failed; retrying once on a fresh connection");
                    again.body().note_retry();
                    Ok(self.legacy(protocol, again).await?)
                }
                (result, _) => Ok(result?),
            }
        })
    }

    async fn legacy(&self, protocol: Protocol, mut request: Request<RequestBody>) -> Result<Sent, ClientError> {
        let captured = capture_connection(&mut request);
        let response = if protocol == Protocol::H2c {
            *request.version_mut() = http::Version::HTTP_2;
            self.h2c.request(request).await?
        } else {
            self.https.request(request).await?
        };
        Ok(Sent { response, via: Via::Legacy(captured) })
    }
}

// === impl Sent ===

impl Sent {
    /// Never reuse the connection this response came on: what follows it cannot be trusted.
    /// (The body may already be complete and a legacy connection back in its pool.)
    pub fn poison(&mut self) {
        match &mut self.via {
            Via::Pool(lease) => lease.poison(),
            Via::Legacy(captured) => {
                if let Some(connected) = captured.connection_metadata().as_ref() {
                    connected.poison();
                }
            }
        }
    }

    /// The response, its body streaming to the client (and driving its connection).
    pub fn into_response(self, permit: Option<tokio::sync::OwnedSemaphorePermit>) -> Response<UpstreamBody> {
        let lease = match self.via {
            Via::Pool(lease) => Some(lease),
            Via::Legacy(_) => None,
        };
        self.response.map(|body| UpstreamBody::new(body, lease, permit))
    }
}

// === impl UpstreamError ===

impl UpstreamError {
    /// Nothing reached the upstream: no connection could be made.
    pub fn is_connect(&self) -> bool {
        match self {
            UpstreamError::Pool(error) => matches!(error, SendError::Connect { .. }),
            UpstreamError::Legacy(error) => error.is_connect(),
        }
    }

    /// The `kind` reported in metrics and the 502 message.
    pub fn classify(&self) -> UpstreamErrorKind {
        match self {
            _ if self.is_connect() => UpstreamErrorKind::Connect,
            UpstreamError::Pool(SendError::Http(error)) if is_parse(error) => UpstreamErrorKind::Protocol,
            UpstreamError::Legacy(error) if is_parse(error) => UpstreamErrorKind::Protocol,
            _ => UpstreamErrorKind::Reset,
        }
    }
}

/// A malformed response somewhere in the error's chain.
fn is_parse(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse) {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The configured CA bundle, or the system's roots.
fn roots(ca: Option<&std::path::Path>) -> Result<RootCertStore, ClientSetupError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let ca_error = |reason: String| ClientSetupError::Ca { path: path.display().to_string(), reason };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_error(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| ca_error(e.to_string()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ca_error("no certificate in it".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                // No system roots is not fatal: plain-HTTP upstreams still work; an https
                // upstream then fails its handshake with a 502.
                tracing::warn!(errors = ?found.errors, "no system root certificates found for https upstreams");
            }
        }
    }
    Ok(roots)
}
