//! The `graygate` binary itself: `check`, `demo --self-test` and a graceful `serve` stop.
//!
//! Every child process is bounded in time and killed when a test fails (see `Running`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{PATIENCE, TestClient};

const BIN: &str = env!("CARGO_BIN_EXE_graygate");

/// A child process that is killed (and reaped) when dropped, whatever the test did.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _logs: tempfile::TempDir,
}

impl Running {
    fn spawn(args: &[&str], cwd: &Path) -> Running {
        let logs = tempfile::tempdir().unwrap();
        let stdout = logs.path().join("stdout");
        let stderr = logs.path().join("stderr");
        let child = Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("graygate starts");
        Running { child, stdout, stderr, _logs: logs }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Both streams, for failure messages.
    fn output(&self) -> String {
        format!("--- stdout ---\n{}--- stderr ---\n{}", self.stdout(), self.stderr())
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Blocks (this thread) until the process exits; fails the test after `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(Instant::now() < deadline, "graygate still running after {limit:?}\n{}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like `wait`, without blocking the async runtime.
    async fn wait_async(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(Instant::now() < deadline, "graygate still running after {limit:?}\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `graygate ARGS` in `cwd` to completion, within `limit`.
fn run(args: &[&str], cwd: &Path, limit: Duration) -> (ExitStatus, String, String) {
    let mut running = Running::spawn(args, cwd);
    let status = running.wait(limit);
    (status, running.stdout(), running.stderr())
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Each line with its runs of spaces collapsed, so column alignment does not matter.
fn squeezed(text: &str) -> Vec<String> {
    text.lines().map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

/// A directory with `graygate.yaml` (`server`) and `routes.yaml` (`routes`).
fn config_dir(server: &str, routes: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("graygate.yaml"), server).unwrap();
    std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();
    dir
}

const VALID_ROUTES: &str = "project_id: p1\nfunctions:\n  - name: hello\n    upstream: \"http://127.0.0.1:9001\"\n    triggers:\n      - { target: latest }\n";

#[test]
fn check_accepts_the_shipped_config_and_prints_a_summary() {
    let (status, stdout, stderr) =
        run(&["check", "--config", "config/graygate.yaml"], manifest_dir(), Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines = squeezed(&stdout);
    for expected in [
        "config/graygate.yaml: ok (listen 127.0.0.1:8080, admin 127.0.0.1:9090)",
        "config/routes.yaml: ok (project 7aad83af3e8d42e99ac194e8419e2c9b, region local): 1 function(s), 2 version(s), 2 alias(es), 4 trigger(s)",
        "function hello (package default, timeout 30000 ms); latest -> http://127.0.0.1:9001",
        "version v1 -> http://127.0.0.1:9001",
        "version v2 -> http://127.0.0.1:9002",
        "alias prod -> v1 90%, v2 10%",
        "alias beta -> v1 100%; v2 when x-user-group in beta,qa",
        "trigger API_helloprod /hello-prod -> prod",
        "trigger API_hello_beta /shop/hello -> beta",
        "trigger API_hellov1 /hello-v1 -> v1",
        "trigger API_hellolatest /hello-latest -> latest",
    ] {
        assert!(lines.iter().any(|line| line == expected), "no line {expected:?} in:\n{stdout}");
    }
}

#[test]
fn check_reports_every_problem_with_file_line_and_field() {
    let routes = [
        "project_id: p1",
        "region: local",
        "functions:",
        "  - name: hello",
        "    upstream: \"http://127.0.0.1:9001\"",
        "    versions:",
        "      - version: v1",
        "        upstream: \"http://127.0.0.1:9001\"",
        "      - version: v2",
        "        upstream: \"http://127.0.0.1:9002\"",
        "    aliases:",
        "      - name: prod",
        "        version: v1",
        "        additional_version_weights: { v9: 10 }",
        "    triggers:",
        "      - { target: prod }",
        "      - { target: nope }",
    ];
    assert!(routes[13].contains("v9") && routes[16].contains("nope"), "line numbers below are 14 and 17");
    let dir = config_dir("routes: routes.yaml\n", &(routes.join("\n") + "\n"));
    let config = dir.path().join("graygate.yaml");

    let (status, stdout, stderr) =
        run(&["check", "--config", config.to_str().unwrap()], dir.path(), Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    for expected in [
        "routes.yaml:14: functions[0].aliases[0].additional_version_weights.v9: version \"v9\" does not exist",
        "routes.yaml:17: functions[0].triggers[1].target: \"nope\" is neither latest, a version nor an alias of \"hello\"",
        "graygate: 2 problem(s); nothing was applied",
    ] {
        assert!(lines.contains(&expected), "no line {expected:?} in stderr:\n{stderr}");
    }
    assert!(!stdout.contains("ok"), "an invalid file is not summarised:\n{stdout}");
}

#[test]
fn check_rejects_an_unknown_field_in_the_server_config() {
    for (server, field) in [
        ("routes: routes.yaml\nlisten_port: 8080\n", "listen_port"),
        ("routes: routes.yaml\ntimeouts:\n  request_msec: 5000\n", "request_msec"),
    ] {
        let dir = config_dir(server, VALID_ROUTES);
        let config = dir.path().join("graygate.yaml");
        let (status, stdout, stderr) =
            run(&["check", "--config", config.to_str().unwrap()], dir.path(), Duration::from_secs(30));
        assert_eq!(status.code(), Some(1), "{server}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stderr.contains(&format!("unknown field `{field}`")), "{server}\nstderr:\n{stderr}");
        assert!(stderr.contains("graygate.yaml"), "the message names the file:\n{stderr}");
    }

    // The same directory with the field removed is fine: the field was the only problem.
    let dir = config_dir("routes: routes.yaml\n", VALID_ROUTES);
    let config = dir.path().join("graygate.yaml");
    let (status, stdout, stderr) =
        run(&["check", "--config", config.to_str().unwrap()], dir.path(), Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
}

#[test]
fn demo_self_test_passes() {
    let (status, stdout, stderr) = run(
        &["demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--self-test"],
        manifest_dir(),
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.lines().any(|line| line == "self-test: ok"), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(r#"{"v1": 90, "v2": 10}"#), "the split is printed:\n{stdout}");
}

/// A port nothing listens on right now (bound, then released).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Ok(_) => false,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_drains_requests_in_flight_on_sigterm_and_exits_0() {
    let (backend, mut arrivals, release) = support::gated_backend().await;
    let (data_port, admin_port) = free_ports();
    let data = SocketAddr::from(([127, 0, 0, 1], data_port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let dir = config_dir(
        &format!("listen: {data}\nadmin_listen: {admin}\nroutes: routes.yaml\ntimeouts:\n  shutdown_grace_ms: 10000\n"),
        &format!(
            "project_id: p1\nfunctions:\n  - name: slow\n    upstream: \"http://{backend}\"\n    triggers:\n      - {{ target: latest, path: /slow }}\n"
        ),
    );
    let config = dir.path().join("graygate.yaml");
    let mut gateway = Running::spawn(&["serve", "--config", config.to_str().unwrap()], dir.path());

    // Ready when the admin listener answers /healthz.
    let probe: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let healthz: http::Uri = format!("http://{admin}/healthz").parse().unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(1), probe.get(healthz.clone())).await
            && response.status() == StatusCode::OK
        {
            break;
        }
        if let Some(status) = gateway.exited() {
            panic!("graygate exited ({status}) before it was ready\n{}", gateway.output());
        }
        assert!(Instant::now() < deadline, "graygate never answered /healthz\n{}", gateway.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(probe);

    // A request in flight: it has reached the backend, which holds the answer.
    let client = TestClient::new(data);
    let in_flight = tokio::spawn(async move { client.get("/slow").await });
    tokio::time::timeout(PATIENCE, arrivals.recv()).await.expect("the request reaches the backend").unwrap();

    let pid = gateway.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(status.success(), "kill -TERM failed: {status}");

    // Draining: the listener is closed at once, the process waits for the request.
    let deadline = Instant::now() + PATIENCE;
    while !refused(data) {
        assert!(Instant::now() < deadline, "the data listener stayed open after SIGTERM\n{}", gateway.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gateway.exited().is_none(), "graygate exited with a request in flight\n{}", gateway.output());
    assert!(!in_flight.is_finished(), "the backend has not answered yet");

    release.notify_one();
    let answer = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the request in flight completes")
        .expect("request task");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.text(), "slow");

    let status = gateway.wait_async(PATIENCE).await;
    assert_eq!(status.code(), Some(0), "graygate did not exit cleanly\n{}", gateway.output());
    assert!(refused(data), "the data port still accepts connections after exit");
    assert!(refused(admin), "the admin port still accepts connections after exit");
    let logs = gateway.output();
    assert!(logs.contains("stop signal received"), "{logs}");
}
