//! logrotate's convention, against the real binary: the log file is renamed, the process
//! keeps writing to the renamed file until SIGUSR1 asks it to reopen, then writes a new one.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::StatusCode;

use super::support::{self, PATIENCE, TestClient};
use super::{file_in, wait_for_lines};

const BIN: &str = env!("CARGO_BIN_EXE_graygate");

/// The child is killed and reaped whatever the test did.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Waits until the gateway answers on `client`'s address.
async fn until_serving(client: &TestClient) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while client.try_request(http::Method::GET, "/hello-latest", &[], bytes::Bytes::new()).await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "graygate never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn requests(client: &TestClient, n: usize) {
    for _ in 0..n {
        assert_eq!(client.get("/hello-latest").await.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_access_log_after_a_rename() {
    let backend = support::backends(&["v1"]).await["v1"];
    let dir = tempfile::tempdir().unwrap();
    let (data, admin) = (free_port(), free_port());
    std::fs::write(
        file_in(&dir, "routes.yaml"),
        format!("project_id: p\nfunctions:\n  - name: hello\n    upstream: \"http://{backend}\"\n    triggers:\n      - {{ target: latest }}\n"),
    )
    .unwrap();
    std::fs::write(
        file_in(&dir, "graygate.yaml"),
        format!("listen: {data}\nadmin_listen: {admin}\nroutes: routes.yaml\naccess_log: {{ path: access.log }}\n"),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config", file_in(&dir, "graygate.yaml").to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    let client = TestClient::new(data);
    until_serving(&client).await;

    let (log, rotated) = (file_in(&dir, "access.log"), file_in(&dir, "access.log.1"));
    requests(&client, 2).await;
    let served_before = wait_for_lines(&log, 3).await.len();
    std::fs::rename(&log, &rotated).unwrap();
    requests(&client, 2).await;
    wait_for_lines(&rotated, served_before + 2).await;
    assert!(!log.exists(), "nothing reopens the file before the signal");

    let signalled = Command::new("kill").args(["-USR1", &running.0.id().to_string()]).status().unwrap();
    assert!(signalled.success());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !log.exists() {
        assert!(tokio::time::Instant::now() < deadline, "SIGUSR1 did not reopen {}", log.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    requests(&client, 4).await;
    let fresh = wait_for_lines(&log, 4).await;
    assert_eq!(fresh.len(), 4, "only the requests after the reopen");
    assert!(fresh.iter().all(|l| l["function"] == "hello" && l["status"] == 200));
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), served_before + 2, "the rotated file is left alone:\n{old}");
}
