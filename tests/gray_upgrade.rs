//! The documented worked examples, step by step (docs/gray-release-by-file.md, docs/management-api.md): V1 → V1+V2 by weight → V2+V3 → rule-based V3.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bytes::Bytes;
use http::Method;
use support::{Gateway, backends, render, split};

const START: &str = r#"
project_id: 7aad83af3e8d42e99ac194e8419e2c9b
functions:
  - name: testapig
    upstream: "@latest@"
    versions:
      - { version: V1, upstream: "@V1@" }
      - { version: V2, upstream: "@V2@" }
    aliases:
      - { name: alias, version: V1 }
    triggers:
      - { target: alias }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gray_upgrade_from_v1_to_v3() {
    let upstreams = backends(&["V1", "V2", "V3", "latest"]).await;
    let gw = Gateway::start(&render(START, &upstreams)).await;
    let counts = split(&gw.client, "/testapig-alias", &[], 10).await;
    assert_eq!(counts.get("V1"), Some(&10), "{counts:?}");

    let step = START.replace(
        "{ name: alias, version: V1 }",
        "{ name: alias, version: V1, additional_version_weights: { V2: 20 } }",
    );
    std::fs::write(&gw.routes_path, render(&step, &upstreams)).unwrap();
    gw.wait_for_generation(2).await;
    let counts = split(&gw.client, "/testapig-alias", &[], 100).await;
    assert_eq!((counts.get("V1"), counts.get("V2")), (Some(&80), Some(&20)), "{counts:?}");

    let step = START
        .replace(
            "      - { version: V2, upstream: \"@V2@\" }",
            "      - { version: V2, upstream: \"@V2@\" }\n      - { version: V3, upstream: \"@V3@\" }",
        )
        .replace(
            "{ name: alias, version: V1 }",
            "{ name: alias, version: V2, additional_version_weights: { V3: 10 } }",
        );
    std::fs::write(&gw.routes_path, render(&step, &upstreams)).unwrap();
    gw.wait_for_generation(3).await;
    let counts = split(&gw.client, "/testapig-alias", &[], 100).await;
    assert_eq!((counts.get("V2"), counts.get("V3")), (Some(&90), Some(&10)), "{counts:?}");
    let metrics = gw.metrics().await;
    assert!(metrics.contains(r#"graygate_alias_weight_percent{alias="alias",function="testapig",version="V3"} 10"#));

    let rules = step.replace(
        "additional_version_weights: { V3: 10 }",
        "additional_version_strategy: { V3: { rules: [ { param: x-user-group, op: in, value: \"qa,beta\" } ] } }",
    );
    std::fs::write(&gw.routes_path, render(&rules, &upstreams)).unwrap();
    gw.wait_for_generation(4).await;
    assert_eq!(split(&gw.client, "/testapig-alias", &[], 20).await.get("V2"), Some(&20));
    let testers = split(&gw.client, "/testapig-alias", &[("x-user-group", "qa")], 20).await;
    assert_eq!(testers.get("V3"), Some(&20));
}

/// docs/management-api.md's "A gray upgrade through the API", with the same requests curl sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gray_upgrade_through_the_management_api() {
    let upstreams = backends(&["b1", "b2", "b3"]).await;
    let routes =
        "project_id: 7aad83af3e8d42e99ac194e8419e2c9b\nfunctions:\n  - { name: testapig, upstream: \"@b1@\" }\n";
    let gw = Gateway::start_with(&render(routes, &upstreams), |config| {
        config.admin.tokens = vec![graygate::admin::auth::Secret::new("readme-token")];
    })
    .await;
    let p = "7aad83af3e8d42e99ac194e8419e2c9b";
    let admin = format!("http://{}", gw.app.admin_addr());
    let function = format!("{admin}/v2/{p}/fgs/functions/urn:fss:local:{p}:function:default:testapig:latest");
    let call = |method: Method, url: String, body: String| {
        let client = gw.client.clone();
        async move {
            let answer = client.send_to(&url, method, &[("x-auth-token", "readme-token")], Bytes::from(body)).await;
            assert!(answer.status.is_success(), "{url}: {} {}", answer.status, answer.text());
            answer
        }
    };
    let code = |backend: &str| format!("{{\"code_url\": \"http://{}\"}}", upstreams[backend]);

    call(Method::POST, format!("{function}/versions"), r#"{"version": "V1", "description": "first"}"#.into()).await;
    call(Method::PUT, format!("{function}/code"), code("b2")).await;
    call(Method::POST, format!("{function}/versions"), r#"{"version": "V2"}"#.into()).await;
    call(Method::POST, format!("{function}/aliases"), r#"{"name": "alias", "version": "V1"}"#.into()).await;
    let trigger = r#"{"trigger_type_code": "APIG", "event_data": {"env_name": "RELEASE", "req_method": "ANY"}}"#;
    let triggers = format!("{admin}/v2/{p}/fgs/triggers/urn:fss:local:{p}:function:default:testapig:!alias");
    call(Method::POST, triggers, trigger.into()).await;
    assert_eq!(split(&gw.client, "/testapig-alias", &[], 10).await.get("V1"), Some(&10));

    let weights = r#"{"version": "V1", "additional_version_weights": {"V2": 20}}"#;
    call(Method::PUT, format!("{function}/aliases/alias"), weights.into()).await;
    let counts = split(&gw.client, "/testapig-alias", &[], 100).await;
    assert_eq!((counts.get("V1"), counts.get("V2")), (Some(&80), Some(&20)), "{counts:?}");

    call(Method::PUT, format!("{function}/code"), code("b3")).await;
    call(Method::POST, format!("{function}/versions"), r#"{"version": "V3"}"#.into()).await;
    let weights = r#"{"version": "V2", "additional_version_weights": {"V3": 10}}"#;
    call(Method::PUT, format!("{function}/aliases/alias"), weights.into()).await;
    let counts = split(&gw.client, "/testapig-alias", &[], 100).await;
    assert_eq!((counts.get("V2"), counts.get("V3")), (Some(&90), Some(&10)), "{counts:?}");
    let answer = gw.client.get("/testapig-alias").await;
    assert!(answer.json()["uri"].is_string(), "served by a real backend");

    let client = gw.client.clone();
    let esa = client
        .send_to(
            &format!("{admin}/"),
            Method::POST,
            &[
                ("x-auth-token", "readme-token"),
                ("x-acs-action", "CreateRoutineCodeDeployment"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Bytes::from("Name=testapig&Env=staging&Strategy=percentage&CodeVersions=%5B%7B%22CodeVersion%22%3A%22V3%22%2C%22Percentage%22%3A100%7D%5D"),
        )
        .await;
    assert_eq!(esa.status, http::StatusCode::OK, "{}", esa.text());
    assert_eq!(split(&gw.client, "/testapig-staging", &[], 10).await.get("V3"), Some(&10));
}
