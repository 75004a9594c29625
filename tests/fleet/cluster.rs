//! The parts of a fleet under test: a real etcd (Debian's `etcd-server`), graygate replicas
//! as real processes, and a TCP relay between a replica and etcd that a test can cut.
//! Every process is started on free loopback ports with its own temporary directory and is
//! stopped by PID when its handle drops, whatever the test did.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Answer, PATIENCE, TestClient};

pub const TOKEN: &str = "fleet-test-token";
pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";

/// A loopback port that is free now and will stay free until the process it is meant for
/// binds it. Ports are taken below the kernel's ephemeral range (32768 and up on Linux):
/// an ephemeral port found free can be handed to another test's outgoing connection before
/// etcd binds it ("address already in use"), a port below that range only to an explicit
/// bind. Each call moves on from a per-process starting point, so parallel tests (and test
/// binaries) do not try the same ports.
fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}

fn binary(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

/// The graygate binary the replicas run: `GRAYGATE_BIN` (CI points it at the release
/// build, whose timings the propagation figures are about), else this build's.
pub fn graygate() -> String {
    binary("GRAYGATE_BIN", env!("CARGO_BIN_EXE_graygate"))
}

fn kill(child: &mut Child, signal: &str) {
    let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "process {} outlived kill {signal}", child.id());
        std::thread::sleep(Duration::from_millis(10));
    }
}

// === etcd ===

/// One etcd member on loopback; `kill` and `resume` keep its data directory and ports.
pub struct Etcd {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub client_port: u16,
    peer_port: u16,
    scheme: &'static str,
    /// Extra server flags (TLS files, the auth token's TTL).
    server_args: Vec<String>,
    /// Extra etcdctl flags (credentials, TLS files).
    pub ctl_args: Vec<String>,
}

impl Etcd {
    pub async fn start() -> Etcd {
        Etcd::start_with("http", Vec::new(), Vec::new()).await
    }

    /// A member on `scheme` (`https` with TLS flags in `server_args`).
    pub async fn start_with(scheme: &'static str, server_args: Vec<String>, ctl_args: Vec<String>) -> Etcd {
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            client_port: free_port(),
            peer_port: free_port(),
            scheme,
            server_args,
            ctl_args,
        };
        etcd.resume().await;
        etcd
    }

    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client_port)
    }

    /// Starts the member again over the same data (after `kill`).
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd is running already");
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("etcd.log")).unwrap();
        let child = Command::new(binary("ETCD_BIN", "etcd"))
            .args(["--name", "default", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .args(&self.server_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd starts (Debian: apt-get install etcd-server)");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while !self.ctl(&["endpoint", "health"]).0 {
            assert!(Instant::now() < deadline, "etcd not healthy in time:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: etcd goes away without a goodbye, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child, "-KILL");
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// `etcdctl` against this member; panics (with its output) if it fails.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.ctl(args);
        assert!(ok, "etcdctl {args:?}: {stdout}{stderr}");
        stdout
    }

    /// `etcdctl`: (succeeded, stdout, stderr).
    fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(binary("ETCDCTL_BIN", "etcdctl"))
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(), "--dial-timeout", "1s"])
            .args(&self.ctl_args)
            .args(args)
            .output()
            .expect("etcdctl runs (Debian: apt-get install etcd-client)");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }

    /// The current revision (from a read's header).
    pub fn revision(&self) -> i64 {
        let text = self.etcdctl(&["get", "--prefix", "/", "--limit", "1", "-w", "json"]);
        let value: Value = serde_json::from_str(&text).unwrap();
        value["header"]["revision"].as_i64().unwrap()
    }

    /// The set the head names, under `prefix`.
    pub fn current_set(&self, prefix: &str) -> String {
        let head = self.etcdctl(&["get", &format!("{prefix}/routes/head"), "--print-value-only"]);
        let head: Value = serde_json::from_str(head.trim()).unwrap();
        head["set"].as_str().unwrap().to_owned()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

// === relay ===

/// A TCP relay to etcd that can be cut (every connection dropped, new ones refused at
/// once) and restored: a replica behind it loses etcd while the others keep it.
pub struct Relay {
    pub port: u16,
    open: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Relay {
    pub async fn to(target: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (flag, signal) = (Arc::clone(&open), Arc::clone(&cut));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue;
                }
                let signal = Arc::clone(&signal);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = signal.notified() => {}
                    }
                });
            }
        });
        Relay { port, open, cut }
    }

    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

// === replicas ===

/// A graygate process in a fleet.
pub struct Replica {
    child: Option<Child>,
    pub name: String,
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    pub client: TestClient,
}

/// How a replica reaches etcd and how long its registration lives.
pub struct Options<'a> {
    pub endpoints: &'a [String],
    pub lease_ttl_s: u64,
    /// More lines of the `etcd` block (credentials, TLS), each indented two spaces.
    pub etcd_extra: &'a str,
    /// More top-level lines of graygate.yaml.
    pub server_extra: &'a str,
    pub env: &'a [(&'a str, &'a str)],
}

impl<'a> Options<'a> {
    pub fn plain(endpoints: &'a [String]) -> Self {
        Options { endpoints, lease_ttl_s: 10, etcd_extra: "", server_extra: "", env: &[] }
    }
}

/// The `etcd` block of a graygate.yaml for `prefix`.
pub fn etcd_block(endpoints: &[String], extra: &str) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!("etcd:\n  endpoints: [{}]\n  prefix: /fleet-test\n{extra}", endpoints.join(", "))
}

impl Replica {
    /// Starts replica `name` with its config and snapshot in `dir`; does not wait for it.
    pub fn spawn(name: &str, dir: &Path, options: &Options<'_>) -> Replica {
        let (data, admin) = (free_port(), free_port());
        let config = dir.join(format!("{name}.yaml"));
        let extra = format!(
            "  snapshot: {name}.snapshot.json\n  dial_timeout_ms: 500\n  request_timeout_ms: 1000\n  lease_ttl_s: {}\n{}",
            options.lease_ttl_s, options.etcd_extra
        );
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{data}\nadmin_listen: 127.0.0.1:{admin}\n{}admin:\n  tokens: [\"{TOKEN}\"]\n{}",
                etcd_block(options.endpoints, &extra),
                options.server_extra
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut replica = Replica {
            child: None,
            name: name.to_owned(),
            data: SocketAddr::from(([127, 0, 0, 1], data)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            config,
            log,
            env: options.env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            client: TestClient::new(SocketAddr::from(([127, 0, 0, 1], data))),
        };
        replica.restart();
        replica
    }

    /// Starts the process again with the same config (after `kill` or `stop`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is running already", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(graygate())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("GRAYGATE_REPLICA_ID", &self.name)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("graygate starts");
        self.child = Some(child);
    }

    pub async fn start(name: &str, dir: &Path, options: &Options<'_>) -> Replica {
        let replica = Replica::spawn(name, dir, options);
        replica.wait_ready().await;
        replica
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no goodbye (its registration stays until its lease expires).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child, "-KILL");
        }
    }

    /// SIGTERM: drains and revokes its registration.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child, "-TERM");
        }
    }

    pub async fn admin_get(&self, path: &str) -> Option<Answer> {
        let client = TestClient::new(self.admin);
        client.try_request(Method::GET, path, &[("x-auth-token", TOKEN)], Bytes::new()).await
    }

    /// `/readyz`: (ready, generation, revision, connected), `None` while not listening.
    pub async fn readiness(&self) -> Option<(bool, u64, u64, bool)> {
        let answer = self.admin_get("/readyz").await?;
        let text = answer.text();
        let field = |name: &str| {
            text.split_whitespace().find_map(|w| w.trim_matches(['(', ')']).strip_prefix(name)?.parse::<u64>().ok())
        };
        let connected = text.split_whitespace().any(|w| w.trim_matches(['(', ')']) == "connected");
        Some((answer.status == StatusCode::OK, field("generation=")?, field("revision=")?, connected))
    }

    pub async fn wait_ready(&self) {
        self.wait_for(|(ready, ..)| ready, "ready").await;
    }

    /// Polls `/readyz` until `condition` holds; returns what it last read.
    pub async fn wait_for(
        &self,
        condition: impl Fn((bool, u64, u64, bool)) -> bool,
        what: &str,
    ) -> (bool, u64, u64, bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(state) = self.readiness().await
                && condition(state)
            {
                return state;
            }
            assert!(Instant::now() < deadline, "{} never {what}:\n{}", self.name, self.log());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until this replica serves `revision` (or a later one).
    pub async fn wait_revision(&self, revision: u64) -> Duration {
        let started = Instant::now();
        self.wait_for(|(ready, _, served, _)| ready && served >= revision, &format!("served revision {revision}"))
            .await;
        started.elapsed()
    }

    pub async fn revision(&self) -> u64 {
        self.readiness().await.map_or(0, |(_, _, revision, _)| revision)
    }

    pub async fn metrics(&self) -> String {
        self.admin_get("/metrics").await.map(|a| a.text()).unwrap_or_default()
    }

    /// A FunctionGraph call on this replica's admin listener.
    pub async fn fg(&self, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Answer {
        let mut all = vec![("x-auth-token", TOKEN), ("content-type", "application/json")];
        all.extend_from_slice(headers);
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        TestClient::new(self.admin).request(method, path, &all, Bytes::from(text)).await
    }

    /// An ESA call (form parameters) on this replica's admin listener.
    pub async fn esa(&self, action: &str, params: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let headers =
            [("x-auth-token", TOKEN), ("x-acs-action", action), ("content-type", "application/x-www-form-urlencoded")];
        TestClient::new(self.admin).request(Method::POST, "/", &headers, Bytes::from(body)).await
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `graygate routes push|pull` against a replica's config: (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    cli_with(args, &[])
}

pub fn cli_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(graygate()).args(args).envs(env.iter().copied()).output().expect("graygate runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Pushes `routes` (a routes file's text) with `config`; returns the revision it printed.
pub fn push(config: &Path, dir: &Path, routes: &str) -> u64 {
    let file = dir.join(format!("push-{}.yaml", fastrand::u32(..)));
    std::fs::write(&file, routes).unwrap();
    let (code, stdout, stderr) = cli(&["routes", "push", file.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "push failed:\n{stdout}{stderr}");
    stdout
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|r| r.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no revision in {stdout}"))
}

/// `/v2/{project}/fgs/functions/{urn}{tail}` for `function` qualified by `qualifier`.
pub fn functions(function: &str, qualifier: &str, tail: &str) -> String {
    let urn = format!("urn:fss:local:{PROJECT}:function:default:{function}:{qualifier}");
    format!("/v2/{PROJECT}/fgs/functions/{}{tail}", urlencode(&urn))
}

/// `/v2/{project}/fgs/triggers/{urn}`, the URN qualified unless `qualifier` is `None`.
pub fn triggers(function: &str, qualifier: Option<&str>) -> String {
    let mut urn = format!("urn:fss:local:{PROJECT}:function:default:{function}");
    if let Some(qualifier) = qualifier {
        urn = format!("{urn}:{qualifier}");
    }
    format!("/v2/{PROJECT}/fgs/triggers/{}", urlencode(&urn))
}

fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Counts answers by `X-Graygate-Version` over `n` requests to `path` on `replica`.
pub async fn split(replica: &Replica, path: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let answer = replica.client.get(path).await;
        assert_eq!(answer.status, StatusCode::OK, "{}: {}", replica.name, answer.text());
        *counts.entry(answer.version()).or_insert(0) += 1;
    }
    counts
}
