//! The status page in a real headless browser: Debian's Chromium driven over WebDriver by
//! its ChromeDriver, both started here and stopped by PID, against a real gateway.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium`, `chromium-driver`), which a fresh
//! machine has not: `.ci/run` installs them and runs `cargo test --test browser`; plain
//! `cargo test` leaves this suite out. `GRAYGATE_SCREENSHOT=path` also saves the page.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod webdriver;

use std::time::Duration;

use graygate::admin::auth::Secret;
use http::{Method, StatusCode};
use serde_json::json;
use support::{Gateway, PATIENCE, split};
use webdriver::{Browser, By};

const TOKEN: &str = "browser-test-token";

fn routes(v1: std::net::SocketAddr, v2: std::net::SocketAddr, canary: u32) -> String {
    format!(
        r#"
project_id: p
functions:
  - name: hello
    upstream: "http://{v1}"
    versions:
      - {{ version: v1, upstream: "http://{v1}" }}
      - {{ version: v2, upstream: "http://{v2}" }}
    aliases:
      - {{ name: prod, version: v1, additional_version_weights: {{ v2: {canary} }} }}
    triggers:
      - {{ target: prod }}
"#
    )
}

/// The text of `selector` once it equals `expected` (the page refreshes every 2 s).
async fn wait_for_text(browser: &Browser, selector: &str, expected: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = browser.text(By::Css(selector)).await;
        if text.as_deref() == Some(expected) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{selector} shows {text:?}, not {expected:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_90_10_alias_and_follows_a_new_split() {
    let b = support::backends(&["v1", "v2"]).await;
    let gw = Gateway::start_with(&routes(b["v1"], b["v2"], 10), |c| c.admin.tokens = vec![Secret::new(TOKEN)]).await;
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await.get("v2"), Some(&10));

    let browser = Browser::start().await;
    let page = gw.admin_url("/ui");
    browser.goto(&page).await;
    // No token yet: the page asks for it, and keeps it for the tab.
    assert!(browser.displayed(By::Css("#login")).await, "the token form is shown");
    browser.type_into(By::Css("#token"), TOKEN).await;
    browser.click(By::Css("#login button[type=submit]")).await;
    wait_for_text(&browser, r#"[data-alias="hello/prod"] [data-configured="v2"]"#, "10 %").await;
    assert_eq!(browser.script("return sessionStorage.getItem('graygate.token')").await, json!(TOKEN));

    let prod = r#"[data-alias="hello/prod"]"#;
    wait_for_text(&browser, &format!("{prod} [data-configured=\"v1\"]"), "90 %").await;
    wait_for_text(&browser, &format!("{prod} [data-observed=\"v1\"]"), "90 %").await;
    wait_for_text(&browser, &format!("{prod} [data-observed=\"v2\"]"), "10 %").await;
    wait_for_text(&browser, &format!("{prod} [data-requests]"), "100").await;
    if let Ok(path) = std::env::var("GRAYGATE_SCREENSHOT") {
        std::fs::write(&path, browser.screenshot().await).unwrap();
    }
    let png = browser.screenshot().await;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a real rendering");

    // The split changes through the management API: the open page follows on its own.
    let url = gw.admin_url("/v2/p/fgs/functions/urn%3Afss%3Alocal%3Ap%3Afunction%3Adefault%3Ahello/aliases/prod");
    let body = json!({ "version": "v1", "additional_version_weights": { "v2": 50 } }).to_string();
    let headers = [("x-auth-token", TOKEN), ("content-type", "application/json")];
    let changed = gw.client.send_to(&url, Method::PUT, &headers, body.into()).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text());
    wait_for_text(&browser, &format!("{prod} [data-configured=\"v2\"]"), "50 %").await;
    wait_for_text(&browser, &format!("{prod} [data-configured=\"v1\"]"), "50 %").await;
    split(&gw.client, "/hello-prod", &[], 100).await;
    wait_for_text(&browser, &format!("{prod} [data-observed=\"v2\"]"), "30 %").await;
    wait_for_text(&browser, &format!("{prod} [data-requests]"), "200").await;

    // A wrong token is refused and forgotten; the form comes back.
    browser.script("sessionStorage.setItem('graygate.token', 'wrong'); location.reload(); return null").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !browser.displayed(By::Css("#login-error")).await {
        assert!(tokio::time::Instant::now() < deadline, "a refused token brings the form back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.script("return sessionStorage.getItem('graygate.token')").await, json!(null));
    browser.quit().await;
}
