//! One list + watch per process, kept alive for as long as the process runs.
//!
//! The watch covers the whole prefix from the mirror's complete revision + 1. It is
//! re-created, with exponential backoff and jitter, when etcd ends it or goes away; when it
//! is cancelled because that revision was compacted, the prefix is re-listed and only what
//! changed is applied. Before each watch, a probe checks that etcd has not gone back in time
//! (restored from an older backup: its revision is behind ours), which also re-lists.
//!
//! A watch can also go silent without ending (a stalled proxy, a half-open connection).
//! The gateway half-duplexes the stream, so there is no progress request to send; instead
//! every registration write of this replica must come back through the watch, and one that
//! has not within the request timeout re-creates the watch (from the same revision, so
//! nothing is lost — the mistake APISIX made was to advance the revision on a timeout).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as signal;

use super::wire::RangeRequest;
use super::{Shared, sync};
use crate::reload::{Hangup, hangup_signal as hangup, recv_hangup};
use crate::store::{ReloadOutcome, RoutesStore};

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the watch's liveness is checked.
const CHECK: Duration = Duration::from_millis(500);

/// Exponential backoff with full jitter (between half and all of the current step).
struct Backoff {
    next: Duration,
}

enum Ended {
    /// etcd went away, ended the stream, or it went silent: re-watch from the same revision.
    Lost,
    /// The revision was compacted, or SIGHUP asked for it: re-list first.
    Relist,
    Shutdown,
}

pub async fn run(store: Arc<RoutesStore>, shared: Arc<Shared>, mut shutdown: signal::Receiver<bool>) {
    let mut backoff = Backoff { next: BACKOFF_FIRST };
    let mut relist = !shared.lock().listed;
    let mut hangup = hangup();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match connect(&store, &shared, relist).await {
            Ok(()) => relist = false,
            Err(error) => {
                shared.set_connected(&store, false);
                tracing::debug!(%error, "etcd not reachable; retrying");
                if backoff.wait(&mut shutdown).await {
                    return;
                }
                continue;
            }
        }
        log(&sync(&store, &shared).await);
        match follow(&store, &shared, &mut shutdown, &mut hangup, &mut backoff).await {
            Ended::Shutdown => return,
            Ended::Relist => relist = true,
            Ended::Lost => {}
        }
        if backoff.wait(&mut shutdown).await {
            return;
        }
    }
}

/// Lists if asked to (or if etcd went back in time), else just checks that it answers.
async fn connect(store: &RoutesStore, shared: &Shared, relist: bool) -> Result<(), super::EtcdError> {
    if !relist {
        let probe =
            RangeRequest { key: shared.layout.head().into_bytes(), count_only: true, ..RangeRequest::default() };
        let answer = shared.client.range(&probe).await?;
        let (complete, cluster) = {
            let mirror = shared.lock();
            (mirror.complete, mirror.cluster_id.clone())
        };
        let rewound = answer.header.revision < complete;
        let replaced = !cluster.is_empty() && answer.header.cluster_id != cluster;
        if !rewound && !replaced {
            return Ok(());
        }
        tracing::warn!(
            etcd = answer.header.revision,
            ours = complete,
            "etcd's revision is behind ours (restored?); re-listing"
        );
        shared.lock().rewind();
    }
    shared.relist().await?;
    shared.set_connected(store, true);
    Ok(())
}

/// Follows the watch until it ends; applies every response's events as they come.
async fn follow(
    store: &RoutesStore,
    shared: &Shared,
    shutdown: &mut signal::Receiver<bool>,
    hangup: &mut Hangup,
    backoff: &mut Backoff,
) -> Ended {
    let start = shared.lock().complete + 1;
    let (key, end) = shared.layout.all();
    let mut stream = match shared.client.watch(key, end, start).await {
        Ok(stream) => stream,
        Err(error) => {
            shared.set_connected(store, false);
            tracing::debug!(%error, "cannot open the watch");
            return Ended::Lost;
        }
    };
    shared.forget_echo();
    let mut check = tokio::time::interval(CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence = shared.settings.request_timeout.max(Duration::from_secs(1));
    loop {
        let message = tokio::select! {
            _ = stopped(shutdown) => return Ended::Shutdown,
            _ = recv_hangup(hangup) => {
                tracing::info!("SIGHUP: re-listing the routing state");
                return Ended::Relist;
            }
            _ = check.tick() => {
                if shared.watch_is_silent(silence) {
                    tracing::warn!(?silence, "the etcd watch went silent; re-creating it from the same revision");
                    return Ended::Lost;
                }
                continue;
            }
            message = stream.next() => message,
        };
        match message {
            Ok(Some(response)) if response.canceled => {
                if response.compact_revision > 0 {
                    tracing::warn!(
                        compacted = response.compact_revision,
                        wanted = start,
                        "the watch's revision was compacted; re-listing"
                    );
                    return Ended::Relist;
                }
                tracing::warn!(reason = %response.cancel_reason, "etcd cancelled the watch");
                return Ended::Lost;
            }
            Ok(Some(response)) if response.created => {
                shared.set_connected(store, true);
                backoff.reset();
            }
            Ok(Some(response)) if response.events.is_empty() => shared.lock().progress(response.header.revision),
            Ok(Some(response)) => {
                let changed = shared.lock().apply_events(&response.events);
                if changed {
                    log(&sync(store, shared).await);
                }
            }
            Ok(None) => {
                tracing::debug!("etcd ended the watch");
                return Ended::Lost;
            }
            Err(error) => {
                tracing::debug!(%error, "the watch failed");
                return Ended::Lost;
            }
        }
    }
}

fn log(outcome: &ReloadOutcome) {
    match outcome {
        ReloadOutcome::Unchanged | ReloadOutcome::Applied { .. } => {}
        ReloadOutcome::Rejected(error) => {
            for problem in &error.problems {
                tracing::warn!(%problem, "routing state in etcd rejected; the previous routes stay in force");
            }
        }
        ReloadOutcome::Unreadable(error) => tracing::warn!(%error, "routing state in etcd cannot be read"),
    }
}

// === impl Backoff ===

impl Backoff {
    /// Sleeps for the next step; true if shutdown came first.
    async fn wait(&mut self, shutdown: &mut signal::Receiver<bool>) -> bool {
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let jittered = step.mul_f64(0.5 + fastrand::f64() / 2.0);
        tokio::select! {
            _ = stopped(shutdown) => true,
            _ = tokio::time::sleep(jittered) => false,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}

async fn stopped(shutdown: &mut signal::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
