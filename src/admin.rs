//! The admin listener: Prometheus metrics and health probes (open), and the management API
//! (authenticated): FunctionGraph's REST paths under `/v2/` and ESA's RPC actions.
//!
//! A management request is read whole (bodies are capped: signatures cover them), then
//! authenticated, then dispatched. Each API family answers errors in its own vendor's shape,
//! because that is what its SDK parses.

pub mod auth;
pub(crate) mod esa;
pub(crate) mod functiongraph;
mod own;
mod status;
mod ui;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::audit::Attribution;
use crate::config::AdminSettings;
use crate::metrics::Metrics;
use crate::proxy::{Gateway, ProxyBody};
use crate::routes::RoutesFile;
use crate::store::{ApplyError, RoutesStore};
use auth::{AuthError, Credentials, SignedRequest};

pub type Reply = Response<ProxyBody>;

pub struct Admin {
    routes: Arc<RoutesStore>,
    /// The data plane, for `invoke_function`.
    gateway: Arc<Gateway>,
    /// The data plane's public URL, the base of triggers' `invoke_url`.
    public_url: String,
    metrics: Metrics,
    credentials: Credentials,
    max_body_bytes: usize,
    status: status::Status,
}

/// A management request, read whole.
pub struct AdminRequest {
    pub method: Method,
    /// The path as it arrived, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: String,
}

/// The store as one management request changes it: every change (or refusal) goes into the
/// audit trail attributed to the request's caller, operation and subject.
pub struct Editor<'a> {
    store: &'a RoutesStore,
    pub who: Attribution,
}

/// Which API a path belongs to (and so which error shape it gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    FunctionGraph,
    Esa,
    /// graygate's own: `/fleet`, `/graygate/v1/…`.
    Graygate,
}

// === impl Admin ===

impl Admin {
    pub fn new(
        routes: Arc<RoutesStore>,
        metrics: Metrics,
        settings: &AdminSettings,
        gateway: Arc<Gateway>,
        public_url: String,
    ) -> Self {
        Admin {
            routes,
            gateway,
            public_url,
            credentials: Credentials::new(settings.tokens.clone(), settings.keys.clone(), settings.max_clock_skew),
            max_body_bytes: settings.max_body_bytes,
            status: status::Status::new(metrics.clone()),
            metrics,
        }
    }

    /// Keeps the last minute of traffic for the status page until shutdown.
    pub fn spawn_sampler(&self, shutdown: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        self.status.spawn_sampler(shutdown)
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Reply {
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
                let status = self.routes.status();
                let detail = format!(
                    "generation={} revision={} store={} {}",
                    status.generation,
                    status.revision,
                    status.mode,
                    if status.connected { "connected" } else { "disconnected" }
                );
                if status.ready {
                    reply(StatusCode::OK, "text/plain", format!("ready {detail}\n").into_bytes())
                } else {
                    let text = format!("not ready: no routing state loaded yet ({detail})\n");
                    reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", text.into_bytes())
                }
            }
            // The page itself is open (it holds no data); its data needs the admin token.
            "/ui" | "/ui/" if read_only => ui::page(),
            "/ui/app.js" if read_only => ui::script(),
            "/ui/style.css" if read_only => ui::style(),
            "/metrics" | "/healthz" | "/readyz" | "/ui" | "/ui/" | "/ui/app.js" | "/ui/style.css" => {
                reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"method not allowed\n".to_vec())
            }
            _ => self.manage(request).await,
        }
    }

    async fn manage(&self, request: Request<Incoming>) -> Reply {
        let request_id = new_uuid();
        let path = request.uri().path();
        let family = if path.starts_with("/v2/") {
            Family::FunctionGraph
        } else if path == "/fleet" || path.starts_with("/graygate/") {
            Family::Graygate
        } else if request.headers().contains_key("x-acs-action")
            || request.uri().query().is_some_and(|q| q.split('&').any(|p| p.starts_with("Action=")))
        {
            Family::Esa
        } else {
            return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec());
        };
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                let too_large = error.is::<http_body_util::LengthLimitError>();
                let (status, message) = if too_large {
                    (StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds {} bytes", self.max_body_bytes))
                } else {
                    (StatusCode::BAD_REQUEST, "request body could not be read".to_owned())
                };
                return family.error(status, "FSS.0400", "InvalidParameter", &message, &request_id);
            }
        };
        let admin_request = AdminRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body,
            request_id,
        };
        let signed = SignedRequest {
            method: &admin_request.method,
            raw_path: &admin_request.path,
            raw_query: admin_request.query.as_deref(),
            headers: &admin_request.headers,
            body: &admin_request.body,
        };
        let actor = match self.credentials.authenticate(&signed, OffsetDateTime::now_utc()) {
            Ok(scheme) => {
                tracing::debug!(?scheme, path = %admin_request.path, "management call authenticated");
                Credentials::actor(&signed, scheme)
            }
            Err(why) => {
                tracing::info!(%why, path = %admin_request.path, "management call refused");
                if family == Family::Esa
                    && let Some((status, code, message)) = alibaba_refusal(&why)
                {
                    return family.error(status, "", code, message, &admin_request.request_id);
                }
                // Otherwise the caller learns only that it failed; the log says why.
                return family.error(
                    StatusCode::UNAUTHORIZED,
                    "APIG.0301",
                    "InvalidAccessKeyId",
                    "Authentication failed",
                    &admin_request.request_id,
                );
            }
        };
        let mut who = Attribution::new(actor, "");
        who.request_id = Some(admin_request.request_id.clone());
        let editor = Editor { store: &self.routes, who };
        let mut reply = match family {
            Family::FunctionGraph => {
                let context =
                    functiongraph::Context { store: editor, public_url: &self.public_url, gateway: &self.gateway };
                functiongraph::handle(context, &admin_request).await
            }
            Family::Esa => esa::handle(editor, &admin_request).await,
            Family::Graygate => own::handle(editor, &admin_request, &self.status).await,
        };
        // Every answer names its request, as the audit trail records it.
        if let Ok(id) = HeaderValue::from_str(&admin_request.request_id) {
            reply.headers_mut().entry("x-request-id").or_insert(id);
        }
        reply
    }

    /// True when no management call can ever succeed (no token and no key configured).
    pub fn has_credentials(&self) -> bool {
        !self.credentials.is_empty()
    }
}

// === impl Editor ===

impl Editor<'_> {
    /// Runs `edit` through the store, attributed to this request.
    pub async fn apply<T, E, F>(&self, edit: F) -> Result<T, ApplyError<E>>
    where
        F: Fn(&mut RoutesFile) -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.store.apply(&self.who, edit).await
    }

    /// Records that this request's change was refused, and why (status, code, message).
    pub async fn refused(&self, status: StatusCode, code: &str, message: &str) {
        self.store.refused(&self.who, format!("{} {code}: {message}", status.as_u16())).await;
    }
}

impl std::ops::Deref for Editor<'_> {
    type Target = RoutesStore;

    fn deref(&self) -> &RoutesStore {
        self.store
    }
}

// === impl Family ===

impl Family {
    fn error(self, status: StatusCode, fg_code: &str, esa_code: &str, message: &str, request_id: &str) -> Reply {
        match self {
            Family::FunctionGraph | Family::Graygate => fg_error(status, fg_code, message, request_id),
            Family::Esa => json_reply(
                status,
                &serde_json::json!({ "RequestId": request_id, "Code": esa_code, "Message": message }),
            ),
        }
    }
}

/// Alibaba's own answers to a signature it cannot accept (what its SDK and its users
/// recognise); graygate's token failures and malformed requests stay a plain 401.
fn alibaba_refusal(why: &AuthError) -> Option<(StatusCode, &'static str, &'static str)> {
    match why {
        AuthError::BadSignature | AuthError::BodyHash => Some((
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        )),
        AuthError::Skewed => Some((
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        )),
        AuthError::UnknownKey => {
            Some((StatusCode::NOT_FOUND, "InvalidAccessKeyId.NotFound", "Specified access key is not found."))
        }
        AuthError::Missing | AuthError::BadToken | AuthError::Malformed | AuthError::BadDate => None,
    }
}

/// A FunctionGraph error body; the SDK reads the request id from the header.
pub(crate) fn fg_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Reply {
    let mut response = json_reply(status, &serde_json::json!({ "error_code": code, "error_msg": message }));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

pub(crate) fn json_reply<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => reply(status, "application/json", body),
        Err(error) => {
            tracing::error!(%error, "cannot serialise a management response");
            reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", b"internal error\n".to_vec())
        }
    }
}

pub(crate) fn empty_reply(status: StatusCode) -> Reply {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// FunctionGraph's timestamp format (`2019-10-31 11:37:58`), in UTC.
pub(crate) fn now_text() -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    OffsetDateTime::now_utc().format(format).unwrap_or_default()
}

/// FunctionGraph's default version name (`yyyymmdd-HHMMSS`), in UTC.
pub(crate) fn now_compact() -> String {
    let format = format_description!("[year][month][day]-[hour][minute][second]");
    OffsetDateTime::now_utc().format(format).unwrap_or_default()
}

/// A random (version 4) UUID.
pub(crate) fn new_uuid() -> String {
    let bits = (fastrand::u128(..) & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// ESA deployment ids: numbers that order deployments and never repeat. Microseconds
/// since the epoch, times 1,000, plus a random part (two replicas of a fleet deploying in
/// the same microsecond still get different ids), and never below the last id this process
/// gave (a clock stepping back or two deployments in one microsecond still count up). The
/// ids of earlier builds, milliseconds since the epoch, are all smaller.
pub(crate) fn new_deployment_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let micros = u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).unwrap_or(0);
    let candidate = micros.saturating_mul(1_000).saturating_add(fastrand::u64(..1_000));
    let previous = LAST.fetch_max(candidate, Ordering::AcqRel);
    let id = if candidate > previous {
        candidate
    } else {
        // Another id at or above ours was given meanwhile: take the next after the highest.
        LAST.fetch_add(1, Ordering::AcqRel).saturating_add(1)
    };
    id.to_string()
}
