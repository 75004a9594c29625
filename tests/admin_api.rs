//! The management API on the admin listener, over real sockets: FunctionGraph versions,
//! aliases and APIG triggers, ESA routine deployments, authentication (tokens and both
//! vendors' request signatures), durability across restarts, concurrency, hand edits and
//! write failures. Every change is checked on the data plane right when its response
//! returns, and the routes file on disk is checked against the table in memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

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
    let disk = ValidRoutes::load(&gw.routes_path).unwrap_or_else(|e| panic!("the routes file does not load: {e}"));
    assert_eq!(disk.spec(), &memory(gw), "disk and memory disagree");
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array().expect("an array").iter().map(|item| item[field].as_str().expect("a name").to_owned()).collect()
}

fn counts(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

// === FunctionGraph: versions and code ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_versions_and_updating_code_take_effect_at_once() {
    const START: &str = r#"
project_id: 0123456789abcdef0123456789abcdef
region: cn-north-4
functions:
  - name: hello
    upstream: "@first@"
    triggers:
      - { target: latest }
"#;
    let (gw, up) = start(START, &["first", "second"]).await;
    let api = Api::of(&gw);
    let versions = functions("hello", None, "/versions");
    assert_eq!(served_by(&gw.client.get("/hello-latest").await), "first");

    let list = expect(&api.fg(Method::GET, &versions, None).await, StatusCode::OK);
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(names(&list["versions"], "version"), ["latest"]);

    // No name given: yyyymmdd-HHMMSS (UTC), published from latest's current upstream.
    let body = json!({ "digest": "ff", "description": "from first" });
    let published = expect(&api.fg(Method::POST, &versions, Some(body)).await, StatusCode::OK);
    let name = published["version"].as_str().expect("a version name").to_owned();
    let format = format_description!("[year][month][day]-[hour][minute][second]");
    let stamp = time::PrimitiveDateTime::parse(&name, format)
        .unwrap_or_else(|e| panic!("default name {name:?} is not yyyymmdd-HHMMSS: {e}"))
        .assume_utc();
    assert!((OffsetDateTime::now_utc() - stamp).abs() < time::Duration::minutes(1), "{name} is not now (UTC)");
    assert_eq!(published["code_url"], format!("http://{}", up["first"]));
    assert_eq!(published["func_urn"], urn("hello", Some(&name)));
    assert_eq!(published["description"], "from first");

    // Latest unchanged since that version: nothing new to publish.
    fg_error(&api.fg(Method::POST, &versions, Some(json!({}))).await, StatusCode::BAD_REQUEST, "FSS.1016");

    // PUT …/code moves latest; the data plane follows before the response is read.
    let code_url = format!("http://{}", up["second"]);
    let body = json!({ "code_url": code_url, "code_type": "url" });
    let code = expect(&api.fg(Method::PUT, &functions("hello", None, "/code"), Some(body)).await, StatusCode::OK);
    assert_eq!(code["code_url"], code_url.as_str());
    assert_eq!(code["version"], "latest");
    assert_eq!(served_by(&gw.client.get("/hello-latest").await), "second");

    let body = json!({ "version": "v2", "description": "second" });
    let v2 = expect(&api.fg(Method::POST, &versions, Some(body)).await, StatusCode::OK);
    assert_eq!(v2["version"], "v2");
    assert_eq!(v2["code_url"], code_url.as_str());

    // The default-named version still runs `first`, and is routable right away.
    let trigger = expect(
        &api.fg(Method::POST, &triggers("hello", Some(&name), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    let path = format!("/hello-{name}");
    assert_eq!(trigger["event_data"]["path"], path.as_str());
    let answer = gw.client.get(&path).await;
    assert_eq!(served_by(&answer), "first");
    assert_eq!(answer.version(), name);

    let list = expect(&api.fg(Method::GET, &versions, None).await, StatusCode::OK);
    assert_eq!(list["count"], 3, "{list}");
    assert_eq!(list["next_marker"], 3, "{list}");
    assert_eq!(names(&list["versions"], "version"), ["latest", name.as_str(), "v2"]);
    assert_eq!(list["versions"][0]["code_url"], code_url.as_str());

    // Paging: marker is an offset, maxitems a page size.
    let page = expect(&api.fg(Method::GET, &format!("{versions}?marker=1&maxitems=1"), None).await, StatusCode::OK);
    assert_eq!(names(&page["versions"], "version"), [name.as_str()]);
    assert_eq!((page["next_marker"].as_u64(), page["count"].as_u64()), (Some(2), Some(3)), "{page}");

    // The `:latest`-qualified URN (what the SDK sends) names the same function.
    let qualified = functions("hello", Some("latest"), "/versions");
    let list = expect(&api.fg(Method::GET, &qualified, None).await, StatusCode::OK);
    assert_eq!(list["count"], 3, "{list}");
    assert_disk_matches_memory(&gw);
}

// === FunctionGraph: aliases ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_lifecycle_and_the_split_is_live_when_the_response_returns() {
    let (gw, _up) = start(ROUTES, VERSION_BACKENDS).await;
    let api = Api::of(&gw);
    let aliases = functions("hello", None, "/aliases");
    let prod = functions("hello", None, "/aliases/prod");

    let body = json!({ "name": "prod", "version": "v1", "description": "production" });
    let created = expect(&api.fg(Method::POST, &aliases, Some(body)).await, StatusCode::OK);
    assert_eq!(created["name"], "prod");
    assert_eq!(created["version"], "v1");
    assert_eq!(created["description"], "production");
    assert_eq!(created["alias_urn"], urn("hello", Some("!prod")));
    assert!(!created["last_modified"].as_str().unwrap_or_default().is_empty(), "{created}");
    assert_eq!(created["additional_version_weights"], json!({}));

    let trigger = api.fg(Method::POST, &triggers("hello", Some("!prod"), ""), Some(apig(None, None))).await;
    assert_eq!(expect(&trigger, StatusCode::CREATED)["event_data"]["path"], "/hello-prod");
    assert_eq!(split(&gw.client, "/hello-prod", &[], 10).await, counts(&[("v1", 10)]));

    // A map of weights: exactly 50/50 over the next 100 requests, no waiting.
    let body = json!({ "version": "v1", "description": "canary", "additional_version_weights": { "v2": 50 } });
    let updated = expect(&api.fg(Method::PUT, &prod, Some(body)).await, StatusCode::OK);
    assert_eq!(updated["additional_version_weights"], json!({ "v2": 50 }));
    assert_eq!(updated["description"], "canary");
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await, counts(&[("v1", 50), ("v2", 50)]));

    // The 2022 edition sends the weights as JSON inside a string.
    let body = json!({ "version": "v1", "additional_version_weights": "{\"v2\": 30}" });
    let updated = expect(&api.fg(Method::PUT, &prod, Some(body)).await, StatusCode::OK);
    assert_eq!(updated["additional_version_weights"], json!({ "v2": 30 }));
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await, counts(&[("v1", 70), ("v2", 30)]));

    // Header rules; a PUT replaces the whole split, so the weights are gone.
    let body = json!({ "version": "v2", "additional_version_strategy": { "v3": { "combine_type": "or", "rules": [
        { "rule_type": "Header", "param": "x-canary", "op": "in", "value": "a,b" } ] } } });
    let updated = expect(&api.fg(Method::PUT, &prod, Some(body)).await, StatusCode::OK);
    assert_eq!(updated["additional_version_strategy"]["v3"]["rules"][0]["param"], "x-canary", "{updated}");
    assert_eq!(split(&gw.client, "/hello-prod", &[("x-canary", "b")], 20).await, counts(&[("v3", 20)]));
    assert_eq!(split(&gw.client, "/hello-prod", &[("x-canary", "c")], 10).await, counts(&[("v2", 10)]));
    assert_eq!(split(&gw.client, "/hello-prod", &[], 20).await, counts(&[("v2", 20)]));

    let shown = expect(&api.fg(Method::GET, &prod, None).await, StatusCode::OK);
    assert_eq!((shown["version"].as_str(), shown["description"].as_str()), (Some("v2"), Some("canary")), "{shown}");
    assert_eq!(shown["additional_version_weights"], json!({}));
    assert_eq!(shown["alias_urn"], urn("hello", Some("!prod")));

    let body = json!({ "name": "beta", "version": "latest" });
    expect(&api.fg(Method::POST, &aliases, Some(body)).await, StatusCode::OK);
    let list = expect(&api.fg(Method::GET, &aliases, None).await, StatusCode::OK);
    assert_eq!(names(&list, "name"), ["prod", "beta"], "a bare JSON array of aliases");
    // The SDK also lists with an alias-qualified URN.
    let qualified =
        expect(&api.fg(Method::GET, &functions("hello", Some("!prod"), "/aliases"), None).await, StatusCode::OK);
    assert_eq!(qualified, list);

    let deleted = api.fg(Method::DELETE, &functions("hello", None, "/aliases/beta"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    assert!(deleted.body.is_empty());
    fg_error(
        &api.fg(Method::GET, &functions("hello", None, "/aliases/beta"), None).await,
        StatusCode::NOT_FOUND,
        "FSS.1053",
    );
    let list = expect(&api.fg(Method::GET, &aliases, None).await, StatusCode::OK);
    assert_eq!(names(&list, "name"), ["prod"]);
    assert_disk_matches_memory(&gw);
}

// === FunctionGraph: APIG triggers ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apig_triggers_serve_as_soon_as_created_and_stop_when_deleted() {
    let (gw, _up) = start(WITH_PROD, VERSION_BACKENDS).await;
    let api = Api::of(&gw);

    // `!alias`-qualified URN, with the SDK's name, path and method.
    let mut body = apig(Some("shop_api"), Some("/shop"));
    body["event_data"]["req_method"] = "GET".into();
    let shop =
        expect(&api.fg(Method::POST, &triggers("hello", Some("!prod"), ""), Some(body)).await, StatusCode::CREATED);
    let shop_id = shop["trigger_id"].as_str().expect("trigger_id").to_owned();
    assert_eq!(shop["trigger_type_code"], "APIG");
    assert_eq!(shop["event_data"]["name"], "shop_api");
    assert_eq!(shop["event_data"]["path"], "/shop");
    assert_eq!(shop["event_data"]["req_method"], "GET");
    assert_eq!(shop["event_data"]["func_info"]["version"], "prod");
    let answer = gw.client.get("/shop").await;
    assert_eq!((served_by(&answer), answer.version()), ("v1".to_owned(), "v1".to_owned()));

    // Version-qualified URN, default name and path.
    let v2 = expect(
        &api.fg(Method::POST, &triggers("hello", Some("v2"), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    assert_eq!(v2["event_data"]["name"], "API_hellov2");
    assert_eq!(v2["event_data"]["path"], "/hello-v2");
    assert_eq!(served_by(&gw.client.get("/hello-v2").await), "v2");

    // Unqualified URN: latest.
    let latest =
        expect(&api.fg(Method::POST, &triggers("hello", None, ""), Some(apig(None, None))).await, StatusCode::CREATED);
    assert_eq!(latest["event_data"]["path"], "/hello-latest");
    assert_eq!(served_by(&gw.client.get("/hello-latest").await), "latest");

    let all = expect(&api.fg(Method::GET, &triggers("hello", None, ""), None).await, StatusCode::OK);
    assert_eq!(all.as_array().map(Vec::len), Some(4), "prod's file trigger and three new ones: {all}");
    let of_prod = expect(&api.fg(Method::GET, &triggers("hello", Some("!prod"), ""), None).await, StatusCode::OK);
    let mut paths: Vec<_> = of_prod.as_array().unwrap().iter().map(|t| t["event_data"]["path"].clone()).collect();
    paths.sort_by_key(Value::to_string);
    assert_eq!(paths, [json!("/hello-prod"), json!("/shop")]);
    let of_v2 = expect(&api.fg(Method::GET, &triggers("hello", Some("v2"), ""), None).await, StatusCode::OK);
    assert_eq!(names(&of_v2, "trigger_id"), [v2["trigger_id"].as_str().unwrap()]);

    let one = triggers("hello", Some("!prod"), &format!("/APIG/{shop_id}"));
    let shown = expect(&api.fg(Method::GET, &one, None).await, StatusCode::OK);
    assert_eq!(shown["trigger_id"], shop_id.as_str());
    assert_eq!(shown["event_data"]["path"], "/shop");

    let deleted = api.fg(Method::DELETE, &one, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    let gone = gw.client.get("/shop").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json()["error_code"], "APIG.0101");
    assert_eq!(api.fg(Method::GET, &one, None).await.status, StatusCode::NOT_FOUND);
    let of_prod = expect(&api.fg(Method::GET, &triggers("hello", Some("!prod"), ""), None).await, StatusCode::OK);
    assert_eq!(of_prod.as_array().map(Vec::len), Some(1), "{of_prod}");
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_trigger_takes_over_the_path_of_its_versions_trigger() {
    let (gw, _up) =
        start(WITH_PROD.replace("    triggers:\n      - { target: prod }\n", "").as_str(), VERSION_BACKENDS).await;
    let api = Api::of(&gw);

    let version = expect(
        &api.fg(Method::POST, &triggers("hello", Some("v1"), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    assert_eq!(
        (version["event_data"]["name"].as_str(), version["event_data"]["path"].as_str()),
        (Some("API_hellov1"), Some("/hello-v1"))
    );
    assert_eq!(split(&gw.client, "/hello-v1", &[], 10).await, counts(&[("v1", 10)]));

    // The alias points at v1: its trigger on the same path takes the URL over.
    let alias = api.fg(Method::POST, &triggers("hello", Some("!prod"), ""), Some(apig(None, Some("/hello-v1")))).await;
    let alias = expect(&alias, StatusCode::CREATED);
    assert_eq!(alias["event_data"]["path"], "/hello-v1");
    assert_eq!(alias["event_data"]["func_info"]["version"], "prod");
    let of_v1 = expect(&api.fg(Method::GET, &triggers("hello", Some("v1"), ""), None).await, StatusCode::OK);
    assert_eq!(of_v1, json!([]), "the version's trigger is replaced");
    let of_prod = expect(&api.fg(Method::GET, &triggers("hello", Some("!prod"), ""), None).await, StatusCode::OK);
    assert_eq!(names(&of_prod, "trigger_id"), [alias["trigger_id"].as_str().unwrap()]);

    // The URL now follows the alias's split.
    let body = json!({ "version": "v1", "additional_version_weights": { "v2": 50 } });
    expect(&api.fg(Method::PUT, &functions("hello", None, "/aliases/prod"), Some(body)).await, StatusCode::OK);
    assert_eq!(split(&gw.client, "/hello-v1", &[], 100).await, counts(&[("v1", 50), ("v2", 50)]));

    // Not so for a version the alias does not point at.
    expect(
        &api.fg(Method::POST, &triggers("hello", Some("v3"), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    let taken =
        api.fg(Method::POST, &triggers("hello", Some("!prod"), ""), Some(apig(Some("other"), Some("/hello-v3")))).await;
    fg_error(&taken, StatusCode::CONFLICT, "FSS.1147");
    assert_eq!(served_by(&gw.client.get("/hello-v3").await), "v3");
    assert_disk_matches_memory(&gw);
}

// === ESA routine deployments ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esa_deployments_set_the_env_alias_and_serve_on_the_default_trigger() {
    let (gw, _up) = start(ROUTINE, ROUTINE_BACKENDS).await;
    let api = Api::of(&gw);

    let versions = code_versions(&[(OLD, 90), (NEW, 10)]);
    let params =
        [("CodeVersions", versions.as_str()), ("Env", "production"), ("Name", "edge"), ("Strategy", "percentage")];
    let deployed = expect(&api.esa("CreateRoutineCodeDeployment", &params).await, StatusCode::OK);
    assert!(!deployed["RequestId"].as_str().unwrap_or_default().is_empty(), "{deployed}");
    assert_eq!(deployed["Strategy"], "percentage");
    let production_id = deployed["DeploymentId"].as_str().expect("DeploymentId").to_owned();
    assert!(!production_id.is_empty());
    assert_eq!(
        deployed["CodeVersions"],
        json!([{ "CodeVersion": OLD, "Percentage": 90 }, { "CodeVersion": NEW, "Percentage": 10 }])
    );
    assert_eq!(split(&gw.client, "/edge-production", &[], 100).await, counts(&[(OLD, 90), (NEW, 10)]));

    let alias =
        expect(&api.fg(Method::GET, &functions("edge", None, "/aliases/production"), None).await, StatusCode::OK);
    assert_eq!(alias["version"], OLD);
    assert_eq!(alias["additional_version_weights"], json!({ NEW: 10 }));

    // `Action` as a query parameter; the highest share becomes the alias's version.
    let versions = code_versions(&[(NEW, 30), (NEWEST, 70)]);
    let params =
        [("CodeVersions", versions.as_str()), ("Env", "staging"), ("Name", "edge"), ("Strategy", "percentage")];
    let staging = expect(&api.esa_query("Action=CreateRoutineCodeDeployment", &params).await, StatusCode::OK);
    assert_eq!(
        staging["CodeVersions"],
        json!([{ "CodeVersion": NEWEST, "Percentage": 70 }, { "CodeVersion": NEW, "Percentage": 30 }])
    );
    let staging_id = staging["DeploymentId"].as_str().expect("DeploymentId").to_owned();
    assert_eq!(split(&gw.client, "/edge-staging", &[], 100).await, counts(&[(NEWEST, 70), (NEW, 30)]));

    let list = expect(&api.fg(Method::GET, &triggers("edge", None, ""), None).await, StatusCode::OK);
    let mut paths: Vec<String> =
        list.as_array().unwrap().iter().map(|t| t["event_data"]["path"].as_str().unwrap().to_owned()).collect();
    paths.sort();
    assert_eq!(paths, ["/edge-production", "/edge-staging"]);

    // Everything in the query works too.
    let routine = expect(&api.esa_query("Action=GetRoutine&Name=edge", &[]).await, StatusCode::OK);
    let envs = routine["Envs"].as_array().expect("Envs");
    let env = |name: &str| envs.iter().find(|e| e["Env"] == name).unwrap_or_else(|| panic!("no {name} in {routine}"));
    assert_eq!(env("production")["CodeDeploy"]["DeployId"], production_id.as_str());
    assert_eq!(env("production")["CodeDeploy"]["Strategy"], "percentage");
    let shares = |name: &str| -> Vec<(String, i64)> {
        env(name)["CodeDeploy"]["CodeVersions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["CodeVersion"].as_str().unwrap().to_owned(), v["Percentage"].as_i64().unwrap()))
            .collect()
    };
    assert_eq!(shares("production"), [(OLD.to_owned(), 90), (NEW.to_owned(), 10)]);
    assert_eq!(shares("staging"), [(NEWEST.to_owned(), 70), (NEW.to_owned(), 30)]);
    assert_eq!(env("staging")["CodeDeploy"]["DeployId"], staging_id.as_str());
    assert_eq!(env("production")["CodeDeploy"]["CodeVersions"][0]["Description"], "old code");

    // A new deployment to an env replaces its split; the trigger stays the one trigger.
    let versions = code_versions(&[(NEWEST, 100)]);
    let params =
        [("CodeVersions", versions.as_str()), ("Env", "production"), ("Name", "edge"), ("Strategy", "percentage")];
    let redeployed = expect(&api.esa("CreateRoutineCodeDeployment", &params).await, StatusCode::OK);
    assert_eq!(split(&gw.client, "/edge-production", &[], 20).await, counts(&[(NEWEST, 20)]));
    let routine = expect(&api.esa("GetRoutine", &[("Name", "edge")]).await, StatusCode::OK);
    let production = routine["Envs"].as_array().unwrap().iter().find(|e| e["Env"] == "production").cloned().unwrap();
    assert_eq!(production["CodeDeploy"]["DeployId"], redeployed["DeploymentId"]);
    let list = expect(&api.fg(Method::GET, &triggers("edge", None, ""), None).await, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");

    let all = expect(&api.esa("ListRoutineCodeVersions", &[("Name", "edge")]).await, StatusCode::OK);
    assert_eq!(all["TotalCount"], 3);
    assert_eq!(names(&all["CodeVersions"], "CodeVersion"), [OLD, NEW, NEWEST]);
    assert_eq!(all["CodeVersions"][1]["CodeDescription"], "new code");
    let params = [("Name", "edge"), ("PageNumber", "2"), ("PageSize", "2")];
    let page = expect(&api.esa("ListRoutineCodeVersions", &params).await, StatusCode::OK);
    assert_eq!(
        (page["PageNumber"].as_u64(), page["PageSize"].as_u64(), page["TotalCount"].as_u64()),
        (Some(2), Some(2), Some(3))
    );
    assert_eq!(names(&page["CodeVersions"], "CodeVersion"), [NEWEST]);
    let params = [("Name", "edge"), ("SearchKeyWord", "new code")];
    let found = expect(&api.esa("ListRoutineCodeVersions", &params).await, StatusCode::OK);
    assert_eq!(names(&found["CodeVersions"], "CodeVersion"), [NEW]);
    assert_disk_matches_memory(&gw);
}

// === error codes ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_functiongraph_error_code_and_none_changes_anything() {
    const TEMPLATE: &str = r#"
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
  - name: other
    upstream: "@latest@"
    triggers:
      - { target: latest, path: /taken }
"#;
    let (gw, _up) = start(TEMPLATE, VERSION_BACKENDS).await;
    let api = Api::of(&gw);
    let aliases = functions("hello", None, "/aliases");
    let prod = functions("hello", None, "/aliases/prod");
    let versions = functions("hello", None, "/versions");
    let (bad, not_found, conflict, forbidden) =
        (StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND, StatusCode::CONFLICT, StatusCode::FORBIDDEN);
    let start_generation = generation(&gw);
    let put = |weights: Value| json!({ "version": "v1", "additional_version_weights": weights });

    // FSS.0400: malformed JSON, wrong types, unknown fields; the message names the field.
    fg_error(&api.fg_raw(Method::POST, &aliases, r#"{"name": "a","#).await, bad, "FSS.0400");
    fg_error(&api.fg_raw(Method::POST, &aliases, "not json at all").await, bad, "FSS.0400");
    let message =
        fg_error(&api.fg(Method::POST, &aliases, Some(json!({ "name": 5, "version": "v1" }))).await, bad, "FSS.0400");
    assert!(message.contains("name"), "{message}");
    let message = fg_error(&api.fg(Method::PUT, &prod, Some(put(json!({ "v2": "ten" })))).await, bad, "FSS.0400");
    assert!(message.contains("additional_version_weights"), "{message}");
    let message = fg_error(&api.fg(Method::PUT, &prod, Some(put(json!("not a map")))).await, bad, "FSS.0400");
    assert!(message.contains("additional_version_weights"), "{message}");
    let body = json!({ "name": "x", "version": "v1", "colour": "red" });
    let message = fg_error(&api.fg(Method::POST, &aliases, Some(body)).await, bad, "FSS.0400");
    assert!(message.contains("colour"), "{message}");
    let message =
        fg_error(&api.fg(Method::POST, &versions, Some(json!({ "version": "v9", "shade": 1 }))).await, bad, "FSS.0400");
    assert!(message.contains("shade"), "{message}");
    let message = fg_error(&api.fg(Method::POST, &versions, Some(json!({ "version": 7 }))).await, bad, "FSS.0400");
    assert!(message.contains("version"), "{message}");
    let message = fg_error(
        &api.fg(Method::PUT, &functions("hello", None, "/code"), Some(json!({ "code_url": "ftp://x" }))).await,
        bad,
        "FSS.0400",
    );
    assert!(message.contains("code_url"), "{message}");
    let mut body = apig(None, Some("/fresh"));
    let mut envelope = apig(None, Some("/fresh"));
    envelope["colour"] = "red".into();
    let message =
        fg_error(&api.fg(Method::POST, &triggers("hello", Some("v2"), ""), Some(envelope)).await, bad, "FSS.0400");
    assert!(message.contains("colour"), "{message}");
    body["event_data"]["flavour"] = "vanilla".into();
    let unknown = api.fg(Method::POST, &triggers("hello", Some("v2"), ""), Some(body)).await;
    assert_eq!(unknown.status, bad, "{}", unknown.text());
    assert!(unknown.json()["error_msg"].as_str().unwrap_or_default().contains("flavour"), "{}", unknown.text());

    // FSS.1014 bad alias name, FSS.1015 bad version.
    fg_error(&api.fg(Method::POST, &aliases, Some(json!({ "name": "1bad", "version": "v1" }))).await, bad, "FSS.1014");
    fg_error(
        &api.fg(Method::POST, &aliases, Some(json!({ "name": "bad name", "version": "v1" }))).await,
        bad,
        "FSS.1014",
    );
    fg_error(&api.fg(Method::POST, &aliases, Some(json!({ "version": "v1" }))).await, bad, "FSS.1014");
    fg_error(&api.fg(Method::POST, &aliases, Some(json!({ "name": "v2", "version": "v1" }))).await, bad, "FSS.1014");
    fg_error(&api.fg(Method::POST, &aliases, Some(json!({ "name": "beta" }))).await, bad, "FSS.1015");
    fg_error(
        &api.fg(Method::POST, &aliases, Some(json!({ "name": "beta", "version": "no way!" }))).await,
        bad,
        "FSS.1015",
    );
    fg_error(&api.fg(Method::POST, &versions, Some(json!({ "version": "bad name!" }))).await, bad, "FSS.1015");
    fg_error(&api.fg(Method::POST, &versions, Some(json!({ "version": "latest" }))).await, bad, "FSS.1015");

    // FSS.1091 bad additional version, FSS.1092 bad weight, FSS.1093 the alias's own version.
    fg_error(&api.fg(Method::PUT, &prod, Some(put(json!({ "v9": 10 })))).await, bad, "FSS.1091");
    fg_error(&api.fg(Method::PUT, &prod, Some(put(json!({ "latest": 10 })))).await, bad, "FSS.1091");
    let strategy = json!({ "version": "v1", "additional_version_strategy": { "v9": { "combine_type": "and", "rules": [
        { "rule_type": "Header", "param": "x-a", "op": "=", "value": "1" } ] } } });
    fg_error(&api.fg(Method::PUT, &prod, Some(strategy)).await, bad, "FSS.1091");
    fg_error(&api.fg(Method::PUT, &prod, Some(put(json!({ "v2": 0 })))).await, bad, "FSS.1092");
    fg_error(&api.fg(Method::PUT, &prod, Some(put(json!({ "v2": 101 })))).await, bad, "FSS.1092");
    fg_error(&api.fg(Method::PUT, &prod, Some(put(json!({ "v2": 60, "v3": 50 })))).await, bad, "FSS.1092");
    fg_error(&api.fg(Method::PUT, &prod, Some(put(json!({ "v2": -5 })))).await, bad, "FSS.1092");
    fg_error(&api.fg(Method::PUT, &prod, Some(put(json!({ "v1": 10 })))).await, bad, "FSS.1093");

    // FSS.1154: an alias bound to a trigger cannot be deleted.
    fg_error(&api.fg(Method::DELETE, &prod, None).await, forbidden, "FSS.1154");

    // FSS.1051: unknown project (in the path or in the URN) or function.
    let elsewhere =
        format!("/v2/ffffffffffffffffffffffffffffffff/fgs/functions/{}/aliases", encode(&urn("hello", None)));
    fg_error(&api.fg(Method::GET, &elsewhere, None).await, not_found, "FSS.1051");
    let wrong_urn = urn("hello", None).replace(PROJECT, "ffffffffffffffffffffffffffffffff");
    let wrong_urn = format!("/v2/{PROJECT}/fgs/functions/{}/aliases", encode(&wrong_urn));
    fg_error(&api.fg(Method::GET, &wrong_urn, None).await, not_found, "FSS.1051");
    fg_error(&api.fg(Method::GET, &functions("ghost", None, "/aliases"), None).await, not_found, "FSS.1051");
    fg_error(
        &api.fg(Method::POST, &functions("ghost", None, "/versions"), Some(json!({}))).await,
        not_found,
        "FSS.1051",
    );
    fg_error(&api.fg(Method::POST, &triggers("ghost", None, ""), Some(apig(None, None))).await, not_found, "FSS.1051");

    // FSS.1052 version not found, FSS.1053 alias not found.
    fg_error(
        &api.fg(Method::POST, &aliases, Some(json!({ "name": "beta", "version": "v9" }))).await,
        not_found,
        "FSS.1052",
    );
    fg_error(
        &api.fg(Method::POST, &triggers("hello", Some("v9"), ""), Some(apig(None, None))).await,
        not_found,
        "FSS.1052",
    );
    let nope = functions("hello", None, "/aliases/nope");
    fg_error(&api.fg(Method::GET, &nope, None).await, not_found, "FSS.1053");
    fg_error(&api.fg(Method::PUT, &nope, Some(json!({ "version": "v1" }))).await, not_found, "FSS.1053");
    fg_error(&api.fg(Method::DELETE, &nope, None).await, not_found, "FSS.1053");
    fg_error(
        &api.fg(Method::POST, &triggers("hello", Some("!nope"), ""), Some(apig(None, None))).await,
        not_found,
        "FSS.1053",
    );

    // FSS.1062 version exists, FSS.1063 alias exists.
    fg_error(&api.fg(Method::POST, &versions, Some(json!({ "version": "v1" }))).await, conflict, "FSS.1062");
    fg_error(
        &api.fg(Method::POST, &aliases, Some(json!({ "name": "prod", "version": "v2" }))).await,
        conflict,
        "FSS.1063",
    );

    // FSS.1146 trigger name exists, FSS.1147 request path exists (another function's, or
    // an alias's that does not point at this version).
    let same_name = apig(Some("API_helloprod"), Some("/fresh"));
    fg_error(&api.fg(Method::POST, &triggers("hello", Some("v2"), ""), Some(same_name)).await, conflict, "FSS.1146");
    fg_error(
        &api.fg(Method::POST, &triggers("hello", Some("v2"), ""), Some(apig(None, Some("/taken")))).await,
        conflict,
        "FSS.1147",
    );
    fg_error(
        &api.fg(Method::POST, &triggers("hello", Some("v1"), ""), Some(apig(None, Some("/hello-prod")))).await,
        conflict,
        "FSS.1147",
    );

    // Not one of those calls changed the routes.
    assert_eq!(generation(&gw), start_generation, "a rejected call changed the routes");

    // FSS.1016: publishing twice while latest has not changed.
    let v4 = expect(&api.fg(Method::POST, &versions, Some(json!({ "version": "v4" }))).await, StatusCode::OK);
    assert_eq!(v4["version"], "v4");
    fg_error(&api.fg(Method::POST, &versions, Some(json!({ "version": "v5" }))).await, bad, "FSS.1016");
    fg_error(&api.fg(Method::POST, &versions, Some(json!({}))).await, bad, "FSS.1016");
    assert_eq!(generation(&gw), start_generation + 1);

    let spec = memory(&gw);
    let hello = spec.functions.iter().find(|f| f.name == "hello").unwrap();
    assert_eq!(hello.aliases.len(), 1);
    assert_eq!((hello.aliases[0].version.as_str(), hello.aliases[0].additional_version_weights.len()), ("v1", 0));
    assert_eq!(hello.triggers.len(), 1);
    assert_eq!(hello.versions.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["v1", "v2", "v3", "v4"]);
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_version_in_use_is_fss_1094_and_an_unused_one_goes() {
    const TEMPLATE: &str = r#"
project_id: 0123456789abcdef0123456789abcdef
region: cn-north-4
functions:
  - name: hello
    upstream: "@latest@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
      - { version: v3, upstream: "@v3@" }
      - { version: v4, upstream: "@v4@" }
      - { version: v5, upstream: "@v5@" }
    aliases:
      - { name: prod, version: v1, additional_version_weights: { v2: 10 } }
      - name: canary
        version: latest
        additional_version_strategy:
          v3: { rules: [ { param: x-canary, op: "=", value: "yes" } ] }
    triggers:
      - { target: prod }
      - { target: v4 }
"#;
    let (gw, _up) = start(TEMPLATE, &["latest", "v1", "v2", "v3", "v4", "v5"]).await;
    let api = Api::of(&gw);
    let version = |v: &str| functions("hello", Some(v), "");
    let before = generation(&gw);

    // In use: the alias's own version, an additional version (by weight, by rule), a
    // trigger's target.
    for (v, why) in [("v1", "prod"), ("v2", "prod"), ("v3", "canary"), ("v4", "API_hellov4")] {
        let message = fg_error(&api.fg(Method::DELETE, &version(v), None).await, StatusCode::FORBIDDEN, "FSS.1094");
        assert!(message.contains(why), "{v}: {message}");
    }
    fg_error(&api.fg(Method::DELETE, &version("v9"), None).await, StatusCode::NOT_FOUND, "FSS.1052");
    fg_error(&api.fg(Method::DELETE, &version("latest"), None).await, StatusCode::BAD_REQUEST, "FSS.1015");
    fg_error(&api.fg(Method::DELETE, &functions("hello", None, ""), None).await, StatusCode::BAD_REQUEST, "FSS.0400");
    let ghost = functions("ghost", Some("v1"), "");
    fg_error(&api.fg(Method::DELETE, &ghost, None).await, StatusCode::NOT_FOUND, "FSS.1051");
    assert_eq!(generation(&gw), before, "a refused deletion changed the routes");
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await, counts(&[("v1", 90), ("v2", 10)]));

    // Unused: gone at once.
    let deleted = api.fg(Method::DELETE, &version("v5"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    let list = expect(&api.fg(Method::GET, &functions("hello", None, "/versions"), None).await, StatusCode::OK);
    assert_eq!(names(&list["versions"], "version"), ["latest", "v1", "v2", "v3", "v4"]);
    let trigger = api.fg(Method::POST, &triggers("hello", Some("v5"), ""), Some(apig(None, None))).await;
    fg_error(&trigger, StatusCode::NOT_FOUND, "FSS.1052");

    // Once nothing refers to it any more, a version can go; its URL is gone with its trigger.
    let body = json!({ "version": "v1" });
    expect(&api.fg(Method::PUT, &functions("hello", None, "/aliases/prod"), Some(body)).await, StatusCode::OK);
    assert_eq!(api.fg(Method::DELETE, &version("v2"), None).await.status, StatusCode::NO_CONTENT);
    let of_v4 = expect(&api.fg(Method::GET, &triggers("hello", Some("v4"), ""), None).await, StatusCode::OK);
    let id = of_v4[0]["trigger_id"].as_str().expect("v4's trigger").to_owned();
    let one = triggers("hello", Some("v4"), &format!("/APIG/{id}"));
    assert_eq!(api.fg(Method::DELETE, &one, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.fg(Method::DELETE, &version("v4"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(gw.client.get("/hello-v4").await.status, StatusCode::NOT_FOUND);
    assert_eq!(split(&gw.client, "/hello-prod", &[], 20).await, counts(&[("v1", 20)]));
    let spec = memory(&gw);
    let left: Vec<&str> = spec.functions[0].versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(left, ["v1", "v3"]);
    assert_eq!(generation(&gw), before + 5);
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_alias_is_over_quota() {
    let (gw, _up) = start(ROUTES, VERSION_BACKENDS).await;
    let api = Api::of(&gw);
    let aliases = functions("hello", None, "/aliases");
    for i in 0..10 {
        let body = json!({ "name": format!("a{i}"), "version": "v1" });
        expect(&api.fg(Method::POST, &aliases, Some(body)).await, StatusCode::OK);
    }
    let body = json!({ "name": "a10", "version": "v1" });
    fg_error(&api.fg(Method::POST, &aliases, Some(body)).await, StatusCode::FORBIDDEN, "FSS.1043");
    let list = expect(&api.fg(Method::GET, &aliases, None).await, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(10));
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_with_413() {
    let upstreams = backends(VERSION_BACKENDS).await;
    let gw = Gateway::start_with(&render(ROUTES, &upstreams), |config| {
        config.admin.tokens = vec![Secret::new(TOKEN)];
        config.admin.max_body_bytes = 1024;
    })
    .await;
    let api = Api::of(&gw);
    let aliases = functions("hello", None, "/aliases");
    let body = json!({ "name": "big", "version": "v1", "description": "x".repeat(4000) });
    let answer = api.fg(Method::POST, &aliases, Some(body)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.text());
    assert!(answer.json()["error_msg"].as_str().unwrap_or_default().contains("1024"), "{}", answer.text());
    let versions = code_versions(&[("v1", 100)]);
    let padding = "y".repeat(4000);
    let params = [
        ("CodeVersions", versions.as_str()),
        ("Env", "staging"),
        ("Name", "hello"),
        ("Strategy", "percentage"),
        ("Pad", padding.as_str()),
    ];
    let answer = api.esa("CreateRoutineCodeDeployment", &params).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.text());
    assert!(answer.json()["Code"].is_string(), "{}", answer.text());

    // Just under the cap is fine, and the refused alias does not exist.
    let body = json!({ "name": "small", "version": "v1", "description": "x".repeat(900) });
    expect(&api.fg(Method::POST, &aliases, Some(body)).await, StatusCode::OK);
    let list = expect(&api.fg(Method::GET, &aliases, None).await, StatusCode::OK);
    assert_eq!(names(&list, "name"), ["small"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_esa_error_code_is_a_400_with_requestid_code_and_message() {
    let (gw, _up) = start(ROUTINE, ROUTINE_BACKENDS).await;
    let api = Api::of(&gw);
    let start_generation = generation(&gw);
    let good = code_versions(&[(OLD, 90), (NEW, 10)]);
    let deploy = |name: &'static str, env: &'static str, strategy: &'static str, versions: String| {
        let api = api.clone();
        async move {
            let params = [("CodeVersions", versions.as_str()), ("Env", env), ("Name", name), ("Strategy", strategy)];
            api.esa("CreateRoutineCodeDeployment", &params).await
        }
    };
    let bad = StatusCode::BAD_REQUEST;

    let message = esa_error(&deploy("edge", "testing", "percentage", good.clone()).await, bad, "InvalidParameter");
    assert!(message.contains("Env"), "{message}");
    let message = esa_error(&deploy("edge", "production", "weighted", good.clone()).await, bad, "InvalidParameter");
    assert!(message.contains("Strategy"), "{message}");
    let short = code_versions(&[(OLD, 80), (NEW, 10)]);
    esa_error(&deploy("edge", "production", "percentage", short).await, bad, "InvalidParameter");
    let over = code_versions(&[(OLD, 95), (NEW, 10)]);
    esa_error(&deploy("edge", "production", "percentage", over).await, bad, "InvalidParameter");
    let three = code_versions(&[(OLD, 34), (NEW, 33), (NEWEST, 33)]);
    esa_error(&deploy("edge", "production", "percentage", three).await, bad, "InvalidParameter");
    let zero = code_versions(&[(OLD, 100), (NEW, 0)]);
    esa_error(&deploy("edge", "production", "percentage", zero).await, bad, "InvalidParameter");
    esa_error(&deploy("edge", "production", "percentage", "[]".into()).await, bad, "InvalidParameter");
    esa_error(&deploy("edge", "production", "percentage", "[{\"CodeVersion\":".into()).await, bad, "InvalidParameter");
    esa_error(&deploy("edge", "production", "percentage", String::new()).await, bad, "InvalidParameter");
    let missing_env = [("CodeVersions", good.as_str()), ("Name", "edge"), ("Strategy", "percentage")];
    esa_error(&api.esa("CreateRoutineCodeDeployment", &missing_env).await, bad, "InvalidParameter");
    esa_error(&api.esa("DeleteRoutine", &[("Name", "edge")]).await, bad, "InvalidParameter");

    esa_error(&deploy("ghost", "production", "percentage", good.clone()).await, bad, "RoutineNotExist");
    esa_error(&api.esa("GetRoutine", &[("Name", "ghost")]).await, bad, "RoutineNotExist");
    esa_error(&api.esa("ListRoutineCodeVersions", &[("Name", "ghost")]).await, bad, "RoutineNotExist");

    let unknown = code_versions(&[(OLD, 50), ("999", 50)]);
    let message = esa_error(&deploy("edge", "production", "percentage", unknown).await, bad, "ParameterNotExist");
    assert!(message.contains("999"), "{message}");

    assert_eq!(generation(&gw), start_generation, "a rejected deployment changed the routes");
    let routine = expect(&api.esa("GetRoutine", &[("Name", "edge")]).await, StatusCode::OK);
    assert_eq!(routine["Envs"], json!([]), "{routine}");
    assert_disk_matches_memory(&gw);
}

// === authentication ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_the_api_and_every_refusal_looks_the_same() {
    let upstreams = backends(VERSION_BACKENDS).await;
    let gw = Gateway::start_with(&render(WITH_PROD, &upstreams), |config| {
        config.admin.tokens = vec![Secret::new(TOKEN), Secret::new("second-token")];
    })
    .await;
    let url = gw.admin_url(&functions("hello", None, "/aliases"));
    let get = |headers: &'static [(&'static str, &'static str)]| {
        let (client, url) = (gw.client.clone(), url.clone());
        async move { client.send_to(&url, Method::GET, headers, Bytes::new()).await }
    };

    assert_eq!(get(&[("x-auth-token", TOKEN)]).await.status, StatusCode::OK);
    assert_eq!(get(&[("x-auth-token", "second-token")]).await.status, StatusCode::OK);

    let missing = get(&[]).await;
    let wrong = get(&[("x-auth-token", "wrong")]).await;
    let prefix = get(&[("x-auth-token", "graygate-test-token-000")]).await;
    let longer = get(&[("x-auth-token", "graygate-test-token-00011")]).await;
    let basic = get(&[("authorization", "Basic dXNlcjpwYXNz")]).await;
    fg_error(&missing, StatusCode::UNAUTHORIZED, "APIG.0301");
    for refused in [&wrong, &prefix, &longer, &basic] {
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.body, missing.body, "a refusal says what was wrong");
    }

    // A refused change changes nothing.
    let before = generation(&gw);
    let body = Bytes::from(json!({ "version": "v2" }).to_string());
    let prod = gw.admin_url(&functions("hello", None, "/aliases/prod"));
    let refused = gw.client.send_to(&prod, Method::PUT, &[("x-auth-token", "wrong")], body).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.body, missing.body);
    assert_eq!(generation(&gw), before);
    assert_eq!(split(&gw.client, "/hello-prod", &[], 5).await, counts(&[("v1", 5)]));

    // ESA answers in its own shape, alike apart from the request id.
    let esa = |token: Option<&'static str>| {
        let (client, url) = (gw.client.clone(), gw.admin_url("/"));
        async move {
            let mut headers =
                vec![("x-acs-action", "GetRoutine"), ("content-type", "application/x-www-form-urlencoded")];
            if let Some(token) = token {
                headers.push(("x-auth-token", token));
            }
            client.send_to(&url, Method::POST, &headers, Bytes::from_static(b"Name=hello")).await
        }
    };
    assert_eq!(esa(Some(TOKEN)).await.status, StatusCode::OK);
    let (no_token, bad_token) = (esa(None).await, esa(Some("wrong")).await);
    let code = no_token.json()["Code"].as_str().unwrap_or_default().to_owned();
    assert!(!code.is_empty(), "{}", no_token.text());
    let m1 = esa_error(&no_token, StatusCode::UNAUTHORIZED, &code);
    let m2 = esa_error(&bad_token, StatusCode::UNAUTHORIZED, &code);
    assert_eq!(m1, m2);

    // Metrics and probes stay open.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let answer = gw.client.send_to(&gw.admin_url(path), Method::GET, &[], Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_listener_needs_credentials() {
    let upstreams = backends(VERSION_BACKENDS).await;
    let dir = tempfile::tempdir().unwrap();
    let routes_path = dir.path().join("routes.yaml");
    std::fs::write(&routes_path, render(ROUTES, &upstreams)).unwrap();
    let anywhere: SocketAddr = "0.0.0.0:0".parse().unwrap();

    let config = ServerConfig::with_defaults(support::local(), anywhere, routes_path.clone()).unwrap();
    match App::start(config).await {
        Err(StartError::OpenAdmin(addr)) => assert_eq!(addr, anywhere),
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(app) => {
            app.shutdown().await;
            panic!("an open admin listener without credentials started");
        }
    }

    // With a token it starts, and the token is required.
    let mut config = ServerConfig::with_defaults(support::local(), anywhere, routes_path).unwrap();
    config.admin.tokens = vec![Secret::new(TOKEN)];
    let app = App::start(config).await.unwrap_or_else(|e| panic!("does not start with a token: {e}"));
    let admin = format!("http://127.0.0.1:{}{}", app.admin_addr().port(), functions("hello", None, "/aliases"));
    let client = TestClient::new(app.data_addr());
    assert_eq!(client.send_to(&admin, Method::GET, &[], Bytes::new()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        client.send_to(&admin, Method::GET, &[("x-auth-token", TOKEN)], Bytes::new()).await.status,
        StatusCode::OK
    );
    tokio::time::timeout(support::PATIENCE, app.shutdown()).await.unwrap();
}

// --- request signing, as the vendors' SDKs do it (REPORT.md 1.3 and 2.3) ---

const HW_AK: &str = "HPUAEXAMPLEAK0000001";
const HW_SK: &str = "exampleSecretKey0123456789abcdefghijklmn";
const ALI_AK: &str = "LTAI5tEXAMPLEAccessKey01";
const ALI_SK: &str = "ExampleAccessKeySecret0123456789ab";

fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_hex(key: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Decodes a wire query into sorted pairs and re-encodes them RFC 3986 (`plus_is_space`
/// for Alibaba's form-encoded wire query).
fn canonical_query(query: &str, plus_is_space: bool) -> String {
    let decode = |s: &str| {
        let s = if plus_is_space { s.replace('+', " ") } else { s.to_owned() };
        percent_decode_str(&s).decode_utf8_lossy().into_owned()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// `name:value\n` per header (names already lower-case and sorted) and the signed list.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let text: String = headers.iter().map(|(n, v)| format!("{n}:{}\n", v.trim())).collect();
    let signed = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    (text, signed)
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

/// Huawei SDK-HMAC-SHA256 over `headers` (lower-case names, sorted, `x-sdk-date` among
/// them): the signed-header list and the signature (REPORT.md 1.3).
fn huawei_signature(
    sk: &str,
    method: &Method,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (String, String) {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let decoded = percent_decode_str(path).decode_utf8_lossy().into_owned();
    let mut uri = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    let (canonical_headers, signed) = canonical_headers(headers);
    let canonical = format!(
        "{method}\n{uri}\n{}\n{canonical_headers}\n{signed}\n{}",
        canonical_query(query, false),
        hex_sha256(body)
    );
    let date = &headers.iter().find(|(n, _)| n == "x-sdk-date").expect("x-sdk-date").1;
    let to_sign = format!("SDK-HMAC-SHA256\n{date}\n{}", hex_sha256(canonical.as_bytes()));
    (signed, hmac_hex(sk, &to_sign))
}

/// The headers of a Huawei SDK call (the signed ones and `authorization`).
fn huawei_sign(
    (ak, sk): (&str, &str),
    method: &Method,
    host: &str,
    path_and_query: &str,
    body: &[u8],
    date: OffsetDateTime,
) -> Vec<(String, String)> {
    let date_text = date.format(format_description!("[year][month][day]T[hour][minute][second]Z")).unwrap();
    let mut headers = owned(&[
        ("content-type", "application/json"),
        ("host", host),
        ("user-agent", "huaweicloud-usdk-python/3.0; graygate-tests"),
        ("x-project-id", PROJECT),
        ("x-sdk-date", date_text.as_str()),
    ]);
    let (signed, signature) = huawei_signature(sk, method, path_and_query, &headers, body);
    headers.push((
        "authorization".into(),
        format!("SDK-HMAC-SHA256 Access={ak}, SignedHeaders={signed}, Signature={signature}"),
    ));
    headers
}

/// Alibaba ACS3-HMAC-SHA256 of `{method} /?{query}` over `headers` (lower-case names, sorted):
/// the signed-header list and the signature (REPORT.md 2.3).
fn acs3_signature(
    sk: &str,
    method: &Method,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (String, String) {
    let (canonical_headers, signed) = canonical_headers(headers);
    let canonical =
        format!("{method}\n/\n{}\n{canonical_headers}\n{signed}\n{}", canonical_query(query, true), hex_sha256(body));
    let to_sign = format!("ACS3-HMAC-SHA256\n{}", hex_sha256(canonical.as_bytes()));
    (signed, hmac_hex(sk, &to_sign))
}

/// The headers of an ESA SDK call `POST /?{query}` (the signed ones and `authorization`).
fn acs3_sign(
    (ak, sk): (&str, &str),
    host: &str,
    action: &str,
    query: &str,
    body: &[u8],
    date: OffsetDateTime,
) -> Vec<(String, String)> {
    let date_text = date.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).unwrap();
    let nonce = format!("{:032x}", fastrand::u128(..));
    let body_hash = hex_sha256(body);
    let mut headers = owned(&[("accept", "application/json")]);
    if !body.is_empty() {
        headers.extend(owned(&[("content-type", "application/x-www-form-urlencoded")]));
    }
    headers.extend(owned(&[
        ("host", host),
        ("user-agent", "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2"),
        ("x-acs-action", action),
        ("x-acs-content-sha256", body_hash.as_str()),
        ("x-acs-credentials-provider", "static_ak"),
        ("x-acs-date", date_text.as_str()),
        ("x-acs-signature-nonce", nonce.as_str()),
        ("x-acs-version", "2024-09-10"),
    ]));
    let (signed, signature) = acs3_signature(sk, &Method::POST, query, &headers, body);
    headers.push((
        "authorization".into(),
        format!("ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={signed},Signature={signature}"),
    ));
    headers
}

/// The signers above reproduce the SDKs' own signatures (REPORT.md 1.4 and 2.4), so the
/// signed-request tests below do not merely agree with graygate's verifier.
#[test]
fn the_test_signers_match_the_sdks_worked_examples() {
    let path = "/v2/0123456789abcdef0123456789abcdef/fgs/functions/urn%3Afss%3Acn-north-4%3A0123456789abcdef0123456789abcdef%3Afunction%3Adefault%3Amy-func%3Alatest/versions";
    let headers = owned(&[
        ("content-type", "application/json"),
        ("host", "127.0.0.1:8080"),
        ("user-agent", "huaweicloud-usdk-python/3.0"),
        ("x-project-id", PROJECT),
        ("x-sdk-date", "20240501T020304Z"),
    ]);
    let body = br#"{"digest": "abc", "version": "v1", "description": "first"}"#;
    let (signed, signature) = huawei_signature(HW_SK, &Method::POST, path, &headers, body);
    assert_eq!(signed, "content-type;host;user-agent;x-project-id;x-sdk-date");
    assert_eq!(signature, "7bad0b2b332e054b6a2eb7111c1ee0564e89e7805a8a8302c37292fec3f8b5c1");
    let query = format!("{}?a=%E4%B8%AD&flag=true&m=1&m=2&z=a%20b%2Bc%2F~%2A", path.replace("/versions", "/aliases"));
    let (_, signature) = huawei_signature(HW_SK, &Method::GET, &query, &headers, b"");
    assert_eq!(signature, "42ccf681aa92cb50e1d2d564025e8aa50ddb415b78ecda20b3a61afdaa2fc66e");

    let body = "CodeVersions=%5B%7B%22CodeVersion%22%3A%221710120201067203242%22%2C%22Percentage%22%3A90%7D%2C%7B%22CodeVersion%22%3A%221710120201067203243%22%2C%22Percentage%22%3A10%7D%5D&Env=production&Name=my-routine&Strategy=percentage";
    let headers = owned(&[
        ("accept", "application/json"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("host", "127.0.0.1:8080"),
        ("user-agent", "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2"),
        ("x-acs-action", "CreateRoutineCodeDeployment"),
        ("x-acs-content-sha256", "1aa4817971b64c284be66d270875c1caa943524553efeef644f74204f6239432"),
        ("x-acs-credentials-provider", "static_ak"),
        ("x-acs-date", "2024-05-01T02:03:04Z"),
        ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
        ("x-acs-version", "2024-09-10"),
    ]);
    assert_eq!(hex_sha256(body.as_bytes()), "1aa4817971b64c284be66d270875c1caa943524553efeef644f74204f6239432");
    let (_, signature) = acs3_signature(ALI_SK, &Method::POST, "", &headers, body.as_bytes());
    assert_eq!(signature, "b4994230c3576d6ccb9ad446aff4b77d811f196ae6524157479ca7b446d6daa7");
    // GET with a form-encoded query, no body, no content-type (DescribePurgeTasks).
    let headers: Vec<_> = headers
        .into_iter()
        .filter(|(n, _)| n != "content-type")
        .map(|(n, v)| match n.as_str() {
            "x-acs-action" => (n, "DescribePurgeTasks".to_owned()),
            "x-acs-content-sha256" => (n, hex_sha256(b"")),
            _ => (n, v),
        })
        .collect();
    let query = "SiteId=123&Content=http%3A%2F%2Fa.com%2Fx+y%2Bz~%2A";
    let (signed, signature) = acs3_signature(ALI_SK, &Method::GET, query, &headers, b"");
    assert_eq!(
        signed,
        "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version"
    );
    assert_eq!(signature, "d5c69b135fb97805b770f9f7b0e7adc0e5e4425c8d403117d5f6752262aca763");
}

fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

fn with_header(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.clone(), if n == name { value.to_owned() } else { v.clone() })).collect()
}

async fn start_with_keys(template: &str, names: &[&str]) -> Gateway {
    let upstreams = backends(names).await;
    Gateway::start_with(&render(template, &upstreams), |config| {
        config.admin.keys = vec![
            AccessKey { id: HW_AK.into(), secret: Secret::new(HW_SK) },
            AccessKey { id: ALI_AK.into(), secret: Secret::new(ALI_SK) },
        ];
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huawei_signed_requests_are_verified() {
    let gw = start_with_keys(WITH_PROD, VERSION_BACKENDS).await;
    let host = gw.app.admin_addr().to_string();
    let now = OffsetDateTime::now_utc();
    let send = |method: Method, path: String, headers: Vec<(String, String)>, body: &'static str| {
        let (client, url) = (gw.client.clone(), gw.admin_url(&path));
        async move { client.send_to(&url, method, &pairs(&headers), Bytes::from_static(body.as_bytes())).await }
    };
    let aliases = functions("hello", Some("latest"), "/aliases");
    let create = r#"{"name": "signed", "version": "v2", "description": "by \u7b7e\u540d"}"#;
    let tampered = r#"{"name": "tampered", "version": "v2", "description": "by \u7b7e\u540d"}"#;

    // Good: a POST with a body, a GET with a query, a `!alias` URN (`%21` in the path).
    let headers = huawei_sign((HW_AK, HW_SK), &Method::POST, &host, &aliases, create.as_bytes(), now);
    let created = expect(&send(Method::POST, aliases.clone(), headers, create).await, StatusCode::OK);
    assert_eq!(created["description"], "by \u{7b7e}\u{540d}");
    let listing = format!("{}?marker=0&maxitems=50", functions("hello", Some("latest"), "/versions"));
    let headers = huawei_sign((HW_AK, HW_SK), &Method::GET, &host, &listing, b"", now);
    assert_eq!(expect(&send(Method::GET, listing.clone(), headers, "").await, StatusCode::OK)["count"], 4);
    let by_alias = functions("hello", Some("!signed"), "/aliases/signed");
    let headers = huawei_sign((HW_AK, HW_SK), &Method::GET, &host, &by_alias, b"", now);
    assert_eq!(expect(&send(Method::GET, by_alias, headers, "").await, StatusCode::OK)["version"], "v2");
    // Within the allowed skew.
    let headers = huawei_sign((HW_AK, HW_SK), &Method::GET, &host, &listing, b"", now - time::Duration::minutes(5));
    assert_eq!(send(Method::GET, listing.clone(), headers, "").await.status, StatusCode::OK);

    // Refused, all with the same body: wrong secret, tampered body, skewed date (both
    // ways), unknown key, a tampered query.
    let before = generation(&gw);
    let mut refusals = Vec::new();
    let headers = huawei_sign((HW_AK, "not-the-secret"), &Method::POST, &host, &aliases, tampered.as_bytes(), now);
    refusals.push(send(Method::POST, aliases.clone(), headers, tampered).await);
    let headers = huawei_sign((HW_AK, HW_SK), &Method::POST, &host, &aliases, create.as_bytes(), now);
    refusals.push(send(Method::POST, aliases.clone(), headers, tampered).await);
    for skew in [time::Duration::minutes(-20), time::Duration::minutes(20)] {
        let headers = huawei_sign((HW_AK, HW_SK), &Method::POST, &host, &aliases, tampered.as_bytes(), now + skew);
        refusals.push(send(Method::POST, aliases.clone(), headers, tampered).await);
    }
    let headers =
        huawei_sign(("HPUAUNKNOWNKEY000000", HW_SK), &Method::POST, &host, &aliases, tampered.as_bytes(), now);
    refusals.push(send(Method::POST, aliases.clone(), headers, tampered).await);
    let headers = huawei_sign((HW_AK, HW_SK), &Method::GET, &host, &listing, b"", now);
    refusals.push(send(Method::GET, listing.replace("maxitems=50", "maxitems=1"), headers, "").await);
    let reference = refusals[0].body.clone();
    for (i, refused) in refusals.iter().enumerate() {
        fg_error(refused, StatusCode::UNAUTHORIZED, "APIG.0301");
        assert_eq!(refused.body, reference, "refusal {i} differs");
    }
    assert_eq!(generation(&gw), before, "a refused request changed the routes");
    let spec = memory(&gw);
    assert!(!spec.functions[0].aliases.iter().any(|a| a.name == "tampered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alibaba_signed_requests_are_verified() {
    let gw = start_with_keys(ROUTINE, ROUTINE_BACKENDS).await;
    let host = gw.app.admin_addr().to_string();
    let now = OffsetDateTime::now_utc();
    let send = |query: &'static str, headers: Vec<(String, String)>, body: String| {
        let (client, url) = (gw.client.clone(), gw.admin_url(&format!("/{query}")));
        async move { client.send_to(&url, Method::POST, &pairs(&headers), Bytes::from(body)).await }
    };
    let deploy = |versions: &[(&str, i64)]| {
        let versions = code_versions(versions);
        form(&[
            ("CodeVersions", versions.as_str()),
            ("Env", "production"),
            ("Name", "edge"),
            ("Strategy", "percentage"),
        ])
    };
    let good = deploy(&[(OLD, 60), (NEW, 40)]);
    let tampered = deploy(&[(NEW, 100)]);
    let action = "CreateRoutineCodeDeployment";

    let headers = acs3_sign((ALI_AK, ALI_SK), &host, action, "", good.as_bytes(), now);
    expect(&send("", headers, good.clone()).await, StatusCode::OK);
    assert_eq!(split(&gw.client, "/edge-production", &[], 100).await, counts(&[(OLD, 60), (NEW, 40)]));
    // A query with a `+` (form-encoded space) is canonicalised as the SDK does.
    let query = "?Name=edge&SearchKeyWord=new+code";
    let headers =
        acs3_sign((ALI_AK, ALI_SK), &host, "ListRoutineCodeVersions", query.trim_start_matches('?'), b"", now);
    let found = expect(&send(query, headers, String::new()).await, StatusCode::OK);
    assert_eq!(names(&found["CodeVersions"], "CodeVersion"), [NEW]);

    // Refused: wrong secret, tampered body (with and without a matching content hash),
    // skewed date, unknown key.
    let before = generation(&gw);
    let mut refusals = Vec::new();
    let headers = acs3_sign((ALI_AK, "not-the-secret"), &host, action, "", tampered.as_bytes(), now);
    refusals.push(send("", headers, tampered.clone()).await);
    let headers = acs3_sign((ALI_AK, ALI_SK), &host, action, "", good.as_bytes(), now);
    refusals.push(send("", headers.clone(), tampered.clone()).await);
    let rehashed = with_header(&headers, "x-acs-content-sha256", &hex_sha256(tampered.as_bytes()));
    refusals.push(send("", rehashed, tampered.clone()).await);
    for skew in [time::Duration::minutes(-20), time::Duration::minutes(20)] {
        let headers = acs3_sign((ALI_AK, ALI_SK), &host, action, "", tampered.as_bytes(), now + skew);
        refusals.push(send("", headers, tampered.clone()).await);
    }
    let headers = acs3_sign(("LTAI5tUNKNOWNAccessKey", ALI_SK), &host, action, "", tampered.as_bytes(), now);
    refusals.push(send("", headers, tampered.clone()).await);
    let code = refusals[0].json()["Code"].as_str().unwrap_or_default().to_owned();
    let message = esa_error(&refusals[0], StatusCode::UNAUTHORIZED, &code);
    for refused in &refusals {
        assert_eq!(esa_error(refused, StatusCode::UNAUTHORIZED, &code), message, "a refusal says what was wrong");
    }
    assert_eq!(generation(&gw), before, "a refused request changed the routes");
    assert_eq!(split(&gw.client, "/edge-production", &[], 100).await, counts(&[(OLD, 60), (NEW, 40)]));
}

// === durability ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_exactly_what_was_acknowledged() {
    let (gw, up) = start(ROUTES, &["latest", "v1", "v2", "v3", "v4"]).await;
    let api = Api::of(&gw);
    let aliases = functions("hello", None, "/aliases");
    let code = json!({ "code_url": format!("http://{}", up["v4"]) });
    expect(&api.fg(Method::PUT, &functions("hello", None, "/code"), Some(code)).await, StatusCode::OK);
    let body = json!({ "version": "v4", "description": "fourth" });
    expect(&api.fg(Method::POST, &functions("hello", None, "/versions"), Some(body)).await, StatusCode::OK);
    let body = json!({ "name": "prod", "version": "v1", "additional_version_weights": { "v2": 20 } });
    expect(&api.fg(Method::POST, &aliases, Some(body)).await, StatusCode::OK);
    let body = json!({ "name": "canary", "version": "v3", "additional_version_strategy": { "v4": { "combine_type": "and",
        "rules": [ { "rule_type": "Header", "param": "x-canary", "op": "=", "value": "yes" } ] } } });
    expect(&api.fg(Method::POST, &aliases, Some(body)).await, StatusCode::OK);
    expect(&api.fg(Method::POST, &aliases, Some(json!({ "name": "gone", "version": "v1" }))).await, StatusCode::OK);
    assert_eq!(
        api.fg(Method::DELETE, &functions("hello", None, "/aliases/gone"), None).await.status,
        StatusCode::NO_CONTENT
    );
    expect(
        &api.fg(Method::POST, &triggers("hello", Some("!prod"), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    expect(
        &api.fg(Method::POST, &triggers("hello", Some("!canary"), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    expect(
        &api.fg(Method::POST, &triggers("hello", Some("v4"), ""), Some(apig(Some("direct"), Some("/direct-v4")))).await,
        StatusCode::CREATED,
    );
    let doomed = expect(
        &api.fg(Method::POST, &triggers("hello", Some("v1"), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    let doomed = triggers("hello", Some("v1"), &format!("/APIG/{}", doomed["trigger_id"].as_str().unwrap()));
    assert_eq!(api.fg(Method::DELETE, &doomed, None).await.status, StatusCode::NO_CONTENT);
    let staging = code_versions(&[("v2", 75), ("v3", 25)]);
    let params =
        [("CodeVersions", staging.as_str()), ("Env", "staging"), ("Name", "hello"), ("Strategy", "percentage")];
    expect(&api.esa("CreateRoutineCodeDeployment", &params).await, StatusCode::OK);
    assert_disk_matches_memory(&gw);

    let spec = memory(&gw);
    let shown = |api: Api| async move {
        let mut views = Vec::new();
        for path in
            [functions("hello", None, "/aliases"), functions("hello", None, "/versions"), triggers("hello", None, "")]
        {
            views.push(expect(&api.fg(Method::GET, &path, None).await, StatusCode::OK));
        }
        let mut routine = expect(&api.esa("GetRoutine", &[("Name", "hello")]).await, StatusCode::OK);
        routine["RequestId"] = Value::Null;
        views.push(routine);
        views
    };
    let views = shown(api).await;

    let gw = restart(gw, |config| config.admin.tokens = vec![Secret::new(TOKEN)]).await;
    let api = Api::of(&gw);
    assert_eq!(memory(&gw), spec, "the restarted gateway runs something else");
    assert_eq!(shown(api.clone()).await, views, "the API shows something else after the restart");
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await, counts(&[("v1", 80), ("v2", 20)]));
    assert_eq!(split(&gw.client, "/hello-canary", &[("x-canary", "yes")], 10).await, counts(&[("v4", 10)]));
    assert_eq!(split(&gw.client, "/hello-canary", &[], 10).await, counts(&[("v3", 10)]));
    assert_eq!(split(&gw.client, "/hello-staging", &[], 100).await, counts(&[("v2", 75), ("v3", 25)]));
    let direct = gw.client.get("/direct-v4").await;
    assert_eq!((served_by(&direct), direct.version()), ("v4".to_owned(), "v4".to_owned()));
    assert_eq!(gw.client.get("/hello-v1").await.status, StatusCode::NOT_FOUND);
    fg_error(
        &api.fg(Method::GET, &functions("hello", None, "/aliases/gone"), None).await,
        StatusCode::NOT_FOUND,
        "FSS.1053",
    );
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_changes_are_serialised_and_none_is_lost() {
    const TEMPLATE: &str = r#"
project_id: 0123456789abcdef0123456789abcdef
region: cn-north-4
functions:
  - name: hello
    upstream: "@latest@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
    aliases:
      - { name: a, version: v1 }
      - { name: b, version: v1 }
      - { name: c, version: v1 }
    triggers:
      - { target: c }
"#;
    let (gw, up) = start(TEMPLATE, &["latest", "v1", "v2"]).await;
    let api = Api::of(&gw);
    let alias_names = ["a", "b", "c"];
    let generation_before = generation(&gw);

    // Burst: 50 alias PUTs at once (a distinct weight each) and 5 publishers.
    let mut puts = Vec::new();
    for i in 0..50usize {
        let (api, alias, weight) = (api.clone(), alias_names[i % 3], i as i64 + 1);
        puts.push(tokio::spawn(async move {
            let body = json!({ "version": "v1", "additional_version_weights": { "v2": weight } });
            let answer = api.fg(Method::PUT, &functions("hello", None, &format!("/aliases/{alias}")), Some(body)).await;
            (alias, weight, answer)
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..5 {
        let (api, latest) = (api.clone(), up["latest"]);
        publishers.push(tokio::spawn(async move {
            let code = json!({ "code_url": format!("http://{latest}/p{p}") });
            let moved = api.fg(Method::PUT, &functions("hello", None, "/code"), Some(code)).await;
            let published = api
                .fg(Method::POST, &functions("hello", None, "/versions"), Some(json!({ "version": format!("p{p}") })))
                .await;
            (moved, published)
        }));
    }
    let mut successes = 0u64;
    let mut acknowledged: HashMap<&str, HashSet<i64>> = HashMap::new();
    for put in puts {
        let (alias, weight, answer) = put.await.unwrap();
        let body = expect(&answer, StatusCode::OK);
        assert_eq!(body["name"], alias, "{body}");
        acknowledged.entry(alias).or_default().insert(weight);
        successes += 1;
    }
    let mut published = Vec::new();
    for publisher in publishers {
        let (moved, version) = publisher.await.unwrap();
        expect(&moved, StatusCode::OK);
        successes += 1;
        if version.status == StatusCode::OK {
            published.push(version.json()["version"].as_str().unwrap().to_owned());
            successes += 1;
        } else {
            fg_error(&version, StatusCode::BAD_REQUEST, "FSS.1016");
        }
    }
    assert!(!published.is_empty(), "no publish went through");
    assert_eq!(generation(&gw), generation_before + successes, "a change was lost or applied twice");
    assert_disk_matches_memory(&gw);
    let spec = memory(&gw);
    let hello = &spec.functions[0];
    for alias in alias_names {
        let stored = hello.aliases.iter().find(|a| a.name == alias).unwrap().additional_version_weights["v2"];
        assert!(acknowledged[alias].contains(&stored), "alias {alias} holds {stored}, never acknowledged");
    }
    for version in &published {
        assert!(hello.versions.iter().any(|v| v.version == *version), "published {version} is missing");
    }

    // Chains: per alias, 10 PUTs one after the other, the three chains concurrently; the
    // last acknowledged value of each alias is what is stored and served.
    let generation_before = generation(&gw);
    let mut chains = Vec::new();
    for (k, alias) in alias_names.into_iter().enumerate() {
        let api = api.clone();
        chains.push(tokio::spawn(async move {
            let mut last = 0;
            for j in 0..10 {
                let weight = (k * 10 + j + 1) as i64;
                let body = json!({ "version": "v1", "additional_version_weights": { "v2": weight } });
                let answer =
                    api.fg(Method::PUT, &functions("hello", None, &format!("/aliases/{alias}")), Some(body)).await;
                assert_eq!(expect(&answer, StatusCode::OK)["additional_version_weights"]["v2"], weight);
                last = weight;
            }
            (alias, last)
        }));
    }
    let mut last = HashMap::new();
    for chain in chains {
        let (alias, weight) = chain.await.unwrap();
        last.insert(alias, weight);
    }
    assert_eq!(generation(&gw), generation_before + 30);
    assert_disk_matches_memory(&gw);
    let spec = memory(&gw);
    for alias in alias_names {
        let stored =
            spec.functions[0].aliases.iter().find(|a| a.name == alias).unwrap().additional_version_weights["v2"];
        assert_eq!(stored, last[alias], "alias {alias}");
    }
    assert_eq!(split(&gw.client, "/hello-c", &[], 100).await, counts(&[("v1", 70), ("v2", 30)]));

    // The watcher sees the gateway's own writes and must not reload them again.
    let settled = generation(&gw);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(generation(&gw), settled, "the watcher reloaded the gateway's own writes");
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_and_an_api_change_both_land() {
    let upstreams = backends(&["latest", "v1", "v2", "v3", "v4"]).await;
    let gw = Gateway::start_with(&render(WITH_PROD, &upstreams), |config| {
        config.admin.tokens = vec![Secret::new(TOKEN)];
        // Long enough that the API change comes before the watcher's reload.
        config.reload.debounce = Duration::from_millis(600);
    })
    .await;
    let api = Api::of(&gw);
    let edited = WITH_PROD.replace(
        "      - { version: v3, upstream: \"@v3@\" }\n",
        "      - { version: v3, upstream: \"@v3@\" }\n      - { version: v4, upstream: \"@v4@\", description: by hand }\n",
    );
    save_by_rename(&gw.routes_path, &render(&edited, &upstreams));

    // At once: an API change that needs the hand edit (v4 exists only there).
    let body = json!({ "version": "v1", "additional_version_weights": { "v4": 25 } });
    let answer = api.fg(Method::PUT, &functions("hello", None, "/aliases/prod"), Some(body)).await;
    expect(&answer, StatusCode::OK);
    assert_disk_matches_memory(&gw);
    let check = |gw: &Gateway| {
        let spec = memory(gw);
        let hello = &spec.functions[0];
        let v4 = hello.versions.iter().find(|v| v.version == "v4").expect("the hand-edited version is kept");
        assert_eq!(v4.description.as_deref(), Some("by hand"));
        assert_eq!(hello.aliases[0].additional_version_weights.get("v4"), Some(&25));
    };
    check(&gw);
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await, counts(&[("v1", 75), ("v4", 25)]));

    // The watcher's reload comes later and finds nothing new.
    let settled = generation(&gw);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(generation(&gw), settled);
    check(&gw);
    assert_disk_matches_memory(&gw);
}

/// Makes writes into a directory fail for as long as it lives, undone on drop (panics
/// included). `chattr +i` is the real thing (root ignores permissions, not the immutable
/// flag); where it is not permitted (a container without CAP_LINUX_IMMUTABLE), directories
/// squat on the temp-file names the gateway would create, so its `create_new` fails.
enum WriteBlock {
    Immutable(PathBuf),
    Decoys(Vec<PathBuf>),
}

impl WriteBlock {
    fn on(dir: &Path, file_name: &str) -> WriteBlock {
        let chattr = std::process::Command::new("chattr").arg("+i").arg(dir).output();
        if chattr.is_ok_and(|out| out.status.success()) {
            let block = WriteBlock::Immutable(dir.to_owned());
            let probe = dir.join("probe");
            if std::fs::File::create(&probe).is_err() {
                return block;
            }
            let _ = std::fs::remove_file(&probe);
        }
        eprintln!("chattr +i does not work on {}: falling back to decoy temp names", dir.display());
        let decoys: Vec<PathBuf> =
            (0..4096).map(|n| dir.join(format!(".{file_name}.{}.{n}.tmp", std::process::id()))).collect();
        for decoy in &decoys {
            std::fs::create_dir(decoy).unwrap();
        }
        WriteBlock::Decoys(decoys)
    }

    fn is_immutable(&self) -> bool {
        matches!(self, WriteBlock::Immutable(_))
    }
}

impl Drop for WriteBlock {
    fn drop(&mut self) {
        match self {
            WriteBlock::Immutable(dir) => {
                let _ = std::process::Command::new("chattr").arg("-i").arg(&*dir).status();
            }
            WriteBlock::Decoys(decoys) => {
                for decoy in decoys.iter() {
                    let _ = std::fs::remove_dir(decoy);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_a_500_and_memory_keeps_agreeing_with_disk() {
    let template = format!(
        "{WITH_PROD}  - name: edge\n    upstream: \"@latest@\"\n    versions:\n      - {{ version: \"{OLD}\", upstream: \"@v1@\" }}\n"
    );
    let (gw, _up) = start(&template, VERSION_BACKENDS).await;
    let api = Api::of(&gw);
    let prod = functions("hello", None, "/aliases/prod");
    let on_disk = std::fs::read_to_string(&gw.routes_path).unwrap();
    let spec = memory(&gw);
    let before = generation(&gw);

    let guard = WriteBlock::on(gw.dir.path(), "routes.yaml");
    let body = json!({ "version": "v1", "additional_version_weights": { "v2": 40 } });
    fg_error(&api.fg(Method::PUT, &prod, Some(body.clone())).await, StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500");
    let publish = api.fg(Method::POST, &functions("hello", None, "/versions"), Some(json!({ "version": "v9" }))).await;
    fg_error(&publish, StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500");
    let trigger = api.fg(Method::POST, &triggers("hello", Some("v2"), ""), Some(apig(None, None))).await;
    fg_error(&trigger, StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500");
    let versions = code_versions(&[(OLD, 100)]);
    let params =
        [("CodeVersions", versions.as_str()), ("Env", "production"), ("Name", "edge"), ("Strategy", "percentage")];
    esa_error(
        &api.esa("CreateRoutineCodeDeployment", &params).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
    );

    // Nothing changed: not the file, not memory, not the data plane.
    assert_eq!(std::fs::read_to_string(&gw.routes_path).unwrap(), on_disk);
    assert_eq!(memory(&gw), spec);
    assert_eq!(generation(&gw), before);
    assert_disk_matches_memory(&gw);
    assert_eq!(split(&gw.client, "/hello-prod", &[], 20).await, counts(&[("v1", 20)]));
    assert_eq!(gw.client.get("/hello-v2").await.status, StatusCode::NOT_FOUND);
    if guard.is_immutable() {
        let leftovers: Vec<_> = std::fs::read_dir(gw.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "temp files left behind: {leftovers:?}");
    }

    // Writable again: the same change goes through.
    drop(guard);
    expect(&api.fg(Method::PUT, &prod, Some(body)).await, StatusCode::OK);
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await, counts(&[("v1", 60), ("v2", 40)]));
    assert_disk_matches_memory(&gw);
}
