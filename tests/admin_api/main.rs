//! The management API on the admin listener, over real sockets: FunctionGraph versions,
//! aliases and APIG triggers, ESA routine deployments, authentication (tokens and both
//! vendors' request signatures), durability across restarts, concurrency, hand edits and
//! write failures. Every change is checked on the data plane right when its response
//! returns, and the routes file on disk is checked against the table in memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod auth;
mod durability;
mod errors;
mod esa;
mod esa_release;
mod functiongraph;
mod functions;
mod pipeline;
mod preconditions;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use graygate::admin::auth::{AccessKey, Secret};
use graygate::app::{App, StartError};
use graygate::config::ServerConfig;
use graygate::routes::{RoutesFile, ValidRoutes};
use hmac::{Hmac, Mac};
use http::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Answer, Gateway, TestClient, backends, render, restart, save_by_rename, split};
use time::OffsetDateTime;
use time::macros::format_description;

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const REGION: &str = "cn-north-4";
const TOKEN: &str = "graygate-test-token-0001";

/// Function `hello` with three published versions; `latest` runs its own backend.
const ROUTES: &str = r#"
project_id: 0123456789abcdef0123456789abcdef
region: cn-north-4
functions:
  - name: hello
    upstream: "@latest@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
      - { version: v3, upstream: "@v3@" }
"#;

/// `ROUTES` plus alias `prod` (at v1) bound to the default trigger `/hello-prod`.
const WITH_PROD: &str = r#"
project_id: 0123456789abcdef0123456789abcdef
region: cn-north-4
functions:
  - name: hello
    upstream: "@latest@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
      - { version: v3, upstream: "@v3@" }
    aliases:
      - { name: prod, version: v1 }
    triggers:
      - { target: prod }
"#;

/// An ESA routine: the function `edge` and its code versions.
const ROUTINE: &str = r#"
project_id: 0123456789abcdef0123456789abcdef
region: cn-north-4
functions:
  - name: edge
    upstream: "@latest@"
    versions:
      - { version: "1710120201067203242", upstream: "@old@", description: "old code" }
      - { version: "1710120201067203243", upstream: "@new@", description: "new code" }
      - { version: "1710120201067203244", upstream: "@newest@" }
"#;
const OLD: &str = "1710120201067203242";
const NEW: &str = "1710120201067203243";
const NEWEST: &str = "1710120201067203244";

const VERSION_BACKENDS: &[&str] = &["latest", "v1", "v2", "v3"];
const ROUTINE_BACKENDS: &[&str] = &["latest", "old", "new", "newest"];

// === helpers ===

/// RFC 3986 unreserved characters stay, everything else is `%XX` (what both SDKs send).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, RFC3986).to_string()
}

fn urn(function: &str, qualifier: Option<&str>) -> String {
    let base = format!("urn:fss:{REGION}:{PROJECT}:function:default:{function}");
    match qualifier {
        Some(q) => format!("{base}:{q}"),
        None => base,
    }
}

/// `/v2/{project}/fgs/functions/{urn}{tail}`, the URN percent-encoded like the SDK does.
fn functions(function: &str, qualifier: Option<&str>, tail: &str) -> String {
    format!("/v2/{PROJECT}/fgs/functions/{}{tail}", encode(&urn(function, qualifier)))
}

/// `/v2/{project}/fgs/triggers/{urn}{tail}`.
fn triggers(function: &str, qualifier: Option<&str>, tail: &str) -> String {
    format!("/v2/{PROJECT}/fgs/triggers/{}{tail}", encode(&urn(function, qualifier)))
}

/// An APIG trigger body as the SDK sends it; `None` leaves the default name or path.
fn apig(name: Option<&str>, path: Option<&str>) -> Value {
    let mut event = json!({
        "type": 1, "protocol": "HTTPS", "req_method": "ANY", "group_id": "g1", "match_mode": "SWA",
        "env_name": "RELEASE", "env_id": "DEFAULT_ENVIRONMENT_RELEASE_ID", "auth": "IAM",
        "sl_domain": "x.apic.example.com", "backend_type": "FUNCTION",
    });
    if let Some(name) = name {
        event["name"] = name.into();
    }
    if let Some(path) = path {
        event["path"] = path.into();
    }
    json!({ "trigger_type_code": "APIG", "trigger_status": "ACTIVE", "event_type_code": "APIG", "event_data": event })
}

/// The CodeVersions field of an ESA deployment.
fn code_versions(entries: &[(&str, i64)]) -> String {
    let list: Vec<Value> = entries.iter().map(|(v, p)| json!({ "CodeVersion": v, "Percentage": p })).collect();
    Value::Array(list).to_string()
}

fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish()
}

/// A management API client with a token (cloneable into spawned tasks).
#[derive(Clone)]
struct Api {
    client: TestClient,
    base: String,
}

impl Api {
    fn of(gw: &Gateway) -> Api {
        Api { client: gw.client.clone(), base: gw.admin_url("") }
    }

    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let url = format!("{}{path}", self.base);
        self.client.send_to(&url, method, headers, Bytes::from(body.to_owned())).await
    }

    /// A FunctionGraph call with a JSON body (none for `None`).
    async fn fg(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        self.fg_raw(method, path, &text).await
    }

    async fn fg_raw(&self, method: Method, path: &str, body: &str) -> Answer {
        let headers = [("x-auth-token", TOKEN), ("content-type", "application/json")];
        self.send(method, path, &headers, body).await
    }

    /// An ESA RPC call: the action in `x-acs-action`, the parameters form-encoded in the body.
    async fn esa(&self, action: &str, params: &[(&str, &str)]) -> Answer {
        let headers = [
            ("x-auth-token", TOKEN),
            ("x-acs-action", action),
            ("x-acs-version", "2024-09-10"),
            ("accept", "application/json"),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        self.send(Method::POST, "/", &headers, &form(params)).await
    }

    /// An ESA call with no `x-acs-action` header: the query carries `Action` (and maybe more).
    async fn esa_query(&self, query: &str, params: &[(&str, &str)]) -> Answer {
        let headers = [("x-auth-token", TOKEN), ("content-type", "application/x-www-form-urlencoded")];
        self.send(Method::POST, &format!("/?{query}"), &headers, &form(params)).await
    }
}

/// Starts backends named `names` and a gateway over `template` that accepts `TOKEN`.
async fn start(template: &str, names: &[&str]) -> (Gateway, HashMap<String, SocketAddr>) {
    let upstreams = backends(names).await;
    let gw = Gateway::start_with(&render(template, &upstreams), |config| {
        config.admin.tokens = vec![Secret::new(TOKEN)];
    })
    .await;
    (gw, upstreams)
}

/// Asserts the status and returns the JSON body (`Null` when the body is empty).
#[track_caller]
fn expect(answer: &Answer, status: StatusCode) -> Value {
    assert_eq!(answer.status, status, "{}", answer.text());
    if answer.body.is_empty() { Value::Null } else { answer.json() }
}

/// Asserts a FunctionGraph error (`{"error_code","error_msg"}` + `x-request-id`) and
/// returns its message.
#[track_caller]
fn fg_error(answer: &Answer, status: StatusCode, code: &str) -> String {
    assert_eq!(answer.status, status, "expected {code}: {}", answer.text());
    let body = answer.json();
    let fields: HashSet<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
    assert_eq!(fields, HashSet::from(["error_code", "error_msg"]), "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    let message = body["error_msg"].as_str().expect("error_msg is text").to_owned();
    assert!(!message.is_empty(), "{body}");
    let id = answer.headers.get("x-request-id").expect("x-request-id header");
    assert!(!id.is_empty(), "empty x-request-id");
    message
}

/// Asserts an ESA error (`{RequestId, Code, Message}`) and returns its message.
#[track_caller]
fn esa_error(answer: &Answer, status: StatusCode, code: &str) -> String {
    assert_eq!(answer.status, status, "expected {code}: {}", answer.text());
    let body = answer.json();
    let fields: HashSet<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
    assert_eq!(fields, HashSet::from(["RequestId", "Code", "Message"]), "{body}");
    assert_eq!(body["Code"], code, "{body}");
    assert!(!body["RequestId"].as_str().unwrap_or_default().is_empty(), "{body}");
    body["Message"].as_str().expect("Message is text").to_owned()
}

/// The backend that answered (the demo backends name themselves in the body).
fn served_by(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.json()["version"].as_str().expect("backend names itself").to_owned()
}

fn generation(gw: &Gateway) -> u64 {
    gw.app.routes().current().generation()
}

fn memory(gw: &Gateway) -> RoutesFile {
    gw.app.routes().current().source().spec().clone()
}

/// The routes file parses, validates and equals the table in force.
#[track_caller]
fn assert_disk_matches_memory(gw: &Gateway) {
    let disk = ValidRoutes::load(&gw.routes_path, &graygate::routes::ReadLimits::default())
        .unwrap_or_else(|e| panic!("the routes file does not load: {e}"));
    assert_eq!(disk.spec(), &memory(gw), "disk and memory disagree");
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array().expect("an array").iter().map(|item| item[field].as_str().expect("a name").to_owned()).collect()
}

fn counts(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Lowercase hex, as graygate writes digests.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
