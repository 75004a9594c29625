//! A client of etcd's JSON gateway over the hyper client graygate already has: unary calls
//! (range, txn, lease) with a deadline and failover across endpoints, and the watch stream.
//!
//! Why the gateway and not gRPC: the `etcd-client` crate compiles etcd's protobufs at build
//! time and so needs `protoc`, which a fresh machine does not have; behind a cargo feature,
//! the binary a user builds would have no fleet mode. The gateway is etcd's documented
//! HTTP API (APISIX talks to etcd this way), needs no code generation, and its watch is a
//! stream of JSON messages on one long response. It is half-duplex — a watch cannot be sent
//! a progress request — so a silent watch is detected end to end instead (see `watch`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{
    AuthenticateRequest, AuthenticateResponse, ErrorBody, LeaseGrantRequest, LeaseGrantResponse, LeaseId,
    LeaseKeepAliveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, StreamItem, TxnRequest, TxnResponse,
    WatchCreate, WatchCreateRequest, WatchResponse,
};
use crate::config::EtcdSettings;
use crate::secret::Secret;

/// gRPC status codes the gateway reports (`code` in its error body).
const OUT_OF_RANGE: i64 = 11;
const UNAVAILABLE: i64 = 14;
const DEADLINE_EXCEEDED: i64 = 4;
const UNAUTHENTICATED: i64 = 16;
/// A watch message larger than this is refused (etcd's own request limit is 1.5 MiB; a
/// watch batch of many revisions is bigger, but not this big).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

pub struct EtcdClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoints: Vec<Uri>,
    /// The endpoint that answered last: tried first.
    preferred: AtomicUsize,
    credentials: Option<(String, Secret)>,
    token: Mutex<Option<String>>,
    request_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint could be connected to: the request reached no etcd.
    #[error("etcd unreachable: {0}")]
    Unreachable(String),
    /// A request was sent but not answered (timed out, cut off, unavailable): it may or
    /// may not have been applied.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// The revision asked for was compacted away.
    #[error("revision compacted (etcd keeps from {0})")]
    Compacted(i64),
    /// etcd answered and refused the request (too large, invalid, not permitted).
    #[error("etcd refused the request: {message} (code {code})")]
    Refused { code: i64, message: String },
}

/// A watch: JSON messages read off one long response, in order.
pub struct WatchStream {
    body: Incoming,
    buffer: BytesMut,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("etcd TLS: {0}")]
    Tls(String),
}

// === impl EtcdClient ===

impl EtcdClient {
    pub fn new(settings: &EtcdSettings) -> Result<Self, ClientSetupError> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.dial_timeout));
        connector.enforce_http(false);
        let tls = tls_config(settings)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(EtcdClient {
            http,
            endpoints: settings.endpoints.clone(),
            preferred: AtomicUsize::new(0),
            credentials: settings.username.clone().zip(settings.password.clone()),
            token: Mutex::new(None),
            request_timeout: settings.request_timeout,
        })
    }

    pub async fn range(&self, request: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        self.call("/v3/kv/range", request).await
    }

    pub async fn txn(&self, request: &TxnRequest) -> Result<TxnResponse, EtcdError> {
        self.call("/v3/kv/txn", request).await
    }

    pub async fn put(&self, request: &PutRequest) -> Result<PutResponse, EtcdError> {
        self.call("/v3/kv/put", request).await
    }

    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, EtcdError> {
        let granted: LeaseGrantResponse = self.call("/v3/lease/grant", &LeaseGrantRequest { ttl }).await?;
        if granted.id == 0 || !granted.error.is_empty() {
            return Err(EtcdError::Refused { code: 0, message: format!("lease not granted: {}", granted.error) });
        }
        Ok(granted.id)
    }

    /// Renews a lease; `Ok(false)` when it no longer exists (expired or revoked).
    pub async fn lease_keepalive(&self, id: i64) -> Result<bool, EtcdError> {
        let item: StreamItem<LeaseKeepAliveResponse> = self.call("/v3/lease/keepalive", &LeaseId { id }).await?;
        match (item.result, item.error) {
            (_, Some(error)) => Err(refused(error)),
            (Some(alive), None) => Ok(alive.ttl > 0),
            (None, None) => Ok(false),
        }
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        let _: serde_json::Value = self.call("/v3/lease/revoke", &LeaseId { id }).await?;
        Ok(())
    }

    /// Opens a watch of `[key, range_end)` from `start_revision`; the first message is the
    /// creation (or, for a compacted revision, creation then cancellation).
    pub async fn watch(&self, key: Vec<u8>, range_end: Vec<u8>, start_revision: i64) -> Result<WatchStream, EtcdError> {
        let create = WatchCreate {
            create_request: WatchCreateRequest { key, range_end, start_revision, progress_notify: true },
        };
        let body = serde_json::to_vec(&create).map_err(|e| EtcdError::Unavailable(e.to_string()))?;
        let response = self.send("/v3/watch", Bytes::from(body)).await?;
        Ok(WatchStream { body: response, buffer: BytesMut::new() })
    }

    /// A unary call: JSON in, JSON out, tried on each endpoint in turn until one answers.
    async fn call<Q: Serialize, R: DeserializeOwned>(&self, path: &str, request: &Q) -> Result<R, EtcdError> {
        let body = Bytes::from(serde_json::to_vec(request).map_err(|e| EtcdError::Unavailable(e.to_string()))?);
        let exchange = async {
            let response = self.send(path, body).await?;
            let bytes = response.collect().await.map_err(|e| EtcdError::Unavailable(e.to_string()))?.to_bytes();
            serde_json::from_slice::<R>(&bytes)
                .map_err(|e| EtcdError::Unavailable(format!("unreadable answer to {path}: {e}")))
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(EtcdError::Unavailable(format!("{path}: no answer within {:?}", self.request_timeout))),
        }
    }

    /// Sends `body` to `path` on the preferred endpoint, then the others; re-authenticates
    /// once if the token expired. A successful answer's body is left to the caller.
    async fn send(&self, path: &str, body: Bytes) -> Result<Incoming, EtcdError> {
        let count = self.endpoints.len().max(1);
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last = EtcdError::Unreachable("no endpoint configured".into());
        for attempt in 0..count {
            let index = (first + attempt) % count;
            let Some(endpoint) = self.endpoints.get(index) else { break };
            for reauthenticated in [false, true] {
                match self.send_to(endpoint, path, body.clone()).await {
                    Ok(response) => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return Ok(response);
                    }
                    Err(EtcdError::Refused { code: UNAUTHENTICATED, .. })
                        if !reauthenticated && self.credentials.is_some() =>
                    {
                        self.set_token(None);
                        continue;
                    }
                    Err(error @ (EtcdError::Unavailable(_) | EtcdError::Unreachable(_))) => {
                        // One endpoint that may have applied it is enough to report.
                        if !matches!(last, EtcdError::Unavailable(_)) || matches!(error, EtcdError::Unavailable(_)) {
                            last = error;
                        }
                        break;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Err(last)
    }

    async fn send_to(&self, endpoint: &Uri, path: &str, body: Bytes) -> Result<Incoming, EtcdError> {
        let token = match &self.credentials {
            Some(credentials) => Some(self.token_for(endpoint, credentials).await?),
            None => None,
        };
        let response = self.post(endpoint, path, body, token.as_deref()).await?;
        if response.status() == StatusCode::OK {
            return Ok(response.into_body());
        }
        let status = response.status();
        let bytes = response.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let error: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
            code: if status.is_server_error() { UNAVAILABLE } else { 0 },
            message: format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
            error: String::new(),
        });
        Err(refused(error))
    }

    async fn post(
        &self,
        endpoint: &Uri,
        path: &str,
        body: Bytes,
        token: Option<&str>,
    ) -> Result<http::Response<Incoming>, EtcdError> {
        let uri = format!(
            "{}://{}{path}",
            endpoint.scheme_str().unwrap_or("http"),
            endpoint.authority().map_or("", |a| a.as_str())
        );
        let mut request =
            Request::builder().method(Method::POST).uri(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, token);
        }
        let request = request.body(Full::new(body)).map_err(|e| EtcdError::Unavailable(e.to_string()))?;
        let exchange = self.http.request(request);
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) if error.is_connect() => Err(EtcdError::Unreachable(format!("{endpoint}: {error}"))),
            Ok(Err(error)) => Err(EtcdError::Unavailable(format!("{endpoint}: {error}"))),
            Err(_) => Err(EtcdError::Unavailable(format!("{endpoint}: no answer within {:?}", self.request_timeout))),
        }
    }

    async fn token_for(&self, endpoint: &Uri, (name, password): &(String, Secret)) -> Result<String, EtcdError> {
        if let Some(token) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(token);
        }
        let password = String::from_utf8_lossy(password.expose()).into_owned();
        let body = serde_json::to_vec(&AuthenticateRequest { name, password: &password })
            .map_err(|e| EtcdError::Unavailable(e.to_string()))?;
        let response = self.post(endpoint, "/v3/auth/authenticate", Bytes::from(body), None).await?;
        let bytes = response.into_body().collect().await.map_err(|e| EtcdError::Unavailable(e.to_string()))?.to_bytes();
        let answer: AuthenticateResponse = serde_json::from_slice(&bytes).unwrap_or_default();
        if answer.token.is_empty() {
            let error: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(EtcdError::Refused {
                code: error.code,
                message: format!("authentication failed: {}", error.message),
            });
        }
        self.set_token(Some(answer.token.clone()));
        Ok(answer.token)
    }

    fn set_token(&self, token: Option<String>) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }
}

/// The error an etcd error body describes.
fn refused(error: ErrorBody) -> EtcdError {
    let message = if error.message.is_empty() { error.error } else { error.message };
    match error.code {
        UNAVAILABLE | DEADLINE_EXCEEDED => EtcdError::Unavailable(message),
        OUT_OF_RANGE if message.contains("compacted") => EtcdError::Compacted(0),
        code => EtcdError::Refused { code, message },
    }
}

/// rustls for `https://` endpoints, with the ring provider (never two in one build).
fn tls_config(settings: &EtcdSettings) -> Result<rustls::ClientConfig, ClientSetupError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let tls_error = |e: &dyn std::fmt::Display| ClientSetupError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    let tls = settings.tls.as_ref();
    match tls.and_then(|t| t.ca.as_ref()) {
        Some(ca) => {
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls_error(&format!("{}: {e}", ca.display())))? {
                roots.add(cert.map_err(|e| tls_error(&e))?).map_err(|e| tls_error(&e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&e))?
            .with_root_certificates(roots);
    match tls.and_then(|t| t.cert.as_ref().zip(t.key.as_ref())) {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| tls_error(&format!("{}: {e}", cert.display())))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_error(&e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(&format!("{}: {e}", key.display())))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| tls_error(&e))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

// === impl WatchStream ===

impl WatchStream {
    /// The next message; `Ok(None)` when etcd ended the stream.
    pub async fn next(&mut self) -> Result<Option<WatchResponse>, EtcdError> {
        loop {
            if let Some(message) = self.parse()? {
                return Ok(Some(message));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(error)) => return Err(EtcdError::Unavailable(format!("watch stream: {error}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                    if self.buffer.len() > MAX_MESSAGE {
                        return Err(EtcdError::Unavailable("watch message over 64 MiB".into()));
                    }
                }
            }
        }
    }

    /// One complete message from the buffer, if it holds one (messages are JSON values one
    /// after another; the gateway separates them with newlines, but nothing relies on it).
    fn parse(&mut self) -> Result<Option<WatchResponse>, EtcdError> {
        let mut values = serde_json::Deserializer::from_slice(&self.buffer).into_iter::<StreamItem<WatchResponse>>();
        let item = match values.next() {
            None => return Ok(None),
            Some(Err(error)) if error.is_eof() => return Ok(None),
            Some(Err(error)) => return Err(EtcdError::Unavailable(format!("unreadable watch message: {error}"))),
            Some(Ok(item)) => item,
        };
        let used = values.byte_offset();
        self.buffer.advance(used);
        match (item.result, item.error) {
            (_, Some(error)) => Err(refused(error)),
            (Some(message), None) => Ok(Some(message)),
            (None, None) => Ok(Some(WatchResponse::default())),
        }
    }
}
