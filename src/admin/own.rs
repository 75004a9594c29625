//! graygate's own management endpoints beside the vendor façades:
//! - `GET /fleet` (also `/graygate/v1/fleet`): every replica and the revision it serves;
//! - `GET /graygate/v1/audit`: the audit trail, newest first (`function`, `alias`, `actor`,
//!   `limit` narrow it);
//! - `GET` and `PUT /graygate/v1/routes`: the whole routing state as one document (JSON or
//!   YAML), replaced at once, with an `ETag` and `If-Match` as on the vendors' resources;
//! - `GET /graygate/v1/status`: what the status page shows ([`super::status`]).
//!
//! Errors have FunctionGraph's shape with graygate's own codes (`GG.…`).

use http::{Method, StatusCode};
use serde_json::json;

use super::functiongraph::precondition::{IfMatch, etag, tag};
use super::{AdminRequest, Editor, Reply, fg_error, json_reply};
use crate::audit::Filter;
use crate::routes::{ReadLimits, ValidRoutes};
use crate::store::{ApplyError, RoutesStore};

/// Records one audit query returns at most.
const MAX_LIMIT: usize = 1000;

pub async fn handle(mut store: Editor<'_>, request: &AdminRequest, status: &super::status::Status) -> Reply {
    let read_only = matches!(request.method, Method::GET | Method::HEAD);
    let id = &request.request_id;
    match request.path.as_str() {
        "/fleet" | "/graygate/v1/fleet" if read_only => fleet(&store),
        "/graygate/v1/audit" if read_only => audit(&store, request),
        "/graygate/v1/status" if read_only => status.render(&store),
        "/graygate/v1/routes" if read_only => {
            let table = store.current();
            tag(json_reply(StatusCode::OK, table.source().spec()), &etag(table.source().spec()))
        }
        "/graygate/v1/routes" if request.method == Method::PUT => {
            store.who.operation = "graygate:ReplaceRoutes".into();
            replace(&store, request).await
        }
        "/fleet" | "/graygate/v1/fleet" | "/graygate/v1/audit" | "/graygate/v1/status" | "/graygate/v1/routes" => {
            fg_error(StatusCode::METHOD_NOT_ALLOWED, "GG.0405", "method not allowed here", id)
        }
        _ => fg_error(StatusCode::NOT_FOUND, "GG.0404", "no such endpoint", id),
    }
}

/// The replicas and whether they all serve one revision (a change has converged).
fn fleet(store: &RoutesStore) -> Reply {
    let status = store.status();
    let replicas = store.fleet();
    let newest = replicas.iter().map(|r| r.revision).max().unwrap_or(0);
    let converged = replicas.iter().all(|r| r.ready && r.revision == newest);
    json_reply(
        StatusCode::OK,
        &json!({
            "mode": status.mode,
            "replica": store.replica_id(),
            "revision": status.revision,
            "newest_revision": newest,
            "converged": converged,
            "replicas": replicas,
        }),
    )
}

fn audit(store: &RoutesStore, request: &AdminRequest) -> Reply {
    let mut filter = Filter { limit: 100, ..Filter::default() };
    let query = request.query.as_deref().unwrap_or("");
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match name.as_ref() {
            "function" => filter.function = Some(value),
            "alias" => filter.alias = Some(value),
            "actor" => filter.actor = Some(value),
            "limit" => match value.parse::<usize>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => filter.limit = limit,
                _ => {
                    let message = format!("limit must be between 1 and {MAX_LIMIT}");
                    return fg_error(StatusCode::BAD_REQUEST, "GG.0400", &message, &request.request_id);
                }
            },
            other => {
                let message = format!("unknown parameter \"{other}\": use function, alias, actor or limit");
                return fg_error(StatusCode::BAD_REQUEST, "GG.0400", &message, &request.request_id);
            }
        }
    }
    let records = store.audit(&filter);
    json_reply(StatusCode::OK, &json!({ "mode": store.status().mode, "count": records.len(), "records": records }))
}

/// Replaces the whole routing state with the request's document (what `graygate routes
/// push` does to the source, through the API: authenticated, attributed, guarded).
async fn replace(store: &Editor<'_>, request: &AdminRequest) -> Reply {
    let id = &request.request_id;
    let refuse = |status: StatusCode, code: &'static str, message: String| async move {
        store.refused(status, code, &message).await;
        fg_error(status, code, &message, id)
    };
    let Ok(text) = std::str::from_utf8(&request.body) else {
        return refuse(StatusCode::BAD_REQUEST, "GG.0400", "the body is not UTF-8".into()).await;
    };
    let routes = match ValidRoutes::parse_within(text, "request body", &ReadLimits::default()) {
        Ok(routes) => routes,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, "GG.0400", error.to_string()).await,
    };
    let precondition = IfMatch::from_headers(&request.headers);
    let wanted = routes.spec().clone();
    let applied: Result<String, ApplyError<super::functiongraph::FgError>> = store
        .apply(move |spec| {
            precondition.check(&etag(spec), "the routing state")?;
            *spec = wanted.clone();
            Ok(etag(spec))
        })
        .await;
    match applied {
        Ok(tag_now) => {
            let table = store.current();
            tag(json_reply(StatusCode::OK, table.source().spec()), &tag_now)
        }
        Err(ApplyError::Rejected(e)) => refuse(e.status, e.code, e.message).await,
        Err(ApplyError::Invalid(issues)) => {
            let text = issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; ");
            refuse(StatusCode::BAD_REQUEST, "GG.0400", text).await
        }
        Err(ApplyError::Unavailable(why)) => {
            refuse(StatusCode::SERVICE_UNAVAILABLE, "GG.0503", format!("the routing store is unavailable: {why}")).await
        }
        Err(ApplyError::Conflict(why)) => refuse(StatusCode::CONFLICT, "GG.0409", why).await,
        Err(ApplyError::TooLarge(why)) => refuse(StatusCode::PAYLOAD_TOO_LARGE, "GG.0413", why).await,
        Err(ApplyError::Write(error)) => {
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "GG.0500", format!("cannot persist the change: {error}")).await
        }
        Err(ApplyError::Internal(why)) => {
            tracing::error!(%why, "routes replacement failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "GG.0500", "internal error".into()).await
        }
    }
}
