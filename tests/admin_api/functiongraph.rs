//! FunctionGraph versions, code, aliases and APIG triggers: each change is live when its response returns.

use super::*;

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

    // A digest that is not latest's code is refused: the caller meant other code.
    let latest_digest = hex(&Sha256::digest(format!("http://{}", up["first"]).as_bytes()));
    let wrong = json!({ "digest": hex(&Sha256::digest(b"other code")) });
    let message = fg_error(&api.fg(Method::POST, &versions, Some(wrong)).await, StatusCode::BAD_REQUEST, "FSS.1017");
    assert!(message.contains(&latest_digest), "the refusal names latest's digest: {message}");

    // No name given: yyyymmdd-HHMMSS (UTC), published from latest's current upstream.
    let body = json!({ "digest": latest_digest, "description": "from first" });
    let published = expect(&api.fg(Method::POST, &versions, Some(body)).await, StatusCode::OK);
    assert_eq!(published["digest"], latest_digest.as_str());
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
