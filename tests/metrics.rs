//! The admin listener: metric names and labels after real traffic, and the health probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bytes::Bytes;
use http::{Method, StatusCode};
use support::{Gateway, backends, render};

const ROUTES: &str = r#"
project_id: p
functions:
  - name: hello
    upstream: "@v1@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
      - { version: gone, upstream: "@dead@" }
    aliases:
      - name: prod
        version: v1
        additional_version_weights: { v2: 10 }
    triggers:
      - { target: prod }
      - { target: gone }
"#;

async fn gateway() -> Gateway {
    let mut upstreams = backends(&["v1", "v2"]).await;
    upstreams.insert("dead".into(), support::closed_port().await);
    Gateway::start(&render(ROUTES, &upstreams)).await
}

/// The value of the sample whose line starts with `series` (name and labels as exposed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_function_target_version_and_code() {
    let gw = gateway().await;
    for _ in 0..100 {
        assert_eq!(gw.client.get("/hello-prod").await.status, StatusCode::OK);
    }
    assert_eq!(gw.client.get("/hello-gone").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gw.client.get("/missing").await.status, StatusCode::NOT_FOUND);

    let m = gw.metrics().await;
    let requests = |labels: &str| sample(&m, &format!("graygate_requests_total{{{labels}}}"));
    assert_eq!(requests(r#"code="200",function="hello",target="prod",version="v1""#), Some(90.0), "{m}");
    assert_eq!(requests(r#"code="200",function="hello",target="prod",version="v2""#), Some(10.0));
    assert_eq!(requests(r#"code="502",function="hello",target="gone",version="gone""#), Some(1.0));
    assert_eq!(requests(r#"code="404",function="",target="",version="""#), Some(1.0));
    assert_eq!(
        sample(&m, r#"graygate_upstream_errors_total{function="hello",kind="connect",version="gone"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&m, r#"graygate_request_duration_seconds_count{function="hello",version="v1"}"#), Some(90.0));
    assert!(m.contains(r#"graygate_request_duration_seconds_bucket{function="hello",version="v2",le="0.005"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_metrics_describe_the_table_in_force() {
    let gw = gateway().await;
    let m = gw.metrics().await;
    assert_eq!(sample(&m, "graygate_config_generation"), Some(1.0));
    assert_eq!(sample(&m, r#"graygate_config_reloads_total{result="success"}"#), Some(1.0));
    assert_eq!(sample(&m, r#"graygate_config_reloads_total{result="failure"}"#), Some(0.0));
    let weight = |v: &str| {
        sample(&m, &format!(r#"graygate_alias_weight_percent{{alias="prod",function="hello",version="{v}"}}"#))
    };
    assert_eq!(weight("v1"), Some(90.0));
    assert_eq!(weight("v2"), Some(10.0));

    // A new split replaces the gauges; a removed additional version disappears.
    let text = std::fs::read_to_string(&gw.routes_path).unwrap();
    std::fs::write(&gw.routes_path, text.replace("{ v2: 10 }", "{ gone: 25 }")).unwrap();
    gw.wait_for_generation(2).await;
    let m = gw.metrics().await;
    let weight = |v: &str| {
        sample(&m, &format!(r#"graygate_alias_weight_percent{{alias="prod",function="hello",version="{v}"}}"#))
    };
    assert_eq!(weight("v1"), Some(75.0));
    assert_eq!(weight("gone"), Some(25.0));
    assert_eq!(weight("v2"), None);
    assert_eq!(sample(&m, "graygate_config_generation"), Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_answer_and_other_paths_do_not() {
    let gw = gateway().await;
    let get = |path: &str| {
        let url = gw.admin_url(path);
        let client = gw.client.clone();
        async move { client.send_to(&url, Method::GET, &[], Bytes::new()).await }
    };
    assert_eq!(get("/healthz").await.status, StatusCode::OK);
    let ready = get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert!(ready.text().contains("generation=1"));
    assert_eq!(get("/nothing").await.status, StatusCode::NOT_FOUND);
    let post = gw.client.send_to(&gw.admin_url("/metrics"), Method::POST, &[], Bytes::new()).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    let metrics = get("/metrics").await;
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
}
