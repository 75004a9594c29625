//! Data-plane errors, classified by origin, and the one place they become responses.
//!
//! Codes and bodies follow Huawei APIG's gateway errors:
//! `{"error_code": "APIG.0202", "error_msg": "...", "request_id": "..."}`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};
use serde::Serialize;

use crate::metrics::UpstreamErrorKind;
use crate::proxy::ProxyBody;

/// Where a failure came from: it decides the status and who should act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The request itself is at fault (4xx).
    Client,
    /// The function's backend failed (502/504).
    Upstream,
    /// graygate failed (500); never expected, always logged.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("request headers too large")]
    HeadersTooLarge,
    #[error("request target too long")]
    UriTooLong,
    #[error("no trigger matches the request")]
    NoRoute,
    #[error("upstream {}", .0.as_str())]
    Upstream(UpstreamErrorKind),
    #[error("upstream did not answer within the function's timeout")]
    UpstreamTimeout,
    #[error("no routing state is loaded yet")]
    NotReady,
    #[error("internal error: {0}")]
    Internal(&'static str),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error_code: &'static str,
    error_msg: &'a str,
    request_id: &'a str,
}

// === impl GatewayError ===

impl GatewayError {
    pub fn origin(&self) -> Origin {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::PayloadTooLarge
            | GatewayError::HeadersTooLarge
            | GatewayError::UriTooLong
            | GatewayError::NoRoute => Origin::Client,
            GatewayError::Upstream(_) | GatewayError::UpstreamTimeout => Origin::Upstream,
            GatewayError::Internal(_) | GatewayError::NotReady => Origin::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::UriTooLong => StatusCode::URI_TOO_LONG,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::Upstream(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::PayloadTooLarge
            | GatewayError::HeadersTooLarge
            | GatewayError::UriTooLong => "APIG.0201",
            GatewayError::NoRoute => "APIG.0101",
            GatewayError::Upstream(_) => "APIG.0202",
            GatewayError::UpstreamTimeout => "APIG.0203",
            GatewayError::Internal(_) => "APIG.0500",
            GatewayError::NotReady => "APIG.0503",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(why) => why,
            GatewayError::PayloadTooLarge => "Request entity too large",
            GatewayError::HeadersTooLarge => "Request header fields too large",
            GatewayError::UriTooLong => "Request URI too long",
            GatewayError::NoRoute => "The API does not exist or has not been published in the environment",
            GatewayError::Upstream(UpstreamErrorKind::Connect) => "Backend unavailable: connection failed",
            GatewayError::Upstream(UpstreamErrorKind::Protocol) => "Backend unavailable: invalid response",
            GatewayError::Upstream(_) => "Backend unavailable: connection reset",
            GatewayError::UpstreamTimeout => "Backend timeout",
            GatewayError::Internal(why) => why,
            GatewayError::NotReady => "The gateway has no routing state yet",
        }
    }

    fn body(&self, request_id: &HeaderValue) -> Vec<u8> {
        let body = ErrorBody {
            error_code: self.code(),
            error_msg: self.message(),
            request_id: request_id.to_str().unwrap_or(""),
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The JSON error response, tagged with the request id.
    pub fn into_response(self, request_id: &HeaderValue) -> Response<ProxyBody> {
        let bytes = self.body(request_id);
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(bytes))));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(crate::proxy::headers::X_REQUEST_ID, request_id.clone());
        response
    }

    /// The same response as HTTP/1.1 bytes, closing the connection: for the answers hyper
    /// writes itself when a request head cannot be parsed (`date` is hyper's header line).
    pub fn to_wire(&self, request_id: &HeaderValue, date: Option<&[u8]>) -> Vec<u8> {
        let body = self.body(request_id);
        let status = self.status();
        let mut wire = Vec::with_capacity(256 + body.len());
        wire.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: ",
                status.as_str(),
                status.canonical_reason().unwrap_or(""),
                body.len()
            )
            .as_bytes(),
        );
        wire.extend_from_slice(request_id.as_bytes());
        wire.extend_from_slice(b"\r\n");
        if let Some(date) = date {
            wire.extend_from_slice(date);
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&body);
        wire
    }
}
