//! The last minute of traffic, for the status page: snapshots of the request counters and
//! latency histograms taken every few seconds, and the difference between now and a
//! minute ago — what Prometheus's `rate()` and `histogram_quantile()` would say, without
//! a Prometheus.
//!
//! The request path is untouched: a snapshot reads the same counters `/metrics` exports.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::core::Collector;

use super::Metrics;

/// How far back the window reaches.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often a snapshot is kept.
pub const STEP: Duration = Duration::from_secs(5);

/// `(function, target, version, code)`.
pub type RouteKey = (String, String, String, String);

/// The counters at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    /// Requests answered since start, by route and status code.
    pub requests: HashMap<RouteKey, u64>,
    /// Per `(function, version)`: cumulative counts per bucket upper bound, in seconds.
    pub latency: HashMap<(String, String), Vec<(f64, u64)>>,
}

/// What happened between two snapshots.
#[derive(Debug, Clone)]
pub struct Delta {
    pub seconds: f64,
    pub requests: HashMap<RouteKey, u64>,
    pub latency: HashMap<(String, String), Vec<(f64, u64)>>,
}

/// The snapshots of the last minute, oldest first.
pub struct History {
    kept: Mutex<VecDeque<Snapshot>>,
}

// === impl Snapshot ===

impl Snapshot {
    pub fn take(metrics: &Metrics) -> Snapshot {
        let mut requests = HashMap::new();
        for family in metrics.requests.collect() {
            for metric in family.get_metric() {
                let label =
                    |name: &str| metric.get_label().iter().find(|l| l.name() == name).map(|l| l.value().to_owned());
                let key = (
                    label("function").unwrap_or_default(),
                    label("target").unwrap_or_default(),
                    label("version").unwrap_or_default(),
                    label("code").unwrap_or_default(),
                );
                requests.insert(key, metric.get_counter().get_value() as u64);
            }
        }
        let mut latency = HashMap::new();
        for family in metrics.duration.collect() {
            for metric in family.get_metric() {
                let label =
                    |name: &str| metric.get_label().iter().find(|l| l.name() == name).map(|l| l.value().to_owned());
                let histogram = metric.get_histogram();
                let mut buckets: Vec<(f64, u64)> =
                    histogram.get_bucket().iter().map(|b| (b.upper_bound(), b.cumulative_count())).collect();
                buckets.push((f64::INFINITY, histogram.get_sample_count()));
                latency.insert((label("function").unwrap_or_default(), label("version").unwrap_or_default()), buckets);
            }
        }
        Snapshot { at: Instant::now(), requests, latency }
    }

    /// What happened since `earlier` (counters that did not exist then started at 0).
    pub fn since(&self, earlier: Option<&Snapshot>) -> Delta {
        let requests = self
            .requests
            .iter()
            .map(|(key, now)| (key.clone(), now - earlier.and_then(|e| e.requests.get(key)).copied().unwrap_or(0)))
            .collect();
        let latency = self
            .latency
            .iter()
            .map(|(key, now)| {
                let before = earlier.and_then(|e| e.latency.get(key));
                let buckets = now
                    .iter()
                    .enumerate()
                    .map(|(i, (bound, count))| {
                        (*bound, count.saturating_sub(before.and_then(|b| b.get(i)).map_or(0, |b| b.1)))
                    })
                    .collect();
                (key.clone(), buckets)
            })
            .collect();
        let seconds = earlier.map_or(0.0, |e| self.at.duration_since(e.at).as_secs_f64());
        Delta { seconds, requests, latency }
    }
}

// === impl History ===

impl History {
    pub fn new() -> Self {
        History { kept: Mutex::new(VecDeque::new()) }
    }

    /// Keeps a snapshot (every [`STEP`]); those older than the window (plus one step) go.
    pub fn keep(&self, snapshot: Snapshot) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.push_back(snapshot);
        while kept.front().is_some_and(|oldest| oldest.at.elapsed() > WINDOW + STEP) {
            kept.pop_front();
        }
    }

    /// Now against the newest snapshot at least a minute old (or the oldest there is, for a
    /// gateway younger than a minute).
    pub fn last_minute(&self, now: &Snapshot) -> Delta {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let base = kept.iter().rev().find(|s| now.at.duration_since(s.at) >= WINDOW).or_else(|| kept.front());
        now.since(base)
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

/// The `q` quantile of a delta histogram (cumulative counts), interpolated linearly within
/// its bucket as `histogram_quantile` does; `None` without observations.
pub fn quantile(q: f64, buckets: &[(f64, u64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            if bound.is_infinite() {
                // Above the largest finite bound: that bound is the best estimate.
                return Some(lower.0);
            }
            let within = (count - lower.1) as f64;
            let fraction = if within > 0.0 { (rank - lower.1 as f64) / within } else { 1.0 };
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        // 100 observations: 90 below 1 ms, 10 between 1 and 2.5 ms.
        let buckets = [(0.001, 90), (0.0025, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(0.5, &buckets).map(|q| (q * 1e6).round()), Some(556.0));
        assert_eq!(quantile(0.99, &buckets).map(|q| (q * 1e6).round()), Some(2350.0));
        assert_eq!(quantile(0.99, &[(0.001, 0), (f64::INFINITY, 0)]), None);
        assert_eq!(quantile(0.99, &[(0.001, 0), (f64::INFINITY, 5)]), Some(0.001), "beyond the last bound");
    }
}
