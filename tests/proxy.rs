//! The data plane through real sockets: trigger forms, forwarding, splits, rules, errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use support::{Gateway, backends, render, split};

const ROUTES: &str = r#"
project_id: 7aad83af3e8d42e99ac194e8419e2c9b
region: local
functions:
  - name: hello
    upstream: "@latest@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
      - { version: v3, upstream: "@v3@" }
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
              - { rule_type: Header, param: X-Region, op: "=", value: "eu" }
          v3:
            combine_type: or
            rules:
              - { rule_type: Header, param: x-user-group, op: "=", value: "staff" }
              - { rule_type: Header, param: x-canary, op: "=", value: "v3" }
      - name: trio
        version: v1
        additional_version_weights: { v2: 25, v3: 5 }
      - name: sticky
        version: v1
        additional_version_weights: { v2: 30 }
        sticky: { header: x-user-id }
    triggers:
      - { target: prod }
      - { name: API_hello_beta, path: /shop/hello, target: beta }
      - { target: trio }
      - { target: sticky }
      - { target: v1 }
      - { target: v2, req_method: POST }
      - { target: latest }
"#;

async fn gateway() -> Gateway {
    let upstreams = backends(&["v1", "v2", "v3", "latest"]).await;
    Gateway::start(&render(ROUTES, &upstreams)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_trigger_form_reaches_its_version() {
    let gw = gateway().await;
    let cases = [("/hello-v1", "v1"), ("/hello-latest", "latest"), ("/shop/hello", "v1")];
    for (path, version) in cases {
        let answer = gw.client.get(path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
        assert_eq!(answer.version(), version, "{path}");
        assert_eq!(answer.json()["version"], version, "{path}: the upstream itself says so");
    }
    // A method-restricted trigger answers its method only.
    let post = gw.client.request(Method::POST, "/hello-v2", &[], Bytes::from_static(b"{}")).await;
    assert_eq!(post.version(), "v2");
    assert_eq!(post.json()["body_bytes"], 2);
    assert_eq!(gw.client.get("/hello-v2").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_path_remainder_and_the_query() {
    let gw = gateway().await;
    let cases = [
        ("/hello-v1", "/"),
        ("/hello-v1/", "/"),
        ("/hello-v1/a/b%20c", "/a/b%20c"),
        ("/hello-v1?x=1&y=%2F", "/?x=1&y=%2F"),
        ("/hello-v1/items/7?sort=desc", "/items/7?sort=desc"),
        ("/shop/hello/cart?id=3", "/cart?id=3"),
    ];
    for (path, upstream_uri) in cases {
        let answer = gw.client.get(path).await;
        assert_eq!(answer.json()["uri"], upstream_uri, "{path}");
    }
    // A longer path that only shares a prefix without a '/' boundary is no match.
    assert_eq!(gw.client.get("/hello-v1x").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_exactly_per_hundred_requests() {
    let gw = gateway().await;
    let counts = split(&gw.client, "/hello-prod", &[], 100).await;
    assert_eq!(counts.get("v1"), Some(&90), "{counts:?}");
    assert_eq!(counts.get("v2"), Some(&10), "{counts:?}");

    let counts = split(&gw.client, "/hello-trio", &[], 200).await;
    assert_eq!(counts.get("v1"), Some(&140), "{counts:?}");
    assert_eq!(counts.get("v2"), Some(&50), "{counts:?}");
    assert_eq!(counts.get("v3"), Some(&10), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_still_get_the_exact_split() {
    let gw = gateway().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = gw.client.clone();
        tasks.push(tokio::spawn(async move { split(&client, "/hello-prod", &[], 50).await }));
    }
    let mut v2 = 0;
    for task in tasks {
        v2 += task.await.unwrap().get("v2").copied().unwrap_or(0);
    }
    assert_eq!(v2, 20, "200 requests from 4 clients: exactly 10% to v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_route_with_and_or_in_and_equals() {
    let gw = gateway().await;
    let cases: [(&[(&str, &str)], &str); 8] = [
        (&[], "v1"),
        (&[("x-user-group", "beta")], "v1"), // `and`: the region rule is missing
        (&[("x-user-group", "beta"), ("x-region", "eu")], "v2"),
        (&[("X-User-Group", "qa"), ("X-REGION", "eu")], "v2"), // names are case-insensitive
        (&[("x-user-group", "beta,qa"), ("x-region", "eu")], "v1"), // `in` compares whole values
        (&[("x-user-group", "staff")], "v3"),                  // `or`: one rule is enough
        (&[("x-canary", "v3")], "v3"),
        (&[("x-canary", "V3")], "v1"), // values are exact
    ];
    for (headers, version) in cases {
        let answer = gw.client.get_with("/shop/hello", headers).await;
        assert_eq!(answer.version(), version, "{headers:?}");
    }
    // The first matching version wins (v2 before v3 in the file).
    let both =
        gw.client.get_with("/shop/hello", &[("x-user-group", "qa"), ("x-region", "eu"), ("x-canary", "v3")]).await;
    assert_eq!(both.version(), "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_users_keep_their_version() {
    let gw = gateway().await;
    let mut on_v2 = 0;
    for user in 0..60 {
        let id = format!("user-{user}");
        let first = gw.client.get_with("/hello-sticky", &[("x-user-id", &id)]).await.version();
        for _ in 0..3 {
            let again = gw.client.get_with("/hello-sticky", &[("x-user-id", &id)]).await.version();
            assert_eq!(again, first, "{id} moved");
        }
        let bucket = (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % 100) as usize;
        assert_eq!(first, if bucket < 30 { "v2" } else { "v1" }, "{id} bucket {bucket}");
        on_v2 += usize::from(first == "v2");
    }
    assert!(on_v2 > 0 && on_v2 < 60, "both versions serve some users: {on_v2}");
    // Without the key, the exact rotation applies.
    let counts = split(&gw.client, "/hello-sticky", &[], 100).await;
    assert_eq!(counts.get("v2"), Some(&30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_a_weight_only_moves_sticky_users_toward_the_canary() {
    let upstreams = backends(&["v1", "v2", "v3", "latest"]).await;
    let routes = render(ROUTES, &upstreams);
    let gw = Gateway::start(&routes).await;
    let users: Vec<String> = (0..200).map(|u| format!("u{u}")).collect();
    let mut before = Vec::new();
    for user in &users {
        before.push(gw.client.get_with("/hello-sticky", &[("x-user-id", user)]).await.version());
    }
    std::fs::write(&gw.routes_path, routes.replace("{ v2: 30 }", "{ v2: 60 }")).unwrap();
    gw.wait_for_generation(2).await;
    let mut moved = 0;
    for (user, old) in users.iter().zip(&before) {
        let new = gw.client.get_with("/hello-sticky", &[("x-user-id", user)]).await.version();
        assert!(!(old == "v2" && new == "v1"), "{user} moved back to the primary");
        moved += usize::from(old == "v1" && new == "v2");
    }
    assert!(moved > 0, "some users moved to the canary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_rewrites_headers_both_ways() {
    let gw = gateway().await;
    let answer = gw
        .client
        .get_with(
            "/hello-v1",
            &[
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "secret"),
                ("keep-alive", "timeout=5"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-request-id", "req-abc-1"),
                ("x-custom", "kept"),
            ],
        )
        .await;
    let seen = &answer.json()["headers"];
    assert!(seen.get("x-hop").is_none(), "Connection-named header removed: {seen}");
    assert!(seen.get("keep-alive").is_none());
    assert_eq!(seen["x-custom"], "kept");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], format!("{}", gw.app.data_addr()));
    assert_eq!(seen["x-request-id"], "req-abc-1");
    assert_eq!(answer.headers["x-request-id"], "req-abc-1");
    assert_eq!(answer.headers["x-graygate-version"], "v1");

    // A request without an id gets a generated one, the same upstream and downstream.
    let answer = gw.client.get("/hello-v1").await;
    let id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(answer.json()["headers"]["x-request-id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways() {
    let gw = gateway().await;
    let big = Bytes::from(vec![b'x'; 3 * 1024 * 1024]);
    let answer = gw.client.request(Method::POST, "/hello-v2", &[], big).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["body_bytes"], 3 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_forwarded_to_http1_upstreams() {
    let gw = gateway().await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).http2_only(true).build_http();
    let uri: http::Uri = format!("http://{}/hello-prod", gw.app.data_addr()).parse().unwrap();
    let response = tokio::time::timeout(support::PATIENCE, client.get(uri)).await.unwrap().unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-graygate-version"], "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_trigger_is_a_json_404() {
    let gw = gateway().await;
    let answer = gw.client.get_with("/nope", &[("x-request-id", "r-404")]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.headers["content-type"], "application/json");
    let body = answer.json();
    assert_eq!(body["error_code"], "APIG.0101");
    assert_eq!(body["request_id"], "r-404");
    assert!(body["error_msg"].as_str().unwrap().contains("does not exist"));
}

const FAULTS: &str = r#"
project_id: p
functions:
  - name: faults
    upstream: "@dead@"
    timeout_ms: 300
    versions:
      - { version: slow, upstream: "@slow@" }
      - { version: short, upstream: "@short@" }
      - { version: garbage, upstream: "@garbage@" }
    triggers:
      - { target: latest }
      - { target: slow }
      - { target: short }
      - { target: garbage }
"#;

async fn faulty_gateway() -> Gateway {
    let mut upstreams = std::collections::HashMap::new();
    upstreams.insert("dead".to_owned(), support::closed_port().await);
    upstreams.insert("slow".to_owned(), support::slow_backend(Duration::from_secs(5)).await);
    upstreams.insert("short".to_owned(), support::truncating_backend().await);
    upstreams.insert("garbage".to_owned(), support::garbage_backend().await);
    Gateway::start(&render(FAULTS, &upstreams)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_is_a_json_502() {
    let gw = faulty_gateway().await;
    let answer = gw.client.get("/faults-latest").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let body = answer.json();
    assert_eq!(body["error_code"], "APIG.0202");
    assert_eq!(body["request_id"], answer.headers["x-request-id"].to_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_upstream_response_is_a_502() {
    let gw = faulty_gateway().await;
    let answer = gw.client.get("/faults-garbage").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.json()["error_code"], "APIG.0202");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_is_a_json_504_at_the_function_timeout() {
    let gw = faulty_gateway().await;
    let started = std::time::Instant::now();
    let answer = gw.client.get("/faults-slow").await;
    let elapsed = started.elapsed();
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.json()["error_code"], "APIG.0203");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "answered at the 300 ms timeout, not the upstream's 5 s: {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_upstream_body_is_never_a_clean_200() {
    let gw = faulty_gateway().await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{}/faults-short", gw.app.data_addr()).parse().unwrap();
    // The head may or may not have left before the upstream's body broke off (that is a
    // matter of timing); either way the client never holds a complete message.
    match tokio::time::timeout(support::PATIENCE, client.get(uri)).await.unwrap() {
        Err(error) => {
            assert!(error.to_string().contains("request") || format!("{error:?}").contains("Incomplete"), "{error:?}")
        }
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::OK, "the upstream's head, as it came");
            let body = tokio::time::timeout(support::PATIENCE, http_body_util::BodyExt::collect(response.into_body()))
                .await
                .unwrap();
            assert!(body.is_err(), "the client must see the body fail, not a complete short message");
        }
    }
}
