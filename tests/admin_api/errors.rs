//! Every refusal, in each vendor's error shape, and none of them changes anything.

use super::*;

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
    // Unqualified, the URN names the function: refused while aliases and triggers exist.
    let message =
        fg_error(&api.fg(Method::DELETE, &functions("hello", None, ""), None).await, StatusCode::FORBIDDEN, "FSS.1095");
    assert!(message.contains("alias") && message.contains("trigger"), "{message}");
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
async fn every_esa_error_has_requestid_code_and_message_and_alibabas_status() {
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
    // An action graygate does not have is Alibaba's 404, not a bad parameter.
    esa_error(&api.esa("DeleteEverything", &[("Name", "edge")]).await, StatusCode::NOT_FOUND, "InvalidAction.NotFound");

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
