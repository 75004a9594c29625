//! `/graygate/v1/status`, the status page's data: each alias's configured split beside what
//! was served in the last minute, per-version rate, errors and p99, the store's state —
//! agreeing with `/metrics` — and the page's own assets, served offline.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use graygate::admin::auth::Secret;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::{self, Gateway, closed_port, save_by_rename, split};

const TOKEN: &str = "status-page-token";

fn routes(v1: SocketAddr, v2: SocketAddr, dead: SocketAddr, canary: u32) -> String {
    format!(
        r#"
project_id: p
functions:
  - name: hello
    upstream: "http://{v1}"
    versions:
      - {{ version: v1, upstream: "http://{v1}" }}
      - {{ version: v2, upstream: "http://{v2}" }}
      - {{ version: v3, upstream: "http://{dead}" }}
    aliases:
      - {{ name: prod, version: v1, additional_version_weights: {{ v2: {canary} }} }}
      - name: beta
        version: v1
        additional_version_strategy:
          v2: {{ combine_type: and, rules: [{{ rule_type: Header, param: x-user-group, op: in, value: "beta,qa" }}] }}
    triggers:
      - {{ target: prod }}
      - {{ target: beta }}
      - {{ target: v3 }}
"#
    )
}

async fn status(gw: &Gateway) -> Value {
    let answer = gw
        .client
        .send_to(&gw.admin_url("/graygate/v1/status"), Method::GET, &[("x-auth-token", TOKEN)], Bytes::new())
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.json()
}

fn alias<'s>(status: &'s Value, function: &str, name: &str) -> &'s Value {
    let function = status["functions"].as_array().unwrap().iter().find(|f| f["name"] == function).unwrap();
    function["aliases"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap()
}

fn version<'s>(status: &'s Value, function: &str, name: &str) -> &'s Value {
    let function = status["functions"].as_array().unwrap().iter().find(|f| f["name"] == function).unwrap();
    function["versions"].as_array().unwrap().iter().find(|v| v["version"] == name).unwrap()
}

/// `{version: percent}` of a list of shares.
fn shares(list: &Value) -> BTreeMap<String, f64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| (s["version"].as_str().unwrap().to_owned(), s["percent"].as_f64().unwrap()))
        .collect()
}

fn percents(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(v, p)| ((*v).to_owned(), *p)).collect()
}

/// Requests counted in `/metrics` for `function` through `target`, by version (all codes).
fn metric_counts(metrics: &str, function: &str, target: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("graygate_requests_total{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            Some(line[start..].split('"').next()?.to_owned())
        };
        if label("function").as_deref() == Some(function) && label("target").as_deref() == Some(target) {
            let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            *counts.entry(label("version").unwrap()).or_default() += value;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_shows_each_split_configured_and_served_and_agrees_with_metrics() {
    let b = support::backends(&["v1", "v2"]).await;
    let dead = closed_port().await;
    let gw = Gateway::start_with(&routes(b["v1"], b["v2"], dead, 10), |c| {
        c.admin.tokens = vec![Secret::new(TOKEN)];
    })
    .await;
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await.get("v2"), Some(&10));
    split(&gw.client, "/hello-beta", &[("x-user-group", "qa")], 5).await;
    for _ in 0..4 {
        assert_eq!(gw.client.get("/hello-v3").await.status, StatusCode::BAD_GATEWAY);
    }

    let now = status(&gw).await;
    let prod = alias(&now, "hello", "prod");
    assert_eq!(shares(&prod["configured"]), percents(&[("v1", 90.0), ("v2", 10.0)]));
    assert_eq!(shares(&prod["observed"]), percents(&[("v1", 90.0), ("v2", 10.0)]));
    assert_eq!(prod["requests"], 100);
    let beta = alias(&now, "hello", "beta");
    assert_eq!(beta["rules"], json!(["v2 when x-user-group in beta,qa"]));
    assert_eq!(shares(&beta["observed"]), percents(&[("v2", 100.0)]));

    let v2 = version(&now, "hello", "v2");
    assert_eq!((v2["requests"].as_u64(), v2["errors"].as_u64()), (Some(15), Some(0)));
    assert!(v2["rate"].as_f64().unwrap() > 0.0 && v2["p99_ms"].as_f64().unwrap() > 0.0, "{v2}");
    let v3 = version(&now, "hello", "v3");
    assert_eq!(
        (v3["requests"].as_u64(), v3["errors"].as_u64(), v3["error_ratio"].as_f64()),
        (Some(4), Some(4), Some(1.0))
    );
    assert_eq!(
        (now["mode"].as_str(), now["ready"].as_bool(), now["connected"].as_bool()),
        (Some("file"), Some(true), Some(true))
    );

    // The same counters as /metrics: each alias's total and the reload counts.
    let metrics = gw.metrics().await;
    let counted = metric_counts(&metrics, "hello", "prod");
    assert_eq!(counted.values().sum::<u64>(), prod["total"].as_u64().unwrap(), "{counted:?}");
    assert_eq!(metric_counts(&metrics, "hello", "beta").values().sum::<u64>(), beta["total"].as_u64().unwrap());
    let reloads = support::metric_value(&metrics, r#"graygate_config_reloads_total{result="success"}"#);
    assert_eq!(now["reloads"]["success"].as_f64(), Some(reloads));
    assert_eq!(now["generation"].as_f64(), Some(support::metric_value(&metrics, "graygate_config_generation")));

    // A new split shows at once as configured; what was served is the whole last minute.
    save_by_rename(&gw.routes_path, &routes(b["v1"], b["v2"], dead, 50));
    gw.wait_for_generation(2).await;
    split(&gw.client, "/hello-prod", &[], 100).await;
    let later = status(&gw).await;
    let prod = alias(&later, "hello", "prod");
    assert_eq!(shares(&prod["configured"]), percents(&[("v1", 50.0), ("v2", 50.0)]));
    assert_eq!(shares(&prod["observed"]), percents(&[("v1", 70.0), ("v2", 30.0)]));
    assert_eq!(prod["requests"], 200);
    assert_eq!(later["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_loads_without_credentials_but_its_data_needs_the_token() {
    let b = support::backends(&["v1", "v2"]).await;
    let gw = Gateway::start_with(&routes(b["v1"], b["v2"], closed_port().await, 10), |c| {
        c.admin.tokens = vec![Secret::new(TOKEN)];
    })
    .await;
    let get = |path: &str, headers: &'static [(&'static str, &'static str)]| {
        let url = gw.admin_url(path);
        let client = gw.client.clone();
        async move { client.send_to(&url, Method::GET, headers, Bytes::new()).await }
    };
    let page = get("/ui", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
    let html = page.text();
    assert!(html.contains("/ui/app.js") && html.contains("/ui/style.css"));
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from elsewhere: works offline");
    let script = get("/ui/app.js", &[]).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.text().contains("graygate.token") && script.text().contains("X-Auth-Token"));
    assert_eq!(get("/ui/style.css", &[]).await.status, StatusCode::OK);

    assert_eq!(get("/graygate/v1/status", &[]).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get("/graygate/v1/status", &[("x-auth-token", "wrong")]).await.status, StatusCode::UNAUTHORIZED);
    let data = get("/graygate/v1/status", &[("x-auth-token", TOKEN)]).await;
    assert_eq!(data.status, StatusCode::OK);
    assert!(!data.text().contains(TOKEN), "no secret in the status");
}
