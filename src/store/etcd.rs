//! etcd as the source of the routing state: what a fleet of replicas shares.
//!
//! Every replica lists the fleet's prefix once and then watches it from the revision after
//! the listing ([`watch`]); what it sees goes into its [`mirror`], and the state read out of the
//! mirror is validated, compiled and published like a routes file. An edit through the API
//! runs on the state this replica serves and is committed as one transaction guarded by the
//! head's and the set's mod revisions ([`commit`]): if another replica (or a hand edit) got
//! there first, the guard fails, this replica re-lists and runs the edit again on the newer
//! state, so two replicas never both commit conflicting changes. While etcd is unreachable
//! the last good table keeps serving and edits answer 503; a replica that starts then serves
//! its [`snapshot`](super::snapshot) and catches up when etcd is back.

mod client;
pub(super) mod commit;
pub mod fleet;
pub mod layout;
mod mirror;
mod watch;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

pub use client::{EtcdClient, EtcdError};
pub use fleet::{ReplicaIdentity, ReplicaRecord};
use layout::Layout;
use mirror::Mirror;
use wire::{Compare, KeyValue, RangeRequest, TxnRequest};

use super::{ApplyError, Edit, ReloadOutcome, RoutesStore, Stamp, StoreError, compile_over, snapshot};
use crate::audit::{Attribution, Filter, Outcome, Record};
use crate::config::EtcdSettings;
use crate::metrics::Metrics;
use crate::routes::changes::Changes;
use crate::routes::{RoutesError, ValidRoutes};

/// Keys per page of a listing (a 10,000-function state is ten pages).
const PAGE: i64 = 1000;

pub(super) struct EtcdSource {
    shared: Arc<Shared>,
}

/// What the source's tasks (watch, registration) and its edits share.
pub(super) struct Shared {
    client: EtcdClient,
    layout: Layout,
    settings: EtcdSettings,
    identity: ReplicaIdentity,
    mirror: Mutex<Mirror>,
    connected: AtomicBool,
    /// The revision of this replica's last registration write and when it was made: the
    /// watch must deliver it, or it has gone silent.
    pending_echo: Mutex<Option<(i64, Instant)>>,
    /// The newest generation a snapshot was asked for (older requests still queued are skipped).
    snapshot_wanted: Arc<AtomicU64>,
}

/// A consistent listing of the fleet's keys at one revision.
struct Listing {
    routes: Vec<KeyValue>,
    /// The replicas' registrations and the audit trail.
    others: Vec<KeyValue>,
    revision: i64,
    cluster_id: String,
}

// === impl EtcdSource ===

impl EtcdSource {
    /// Connects and lists; if etcd does not answer in time, the snapshot is the state.
    pub(super) async fn open(
        settings: &EtcdSettings,
        identity: ReplicaIdentity,
        _metrics: &Metrics,
    ) -> Result<(Self, Option<(ValidRoutes, u64)>), StoreError> {
        super::persist::remove_leftovers(&settings.snapshot);
        let client = EtcdClient::new(settings).map_err(|e| StoreError::Etcd(e.to_string()))?;
        let shared = Arc::new(Shared {
            client,
            layout: Layout::new(&settings.prefix),
            settings: settings.clone(),
            identity,
            mirror: Mutex::new(Mirror::new(Layout::new(&settings.prefix))),
            connected: AtomicBool::new(false),
            pending_echo: Mutex::new(None),
            snapshot_wanted: Arc::new(AtomicU64::new(0)),
        });
        let source = EtcdSource { shared: Arc::clone(&shared) };
        let deadline = settings.dial_timeout + settings.request_timeout;
        match tokio::time::timeout(deadline, shared.relist()).await {
            Ok(Ok(())) => {
                shared.connected.store(true, Ordering::Relaxed);
                let mut mirror = shared.lock();
                match mirror.state() {
                    Ok(Some(state)) => match ValidRoutes::new(state.routes.clone()) {
                        Ok(valid) => {
                            mirror.settled = mirror.version;
                            let revision = u64::try_from(mirror.state_revision).unwrap_or(0);
                            tracing::info!(prefix = %settings.prefix, revision, "routing state listed from etcd");
                            return Ok((source, Some((valid, revision))));
                        }
                        // Left unsettled: the watch task rejects it, logs and counts it.
                        Err(_) => tracing::warn!(prefix = %settings.prefix, "the routing state in etcd is invalid"),
                    },
                    Ok(None) => tracing::warn!(
                        prefix = %settings.prefix,
                        "no routing state is stored in etcd yet: store one with `graygate routes push`"
                    ),
                    Err(_) => tracing::warn!(prefix = %settings.prefix, "the routing state in etcd cannot be read"),
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "etcd is unreachable at start"),
            Err(_) => tracing::warn!(?deadline, "etcd did not answer at start"),
        }
        match snapshot::load(&settings.snapshot, &settings.prefix) {
            Ok(Some((valid, revision))) => {
                tracing::info!(snapshot = %settings.snapshot.display(), revision, "serving the snapshot until etcd answers");
                Ok((source, Some((valid, revision))))
            }
            Ok(None) => {
                tracing::warn!("no snapshot either: not ready until etcd answers with a routing state");
                Ok((source, None))
            }
            Err(why) => {
                tracing::warn!(%why, "the snapshot cannot be used: not ready until etcd answers");
                Ok((source, None))
            }
        }
    }

    pub(super) fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    pub(super) fn fleet(&self) -> Vec<ReplicaRecord> {
        self.shared.lock().replicas()
    }

    /// Re-lists the prefix and applies what changed (SIGHUP, or after a lost guard).
    pub(super) async fn relist(&self, store: &RoutesStore) -> ReloadOutcome {
        match self.shared.relist().await {
            Ok(()) => {
                self.shared.set_connected(store, true);
                let outcome = sync(store, &self.shared).await;
                if matches!(outcome, ReloadOutcome::Unchanged) {
                    store.metrics.reload_unchanged();
                }
                outcome
            }
            Err(error) => {
                self.shared.set_connected(store, false);
                ReloadOutcome::Unreadable(RoutesError::single(
                    &self.shared.settings.prefix,
                    None,
                    "",
                    error.to_string(),
                ))
            }
        }
    }

    pub(super) async fn apply<T: Send + 'static, E: Send + 'static>(
        &self,
        store: &RoutesStore,
        who: &Attribution,
        edit: Arc<Edit<T, E>>,
    ) -> Result<T, ApplyError<E>> {
        commit::apply(store, &self.shared, who, edit).await
    }

    /// Stores a record that comes with no change (a refusal, an edit that changed nothing).
    pub(super) async fn store_record(&self, store: &RoutesStore, record: &Record) {
        self.shared.store_record(store, record).await;
    }

    /// The fleet's audit trail, as this replica's mirror holds it.
    pub(super) fn audit(&self, filter: &Filter) -> Vec<Record> {
        self.shared.lock().audit(filter)
    }

    /// Writes the snapshot of `table` on the background thread (the newest request wins).
    pub(super) fn save_snapshot(&self, store: &RoutesStore, table: &Arc<crate::routing::RoutingTable>) {
        self.shared.save_snapshot(store, table);
    }
}

/// Starts the watch and the replica's registration.
pub(super) fn spawn(store: Arc<RoutesStore>, shutdown: tokio::sync::watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let super::Source::Etcd(source) = &store.source else { return Vec::new() };
    let shared = Arc::clone(&source.shared);
    let watcher = tokio::spawn(watch::run(Arc::clone(&store), Arc::clone(&shared), shutdown.clone()));
    let registration = tokio::spawn(fleet::run(store, shared, shutdown));
    vec![watcher, registration]
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_connected(&self, store: &RoutesStore, connected: bool) {
        let was = self.connected.swap(connected, Ordering::Relaxed);
        if was != connected {
            if connected {
                tracing::info!("etcd connected");
            } else {
                tracing::warn!("etcd disconnected; the last good routes keep serving, changes answer 503");
            }
        }
        store.set_connected(connected);
    }

    /// Lists every routing key and registration at one revision and takes it in.
    async fn relist(&self) -> Result<(), EtcdError> {
        let listing = self.list().await?;
        let mut mirror = self.lock();
        if !mirror.cluster_id.is_empty() && mirror.cluster_id != listing.cluster_id {
            tracing::warn!(from = %mirror.cluster_id, to = %listing.cluster_id, "etcd is another cluster now");
        }
        mirror.cluster_id = listing.cluster_id;
        mirror.reconcile(listing.routes, listing.others, listing.revision);
        Ok(())
    }

    async fn list(&self) -> Result<Listing, EtcdError> {
        let (start, end) = self.layout.routes();
        let (routes, revision, cluster_id) = self.list_range(start, end, 0).await?;
        let (start, end) = self.layout.replicas();
        let (mut others, _, _) = self.list_range(start, end, revision).await?;
        let (start, end) = self.layout.audits();
        others.extend(self.list_range(start, end, revision).await?.0);
        Ok(Listing { routes, others, revision, cluster_id })
    }

    /// Every key of `[start, end)` at `revision` (0: the current one), a page at a time.
    async fn list_range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        revision: i64,
    ) -> Result<(Vec<KeyValue>, i64, String), EtcdError> {
        let mut kvs = Vec::new();
        let mut key = start;
        let mut revision = revision;
        let mut cluster_id;
        loop {
            let request =
                RangeRequest { key, range_end: end.clone(), limit: PAGE, revision, ..RangeRequest::default() };
            let page = self.client.range(&request).await?;
            if revision == 0 {
                revision = page.header.revision;
            }
            cluster_id = page.header.cluster_id;
            let more = page.more;
            kvs.extend(page.kvs);
            match kvs.last() {
                Some(last) if more => {
                    let mut next = last.key.to_vec();
                    next.push(0);
                    key = next;
                }
                _ => return Ok((kvs, revision, cluster_id)),
            }
        }
    }

    /// Records a registration write the watch must echo.
    fn expect_in_watch(&self, revision: i64) {
        let mut pending = self.pending_echo.lock().unwrap_or_else(|p| p.into_inner());
        // The oldest unconfirmed write is kept, so a steady stream of writes cannot keep
        // pushing the deadline out.
        if pending.is_none() {
            *pending = Some((revision, Instant::now()));
        }
    }

    /// True when a registration write has not come back through the watch in time.
    fn watch_is_silent(&self, limit: Duration) -> bool {
        let watched = self.lock().watched;
        let mut pending = self.pending_echo.lock().unwrap_or_else(|p| p.into_inner());
        match *pending {
            Some((revision, _)) if watched >= revision => {
                *pending = None;
                false
            }
            Some((_, since)) => since.elapsed() > limit,
            None => false,
        }
    }

    fn forget_echo(&self) {
        *self.pending_echo.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Puts a record in the fleet's trail on its own (best effort: when etcd does not take
    /// it, the record is still in this replica's audit file and log).
    async fn store_record(&self, store: &RoutesStore, record: &Record) {
        let overflow = self.lock().audit_overflow(store.trail.retain().saturating_sub(1), commit::PRUNE);
        let (ops, writes) = match commit::record_ops(&self.layout, record, &overflow) {
            Ok(built) => built,
            Err(error) => return tracing::error!(%error, "cannot encode an audit record"),
        };
        match self.client.txn(&TxnRequest { compare: Vec::new(), success: ops, failure: Vec::new() }).await {
            Ok(answer) => {
                self.lock().apply_own(writes, answer.header.revision);
            }
            Err(error) => {
                tracing::warn!(%error, id = %record.id, "the audit record is not in etcd; it is in this replica's audit log")
            }
        }
    }

    /// Records a change of the state in etcd that no graygate made (etcdctl): whichever
    /// replica gets there first writes it, under a key named after the change's revision.
    async fn record_hand_edit(&self, store: &RoutesStore, mut record: Record, revision: i64) {
        record.id = format!("{revision:016}-etcd");
        record.revision = u64::try_from(revision).ok();
        let key = self.layout.audit(&record.id);
        let overflow = self.lock().audit_overflow(store.trail.retain().saturating_sub(1), commit::PRUNE);
        let (ops, writes) = match commit::record_ops(&self.layout, &record, &overflow) {
            Ok(built) => built,
            Err(error) => return tracing::error!(%error, "cannot encode an audit record"),
        };
        let txn = TxnRequest {
            compare: vec![Compare {
                key: key.into_bytes(),
                range_end: Vec::new(),
                target: "CREATE",
                result: "EQUAL",
                mod_revision: None,
                create_revision: Some(0),
                version: None,
            }],
            success: ops,
            failure: Vec::new(),
        };
        match self.client.txn(&txn).await {
            Ok(answer) if answer.succeeded => {
                self.lock().apply_own(writes, answer.header.revision);
                store.keep(record).await;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, revision, "cannot record a hand edit of etcd in the audit trail"),
        }
    }

    fn save_snapshot(&self, store: &RoutesStore, table: &Arc<crate::routing::RoutingTable>) {
        let generation = table.generation();
        self.snapshot_wanted.fetch_max(generation, Ordering::Relaxed);
        let wanted = Arc::clone(&self.snapshot_wanted);
        let (path, prefix, table) = (self.settings.snapshot.clone(), self.settings.prefix.clone(), Arc::clone(table));
        store.background.spawn(move || {
            // A newer table's snapshot is queued behind this one: writing this one is waste.
            if wanted.load(Ordering::Relaxed) > generation {
                return;
            }
            if let Err(error) = snapshot::save(&path, &prefix, table.revision(), table.source().spec()) {
                tracing::warn!(%error, snapshot = %path.display(), "cannot write the snapshot");
            }
        });
    }
}

/// Publishes the mirror's state if it changed since the table in force (or records why it
/// cannot be). A table built from a mirror that changed meanwhile is thrown away and built
/// again, so the newest state always wins.
async fn sync(store: &RoutesStore, shared: &Shared) -> ReloadOutcome {
    loop {
        let (version, state) = {
            let mirror = shared.lock();
            if mirror.settled == mirror.version {
                return ReloadOutcome::Unchanged;
            }
            (mirror.version, mirror.state())
        };
        let settle = |shared: &Shared| {
            let mut mirror = shared.lock();
            let current = mirror.version == version;
            if current {
                mirror.settled = version;
            }
            current
        };
        let state = match state {
            Ok(Some(state)) => state,
            Ok(None) => {
                settle(shared);
                return ReloadOutcome::Unchanged;
            }
            Err(error) => {
                if settle(shared) {
                    let (revision, by_hand) = {
                        let mirror = shared.lock();
                        (mirror.state_revision, !mirror.audited_at(mirror.state_revision))
                    };
                    store.reject(revision.try_into().unwrap_or(0), &error);
                    if by_hand {
                        let record =
                            Attribution::etcd().refused(store.replica_id(), Outcome::Rejected, error.to_string());
                        shared.record_hand_edit(store, record, revision).await;
                    }
                    return ReloadOutcome::Rejected(error);
                }
                continue;
            }
        };
        let previous = store.current();
        if store.status().ready && state.routes == *previous.source().spec() {
            if settle(shared) {
                return ReloadOutcome::Unchanged;
            }
            continue;
        }
        let policy = store.policy.clone();
        let work = store
            .background
            .run(move || {
                let valid = ValidRoutes::new(state.routes.clone()).map_err(|issues| mirror::locate(&state, issues))?;
                let changes = Changes::between(previous.source().spec(), valid.spec());
                let table = compile_over(valid, &previous, &policy)
                    .map_err(|e| RoutesError::single(&state.head_key, None, "", e.to_string()))?;
                Ok::<_, RoutesError>((table, changes))
            })
            .await;
        let built = match work {
            Ok(built) => built,
            Err(lost) => Err(RoutesError::single(&shared.settings.prefix, None, "", lost.to_string())),
        };
        // The decision to publish and the publication happen under the mirror's lock.
        let (published, by_hand, state_revision, revision) = {
            let mut mirror = shared.lock();
            if mirror.settled == version {
                // Another sync (the watch's, or an edit's) published this version meanwhile.
                return ReloadOutcome::Unchanged;
            }
            if mirror.version != version {
                continue;
            }
            mirror.settled = version;
            let revision = u64::try_from(mirror.state_revision).unwrap_or(0);
            let published = built.map(|(table, changes)| {
                let before = store.current();
                (store.publish(table, Stamp::At(revision)), changes, before)
            });
            (published, !mirror.audited_at(mirror.state_revision), mirror.state_revision, revision)
        };
        match published {
            Ok((generation, changes, before)) => {
                tracing::info!(generation, revision, changes = %changes, "routes changed in etcd");
                shared.save_snapshot(store, &store.current());
                if by_hand && before.generation() > 0 && before.revision() > 0 {
                    let (after, replica) = (store.current(), store.replica_id().to_owned());
                    let built = store.background.run(move || {
                        Attribution::etcd().record(
                            &replica,
                            Outcome::Applied,
                            before.source().spec(),
                            after.source().spec(),
                        )
                    });
                    if let Ok(record) = built.await {
                        shared.record_hand_edit(store, record, state_revision).await;
                    }
                }
                return ReloadOutcome::Applied { generation };
            }
            Err(error) => {
                store.reject(revision, &error);
                if by_hand {
                    let record = Attribution::etcd().refused(store.replica_id(), Outcome::Rejected, error.to_string());
                    shared.record_hand_edit(store, record, state_revision).await;
                }
                return ReloadOutcome::Rejected(error);
            }
        }
    }
}
