//! The data plane: resolve a request against the current routing table and forward it.
//!
//! One request takes one path, `prepare → forward → respond`: `prepare` checks the head,
//! loads the table once (requests in flight keep the table they started with), resolves
//! trigger and version and rewrites the request for the upstream; `forward` sends it under
//! the function's timeout and judges the upstream by the answer; `respond` is the one exit:
//! it writes the APIG error body ([`GatewayError::into_response`]), sets `X-Request-Id` and
//! `X-Graygate-Version`, and records the request's metric.

pub mod body;
mod gated;
pub mod headers;
pub mod invoke;
mod io;
pub mod path;
mod pool;
pub mod server;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::access_log::{AccessLog, Entry, RouteTaken};
use crate::error::GatewayError;
use crate::health::{UpstreamHealth, Verdict};
use crate::metrics::RouteMetrics;
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::routing::{Decision, Function, Resolved, RoutingTable, Trigger, Unrouted, Upstream, Version};
use crate::store::RoutesStore;
use body::{BodyFault, Fault, RequestBody, UpstreamBody};
use upstream::{UpstreamClients, UpstreamError};

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
    access_log: Option<AccessLog>,
}

/// Per-request limits, answered with JSON errors. hyper enforces twice these as a backstop
/// (and answers those itself).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_body_bytes: u64,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// A request ready to go upstream, and what it was routed to.
struct Prepared<'t> {
    request: Request<Incoming>,
    upstream: &'t Upstream,
    timeout: Duration,
    routed: Routed<'t>,
}

/// The route a request took, for its metric, its `X-Graygate-Version` and its log line.
#[derive(Clone, Copy)]
struct Routed<'t> {
    metrics: &'t RouteMetrics,
    function: &'t Function,
    trigger: &'t Trigger,
    version: &'t Version,
    decision: Decision,
    fallback_from: Option<&'t Version>,
}

/// What one request came to, the upstream's answer or our error; `respond` turns it into
/// the response.
struct Outcome<'t> {
    /// `None` for a request refused before it had a route (its path is never a label).
    routed: Option<Routed<'t>>,
    answer: Result<Response<UpstreamBody>, GatewayError>,
    /// What the exchange with the upstream took, for the access log.
    exchange: Option<Exchange>,
}

/// A request's log entry until `respond` takes it. A request whose future is dropped first
/// (the client went away while the upstream worked, the grace period ended) is still
/// logged: as 499, nginx's "client closed request".
struct Pending<'g> {
    entry: Option<Box<Entry>>,
    log: Option<&'g AccessLog>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let (Some(mut entry), Some(log)) = (self.entry.take(), self.log) {
            entry.status = 499;
            log.submit(entry);
        }
    }
}

/// The upstream side of a logged request.
struct Exchange {
    duration: Duration,
    fault: Arc<BodyFault>,
}

/// A request `prepare` refused, and the route it had by then.
struct Refused<'t> {
    routed: Option<Routed<'t>>,
    error: GatewayError,
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
        access_log: Option<AccessLog>,
    ) -> Self {
        Gateway { routes, clients, metrics, default_timeout, limits, scheme, access_log }
    }

    /// Takes the gateway by `Arc` so that the future is all the server holds per request
    /// (no wrapper that would copy the request once more).
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let started = Instant::now();
        let request_id = headers::request_id(request.headers());
        let table = self.routes.current();
        // Off by default: then nothing of the log is built or paid for.
        let mut pending = Pending { entry: None, log: self.access_log.as_ref() };
        if let Some(log) = pending.log.filter(|log| log.sampled()) {
            pending.entry = Some(log.begin(&request, peer, &request_id, started));
        }
        let outcome = match self.prepare(request, peer, &table, &request_id) {
            Ok(prepared) => {
                if let Some(entry) = pending.entry.as_mut() {
                    entry.route = Some(route_taken(&prepared.routed));
                }
                self.forward(prepared, pending.entry.is_some()).await
            }
            Err(Refused { routed, error }) => Outcome { routed, answer: Err(error), exchange: None },
        };
        self.respond(outcome, &request_id, started, pending.entry.take())
    }

    /// Checks the request, routes it and rewrites it for its upstream.
    fn prepare<'t>(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        table: &'t RoutingTable,
        request_id: &HeaderValue,
    ) -> Result<Prepared<'t>, Refused<'t>> {
        let refuse = |error| Refused { routed: None, error };
        if headers::too_large(request.headers(), self.limits.max_headers, self.limits.max_header_bytes) {
            return Err(refuse(GatewayError::HeadersTooLarge));
        }
        let path = path::sanitize(request.uri().path()).map_err(|why| refuse(GatewayError::BadRequest(why)))?;
        // Generation 0 is the empty table of a store that has not loaded a state yet.
        if table.generation() == 0 {
            return Err(refuse(GatewayError::NotReady));
        }
        let Resolved { function, trigger, version, route, remainder, fallback_from, decision } =
            match table.resolve(request.method(), &path, request.headers()) {
                Ok(resolved) => resolved,
                Err(Unrouted::NoTrigger | Unrouted::MethodNotAllowed) => return Err(refuse(GatewayError::NoRoute)),
            };
        let metrics = route.metrics.get_or_init(|| self.metrics.route(&function.name, &trigger.target, &version.name));
        let routed = Routed { metrics, function, trigger, version, decision, fallback_from };
        let fail = |error| Refused { routed: Some(routed), error };
        if let Some(skipped) = fallback_from {
            self.metrics.alias_fallback(&function.name, &trigger.target, &skipped.name);
        }
        let upstream = &version.upstream;
        let upstream_uri = upstream
            .uri(remainder, request.uri().query())
            .map_err(|_| fail(GatewayError::BadRequest("The request path or query cannot be forwarded")))?;
        // The sanitised path may borrow the request's URI: release it before the rewrite.
        drop(path);
        let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.limits.max_body_bytes) {
            return Err(fail(GatewayError::PayloadTooLarge));
        }

        let host = request.headers_mut().remove(header::HOST).or_else(|| {
            let authority = request.uri().authority()?;
            HeaderValue::from_str(authority.as_str()).ok()
        });
        let request_headers = request.headers_mut();
        headers::strip_hop_by_hop(request_headers);
        headers::set_forwarded(request_headers, peer.ip(), self.scheme, host);
        request_headers.insert(headers::X_REQUEST_ID, request_id.clone());
        // Upstreams are spoken to in HTTP/1.1 (or h2c) whatever the client spoke to us.
        *request.version_mut() = http::Version::HTTP_11;
        *request.uri_mut() = upstream_uri;
        let timeout = function.timeout.unwrap_or(self.default_timeout);
        Ok(Prepared { request, upstream, timeout, routed })
    }

    /// Sends the request under its timeout and judges the upstream by the answer.
    async fn forward<'t>(&self, prepared: Prepared<'t>, logged: bool) -> Outcome<'t> {
        let Prepared { request, upstream, timeout, routed } = prepared;
        let health = &upstream.health;
        let fault = Arc::new(BodyFault::default());
        let sent = logged.then(Instant::now);
        let answer = match tokio::time::timeout(timeout, self.exchange(request, upstream, &fault)).await {
            Ok(Ok(response)) => {
                if matches!(response.status().as_u16(), 502..=504) {
                    self.upstream_failed(health);
                } else {
                    health.record_success();
                }
                Ok(response)
            }
            Ok(Err(failure)) => {
                if let Some(kind) = failure.kind {
                    tracing::debug!(upstream = health.authority(), kind = kind.as_str(), "upstream failed");
                    self.metrics.upstream_error(routed.metrics, kind);
                    self.upstream_failed(health);
                }
                Err(failure.error)
            }
            Err(_elapsed) => {
                self.metrics.upstream_error(routed.metrics, UpstreamErrorKind::Timeout);
                self.upstream_failed(health);
                Err(GatewayError::UpstreamTimeout)
            }
        };
        let exchange = sent.map(|sent| Exchange { duration: sent.elapsed(), fault });
        Outcome { routed: Some(routed), answer, exchange }
    }

    /// The one exit of every request.
    fn respond(
        &self,
        outcome: Outcome<'_>,
        request_id: &HeaderValue,
        started: Instant,
        entry: Option<Box<Entry>>,
    ) -> Response<ProxyBody> {
        let error_code = outcome.answer.as_ref().err().map(GatewayError::code);
        let mut response = match outcome.answer {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                parts.headers.insert(headers::X_REQUEST_ID, request_id.clone());
                Response::from_parts(parts, Either::Left(body))
            }
            Err(error) => error.into_response(request_id),
        };
        match outcome.routed {
            Some(routed) => {
                response.headers_mut().insert(headers::X_GRAYGATE_VERSION, routed.version.header.clone());
                self.metrics.record(routed.metrics, response.status(), started.elapsed());
            }
            None => self.metrics.record_unrouted(response.status()),
        }
        if let (Some(mut entry), Some(log)) = (entry, &self.access_log) {
            entry.status = response.status().as_u16();
            entry.error_code = error_code;
            if entry.route.is_none() {
                entry.route = outcome.routed.map(|routed| route_taken(&routed));
            }
            if let Some(exchange) = &outcome.exchange {
                entry.upstream_duration = Some(exchange.duration);
                entry.bytes_in = exchange.fault.received();
                entry.retries = exchange.fault.retries();
            }
            match response.body_mut() {
                // The line is written when the body has gone to the client (or the client went).
                Either::Left(body) => body.log_on_end(entry, log.clone()),
                Either::Right(body) => {
                    entry.bytes_out = http_body::Body::size_hint(body).exact().unwrap_or(0);
                    log.submit(entry);
                }
            }
        }
        response
    }

    /// One exchange with the upstream: a connection permit, the request, and — for a
    /// request that sent nothing yet and may be repeated — one retry on a fresh connection.
    async fn exchange(
        &self,
        request: Request<Incoming>,
        upstream: &Upstream,
        fault: &Arc<BodyFault>,
    ) -> Result<Response<UpstreamBody>, Failure> {
        let permit = Arc::clone(upstream.health.permits()).acquire_owned().await.ok();
        let (parts, incoming) = request.into_parts();
        let retry_connect = is_idempotent(&parts.method) && http_body::Body::is_end_stream(&incoming);
        let body = RequestBody::new(incoming, self.limits.max_body_bytes, Arc::clone(fault));
        let result = self.clients.send(upstream, Request::from_parts(parts, body), retry_connect).await;
        match result {
            // Both framings at once is how responses get smuggled: never read past it.
            Ok(mut sent) if has_conflicting_framing(sent.response.headers()) => {
                sent.poison();
                let kind = UpstreamErrorKind::Protocol;
                Err(Failure { kind: Some(kind), error: GatewayError::Upstream(kind) })
            }
            Ok(sent) => Ok(sent.into_response(permit)),
            Err(error) => Err(failure(&error, fault)),
        }
    }

    fn upstream_failed(&self, health: &UpstreamHealth) {
        if health.record_failure() == Verdict::Ejected {
            tracing::warn!(upstream = health.authority(), "upstream ejected after consecutive failures");
            self.metrics.upstream_ejected(health.authority());
        }
    }
}

/// Whose fault a failed exchange was: a request body that broke or grew too large is the
/// client's, anything else the upstream's.
fn failure(error: &UpstreamError, fault: &BodyFault) -> Failure {
    match fault.get() {
        Fault::TooLarge => Failure { kind: None, error: GatewayError::PayloadTooLarge },
        Fault::Client => Failure { kind: None, error: GatewayError::BadRequest("The request body is malformed") },
        Fault::None => {
            let kind = error.classify();
            Failure { kind: Some(kind), error: GatewayError::Upstream(kind) }
        }
    }
}

fn route_taken(routed: &Routed<'_>) -> RouteTaken {
    let rule = match routed.decision {
        Decision::Rule(slot) => routed.function.rule_text(routed.trigger, slot).cloned(),
        _ => None,
    };
    RouteTaken {
        function: Arc::clone(&routed.function.name),
        trigger: Arc::clone(&routed.trigger.path),
        alias: routed.trigger.alias().cloned(),
        version: Arc::clone(&routed.version.name),
        decision: routed.decision,
        fallback_from: routed.fallback_from.map(|v| Arc::clone(&v.name)),
        rule,
        upstream: Arc::clone(&routed.version.upstream.health),
    }
}

fn has_conflicting_framing(headers: &http::HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING) && headers.contains_key(header::CONTENT_LENGTH)
}

/// Methods a client may expect to be repeated safely (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}
