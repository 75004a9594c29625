//! The routing state's owner: the one published table (an `ArcSwap`) and the source behind it.
//!
//! ```text
//!   source (routes file | etcd prefix) ──load/watch──▶ validate ─▶ compile ─▶ publish (ArcSwap)
//!   management API edit ──▶ run on the current state ─▶ validate ─▶ commit to the source ─▶ publish
//! ```
//! Two sources yield the same thing, routes plus a revision: [`file`] (the default, a watched
//! file written atomically) and [`etcd`] (a prefix every replica of a fleet lists and
//! watches, written with guarded transactions). Nothing outside this module knows which one
//! is in use. A table is published only if it is newer than the one in force, so a slow
//! load can never replace a faster, later one; replaced tables retire on their last drop,
//! on the background thread; [`RoutesStore::subscribe`] pushes every change of status.

mod background;
pub mod etcd;
mod file;
mod persist;
pub mod remote;
mod snapshot;
mod weights;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::{self, Attribution, AuditSettings, Outcome, Record, Trail};
use crate::config::{ReloadSettings, SourceSettings};
use crate::health::UpstreamPolicy;
use crate::metrics::Metrics;
use crate::routes::{Issue, RoutesError, RoutesFile, ValidRoutes};
use crate::routing::{self, Retire, RoutingTable};
use background::Background;
pub use etcd::ReplicaIdentity;
pub use etcd::fleet::ReplicaRecord;

/// The published routing table and the source it came from.
pub struct RoutesStore {
    /// Shared with the metrics registry, which reads the configured splits from it.
    table: Arc<ArcSwap<RoutingTable>>,
    source: Source,
    metrics: Metrics,
    policy: UpstreamPolicy,
    /// Where loads and edits parse and compile, below the requests' priority.
    background: Background,
    retire: Retire,
    /// Serialises edits (and file reloads) on this replica.
    edits: tokio::sync::Mutex<()>,
    /// Decides, under one lock, whether a table is newer than the one in force.
    publishing: std::sync::Mutex<()>,
    status: watch::Sender<StoreStatus>,
    identity: ReplicaIdentity,
    started_at: String,
    /// This replica's audit file, and (for a routes file) the trail kept for queries.
    trail: Arc<Trail>,
}

enum Source {
    File(file::FileSource),
    Etcd(etcd::EtcdSource),
}

/// What an operator (and `/readyz`, `/fleet`, the metrics) needs to know about the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    /// `file` or `etcd`.
    pub mode: &'static str,
    /// Rises with every table published (0: none yet).
    pub generation: u64,
    /// The source's revision of the state being served.
    pub revision: u64,
    /// A routing table is loaded and served.
    pub ready: bool,
    /// The source answers (always true for a file).
    pub connected: bool,
    /// The last state the source held that could not be applied.
    pub last_rejection: Option<Rejection>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub revision: u64,
    pub at: String,
    pub problems: Vec<String>,
}

/// The result of a reload from the file (or a re-list from etcd).
#[derive(Debug)]
pub enum ReloadOutcome {
    Unchanged,
    Applied {
        generation: u64,
    },
    Rejected(RoutesError),
    /// The state could not be read at all (an I/O error, etcd unreachable): nothing is
    /// wrong with it, and it is not counted as a rejected configuration.
    Unreadable(RoutesError),
}

/// Why a change through [`RoutesStore::apply`] was not made; nothing was changed then.
#[derive(Debug)]
pub enum ApplyError<E> {
    /// The change itself refused (a business rule of the API that asked for it).
    Rejected(E),
    /// The resulting routes would not validate.
    Invalid(Vec<Issue>),
    /// The routes file could not be written (read-only, full disk, …).
    Write(std::io::Error),
    /// The store cannot take writes now (etcd unreachable, no state loaded yet).
    Unavailable(String),
    /// Other replicas kept changing the state under this one; the caller may retry.
    Conflict(String),
    /// The change is larger than one etcd transaction holds (it touches too many functions):
    /// `graygate routes push` stores a change of any size.
    TooLarge(String),
    /// A bug: validated routes failed to compile, or the worker died.
    Internal(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Routes(#[from] RoutesError),
    #[error("cannot compile routes: {0}")]
    Compile(#[from] routing::CompileError),
    #[error("cannot export the routes' metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot start the background worker: {0}")]
    Worker(#[from] std::io::Error),
    #[error("cannot watch the routes directory: {0}")]
    Watch(#[from] notify::Error),
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("audit log: {0}")]
    Audit(std::io::Error),
}

/// The revision a published table gets.
#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// One more than the table in force (a source that counts its own changes).
    Next,
    /// The source's own revision of the state.
    At(u64),
}

/// An edit of the routing state, re-run if another replica changed the state under it.
pub type Edit<T, E> = dyn Fn(&mut RoutesFile) -> Result<T, E> + Send + Sync;

// === impl RoutesStore ===

impl RoutesStore {
    /// Opens the configured source: a routes file must load (a gateway does not start on an
    /// invalid one); etcd is listed if it answers, else the snapshot serves until it does.
    pub async fn open(
        settings: &SourceSettings,
        metrics: Metrics,
        reload: &ReloadSettings,
        policy: UpstreamPolicy,
        identity: ReplicaIdentity,
        audit: &AuditSettings,
    ) -> Result<Arc<Self>, StoreError> {
        let trail = Arc::new(Trail::open(audit).map_err(StoreError::Audit)?);
        let background = Background::start()?;
        let retire: Retire = {
            let background = background.clone();
            Arc::new(move |parts| background.spawn(move || drop(parts)))
        };
        let (source, initial) = match settings {
            SourceSettings::File(path) => {
                let (source, valid) = file::FileSource::open(path, reload)?;
                (Source::File(source), Some((valid, 1)))
            }
            SourceSettings::Etcd(etcd) => {
                let (source, initial) = etcd::EtcdSource::open(etcd, identity.clone(), &metrics).await?;
                (Source::Etcd(source), initial)
            }
        };
        let ready = initial.is_some();
        let (valid, revision) = initial.unwrap_or_else(|| (ValidRoutes::empty(), 0));
        let mut table = routing::compile(Arc::new(valid), u64::from(ready), None, &policy)?;
        table.stamp(u64::from(ready), revision, Some(Arc::clone(&retire)));
        let table = Arc::new(ArcSwap::from_pointee(table));
        metrics.register(Box::new(weights::AliasWeights::new(Arc::clone(&table))?))?;
        let connected = match &source {
            Source::File(_) => true,
            Source::Etcd(etcd) => etcd.connected(),
        };
        let status = StoreStatus {
            mode: source.mode(),
            generation: u64::from(ready),
            revision,
            ready,
            connected,
            last_rejection: None,
        };
        if ready {
            metrics.reload_succeeded(1);
        }
        metrics.store_status(connected, revision);
        let (status, _) = watch::channel(status);
        let store = Arc::new(RoutesStore {
            table,
            source,
            metrics,
            policy,
            background,
            retire,
            edits: tokio::sync::Mutex::new(()),
            publishing: std::sync::Mutex::new(()),
            status,
            identity,
            started_at: crate::admin::now_text(),
            trail,
        });
        if let Source::Etcd(etcd) = &store.source
            && ready
        {
            etcd.save_snapshot(&store, &store.current());
        }
        Ok(store)
    }

    /// The table in force; hold it for the whole request, not across reloads' concerns.
    pub fn current(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    pub fn status(&self) -> StoreStatus {
        self.status.borrow().clone()
    }

    /// Every change of status (a table published, a rejection, etcd lost or back).
    pub fn subscribe(&self) -> watch::Receiver<StoreStatus> {
        self.status.subscribe()
    }

    /// Keeps the state current until `shutdown`: the file's directory watch, poll and
    /// SIGHUP; or the etcd watch, the replica's registration and SIGHUP.
    pub fn spawn(
        self: &Arc<Self>,
        reload: ReloadSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<()>>, StoreError> {
        match &self.source {
            Source::File(_) => Ok(vec![file::spawn(Arc::clone(self), reload, shutdown)?]),
            Source::Etcd(_) => Ok(etcd::spawn(Arc::clone(self), shutdown)),
        }
    }

    /// Re-reads the source and applies what changed. A forced reload (SIGHUP) re-reads
    /// even a file known to be rejected; an unchanged state never changes the generation.
    pub async fn reload(&self, force: bool) -> ReloadOutcome {
        match &self.source {
            Source::File(source) => file::reload(self, source, force).await,
            Source::Etcd(source) => source.relist(self).await,
        }
    }

    /// Applies `edit` to the routing state: committed to the source before it returns
    /// (the file written durably, or the etcd transaction committed) and live on this
    /// replica's data plane as it returns. Edits are serialised; in a fleet, an edit that
    /// another replica's change overtook is re-run on the newer state, so its business
    /// rules (a name taken, a version gone) are checked against what it will change.
    ///
    /// The change is recorded in the audit trail, attributed to `who`, as part of its commit.
    pub async fn apply<T, E, F>(&self, who: &Attribution, edit: F) -> Result<T, ApplyError<E>>
    where
        F: Fn(&mut RoutesFile) -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let edit: Arc<Edit<T, E>> = Arc::new(edit);
        let _serialised = self.edits.lock().await;
        match &self.source {
            Source::File(source) => file::apply(self, source, who, edit).await,
            Source::Etcd(source) => source.apply(self, who, edit).await,
        }
    }

    /// Records a change the API refused (`error`: the vendor's code and message).
    pub async fn refused(&self, who: &Attribution, error: String) {
        let record = who.refused(&self.identity.id, Outcome::Refused, error);
        if let Source::Etcd(source) = &self.source {
            source.store_record(self, &record).await;
        }
        self.keep(record).await;
    }

    /// The audit trail's records that match `filter`, newest first: this replica's for a
    /// routes file, the whole fleet's in etcd.
    pub fn audit(&self, filter: &audit::Filter) -> Vec<Record> {
        match &self.source {
            Source::File(_) => self.trail.query(filter),
            Source::Etcd(source) => source.audit(filter),
        }
    }

    /// Reopens the audit file (SIGUSR1).
    pub fn reopen_audit(&self) {
        self.trail.reopen();
    }

    /// Writes a committed (or refused) change's record to this replica's audit file, on the
    /// background thread; for a routes file also keeps it for queries.
    async fn keep(&self, record: Record) {
        let trail = Arc::clone(&self.trail);
        let written = record.clone();
        if self.background.run(move || trail.write(&written)).await.is_err() {
            tracing::error!(id = %record.id, "the audit record was not written: the background worker is gone");
        }
        if let Source::File(_) = &self.source {
            self.trail.remember(record);
        }
    }

    /// Every replica of the fleet this one knows of, by id; this one as it is now (for a
    /// routes file, it is the whole fleet).
    pub fn fleet(&self) -> Vec<ReplicaRecord> {
        let mut replicas = match &self.source {
            Source::File(_) => Vec::new(),
            Source::Etcd(source) => source.fleet(),
        };
        replicas.retain(|replica| replica.id != self.identity.id);
        replicas.push(ReplicaRecord::of(&self.identity, &self.status(), &self.started_at));
        replicas.sort_by(|a, b| a.id.cmp(&b.id));
        replicas
    }

    /// This replica's id in the fleet.
    pub fn replica_id(&self) -> &str {
        &self.identity.id
    }

    /// Makes `table` the one in force; the previous one retires when its last request lets
    /// go of it. The source has decided that `table` is newer (the file source under the
    /// edit lock, the etcd source by its mirror's version). Returns the new generation.
    fn publish(&self, mut table: RoutingTable, stamp: Stamp) -> u64 {
        let _decide = self.publishing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.table.load();
        let revision = match stamp {
            Stamp::Next => current.revision() + 1,
            Stamp::At(revision) => revision,
        };
        let generation = current.generation() + 1;
        table.stamp(generation, revision, Some(Arc::clone(&self.retire)));
        self.table.store(Arc::new(table));
        self.metrics.reload_succeeded(generation);
        self.metrics.store_status(self.status.borrow().connected, revision);
        self.status.send_modify(|status| {
            status.generation = generation;
            status.revision = revision;
            status.ready = true;
        });
        generation
    }

    /// Records a state the source holds that cannot be applied.
    fn reject(&self, revision: u64, error: &RoutesError) {
        self.metrics.reload_failed();
        let rejection = Rejection {
            revision,
            at: crate::admin::now_text(),
            problems: error.problems.iter().take(20).map(|p| p.to_string()).collect(),
        };
        self.status.send_modify(|status| status.last_rejection = Some(rejection));
    }

    fn set_connected(&self, connected: bool) {
        let changed = self.status.send_if_modified(|status| {
            let changed = status.connected != connected;
            status.connected = connected;
            changed
        });
        if changed {
            self.metrics.store_status(connected, self.status.borrow().revision);
        }
    }
}

// === impl Source ===

impl Source {
    fn mode(&self) -> &'static str {
        match self {
            Source::File(_) => "file",
            Source::Etcd(_) => "etcd",
        }
    }
}

/// Compiles `valid` on top of `previous` (split cursors and upstream health carry over);
/// the generation and revision are stamped when the table is published.
fn compile_over(
    valid: ValidRoutes,
    previous: &RoutingTable,
    policy: &UpstreamPolicy,
) -> Result<RoutingTable, routing::CompileError> {
    routing::compile(Arc::new(valid), previous.generation(), Some(previous), policy)
}

/// Runs an edit on a copy of `base` and validates the result.
fn run_edit<T, E>(base: &RoutesFile, edit: &Edit<T, E>) -> Result<(T, ValidRoutes), ApplyError<E>> {
    let mut spec = base.clone();
    let value = edit(&mut spec).map_err(ApplyError::Rejected)?;
    let valid = ValidRoutes::new(spec).map_err(ApplyError::Invalid)?;
    Ok((value, valid))
}
