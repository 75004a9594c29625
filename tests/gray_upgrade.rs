//! The README's worked example, step by step: V1 → V1+V2 by weight → V2+V3 → rule-based V3.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

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
