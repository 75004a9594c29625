//! deploy/, checked: the Kubernetes manifests' structure (the base and the etcd overlay), the
//! Grafana dashboard's queries, the Prometheus rules' metric names, and two graygate processes
//! over one ConfigMap-style directory (real processes, real sockets on 127.0.0.1).
//!
//! The rest runs outside `cargo test`, from `.ci/run` (it needs Prometheus and a release
//! build): `promtool` on deploy/prometheus, `tests/deploy/prometheus_scrape.py` (a real
//! Prometheus scraping a real gateway), `tests/deploy/dockerfile.py` (the image's stages
//! replayed without a container engine) and `kubernetes-validate` on the manifests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod dashboard;
mod etcd_overlay;
mod files;
mod manifests;
mod promql;
mod replicas;
