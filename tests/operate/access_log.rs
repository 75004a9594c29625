//! The access log: one JSON line per request that names the route and the decision behind
//! its version, for every kind of decision and every kind of gateway error; a writer that
//! cannot keep up costs lines (counted), never requests.

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use graygate::access_log::{AccessLogSettings, Format, Sink};
use http::{Method, StatusCode};
use serde_json::Value;

use super::support::{self, Gateway, PATIENCE, closed_port, metric_value, slow_backend};
use super::{file_in, wait_for_lines};

fn routes(v1: SocketAddr, v2: SocketAddr, slow: SocketAddr) -> String {
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
      - {{ name: prod, version: v1, additional_version_weights: {{ v2: 10 }} }}
      - name: beta
        version: v1
        additional_version_strategy:
          v2: {{ combine_type: and, rules: [{{ rule_type: Header, param: x-user-group, op: in, value: "beta,qa" }}] }}
      - {{ name: sticky, version: v1, additional_version_weights: {{ v2: 50 }}, sticky: {{ header: x-user }} }}
    triggers:
      - {{ target: prod }}
      - {{ target: beta }}
      - {{ target: sticky }}
      - {{ target: v1 }}
  - name: slow
    upstream: "http://{slow}"
    timeout_ms: 200
    triggers:
      - {{ target: latest }}
"#
    )
}

fn json_log(path: std::path::PathBuf, buffer_bytes: usize) -> AccessLogSettings {
    AccessLogSettings { sink: Sink::File(path), format: Format::Json, sample: 1.0, buffer_bytes }
}

/// The line whose request id is the one the gateway answered with.
fn line_of<'l>(lines: &'l [Value], answer: &support::Answer) -> &'l Value {
    let id = answer.headers.get("x-request-id").unwrap().to_str().unwrap();
    lines.iter().find(|l| l["request_id"] == id).unwrap_or_else(|| panic!("no line for {id}: {lines:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_line_says_which_route_and_which_decision_gave_the_version() {
    let b = support::backends(&["v1", "v2"]).await;
    let dir = tempfile::tempdir().unwrap();
    let log = file_in(&dir, "access.log");
    let gw = Gateway::start_with(&routes(b["v1"], b["v2"], closed_port().await), |c| {
        c.access_log = Some(json_log(log.clone(), 1 << 20));
    })
    .await;

    let weighted: Vec<_> = {
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(gw.client.get("/hello-prod/cart?user=7").await);
        }
        answers
    };
    let rule = gw.client.get_with("/hello-beta", &[("x-user-group", "qa")]).await;
    let sticky = gw.client.get_with("/hello-sticky", &[("x-user", "alice")]).await;
    let fixed =
        gw.client.request(Method::POST, "/hello-v1", &[("content-type", "text/plain")], Bytes::from("12345")).await;
    assert!([&rule, &sticky, &fixed].iter().all(|a| a.status == StatusCode::OK));
    let lines = wait_for_lines(&log, 13).await;

    // Weights: the rotation's slot, and over ten requests exactly one went to v2.
    let mut slots = Vec::new();
    for answer in &weighted {
        let line = line_of(&lines, answer);
        assert_eq!(line["decision"], "weight", "{line}");
        assert_eq!(line["version"].as_str(), Some(answer.version().as_str()));
        assert_eq!((line["function"].as_str(), line["alias"].as_str()), (Some("hello"), Some("prod")));
        assert_eq!(line["trigger"], "/hello-prod");
        assert_eq!(line["path"], "/hello-prod/cart", "the query string is never logged: {line}");
        slots.push(line["decision_detail"].as_str().unwrap().to_owned());
    }
    assert_eq!(weighted.iter().filter(|a| a.version() == "v2").count(), 1);
    slots.dedup();
    assert_eq!(slots.len(), 10, "ten consecutive slots of the rotation: {slots:?}");

    let line = line_of(&lines, &rule);
    assert_eq!((line["decision"].as_str(), line["version"].as_str()), (Some("rule"), Some("v2")), "{line}");
    assert_eq!(line["decision_detail"], "x-user-group in beta,qa", "which rule matched");
    assert_eq!(line["alias"], "beta");

    let line = line_of(&lines, &sticky);
    assert_eq!(line["decision"], "sticky", "{line}");
    let bucket: u32 = line["decision_detail"].as_str().unwrap().strip_prefix("bucket ").unwrap().parse().unwrap();
    assert!(bucket < 100);
    assert_eq!(line["version"].as_str(), Some(sticky.version().as_str()));

    let line = line_of(&lines, &fixed);
    assert_eq!((line["decision"].as_str(), line["alias"].as_str()), (Some("fixed"), None), "{line}");
    assert_eq!((line["method"].as_str(), line["status"].as_u64()), (Some("POST"), Some(200)));
    assert_eq!(line["bytes_in"], 5, "the request body as it reached the upstream: {line}");
    assert_eq!(line["bytes_out"].as_u64(), Some(fixed.body.len() as u64), "{line}");
    assert_eq!(line["upstream"], b["v1"].to_string());
    assert_eq!((line["protocol"].as_str(), line["retries"].as_u64()), (Some("HTTP/1.1"), Some(0)));
    assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(line["upstream_ms"].as_f64().unwrap() <= line["duration_ms"].as_f64().unwrap(), "{line}");
    assert!(line["error_code"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_logged_with_their_apig_code() {
    let v1 = support::backends(&["v1"]).await["v1"];
    let dead = closed_port().await;
    let slow = slow_backend(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let log = file_in(&dir, "access.log");
    let gw =
        Gateway::start_with(&routes(v1, dead, slow), |c| c.access_log = Some(json_log(log.clone(), 1 << 20))).await;

    let missing = gw.client.get("/nothing-here").await;
    let refused = gw.client.get_with("/hello-beta", &[("x-user-group", "beta")]).await;
    let timed_out = gw.client.get("/slow-latest").await;
    assert_eq!(
        (missing.status, refused.status, timed_out.status),
        (StatusCode::NOT_FOUND, StatusCode::BAD_GATEWAY, StatusCode::GATEWAY_TIMEOUT)
    );
    let lines = wait_for_lines(&log, 3).await;

    let line = line_of(&lines, &missing);
    assert_eq!((line["status"].as_u64(), line["error_code"].as_str()), (Some(404), Some("APIG.0101")), "{line}");
    assert!(line["function"].is_null() && line["decision"].is_null() && line["upstream"].is_null(), "{line}");
    assert_eq!(line["bytes_out"].as_u64(), Some(missing.body.len() as u64), "the APIG body: {line}");

    let line = line_of(&lines, &refused);
    assert_eq!((line["status"].as_u64(), line["error_code"].as_str()), (Some(502), Some("APIG.0202")), "{line}");
    assert_eq!((line["version"].as_str(), line["decision"].as_str()), (Some("v2"), Some("rule")));
    assert_eq!(line["upstream"], dead.to_string());
    assert_eq!(line["retries"], 1, "a refused connect is tried once more on a fresh connection: {line}");

    let line = line_of(&lines, &timed_out);
    assert_eq!((line["status"].as_u64(), line["error_code"].as_str()), (Some(504), Some("APIG.0203")), "{line}");
    assert_eq!((line["function"].as_str(), line["decision"].as_str()), (Some("slow"), Some("fixed")));
    let upstream_ms = line["upstream_ms"].as_f64().unwrap();
    assert!((200.0..2000.0).contains(&upstream_ms), "waited the function's timeout: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_an_ejected_canary_gave_back_is_logged_as_a_fallback() {
    let v1 = support::backends(&["v1"]).await["v1"];
    let dead = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let log = file_in(&dir, "access.log");
    let gw = Gateway::start_with(&routes(v1, dead, closed_port().await), |c| {
        c.access_log = Some(json_log(log.clone(), 1 << 20));
        c.upstream.consecutive_failures = 1;
        c.upstream.ejection = Duration::from_secs(60);
    })
    .await;
    // Sticky users are split 50/50: one of them is on the dead v2 and ejects it.
    let mut answers = Vec::new();
    for user in 0..40 {
        let user = format!("user-{user}");
        answers.push(gw.client.get_with("/hello-sticky", &[("x-user", &user)]).await);
    }
    let failed = answers.iter().filter(|a| a.status == StatusCode::BAD_GATEWAY).count();
    assert_eq!(failed, 1, "the first request to v2 fails and ejects it; the rest fall back");
    let lines = wait_for_lines(&log, 40).await;
    let fallbacks: Vec<&Value> = lines.iter().filter(|l| l["decision"] == "fallback").collect();
    assert!(fallbacks.len() >= 5, "about half of 39 users: {}", fallbacks.len());
    for line in fallbacks {
        assert_eq!((line["version"].as_str(), line["status"].as_u64()), (Some("v1"), Some(200)), "{line}");
        let detail = line["decision_detail"].as_str().unwrap();
        assert!(detail.starts_with("v2 ejected (sticky bucket "), "{line}");
        assert_eq!(line["upstream"], v1.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_blocked_on_a_full_pipe_costs_lines_never_requests() {
    let v1 = support::backends(&["v1", "v2"]).await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = file_in(&dir, "access.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // The reader opens the pipe (so the writer's open returns) and reads nothing until told;
    // then it counts the whole lines that arrive.
    let (drain_tx, drain_rx) = std::sync::mpsc::channel::<()>();
    let read = Arc::new(AtomicUsize::new(0));
    let torn = Arc::new(AtomicUsize::new(0));
    {
        let (fifo, read, torn) = (fifo.clone(), read.clone(), torn.clone());
        std::thread::spawn(move || {
            let pipe = std::fs::File::open(&fifo).unwrap();
            drain_rx.recv().unwrap();
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if serde_json::from_str::<Value>(&line).is_err() {
                    torn.fetch_add(1, Ordering::Relaxed);
                }
                read.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let gw = Gateway::start_with(&routes(v1["v1"], v1["v2"], closed_port().await), |c| {
        c.access_log = Some(json_log(fifo.clone(), 16 * 1024));
    })
    .await;

    // Far more lines than the pipe (64 KiB) and the buffer (16 KiB) hold together.
    const REQUESTS: usize = 3000;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let client = gw.client.clone();
            tokio::spawn(async move {
                for _ in 0..REQUESTS / 4 {
                    let answer = client.get("/hello-prod").await;
                    assert_eq!(answer.status, StatusCode::OK);
                }
            })
        })
        .collect();
    for client in clients {
        tokio::time::timeout(PATIENCE * 3, client).await.expect("requests never wait for the log").unwrap();
    }
    let dropped = metric_value(&gw.metrics().await, "graygate_access_log_dropped_total");
    assert!(dropped > 1000.0, "the blocked writer's lines were dropped: {dropped}");

    // Unblocked, every line that was not dropped arrives: none is lost without a count.
    drain_tx.send(()).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while read.load(Ordering::Relaxed) + (dropped as usize) < REQUESTS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} written + {dropped} dropped of {REQUESTS}",
            read.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read.load(Ordering::Relaxed) + dropped as usize, REQUESTS, "no line counted twice");
    assert_eq!(torn.load(Ordering::Relaxed), 0, "whole lines only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_its_client_abandoned_is_logged_as_499() {
    let v1 = support::backends(&["v1"]).await["v1"];
    let (held, mut arrivals, release) = support::gated_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let log = file_in(&dir, "access.log");
    let gw = Gateway::start_with(&routes(v1, v1, held).replace("timeout_ms: 200", "timeout_ms: 30000"), |c| {
        c.access_log = Some(json_log(log.clone(), 1 << 20));
    })
    .await;
    // The client sends its request and hangs up while the upstream holds its answer.
    let mut client = tokio::net::TcpStream::connect(gw.app.data_addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut client, b"GET /slow-latest HTTP/1.1\r\nHost: gw\r\n\r\n").await.unwrap();
    tokio::time::timeout(PATIENCE, arrivals.recv()).await.unwrap().unwrap();
    drop(client);
    let lines = wait_for_lines(&log, 1).await;
    release.notify_one();
    let line = &lines[0];
    assert_eq!((line["status"].as_u64(), line["path"].as_str()), (Some(499), Some("/slow-latest")), "{line}");
    assert_eq!((line["function"].as_str(), line["decision"].as_str()), (Some("slow"), Some("fixed")), "{line}");
}
