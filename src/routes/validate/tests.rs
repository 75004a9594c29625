use crate::routes::ValidRoutes;

const GOOD: &str = r#"project_id: 7aad83af3e8d42e99ac194e8419e2c9b
region: local
functions:
  - name: hello
    package: default
    upstream: http://127.0.0.1:9001
    timeout_ms: 30000
    versions:
      - { version: v1, upstream: "http://127.0.0.1:9001", description: first }
      - { version: v2, upstream: "http://127.0.0.1:9002" }
    aliases:
      - name: prod
        version: v1
        additional_version_weights: { v2: 10 }
      - name: beta
        version: v1
        additional_version_strategy:
          v2:
            combine_type: and
            rules:
              - { rule_type: Header, param: x-user-group, op: in, value: "beta,qa" }
    triggers:
      - { target: prod }
      - { name: API_hello_beta, path: /shop/hello, target: beta }
      - { target: v1 }
      - { target: latest }
"#;

/// Every problem reported for `doc`, one `file:line: path: message` string each.
fn problems(doc: &str) -> Vec<String> {
    match ValidRoutes::parse(doc, "routes.yaml") {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

fn assert_rejected(doc: &str, expected: &str) {
    let got = problems(doc);
    assert!(got.iter().any(|p| p.contains(expected)), "expected a problem containing {expected:?}, got {got:#?}");
}

#[test]
fn the_reference_example_is_valid() {
    assert_eq!(problems(GOOD), Vec::<String>::new());
}

#[test]
fn an_unknown_version_is_reported_with_line_and_path() {
    let doc = GOOD.replace("{ v2: 10 }", "{ v9: 10 }");
    assert_eq!(
        problems(&doc),
        vec![
            "routes.yaml:14: functions[0].aliases[0].additional_version_weights.v9: version \"v9\" does not exist"
                .to_owned()
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let doc =
        GOOD.replace("{ v2: 10 }", "{ v2: 0 }").replace("op: in", "op: like").replace("target: v1 }", "target: v7 }");
    let got = problems(&doc);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].starts_with("routes.yaml:14: functions[0].aliases[0].additional_version_weights.v2: weight"));
    assert!(got[1].starts_with("routes.yaml:21: functions[0].aliases[1].additional_version_strategy.v2.rules[0].op"));
    assert!(got[2].starts_with("routes.yaml:25: functions[0].triggers[2].target"));
}

#[test]
fn unknown_fields_and_wrong_types_are_errors_with_lines() {
    let got = problems(&GOOD.replace("timeout_ms: 30000", "timeout_msec: 30000"));
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("routes.yaml:7: functions[0]: unknown field `timeout_msec`"), "{got:?}");
    assert_rejected(&GOOD.replace("{ v2: 10 }", "{ v2: ten }"), "routes.yaml:14:");
    assert_rejected("project_id: [", "routes.yaml");
    assert_rejected("", "missing field `project_id`");
}

#[test]
fn weights_follow_functiongraph() {
    assert_rejected(&GOOD.replace("{ v2: 10 }", "{ v2: 101 }"), "weight must be an integer from 1 to 100");
    assert_rejected(&GOOD.replace("{ v2: 10 }", "{ v2: -1 }"), "weight must be an integer from 1 to 100");
    assert_rejected(&GOOD.replace("{ v2: 10 }", "{ v1: 10 }"), "is the alias's own version");
    assert_rejected(&GOOD.replace("{ v2: 10 }", "{ latest: 10 }"), "cannot be latest");
    let three = GOOD
        .replace("      - { version: v2, upstream: \"http://127.0.0.1:9002\" }", "      - { version: v2, upstream: \"http://127.0.0.1:9002\" }\n      - { version: v3, upstream: \"http://127.0.0.1:9003\" }")
        .replace("{ v2: 10 }", "{ v2: 60, v3: 41 }");
    assert_rejected(&three, "weights sum to 101, more than 100");
    assert!(problems(&three.replace("v3: 41", "v3: 40")).is_empty());
}

#[test]
fn names_follow_functiongraph() {
    assert_rejected(&GOOD.replace("name: prod", "name: 1prod"), "is not a valid name");
    assert_rejected(&GOOD.replace("name: prod", "name: prod-"), "is not a valid name");
    assert_rejected(&GOOD.replace("name: prod", &format!("name: p{}", "x".repeat(64))), "is not a valid name");
    assert_rejected(&GOOD.replace("name: prod", "name: v1"), "has the name of a version");
    assert_rejected(&GOOD.replace("name: beta", "name: prod"), "alias \"prod\" is defined twice");
    assert_rejected(&GOOD.replace("version: v2,", "version: v1,"), "version \"v1\" is defined twice");
    assert_rejected(&GOOD.replace("version: v2,", "version: latest,"), "is not a valid version");
    assert!(problems(&GOOD.replace("v2", "20240101-120000")).is_empty());
}

#[test]
fn rules_follow_functiongraph() {
    assert_rejected(&GOOD.replace("rule_type: Header", "rule_type: Query"), "must be \"Header\"");
    assert_rejected(&GOOD.replace("param: x-user-group", "param: x.user"), "param");
    assert_rejected(&GOOD.replace("combine_type: and", "combine_type: xor"), "must be \"and\" or \"or\"");
    assert_rejected(&GOOD.replace("value: \"beta,qa\"", "value: \"beta,,qa\""), "comma-separated");
}

#[test]
fn trigger_paths_are_unique_and_canonical() {
    assert_rejected(
        &GOOD.replace("path: /shop/hello", "path: /hello-prod"),
        "is already used by functions[0].triggers[0]",
    );
    for bad in ["shop", "/shop/", "/shop//x", "/shop/../x", "/shop/%2e", "/sh op"] {
        assert_rejected(&GOOD.replace("path: /shop/hello", &format!("path: \"{bad}\"")), "path \"");
    }
    assert_rejected(&GOOD.replace("- { target: v1 }", "- { target: v1, req_method: FETCH }"), "req_method");
}

#[test]
fn upstreams_and_sticky_are_checked() {
    assert_rejected(
        &GOOD.replace("upstream: http://127.0.0.1:9001\n", "upstream: ftp://x\n"),
        "must start with http://, https:// or h2c://",
    );
    assert_rejected(&GOOD.replace("upstream: http://127.0.0.1:9001\n", "upstream: \"http://x/?q\"\n"), "query");
    let sticky = GOOD.replace("{ v2: 10 }", "{ v2: 10 }\n        sticky: { header: x-uid, cookie: uid }");
    assert_rejected(&sticky, "set exactly one");
    let sticky = GOOD.replace("{ v2: 10 }", "{ v2: 10 }\n        sticky: { header: x-uid }");
    assert!(problems(&sticky).is_empty());
}

#[test]
fn json_is_accepted_as_yaml() {
    let doc = r#"{"project_id": "p", "functions": [{"name": "bench", "upstream": "http://127.0.0.1:1",
        "versions": [{"version": "v1", "upstream": "http://127.0.0.1:1"}],
        "aliases": [{"name": "canary", "version": "v1"}], "triggers": [{"target": "canary"}]}]}"#;
    assert!(problems(doc).is_empty());
}

#[test]
fn json_errors_name_the_line_and_field() {
    let doc =
        "{\"project_id\": \"p\",\n \"functions\": [{\"name\": \"a\",\n   \"upstream\": \"http://x\", \"timeout\": 3}]}";
    let got = problems(doc);
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("routes.yaml:3: functions[0]"), "{got:?}");
    assert!(got[0].contains("unknown field `timeout`"), "{got:?}");
}
