//! A fleet of graygate replicas over one etcd prefix, all real: etcd from Debian's
//! `etcd-server`, replicas as `graygate serve` processes, backends and clients over
//! loopback sockets. What a user of a fleet is promised: a change through any replica is
//! served by every replica within a second; conflicting changes through two replicas commit
//! once; an etcd outage fails no data-plane request; a state nobody should serve is refused.
//!
//! Needs `etcd` and `etcdctl` (`ETCD_BIN`, `ETCDCTL_BIN` override them), which a fresh
//! machine does not have: `cargo test` leaves this suite out (`test = false` in
//! Cargo.toml) and `.ci/run` installs etcd and runs `cargo test --test fleet`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod cluster;
mod conflicts;
mod outage;
mod propagation;
mod secure;
mod state;
mod view;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use cluster::{Etcd, Options, Replica};

/// Function `hello` (three versions, alias `prod` at v1 on `/hello-prod`) and `other`.
const ROUTES: &str = r#"
project_id: 0123456789abcdef0123456789abcdef
functions:
  - name: hello
    upstream: "@latest@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
      - { version: v3, upstream: "@v3@" }
    aliases:
      - { name: prod, version: v1 }
    triggers:
      - { target: prod }
  - name: other
    upstream: "@latest@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
"#;

/// etcd, the backends, and replicas over the pushed `ROUTES`.
pub struct Fleet {
    pub replicas: Vec<Replica>,
    pub etcd: Etcd,
    pub backends: HashMap<String, SocketAddr>,
    /// The revision the initial push stored.
    pub pushed: u64,
    pub dir: tempfile::TempDir,
}

impl Fleet {
    pub async fn start(names: &[&str]) -> Fleet {
        Fleet::start_with(names, 10, |etcd| vec![etcd.endpoint()]).await
    }

    /// `endpoints` says how each replica reaches etcd (directly, or through a relay).
    pub async fn start_with(names: &[&str], lease_ttl_s: u64, endpoints: impl Fn(&Etcd) -> Vec<String>) -> Fleet {
        let etcd = Etcd::start().await;
        let backends = support::backends(&["latest", "v1", "v2", "v3"]).await;
        let dir = tempfile::tempdir().unwrap();
        let pushed = cluster::push(&push_config(&etcd, &dir), dir.path(), &support::render(ROUTES, &backends));
        let mut replicas = Vec::new();
        for name in names {
            let endpoints = endpoints(&etcd);
            let options = Options { lease_ttl_s, ..Options::plain(&endpoints) };
            replicas.push(Replica::spawn(name, dir.path(), &options));
        }
        for replica in &replicas {
            replica.wait_revision(pushed).await;
        }
        Fleet { replicas, etcd, backends, pushed, dir }
    }

    /// A config the CLI can push and pull with.
    pub fn config(&self) -> PathBuf {
        push_config(&self.etcd, &self.dir)
    }

    /// Waits until every replica serves `revision`; the slowest one's wait.
    pub async fn converge(&self, revision: u64) -> std::time::Duration {
        let mut slowest = std::time::Duration::ZERO;
        for replica in &self.replicas {
            slowest = slowest.max(replica.wait_revision(revision).await);
        }
        slowest
    }
}

fn push_config(etcd: &Etcd, dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("push.yaml");
    std::fs::write(&path, cluster::etcd_block(&[etcd.endpoint()], "")).unwrap();
    path
}
