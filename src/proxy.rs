//! The data plane: resolve a request against the current routing table and forward it.
//!
//! One `async fn` per request: load the table once (requests in flight keep the table
//! they started with), resolve trigger and version, rewrite the request for the upstream,
//! send it through the pooled client under the function's timeout, and stream the answer
//! back. Every failure goes through [`GatewayError::into_response`].

pub mod headers;
pub mod server;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::routing::{Resolved, Unrouted};
use crate::store::RoutesStore;
use upstream::UpstreamClient;

/// Responses stream the upstream's body, or carry a small body of our own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

pub struct Gateway {
    routes: Arc<RoutesStore>,
    client: UpstreamClient,
    metrics: Metrics,
    default_timeout: Duration,
}

// === impl Gateway ===

impl Gateway {
    pub fn new(routes: Arc<RoutesStore>, client: UpstreamClient, metrics: Metrics, default_timeout: Duration) -> Self {
        Gateway { routes, client, metrics, default_timeout }
    }

    pub async fn handle(&self, mut request: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let started = Instant::now();
        let request_id = headers::request_id(request.headers());
        let table = self.routes.current();

        let resolved = table.resolve(request.method(), request.uri().path(), request.headers());
        let Resolved { function, trigger, version, route, remainder } = match resolved {
            Ok(resolved) => resolved,
            Err(Unrouted::NoTrigger | Unrouted::MethodNotAllowed) => {
                let error = GatewayError::NoRoute;
                self.metrics.record_unrouted(error.status());
                return error.into_response(&request_id);
            }
        };
        let route_metrics =
            route.metrics.get_or_init(|| self.metrics.route(&function.name, &trigger.target, &version.name));
        let upstream_uri = match version.upstream.uri(remainder, request.uri().query()) {
            Ok(uri) => uri,
            Err(_) => {
                let error = GatewayError::BadRequest("The request path or query cannot be forwarded");
                self.metrics.record(route_metrics, error.status(), started.elapsed());
                return error.into_response(&request_id);
            }
        };

        let host = request.headers_mut().remove(header::HOST).or_else(|| {
            let authority = request.uri().authority()?;
            http::HeaderValue::from_str(authority.as_str()).ok()
        });
        let request_headers = request.headers_mut();
        headers::strip_hop_by_hop(request_headers);
        headers::set_forwarded(request_headers, peer.ip(), "http", host);
        request_headers.insert(headers::X_REQUEST_ID, request_id.clone());
        *request.uri_mut() = upstream_uri;
        // The pool speaks HTTP/1.1 to upstreams whatever the client spoke to us.
        *request.version_mut() = http::Version::HTTP_11;

        let timeout = function.timeout.unwrap_or(self.default_timeout);
        let outcome = match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                let kind = upstream::classify(&error);
                tracing::debug!(request_id = ?request_id, function = %function.name, version = %version.name, error = %error, "upstream failed");
                Err((kind, GatewayError::Upstream(kind)))
            }
            Err(_elapsed) => Err((UpstreamErrorKind::Timeout, GatewayError::UpstreamTimeout)),
        };
        let response = match outcome {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                parts.headers.insert(headers::X_GRAYGATE_VERSION, version.header.clone());
                parts.headers.insert(headers::X_REQUEST_ID, request_id);
                Response::from_parts(parts, Either::Left(body))
            }
            Err((kind, error)) => {
                self.metrics.upstream_error(route_metrics, kind);
                error.into_response(&request_id)
            }
        };
        self.metrics.record(route_metrics, response.status(), started.elapsed());
        response
    }
}
