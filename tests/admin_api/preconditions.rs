//! Optimistic concurrency: an alias, a version list and a trigger carry an `ETag`; a PUT or
//! DELETE whose `If-Match` no longer matches answers 412 `FSS.0412` and changes nothing.
//! (`tests/fleet` checks the same across replicas of an etcd fleet.)

use super::*;

impl Api {
    /// A FunctionGraph call with `If-Match`.
    async fn fg_if(&self, method: Method, path: &str, etag: &str, body: Option<Value>) -> Answer {
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("x-auth-token", TOKEN), ("content-type", "application/json"), ("if-match", etag)];
        self.send(method, path, &headers, &text).await
    }
}

fn etag(answer: &Answer) -> String {
    let tag = answer.headers.get("etag").unwrap_or_else(|| panic!("no ETag: {:?}", answer.headers));
    let tag = tag.to_str().unwrap().to_owned();
    assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() > 2, "a strong tag: {tag}");
    tag
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_if_match_on_an_alias_is_412_and_changes_nothing() {
    let (gw, _) = start(WITH_PROD, VERSION_BACKENDS).await;
    let api = Api::of(&gw);
    let alias = functions("hello", Some("latest"), "/aliases/prod");
    let read = api.fg(Method::GET, &alias, None).await;
    expect(&read, StatusCode::OK);
    let first = etag(&read);

    // A writer that read the alias: its If-Match holds, and the answer carries the new tag.
    let split = json!({ "version": "v1", "additional_version_weights": { "v2": 20 } });
    let written = api.fg_if(Method::PUT, &alias, &first, Some(split)).await;
    expect(&written, StatusCode::OK);
    let second = etag(&written);
    assert_ne!(first, second);
    assert_eq!(etag(&api.fg(Method::GET, &alias, None).await), second, "GET shows the tag the PUT returned");

    // A second writer still holding the first read loses, and nothing changes.
    let before = (generation(&gw), memory(&gw));
    let stale = json!({ "version": "v1", "additional_version_weights": { "v3": 50 } });
    let message = fg_error(
        &api.fg_if(Method::PUT, &alias, &first, Some(stale)).await,
        StatusCode::PRECONDITION_FAILED,
        "FSS.0412",
    );
    assert!(message.contains(&second), "the message names the current tag: {message}");
    fg_error(&api.fg_if(Method::DELETE, &alias, &first, None).await, StatusCode::PRECONDITION_FAILED, "FSS.0412");
    let weak = format!("W/{second}");
    let refused = api.fg_if(Method::PUT, &alias, &weak, Some(json!({ "version": "v1" }))).await;
    fg_error(&refused, StatusCode::PRECONDITION_FAILED, "FSS.0412");
    assert_eq!((generation(&gw), memory(&gw)), before, "a refused precondition changed the routes");
    assert_disk_matches_memory(&gw);

    // `*` matches an alias that exists; no If-Match is last-writer-wins, as in FunctionGraph.
    expect(&api.fg_if(Method::PUT, &alias, "*", Some(json!({ "version": "v2" }))).await, StatusCode::OK);
    expect(&api.fg(Method::PUT, &alias, Some(json!({ "version": "v3" }))).await, StatusCode::OK);
    assert_eq!(served_by(&gw.client.get("/hello-prod").await), "v3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_lists_and_triggers_are_guarded_too() {
    let (gw, upstreams) = start(WITH_PROD, VERSION_BACKENDS).await;
    let api = Api::of(&gw);
    let versions = functions("hello", Some("latest"), "/versions");
    let listed = api.fg(Method::GET, &versions, None).await;
    expect(&listed, StatusCode::OK);
    let list_tag = etag(&listed);

    // latest moves: the version list (which shows what latest runs) has a new tag.
    let code = functions("hello", Some("latest"), "/code");
    let moved = json!({ "code_url": format!("http://{}", upstreams["v2"]) });
    let answer = api.fg_if(Method::PUT, &code, &list_tag, Some(moved.clone())).await;
    expect(&answer, StatusCode::OK);
    assert_ne!(etag(&answer), list_tag);
    let before = (generation(&gw), memory(&gw));
    fg_error(&api.fg_if(Method::PUT, &code, &list_tag, Some(moved)).await, StatusCode::PRECONDITION_FAILED, "FSS.0412");
    let v3 = functions("hello", Some("v3"), "");
    fg_error(&api.fg_if(Method::DELETE, &v3, &list_tag, None).await, StatusCode::PRECONDITION_FAILED, "FSS.0412");
    assert_eq!((generation(&gw), memory(&gw)), before);
    let fresh = etag(&api.fg(Method::GET, &versions, None).await);
    expect(&api.fg_if(Method::DELETE, &v3, &fresh, None).await, StatusCode::NO_CONTENT);

    // A trigger: read it, let someone change the function's triggers, delete with the tag.
    let list = expect(&api.fg(Method::GET, &triggers("hello", None, ""), None).await, StatusCode::OK);
    let id = list[0]["trigger_id"].as_str().unwrap().to_owned();
    let one = triggers("hello", None, &format!("/APIG/{id}"));
    let trigger_tag = etag(&api.fg(Method::GET, &one, None).await);
    fg_error(
        &api.fg_if(Method::DELETE, &one, "\"0000000000000000\"", None).await,
        StatusCode::PRECONDITION_FAILED,
        "FSS.0412",
    );
    assert_eq!(served_by(&gw.client.get("/hello-prod").await), "v1", "the refused delete left the trigger serving");
    expect(&api.fg_if(Method::DELETE, &one, &trigger_tag, None).await, StatusCode::NO_CONTENT);
    assert_eq!(gw.client.get("/hello-prod").await.status, StatusCode::NOT_FOUND);
    assert_disk_matches_memory(&gw);
}
