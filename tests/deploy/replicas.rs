//! Two replicas, one ConfigMap: two `graygate serve` processes read one directory laid out as
//! the kubelet lays out a ConfigMap volume,
//!
//! ```text
//!   graygate.yaml -> ..data/graygate.yaml      ..data -> ..2026_01_01_00_00_00.000000001/
//!   routes.yaml   -> ..data/routes.yaml
//! ```
//!
//! with graygate.yaml taken from deploy/kubernetes/base/configmap.yaml (listeners moved to
//! ephemeral loopback ports, the poll fallback pushed out of the way) and the admin token from
//! the environment, as the Secret provides it. Under load on both, `..data` is swapped the
//! kubelet's way (a new timestamped directory, a `..data_tmp` link renamed over `..data`, the
//! old directory removed): both replicas must apply the change within 2 s with zero failed
//! requests, and a sticky alias must send every user to the same version on both replicas,
//! before and after, and back again after a rollback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::files::{read, str_at, yaml_documents};
use crate::support::{PATIENCE, backends, render};

const BIN: &str = env!("CARGO_BIN_EXE_graygate");
const TOKEN: &str = "replicas-test-token";
/// Both replicas must apply a ConfigMap change this soon after the `..data` swap.
const APPLY_WITHIN: Duration = Duration::from_secs(2);
const USERS: usize = 400;

const ROUTES: &str = r#"project_id: p1
functions:
  - name: hello
    upstream: "@v1@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
    aliases:
      - { name: prod, version: v1, additional_version_weights: { v2: @prod@ } }
      - { name: pinned, version: v1, additional_version_weights: { v2: @pinned@ }, sticky: { header: x-user-id } }
    triggers:
      - { target: prod }
      - { target: pinned }
"#;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A `graygate serve` process, killed and reaped when dropped.
struct Replica {
    child: Child,
    log: PathBuf,
    data: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts `graygate serve --config DIR/graygate.yaml` and reads its listeners from its log.
    async fn start(config_dir: &Path, logs: &Path, name: &str) -> Replica {
        let log = logs.join(format!("{name}.log"));
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config_dir.join("graygate.yaml"))
            .env("GRAYGATE_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(logs.join(format!("{name}.err"))).unwrap())
            .spawn()
            .expect("graygate starts");
        let mut replica = Replica { child, log, data: crate::support::local(), admin: crate::support::local() };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = strip_ansi(&std::fs::read_to_string(&replica.log).unwrap_or_default());
            if let Some(line) = text.lines().find(|l| l.contains("graygate started")) {
                replica.data = field(line, "data_addr=");
                replica.admin = field(line, "admin_addr=");
                return replica;
            }
            if let Some(status) = replica.child.try_wait().unwrap() {
                panic!("{name} exited ({status}) before it started:\n{text}\n{}", replica.stderr(logs, name));
            }
            assert!(Instant::now() < deadline, "{name} did not start:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stderr(&self, logs: &Path, name: &str) -> String {
        std::fs::read_to_string(logs.join(format!("{name}.err"))).unwrap_or_default()
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field(line: &str, key: &str) -> SocketAddr {
    let start = line.find(key).unwrap_or_else(|| panic!("no {key} in {line}")) + key.len();
    line[start..].split_whitespace().next().unwrap().parse().unwrap_or_else(|e| panic!("{key} in {line}: {e}"))
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http()
}

/// GET `url` with `headers`: (status, X-Graygate-Version, body), or the error as text.
async fn get(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Result<(StatusCode, String, String), String> {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::new()).unwrap();
    let response = tokio::time::timeout(PATIENCE, client.request(request))
        .await
        .map_err(|_| format!("{url}: no answer in time"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let version =
        response.headers().get("x-graygate-version").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .map_err(|_| format!("{url}: body not in time"))?
        .map_err(|e| format!("{url}: body: {e}"))?
        .to_bytes();
    Ok((status, version, String::from_utf8_lossy(&body).into_owned()))
}

/// The routing generation a replica reports on /readyz.
async fn generation(client: &HttpClient, replica: &Replica) -> u64 {
    let (status, _, body) = get(client, &format!("http://{}/readyz", replica.admin), &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body.trim()
        .strip_prefix("ready generation=")
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("/readyz: {body}"))
}

/// graygate.yaml as the ConfigMap ships it, with its listeners on ephemeral loopback ports
/// (two replicas share one host here) and the poll fallback out of the way (so that only
/// the directory watch can apply a change within `APPLY_WITHIN`).
fn server_config() -> String {
    let configmap = yaml_documents(&read("deploy/kubernetes/base/configmap.yaml"), "configmap.yaml").remove(0);
    let mut text = str_at(&configmap, "/data/graygate.yaml", "ConfigMap").to_owned();
    for (from, to) in [
        ("listen: 0.0.0.0:8080", "listen: 127.0.0.1:0"),
        ("admin_listen: 0.0.0.0:9090", "admin_listen: 127.0.0.1:0"),
        ("poll_ms: 5000", "poll_ms: 3600000"),
    ] {
        assert!(text.contains(from), "the ConfigMap's graygate.yaml has no `{from}`:\n{text}");
        text = text.replace(from, to);
    }
    assert!(text.contains("${GRAYGATE_ADMIN_TOKEN}"));
    text
}

fn routes(backends: &std::collections::HashMap<String, SocketAddr>, prod: u32, pinned: u32) -> String {
    render(ROUTES, backends).replace("@prod@", &prod.to_string()).replace("@pinned@", &pinned.to_string())
}

/// Writes a timestamped directory with `files` and points `..data` at it the kubelet's way:
/// `..data_tmp` created, renamed over `..data` (atomic), the previous directory removed.
fn publish(base: &Path, stamp: &str, files: &[(&str, &str)], previous: Option<&str>) {
    std::fs::create_dir(base.join(stamp)).unwrap();
    for (name, content) in files {
        std::fs::write(base.join(stamp).join(name), content).unwrap();
    }
    symlink(stamp, base.join("..data_tmp")).unwrap();
    std::fs::rename(base.join("..data_tmp"), base.join("..data")).unwrap();
    match previous {
        Some(previous) => std::fs::remove_dir_all(base.join(previous)).unwrap(),
        None => {
            for (name, _) in files {
                symlink(format!("..data/{name}"), base.join(name)).unwrap();
            }
        }
    }
}

/// The version each of `USERS` users gets from a replica's sticky alias.
async fn sticky_versions(client: &HttpClient, replica: &Replica) -> Vec<String> {
    let mut versions = Vec::with_capacity(USERS);
    for user in 0..USERS {
        let id = format!("user-{user}");
        let url = format!("http://{}/hello-pinned", replica.data);
        let (status, version, body) = get(client, &url, &[("x-user-id", &id)]).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        versions.push(version);
    }
    versions
}

async fn assert_same_versions(client: &HttpClient, a: &Replica, b: &Replica, v2_percent: usize) -> Vec<String> {
    let (on_a, on_b) = tokio::join!(sticky_versions(client, a), sticky_versions(client, b));
    let differ: Vec<usize> = (0..USERS).filter(|&u| on_a[u] != on_b[u]).collect();
    assert!(differ.is_empty(), "users {differ:?} get different versions from the two replicas");
    let on_v2 = on_a.iter().filter(|v| *v == "v2").count();
    let expected = USERS * v2_percent / 100;
    assert!(on_v2.abs_diff(expected) <= USERS / 10, "{on_v2} of {USERS} users on v2 at {v2_percent} %");
    assert_eq!(on_a.iter().filter(|v| *v == "v1").count() + on_v2, USERS);
    on_a
}

/// 100 sequential requests to /hello-prod on a replica: (v1, v2).
async fn split(client: &HttpClient, replica: &Replica) -> (usize, usize) {
    let mut counts = BTreeMap::new();
    for _ in 0..100 {
        let (status, version, body) = get(client, &format!("http://{}/hello-prod", replica.data), &[]).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        *counts.entry(version).or_insert(0) += 1;
    }
    (counts.get("v1").copied().unwrap_or(0), counts.get("v2").copied().unwrap_or(0))
}

/// Load on both replicas until `stop`: (answers, failures as text).
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(replicas: &[&Replica], per_replica: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for replica in replicas {
            for _ in 0..per_replica {
                let url = format!("http://{}/hello-prod", replica.data);
                let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
                workers.push(tokio::spawn(async move {
                    let client = client();
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match get(&client, &url, &[]).await {
                            Ok((StatusCode::OK, version, _)) if version == "v1" || version == "v2" => {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((status, version, body)) => failures.push(format!("{status} {version:?} {body}")),
                            Err(error) => failures.push(error),
                        }
                    }
                    failures
                }));
            }
        }
        Load { stop, answered, workers }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for worker in self.workers {
            failures.extend(tokio::time::timeout(PATIENCE, worker).await.expect("load stops").unwrap());
        }
        (self.answered.load(Ordering::Relaxed), failures)
    }
}

/// Swaps `..data` under load and returns how long each replica took to apply it.
async fn swap_under_load(
    base: &Path,
    files: &[(&str, &str)],
    stamps: (&str, &str),
    replicas: [&Replica; 2],
    expected_generation: u64,
) -> [Duration; 2] {
    let probe = client();
    let load = Load::start(&replicas, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    publish(base, stamps.1, files, Some(stamps.0));
    let swapped = Instant::now();
    let mut applied = [None, None];
    while applied.iter().any(Option::is_none) {
        for (i, replica) in replicas.iter().enumerate() {
            if applied[i].is_none() && generation(&probe, replica).await >= expected_generation {
                applied[i] = Some(swapped.elapsed());
            }
        }
        assert!(swapped.elapsed() < PATIENCE, "not applied after {PATIENCE:?}: {applied:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (answered, failures) = load.finish().await;
    assert!(failures.is_empty(), "{} failed requests during the swap, first: {:?}", failures.len(), &failures[..1]);
    assert!(answered >= 200, "only {answered} requests during the swap: too little load to prove anything");
    eprintln!("swap to {}: {answered} requests, 0 failed; applied after {applied:?}", stamps.1);
    applied.map(Option::unwrap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_apply_a_configmap_swap_alike_within_2s_without_failures() {
    let b = backends(&["v1", "v2"]).await;
    let server = server_config();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let logs = tempfile::tempdir().unwrap();
    let stamps =
        ["..2026_01_01_00_00_00.000000001", "..2026_01_01_00_01_00.000000002", "..2026_01_01_00_02_00.000000003"];

    let first = routes(&b, 10, 30);
    publish(base, stamps[0], &[("graygate.yaml", &server), ("routes.yaml", &first)], None);
    assert!(std::fs::symlink_metadata(base.join("routes.yaml")).unwrap().file_type().is_symlink());
    let a = Replica::start(base, logs.path(), "a").await;
    let c = Replica::start(base, logs.path(), "b").await;
    let probe = client();
    assert_eq!((generation(&probe, &a).await, generation(&probe, &c).await), (1, 1));

    // The admin token reached both through the environment.
    let aliases = "/v2/p1/fgs/functions/urn:fss:local:p1:function:default:hello:latest/aliases";
    for replica in [&a, &c] {
        let url = format!("http://{}{aliases}", replica.admin);
        let (status, _, body) = get(&probe, &url, &[("x-auth-token", TOKEN)]).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(get(&probe, &url, &[]).await.unwrap().0, StatusCode::UNAUTHORIZED);
    }

    assert_eq!(split(&probe, &a).await, (90, 10));
    assert_eq!(split(&probe, &c).await, (90, 10));
    let before = assert_same_versions(&probe, &a, &c, 30).await;

    // Raise both canaries: prod 10 → 50 %, pinned 30 → 60 %.
    let raised = routes(&b, 50, 60);
    let took = swap_under_load(
        base,
        &[("graygate.yaml", &server), ("routes.yaml", &raised)],
        (stamps[0], stamps[1]),
        [&a, &c],
        2,
    )
    .await;
    assert!(took.iter().all(|t| *t < APPLY_WITHIN), "applied after {took:?}, more than {APPLY_WITHIN:?}");
    assert_eq!(split(&probe, &a).await, (50, 50));
    assert_eq!(split(&probe, &c).await, (50, 50));
    let after = assert_same_versions(&probe, &a, &c, 60).await;
    let moved_back: Vec<usize> = (0..USERS).filter(|&u| before[u] == "v2" && after[u] != "v2").collect();
    assert!(moved_back.is_empty(), "raising a weight moved users {moved_back:?} off v2");

    // Roll back: the old split, and every user back on the version they had.
    let took = swap_under_load(
        base,
        &[("graygate.yaml", &server), ("routes.yaml", &first)],
        (stamps[1], stamps[2]),
        [&a, &c],
        3,
    )
    .await;
    assert!(took.iter().all(|t| *t < APPLY_WITHIN), "rollback applied after {took:?}, more than {APPLY_WITHIN:?}");
    assert_eq!(split(&probe, &a).await, (90, 10));
    assert_eq!(split(&probe, &c).await, (90, 10));
    let rolled_back = assert_same_versions(&probe, &a, &c, 30).await;
    assert_eq!(rolled_back, before, "after the rollback every user has the version they had before");

    // One swap, one reload: nothing else was applied, nothing was rejected.
    for replica in [&a, &c] {
        assert_eq!(generation(&probe, replica).await, 3);
        let (_, _, metrics) = get(&probe, &format!("http://{}/metrics", replica.admin), &[]).await.unwrap();
        assert!(metrics.contains("graygate_config_reloads_total{result=\"failure\"} 0"), "{metrics}");
        assert!(metrics.contains("graygate_config_reloads_total{result=\"success\"} 3"), "{metrics}");
    }
}
