//! `graygate routes push` and `pull`: the fleet's stored state, read and replaced from the
//! command line, without a running gateway.
//!
//! A push writes the new state as a new set in batches that no replica reads, then flips
//! the head to it in one transaction guarded by the head's revision (and, with
//! `--expect-revision`, by the state's), which also removes every other set — so a push of
//! any size is atomic, and a push that lost a race leaves nothing behind. A push of what is
//! already stored writes nothing. With a routes file instead of etcd, a push is the
//! validated file written atomically over the routes file.

use std::collections::BTreeMap;

use super::etcd::layout::{self, FORMAT, Head, Layout};
use super::etcd::wire::{Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use super::etcd::{EtcdClient, EtcdError};
use super::persist;
use crate::audit::{Attribution, Outcome};
use crate::config::{EtcdSettings, SourceSettings};
use crate::routes::{FunctionSpec, ReadLimits, RoutesFile, ValidRoutes};

/// Writes per transaction while staging a set: etcd refuses more than 128 operations and
/// 1.5 MiB per request by default.
const BATCH_OPS: usize = 100;
const BATCH_BYTES: usize = 1024 * 1024;

/// Why a push or pull did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The store did not answer: nothing is known about what it holds.
    #[error("{0}")]
    Unavailable(String),
    /// The store answered, and what it holds (or what was asked) is refused.
    #[error("{0}")]
    Refused(String),
    /// The store answered and holds no routing state yet.
    #[error("{0}")]
    NoState(String),
}

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The stored state already was this one; nothing was written.
    Unchanged {
        revision: u64,
    },
    Stored {
        revision: u64,
        functions: usize,
    },
}

/// The stored state as a push or a pull sees it.
struct Stored {
    head: Option<(Head, i64)>,
    routes: Option<RoutesFile>,
    revision: i64,
}

/// Stores `routes` (its text is `text`) as the state of the configured source.
pub async fn push(
    source: &SourceSettings,
    routes: &ValidRoutes,
    text: &str,
    expect: Option<u64>,
    limits: &ReadLimits,
    retain: usize,
) -> Result<Pushed, RemoteError> {
    match source {
        SourceSettings::File(path) => {
            if expect.is_some() {
                return Err(refused("--expect-revision needs an etcd store; this configuration uses a routes file"));
            }
            if ValidRoutes::load(path, limits).is_ok_and(|current| current == *routes) {
                return Ok(Pushed::Unchanged { revision: 0 });
            }
            let marked = super::file::with_push_mark(text, &Attribution::cli("routes push").actor);
            persist::write_atomically(path, marked.as_bytes())
                .map_err(|e| RemoteError::Refused(format!("{}: {e}", path.display())))?;
            Ok(Pushed::Stored { revision: 0, functions: routes.spec().functions.len() })
        }
        SourceSettings::Etcd(settings) => push_etcd(settings, routes.spec(), expect, retain).await,
    }
}

/// The stored state and its revision (`None` for a routes file, which has no revisions).
pub async fn pull(source: &SourceSettings, limits: &ReadLimits) -> Result<(RoutesFile, Option<u64>), RemoteError> {
    match source {
        SourceSettings::File(path) => {
            let valid = ValidRoutes::load(path, limits).map_err(|e| RemoteError::Refused(e.to_string()))?;
            Ok((valid.spec().clone(), None))
        }
        SourceSettings::Etcd(settings) => {
            let client = EtcdClient::new(settings).map_err(|e| RemoteError::Refused(e.to_string()))?;
            let stored = read(&client, &Layout::new(&settings.prefix)).await?;
            let routes = stored.routes.ok_or_else(|| {
                RemoteError::NoState(format!("no routing state is stored under {} yet", settings.prefix))
            })?;
            Ok((routes, Some(u64::try_from(stored.revision).unwrap_or(0))))
        }
    }
}

async fn push_etcd(
    settings: &EtcdSettings,
    routes: &RoutesFile,
    expect: Option<u64>,
    retain: usize,
) -> Result<Pushed, RemoteError> {
    let client = EtcdClient::new(settings).map_err(|e| RemoteError::Refused(e.to_string()))?;
    let layout = Layout::new(&settings.prefix);
    let stored = read(&client, &layout).await?;
    if let Some(expected) = expect
        && u64::try_from(stored.revision).ok() != Some(expected)
    {
        return Err(RemoteError::Refused(format!(
            "the stored state is at revision {}, not {expected}: nothing was pushed",
            stored.revision
        )));
    }
    let mut wanted = routes.clone();
    wanted.functions.sort_by(|a, b| a.name.cmp(&b.name));
    if stored.routes.as_ref() == Some(&wanted) {
        return Ok(Pushed::Unchanged { revision: u64::try_from(stored.revision).unwrap_or(0) });
    }
    let set = layout::new_set_name();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for function in &wanted.functions {
        let value = layout::encode_function(function).map_err(|e| RemoteError::Refused(e.to_string()))?;
        let key = layout.function(&set, &function.name).into_bytes();
        if !batch.is_empty() && (batch.len() >= BATCH_OPS || bytes + value.len() + key.len() > BATCH_BYTES) {
            stage(&client, std::mem::take(&mut batch)).await?;
            bytes = 0;
        }
        bytes += value.len() + key.len();
        batch.push(RequestOp::Put(PutRequest { key, value, lease: 0 }));
    }
    if !batch.is_empty() {
        stage(&client, batch).await?;
    }
    let head =
        Head { set: set.clone(), project_id: wanted.project_id.clone(), region: wanted.region.clone(), format: FORMAT };
    let (sets_start, sets_end) = layout.sets();
    let (new_start, new_end) = layout.set(&set);
    let mut compare = vec![match &stored.head {
        Some((_, revision)) => Compare { mod_revision: Some(*revision), ..compare_on(layout.head(), "MOD", "EQUAL") },
        None => Compare { create_revision: Some(0), ..compare_on(layout.head(), "CREATE", "EQUAL") },
    }];
    if let (Some(expected), Some((current, _))) = (expect, &stored.head) {
        let (start, end) = layout.set(&current.set);
        compare.push(Compare {
            range_end: end,
            mod_revision: Some(i64::try_from(expected).unwrap_or(i64::MAX).saturating_add(1)),
            ..compare_on_bytes(start, "MOD", "LESS")
        });
    }
    let empty = RoutesFile { functions: Vec::new(), ..wanted.clone() };
    let before = stored.routes.as_ref().unwrap_or(&empty);
    let record = Attribution::cli("routes push").record("cli", Outcome::Applied, before, &wanted);
    let record_value = serde_json::to_vec(&record).map_err(|e| RemoteError::Refused(e.to_string()))?;
    let pruned = audit_overflow(&client, &layout, retain).await?;
    let mut success = pruned;
    success.extend([
        // The push's audit record, committed with it.
        RequestOp::Put(PutRequest { key: layout.audit(&record.id).into_bytes(), value: record_value, lease: 0 }),
        RequestOp::Put(PutRequest {
            key: layout.head().into_bytes(),
            value: serde_json::to_vec(&head).map_err(|e| RemoteError::Refused(e.to_string()))?,
            lease: 0,
        }),
        // Every other set: the one replaced, and any a crashed push left behind.
        RequestOp::Delete(DeleteRangeRequest { key: sets_start, range_end: new_start.clone() }),
        RequestOp::Delete(DeleteRangeRequest { key: new_end.clone(), range_end: sets_end }),
    ]);
    let flip = TxnRequest {
        compare,
        success,
        failure: vec![RequestOp::Delete(DeleteRangeRequest { key: new_start, range_end: new_end })],
    };
    let answer = client.txn(&flip).await?;
    if !answer.succeeded {
        return Err(RemoteError::Refused(
            "the stored state changed while pushing: nothing was changed; pull and push again".into(),
        ));
    }
    Ok(Pushed::Stored {
        revision: u64::try_from(answer.header.revision).unwrap_or(0),
        functions: wanted.functions.len(),
    })
}

/// Deletions of the oldest audit records beyond `retain` (the push adds one), at most
/// [`PRUNE`](super::etcd::commit::PRUNE) per push, as the replicas' commits prune.
async fn audit_overflow(client: &EtcdClient, layout: &Layout, retain: usize) -> Result<Vec<RequestOp>, RemoteError> {
    let (start, end) = layout.audits();
    let request = RangeRequest { key: start, range_end: end, keys_only: true, ..RangeRequest::default() };
    let listed = client.range(&request).await?;
    let mut keys: Vec<(i64, Vec<u8>)> = listed.kvs.into_iter().map(|kv| (kv.mod_revision, kv.key.to_vec())).collect();
    keys.sort();
    let excess = keys.len().saturating_sub(retain.saturating_sub(1));
    Ok(keys
        .into_iter()
        .take(excess.min(super::etcd::commit::PRUNE))
        .map(|(_, key)| RequestOp::Delete(DeleteRangeRequest { key, range_end: Vec::new() }))
        .collect())
}

async fn stage(client: &EtcdClient, batch: Vec<RequestOp>) -> Result<(), RemoteError> {
    let answer = client.txn(&TxnRequest { compare: Vec::new(), success: batch, failure: Vec::new() }).await?;
    if answer.succeeded { Ok(()) } else { Err(RemoteError::Refused("etcd did not stage a batch".into())) }
}

/// The head and the state it names, read at one revision.
async fn read(client: &EtcdClient, layout: &Layout) -> Result<Stored, RemoteError> {
    let (start, end) = layout.routes();
    let mut kvs = Vec::new();
    let mut key = start;
    let mut revision = 0;
    loop {
        let page = client
            .range(&RangeRequest { key, range_end: end.clone(), limit: 1000, revision, ..RangeRequest::default() })
            .await?;
        if revision == 0 {
            revision = page.header.revision;
        }
        let more = page.more;
        kvs.extend(page.kvs);
        match kvs.last() {
            Some(last) if more => key = [&last.key[..], &[0]].concat(),
            _ => break,
        }
    }
    let head_key = layout.head();
    let Some(head_kv) = kvs.iter().find(|kv| kv.key == head_key.as_bytes()) else {
        return Ok(Stored { head: None, routes: None, revision: 0 });
    };
    let head = layout::decode_head(&head_kv.value).map_err(|why| RemoteError::Refused(format!("{head_key}: {why}")))?;
    let mut state_revision = head_kv.mod_revision;
    let mut functions = BTreeMap::<String, FunctionSpec>::new();
    let (set_start, set_end) = layout.set(&head.set);
    for kv in kvs.iter().filter(|kv| kv.key[..] >= set_start[..] && kv.key[..] < set_end[..]) {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let layout::Key::Function { name, .. } = layout.classify(&key) else {
            return Err(RemoteError::Refused(format!("{key}: not a key of the routing state this graygate knows")));
        };
        let function =
            layout::decode_function(name, &kv.value).map_err(|why| RemoteError::Refused(format!("{key}: {why}")))?;
        state_revision = state_revision.max(kv.mod_revision);
        functions.insert(name.to_owned(), function);
    }
    let routes = RoutesFile {
        project_id: head.project_id.clone(),
        region: head.region.clone(),
        functions: functions.into_values().collect(),
    };
    Ok(Stored { head: Some((head, head_kv.mod_revision)), routes: Some(routes), revision: state_revision })
}

fn compare_on(key: String, target: &'static str, result: &'static str) -> Compare {
    compare_on_bytes(key.into_bytes(), target, result)
}

fn compare_on_bytes(key: Vec<u8>, target: &'static str, result: &'static str) -> Compare {
    Compare { key, range_end: Vec::new(), target, result, mod_revision: None, create_revision: None, version: None }
}

fn refused(why: &str) -> RemoteError {
    RemoteError::Refused(why.to_owned())
}

impl From<EtcdError> for RemoteError {
    fn from(error: EtcdError) -> Self {
        match error {
            EtcdError::Unavailable(_) | EtcdError::Unreachable(_) => RemoteError::Unavailable(error.to_string()),
            _ => RemoteError::Refused(error.to_string()),
        }
    }
}
