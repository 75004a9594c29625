//! The fleet's audit trail lives in etcd beside the routes: a change through any replica,
//! a `routes push` and a hand edit with etcdctl each appear once, on every replica, with
//! the replica that made it; the trail is bounded by its retention.

use std::time::Instant;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Fleet;
use crate::cluster::{Options, Replica, functions, push};
use crate::support::PATIENCE;

/// The trail as `replica` shows it once it holds `n` records, oldest first.
async fn trail(replica: &Replica, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = replica.admin_get("/graygate/v1/audit?limit=1000").await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let body = answer.json();
        assert_eq!(body["mode"], "etcd");
        let mut records = body["records"].as_array().cloned().unwrap_or_default();
        if records.len() >= n {
            records.reverse();
            return records;
        }
        assert!(Instant::now() < deadline, "{} shows {} of {n} records: {body:#}", replica.name, records.len());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn field(record: &Value, name: &str) -> String {
    record[name].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_shows_the_fleets_history_with_each_change_once() {
    let fleet = Fleet::start(&["a", "b", "c"]).await;
    let [a, b, c] = &fleet.replicas[..] else { unreachable!() };

    let body = json!({ "version": "v1", "additional_version_weights": { "v2": 20 } });
    let updated = a.fg(Method::PUT, &functions("hello", "latest", "/aliases/prod"), Some(body), &[]).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
    let versions = json!([{ "CodeVersion": "v1", "Percentage": 70 }, { "CodeVersion": "v3", "Percentage": 30 }]);
    let versions = versions.to_string();
    let params = [("Name", "hello"), ("Env", "staging"), ("Strategy", "percentage"), ("CodeVersions", &versions)];
    let deployed = b.esa("CreateRoutineCodeDeployment", &params).await;
    assert_eq!(deployed.status, StatusCode::OK, "{}", deployed.text());
    let duplicate = json!({ "name": "prod", "version": "v1" });
    let refused = c.fg(Method::POST, &functions("hello", "latest", "/aliases"), Some(duplicate), &[]).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());

    // By hand: `other` gets a description straight in etcd.
    let key = format!("/fleet-test/routes/set/{}/fn/other", fleet.etcd.current_set("/fleet-test"));
    let mut other: Value =
        serde_json::from_str(fleet.etcd.etcdctl(&["get", &key, "--print-value-only"]).trim()).unwrap();
    other["description"] = json!("edited with etcdctl");
    let put = fleet.etcd.etcdctl(&["put", &key, &other.to_string(), "-w", "json"]);
    let hand_revision = serde_json::from_str::<Value>(&put).unwrap()["header"]["revision"].as_u64().unwrap();
    fleet.converge(hand_revision).await;

    // A push of a state without `other`.
    let pulled = crate::cluster::cli(&["routes", "pull", "--config", fleet.config().to_str().unwrap()]).1;
    let mut state: graygate::routes::RoutesFile = serde_norway::from_str(&pulled).unwrap();
    state.functions.retain(|f| f.name != "other");
    let pushed = push(&fleet.config(), fleet.dir.path(), &serde_norway::to_string(&state).unwrap());
    fleet.converge(pushed).await;

    let expected = [
        ("routes push", "cli", "applied"),
        ("functiongraph:UpdateVersionAlias", "a", "applied"),
        ("esa:CreateRoutineCodeDeployment", "b", "applied"),
        ("functiongraph:CreateVersionAlias", "c", "refused"),
        ("etcd put", "", "applied"),
        ("routes push", "cli", "applied"),
    ];
    let on_a = trail(a, expected.len()).await;
    for replica in [a, b, c] {
        let records = trail(replica, expected.len()).await;
        let seen: Vec<(String, String, String)> = records
            .iter()
            .map(|r| {
                let by = if field(r, "operation") == "etcd put" { String::new() } else { field(r, "replica") };
                (field(r, "operation"), by, field(r, "result"))
            })
            .collect();
        let wanted: Vec<(String, String, String)> =
            expected.iter().map(|(o, r, s)| ((*o).to_owned(), (*r).to_owned(), (*s).to_owned())).collect();
        assert_eq!(seen, wanted, "{}: {records:#?}", replica.name);
        assert_eq!(records, on_a, "{} shows the same trail as a", replica.name);
    }

    let by = |operation: &str| on_a.iter().find(|r| r["operation"] == operation).unwrap();
    let alias = by("functiongraph:UpdateVersionAlias");
    assert!(field(alias, "actor").starts_with("token:"));
    assert_eq!(alias["request_id"].as_str(), updated.headers["x-request-id"].to_str().ok());
    assert_eq!(alias["changes"][0]["after"]["aliases"][0]["additional_version_weights"], json!({ "v2": 20 }));
    let hand = by("etcd put");
    assert_eq!((field(hand, "actor").as_str(), hand["revision"].as_u64()), ("etcd", Some(hand_revision)));
    assert_eq!(hand["changes"][0]["after"]["description"], "edited with etcdctl", "{hand}");
    assert!(field(&on_a[5], "actor").starts_with("cli:"));
    assert_eq!(on_a[5]["changes"][0]["function"], "other", "the push removed other");
    assert!(on_a[5]["changes"][0]["after"].is_null());
}

fn audit_keys(fleet: &Fleet) -> usize {
    let keys = fleet.etcd.etcdctl(&["get", "--prefix", "/fleet-test/audit/", "--keys-only"]);
    keys.lines().filter(|l| !l.trim().is_empty()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_in_etcd_keeps_only_its_retention_and_always_the_state_in_force() {
    let fleet = Fleet::start(&[]).await;
    let endpoints = [fleet.etcd.endpoint()];
    let options = Options { server_extra: "audit_log: { retain: 5 }\n", ..Options::plain(&endpoints) };
    let a = Replica::start("a", fleet.dir.path(), &options).await;
    let b = Replica::start("b", fleet.dir.path(), &options).await;
    let alias = functions("hello", "latest", "/aliases/prod");
    for weight in 1..=12 {
        let body = json!({ "version": "v1", "additional_version_weights": { "v2": weight } });
        assert_eq!(a.fg(Method::PUT, &alias, Some(body), &[]).await.status, StatusCode::OK);
    }
    assert_eq!(audit_keys(&fleet), 5, "the oldest records were pruned with each commit");
    let records = trail(&b, 5).await;
    let weights: Vec<Value> = records
        .iter()
        .map(|r| r["changes"][0]["after"]["aliases"][0]["additional_version_weights"]["v2"].clone())
        .collect();
    assert_eq!(weights, [json!(8), json!(9), json!(10), json!(11), json!(12)], "the newest five");

    // Refusals fill the trail; the record of the state in force stays.
    let served = a.revision().await;
    for _ in 0..8 {
        let duplicate = json!({ "name": "prod", "version": "v1" });
        let refused = a.fg(Method::POST, &functions("hello", "latest", "/aliases"), Some(duplicate), &[]).await;
        assert_eq!(refused.status, StatusCode::CONFLICT);
    }
    assert_eq!(audit_keys(&fleet), 5);
    let records = trail(&b, 5).await;
    assert!(records.iter().any(|r| r["revision"].as_u64() == Some(served)), "{records:#?}");
    assert_eq!(records.iter().filter(|r| r["result"] == "refused").count(), 4);

    // Pushes prune too.
    let pulled = crate::cluster::cli(&["routes", "pull", "--config", fleet.config().to_str().unwrap()]).1;
    let mut state: graygate::routes::RoutesFile = serde_norway::from_str(&pulled).unwrap();
    for description in ["one", "two", "three"] {
        state.functions[0].description = Some(description.into());
        let config = fleet.dir.path().join("retain.yaml");
        let text = std::fs::read_to_string(fleet.config()).unwrap() + "audit_log: { retain: 5 }\n";
        std::fs::write(&config, text).unwrap();
        push(&config, fleet.dir.path(), &serde_norway::to_string(&state).unwrap());
    }
    assert_eq!(audit_keys(&fleet), 5, "a push prunes as a commit does");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_that_cannot_be_read_is_recorded_once_and_a_replace_too_large_for_etcd_is_413() {
    let fleet = Fleet::start(&["a", "b"]).await;
    let [a, b] = &fleet.replicas[..] else { unreachable!() };
    let key = format!("/fleet-test/routes/set/{}/fn/other", fleet.etcd.current_set("/fleet-test"));
    fleet.etcd.etcdctl(&["put", &key, "{\"name\": \"other\", "]);
    let records = trail(b, 2).await;
    let hand: Vec<&Value> = records.iter().filter(|r| r["operation"] == "etcd put").collect();
    assert_eq!(hand.len(), 1, "{records:#?}");
    assert_eq!((field(hand[0], "actor").as_str(), field(hand[0], "result").as_str()), ("etcd", "rejected"));
    assert!(field(hand[0], "error").contains(&key), "{}", hand[0]);

    // A replace of 200 functions does not fit one transaction: refused whole, clearly.
    let mut state = a.admin_get("/graygate/v1/routes").await.unwrap().json();
    let template = state["functions"][0].clone();
    state["functions"] = Value::Array(
        (0..200)
            .map(|i| {
                let mut function = template.clone();
                function["name"] = json!(format!("bulk{i}"));
                function["aliases"] = json!([]);
                function["triggers"] = json!([]);
                function
            })
            .collect(),
    );
    let body = Some(state);
    let replaced = a.fg(Method::PUT, "/graygate/v1/routes", body, &[]).await;
    assert_eq!(replaced.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", replaced.text());
    assert!(replaced.text().contains("GG.0413") && replaced.text().contains("routes push"), "{}", replaced.text());
    assert_eq!(a.client.get("/hello-prod").await.status, StatusCode::OK, "nothing changed");
}
