//! Operating graygate day to day: the access log (why each request got its version), the
//! audit trail of every change, and the status page's data, through real gateways,
//! upstreams and clients on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod access_log;
mod rotation;
mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::PATIENCE;

/// The JSON lines of a file once it holds at least `n` of them.
async fn wait_for_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= n {
            return lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} holds {} line(s), expected {n}:\n{text}",
            path.display(),
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A file in a directory the test owns.
fn file_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
