//! The admin listener: Prometheus metrics and health probes (the management API joins later).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::metrics::Metrics;
use crate::proxy::ProxyBody;
use crate::store::RoutesStore;

pub struct Admin {
    routes: Arc<RoutesStore>,
    metrics: Metrics,
}

// === impl Admin ===

impl Admin {
    pub fn new(routes: Arc<RoutesStore>, metrics: Metrics) -> Self {
        Admin { routes, metrics }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let read_only = matches!(*request.method(), Method::GET | Method::HEAD);
        match request.uri().path() {
            "/metrics" if read_only => match self.metrics.render() {
                Ok(body) => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body),
                Err(error) => {
                    tracing::error!(%error, "cannot render metrics");
                    reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", b"metrics unavailable\n".to_vec())
                }
            },
            "/healthz" if read_only => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" if read_only => {
                // A store always holds a table once it exists; report which one.
                let generation = self.routes.current().generation();
                reply(StatusCode::OK, "text/plain", format!("ready generation={generation}\n").into_bytes())
            }
            "/metrics" | "/healthz" | "/readyz" => {
                reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"method not allowed\n".to_vec())
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
