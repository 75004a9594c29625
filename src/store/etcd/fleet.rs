//! The fleet view: every replica registers under `{prefix}/replicas/{id}` on a lease, with
//! the revision it serves and its last rejection, so `/fleet` on any replica shows a change
//! converge (or one replica refuse it, as an xDS NACK would). The registration is rewritten
//! on every change of status and on every keep-alive; each write also proves the watch
//! alive, because this replica must see its own write come back through it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Shared;
use super::wire::PutRequest;
use crate::store::{RoutesStore, StoreStatus};

/// Who this replica is, as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaIdentity {
    pub id: String,
    pub data_addr: String,
    pub admin_addr: String,
}

/// A replica's registration, as stored and as `/fleet` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub id: String,
    pub data_addr: String,
    pub admin_addr: String,
    pub mode: String,
    /// The revision of the routing state it serves.
    pub revision: u64,
    pub generation: u64,
    pub ready: bool,
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rejection: Option<RejectionRecord>,
    pub started_at: String,
    pub updated_at: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionRecord {
    pub revision: u64,
    pub at: String,
    pub problems: Vec<String>,
}

/// Registrations are not rewritten more often than this, however often the status changes.
const MIN_GAP: Duration = Duration::from_millis(200);

// === impl ReplicaIdentity ===

impl ReplicaIdentity {
    /// `GRAYGATE_REPLICA_ID`, else `{hostname}:{admin port}` (a pod name in Kubernetes).
    pub fn detect(data_addr: std::net::SocketAddr, admin_addr: std::net::SocketAddr) -> Self {
        let id = std::env::var("GRAYGATE_REPLICA_ID").ok().filter(|id| valid_id(id)).unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "graygate".to_owned());
            format!("{host}:{}", admin_addr.port())
        });
        ReplicaIdentity { id, data_addr: data_addr.to_string(), admin_addr: admin_addr.to_string() }
    }
}

fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

// === impl ReplicaRecord ===

impl ReplicaRecord {
    pub fn of(identity: &ReplicaIdentity, status: &StoreStatus, started_at: &str) -> Self {
        ReplicaRecord {
            id: identity.id.clone(),
            data_addr: identity.data_addr.clone(),
            admin_addr: identity.admin_addr.clone(),
            mode: status.mode.to_owned(),
            revision: status.revision,
            generation: status.generation,
            ready: status.ready,
            connected: status.connected,
            last_rejection: status.last_rejection.as_ref().map(|r| RejectionRecord {
                revision: r.revision,
                at: r.at.clone(),
                problems: r.problems.clone(),
            }),
            started_at: started_at.to_owned(),
            updated_at: crate::admin::now_text(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// Keeps this replica registered until `shutdown`, then revokes its lease (the record goes
/// at once; a replica that is killed instead disappears when the lease expires).
pub(super) async fn run(store: Arc<RoutesStore>, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let ttl = shared.settings.lease_ttl;
    let beat = (ttl / 3).max(Duration::from_millis(500));
    let started_at = crate::admin::now_text();
    let key = shared.layout.replica(&shared.identity.id).into_bytes();
    let mut status = store.subscribe();
    let mut lease: Option<i64> = None;
    let mut last_write = Instant::now() - MIN_GAP;
    let mut last_keepalive = Instant::now();
    loop {
        let wait = MIN_GAP.saturating_sub(last_write.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if lease.is_none() {
            lease = shared.client.lease_grant(i64::try_from(ttl.as_secs()).unwrap_or(10)).await.ok();
            last_keepalive = Instant::now();
        }
        // Renewed on its own clock: a status that changes faster than `beat` must not
        // starve the keep-alive (a write with the lease does not renew it).
        if let Some(id) = lease
            && last_keepalive.elapsed() >= beat
        {
            match shared.client.lease_keepalive(id).await {
                Ok(true) => last_keepalive = Instant::now(),
                Ok(false) => lease = None,
                Err(_) => {}
            }
        }
        if let Some(id) = lease {
            let record = ReplicaRecord::of(&shared.identity, &store.status(), &started_at);
            let value = serde_json::to_vec(&record).unwrap_or_default();
            match shared.client.put(&PutRequest { key: key.clone(), value, lease: id }).await {
                Ok(put) => shared.expect_in_watch(put.header.revision),
                // An expired lease (etcd was away longer than its TTL): take a new one.
                Err(super::client::EtcdError::Refused { .. }) => lease = None,
                Err(_) => {}
            }
            last_write = Instant::now();
        }
        let next_keepalive = beat.saturating_sub(last_keepalive.elapsed()).max(MIN_GAP);
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            changed = status.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(next_keepalive) => {}
        }
    }
    if let Some(id) = lease
        && let Err(error) = shared.client.lease_revoke(id).await
    {
        tracing::debug!(%error, "cannot revoke the replica's lease; its registration expires instead");
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
