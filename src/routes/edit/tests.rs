//! The edit layer's rules, on an in-memory model: each refusal leaves the model unchanged.

use super::*;
use crate::routes::{TriggerSpec, ValidRoutes};

fn model() -> RoutesFile {
    let yaml = r#"
project_id: p
functions:
  - name: hello
    upstream: "http://127.0.0.1:9000"
    versions:
      - { version: v1, upstream: "http://127.0.0.1:9001" }
      - { version: v2, upstream: "http://127.0.0.1:9002" }
    aliases:
      - { name: prod, version: v1, additional_version_strategy: { v2: { rules: [{ param: x-canary, op: "=", value: "yes" }] } } }
    triggers:
      - { target: v1, path: /hello }
  - name: other
    upstream: "http://127.0.0.1:9100"
"#;
    match ValidRoutes::parse(yaml, "t.yaml") {
        Ok(valid) => valid.spec().clone(),
        Err(e) => unreachable!("{e}"),
    }
}

fn hello(spec: &mut RoutesFile) -> &mut FunctionSpec {
    match function_mut(spec, None, "hello") {
        Ok(f) => f,
        Err(e) => unreachable!("{e}"),
    }
}

fn trigger_to(target: &str, path: &str) -> TriggerSpec {
    TriggerSpec {
        name: None,
        path: Some(path.to_owned()),
        target: target.to_owned(),
        req_method: None,
        trigger_id: None,
        created_time: None,
        trigger_status: TriggerStatus::Active,
    }
}

#[test]
fn a_version_in_use_cannot_be_deleted_and_an_unused_one_can() {
    let mut spec = model();
    let before = spec.clone();
    let refused = delete_version(hello(&mut spec), "v1");
    assert!(matches!(refused, Err(EditError::VersionInUse { .. })), "{refused:?}");
    assert_eq!(spec, before, "a refused edit changes nothing");
    hello(&mut spec).aliases.clear();
    hello(&mut spec).triggers.clear();
    assert!(delete_version(hello(&mut spec), "v2").is_ok());
    assert_eq!(delete_version(hello(&mut spec), "latest"), Err(EditError::LatestIsPermanent));
}

#[test]
fn publishing_checks_the_digest_of_latests_code() {
    let mut spec = model();
    let right = code_digest("http://127.0.0.1:9000");
    assert_eq!(right.len(), 64);
    let wrong = code_digest("http://127.0.0.1:9001");
    let refused = publish_version(hello(&mut spec), "v3".into(), None, Some(&wrong), "now".into());
    assert!(matches!(refused, Err(EditError::DigestMismatch { .. })), "{refused:?}");
    let published = publish_version(hello(&mut spec), "v3".into(), None, Some(&right), "now".into());
    assert_eq!(published.map(|v| v.upstream.clone()), Ok("http://127.0.0.1:9000".to_owned()));
    let again = publish_version(hello(&mut spec), "v4".into(), None, None, "now".into());
    assert_eq!(again.map(drop), Err(EditError::LatestUnchanged("v3".into())));
}

#[test]
fn a_split_is_checked_against_the_versions_that_exist() {
    let spec = model();
    let function = &spec.functions[0];
    let split = |version: &str, weights: &[(&str, i64)]| Split {
        version: version.into(),
        weights: weights.iter().map(|(v, w)| ((*v).to_owned(), *w)).collect(),
        strategy: IndexMap::new(),
    };
    assert_eq!(check_split(function, &split("v9", &[])), Err(EditError::VersionNotFound("v9".into())));
    assert_eq!(check_split(function, &split("v1", &[("v1", 10)])), Err(EditError::AdditionalIsOwn("v1".into())));
    assert_eq!(
        check_split(function, &split("v1", &[("latest", 10)])),
        Err(EditError::InvalidAdditional("latest".into()))
    );
    assert_eq!(
        check_split(function, &split("v1", &[("v2", 0)])),
        Err(EditError::Weight { version: "v2".into(), weight: 0 })
    );
    assert_eq!(check_split(function, &split("v1", &[("v2", 10)])), Ok(()));
}

#[test]
fn a_percentage_deployment_never_drops_header_rules() {
    let mut spec = model();
    let before = spec.clone();
    let split = Split { version: "v2".into(), weights: IndexMap::new(), strategy: IndexMap::new() };
    let refused = deploy_percentages(hello(&mut spec), "prod", split.clone(), "1".into(), "now".into());
    assert!(matches!(refused, Err(EditError::RulesWouldBeDropped { .. })), "{refused:?}");
    assert_eq!(spec, before);
    let created = deploy_percentages(hello(&mut spec), "staging", split, "2".into(), "now".into());
    assert_eq!(created.map(|a| (a.version.clone(), a.deployment_id.clone())), Ok(("v2".into(), Some("2".into()))));
}

#[test]
fn one_path_has_one_trigger_and_an_alias_takes_over_its_versions_path() {
    let mut spec = model();
    let taken = add_trigger(&mut spec, None, "other", trigger_to("latest", "/hello"));
    assert!(matches!(taken, Err(EditError::PathTaken { .. })), "{taken:?}");
    // prod points at v1, whose trigger holds /hello: prod's trigger takes the path over.
    assert!(add_trigger(&mut spec, None, "hello", trigger_to("prod", "/hello")).is_ok());
    assert_eq!(spec.functions[0].triggers.len(), 1);
    assert_eq!(spec.functions[0].triggers[0].target, "prod");
    assert!(ensure_default_trigger(&mut spec, "other", "latest", "now".into()).is_ok());
    assert!(ensure_default_trigger(&mut spec, "other", "latest", "now".into()).is_ok(), "idempotent");
    assert_eq!(spec.functions[1].triggers.len(), 1);
}

#[test]
fn a_trigger_can_be_disabled_and_renamed_onto_a_free_path_only() {
    let mut spec = model();
    let id = spec.functions[0].triggers[0].effective_id("hello");
    let disabled = set_trigger_status(&mut spec, None, "hello", &id, TriggerStatus::Disabled);
    assert_eq!(disabled.map(|t| t.trigger_status), Ok(TriggerStatus::Disabled));
    assert_eq!(trigger(&spec.functions[0], &id).map(|t| t.trigger_status), Ok(TriggerStatus::Disabled));
    assert!(ensure_default_trigger(&mut spec, "other", "latest", "now".into()).is_ok());
    let onto = TriggerChange { path: Some("/other-latest".into()), ..TriggerChange::default() };
    assert!(matches!(update_trigger(&mut spec, None, "hello", &id, onto), Err(EditError::PathTaken { .. })));
}

#[test]
fn a_function_with_aliases_or_triggers_cannot_be_deleted() {
    let mut spec = model();
    assert!(matches!(delete_function(&mut spec, None, "hello"), Err(EditError::FunctionInUse { .. })));
    assert!(delete_function(&mut spec, None, "other").is_ok());
    assert_eq!(delete_function(&mut spec, None, "other").map(drop), Err(EditError::FunctionNotFound("other".into())));
    let mut copy = spec.functions[0].clone();
    copy.name = "hello".into();
    assert_eq!(create_function(&mut spec, copy), Err(EditError::FunctionExists("hello".into())));
}
