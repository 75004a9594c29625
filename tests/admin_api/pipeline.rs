//! What a release pipeline calls around a release: disabling, enabling and moving
//! triggers, deleting all of a function's triggers, a trigger's `invoke_url`, and a
//! synchronous `invoke_function` through the data plane's routing.

use super::*;

const WITH_RULES: &str = r#"
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
      - name: prod
        version: v1
        additional_version_strategy:
          v2: { rules: [{ param: x-canary, op: "=", value: "yes" }] }
    triggers:
      - { target: prod }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_trigger_keeps_its_path_and_routes_nothing_until_enabled() {
    let (gw, _up) = start(WITH_RULES, VERSION_BACKENDS).await;
    let api = Api::of(&gw);
    let mut body = apig(None, Some("/shop"));
    body["trigger_status"] = "DISABLED".into();
    let created =
        expect(&api.fg(Method::POST, &triggers("hello", Some("v3"), ""), Some(body)).await, StatusCode::CREATED);
    assert_eq!(created["trigger_status"], "DISABLED");
    let off = gw.client.get("/shop").await;
    assert_eq!(off.status, StatusCode::NOT_FOUND, "{}", off.text());
    assert_eq!(off.json()["error_code"], "APIG.0101");

    let id = created["trigger_id"].as_str().expect("trigger_id").to_owned();
    let one = triggers("hello", Some("v3"), &format!("/APIG/{id}"));
    let on = expect(&api.fg(Method::PUT, &one, Some(json!({ "trigger_status": "ACTIVE" }))).await, StatusCode::OK);
    assert_eq!(on["trigger_status"], "ACTIVE");
    assert_eq!(served_by(&gw.client.get("/shop").await), "v3", "served as the update returns");

    let moved = json!({ "event_data": { "path": "/shop2" } });
    expect(&api.fg(Method::PUT, &one, Some(moved)).await, StatusCode::OK);
    assert_eq!(gw.client.get("/shop").await.status, StatusCode::NOT_FOUND);
    assert_eq!(served_by(&gw.client.get("/shop2").await), "v3");
    let onto_prod = json!({ "event_data": { "path": "/hello-prod" } });
    fg_error(&api.fg(Method::PUT, &one, Some(onto_prod)).await, StatusCode::CONFLICT, "FSS.1147");
    let bad = json!({ "trigger_status": "PAUSED" });
    fg_error(&api.fg(Method::PUT, &one, Some(bad)).await, StatusCode::BAD_REQUEST, "FSS.1107");
    let ghost = triggers("hello", Some("v3"), "/APIG/no-such-trigger");
    let off = json!({ "trigger_status": "DISABLED" });
    fg_error(&api.fg(Method::PUT, &ghost, Some(off.clone())).await, StatusCode::NOT_FOUND, "FSS.0404");

    expect(&api.fg(Method::PUT, &one, Some(off)).await, StatusCode::OK);
    assert_eq!(gw.client.get("/shop2").await.status, StatusCode::NOT_FOUND);
    let listed = expect(&api.fg(Method::GET, &triggers("hello", Some("v3"), ""), None).await, StatusCode::OK);
    assert_eq!(listed[0]["trigger_status"], "DISABLED", "{listed}");
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_carry_an_invoke_url_and_a_batch_delete_removes_them_all() {
    let (gw, _up) = start(WITH_RULES, VERSION_BACKENDS).await;
    let api = Api::of(&gw);
    let created = expect(
        &api.fg(Method::POST, &triggers("hello", Some("v2"), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    let url = created["event_data"]["invoke_url"].as_str().expect("invoke_url").to_owned();
    assert_eq!(url, format!("http://{}/hello-v2", gw.app.data_addr()));
    let answer = gw.client.send_to(&url, Method::GET, &[], Bytes::new()).await;
    assert_eq!(served_by(&answer), "v2");

    let deleted = api.fg(Method::DELETE, &triggers("hello", None, ""), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    for path in ["/hello-v2", "/hello-prod"] {
        assert_eq!(gw.client.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let none = expect(&api.fg(Method::GET, &triggers("hello", None, ""), None).await, StatusCode::OK);
    assert_eq!(none, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_function_calls_the_qualified_version_or_alias_through_the_routing() {
    let (gw, _up) = start(WITH_RULES, VERSION_BACKENDS).await;
    let api = Api::of(&gw);
    let invoke = |qualifier: Option<&'static str>, headers: Vec<(&'static str, &'static str)>| {
        let api = api.clone();
        async move {
            let path = functions("hello", qualifier, "/invocations");
            let mut all = vec![("x-auth-token", TOKEN), ("content-type", "application/json")];
            all.extend(headers);
            api.send(Method::POST, &path, &all, r#"{"k":"v"}"#).await
        }
    };
    let answer = invoke(Some("v3"), vec![]).await;
    let body = expect(&answer, StatusCode::OK);
    assert_eq!(body["status"], 200);
    let result: Value = serde_json::from_str(body["result"].as_str().expect("result")).expect("the backend's JSON");
    assert_eq!((result["version"].as_str(), result["method"].as_str()), (Some("v3"), Some("POST")));
    assert_eq!(result["body_bytes"], 9, "the invocation's body reaches the upstream");
    assert!(!body["request_id"].as_str().unwrap_or_default().is_empty());

    // An alias chooses as for a trigger's request: its header rule sends x-canary to v2.
    let plain = invoke(Some("!prod"), vec![]).await;
    assert_eq!(plain.headers.get("x-graygate-version").map(|v| v.to_str().unwrap_or("")), Some("v1"));
    let canary = invoke(Some("!prod"), vec![("x-canary", "yes")]).await;
    assert_eq!(canary.headers.get("x-graygate-version").map(|v| v.to_str().unwrap_or("")), Some("v2"));
    let latest = invoke(None, vec![]).await;
    assert_eq!(latest.headers.get("x-graygate-version").map(|v| v.to_str().unwrap_or("")), Some("latest"));

    fg_error(&invoke(Some("v9"), vec![]).await, StatusCode::NOT_FOUND, "FSS.1052");
    fg_error(&invoke(Some("!nope"), vec![]).await, StatusCode::NOT_FOUND, "FSS.1053");
}
