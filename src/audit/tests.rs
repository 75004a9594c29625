use super::*;
use crate::routes::RoutesFile;

fn routes(yaml: &str) -> RoutesFile {
    serde_norway::from_str(yaml).unwrap()
}

const BEFORE: &str = r#"
project_id: p
functions:
  - name: hello
    upstream: "http://127.0.0.1:1"
    versions: [{ version: v1, upstream: "http://127.0.0.1:1" }, { version: v2, upstream: "http://127.0.0.1:2" }]
    aliases:
      - { name: prod, version: v1, additional_version_weights: { v2: 10 } }
      - { name: beta, version: v1 }
    triggers: [{ target: prod }]
  - name: other
    upstream: "http://127.0.0.1:3"
"#;

#[test]
fn a_record_keeps_only_the_changed_part_and_names_its_subject() {
    let before = routes(BEFORE);
    let after = routes(&BEFORE.replace("v2: 10", "v2: 50"));
    let mut who = Attribution::new("token:abc", "functiongraph:UpdateVersionAlias");
    who.request_id = Some("rid".into());
    let record = who.record("replica-a", Outcome::Applied, &before, &after);
    assert_eq!((record.function.as_deref(), record.alias.as_deref()), (Some("hello"), Some("prod")));
    assert_eq!(record.changes.len(), 1, "only hello changed: {:?}", record.changes);
    let change = &record.changes[0];
    assert_eq!(change.before["aliases"][0]["additional_version_weights"]["v2"], 10);
    assert_eq!(change.after["aliases"][0]["additional_version_weights"]["v2"], 50);
    assert_eq!(change.after["aliases"].as_array().map(Vec::len), Some(1), "beta did not change");
    assert!(change.after.get("versions").is_none() && change.after.get("upstream").is_none());
    assert!(record.summary.contains("hello/prod"), "{}", record.summary);
    assert!(!record.truncated);
    let text = serde_json::to_string(&record).unwrap();
    assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record, "stored and read back unchanged");
}

#[test]
fn new_and_removed_functions_are_whole_on_one_side() {
    let before = routes(BEFORE);
    let mut after = before.clone();
    after.functions.retain(|f| f.name != "other");
    let record = Attribution::file().record("r", Outcome::Applied, &before, &after);
    assert_eq!(record.function.as_deref(), Some("other"));
    assert!(record.changes[0].after.is_null());
    assert_eq!(record.changes[0].before["upstream"], "http://127.0.0.1:3");
    let back = Attribution::file().record("r", Outcome::Applied, &after, &before);
    assert!(back.changes[0].before.is_null());
}

#[test]
fn a_huge_change_keeps_names_only() {
    let before = routes("project_id: p\nfunctions: []\n");
    let mut after = before.clone();
    let function = routes(BEFORE).functions.remove(0);
    for i in 0..500 {
        let mut f = function.clone();
        f.name = format!("fn{i:03}");
        after.functions.push(f);
    }
    let record = Attribution::cli("routes push").record("cli", Outcome::Applied, &before, &after);
    assert!(record.truncated);
    assert_eq!(record.changes.len(), 100);
    assert!(record.changes.iter().all(|c| c.before.is_null() && c.after.is_null()));
    assert!(serde_json::to_vec(&record).unwrap().len() < 64 * 1024, "fits an etcd value easily");
    assert!(record.actor.starts_with("cli:"));
}

#[test]
fn filters_match_the_subject_or_any_changed_part() {
    let before = routes(BEFORE);
    let after = routes(
        &BEFORE.replace("v2: 10", "v2: 20").replace("{ name: beta, version: v1 }", "{ name: beta, version: v2 }"),
    );
    let record = Attribution::file().record("r", Outcome::Applied, &before, &after);
    assert_eq!(record.alias, None, "two aliases changed");
    let filter = |function: Option<&str>, alias: Option<&str>| Filter {
        function: function.map(Into::into),
        alias: alias.map(Into::into),
        actor: None,
        limit: 10,
    };
    assert!(record.matches(&filter(Some("hello"), Some("beta"))));
    assert!(record.matches(&filter(None, Some("prod"))));
    assert!(!record.matches(&filter(Some("other"), None)));
    assert!(!record.matches(&filter(None, Some("canary"))));
    assert!(!record.matches(&Filter { actor: Some("token:x".into()), ..filter(None, None) }));
}

#[test]
fn a_token_is_named_by_a_fingerprint_never_by_itself() {
    let actor = Attribution::token_actor(b"s3cret-admin-token");
    assert!(actor.starts_with("token:") && actor.len() == "token:".len() + 12, "{actor}");
    assert!(!actor.contains("s3cret"));
    assert_eq!(actor, Attribution::token_actor(b"s3cret-admin-token"), "stable");
    assert_ne!(actor, Attribution::token_actor(b"another"));
}

#[test]
fn the_trail_keeps_its_newest_records_and_reads_them_back_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let settings = AuditSettings { path: Some(dir.path().join("audit.log")), retain: 3 };
    let trail = Trail::open(&settings).unwrap();
    let before = routes(BEFORE);
    for weight in [20, 30, 40, 50] {
        let after = routes(&BEFORE.replace("v2: 10", &format!("v2: {weight}")));
        let record = Attribution::new("ak:AK1", "esa:CreateRoutineCodeDeployment").record(
            "r",
            Outcome::Applied,
            &before,
            &after,
        );
        trail.write(&record);
        trail.remember(record);
    }
    let all = Filter { limit: 10, ..Filter::default() };
    let kept = trail.query(&all);
    assert_eq!(kept.len(), 3, "retain bounds what is kept");
    assert_eq!(kept[0].changes[0].after["aliases"][0]["additional_version_weights"]["v2"], 50, "newest first");
    let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(text.lines().count(), 4, "the file keeps everything");
    let reopened = Trail::open(&settings).unwrap();
    assert_eq!(reopened.query(&all), kept, "read back at start");
}
