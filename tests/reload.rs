//! Hot reload of the routes file, end to end: real files, real sockets, a real watcher.
//!
//! Every gateway here polls only once an hour, so a change that applies within `PATIENCE`
//! was seen by the file watch (or SIGHUP), never by the poll fallback.
//!
//! SIGHUP goes to the whole test process and forces a reload in *every* gateway alive in
//! it, which would bump generations under the other tests' feet: each test holds
//! `SIGNALS` for reading, and the SIGHUP test holds it for writing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use graygate::app::App;
use graygate::config::ServerConfig;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{Gateway, PATIENCE, TestClient, backends, local, metric_value, render, save_by_rename};
use tokio::sync::RwLock;
use tokio::time::Instant;

static SIGNALS: RwLock<()> = RwLock::const_new(());

/// Long enough that the poll fallback never fires during a test.
const NO_POLL: Duration = Duration::from_secs(3600);

const SUCCESS: &str = "graygate_config_reloads_total{result=\"success\"}";
const FAILURE: &str = "graygate_config_reloads_total{result=\"failure\"}";
const UNCHANGED: &str = "graygate_config_reloads_total{result=\"unchanged\"}";

const TEMPLATE: &str = r#"project_id: p1
region: local
functions:
  - name: hello
    upstream: "@v1@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
    aliases:
      - name: prod
        version: v1
        description: "@note@"
        additional_version_weights: { v2: @weight@ }
    triggers:
      - { target: prod }
"#;

type Backends = HashMap<String, SocketAddr>;

/// A valid routes file: alias `prod` sends `weight` % to v2; `note` marks this write.
fn routes(backends: &Backends, weight: u32, note: &str) -> String {
    render(TEMPLATE, backends).replace("@weight@", &weight.to_string()).replace("@note@", note)
}

/// Valid YAML that fails validation: the weight names a version that does not exist.
fn unknown_version(backends: &Backends) -> String {
    routes(backends, 10, "invalid").replace("{ v2: 10 }", "{ v9: 10 }")
}

/// Not YAML at all: an unclosed flow mapping.
fn syntax_error(backends: &Backends) -> String {
    routes(backends, 10, "broken").replace("{ v2: 10 }", "{ v2: 10")
}

async fn start(routes: &str) -> Gateway {
    Gateway::start_with(routes, |config| config.reload.poll = NO_POLL).await
}

/// v2's weight and the note of alias `prod` in the table in force.
fn in_force(gateway: &Gateway) -> (i64, String) {
    let table = gateway.app.routes().current();
    let alias = &table.source().spec().functions[0].aliases[0];
    let weight = alias.additional_version_weights.values().sum();
    (weight, alias.description.clone().unwrap_or_default())
}

/// Polls `done` until it holds, failing the test after `PATIENCE`.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(gateway: &Gateway, series: &str) -> f64 {
    metric_value(&gateway.metrics().await, series)
}

/// Polls `/metrics` until `series` exceeds `above`; returns its value.
async fn wait_for_metric_above(gateway: &Gateway, series: &str, above: f64) -> f64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = metric(gateway, series).await;
        if value > above {
            return value;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (v1, v2) answers over 100 sequential requests to the alias trigger. The rotation is
/// exact: any 100 consecutive requests hold each version exactly its weight.
async fn split(gateway: &Gateway) -> (usize, usize) {
    let counts = support::split(&gateway.client, "/hello-prod", &[], 100).await;
    let v1 = counts.get("v1").copied().unwrap_or(0);
    let v2 = counts.get("v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, 100, "answers from unexpected versions: {counts:?}");
    (v1, v2)
}

fn generation(gateway: &Gateway) -> u64 {
    gateway.app.routes().current().generation()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_in_place_changes_the_split_exactly() {
    let _serial = SIGNALS.read().await;
    let b = backends(&["v1", "v2"]).await;
    let gateway = start(&routes(&b, 10, "first")).await;
    assert_eq!(generation(&gateway), 1);
    assert_eq!(split(&gateway).await, (90, 10));

    std::fs::write(&gateway.routes_path, routes(&b, 50, "second")).unwrap();
    gateway.wait_for_generation(2).await;
    assert_eq!(in_force(&gateway), (50, "second".to_owned()));
    assert_eq!(split(&gateway).await, (50, 50));
    assert_eq!(split(&gateway).await, (50, 50), "the second cycle holds the weight too");

    let metrics = gateway.metrics().await;
    assert!(metrics.contains("graygate_config_generation 2"), "{metrics}");
    assert!(
        metrics.contains("graygate_alias_weight_percent{alias=\"prod\",function=\"hello\",version=\"v2\"} 50"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_keeps_the_old_table_until_it_is_fixed() {
    let _serial = SIGNALS.read().await;
    let b = backends(&["v1", "v2"]).await;
    let gateway = start(&routes(&b, 10, "good")).await;
    let failures = metric(&gateway, FAILURE).await;
    assert_eq!(failures, 0.0);

    // Valid YAML, invalid routes: a weight for a version that does not exist.
    std::fs::write(&gateway.routes_path, unknown_version(&b)).unwrap();
    let failures = wait_for_metric_above(&gateway, FAILURE, failures).await;
    assert_eq!(generation(&gateway), 1, "an invalid file must not be applied");
    assert_eq!(in_force(&gateway), (10, "good".to_owned()));
    assert_eq!(split(&gateway).await, (90, 10), "the old table keeps serving");

    // Not even YAML.
    std::fs::write(&gateway.routes_path, syntax_error(&b)).unwrap();
    wait_for_metric_above(&gateway, FAILURE, failures).await;
    assert_eq!(generation(&gateway), 1, "a broken file must not be applied");
    assert_eq!(split(&gateway).await, (90, 10), "the old table keeps serving");
    assert_eq!(metric(&gateway, SUCCESS).await, 1.0, "only the initial load succeeded");

    // Fixed: applied.
    std::fs::write(&gateway.routes_path, routes(&b, 50, "fixed")).unwrap();
    gateway.wait_for_generation(2).await;
    assert_eq!(in_force(&gateway), (50, "fixed".to_owned()));
    assert_eq!(split(&gateway).await, (50, 50));
    assert_eq!(metric(&gateway, SUCCESS).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_by_rename_are_picked_up_again_and_again() {
    let _serial = SIGNALS.read().await;
    let b = backends(&["v1", "v2"]).await;
    let gateway = start(&routes(&b, 10, "original")).await;

    save_by_rename(&gateway.routes_path, &routes(&b, 30, "rename 1"));
    gateway.wait_for_generation(2).await;
    assert_eq!(in_force(&gateway), (30, "rename 1".to_owned()));
    assert_eq!(split(&gateway).await, (70, 30));

    // The first rename replaced the file's inode: a watch on the file would be deaf now.
    save_by_rename(&gateway.routes_path, &routes(&b, 60, "rename 2"));
    gateway.wait_for_generation(3).await;
    assert_eq!(in_force(&gateway), (60, "rename 2".to_owned()));
    assert_eq!(split(&gateway).await, (40, 60));

    // And an in-place edit of the renamed-in file still counts.
    std::fs::write(&gateway.routes_path, routes(&b, 20, "in place")).unwrap();
    gateway.wait_for_generation(4).await;
    assert_eq!(in_force(&gateway), (20, "in place".to_owned()));
    assert_eq!(split(&gateway).await, (80, 20));
}

/// Kubernetes mounts a ConfigMap as `routes.yaml -> ..data/routes.yaml` with
/// `..data -> ..<timestamp>/`, and updates it by swapping the `..data` symlink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_is_picked_up_every_time() {
    let _serial = SIGNALS.read().await;
    let b = backends(&["v1", "v2"]).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let first = "..2026_01_01_a";
    std::fs::create_dir(base.join(first)).unwrap();
    std::fs::write(base.join(first).join("routes.yaml"), routes(&b, 10, first)).unwrap();
    symlink(first, base.join("..data")).unwrap();
    symlink("..data/routes.yaml", base.join("routes.yaml")).unwrap();

    let routes_path = base.join("routes.yaml");
    let mut config = ServerConfig::with_defaults(local(), local(), routes_path.clone()).unwrap();
    config.reload.debounce = Duration::from_millis(50);
    config.reload.poll = NO_POLL;
    let app = App::start(config).await.expect("gateway starts on a ConfigMap layout");
    let client = TestClient::new(app.data_addr());
    let gateway = Gateway { app, dir, routes_path, client };
    assert_eq!(in_force(&gateway), (10, first.to_owned()));
    assert_eq!(split(&gateway).await, (90, 10));

    let mut old = first.to_owned();
    for (swap, (suffix, weight)) in [("b", 50), ("c", 25), ("d", 70)].into_iter().enumerate() {
        let new = format!("..2026_01_01_{suffix}");
        swap_configmap(gateway.dir.path(), &old, &new, &routes(&b, weight, &new));
        gateway.wait_for_generation(2 + swap as u64).await;
        assert_eq!(in_force(&gateway), (i64::from(weight), new.clone()), "swap {swap}");
        assert_eq!(split(&gateway).await, (100 - weight as usize, weight as usize), "swap {swap}");
        old = new;
    }
}

/// What the kubelet does: a new timestamped directory, a `..data_tmp` symlink to it
/// renamed over `..data` (atomic), then the old directory removed.
fn swap_configmap(base: &Path, old: &str, new: &str, contents: &str) {
    std::fs::create_dir(base.join(new)).unwrap();
    std::fs::write(base.join(new).join("routes.yaml"), contents).unwrap();
    symlink(new, base.join("..data_tmp")).unwrap();
    std::fs::rename(base.join("..data_tmp"), base.join("..data")).unwrap();
    std::fs::remove_dir_all(base.join(old)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_file_and_an_unchanged_one_changes_nothing() {
    let _exclusive = SIGNALS.write().await;
    let b = backends(&["v1", "v2"]).await;
    let gateway = start(&routes(&b, 10, "same")).await;
    assert_eq!(generation(&gateway), 1);

    // The gateway has registered its SIGHUP handler (at start), so this cannot kill us.
    // Each signal is waited for (signals sent back to back may be delivered as one).
    for round in 0..50 {
        let before = metric(&gateway, UNCHANGED).await;
        hangup();
        let after = wait_for_metric_above(&gateway, UNCHANGED, before).await;
        assert!(after > before, "SIGHUP {round} re-read the file");
    }
    assert_eq!(generation(&gateway), 1, "an unchanged file is no new generation");
    assert_eq!(metric(&gateway, SUCCESS).await, 1.0);
    assert_eq!(in_force(&gateway), (10, "same".to_owned()));

    // A change no file event announces (here: one SIGHUP reads it first) is applied.
    std::fs::write(&gateway.routes_path, routes(&b, 30, "by signal")).unwrap();
    hangup();
    gateway.wait_for_generation(2).await;
    assert_eq!(in_force(&gateway), (30, "by signal".to_owned()));
}

fn hangup() {
    let status =
        std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill -HUP failed: {status}");
}

/// GETs `url` until `stop`; returns (answers with 200, failures with what went wrong).
async fn hammer(url: String, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = url.parse().unwrap();
    let (mut ok, mut failures) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let answer = tokio::time::timeout(PATIENCE, async {
            let response = client.get(uri.clone()).await.map_err(|e| format!("request: {e:?}"))?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
            Ok::<_, String>((parts, body))
        })
        .await;
        match answer {
            Ok(Ok((parts, body))) => {
                let version = parts.headers.get("x-graygate-version").map(|v| v.as_bytes().to_vec());
                if parts.status == StatusCode::OK && matches!(version.as_deref(), Some(b"v1" | b"v2")) {
                    ok += 1;
                } else {
                    failures.push(format!("{} {version:?}: {}", parts.status, String::from_utf8_lossy(&body)));
                }
            }
            Ok(Err(error)) => failures.push(error),
            Err(_) => failures.push("no answer in time".to_owned()),
        }
    }
    (ok, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_rewrites_under_load_fail_no_request() {
    let _serial = SIGNALS.read().await;
    let b = backends(&["v1", "v2"]).await;
    // A debounce longer than the gap between writes: reloads must still happen during the
    // burst (at most one per debounce), not be postponed until the writes stop.
    let gateway = Gateway::start_with(&routes(&b, 10, "start"), |config| {
        config.reload.poll = NO_POLL;
        config.reload.debounce = Duration::from_millis(50);
    })
    .await;
    let url = format!("http://{}/hello-prod", gateway.app.data_addr());

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4).map(|_| tokio::spawn(hammer(url.clone(), Arc::clone(&stop)))).collect();

    let mut last_valid = None;
    for write in 0..100u32 {
        let contents = match write % 7 {
            3 => unknown_version(&b),
            5 if write % 2 == 0 => syntax_error(&b),
            _ => {
                let weight = if write % 2 == 0 { 10 } else { 50 };
                last_valid = Some((i64::from(weight), format!("write {write}")));
                routes(&b, weight, &format!("write {write}"))
            }
        };
        if write % 2 == 0 {
            std::fs::write(&gateway.routes_path, contents).unwrap();
        } else {
            save_by_rename(&gateway.routes_path, &contents);
        }
        tokio::time::sleep(Duration::from_millis(10 + u64::from(write % 11))).await;
    }
    let last_valid = last_valid.unwrap();
    assert_eq!(last_valid, (50, "write 99".to_owned()), "the last write is a valid one");
    wait_until("the last write is in force", || in_force(&gateway) == last_valid).await;

    // Invalid writes that were replaced within the settle time were never "saved"; one that
    // stays is rejected while the clients keep going, and the last good table keeps serving.
    std::fs::write(&gateway.routes_path, unknown_version(&b)).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while metric_value(&gateway.metrics().await, FAILURE) < 1.0 {
        assert!(Instant::now() < deadline, "the lasting invalid write was never rejected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(in_force(&gateway), last_valid);

    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failures) = (0, Vec::new());
    for client in clients {
        let (answered, failed) = client.await.expect("client task");
        ok += answered;
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= 300, "only {ok} requests were sent: the load was too light to prove anything");

    let metrics = gateway.metrics().await;
    let (successes, rejections) = (metric_value(&metrics, SUCCESS), metric_value(&metrics, FAILURE));
    eprintln!("{ok} requests, {successes} reloads applied, {rejections} rejected");
    assert!(successes >= 5.0, "only {successes} reloads applied under load: {metrics}");
    assert!(rejections >= 1.0, "no invalid write was ever rejected: {metrics}");
    assert_eq!(split(&gateway).await, (50, 50), "the final table is the last valid write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_ends_with_the_last_one_in_force() {
    let _serial = SIGNALS.read().await;
    let b = backends(&["v1", "v2"]).await;
    let gateway = start(&routes(&b, 10, "start")).await;
    let started = Instant::now();
    let mut every_2ms = tokio::time::interval(Duration::from_millis(2));
    for write in 1..=50u32 {
        every_2ms.tick().await;
        std::fs::write(&gateway.routes_path, routes(&b, write, &format!("burst {write}"))).unwrap();
    }
    let burst = started.elapsed();
    let last = (50, "burst 50".to_owned());
    wait_until("the last write is in force", || in_force(&gateway) == last).await;

    // Nothing older sneaks in afterwards.
    let generation_now = generation(&gateway);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(in_force(&gateway), last);
    assert_eq!(generation(&gateway), generation_now, "a reload after the last write");
    assert_eq!(split(&gateway).await, (50, 50));

    let applied = metric(&gateway, SUCCESS).await - 1.0;
    eprintln!("50 writes in {burst:?}: {applied} reloads");
    assert!(applied < 25.0, "50 writes in {burst:?} caused {applied} reloads: the burst was not debounced");
    assert_eq!(applied as u64, generation_now - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_table_it_started_with() {
    let _serial = SIGNALS.read().await;
    let b = backends(&["v1", "v2"]).await;
    let (slow, mut arrivals, release) = support::gated_backend().await;
    let slow_function = format!(
        "  - name: slow\n    upstream: \"http://{slow}\"\n    triggers:\n      - {{ target: latest, path: /slow }}\n"
    );
    let gateway = start(&(routes(&b, 10, "with slow") + &slow_function)).await;

    let client = gateway.client.clone();
    let in_flight = tokio::spawn(async move { client.get("/slow").await });
    tokio::time::timeout(PATIENCE, arrivals.recv()).await.expect("the request reaches the slow backend").unwrap();

    // Remove the route while the request waits on its backend.
    std::fs::write(&gateway.routes_path, routes(&b, 10, "without slow")).unwrap();
    gateway.wait_for_generation(2).await;
    let gone = gateway.client.get("/slow").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text());
    assert_eq!(gone.json()["error_code"], "APIG.0101");
    assert_eq!(gateway.client.get("/hello-prod").await.status, StatusCode::OK);
    assert!(!in_flight.is_finished(), "the backend has not answered yet");

    release.notify_one();
    let answer = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the request in flight completes")
        .expect("request task");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.text(), "slow");
    assert_eq!(answer.version(), "latest");
}
