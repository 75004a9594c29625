//! The data plane: resolve a request against the current routing table and forward it.
//!
//! One `async fn` per request: check the path, load the table once (requests in flight
//! keep the table they started with), resolve trigger and version, rewrite the request for
//! the upstream, send it through the pooled client under the function's timeout, and
//! stream the answer back. Every failure goes through [`GatewayError::into_response`].

pub mod body;
pub mod headers;
mod io;
pub mod path;
pub mod server;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::health::{UpstreamHealth, Verdict};
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::routing::{Protocol, Resolved, Unrouted};
use crate::store::RoutesStore;
use body::{BodyFault, Fault, RequestBody, UpstreamBody};
use hyper_util::client::legacy::connect::capture_connection;
use upstream::UpstreamClients;

/// Responses stream the upstream's body, or carry a small body of our own.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

pub struct Gateway {
    routes: Arc<RoutesStore>,
    clients: UpstreamClients,
    metrics: Metrics,
    default_timeout: Duration,
    limits: RequestLimits,
    /// `X-Forwarded-Proto` for requests on this listener.
    scheme: &'static str,
}

/// Per-request limits, answered with JSON errors. hyper enforces twice these as a backstop
/// (and answers those itself).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_body_bytes: u64,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// A failed exchange: what the metrics call it, and what the client is told.
struct Failure {
    kind: Option<UpstreamErrorKind>,
    error: GatewayError,
}

// === impl Gateway ===

impl Gateway {
    pub fn new(
        routes: Arc<RoutesStore>,
        clients: UpstreamClients,
        metrics: Metrics,
        default_timeout: Duration,
        limits: RequestLimits,
        scheme: &'static str,
    ) -> Self {
        Gateway { routes, clients, metrics, default_timeout, limits, scheme }
    }

    pub async fn handle(&self, mut request: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let started = Instant::now();
        let request_id = headers::request_id(request.headers());
        if headers::too_large(request.headers(), self.limits.max_headers, self.limits.max_header_bytes) {
            return self.refuse(GatewayError::HeadersTooLarge, &request_id);
        }
        let path = match path::sanitize(request.uri().path()) {
            Ok(path) => path,
            Err(why) => return self.refuse(GatewayError::BadRequest(why), &request_id),
        };
        let table = self.routes.current();
        // Generation 0 is the empty table of a store that has not loaded a state yet.
        if table.generation() == 0 {
            return self.refuse(GatewayError::NotReady, &request_id);
        }
        let resolved = table.resolve(request.method(), &path, request.headers());
        let Resolved { function, trigger, version, route, remainder, fallback_from } = match resolved {
            Ok(resolved) => resolved,
            Err(Unrouted::NoTrigger | Unrouted::MethodNotAllowed) => {
                return self.refuse(GatewayError::NoRoute, &request_id);
            }
        };
        let route_metrics =
            route.metrics.get_or_init(|| self.metrics.route(&function.name, &trigger.target, &version.name));
        if let Some(skipped) = fallback_from {
            self.metrics.alias_fallback(&function.name, &trigger.target, &skipped.name);
        }
        let upstream_uri = match version.upstream.uri(remainder, request.uri().query()) {
            Ok(uri) => uri,
            Err(_) => {
                let error = GatewayError::BadRequest("The request path or query cannot be forwarded");
                self.metrics.record(route_metrics, error.status(), started.elapsed());
                return error.into_response(&request_id);
            }
        };
        // The sanitised path may borrow the request's URI: release it before the rewrite.
        drop(path);
        let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.limits.max_body_bytes) {
            let error = GatewayError::PayloadTooLarge;
            self.metrics.record(route_metrics, error.status(), started.elapsed());
            return error.into_response(&request_id);
        }

        let host = request.headers_mut().remove(header::HOST).or_else(|| {
            let authority = request.uri().authority()?;
            HeaderValue::from_str(authority.as_str()).ok()
        });
        let request_headers = request.headers_mut();
        headers::strip_hop_by_hop(request_headers);
        headers::set_forwarded(request_headers, peer.ip(), self.scheme, host);
        request_headers.insert(headers::X_REQUEST_ID, request_id.clone());
        // The pool speaks HTTP/1.1 to upstreams whatever the client spoke to us.
        *request.version_mut() = http::Version::HTTP_11;
        *request.uri_mut() = upstream_uri;

        let timeout = function.timeout.unwrap_or(self.default_timeout);
        let health = &version.upstream.health;
        let fault = Arc::new(BodyFault::default());
        let exchange = self.exchange(request, version.upstream.protocol, health, &fault);
        let response = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(response)) => {
                if matches!(response.status().as_u16(), 502..=504) {
                    self.upstream_failed(health);
                } else {
                    health.record_success();
                }
                let (mut parts, body) = response.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                parts.headers.insert(headers::X_GRAYGATE_VERSION, version.header.clone());
                parts.headers.insert(headers::X_REQUEST_ID, request_id);
                Response::from_parts(parts, Either::Left(body))
            }
            Ok(Err(failure)) => {
                if let Some(kind) = failure.kind {
                    tracing::debug!(request_id = ?request_id, function = %function.name, version = %version.name, kind = kind.as_str(), "upstream failed");
                    self.metrics.upstream_error(route_metrics, kind);
                    self.upstream_failed(health);
                }
                with_version(failure.error.into_response(&request_id), version.header.clone())
            }
            Err(_elapsed) => {
                self.metrics.upstream_error(route_metrics, UpstreamErrorKind::Timeout);
                self.upstream_failed(health);
                with_version(GatewayError::UpstreamTimeout.into_response(&request_id), version.header.clone())
            }
        };
        self.metrics.record(route_metrics, response.status(), started.elapsed());
        response
    }

    /// One exchange with the upstream: a connection permit, the request, and — for a
    /// request that sent nothing yet and may be repeated — one retry on a fresh connection.
    async fn exchange(
        &self,
        request: Request<Incoming>,
        protocol: Protocol,
        health: &UpstreamHealth,
        fault: &Arc<BodyFault>,
    ) -> Result<Response<UpstreamBody>, Failure> {
        let permit = Arc::clone(health.permits()).acquire_owned().await.ok();
        let (parts, incoming) = request.into_parts();
        let retry = (is_idempotent(&parts.method) && http_body::Body::is_end_stream(&incoming))
            .then(|| (parts.method.clone(), parts.uri.clone(), parts.headers.clone()));
        let body = RequestBody::new(incoming, self.limits.max_body_bytes, Arc::clone(fault));
        let mut request = Request::from_parts(parts, body);
        let mut connection = capture_connection(&mut request);
        let first = self.clients.request(protocol, request).await;
        let result = match (first, retry) {
            (Err(error), Some((method, uri, headers))) if error.is_connect() => {
                tracing::debug!(%error, "connect failed; retrying once on a fresh connection");
                let mut again = Request::new(RequestBody::empty());
                *again.method_mut() = method;
                *again.uri_mut() = uri;
                *again.headers_mut() = headers;
                connection = capture_connection(&mut again);
                self.clients.request(protocol, again).await
            }
            (result, _) => result,
        };
        match result {
            // Both framings at once is how responses get smuggled. The body may already be
            // complete (and the connection back in the pool): poison the connection so no
            // later request reads what follows on it.
            Ok(response) if has_conflicting_framing(response.headers()) => {
                if let Some(connected) = connection.connection_metadata().as_ref() {
                    connected.poison();
                }
                let kind = UpstreamErrorKind::Protocol;
                Err(Failure { kind: Some(kind), error: GatewayError::Upstream(kind) })
            }
            Ok(response) => Ok(response.map(|body| UpstreamBody::new(body, permit))),
            Err(error) => Err(match fault.get() {
                Fault::TooLarge => Failure { kind: None, error: GatewayError::PayloadTooLarge },
                Fault::Client => {
                    Failure { kind: None, error: GatewayError::BadRequest("The request body is malformed") }
                }
                Fault::None => {
                    let kind = upstream::classify(&error);
                    Failure { kind: Some(kind), error: GatewayError::Upstream(kind) }
                }
            }),
        }
    }

    fn upstream_failed(&self, health: &UpstreamHealth) {
        if health.record_failure() == Verdict::Ejected {
            tracing::warn!(upstream = health.authority(), "upstream ejected after consecutive failures");
            self.metrics.upstream_ejected(health.authority());
        }
    }

    /// A request refused before it had a route (its path is never a metric label).
    fn refuse(&self, error: GatewayError, request_id: &HeaderValue) -> Response<ProxyBody> {
        self.metrics.record_unrouted(error.status());
        error.into_response(request_id)
    }
}

/// Our own answer for a request that had a version: say which one failed.
fn with_version(mut response: Response<ProxyBody>, version: HeaderValue) -> Response<ProxyBody> {
    response.headers_mut().insert(headers::X_GRAYGATE_VERSION, version);
    response
}

fn has_conflicting_framing(headers: &http::HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING) && headers.contains_key(header::CONTENT_LENGTH)
}

/// Methods a client may expect to be repeated safely (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}
