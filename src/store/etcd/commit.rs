//! An API edit as one etcd transaction.
//!
//! The edit runs on the state this replica serves; the transaction writes the functions it
//! changed and the head, and is guarded so that it commits only if nothing it is based on
//! moved: the head's mod revision is unchanged (every commit rewrites the head, so this is
//! the fleet-wide guard), no key of the set is newer than the state's revision (a hand
//! edit), each function it rewrites or removes still exists and each it creates does not.
//! A lost guard re-lists and re-runs the edit, whose business rules then see the change that
//! won. The answer goes out once etcd committed and this replica's table serves it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::layout::{self, FORMAT, Head, Layout};
use super::mirror::{Base, Own};
use super::wire::{Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use super::{EtcdError, Shared, sync};
use crate::audit::{Attribution, Outcome, Record};
use crate::routes::changes::Changes;
use crate::routes::{FunctionSpec, RoutesFile};
use crate::store::{ApplyError, Edit, RoutesStore, Stamp, compile_over, run_edit};

/// Attempts before an edit that keeps losing to other replicas gives up (409).
const ATTEMPTS: usize = 8;

/// etcd's default `--max-txn-ops`: the most compares, or operations, one transaction holds.
const MAX_TXN_OPS: usize = 128;

/// What a transaction writes and the guard it carries.
pub struct Plan {
    pub txn: TxnRequest,
    pub writes: Vec<Own>,
    /// Whether anything changes at all (an edit to what is already stored writes nothing).
    pub changes_anything: bool,
}

pub async fn apply<T: Send + 'static, E: Send + 'static>(
    store: &RoutesStore,
    shared: &Shared,
    who: &Attribution,
    edit: Arc<Edit<T, E>>,
) -> Result<T, ApplyError<E>> {
    for _ in 0..ATTEMPTS {
        // A change the watch delivered but not yet applied would be overwritten: apply it.
        sync(store, shared).await;
        let (base, version) = {
            let mirror = shared.lock();
            if !mirror.listed {
                return Err(ApplyError::Unavailable(
                    "not yet synchronised with etcd; the snapshot is being served".into(),
                ));
            }
            let base = mirror.base().ok_or_else(|| {
                ApplyError::Unavailable(format!(
                    "no routing state is stored under {} yet: store one with `graygate routes push`",
                    shared.settings.prefix
                ))
            })?;
            (base, mirror.version)
        };
        let previous = store.current();
        if !store.status().ready {
            return Err(ApplyError::Unavailable("no routing state is loaded yet".into()));
        }
        let (layout, policy, edit) = (shared.layout.clone(), store.policy.clone(), Arc::clone(&edit));
        let (who, replica) = (who.clone(), store.replica_id().to_owned());
        let overflow = shared.lock().audit_overflow(store.trail.retain().saturating_sub(1), PRUNE);
        let work = store
            .background
            .run(move || {
                let (value, valid) = run_edit(previous.source().spec(), &*edit)?;
                let mut plan = plan(&layout, &base, valid.spec()).map_err(ApplyError::Internal)?;
                let changes = Changes::between(previous.source().spec(), valid.spec());
                let outcome = if plan.changes_anything { Outcome::Applied } else { Outcome::Unchanged };
                let record = who.record(&replica, outcome, previous.source().spec(), valid.spec());
                if plan.changes_anything {
                    with_record(&mut plan, &layout, &record, &overflow).map_err(ApplyError::Internal)?;
                }
                let table = compile_over(valid, &previous, &policy).map_err(|e| ApplyError::Internal(e.to_string()))?;
                Ok((value, plan, table, changes, record))
            })
            .await;
        let (value, plan, table, changes, mut record) =
            work.map_err(|lost| ApplyError::Internal(lost.to_string()))??;
        if !plan.changes_anything {
            shared.store_record(store, &record).await;
            store.keep(record).await;
            return Ok(value);
        }
        let operations = plan.txn.compare.len().max(plan.txn.success.len());
        if operations > MAX_TXN_OPS {
            return Err(ApplyError::TooLarge(format!(
                "this change rewrites {} functions, more than one etcd transaction holds ({MAX_TXN_OPS} operations): \
                 store it with `graygate routes push`, which stages a change of any size",
                plan.txn.compare.len().saturating_sub(2)
            )));
        }
        match shared.client.txn(&plan.txn).await {
            Ok(committed) if committed.succeeded => {
                shared.set_connected(store, true);
                let revision = committed.header.revision;
                let published = {
                    let mut mirror = shared.lock();
                    let untouched = mirror.version == version;
                    mirror.apply_own(plan.writes, revision);
                    // The state at `revision` is exactly the base plus this edit when the
                    // mirror took nothing else in meanwhile (the guard held for the rest).
                    untouched.then(|| {
                        let generation = store.publish(table, Stamp::At(u64::try_from(revision).unwrap_or(0)));
                        mirror.settled = mirror.version;
                        generation
                    })
                };
                match published {
                    Some(generation) => {
                        tracing::info!(generation, revision, changes = %changes, "routes changed through the management API");
                        shared.save_snapshot(store, &store.current());
                    }
                    None => {
                        sync(store, shared).await;
                    }
                }
                record.revision = u64::try_from(revision).ok();
                store.keep(record).await;
                return Ok(value);
            }
            Ok(lost) => {
                tracing::debug!(
                    revision = lost.header.revision,
                    "another change came first; re-listing to retry the edit"
                );
                if let Err(error) = shared.relist().await {
                    shared.set_connected(store, false);
                    return Err(ApplyError::Unavailable(error.to_string()));
                }
            }
            Err(EtcdError::Unreachable(why)) => {
                shared.set_connected(store, false);
                return Err(ApplyError::Unavailable(format!("etcd is unreachable, nothing was changed ({why})")));
            }
            Err(EtcdError::Unavailable(why)) => {
                shared.set_connected(store, false);
                return Err(ApplyError::Unavailable(format!(
                    "etcd did not confirm the change ({why}); read the state back before retrying"
                )));
            }
            Err(error) => return Err(ApplyError::Internal(error.to_string())),
        }
    }
    Err(ApplyError::Conflict("the routing state kept changing under this edit; retry".into()))
}

/// Records dropped from the fleet's trail per transaction, oldest first, once it holds more
/// than it retains (a transaction has room for 128 operations).
pub const PRUNE: usize = 16;

/// Adds the change's audit record to the transaction (committed with it, or not at all),
/// and the removal of the oldest records beyond the trail's retention.
pub fn with_record(plan: &mut Plan, layout: &Layout, record: &Record, overflow: &[String]) -> Result<(), String> {
    let (ops, writes) = record_ops(layout, record, overflow)?;
    plan.txn.success.extend(ops);
    plan.writes.extend(writes);
    Ok(())
}

/// A record's put and the prunes, as operations and as this replica's own writes.
pub fn record_ops(layout: &Layout, record: &Record, overflow: &[String]) -> Result<(Vec<RequestOp>, Vec<Own>), String> {
    let key = layout.audit(&record.id);
    let value = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    let mut ops = vec![RequestOp::Put(PutRequest { key: key.clone().into_bytes(), value: value.clone(), lease: 0 })];
    let mut writes = vec![Own::Put(key, Bytes::from(value))];
    for old in overflow {
        ops.push(RequestOp::Delete(DeleteRangeRequest { key: old.clone().into_bytes(), range_end: Vec::new() }));
        writes.push(Own::Delete(old.clone()));
    }
    Ok((ops, writes))
}

/// The transaction that turns the stored state `base` into `next`.
pub fn plan(layout: &Layout, base: &Base, next: &RoutesFile) -> Result<Plan, String> {
    let set = &base.head.set;
    let (set_start, set_end) = layout.set(set);
    let mut compare = vec![
        Compare {
            key: layout.head().into_bytes(),
            range_end: Vec::new(),
            target: "MOD",
            result: "EQUAL",
            mod_revision: Some(base.head_revision),
            create_revision: None,
            version: None,
        },
        Compare {
            key: set_start,
            range_end: set_end,
            target: "MOD",
            result: "LESS",
            mod_revision: Some(base.state_revision + 1),
            create_revision: None,
            version: None,
        },
    ];
    let mut success = Vec::new();
    let mut writes = Vec::new();
    let mut changes_anything = false;
    let stored: &BTreeMap<String, Result<Arc<FunctionSpec>, String>> = &base.functions;
    for function in &next.functions {
        let existing = stored.get(&function.name);
        if matches!(existing, Some(Ok(stored)) if **stored == *function) {
            continue;
        }
        let key = layout.function(set, &function.name);
        compare.push(if existing.is_some() { still_exists(&key) } else { absent(&key) });
        let value = layout::encode_function(function).map_err(|e| e.to_string())?;
        writes.push(Own::Put(key.clone(), Bytes::from(value.clone())));
        success.push(RequestOp::Put(PutRequest { key: key.into_bytes(), value, lease: 0 }));
        changes_anything = true;
    }
    let kept: std::collections::HashSet<&str> = next.functions.iter().map(|f| f.name.as_str()).collect();
    for name in stored.keys() {
        if !kept.contains(name.as_str()) {
            let key = layout.function(set, name);
            compare.push(still_exists(&key));
            writes.push(Own::Delete(key.clone()));
            success.push(RequestOp::Delete(DeleteRangeRequest { key: key.into_bytes(), range_end: Vec::new() }));
            changes_anything = true;
        }
    }
    let head =
        Head { set: set.clone(), project_id: next.project_id.clone(), region: next.region.clone(), format: FORMAT };
    changes_anything |= head != base.head;
    let value = serde_json::to_vec(&head).map_err(|e| e.to_string())?;
    writes.push(Own::Put(layout.head(), Bytes::from(value.clone())));
    success.push(RequestOp::Put(PutRequest { key: layout.head().into_bytes(), value, lease: 0 }));
    Ok(Plan { txn: TxnRequest { compare, success, failure: Vec::new() }, writes, changes_anything })
}

fn still_exists(key: &str) -> Compare {
    Compare {
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target: "VERSION",
        result: "GREATER",
        mod_revision: None,
        create_revision: None,
        version: Some(0),
    }
}

fn absent(key: &str) -> Compare {
    Compare {
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target: "CREATE",
        result: "EQUAL",
        mod_revision: None,
        create_revision: Some(0),
        version: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str, upstream: &str) -> FunctionSpec {
        serde_json::from_value(serde_json::json!({ "name": name, "upstream": upstream }))
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn writes_only_what_changed_and_guards_every_key_it_touches() {
        let layout = Layout::new("/gg");
        let head = Head { set: "s1".into(), project_id: "p".into(), region: "local".into(), format: FORMAT };
        let mut functions = BTreeMap::new();
        functions.insert("same".to_owned(), Ok(Arc::new(function("same", "http://a:1"))));
        functions.insert("edited".to_owned(), Ok(Arc::new(function("edited", "http://a:1"))));
        functions.insert("gone".to_owned(), Ok(Arc::new(function("gone", "http://a:1"))));
        let base = Base { head: head.clone(), head_revision: 7, state_revision: 9, functions };
        let next = RoutesFile {
            project_id: "p".into(),
            region: "local".into(),
            functions: vec![
                function("same", "http://a:1"),
                function("edited", "http://b:2"),
                function("new", "http://c:3"),
            ],
        };
        let plan = plan(&layout, &base, &next).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(plan.changes_anything);
        let text = serde_json::to_value(&plan.txn).unwrap_or_default();
        let ops = text["success"].as_array().map_or(0, Vec::len);
        assert_eq!(ops, 4, "edited, new, gone and the head: {text}");
        let compares = text["compare"].as_array().cloned().unwrap_or_default();
        assert_eq!(compares.len(), 5, "head, set, and one per touched function: {text}");
        assert_eq!(compares[0]["mod_revision"], "7");
        assert_eq!(compares[1]["mod_revision"], "10");
        assert!(compares.iter().any(|c| c["target"] == "CREATE" && c["create_revision"] == "0"));

        let unchanged = RoutesFile {
            project_id: "p".into(),
            region: "local".into(),
            functions: vec![
                function("same", "http://a:1"),
                function("edited", "http://a:1"),
                function("gone", "http://a:1"),
            ],
        };
        assert!(!super::plan(&layout, &base, &unchanged).map(|p| p.changes_anything).unwrap_or(true));
    }
}
