//! Direct invocation of a function's version or alias, for the management API's
//! `invoke_function`: the same routing table, choice of version, upstream connections,
//! timeout and health judgement as a trigger's request, with the body in memory.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use super::Gateway;
use super::body::RequestBody;
use super::headers;
use crate::error::GatewayError;
use crate::metrics::UpstreamErrorKind;

/// Largest response body an invocation reads (FunctionGraph's synchronous limit, 6 MB).
pub const MAX_RESULT_BYTES: usize = 6 * 1024 * 1024;

/// What an invocation asks for.
pub struct Invocation {
    pub function: String,
    /// A version name, `latest` or an alias.
    pub target: String,
    /// Headers the alias's rules and sticky key are matched against, and sent upstream.
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: HeaderValue,
}

/// What the upstream answered, read whole.
#[derive(Debug)]
pub struct Invoked {
    pub status: StatusCode,
    pub version: String,
    pub body: Bytes,
}

/// Why an invocation did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("function \"{function}\" has no version, alias or latest named \"{target}\"")]
    NoTarget { function: String, target: String },
    #[error("the response body is larger than {MAX_RESULT_BYTES} bytes")]
    ResultTooLarge,
    #[error("{0}")]
    Gateway(GatewayError),
}

enum Failed {
    Upstream(UpstreamErrorKind),
    TooLarge,
}

impl Gateway {
    /// Calls `invocation.target` of `invocation.function` with a POST of the body.
    pub async fn invoke(&self, invocation: Invocation) -> Result<Invoked, InvokeError> {
        let table = self.routes.current();
        let Some((function, version)) =
            table.resolve_target(&invocation.function, &invocation.target, &invocation.headers)
        else {
            return Err(InvokeError::NoTarget { function: invocation.function, target: invocation.target });
        };
        let upstream = &version.upstream;
        let uri = upstream.uri("", None).map_err(|_| InvokeError::Gateway(GatewayError::Internal("upstream URI")))?;
        let mut request = Request::new(RequestBody::full(invocation.body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let request_headers = request.headers_mut();
        for (name, value) in &invocation.headers {
            request_headers.append(name, value.clone());
        }
        headers::strip_hop_by_hop(request_headers);
        request_headers.remove(header::HOST);
        request_headers.remove(header::CONTENT_LENGTH);
        request_headers.insert(headers::X_REQUEST_ID, invocation.request_id);
        if !request_headers.contains_key(header::CONTENT_TYPE) {
            request_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let timeout = function.timeout.unwrap_or(self.default_timeout);
        let health = &upstream.health;
        let exchange = async {
            let permit = std::sync::Arc::clone(health.permits()).acquire_owned().await.ok();
            let sent = self.clients.send(upstream, request, false).await.map_err(|e| Failed::Upstream(e.classify()))?;
            let response = sent.into_response(permit);
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESULT_BYTES).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    Failed::TooLarge
                } else {
                    Failed::Upstream(UpstreamErrorKind::Reset)
                }
            })?;
            Ok::<_, Failed>((status, body.to_bytes()))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((status, body))) => {
                if matches!(status.as_u16(), 502..=504) {
                    self.upstream_failed(health);
                } else {
                    health.record_success();
                }
                Ok(Invoked { status, version: version.name.to_string(), body })
            }
            Ok(Err(Failed::Upstream(kind))) => {
                self.upstream_failed(health);
                Err(InvokeError::Gateway(GatewayError::Upstream(kind)))
            }
            Ok(Err(Failed::TooLarge)) => Err(InvokeError::ResultTooLarge),
            Err(_elapsed) => {
                self.upstream_failed(health);
                Err(InvokeError::Gateway(GatewayError::UpstreamTimeout))
            }
        }
    }
}
