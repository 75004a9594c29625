//! Prometheus metrics: the registry, the per-route handles and the text exposition.
//!
//! Label sets are resolved once per (function, target, version) and cached in the routing
//! table (see `routing::Route`), so the request path does no label hashing for the common
//! 200 answer; other status codes take the labelled lookup.

pub mod window;

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Request latency buckets, in seconds: sub-millisecond proxies up to 30 s functions.
const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_errors: IntCounterVec,
    reloads: IntCounterVec,
    accept_errors: IntCounterVec,
    generation: IntGauge,
    ejections: IntCounterVec,
    fallbacks: IntCounterVec,
    store_connected: IntGauge,
    store_revision: IntGauge,
    access_log_dropped: IntCounter,
}

/// Handles for one (function, target, version) route.
#[derive(Debug)]
pub struct RouteMetrics {
    labels: [Box<str>; 3],
    ok: IntCounter,
    duration: Histogram,
}

/// Why an upstream exchange failed, as the `kind` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Protocol,
    Reset,
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("graygate_requests_total", "Requests answered, by route and status code"),
            &["function", "target", "version", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("graygate_request_duration_seconds", "Time from request to upstream response headers")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["function", "version"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new("graygate_upstream_errors_total", "Failed upstream exchanges, by kind"),
            &["function", "version", "kind"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "graygate_config_reloads_total",
                "Loads of the routing state: success, failure (invalid), error (could not be read), unchanged",
            ),
            &["result"],
        )?;
        let generation = IntGauge::new(
            "graygate_config_generation",
            "Generation of the routing table in use (rises on every applied change)",
        )?;
        let ejections = IntCounterVec::new(
            Opts::new("graygate_upstream_ejections_total", "Upstreams ejected after consecutive failures"),
            &["upstream"],
        )?;
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "graygate_alias_fallback_total",
                "Requests an alias sent to its own version because the chosen additional version is ejected",
            ),
            &["function", "alias", "version"],
        )?;
        registry.register(Box::new(ejections.clone()))?;
        registry.register(Box::new(fallbacks.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        let store_connected = IntGauge::new(
            "graygate_store_connected",
            "1 while the routing store's source answers (a file always does)",
        )?;
        let store_revision =
            IntGauge::new("graygate_store_revision", "Revision of the routing state this replica serves")?;
        registry.register(Box::new(store_connected.clone()))?;
        registry.register(Box::new(store_revision.clone()))?;
        let accept_errors = IntCounterVec::new(
            Opts::new(
                "graygate_accept_errors_total",
                "Failed accepts of new connections, by listener (out of file descriptors, mostly)",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(accept_errors.clone()))?;
        let access_log_dropped = IntCounter::new(
            "graygate_access_log_dropped_total",
            "Access log lines dropped because the writer's queue was full (a slow disk or a blocked pipe)",
        )?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        for listener in ["data", "admin"] {
            accept_errors.with_label_values(&[listener]);
        }
        for result in ["success", "failure", "error", "unchanged"] {
            reloads.with_label_values(&[result]);
        }
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream_errors,
            reloads,
            accept_errors,
            generation,
            ejections,
            fallbacks,
            store_connected,
            store_revision,
            access_log_dropped,
        })
    }

    pub fn route(&self, function: &str, target: &str, version: &str) -> RouteMetrics {
        RouteMetrics {
            labels: [function.into(), target.into(), version.into()],
            ok: self.requests.with_label_values(&[function, target, version, "200"]),
            duration: self.duration.with_label_values(&[function, version]),
        }
    }

    /// Counts one answered request of a route.
    pub fn record(&self, route: &RouteMetrics, status: http::StatusCode, elapsed: Duration) {
        route.duration.observe(elapsed.as_secs_f64());
        if status == http::StatusCode::OK {
            route.ok.inc();
        } else {
            let [function, target, version] = &route.labels;
            self.requests.with_label_values(&[function, target, version, status.as_str()]).inc();
        }
    }

    /// Counts a request that matched no route (its path is never a label: unbounded).
    pub fn record_unrouted(&self, status: http::StatusCode) {
        self.requests.with_label_values(&["", "", "", status.as_str()]).inc();
    }

    pub fn upstream_error(&self, route: &RouteMetrics, kind: UpstreamErrorKind) {
        let [function, _, version] = &route.labels;
        self.upstream_errors.with_label_values(&[function, version, kind.as_str()]).inc();
    }

    pub fn upstream_ejected(&self, upstream: &str) {
        self.ejections.with_label_values(&[upstream]).inc();
    }

    /// `version` is the ejected additional version whose share went to the alias's own.
    pub fn alias_fallback(&self, function: &str, alias: &str, version: &str) {
        self.fallbacks.with_label_values(&[function, alias, version]).inc();
    }

    /// Adds a collector read at scrape time (the store's alias weights).
    pub fn register(&self, collector: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    pub fn reload_succeeded(&self, generation: u64) {
        self.reloads.with_label_values(&["success"]).inc();
        self.generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// A routing state that does not validate (an operator has something to fix).
    pub fn reload_failed(&self) {
        self.reloads.with_label_values(&["failure"]).inc();
    }

    /// A routing state that could not be read (I/O, out of file descriptors): not invalid.
    pub fn reload_unreadable(&self) {
        self.reloads.with_label_values(&["error"]).inc();
    }

    /// Loads of the routing state so far with this `result` (as `/metrics` says).
    pub fn reloads_of(&self, result: &str) -> u64 {
        self.reloads.with_label_values(&[result]).get()
    }

    /// The counter of access log lines dropped on a full queue.
    pub fn access_log_dropped(&self) -> IntCounter {
        self.access_log_dropped.clone()
    }

    /// The counter of failed accepts on `listener` (`data` or `admin`).
    pub fn accept_errors(&self, listener: &str) -> IntCounter {
        self.accept_errors.with_label_values(&[listener])
    }

    /// A re-read that found the routing state as it was (SIGHUP, the poll, another file's event).
    pub fn reload_unchanged(&self) {
        self.reloads.with_label_values(&["unchanged"]).inc();
    }

    /// Whether the store's source answers, and the revision of the state served.
    pub fn store_status(&self, connected: bool, revision: u64) {
        self.store_connected.set(i64::from(connected));
        self.store_revision.set(i64::try_from(revision).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

// === impl UpstreamErrorKind ===

impl UpstreamErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::Reset => "reset",
        }
    }
}
