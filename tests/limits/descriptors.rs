//! At the file-descriptor limit: a gateway whose `accept` fails with EMFILE keeps its log
//! to a line per listener per 10 s, counts the failures, and does not record a routes file
//! it could not open as a rejected configuration; once descriptors free up it serves and
//! applies the file it missed.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::ROUTES;
use crate::support::{PATIENCE, TestClient, backends, metric_value, render, save_by_rename};

const FD_LIMIT: u32 = 256;
const CLIENTS: usize = 400;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// `graygate serve` under `ulimit -n FD_LIMIT`, its log in a file outside the routes
/// directory (a log beside the routes would wake the watcher on every line).
struct Limited {
    child: Child,
    log: std::path::PathBuf,
}

impl Limited {
    fn spawn(config: &Path, log: &Path) -> Limited {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" serve --config \"$1\""))
            .arg(env!("CARGO_BIN_EXE_graygate"))
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Limited { child, log: log.to_owned() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn lines(&self) -> usize {
        self.log().lines().count()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until(what: &str, gateway: &Limited, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} in time\n{}", gateway.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_the_log_stays_quiet_and_no_configuration_is_rejected() {
    let b = backends(&["v1", "v2"]).await;
    let dir = tempfile::tempdir().unwrap();
    let routes_dir = dir.path().join("state");
    std::fs::create_dir(&routes_dir).unwrap();
    let routes_path = routes_dir.join("routes.yaml");
    std::fs::write(&routes_path, render(ROUTES, &b)).unwrap();
    let (data, admin) = (free_addr(), free_addr());
    let config = routes_dir.join("graygate.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {data}\nadmin_listen: {admin}\nroutes: routes.yaml\nreload:\n  debounce_ms: 50\n  poll_ms: 500\n"
        ),
    )
    .unwrap();
    let gateway = Limited::spawn(&config, &dir.path().join("graygate.log"));
    let (client, admin_client) = (TestClient::new(data), TestClient::new(admin));
    let served = async || client.try_request(Method::GET, "/hello", &[], Bytes::new()).await;
    let metrics = async || {
        let answer = admin_client.try_request(Method::GET, "/metrics", &[], Bytes::new()).await?;
        (answer.status == StatusCode::OK).then(|| answer.text())
    };
    wait_until("the gateway serves", &gateway, async || served().await.is_some()).await;

    // Hold more connections than the process may have descriptors: accepts start failing.
    let held: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        (0..CLIENTS).map(|_| TcpStream::connect_timeout(&data, PATIENCE).unwrap()).collect()
    })
    .await
    .unwrap();
    wait_until("accepts fail at the limit", &gateway, async || gateway.log().contains("accept failed")).await;

    // A valid change of the routes file while the process cannot open it.
    save_by_rename(&routes_path, &render(&ROUTES.replace("@v1@", "@v2@"), &b));
    let before = gateway.lines();
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let grown = gateway.lines() - before;
    assert!(
        grown <= 3,
        "{grown} log lines in {window:?} at the descriptor limit (at most one per listener and one for the routes file)\n{}",
        gateway.log()
    );

    drop(held);
    // Descriptors free again: the admin listener answers and the missed change is applied.
    wait_until("the changed routes are applied after the limit", &gateway, async || {
        metrics().await.is_some_and(|text| metric_value(&text, "graygate_config_generation") >= 2.0)
    })
    .await;
    let text = metrics().await.unwrap();
    let accept_errors = metric_value(&text, r#"graygate_accept_errors_total{listener="data"}"#);
    assert!(accept_errors >= 10.0, "failed accepts are counted: {accept_errors}\n{text}");
    let failure = metric_value(&text, r#"graygate_config_reloads_total{result="failure"}"#);
    assert_eq!(failure, 0.0, "a file that could not be opened is no rejected configuration\n{}", gateway.log());
    let error = metric_value(&text, r#"graygate_config_reloads_total{result="error"}"#);
    assert!(error >= 1.0, "the failed read is counted as an I/O error: {error}\n{text}");
    assert_eq!(client.get("/hello").await.json()["version"], "v2", "the changed routes serve");
    let failed = gateway.log().matches("accept failed").count();
    assert!(failed <= 2, "accept failures are logged once per 10 s, not per failure:\n{}", gateway.log());
}
