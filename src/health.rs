//! Passive health of upstreams: outlier ejection and a cap on concurrent exchanges.
//!
//! Every upstream authority has one [`UpstreamHealth`], shared by every version that runs
//! there and carried from each routing table to the next (a reload must not forget that
//! a backend is failing). After `consecutive_failures` failed exchanges in a row it is
//! ejected for `ejection`; an alias whose additional version is ejected sends that share
//! to its own version instead of failing users. The request path reads one atomic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Outlier detection and connection limits for every upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPolicy {
    pub consecutive_failures: u32,
    pub ejection: Duration,
    /// Concurrent exchanges (so connections) per upstream; requests beyond it wait.
    pub max_connections: usize,
}

#[derive(Debug)]
pub struct UpstreamHealth {
    authority: Box<str>,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the upstream is ejected; 0 when admitted.
    ejected_until: AtomicU64,
    epoch: Instant,
    policy: UpstreamPolicy,
    permits: Arc<Semaphore>,
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    StillAdmitted,
    Ejected,
}

// === impl UpstreamPolicy ===

impl Default for UpstreamPolicy {
    fn default() -> Self {
        UpstreamPolicy { consecutive_failures: 5, ejection: Duration::from_secs(30), max_connections: 1024 }
    }
}

// === impl UpstreamHealth ===

impl UpstreamHealth {
    pub fn new(authority: &str, policy: UpstreamPolicy) -> Self {
        UpstreamHealth {
            authority: authority.into(),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            epoch: Instant::now(),
            permits: Arc::new(Semaphore::new(policy.max_connections.max(1))),
            policy,
        }
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// True while the upstream is ejected.
    #[inline]
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    pub fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failed exchange; the one that reaches the threshold ejects the upstream.
    pub fn record_failure(&self) -> Verdict {
        if self.policy.consecutive_failures == 0 {
            return Verdict::StillAdmitted;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < self.policy.consecutive_failures {
            return Verdict::StillAdmitted;
        }
        self.failures.store(0, Ordering::Relaxed);
        let until = self.now_ms() + self.policy.ejection.as_millis() as u64;
        self.ejected_until.store(until.max(1), Ordering::Relaxed);
        Verdict::Ejected
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The same upstream under a new policy keeps its state only if the policy is unchanged.
    pub fn same_policy(&self, policy: &UpstreamPolicy) -> bool {
        self.policy == *policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(threshold: u32, ejection_ms: u64) -> UpstreamHealth {
        let policy = UpstreamPolicy {
            consecutive_failures: threshold,
            ejection: Duration::from_millis(ejection_ms),
            max_connections: 4,
        };
        UpstreamHealth::new("127.0.0.1:1", policy)
    }

    #[test]
    fn the_nth_consecutive_failure_ejects() {
        let h = health(3, 60_000);
        assert_eq!(h.record_failure(), Verdict::StillAdmitted);
        assert_eq!(h.record_failure(), Verdict::StillAdmitted);
        assert!(!h.is_ejected());
        assert_eq!(h.record_failure(), Verdict::Ejected);
        assert!(h.is_ejected());
    }

    #[test]
    fn a_success_resets_the_count() {
        let h = health(3, 60_000);
        h.record_failure();
        h.record_failure();
        h.record_success();
        assert_eq!(h.record_failure(), Verdict::StillAdmitted);
        assert!(!h.is_ejected());
    }

    #[test]
    fn ejection_ends_after_its_time() {
        let h = health(1, 30);
        assert_eq!(h.record_failure(), Verdict::Ejected);
        assert!(h.is_ejected());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!h.is_ejected());
    }

    #[test]
    fn zero_threshold_disables_ejection() {
        let h = health(0, 30_000);
        for _ in 0..100 {
            assert_eq!(h.record_failure(), Verdict::StillAdmitted);
        }
        assert!(!h.is_ejected());
    }
}
