//! `GET /graygate/v1/status`: what the status page shows, as JSON. Every alias with its
//! configured split beside the share each version really got over the last minute, each
//! version's request rate, error ratio and p99, the store's state, and the fleet.
//!
//! The configured side comes from the table in force; the observed side from the same
//! counters `/metrics` exports ([`crate::metrics::window`]), so the two pages agree: each
//! route's `total` is its `graygate_requests_total` summed over status codes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Reply, json_reply};
use crate::metrics::Metrics;
use crate::metrics::window::{Delta, History, STEP, Snapshot, quantile};
use crate::routes::{AliasSpec, FunctionSpec};
use crate::store::RoutesStore;

/// The status endpoint's state: the metrics it reads and the last minute of snapshots.
pub struct Status {
    metrics: Metrics,
    history: Arc<History>,
}

#[derive(Serialize)]
struct AliasStatus {
    name: String,
    version: String,
    /// Percent per version, as configured (the alias's own version gets the rest).
    configured: Vec<Share>,
    /// Header rules that send matching requests to a version, before the weights.
    rules: Vec<String>,
    sticky: Option<String>,
    /// Requests through this alias's triggers in the window, and each version's share.
    requests: u64,
    observed: Vec<Share>,
    /// Requests through this alias's triggers since the gateway started (`/metrics`).
    total: u64,
}

#[derive(Serialize)]
struct Share {
    version: String,
    percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<u64>,
}

#[derive(Serialize)]
struct VersionStatus {
    version: String,
    requests: u64,
    rate: f64,
    errors: u64,
    error_ratio: f64,
    p99_ms: Option<f64>,
}

// === impl Status ===

impl Status {
    /// Takes the first snapshot now, before any request is served: a gateway younger than
    /// the window counts from its start.
    pub fn new(metrics: Metrics) -> Self {
        let history = Arc::new(History::new());
        history.keep(Snapshot::take(&metrics));
        Status { metrics, history }
    }

    /// Takes a snapshot of the counters every few seconds until shutdown.
    pub fn spawn_sampler(&self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let (metrics, history) = (self.metrics.clone(), Arc::clone(&self.history));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + STEP, STEP);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => history.keep(Snapshot::take(&metrics)),
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        })
    }

    pub fn render(&self, store: &RoutesStore) -> Reply {
        let now = Snapshot::take(&self.metrics);
        let delta = self.history.last_minute(&now);
        let counts = Counts::of(&delta, &now);
        let table = store.current();
        let spec = table.source().spec();
        let status = store.status();
        let functions: Vec<Value> = spec.functions.iter().map(|f| function(f, &counts, &delta)).collect();
        let fleet = store.fleet();
        json_reply(
            StatusCode::OK,
            &json!({
                "replica": store.replica_id(),
                "mode": status.mode,
                "ready": status.ready,
                "connected": status.connected,
                "generation": status.generation,
                "revision": status.revision,
                "last_rejection": status.last_rejection.map(|r| json!({
                    "revision": r.revision, "at": r.at, "problems": r.problems,
                })),
                "reloads": self.reloads(),
                "window_seconds": (delta.seconds * 10.0).round() / 10.0,
                "project_id": spec.project_id,
                "functions": functions,
                "fleet": fleet,
            }),
        )
    }

    fn reloads(&self) -> BTreeMap<&'static str, u64> {
        ["success", "failure", "error", "unchanged"].into_iter().map(|r| (r, self.metrics.reloads_of(r))).collect()
    }
}

/// The counters grouped once per page (a lookup per alias and version, not a scan of every
/// series: with 10,000 functions a scan each would be quadratic).
struct Counts<'d> {
    /// (function, target) → version → requests, in the window and since start.
    window: HashMap<(&'d str, &'d str), BTreeMap<&'d str, u64>>,
    total: HashMap<(&'d str, &'d str), u64>,
    /// (function, version) → (requests, 5xx answers) in the window.
    versions: HashMap<(&'d str, &'d str), (u64, u64)>,
}

impl<'d> Counts<'d> {
    fn of(delta: &'d Delta, now: &'d Snapshot) -> Self {
        let mut counts = Counts { window: HashMap::new(), total: HashMap::new(), versions: HashMap::new() };
        for ((function, target, version, code), count) in &delta.requests {
            *counts.window.entry((function, target)).or_default().entry(version).or_default() += count;
            let entry = counts.versions.entry((function, version)).or_default();
            entry.0 += count;
            if code.starts_with('5') {
                entry.1 += count;
            }
        }
        for ((function, target, _, _), count) in &now.requests {
            *counts.total.entry((function, target)).or_default() += count;
        }
        counts
    }
}

fn function(spec: &FunctionSpec, counts: &Counts<'_>, delta: &Delta) -> Value {
    let aliases: Vec<AliasStatus> = spec.aliases.iter().map(|alias| alias_status(spec, alias, counts)).collect();
    let mut versions: Vec<&str> = spec.versions.iter().map(|v| v.version.as_str()).collect();
    versions.push("latest");
    let versions: Vec<VersionStatus> =
        versions.into_iter().map(|v| version_status(&spec.name, v, counts, delta)).collect();
    json!({ "name": spec.name, "aliases": aliases, "versions": versions })
}

fn alias_status(function: &FunctionSpec, alias: &AliasSpec, counts: &Counts<'_>) -> AliasStatus {
    let extra: i64 = alias.additional_version_weights.values().sum();
    let mut configured = vec![Share { version: alias.version.clone(), percent: (100 - extra) as f64, requests: None }];
    configured.extend(alias.additional_version_weights.iter().map(|(version, weight)| Share {
        version: version.clone(),
        percent: *weight as f64,
        requests: None,
    }));
    let rules = alias
        .additional_version_strategy
        .iter()
        .map(|(version, strategy)| {
            let each: Vec<String> =
                strategy.rules.iter().map(|r| format!("{} {} {}", r.param, r.op, r.value)).collect();
            format!("{version} when {}", each.join(&format!(" {} ", strategy.combine_type)))
        })
        .collect();
    let sticky = alias.sticky.as_ref().map(|s| match (&s.header, &s.cookie) {
        (Some(header), _) => format!("header {header}"),
        (None, Some(cookie)) => format!("cookie {cookie}"),
        (None, None) => "on".to_owned(),
    });
    let key = (function.name.as_str(), alias.name.as_str());
    let window = counts.window.get(&key);
    let requests: u64 = window.map_or(0, |w| w.values().sum());
    let observed = window
        .into_iter()
        .flatten()
        .filter(|(_, count)| **count > 0)
        .map(|(version, count)| Share {
            version: (*version).to_owned(),
            percent: if requests == 0 { 0.0 } else { (*count as f64 * 1000.0 / requests as f64).round() / 10.0 },
            requests: Some(*count),
        })
        .collect();
    AliasStatus {
        name: alias.name.clone(),
        version: alias.version.clone(),
        configured,
        rules,
        sticky,
        requests,
        observed,
        total: counts.total.get(&key).copied().unwrap_or(0),
    }
}

fn version_status(function: &str, version: &str, counts: &Counts<'_>, delta: &Delta) -> VersionStatus {
    let (requests, errors) = counts.versions.get(&(function, version)).copied().unwrap_or((0, 0));
    let p99 = delta.latency.get(&(function.to_owned(), version.to_owned())).and_then(|b| quantile(0.99, b));
    VersionStatus {
        version: version.to_owned(),
        requests,
        rate: if delta.seconds > 0.0 { (requests as f64 / delta.seconds * 100.0).round() / 100.0 } else { 0.0 },
        errors,
        error_ratio: if requests == 0 { 0.0 } else { (errors as f64 / requests as f64 * 10_000.0).round() / 10_000.0 },
        p99_ms: p99.map(|s| (s * 1e6).round() / 1e3),
    }
}
