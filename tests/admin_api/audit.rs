//! The audit trail with a routes file: every kind of change (FunctionGraph, ESA, graygate's
//! own API, a hand edit, `graygate routes push`) is recorded once, attributed to its actor,
//! with what it changed; refusals are recorded with their code; the trail survives a
//! restart through its file and never shows a secret.

use super::*;

const BIN: &str = env!("CARGO_BIN_EXE_graygate");

fn audit_file(config: &ServerConfig) -> PathBuf {
    match &config.source {
        graygate::config::SourceSettings::File(routes) => routes.with_file_name("audit.log"),
        other => panic!("a routes file is expected, not {other:?}"),
    }
}

async fn trail(api: &Api, query: &str) -> Vec<Value> {
    let answer = api.send(Method::GET, &format!("/graygate/v1/audit{query}"), &[("x-auth-token", TOKEN)], "").await;
    let body = expect(&answer, StatusCode::OK);
    assert_eq!(body["count"].as_u64().map(|n| n as usize), body["records"].as_array().map(Vec::len));
    body["records"].as_array().cloned().unwrap_or_default()
}

/// The trail once it holds `n` records (a reload records its change right after serving it).
async fn wait_for_records(api: &Api, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        let records = trail(api, "").await;
        if records.len() >= n {
            return records;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} of {n} records: {records:#?}", records.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn token_actor() -> String {
    format!("token:{}", &hex(&Sha256::digest(TOKEN.as_bytes()))[..12])
}

/// The operations of `records` (newest first) from the oldest.
fn operations(records: &[Value]) -> Vec<(String, String, String)> {
    records
        .iter()
        .rev()
        .map(|r| {
            let field = |name: &str| r[name].as_str().unwrap_or_default().to_owned();
            (field("operation"), field("actor"), field("result"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_change_is_recorded_once_with_its_actor_and_what_it_changed() {
    let upstreams = backends(VERSION_BACKENDS).await;
    let gw = Gateway::start_with(&render(WITH_PROD, &upstreams), |config| {
        config.admin.tokens = vec![Secret::new(TOKEN)];
        config.audit_log.path = Some(audit_file(config));
    })
    .await;
    let api = Api::of(&gw);

    // FunctionGraph: a weight, then a refused duplicate.
    let body = json!({ "version": "v1", "additional_version_weights": { "v2": 20 } });
    let updated = api.fg(Method::PUT, &functions("hello", None, "/aliases/prod"), Some(body)).await;
    expect(&updated, StatusCode::OK);
    let duplicate = json!({ "name": "prod", "version": "v1" });
    let duplicate = api.fg(Method::POST, &functions("hello", None, "/aliases"), Some(duplicate)).await;
    fg_error(&duplicate, StatusCode::CONFLICT, "FSS.1063");

    // ESA: a deployment to staging.
    let versions = code_versions(&[("v1", 70), ("v3", 30)]);
    let params =
        [("CodeVersions", versions.as_str()), ("Env", "staging"), ("Name", "hello"), ("Strategy", "percentage")];
    expect(&api.esa("CreateRoutineCodeDeployment", &params).await, StatusCode::OK);

    // graygate's own API: the whole state with one description changed, guarded by its ETag.
    let current = api.send(Method::GET, "/graygate/v1/routes", &[("x-auth-token", TOKEN)], "").await;
    let etag = current.headers.get("etag").unwrap().to_str().unwrap().to_owned();
    let mut state = expect(&current, StatusCode::OK);
    state["functions"][0]["versions"][0]["description"] = json!("described through graygate's API");
    let headers = [("x-auth-token", TOKEN), ("if-match", etag.as_str()), ("content-type", "application/json")];
    expect(&api.send(Method::PUT, "/graygate/v1/routes", &headers, &state.to_string()).await, StatusCode::OK);
    let stale = api.send(Method::PUT, "/graygate/v1/routes", &headers, &state.to_string()).await;
    fg_error(&stale, StatusCode::PRECONDITION_FAILED, "FSS.0412");

    // A hand edit of the file: v3 gets a description.
    let generation_before = generation(&gw);
    let mut edited = memory(&gw);
    edited.functions[0].versions[2].description = Some("edited by hand".into());
    save_by_rename(&gw.routes_path, &serde_norway::to_string(&edited).unwrap());
    gw.wait_for_generation(generation_before + 1).await;

    // `graygate routes push` of a file with the staging alias gone.
    let mut pushed = memory(&gw);
    pushed.functions[0].aliases.retain(|a| a.name != "staging");
    pushed.functions[0].triggers.retain(|t| t.target != "staging");
    let dir = gw.routes_path.parent().unwrap();
    std::fs::write(dir.join("pushed.json"), serde_json::to_string(&pushed).unwrap()).unwrap();
    std::fs::write(dir.join("graygate.yaml"), "routes: routes.yaml\n").unwrap();
    let generation_before = generation(&gw);
    let push = std::process::Command::new(BIN)
        .args(["routes", "push", "pushed.json", "--config", "graygate.yaml"])
        .current_dir(dir)
        .env("USER", "release-bot")
        .output()
        .unwrap();
    assert!(push.status.success(), "{}", String::from_utf8_lossy(&push.stderr));
    gw.wait_for_generation(generation_before + 1).await;

    let records = wait_for_records(&api, 7).await;
    let token = token_actor();
    let cli = records.first().map(|r| r["actor"].as_str().unwrap().to_owned()).unwrap_or_default();
    assert!(
        cli.starts_with("cli:release-bot@"),
        "{cli}: {records:#?}\n{}",
        std::fs::read_to_string(&gw.routes_path).unwrap()
    );
    assert_eq!(
        operations(&records),
        [
            ("functiongraph:UpdateVersionAlias", token.as_str(), "applied"),
            ("functiongraph:CreateVersionAlias", token.as_str(), "refused"),
            ("esa:CreateRoutineCodeDeployment", token.as_str(), "applied"),
            ("graygate:ReplaceRoutes", token.as_str(), "applied"),
            ("graygate:ReplaceRoutes", token.as_str(), "refused"),
            ("reload", "file", "applied"),
            ("routes push", cli.as_str(), "applied"),
        ]
        .map(|(o, a, r)| (o.to_owned(), a.to_owned(), r.to_owned())),
        "oldest first: {records:#?}"
    );
    let by_operation = |operation: &str, result: &str| {
        records.iter().find(|r| r["operation"] == operation && r["result"] == result).unwrap().clone()
    };

    let alias = by_operation("functiongraph:UpdateVersionAlias", "applied");
    assert_eq!((alias["function"].as_str(), alias["alias"].as_str()), (Some("hello"), Some("prod")));
    assert_eq!(alias["request_id"], updated.headers["x-request-id"].to_str().unwrap());
    assert_eq!(alias["replica"].as_str(), Some(gw.app.routes().replica_id()));
    let change = &alias["changes"][0];
    assert_eq!(change["before"]["aliases"][0]["additional_version_weights"], json!(null), "none before: {change}");
    assert_eq!(change["after"]["aliases"][0]["additional_version_weights"], json!({ "v2": 20 }));
    assert_eq!(change["after"]["aliases"].as_array().map(Vec::len), Some(1), "only prod: {change}");

    let refused = by_operation("functiongraph:CreateVersionAlias", "refused");
    assert!(refused["error"].as_str().unwrap().starts_with("409 FSS.1063"), "{refused}");
    assert_eq!(refused["changes"], json!([]));

    let deployment = by_operation("esa:CreateRoutineCodeDeployment", "applied");
    assert_eq!((deployment["function"].as_str(), deployment["alias"].as_str()), (Some("hello"), Some("staging")));
    assert_eq!(deployment["changes"][0]["before"]["aliases"], json!([]), "staging is new: {deployment}");

    let hand = by_operation("reload", "applied");
    assert_eq!(hand["changes"][0]["after"]["versions"][0]["version"], "v3", "{hand}");
    assert_eq!(hand["changes"][0]["after"]["versions"][0]["description"], "edited by hand", "{hand}");
    assert!(hand.get("request_id").is_none());

    let push = by_operation("routes push", "applied");
    assert_eq!(push["changes"][0]["before"]["aliases"][0]["name"], "staging", "{push}");

    // Filters: by alias, by function, by actor, newest first, limited.
    let staging = trail(&api, "?function=hello&alias=staging").await;
    assert_eq!(
        operations(&staging).iter().map(|o| o.0.as_str()).collect::<Vec<_>>(),
        ["esa:CreateRoutineCodeDeployment", "routes push"]
    );
    assert!(trail(&api, "?function=nothing").await.is_empty());
    assert_eq!(trail(&api, "?actor=file").await.len(), 1);
    let newest = trail(&api, "?limit=1").await;
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["operation"], "routes push");
    let bad = api.send(Method::GET, "/graygate/v1/audit?user=x", &[("x-auth-token", TOKEN)], "").await;
    fg_error(&bad, StatusCode::BAD_REQUEST, "GG.0400");
    let anonymous = api.send(Method::GET, "/graygate/v1/audit", &[], "").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // The file holds the same records, oldest first, and no secret.
    let file = std::fs::read_to_string(audit_file_of(&gw)).unwrap();
    let ids: Vec<String> =
        file.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned()).collect();
    let newest_first: Vec<String> = records.iter().rev().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, newest_first);
    assert!(!file.contains(TOKEN), "the token itself is never written");

    // A restart reads the trail back from the file.
    let gw = restart(gw, |config| {
        config.admin.tokens = vec![Secret::new(TOKEN)];
        config.audit_log.path = Some(audit_file(config));
    })
    .await;
    assert_eq!(trail(&Api::of(&gw), "").await, records);
}

fn audit_file_of(gw: &Gateway) -> PathBuf {
    gw.routes_path.with_file_name("audit.log")
}
