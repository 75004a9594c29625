//! graygate's own management endpoints beside the vendor façades: `GET /fleet` (also at
//! `/graygate/v1/fleet`), every replica of the fleet and the revision each one serves.

use http::{Method, StatusCode};
use serde_json::json;

use super::{AdminRequest, Reply, fg_error, json_reply};
use crate::store::RoutesStore;

pub fn handle(store: &RoutesStore, request: &AdminRequest) -> Reply {
    let read_only = matches!(request.method, Method::GET | Method::HEAD);
    match request.path.as_str() {
        "/fleet" | "/graygate/v1/fleet" if read_only => fleet(store),
        "/fleet" | "/graygate/v1/fleet" => {
            fg_error(StatusCode::METHOD_NOT_ALLOWED, "GG.0405", "use GET", &request.request_id)
        }
        _ => fg_error(StatusCode::NOT_FOUND, "GG.0404", "no such endpoint", &request.request_id),
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
