//! This replica's copy of the fleet's keys, kept by listing and watching, and the routing
//! state read out of it.
//!
//! Changes arrive from three places — watch events, a re-list, and this replica's own
//! committed transactions — not always in revision order, so every key keeps the revision
//! of what it holds and only a newer revision replaces it; a deleted key stays as a
//! tombstone until the watch has passed its revision. `complete` is the revision up to which
//! the mirror holds every change, and it advances only from a watch event or a listing's
//! header, never from a timer. `version` counts changes of the state itself (the head and
//! the set it names): a table is published only if it was built from the latest version.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::fleet::ReplicaRecord;
use super::layout::{self, Head, Key, Layout};
use super::wire::{Event, KeyValue};
use crate::audit::{Filter, Outcome, Record};
use crate::routes::{FunctionSpec, Problem, RoutesError, RoutesFile};

pub struct Mirror {
    layout: Layout,
    /// Every key under `{prefix}/routes/` as last seen (deleted ones as tombstones).
    routes: BTreeMap<String, Entry>,
    replicas: BTreeMap<String, (i64, Option<ReplicaRecord>)>,
    /// The fleet's audit trail by key: the revision of each record (a tombstone: `None`).
    audit: BTreeMap<String, (i64, Option<Record>)>,
    /// The mirror holds every change up to this revision.
    pub complete: i64,
    /// The last revision the watch itself delivered (its liveness).
    pub watched: i64,
    /// Rises with every change of the state.
    pub version: u64,
    /// The revision of the last change of the state.
    pub state_revision: i64,
    /// The version the table in force (or the last rejection) was made from.
    pub settled: u64,
    /// Filled from a listing at least once (a replica started from its snapshot is not).
    pub listed: bool,
    pub cluster_id: String,
}

#[derive(Debug, Clone)]
struct Entry {
    mod_revision: i64,
    item: Option<Item>,
}

#[derive(Debug, Clone)]
enum Item {
    Head(Result<Head, String>),
    /// Shared with the bases of edits, which need every stored function.
    Function(Result<Arc<FunctionSpec>, String>),
    Unknown,
}

/// The routing state as the mirror holds it.
pub struct State {
    pub routes: RoutesFile,
    /// The key of each function, in the order of `routes.functions`.
    pub keys: Vec<String>,
    pub head_key: String,
}

/// What an edit is based on: the head as it stands and each function's key revision.
#[derive(Debug, Clone)]
pub struct Base {
    pub head: Head,
    pub head_revision: i64,
    pub state_revision: i64,
    /// Function name → the parsed value its key holds (an error for an invalid one).
    pub functions: BTreeMap<String, Result<Arc<FunctionSpec>, String>>,
}

/// A write of this replica's own transaction, applied once etcd committed it.
pub enum Own {
    Put(String, Bytes),
    Delete(String),
}

// === impl Mirror ===

impl Mirror {
    pub fn new(layout: Layout) -> Self {
        Mirror {
            layout,
            routes: BTreeMap::new(),
            replicas: BTreeMap::new(),
            audit: BTreeMap::new(),
            complete: 0,
            watched: 0,
            version: 0,
            state_revision: 0,
            settled: 0,
            listed: false,
            cluster_id: String::new(),
        }
    }

    /// Applies a watch response's events; true if the state changed.
    pub fn apply_events(&mut self, events: &[Event]) -> bool {
        let mut changed = false;
        for event in events {
            let revision = event.kv.mod_revision;
            if revision <= self.complete {
                continue;
            }
            let key = String::from_utf8_lossy(&event.kv.key).into_owned();
            let value = (!event.is_delete()).then(|| event.kv.value.clone());
            changed |= self.set(key, revision, value);
            self.watched = self.watched.max(revision);
        }
        if let Some(last) = events.last() {
            self.advance(last.kv.mod_revision);
        }
        if changed {
            self.version += 1;
        }
        changed
    }

    /// Forgets every revision: etcd went back in time (restored from a backup), and what
    /// the mirror holds must be replaced by the next listing whatever its revisions.
    pub fn rewind(&mut self) {
        self.routes.clear();
        self.replicas.clear();
        self.audit.clear();
        self.complete = 0;
        self.watched = 0;
        self.state_revision = 0;
        self.version += 1;
    }

    /// The watch reported progress (no events up to `revision`).
    pub fn progress(&mut self, revision: i64) {
        self.watched = self.watched.max(revision);
        self.advance(revision);
    }

    /// Takes in a consistent listing at `revision` of every routing key and of the other
    /// keys (replicas, audit records); true if the state changed (keys missing from it were
    /// deleted at or before `revision`).
    pub fn reconcile(&mut self, routes: Vec<KeyValue>, others: Vec<KeyValue>, revision: i64) -> bool {
        let mut changed = false;
        let mut listed = std::collections::BTreeSet::new();
        for kv in routes {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            listed.insert(key.clone());
            changed |= self.set(key, kv.mod_revision, Some(kv.value));
        }
        let gone: Vec<String> = self
            .routes
            .iter()
            .filter(|(key, entry)| entry.item.is_some() && entry.mod_revision <= revision && !listed.contains(*key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            changed |= self.set(key, revision, None);
        }
        self.replicas.retain(|_, (seen, _)| *seen > revision);
        self.audit.retain(|_, (seen, _)| *seen > revision);
        for kv in others {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            self.set(key, kv.mod_revision, Some(kv.value));
        }
        self.advance(revision);
        self.listed = true;
        if changed {
            self.version += 1;
        }
        changed
    }

    /// Applies this replica's own committed writes (committed at `revision`).
    pub fn apply_own(&mut self, writes: Vec<Own>, revision: i64) -> bool {
        let mut changed = false;
        for write in writes {
            changed |= match write {
                Own::Put(key, value) => self.set(key, revision, Some(value)),
                Own::Delete(key) => self.set(key, revision, None),
            };
        }
        if changed {
            self.version += 1;
        }
        changed
    }

    /// Sets `key` to `value` (None: deleted) as of `revision`, unless it already holds a
    /// newer revision; true if that changed the state.
    fn set(&mut self, key: String, revision: i64, value: Option<Bytes>) -> bool {
        let kind = self.layout.classify(&key);
        if let Key::Replica { id } = kind {
            let id = id.to_owned();
            match self.replicas.get(&id) {
                Some((seen, _)) if *seen >= revision => {}
                _ => {
                    let record = value.and_then(|v| serde_json::from_slice::<ReplicaRecord>(&v).ok());
                    self.replicas.insert(id, (revision, record));
                }
            }
            return false;
        }
        if let Key::Audit { .. } = kind {
            match self.audit.get(&key) {
                Some((seen, _)) if *seen >= revision => {}
                _ => {
                    let record = value.and_then(|v| serde_json::from_slice::<Record>(&v).ok()).map(|mut record| {
                        // A change's record is committed in the change's own transaction: its
                        // revision is the state's. A refusal changed no state: it has none.
                        if record.result == Outcome::Applied {
                            record.revision = record.revision.or(u64::try_from(revision).ok());
                        }
                        record
                    });
                    self.audit.insert(key, (revision, record));
                }
            }
            return false;
        }
        if kind == Key::Other {
            return false;
        }
        if self.routes.get(&key).is_some_and(|entry| entry.mod_revision >= revision) {
            return false;
        }
        let in_state = self.in_state(&kind);
        let item = value.map(|value| match kind {
            Key::Head => Item::Head(layout::decode_head(&value)),
            Key::Function { name, .. } => Item::Function(layout::decode_function(name, &value).map(Arc::new)),
            _ => Item::Unknown,
        });
        self.routes.insert(key, Entry { mod_revision: revision, item });
        if in_state {
            self.state_revision = self.state_revision.max(revision);
        }
        in_state
    }

    /// Whether a key of this kind is part of the state (the head, or in the head's set).
    fn in_state(&self, kind: &Key<'_>) -> bool {
        match kind {
            Key::Head => true,
            Key::Function { set, .. } | Key::InSet { set } => self.head().is_some_and(|head| head.set == *set),
            Key::Replica { .. } | Key::Audit { .. } | Key::Other => false,
        }
    }

    fn advance(&mut self, revision: i64) {
        if revision > self.complete {
            self.complete = revision;
            // A tombstone the watch has passed can no longer be contradicted by a late event.
            let complete = self.complete;
            self.routes.retain(|_, entry| entry.item.is_some() || entry.mod_revision > complete);
            self.replicas.retain(|_, (seen, record)| record.is_some() || *seen > complete);
            self.audit.retain(|_, (seen, record)| record.is_some() || *seen > complete);
        }
    }

    fn head(&self) -> Option<&Head> {
        match self.routes.get(&self.layout.head()).and_then(|e| e.item.as_ref()) {
            Some(Item::Head(Ok(head))) => Some(head),
            _ => None,
        }
    }

    fn head_entry(&self) -> Option<&Entry> {
        self.routes.get(&self.layout.head()).filter(|entry| entry.item.is_some())
    }

    /// The live keys of `set`, in key order.
    fn set_entries(&self, set: &str) -> impl Iterator<Item = (&String, &Entry)> {
        let (start, end) = self.layout.set(set);
        let (start, end) = (String::from_utf8_lossy(&start).into_owned(), String::from_utf8_lossy(&end).into_owned());
        self.routes
            .range::<String, _>((Bound::Included(start), Bound::Excluded(end)))
            .filter(|(_, entry)| entry.item.is_some())
    }

    /// The routing state: `Ok(None)` when no state is stored (no head), `Err` with every
    /// problem (each naming its key) when what is stored cannot be read.
    pub fn state(&self) -> Result<Option<State>, RoutesError> {
        let head_key = self.layout.head();
        let Some(entry) = self.head_entry() else { return Ok(None) };
        let head = match &entry.item {
            Some(Item::Head(Ok(head))) => head,
            Some(Item::Head(Err(why))) => return Err(RoutesError::single(&head_key, None, "", why.clone())),
            _ => return Ok(None),
        };
        let mut problems = Vec::new();
        let mut functions = Vec::new();
        let mut keys = Vec::new();
        for (key, entry) in self.set_entries(&head.set) {
            match &entry.item {
                Some(Item::Function(Ok(function))) => {
                    functions.push(FunctionSpec::clone(function));
                    keys.push(key.clone());
                }
                Some(Item::Function(Err(why))) => problems.push(problem(key, why.clone())),
                _ => problems.push(problem(key, "not a key of the routing state this graygate knows".into())),
            }
        }
        if !problems.is_empty() {
            return Err(RoutesError { problems });
        }
        let routes = RoutesFile { project_id: head.project_id.clone(), region: head.region.clone(), functions };
        Ok(Some(State { routes, keys, head_key }))
    }

    /// What an edit is based on, if a state is stored.
    pub fn base(&self) -> Option<Base> {
        let entry = self.head_entry()?;
        let head = self.head()?.clone();
        let functions = self
            .set_entries(&head.set)
            .filter_map(|(key, entry)| match (&entry.item, self.layout.classify(key)) {
                (Some(Item::Function(parsed)), Key::Function { name, .. }) => Some((name.to_owned(), parsed.clone())),
                _ => None,
            })
            .collect();
        Some(Base { head_revision: entry.mod_revision, state_revision: self.state_revision, head, functions })
    }

    /// The replicas registered now, by id.
    pub fn replicas(&self) -> Vec<ReplicaRecord> {
        self.replicas.values().filter_map(|(_, record)| record.clone()).collect()
    }

    /// The fleet's audit records that match, newest (by commit revision) first.
    pub fn audit(&self, filter: &Filter) -> Vec<Record> {
        let mut records: Vec<(i64, &Record)> =
            self.audit.values().filter_map(|(revision, record)| Some((*revision, record.as_ref()?))).collect();
        records.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
        records
            .into_iter()
            .map(|(_, record)| record)
            .filter(|r| r.matches(filter))
            .take(filter.limit)
            .cloned()
            .collect()
    }

    /// Whether a record was committed at `revision` (a change without one was made by hand).
    pub fn audited_at(&self, revision: i64) -> bool {
        let revision = u64::try_from(revision).ok();
        self.audit.values().any(|(_, record)| record.as_ref().is_some_and(|r| r.revision == revision))
    }

    /// The keys of the oldest records beyond `retain` (at most `most` of them). The record
    /// of the state in force is never among them: without it, that state would look like a
    /// hand edit to a replica that lists it later.
    pub fn audit_overflow(&self, retain: usize, most: usize) -> Vec<String> {
        let served = u64::try_from(self.state_revision).ok();
        let mut live: Vec<(i64, &String, bool)> = self
            .audit
            .iter()
            .filter_map(|(key, (revision, record))| Some((*revision, key, record.as_ref()?.revision == served)))
            .collect();
        if live.len() <= retain {
            return Vec::new();
        }
        live.sort();
        let excess = live.len() - retain;
        live.into_iter().filter(|(_, _, kept)| !kept).take(excess.min(most)).map(|(_, key, _)| key.clone()).collect()
    }
}

fn problem(key: &str, message: String) -> Problem {
    Problem { file: key.to_owned(), line: None, path: String::new(), message }
}

/// Maps validation issues (`functions[3].aliases[0].version`) to the keys they are about.
pub fn locate(state: &State, issues: Vec<crate::routes::Issue>) -> RoutesError {
    let problems = issues
        .into_iter()
        .map(|issue| {
            let index = issue
                .path
                .strip_prefix("functions[")
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(index, rest)| Some((index.parse::<usize>().ok()?, rest)));
            match index.and_then(|(index, rest)| Some((state.keys.get(index)?, rest))) {
                Some((key, rest)) => Problem {
                    file: key.clone(),
                    line: None,
                    path: rest.trim_start_matches('.').to_owned(),
                    message: issue.message,
                },
                None => Problem { file: state.head_key.clone(), line: None, path: issue.path, message: issue.message },
            }
        })
        .collect();
    RoutesError { problems }
}

#[cfg(test)]
mod tests;
