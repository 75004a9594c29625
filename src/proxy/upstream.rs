//! The pooled clients to upstreams, one per protocol, and how their failures are classified.
//!
//! They live for the whole process (a reload must not drop the pools). hyper-util's pool
//! ignores its idle timeout unless a pool timer is set, and its connector has no connect
//! timeout and Nagle on by default: all three are set here. `https://` upstreams use rustls
//! with the ring provider (never two providers in one build) and the system roots or a
//! configured CA; `h2c://` upstreams get prior-knowledge HTTP/2 over plain TCP.

use std::error::Error as _;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::body::RequestBody;
use crate::config::ServerConfig;
use crate::metrics::UpstreamErrorKind;
use crate::routing::Protocol;

pub struct UpstreamClients {
    http1: Client<HttpConnector, RequestBody>,
    h2c: Client<HttpConnector, RequestBody>,
    https: Client<HttpsConnector<HttpConnector>, RequestBody>,
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
        Ok(UpstreamClients {
            http1: builder().build(connector()),
            h2c: builder().http2_only(true).build(connector()),
            https: builder().build(https),
        })
    }

    pub async fn request(
        &self,
        protocol: Protocol,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, ClientError> {
        match protocol {
            Protocol::Http1 => self.http1.request(request).await,
            Protocol::H2c => {
                let mut request = request;
                *request.version_mut() = http::Version::HTTP_2;
                self.h2c.request(request).await
            }
            Protocol::Https => self.https.request(request).await,
        }
    }
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

/// Sorts a client error into the `kind` reported in metrics and the 502 message.
pub fn classify(error: &ClientError) -> UpstreamErrorKind {
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
